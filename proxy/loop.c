/* loop.c — event loops (see loop.h). A turn: run the posted calls, run the
 * ticks (each says how long it may sleep), wait in epoll_wait, call the
 * watchers of the ready descriptors, then run the calls that step away.
 * Posted calls wake a sleeping loop through an eventfd, written only when
 * the queue turns non-empty.
 *
 * Stepping away (tf_loop_step_away): the loop's thread runs a call that may
 * block with the loop left ownerless. It takes the loop back when the call
 * returns, unless the rescuer thread saw the loop away for TF_LOOP_AWAY_US
 * and handed it to a spare thread; the thread that stepped away then becomes
 * a spare itself. A loop is thus never run by two threads, and never stalls
 * for long: ownership passes by compare-and-swap on away_since. The crew
 * (the threads, the spares, the rescuer) is shared by every loop. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "proxy/loop.h"
#include "proxy/log.h"
#include "proxy/platform.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 64
#define TF_LOOP_AWAY_US 1000       /* a loop left longer than this gets another thread */
#define RESCUER_IDLE_SCANS 100     /* scans with no step-away before the rescuer sleeps */

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
    bool running;                   /* main thread: started and not stopped */
    pthread_mutex_t lock;           /* guards posted, stopping */
    struct posted *posted, *posted_tail;
    bool stopping;
    int attention;                  /* atomic, written under lock: posted is not empty or
                                       stopping is set; 0 lets a turn skip the lock */
    uint64_t away_since;            /* atomic: 0, or when its thread stepped away (monotonic us) */
    int away_threads;               /* atomic: threads in a call away from it (tf_loop_stop waits) */
    bool ended;                     /* guarded by crew.lock: stopped, no thread runs it */
    struct tf_loop *next_loop, *next_orphan; /* guarded by crew.lock */
    /* the thread running the loop only: */
    struct posted *away, *away_tail;/* calls to run stepped away, after this turn */
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

/* A call made and put at the end of a queue (head, tail). -1 on out of memory. */
static int enqueue(struct posted **head, struct posted **tail, tf_loop_call_fn fn, void *arg)
{
    struct posted *p = malloc(sizeof(*p));
    if (!p)
        return -1;
    *p = (struct posted){ fn, arg, NULL };
    if (*tail)
        (*tail)->next = p;
    else
        *head = p;
    *tail = p;
    return 0;
}

int tf_loop_post(struct tf_loop *loop, tf_loop_call_fn fn, void *arg)
{
    pthread_mutex_lock(&loop->lock);
    bool was_empty = !loop->posted;
    int rc = enqueue(&loop->posted, &loop->posted_tail, fn, arg);
    if (rc == 0)
        __atomic_store_n(&loop->attention, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&loop->lock);
    if (rc < 0)
        return -1;
    if (was_empty && current != loop) /* the loop itself runs them before it sleeps */
        tf_loop_wake(loop);
    return 0;
}

void tf_loop_run_posted(struct tf_loop *loop)
{
    pthread_mutex_lock(&loop->lock);
    struct posted *p = loop->posted;
    loop->posted = loop->posted_tail = NULL;
    __atomic_store_n(&loop->attention, loop->stopping, __ATOMIC_RELEASE);
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
    /* Away: whoever takes the loop back runs a whole turn before it sleeps.
     * A read-modify-write, not a load: the taker's compare-and-swap reads
     * from it, so what the caller set before (needs_run, a posted call) is
     * visible in that turn. */
    if (__atomic_fetch_add(&loop->away_since, 0, __ATOMIC_SEQ_CST))
        return;
    uint64_t one = 1;
    if (write(loop->wake_fd, &one, sizeof(one)) < 0) { /* EAGAIN: already signalled */ }
}

