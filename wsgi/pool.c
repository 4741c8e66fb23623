/* pool.c — app threads and their queue (see pool.h). The GIL is never taken
 * while holding the pool lock.
 *
 * Scheduling, to keep GIL hand-offs rare: a thread that finishes a task and
 * finds another queued keeps the GIL and runs it straight away. Idle threads
 * take queued work only when no thread is active, or when the active ones
 * have made no progress for TF_POOL_STALL_US (blocked in I/O with the GIL
 * released, or running a slow page): then a slow request delays a fast one by
 * at most that long, while a busy server does not bounce the GIL between
 * threads on every request (8 threads contending cost 45% of throughput).
 *
 * A request that arrives on a network thread while nothing is queued runs
 * on that thread (tf_loop_step_away): no hand-off to an app thread and back,
 * which cost a third of the hello benchmark's throughput. Such a run counts
 * as running, so --threads still bounds the app calls at once; if it takes
 * long, another thread carries on with the network thread's connections.
 *
 * A request for a method and target the app has been answering fast runs
 * inline, before libmicrohttpd's call that read it returns
 * (wsgi_pool_run_inline, fastpath.h): no suspend and resume of its
 * connection, and no rescue either if it runs long after all. Every run of
 * a request, wherever it ran, tells fastpath.c how long it took; one whose
 * answer streamed without a length counts as long, and inline such a
 * stream is cut after TF_INLINE_STREAM_US (request.h): an event stream
 * must never hold a network thread. */
#include "wsgi/pool.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "proxy/log.h"
#include "proxy/loop.h"
#include "proxy/platform.h"
#include "proxy/request.h"
#include "wsgi/fastpath.h"
#include "wsgi/run.h"
#include "wsgi/signal_stack.h"

struct queue_item {
    struct tf_request *req;
    struct queue_item *next;
};

#define TF_POOL_STALL_US 1000
#define TF_POOL_SPIN_US 20 /* an inline run waits this long for another's GIL before sleeping */

/* One app thread. Idle threads form a stack: the most recently idle one is
 * woken first, so under light load one warm thread does all the work. */
struct app_thread {
    pthread_t id;
    pthread_cond_t wake;          /* signalled when popped off the idle stack */
    struct app_thread *next_idle; /* guarded by pool lock */
    bool idle;                    /* guarded by pool lock */
    struct wsgi_pool *pool;
};

struct wsgi_pool {
    pthread_mutex_t lock;
    struct app_thread *idle_top;    /* guarded by lock: stack of idle threads */
    struct queue_item *head, *tail; /* guarded by lock */
    unsigned queued;                /* guarded by lock */
    unsigned running;               /* guarded by lock: threads with a task */
    unsigned running_inline;        /* guarded by lock: of those, inline runs */
    int inline_in_python;           /* atomic: inline runs holding or taking the GIL */
    uint64_t last_progress;         /* guarded by lock: a running thread finished a task */
    unsigned queue_size;            /* read-only */
    bool stopping;                  /* guarded by lock */
    bool has_standby;               /* guarded by lock: a thread watches for stalls */
    PyInterpreterState *interp;     /* read-only */
    unsigned n_threads;             /* main thread only */
    unsigned max_running;           /* guarded by lock: the threads started */
    struct app_thread *threads;     /* main thread only (array) */
};


static struct wsgi_pool *the_pool; /* for run_here; set once at start */

/* With the lock held: wake the most recently idle thread, if any. */
static void wake_one(struct wsgi_pool *pool)
{
    struct app_thread *t = pool->idle_top;
    if (!t)
        return;
    pool->idle_top = t->next_idle;
    t->idle = false;
    pthread_cond_signal(&t->wake);
}

static void push(struct wsgi_pool *pool, struct queue_item *item)
{
    item->next = NULL;
    if (pool->tail)
        pool->tail->next = item;
    else
        pool->head = item;
    pool->tail = item;
    pool->queued++;
    /* Nobody running: wake a thread to run it. Someone running: it takes
     * this next, unless it stalls; make sure a standby watches for that. */
    if (pool->running == 0 || !pool->has_standby)
        wake_one(pool);
}

/* With the lock held: may an idle thread take queued work now? */
static bool should_take(struct wsgi_pool *pool, uint64_t now)
{
    return pool->head && pool->running < pool->max_running &&
           (pool->running == 0 || now - pool->last_progress >= TF_POOL_STALL_US);
}

