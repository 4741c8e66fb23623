/* reload_watch.h — what a front's --reload watches: the app's Python files
 * (the lists the workers give, workers.c asks for them) and, for Trac, the
 * project folders with each one's conf/trac.ini and the plugins Trac loads.
 * A change after the last mark starts a reload once it has settled. It only
 * reads the file system (stat, readdir): it never asks the workers, and its
 * checks allocate only what readdir and a .tracignore need. Main thread only. */
#ifndef TF_RELOAD_WATCH_H
#define TF_RELOAD_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proxy/config.h"

/* The app's Python files as the workers listed them: each once, sorted. */
struct tf_reload_files {
    char **paths;
    size_t n;
};

/* Add the paths of a worker's list (one per line, len bytes) that files
 * lacks. -1 on out of memory: files then holds what it held, and perhaps
 * part of the list. */
int tf_reload_files_add(struct tf_reload_files *files, const char *list, size_t len);
void tf_reload_files_free(struct tf_reload_files *files);

/* Signatures of the Trac projects served. */
struct tf_reload_tree {
    uint64_t all;                  /* project names, trac.ini files, plugins */
    uint64_t projects;             /* the project folders' names alone */
};

struct tf_reload_watch {
    struct timespec checked_since; /* files changed after this start a reload */
    struct tf_reload_tree tree;    /* the projects as they were then */
    bool settling;                 /* a change was seen; it counts once it stays */
    uint64_t settling_signature;   /* what it was (change_signature) */
    uint64_t settling_since;       /* tf_now_us when it was first seen so */
    uint64_t changing_since;       /* tf_now_us when a change was first seen after none */
};

/* From now on, a change starts the next reload. files (NULL: none) are the
 * app's as the running workers loaded them. */
void tf_reload_watch_mark(struct tf_reload_watch *rw, const struct tf_config *cfg,
                          const struct tf_reload_files *files);
/* Whether one of files, or the Trac environments' plugins/ or trac.ini,
 * changed since the mark and has stayed so since the check before, about a
 * second ago (a change made in several steps reloads once, when done), or
 * has kept changing for 10 s; if so, what, in why (cap bytes; names
 * escaped as tf_log_escape does). */
bool tf_reload_watch_changed(struct tf_reload_watch *rw, const struct tf_config *cfg,
                             const struct tf_reload_files *files, char *why, size_t cap);

#endif