/* --- the crew: threads that run loops, spares, the rescuer ----------------- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t spare_cond;   /* spares wait for an orphan, or for the shutdown */
    pthread_cond_t rescuer_cond; /* the rescuer's sleep; shutdown wakes it */
    pthread_cond_t ended_cond;   /* a loop ended (tf_loop_stop waits) */
    struct tf_loop *loops;       /* every started loop not yet freed */
    struct tf_loop *orphans;     /* taken from a thread that stepped away, waiting for a spare */
    unsigned n_orphans, spares_idle;
    bool start_failed;           /* the last thread start failed (logged once) */
    pthread_t *threads;          /* every thread started since the crew formed */
    size_t n_threads;
    pthread_t rescuer;
    bool formed, shutting_down;
    int rescuer_asleep;          /* atomic */
    unsigned long aways;         /* atomic: step-aways so far (the rescuer's idle test) */
} crew = { .lock = PTHREAD_MUTEX_INITIALIZER };

static bool run(struct tf_loop *loop);

/* Wait for an orphan to run; NULL at shutdown. */
static struct tf_loop *wait_as_spare(void)
{
    pthread_mutex_lock(&crew.lock);
    crew.spares_idle++;
    while (!crew.orphans && !crew.shutting_down)
        pthread_cond_wait(&crew.spare_cond, &crew.lock);
    crew.spares_idle--;
    struct tf_loop *loop = crew.orphans;
    if (loop) {
        crew.orphans = loop->next_orphan;
        crew.n_orphans--;
    }
    pthread_mutex_unlock(&crew.lock);
    return loop;
}

/* A crew thread: runs its first loop (arg) until the loop stops or is
 * taken over while this thread is away, then waits as a spare. */
static void *crew_thread(void *arg)
{
    struct tf_loop *loop = arg;
    while (loop || (loop = wait_as_spare())) {
        char name[16];
        snprintf(name, sizeof(name), "tf-io-%u", loop->index);
        pthread_setname_np(pthread_self(), name);
        if (run(loop)) {
            pthread_mutex_lock(&crew.lock);
            loop->ended = true;
            pthread_cond_broadcast(&crew.ended_cond);
            pthread_mutex_unlock(&crew.lock);
        }
        pthread_setname_np(pthread_self(), "tf-io-spare");
        loop = NULL;
    }
    return NULL;
}

/* With crew.lock held: one more crew thread, first running loop. 0, or -1
 * with errno. */
