/* loop.c — event loops (see loop.h). A turn: run the posted calls, run the
 * ticks (each says how long it may sleep), wait in epoll_wait, call the
 * watchers of the ready descriptors. Posted calls wake a sleeping loop
 * through an eventfd, written only when the queue turns non-empty. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "proxy/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 64

struct posted {
    tf_loop_call_fn fn;
    void *arg;
    struct posted *next;
};

struct watch {
    tf_loop_fd_fn fn;   /* NULL: not watched */
    void *ctx;
    uint32_t gen;       /* which watch of this descriptor number (see run) */
};

struct tick {
    tf_loop_tick_fn fn;
    void *ctx;
};

struct tf_loop {
    unsigned index;
    int epoll_fd, wake_fd;
    pthread_t thread;
    bool running;                   /* main thread: the thread was started and not joined */
    pthread_mutex_t lock;           /* guards posted, stopping */
    struct posted *posted, *posted_tail;
    bool stopping;
    /* the loop's thread only: */
    bool again;                     /* tf_loop_wake from the loop itself: no sleep this turn */
    uint32_t last_gen;
    struct watch *watches;          /* by descriptor */
    size_t n_watches;
    struct tick *ticks;
    size_t n_ticks;
};

static __thread struct tf_loop *current;

struct tf_loop *tf_loop_current(void)
{
    return current;
}

unsigned tf_loop_index(const struct tf_loop *loop)
{
    return loop->index;
}

int tf_loop_post(struct tf_loop *loop, tf_loop_call_fn fn, void *arg)
{
    struct posted *p = malloc(sizeof(*p));
    if (!p)
        return -1;
    p->fn = fn;
    p->arg = arg;
    p->next = NULL;
    pthread_mutex_lock(&loop->lock);
    bool was_empty = !loop->posted;
    if (loop->posted_tail)
        loop->posted_tail->next = p;
    else
        loop->posted = p;
    loop->posted_tail = p;
    pthread_mutex_unlock(&loop->lock);
    if (was_empty && current != loop) /* the loop itself runs them before it sleeps */
        tf_loop_wake(loop);
    return 0;
}

void tf_loop_run_posted(struct tf_loop *loop)
{
    pthread_mutex_lock(&loop->lock);
    struct posted *p = loop->posted;
    loop->posted = loop->posted_tail = NULL;
    pthread_mutex_unlock(&loop->lock);
    while (p) {
        struct posted *next = p->next;
        p->fn(p->arg);
        free(p);
        p = next;
    }
}

struct sync_call {
    tf_loop_sync_fn fn;
    void *arg;
    int rc;
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    bool done;
};

static void run_sync(void *arg)
{
    struct sync_call *c = arg;
    int rc = c->fn(c->arg);
    pthread_mutex_lock(&c->lock);
    c->rc = rc;
    c->done = true;
    pthread_cond_signal(&c->done_cond);
    pthread_mutex_unlock(&c->lock);
}

int tf_loop_call(struct tf_loop *loop, tf_loop_sync_fn fn, void *arg)
{
    if (current == loop || !loop->running)
        return fn(arg);
    struct sync_call c = { .fn = fn, .arg = arg, .rc = -1 };
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.done_cond, NULL);
    if (tf_loop_post(loop, run_sync, &c) == 0) {
        pthread_mutex_lock(&c.lock);
        while (!c.done)
            pthread_cond_wait(&c.done_cond, &c.lock);
        pthread_mutex_unlock(&c.lock);
    }
    pthread_cond_destroy(&c.done_cond);
    pthread_mutex_destroy(&c.lock);
    return c.rc;
}

int tf_loop_watch(struct tf_loop *loop, int fd, uint32_t events, tf_loop_fd_fn fn, void *ctx)
{
    if (fd < 0)
        return -1;
    if ((size_t)fd >= loop->n_watches) {
        size_t n = loop->n_watches ? loop->n_watches : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct watch *grown = realloc(loop->watches, n * sizeof(*grown));
        if (!grown)
            return -1;
        memset(grown + loop->n_watches, 0, (n - loop->n_watches) * sizeof(*grown));
        loop->watches = grown;
        loop->n_watches = n;
    }
    bool known = loop->watches[fd].fn != NULL;
    uint32_t gen = known ? loop->watches[fd].gen : ++loop->last_gen;
    struct epoll_event ev = { .events = events, .data.u64 = (uint64_t)gen << 32 | (uint32_t)fd };
    if (epoll_ctl(loop->epoll_fd, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) < 0)
        return -1;
    loop->watches[fd] = (struct watch){ fn, ctx, gen };
    return 0;
}

void tf_loop_unwatch(struct tf_loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->n_watches || !loop->watches[fd].fn)
        return;
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, fd, NULL); /* ENOENT/EBADF: closed already */
    loop->watches[fd].fn = NULL;
}

