/* pool.h — the bounded pool of app threads. Each thread owns one
 * PyThreadState for its whole life (per-request PyGILState churn is far
 * slower) and holds the GIL only while running Python. Requests wait in a
 * bounded FIFO. */
#ifndef WSGI_POOL_H
#define WSGI_POOL_H

#include <stdbool.h>

struct tf_request;
struct wsgi_pool;

/* A pool with no threads yet: requests submitted now wait in the queue.
 * NULL on out of memory. */
struct wsgi_pool *wsgi_pool_new(unsigned queue_size);
/* Start the app threads (call with the GIL released). 0, or -1 if none
 * could be started. */
int wsgi_pool_start(struct wsgi_pool *pool, unsigned threads);

/* tf_dispatch_fn: take a new request (and the reference passed in): on a
 * network thread with nothing queued, run it there once the loop's turn is
 * done (tf_loop_step_away); otherwise queue it for an app thread. Returns
 * 0, or -1 when the queue is full (reference not taken). */
int wsgi_pool_submit(void *pool, struct tf_request *req);

/* tf_inline_fn: run a new request now, on this network thread inside the
 * call that read it, if wsgi/fastpath.h says its path is fast and the app
 * has room and nothing else running beside inline calls. 1 when it ran (the
 * reference passed in is the run's, the answer is given to req as usual),
 * 0 when declined (nothing taken: submit it instead). */
int wsgi_pool_run_inline(void *pool, struct tf_request *req);

/* Has the pool a thread free now, with nothing queued (any thread)? A
 * --mirror copy goes to the app only then. */
bool wsgi_pool_idle(void *pool);

/* Stop taking new requests, run what is queued to the end, join the
 * threads, free the pool. Call with the GIL released. */
void wsgi_pool_stop(struct wsgi_pool *pool);

/* Requests waiting in the queue, and being run. */
unsigned wsgi_pool_busy(struct wsgi_pool *pool);

#endif
