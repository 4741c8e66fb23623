/* exit_watch.h — bounds Python's end at a stop. Once the server stopped
 * serving, Python's end (threading's shutdown, which joins the app's
 * non-daemon threads, then the atexit handlers) has no limit of its own,
 * and a stop that stopped waiting takes the GIL back under requests still
 * running (one in C code that never releases it). Nothing else reads the
 * signal pipe then: a watch thread does, and ends the process when the
 * bound passes, set by the earliest of: a normal stop's finalize
 * (tf_exit_watch_arm: what is left of --graceful-timeout, at least
 * TF_FORCED_EXIT_S); TF_FORCED_EXIT_S from a stop that stopped waiting, from
 * a second SIGINT/SIGTERM (a worker takes none: its front decides), or from
 * its front's end (nobody else would end it). It must never take the GIL:
 * it may fire while Python holds it. Built with the executable (it asks
 * wsgi/interp for the threads Python's end waits for). */
#ifndef TF_EXIT_WATCH_H
#define TF_EXIT_WATCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "wsgi/interp.h"

#define TF_FORCED_EXIT_S 5 /* what Python gets to finish once its end is bounded */
#define TF_EXIT_WATCH_WAITED_MAX 16 /* threads named when Python's end is given up on */

/* A watch; { .done = { -1, -1 } } (TF_EXIT_WATCH_IDLE) is one never started,
 * which tf_exit_watch_end passes over. */
struct tf_exit_watch {
    pid_t front;       /* a worker's front, or 0 */
    int done[2];       /* the main thread closes done[1] once Python finished */
    pthread_mutex_t lock;
    uint64_t deadline; /* lock: tf_now_us() to exit at, or 0: not bounded yet */
    bool graceful;     /* lock: the deadline is tf_exit_watch_arm's */
    struct wsgi_thread waited[TF_EXIT_WATCH_WAITED_MAX]; /* lock: tf_exit_watch_note_threads' */
    size_t n_waited;
    bool front_gone;   /* the watch thread's: its end was seen and bounded */
    pthread_t thread;
};
#define TF_EXIT_WATCH_IDLE { .done = { -1, -1 } }

/* Main thread, the requests done or given up on: start watching (bounded at
 * once if bounded: the stop stopped waiting). front: a worker's front, or 0.
 * Without a thread: a bounded end is cut by SIGALRM (no app handler for it,
 * which would keep the process), else SIGINT/SIGTERM end the process at
 * once. */
void tf_exit_watch_start(struct tf_exit_watch *w, pid_t front, bool bounded);
/* A normal stop's requests are done: the rest (the profile, the network
 * threads' ends, which take the GIL, and Python's end) is bounded by what is
 * left of --graceful-timeout from stop_began, but at least TF_FORCED_EXIT_S
 * (the atexit handlers' allowance), as gunicorn's and uWSGI's masters end a
 * worker at their graceful timeout. Without a watch thread, SIGALRM ends
 * the process then. */
void tf_exit_watch_arm(struct tf_exit_watch *w, uint64_t stop_began, double graceful_timeout);
/* Python's end begins (the main thread, app threads idle): the threads it
 * will wait for, named if the bound passes. */
void tf_exit_watch_note_threads(struct tf_exit_watch *w);
/* Python finished: the watch ends (it exits the process if too late). */
void tf_exit_watch_end(struct tf_exit_watch *w);

/* Python's end given up on while app code may still run in it: the atexit
 * handlers get TF_FORCED_EXIT_S, without finalizing, then the process
 * exits. */
__attribute__((noreturn)) void tf_exit_without_finalizing(pid_t front);

#endif
