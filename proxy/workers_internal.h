/* workers_internal.h — what workers.c and workers_replace.c share: the
 * front's record of its worker processes (workers.h says who may touch
 * what, and from which thread). Not for other files. */
#ifndef TF_WORKERS_INTERNAL_H
#define TF_WORKERS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy/config.h"
#include "proxy/reload_watch.h"
#include "proxy/unavailable.h"

/* A worker whose watchdog interrupted a request is kept, not replaced, once
 * this many workers in a row in its place were replaced for an interrupt
 * before they completed a request, and it has completed none either: the
 * app's start-up outlasts --request-timeout, and each new worker would be
 * interrupted in its first request in turn. */
#define REPLACED_UNSERVED_MAX 3u

struct generation;

struct worker {
    pid_t pid;
    char origin[48];           /* its control port: "http://127.0.0.1:PORT" */
    int go_fd;                 /* "GO" here lets it accept on the shared socket; -1 after */
    bool exited;               /* reaped (set under the lock) */
    bool absorbed;             /* under the lock: the front holds what it measured */
    bool replace_asked;        /* under the lock: its watchdog interrupted a request */
    uint64_t completed;        /* under the lock: the requests it had completed, asking */
    bool kept;                 /* main thread: the guard kept it (and said so) */
    unsigned replaced_unserved; /* main thread: the workers before it in its place,
                                 * in a row, replaced for an interrupt before they
                                 * completed a request (REPLACED_UNSERVED_MAX) */
    struct generation *gen;
};

struct generation {
    unsigned number;
    struct worker *workers;
    unsigned n;
    bool terminated;           /* main thread: SIGTERM sent */
    bool one_replaced;         /* main thread: the one worker replaced in the current
                                * generation's place (replace_one), not a generation */
    struct tf_reload_files files; /* main thread: the app's Python files */
    uint64_t files_at;
    struct generation *next;   /* main thread: the retired list */
};

struct tf_workers {
    const struct tf_config *cfg;   /* read-only */
    char **argv;                   /* this program's argv + --worker + the pinned flags */
    int argc;                      /* of this program's own, without the pinned flags
                                    * (tf_front_keys_read) */
    char **pinned;                 /* tf_front_pinned_flags' */
    char **keys_at_start;          /* tf_front_keys_read's at start; NULL without --config */
    int listen_fd;                 /* the public socket every worker accepts on; -1 once closed */
    int nonces_fd;                 /* the Digest nonces' table they share, or -1 */
    char fd_env[48], port_env[48], control_env[48], secret_env[96], nonces_env[48];
    pthread_mutex_t lock;          /* guards current and the retired list (read by the
                                    * control server; only the main thread changes them) */
    struct generation *current;
    struct generation *retired;
    /* main thread only: */
    unsigned next_number;
    struct tf_reload_watch watched; /* --reload: what changes from its mark on */
    uint64_t last_attempt;         /* monotonic us of the last reload */
    struct tf_unavailable *unavailable; /* answering 503 while no worker is alive, or NULL */
    void (*on_new_worker)(const char *origin);
    void (*on_lost_worker)(const char *origin);
};

/* Has this child ended (a zombie not reaped yet)? It stays to be reaped. */
bool tf_workers_has_ended(pid_t pid);

/* Start n processes and wait until each says "READY PORT" (the caller
 * numbers the generation). On SIGINT/SIGTERM meanwhile: NULL with *stop
 * set to it (and err empty). */
struct generation *tf_workers_spawn(struct tf_workers *w, unsigned n, int *stop, char *err,
                                    size_t errlen);

/* The workers of g (current already) not told to go yet take over from
 * old (retired already; or NULL): a new generation, or one new worker in
 * an old one's place (workers_replace.c). */
void tf_workers_take_over(struct tf_workers *w, struct generation *g, struct generation *old,
                          const char *why);

/* Main thread, at each tick: replace the current workers that asked
 * (tf_workers_ask_replace), one at a time. false if a SIGINT/SIGTERM came
 * meanwhile (pending again). */
bool tf_workers_replace_interrupted(struct tf_workers *w);

#endif