static int add_thread(struct tf_loop *loop)
{
    pthread_t *grown = realloc(crew.threads, (crew.n_threads + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    crew.threads = grown;
    int rc = pthread_create(&crew.threads[crew.n_threads], NULL, crew_thread, loop);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    crew.n_threads++;
    return 0;
}

/* With crew.lock held: a thread for every orphan. The waiting spares take
 * as many; a new thread takes each of the rest. A start that fails is tried
 * again at the rescuer's next look. */
static void staff_orphans(void)
{
    while (crew.n_orphans > crew.spares_idle) {
        struct tf_loop *loop = crew.orphans;
        crew.orphans = loop->next_orphan;
        crew.n_orphans--;
        if (add_thread(loop) < 0) {
            loop->next_orphan = crew.orphans; /* back at the head, for the next look */
            crew.orphans = loop;
            crew.n_orphans++;
            if (!crew.start_failed)
                tf_log_error("cannot start a thread to run a network thread's loop (%s); "
                             "retrying every millisecond", strerror(errno));
            crew.start_failed = true;
            break;
        }
        crew.start_failed = false;
    }
    if (crew.n_orphans)
        pthread_cond_broadcast(&crew.spare_cond);
}

/* With crew.lock held: give a loop taken from its away thread to a spare. */
static void hand_over(struct tf_loop *loop)
{
    loop->next_orphan = NULL;
    struct tf_loop **tail = &crew.orphans;
    while (*tail)
        tail = &(*tail)->next_orphan;
    *tail = loop;
    crew.n_orphans++;
    staff_orphans();
}

/* With crew.lock held: take over every loop away for too long. True if
 * some loop is away. */
static bool rescue_stalled(void)
{
    bool any_away = false;
    uint64_t now = tf_now_us();
    for (struct tf_loop *loop = crew.loops; loop; loop = loop->next_loop) {
        uint64_t since = __atomic_load_n(&loop->away_since, __ATOMIC_SEQ_CST);
        if (!since)
            continue;
        any_away = true;
        if (since < now && now - since >= TF_LOOP_AWAY_US && /* since: maybe after now */
            __atomic_compare_exchange_n(&loop->away_since, &since, 0, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            hand_over(loop);
    }
    return any_away;
}

/* Looks at the loops every TF_LOOP_AWAY_US while they step away; sleeps
 * after RESCUER_IDLE_SCANS looks without a step-away (the next one wakes
 * it), so an idle server has no timer running. */
static void *rescuer(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "tf-io-rescuer");
    unsigned long seen = 0;
    unsigned quiet = 0;
    pthread_mutex_lock(&crew.lock);
    while (!crew.shutting_down) {
        bool any_away = rescue_stalled();
        staff_orphans(); /* again, if a thread start failed */
        unsigned long aways = __atomic_load_n(&crew.aways, __ATOMIC_RELAXED);
        quiet = aways == seen && !any_away ? quiet + 1 : 0;
        seen = aways;
        if (quiet >= RESCUER_IDLE_SCANS) {
            /* pairs with step_away: it marks the loop, then looks here */
            __atomic_store_n(&crew.rescuer_asleep, 1, __ATOMIC_SEQ_CST);
            if (!rescue_stalled())
                pthread_cond_wait(&crew.rescuer_cond, &crew.lock);
            __atomic_store_n(&crew.rescuer_asleep, 0, __ATOMIC_SEQ_CST);
            quiet = 0;
            continue;
        }
        struct timespec deadline;
        tf_deadline_in(CLOCK_MONOTONIC, TF_LOOP_AWAY_US, &deadline);
        pthread_cond_timedwait(&crew.rescuer_cond, &crew.lock, &deadline);
    }
    pthread_mutex_unlock(&crew.lock);
    return NULL;
}

/* With crew.lock held: conditions and the rescuer, for the first loop. */
static int form_crew(void)
{
    if (crew.formed)
        return 0;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&crew.rescuer_cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&crew.spare_cond, NULL);
    pthread_cond_init(&crew.ended_cond, NULL);
    int rc = pthread_create(&crew.rescuer, NULL, rescuer, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&crew.rescuer_cond);
        pthread_cond_destroy(&crew.spare_cond);
        pthread_cond_destroy(&crew.ended_cond);
        errno = rc;
        return -1;
    }
    crew.formed = true;
    return 0;
}

/* The last loop is freed: every crew thread is a spare now; end them all. */
static void disband_crew(void)
{
    pthread_mutex_lock(&crew.lock);
    if (!crew.formed || crew.loops) {
        pthread_mutex_unlock(&crew.lock);
        return;
    }
    crew.shutting_down = true;
    pthread_cond_broadcast(&crew.spare_cond);
    pthread_cond_signal(&crew.rescuer_cond);
    pthread_mutex_unlock(&crew.lock);
    pthread_join(crew.rescuer, NULL);
    for (size_t i = 0; i < crew.n_threads; i++)
        pthread_join(crew.threads[i], NULL);
    free(crew.threads);
    crew.threads = NULL;
    crew.n_threads = 0;
    pthread_cond_destroy(&crew.rescuer_cond);
    pthread_cond_destroy(&crew.spare_cond);
    pthread_cond_destroy(&crew.ended_cond);
    crew.formed = crew.shutting_down = false;
}

/* --- stepping away --------------------------------------------------------- */

int tf_loop_step_away(struct tf_loop *loop, tf_loop_call_fn fn, void *arg)
{
    return enqueue(&loop->away, &loop->away_tail, fn, arg);
}

/* Run the calls that step away, each with the loop ownerless. False when
 * the loop was taken over meanwhile: this thread no longer runs it. */
static bool step_away(struct tf_loop *loop)
{
    struct posted *p;
    while ((p = loop->away)) {
        loop->away = p->next;
        if (!loop->away)
            loop->away_tail = NULL;
        uint64_t since = tf_now_us();
        current = NULL;
        __atomic_add_fetch(&loop->away_threads, 1, __ATOMIC_SEQ_CST);
        __atomic_store_n(&loop->away_since, since, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&crew.aways, 1, __ATOMIC_RELAXED);
        if (__atomic_load_n(&crew.rescuer_asleep, __ATOMIC_SEQ_CST)) {
            pthread_mutex_lock(&crew.lock);
            pthread_cond_signal(&crew.rescuer_cond);
            pthread_mutex_unlock(&crew.lock);
        }
        p->fn(p->arg);
        free(p);
        bool kept = __atomic_compare_exchange_n(&loop->away_since, &since, 0, false,
                                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        /* taken over: the loop may be stopped and freed once this is 0 */
        __atomic_sub_fetch(&loop->away_threads, 1, __ATOMIC_SEQ_CST);
        if (!kept)
            return false;
        current = loop;
    }
    return true;
}

/* --- the loop itself --------------------------------------------------------- */

static void on_wake(void *ctx, int fd, uint32_t events)
{
    (void)ctx;
    (void)events;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0) { /* EAGAIN: another turn read it */ }
}

/* Turns until the loop stops (true), or until it is taken over while this
 * thread is away (false). */
static bool run(struct tf_loop *loop)
{
    current = loop;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        /* Without the lock when nothing is posted: a call posted after this
         * look, from another thread, wakes the loop (tf_loop_post); from
         * this one, the look below sees it. */
        if (__atomic_load_n(&loop->attention, __ATOMIC_ACQUIRE))
            tf_loop_run_posted(loop);
        long timeout = -1;
        for (size_t i = 0; i < loop->n_ticks; i++) {
            long t = loop->ticks[i].fn(loop->ticks[i].ctx);
            if (t >= 0 && (timeout < 0 || t < timeout))
                timeout = t;
        }
        if (loop->again || loop->away)
            timeout = 0;
        loop->again = false;
        bool stop = false;
        if (__atomic_load_n(&loop->attention, __ATOMIC_ACQUIRE)) {
            pthread_mutex_lock(&loop->lock);
            stop = loop->stopping && !loop->posted && !loop->away;
            if (loop->posted)
                timeout = 0;
            pthread_mutex_unlock(&loop->lock);
        }
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
        if (!step_away(loop))
            return false;
    }
    current = NULL;
    return true;
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
        tf_loop_watch(loop, loop->wake_fd, EPOLLIN, on_wake, NULL) < 0) {
        snprintf(err, errlen, "cannot start network thread %u: %s", index, strerror(errno));
        tf_loop_free(loop);
        return NULL;
    }
    pthread_mutex_lock(&crew.lock);
    bool started = form_crew() == 0 && add_thread(loop) == 0;
    if (started) {
        loop->next_loop = crew.loops;
        crew.loops = loop;
    } else {
        snprintf(err, errlen, "cannot start network thread %u: %s", index, strerror(errno));
    }
    pthread_mutex_unlock(&crew.lock);
    if (!started) {
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
    __atomic_store_n(&loop->attention, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&loop->lock);
    tf_loop_wake(loop);
    pthread_mutex_lock(&crew.lock);
    while (!loop->ended)
        pthread_cond_wait(&crew.ended_cond, &crew.lock);
    pthread_mutex_unlock(&crew.lock);
    /* a thread whose loop was taken over may still be on its way back */
    while (__atomic_load_n(&loop->away_threads, __ATOMIC_SEQ_CST)) {
        struct timespec ms = { 0, 1000000L };
        nanosleep(&ms, NULL);
    }
    loop->running = false;
}

void tf_loop_free(struct tf_loop *loop)
{
    if (!loop)
        return;
    tf_loop_stop(loop);
    tf_loop_run_posted(loop);
    pthread_mutex_lock(&crew.lock);
    for (struct tf_loop **p = &crew.loops; *p; p = &(*p)->next_loop) {
        if (*p == loop) {
            *p = loop->next_loop;
            break;
        }
    }
    pthread_mutex_unlock(&crew.lock);
    disband_crew(); /* when it was the last */
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
