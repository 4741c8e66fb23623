/* pool.c — app threads and their queue (see pool.h). Lock order: pool lock,
 * then the GIL is never taken while holding it. A thread that finishes a task
 * and finds another waiting keeps the GIL and runs it straight away, saving a
 * GIL hand-off per request under load. */
#include "wsgi/pool.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "proxy/log.h"
#include "proxy/platform.h"
#include "proxy/request.h"
#include "wsgi/run.h"

struct queue_item {
    struct tf_request *req;
    struct queue_item *next;
};

struct wsgi_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;            /* signalled on push and on stop */
    struct queue_item *head, *tail; /* guarded by lock */
    unsigned queued, fresh_queued;  /* guarded by lock; fresh = new requests */
    unsigned running;               /* guarded by lock */
    unsigned queue_size;            /* read-only */
    bool stopping;                  /* guarded by lock */
    PyInterpreterState *interp;     /* read-only */
    unsigned n_threads;             /* read-only */
    pthread_t *threads;             /* main thread only */
};

static struct wsgi_pool *the_pool; /* for wsgi_pool_resubmit; set once at start */

static void push(struct wsgi_pool *pool, struct queue_item *item, bool fresh)
{
    item->next = NULL;
    if (pool->tail)
        pool->tail->next = item;
    else
        pool->head = item;
    pool->tail = item;
    pool->queued++;
    pool->fresh_queued += fresh;
    pthread_cond_signal(&pool->work);
}

/* Pop with the lock held; NULL if empty. */
static struct tf_request *pop(struct wsgi_pool *pool)
{
    struct queue_item *item = pool->head;
    if (!item)
        return NULL;
    pool->head = item->next;
    if (!pool->head)
        pool->tail = NULL;
    pool->queued--;
    struct tf_request *req = item->req;
    if (!req->backend_state)
        pool->fresh_queued--;
    free(item);
    return req;
}

int wsgi_pool_submit(void *backend, struct tf_request *req)
{
    struct wsgi_pool *pool = backend;
    struct queue_item *item = malloc(sizeof(*item));
    if (!item)
        return -1;
    item->req = req;
    pthread_mutex_lock(&pool->lock);
    if (pool->stopping || pool->fresh_queued >= pool->queue_size) {
        pthread_mutex_unlock(&pool->lock);
        free(item);
        return -1;
    }
    push(pool, item, true);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

void wsgi_pool_resubmit(struct tf_request *req)
{
    struct wsgi_pool *pool = the_pool;
    struct queue_item *item = malloc(sizeof(*item));
    while (!item) { /* cannot refuse: the request would be stranded */
        tf_log_error("out of memory queueing a response continuation; retrying");
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        item = malloc(sizeof(*item));
    }
    item->req = req;
    pthread_mutex_lock(&pool->lock);
    push(pool, item, false);
    pthread_mutex_unlock(&pool->lock);
}

static void *worker(void *arg)
{
    struct wsgi_pool *pool = arg;
    PyThreadState *ts = PyThreadState_New(pool->interp);
    if (!ts) {
        tf_log_error("cannot create a Python thread state for an app thread");
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        while (!pool->head && !pool->stopping)
            pthread_cond_wait(&pool->work, &pool->lock);
        struct tf_request *req = pop(pool);
        if (!req) { /* stopping and nothing left */
            pthread_mutex_unlock(&pool->lock);
            break;
        }
        pool->running++;
        pthread_mutex_unlock(&pool->lock);

        PyEval_RestoreThread(ts); /* take the GIL */
        while (req) {
            wsgi_run(req);
            pthread_mutex_lock(&pool->lock);
            req = pop(pool);
            if (!req)
                pool->running--;
            pthread_mutex_unlock(&pool->lock);
        }
        PyEval_SaveThread(); /* drop the GIL */
    }
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    return NULL;
}

struct wsgi_pool *wsgi_pool_new(unsigned queue_size)
{
    struct wsgi_pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    pool->queue_size = queue_size;
    the_pool = pool;
    return pool;
}

int wsgi_pool_start(struct wsgi_pool *pool, unsigned threads)
{
    pool->interp = PyInterpreterState_Main();
    pool->threads = calloc(threads, sizeof(pthread_t));
    if (!pool->threads)
        return -1;
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker, pool) != 0) {
            tf_log_error("cannot start app thread %u of %u", i + 1, threads);
            break;
        }
        pool->n_threads++;
    }
    return pool->n_threads ? 0 : -1;
}

unsigned wsgi_pool_busy(struct wsgi_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    unsigned n = pool->queued + pool->running;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void wsgi_pool_stop(struct wsgi_pool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->work);
    the_pool = NULL;
    free(pool);
}
