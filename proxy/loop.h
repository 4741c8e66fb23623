/* loop.h — event loops: one epoll set each, run by one thread at a time. The server's
 * libmicrohttpd daemons and the upstream's curl multi handles both live on
 * them, so a proxied request is read, forwarded and answered by one thread,
 * with no hand-off between threads. Another thread reaches a loop only
 * through tf_loop_post, tf_loop_call and tf_loop_wake. The thread that runs
 * a loop can change (see tf_loop_step_away); threads are named tf-io-N
 * after the loop they run. */
#ifndef TF_LOOP_H
#define TF_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct tf_loop;

/* fd is ready (events: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP). */
typedef void (*tf_loop_fd_fn)(void *ctx, int fd, uint32_t events);
/* Once per turn, before the loop sleeps: do what is due, and return the
 * milliseconds until the next call is needed (-1: only when woken). */
typedef long (*tf_loop_tick_fn)(void *ctx);
typedef void (*tf_loop_call_fn)(void *arg);
typedef int (*tf_loop_sync_fn)(void *arg);

/* Start loop number index on a thread of its own. NULL with err. */
struct tf_loop *tf_loop_start(unsigned index, char *err, size_t errlen);
/* Wait until the loop has stopped; calls posted before are run first. The
 * threads end when the last loop is freed. */
void tf_loop_stop(struct tf_loop *loop);
/* After tf_loop_stop: run what was posted since (on this thread), then free. */
void tf_loop_free(struct tf_loop *loop);
/* After tf_loop_stop: run what was posted since, on this thread. */
void tf_loop_run_posted(struct tf_loop *loop);

/* Any thread: fn(arg) on the loop's thread, soon. -1 on out of memory. */
int tf_loop_post(struct tf_loop *loop, tf_loop_call_fn fn, void *arg);
/* Any thread: fn(arg) on the loop's thread, and wait for it (run here when
 * this is that thread or it has stopped). Returns what fn returned, or -1
 * on out of memory. */
int tf_loop_call(struct tf_loop *loop, tf_loop_sync_fn fn, void *arg);

/* The loop's thread, from a watcher, tick or posted call: run fn(arg) on
 * this thread once the turn's callbacks are done, stepping away from the
 * loop meanwhile (tf_loop_current() is NULL in fn), so fn may block: an
 * app call. If fn takes longer than about a millisecond, another thread
 * carries on with the loop, and this one becomes a spare when fn returns.
 * fn must not tf_loop_call this loop: that waits for the hand-over (1 ms).
 * -1 on out of memory. */
int tf_loop_step_away(struct tf_loop *loop, tf_loop_call_fn fn, void *arg);

/* Any thread: make the loop take another turn soon (its ticks run). */
void tf_loop_wake(struct tf_loop *loop);

/* The loop's thread only (see tf_loop_call): */
int tf_loop_watch(struct tf_loop *loop, int fd, uint32_t events, tf_loop_fd_fn fn, void *ctx);
void tf_loop_unwatch(struct tf_loop *loop, int fd);
int tf_loop_add_tick(struct tf_loop *loop, tf_loop_tick_fn fn, void *ctx);
void tf_loop_remove_tick(struct tf_loop *loop, tf_loop_tick_fn fn, void *ctx);

/* n loops, numbered from 0. NULL with err (none is left running). */
struct tf_loop **tf_loops_start(unsigned n, char *err, size_t errlen);
/* Stop every loop (tf_loop_stop); then tf_loops_free frees them. */
void tf_loops_stop(struct tf_loop **loops, unsigned n);
void tf_loops_free(struct tf_loop **loops, unsigned n);

/* The loop running on this thread, or NULL. */
struct tf_loop *tf_loop_current(void);
unsigned tf_loop_index(const struct tf_loop *loop);

#endif