static void wait_for_work(struct app_thread *self)
{
    struct wsgi_pool *pool = self->pool;
    self->idle = true;
    self->next_idle = pool->idle_top;
    pool->idle_top = self;
    if (pool->head && !pool->has_standby) {
        /* Queued but someone is running: this thread (the standby) looks
         * again after a stall; the others sleep until woken. */
        struct timespec deadline;
        tf_deadline_in(CLOCK_REALTIME, TF_POOL_STALL_US, &deadline);
        pool->has_standby = true;
        pthread_cond_timedwait(&self->wake, &pool->lock, &deadline);
        pool->has_standby = false;
    } else {
        pthread_cond_wait(&self->wake, &pool->lock);
    }
    if (self->idle) { /* timed out or spurious: take ourselves off the stack */
        struct app_thread **p = &pool->idle_top;
        while (*p != self)
            p = &(*p)->next_idle;
        *p = self->next_idle;
        self->idle = false;
    }
    if (should_take(pool, tf_now_us()) && pool->running > 0)
        wake_one(pool); /* stalled: let another thread stand by too */
}

/* Pop with the lock held; NULL if empty. An app thread pops, so runs:
 * if more is queued and no thread stands by, wake one to stand by
 * (wait_for_work), else nobody would take the rest beside this one when it
 * stalls. (The
 * standby itself could have been the only thread woken, again and again,
 * as a burst's network-thread runs ended: it then took the first queued
 * request with none running, and the other threads slept while it ran the
 * whole queue alone.) */
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
    free(item);
    if (pool->head && !pool->has_standby && pool->running < pool->max_running)
        wake_one(pool);
    return req;
}

/* With the lock held: a task ended at now (an app thread's or a network
 * thread's). */
static void task_done_at(struct wsgi_pool *pool, uint64_t now)
{
    pool->last_progress = now;
    pool->running--;
    if (pool->head) /* queued while it ran: hand it on */
        wake_one(pool);
}

static void task_done(struct wsgi_pool *pool)
{
    task_done_at(pool, tf_now_us());
}

static __thread PyThreadState *network_thread_state; /* kept for the thread's life */
static pthread_key_t state_key; /* deletes it when the thread ends */
static pthread_once_t state_key_once = PTHREAD_ONCE_INIT;

/* A network thread ends (the last loop is freed, before Python finalizes):
 * delete its thread state. Left alive, it would keep threading's shutdown
 * waiting when the app first imported threading on this thread. */
static void delete_thread_state(void *ts)
{
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    wsgi_signal_stack_remove();
}

static void make_state_key(void)
{
    pthread_key_create(&state_key, delete_thread_state);
}

static PyThreadState *network_thread_state_get(PyInterpreterState *interp)
{
    if (!network_thread_state) {
        pthread_once(&state_key_once, make_state_key);
        if (!(network_thread_state = PyThreadState_New(interp)))
            return NULL;
        pthread_setspecific(state_key, network_thread_state);
        wsgi_signal_stack_add(); /* for faulthandler: see signal_stack.h */
    }
    return network_thread_state;
}

/* The calling thread's marks (request.h) count from now. */
static void marks_restart(void)
{
    tf_request_thread_waited_us();
    tf_request_thread_streamed();
}

/* Tell fastpath.c how long a call that started at start took; returns
 * when it ended (now). One that
 * waited for its client (its body passed the memory mark) is never a fast
 * one, however quick: inline, with no client to wait for, its body would go
 * to the spill file, or be cut. Nor is one whose answer was streamed
 * without a length: an event stream that says little at first may stream
 * for ever later, and inline it would be cut. */
static uint64_t note_call(uint64_t key, uint64_t start)
{
    uint64_t now = tf_now_us(), took = now - start;
    bool waited = tf_request_thread_waited_us() > 0;
    bool streamed = tf_request_thread_streamed();
    wsgi_fastpath_note(key, (waited || streamed) && took < WSGI_FASTPATH_LONG_US
                                ? WSGI_FASTPATH_LONG_US : took);
    return now;
}

/* A thread takes req now: its wait for one of --threads (the queue wait
 * the profiler reports) ends here, not when the network thread handed it to
 * the pool, and before the thread waits for the GIL (app time, as any wait
 * for the GIL inside the call). Atomic only as a precaution: a queued app
 * request's connection is suspended, nothing else reads it meanwhile. */
static void mark_started(struct tf_request *req)
{
    __atomic_store_n(&req->t_dispatched, tf_now_us(), __ATOMIC_RELAXED);
}

/* Run a request with the GIL held; its time goes to fastpath.c. */
static void run_request(struct tf_request *req)
{
    uint64_t key = wsgi_fastpath_key(req->method, req->target); /* req may be gone after */
    marks_restart();
    uint64_t start = tf_now_us();
    wsgi_run(req);
    note_call(key, start);
}