int tf_loop_add_tick(struct tf_loop *loop, tf_loop_tick_fn fn, void *ctx)
{
    struct tick *grown = realloc(loop->ticks, (loop->n_ticks + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    loop->ticks = grown;
    loop->ticks[loop->n_ticks++] = (struct tick){ fn, ctx };
    return 0;
}

void tf_loop_remove_tick(struct tf_loop *loop, tf_loop_tick_fn fn, void *ctx)
{
    for (size_t i = 0; i < loop->n_ticks; i++) {
        if (loop->ticks[i].fn == fn && loop->ticks[i].ctx == ctx) {
            loop->ticks[i] = loop->ticks[--loop->n_ticks];
            return;
        }
    }
}

void tf_loop_wake(struct tf_loop *loop)
{
    if (current == loop) {
        loop->again = true;
        return;
    }
    uint64_t one = 1;
    if (write(loop->wake_fd, &one, sizeof(one)) < 0) { /* EAGAIN: already signalled */ }
}

static void on_wake(void *ctx, int fd, uint32_t events)
{
    (void)ctx;
    (void)events;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0) { /* EAGAIN: another turn read it */ }
}

static void *run(void *arg)
{
    struct tf_loop *loop = arg;
    current = loop;
    char name[16];
    snprintf(name, sizeof(name), "tf-io-%u", loop->index);
    pthread_setname_np(pthread_self(), name);
    tf_loop_watch(loop, loop->wake_fd, EPOLLIN, on_wake, NULL);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        tf_loop_run_posted(loop);
        long timeout = -1;
        for (size_t i = 0; i < loop->n_ticks; i++) {
            long t = loop->ticks[i].fn(loop->ticks[i].ctx);
            if (t >= 0 && (timeout < 0 || t < timeout))
                timeout = t;
        }
        if (loop->again)
            timeout = 0;
        loop->again = false;
        pthread_mutex_lock(&loop->lock);
        bool stop = loop->stopping && !loop->posted;
        if (loop->posted)
            timeout = 0;
        pthread_mutex_unlock(&loop->lock);
        if (stop)
            break;
        int n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS,
                           timeout > 1000 ? 1000 : (int)timeout);
        for (int i = 0; i < n; i++) {
            /* skip a descriptor unwatched this turn, and one closed and
             * reused since: its number is watched again, under a new gen */
            int fd = (int)(uint32_t)events[i].data.u64;
            uint32_t gen = (uint32_t)(events[i].data.u64 >> 32);
            struct watch *w = &loop->watches[fd];
            if (w->fn && w->gen == gen)
                w->fn(w->ctx, fd, events[i].events);
        }
    }
    current = NULL;
    return NULL;
}

struct tf_loop *tf_loop_start(unsigned index, char *err, size_t errlen)
{
    struct tf_loop *loop = calloc(1, sizeof(*loop));
    if (!loop) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    loop->index = index;
    pthread_mutex_init(&loop->lock, NULL);
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->epoll_fd < 0 || loop->wake_fd < 0 ||
        pthread_create(&loop->thread, NULL, run, loop) != 0) {
        snprintf(err, errlen, "cannot start network thread %u: %s", index, strerror(errno));
        tf_loop_free(loop);
        return NULL;
    }
    loop->running = true;
    return loop;
}

void tf_loop_stop(struct tf_loop *loop)
{
    if (!loop || !loop->running)
        return;
    pthread_mutex_lock(&loop->lock);
    loop->stopping = true;
    pthread_mutex_unlock(&loop->lock);
    tf_loop_wake(loop);
    pthread_join(loop->thread, NULL);
    loop->running = false;
}

void tf_loop_free(struct tf_loop *loop)
{
    if (!loop)
        return;
    tf_loop_stop(loop);
    tf_loop_run_posted(loop);
    if (loop->epoll_fd >= 0)
        close(loop->epoll_fd);
    if (loop->wake_fd >= 0)
        close(loop->wake_fd);
    free(loop->watches);
    free(loop->ticks);
    pthread_mutex_destroy(&loop->lock);
    free(loop);
}

struct tf_loop **tf_loops_start(unsigned n, char *err, size_t errlen)
{
    struct tf_loop **loops = calloc(n ? n : 1, sizeof(*loops));
    if (!loops) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        if (!(loops[i] = tf_loop_start(i, err, errlen))) {
            tf_loops_free(loops, i);
            return NULL;
        }
    }
    return loops;
}

void tf_loops_stop(struct tf_loop **loops, unsigned n)
{
    for (unsigned i = 0; loops && i < n; i++)
        tf_loop_stop(loops[i]);
}

void tf_loops_free(struct tf_loop **loops, unsigned n)
{
    for (unsigned i = 0; loops && i < n; i++)
        tf_loop_free(loops[i]);
    free(loops);
}
