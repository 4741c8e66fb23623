/* reload_watch.h — what a front's --reload watches: the app's Python files
 * (the list a worker gives, workers.c asks for it) and, for Trac, each
 * environment's plugins/ folder and conf/trac.ini. A change after the last
 * mark starts a reload. It only reads the file system (stat, readdir): it
 * never asks the workers, and allocates only what readdir needs. Main thread
 * only. */
#ifndef TF_RELOAD_WATCH_H
#define TF_RELOAD_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proxy/config.h"

struct tf_reload_watch {
    struct timespec checked_since; /* files changed after this start a reload */
    uint64_t tree_signature;       /* plugins/ and trac.ini as they were then */
};

/* From now on, a change starts the next reload. files (n of them, may be 0)
 * are the app's as the running workers loaded them. */
void tf_reload_watch_mark(struct tf_reload_watch *rw, const struct tf_config *cfg,
                          char *const *files, size_t n);
/* Whether one of files, or the Trac environments' plugins/ or trac.ini,
 * changed since the mark; if so, what, in why (cap bytes). */
bool tf_reload_watch_changed(const struct tf_reload_watch *rw, const struct tf_config *cfg,
                             char *const *files, size_t n, char *why, size_t cap);

#endif