/* A request run on the network thread that received it, stepped away from
 * its loop (counted in running by wsgi_pool_submit). */
static void run_here(void *arg)
{
    struct tf_request *req = arg;
    struct wsgi_pool *pool = the_pool;
    PyThreadState *ts = network_thread_state_get(pool->interp);
    if (!ts) {
        static int logged;
        if (!__atomic_exchange_n(&logged, 1, __ATOMIC_RELAXED))
            tf_log_error("cannot create a Python thread state for a network thread; its "
                         "requests go to the app threads");
        pthread_mutex_lock(&pool->lock);
        task_done(pool);
        struct queue_item *item = malloc(sizeof(*item));
        if (item) { /* an app thread runs it instead */
            item->req = req;
            push(pool, item);
        }
        pthread_mutex_unlock(&pool->lock);
        if (!item) {
            tf_request_respond(req, NULL, 503);
            tf_request_unref(req);
        }
        return;
    }
    mark_started(req);
    PyEval_RestoreThread(ts); /* take the GIL */
    run_request(req);
    PyEval_SaveThread();
    pthread_mutex_lock(&pool->lock);
    task_done(pool);
    pthread_mutex_unlock(&pool->lock);
}

/* Take the GIL for an inline run. While another inline run holds it (a
 * few microseconds of Python, on the other network thread), spin for up to
 * TF_POOL_SPIN_US first: a futex sleep and wake-up costs more than that
 * wait (hello at --io-threads 2: a median 13% more req/s over 12 same-run
 * rounds, 0.94 to 1.47). */
static void take_gil_after_inline(struct wsgi_pool *pool, PyThreadState *ts)
{
    uint64_t since = 0;
    for (unsigned n = 1; __atomic_load_n(&pool->inline_in_python, __ATOMIC_ACQUIRE); n++) {
        tf_cpu_relax();
        if (n % 64)
            continue;
        uint64_t now = tf_now_us();
        if (!since)
            since = now;
        else if (now - since >= TF_POOL_SPIN_US)
            break;
    }
    __atomic_add_fetch(&pool->inline_in_python, 1, __ATOMIC_ACQ_REL);
    PyEval_RestoreThread(ts);
}

/* A request body larger than this never runs inline: the app may take
 * long to read it (400 MB from the spool file held a network thread's other
 * clients for a second), and, unlike an answer's, its size is known before
 * the call. */
#define INLINE_BODY_MAX (64u * 1024u)

int wsgi_pool_run_inline(void *backend, struct tf_request *req)
{
    struct wsgi_pool *pool = backend;
    struct tf_loop *loop = tf_loop_current();
    if (!loop || !req->connection || req->tap) /* as run_here_now */
        return 0;
    if (req->body.size > INLINE_BODY_MAX)
        return 0;
    /* The server marked req dispatched just before this call, on this
     * thread (tf_inline_fn): the run starts then, and its queue wait ends
     * there (what mark_started does for the other runs). */
    uint64_t start = __atomic_load_n(&req->t_dispatched, __ATOMIC_RELAXED);
    if (!start)
        start = tf_now_us();
    uint64_t key = wsgi_fastpath_key(req->method, req->target);
    if (!wsgi_fastpath_ok(key, start))
        return 0;
    PyThreadState *ts = network_thread_state_get(pool->interp);
    unsigned runner = tf_loop_index(loop);
    if (!ts || wsgi_fastpath_begin(runner, start) < 0)
        return 0;
    pthread_mutex_lock(&pool->lock);
    /* Only beside other inline runs: a call on an app thread or stepped
     * away may be long, and hold the GIL this thread would wait for. */
    bool room = !pool->stopping && !pool->head && pool->running < pool->max_running &&
                pool->running == pool->running_inline;
    if (room) {
        if (pool->running++ == 0)
            pool->last_progress = start;
        pool->running_inline++;
    }
    pthread_mutex_unlock(&pool->lock);
    if (!room) {
        wsgi_fastpath_end(runner);
        return 0;
    }
    __atomic_store_n(&req->t_dispatched, start, __ATOMIC_RELAXED); /* mark_started's */
    take_gil_after_inline(pool, ts);
    marks_restart();
    wsgi_run(req);
    PyEval_SaveThread();
    __atomic_sub_fetch(&pool->inline_in_python, 1, __ATOMIC_RELEASE);
    wsgi_fastpath_end(runner);
    uint64_t end = note_call(key, start);
    pthread_mutex_lock(&pool->lock);
    pool->running_inline--;
    task_done_at(pool, end);
    pthread_mutex_unlock(&pool->lock);
    return 1;
}

/* With the lock held: run req on this network thread rather than queue it?
 * Only a client's request without a --mirror copy (a copy must never hold up
 * a connection, and the upstream copy of a request answered by the app runs
 * on this loop: it would wait for the app), with nothing queued before it
 * and room under --threads. */
static bool run_here_now(struct wsgi_pool *pool, struct tf_request *req)
{
    return req->connection && !req->tap && tf_loop_current() && !pool->head &&
           pool->running < pool->max_running;
}

bool wsgi_pool_idle(void *backend)
{
    struct wsgi_pool *pool = backend;
    pthread_mutex_lock(&pool->lock);
    bool idle = !pool->stopping && !pool->head && pool->running < pool->max_running;
    pthread_mutex_unlock(&pool->lock);
    return idle;
}

int wsgi_pool_submit(void *backend, struct tf_request *req)
{
    struct wsgi_pool *pool = backend;
    pthread_mutex_lock(&pool->lock);
    if (pool->stopping || pool->queued >= pool->queue_size) {
        pthread_mutex_unlock(&pool->lock);
        return -1;
    }
    if (run_here_now(pool, req)) {
        if (pool->running++ == 0)
            pool->last_progress = tf_now_us();
        pthread_mutex_unlock(&pool->lock);
        if (tf_loop_step_away(tf_loop_current(), run_here, req) == 0)
            return 0;
        pthread_mutex_lock(&pool->lock);
        task_done(pool);
    }
    struct queue_item *item = malloc(sizeof(*item));
    if (!item) {
        pthread_mutex_unlock(&pool->lock);
        return -1;
    }
    item->req = req;
    push(pool, item);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

static void *worker(void *arg)
{
    struct app_thread *self = arg;
    struct wsgi_pool *pool = self->pool;
    PyThreadState *ts = PyThreadState_New(pool->interp);
    if (!ts) {
        tf_log_error("cannot create a Python thread state for an app thread");
        return NULL;
    }
    wsgi_signal_stack_add(); /* for faulthandler: see signal_stack.h */
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        while (!should_take(pool, tf_now_us()) && !(pool->stopping && !pool->head))
            wait_for_work(self);
        struct tf_request *req = pop(pool);
        if (!req) { /* stopping and nothing left */
            pthread_mutex_unlock(&pool->lock);
            break;
        }
        if (pool->running++ == 0)
            pool->last_progress = tf_now_us();
        pthread_mutex_unlock(&pool->lock);

        mark_started(req);
        PyEval_RestoreThread(ts); /* take the GIL */
        while (req) {
            run_request(req);
            pthread_mutex_lock(&pool->lock);
            pool->last_progress = tf_now_us();
            req = pop(pool);
            if (req) {
                mark_started(req);
            } else {
                task_done(pool);
                if (pool->stopping) /* idle threads re-check and exit */
                    while (pool->idle_top)
                        wake_one(pool);
            }
            pthread_mutex_unlock(&pool->lock);
        }
        PyEval_SaveThread(); /* drop the GIL */
    }
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    wsgi_signal_stack_remove();
    return NULL;
}

struct wsgi_pool *wsgi_pool_new(unsigned queue_size)
{
    struct wsgi_pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pthread_mutex_init(&pool->lock, NULL);
    pool->queue_size = queue_size;
    the_pool = pool;
    return pool;
}

int wsgi_pool_start(struct wsgi_pool *pool, unsigned threads)
{
    pool->interp = PyInterpreterState_Main();
    pool->threads = calloc(threads, sizeof(*pool->threads));
    if (!pool->threads)
        return -1;
    pthread_mutex_lock(&pool->lock); /* already queued requests may start at once */
    pool->max_running = threads;
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < threads; i++) {
        struct app_thread *t = &pool->threads[i];
        t->pool = pool;
        pthread_cond_init(&t->wake, NULL);
        if (pthread_create(&t->id, NULL, worker, t) != 0) {
            tf_log_error("cannot start app thread %u of %u", i + 1, threads);
            break;
        }
        pool->n_threads++;
    }
    pthread_mutex_lock(&pool->lock);
    pool->max_running = pool->n_threads;
    pthread_mutex_unlock(&pool->lock);
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
    while (pool->idle_top)
        wake_one(pool);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->n_threads; i++) {
        pthread_join(pool->threads[i].id, NULL);
        pthread_cond_destroy(&pool->threads[i].wake);
    }
    free(pool->threads);
    pthread_mutex_destroy(&pool->lock);
    the_pool = NULL;
    free(pool);
}
