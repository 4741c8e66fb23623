/* front_profile.c — the profiler controls of a front with --workers. The
 * profile lives in the workers, so Start/Stop/Clear go to every worker and
 * each page first adds up what the workers have: their latency registries
 * (merged into this process's, which serves no requests itself) and, for
 * the function pages, their call trees (format "tree"). A worker that stops
 * (a reload, or the server's stop) hands its profile over first; the front
 * keeps what those had, and writes the stop's profile files from it once
 * every worker is gone.
 * A worker that dies without doing so leaves the latency the front last
 * pulled from it (at each page, and every PULL_US on a thread of its own):
 * the counters a Prometheus scrape has seen must never go down, except on
 * Clear. Only the control port's threads (pages, hand-overs, Clear)
 * rebuild this process's registry, one at a time (latency_lock) and each
 * at once (prof_latency_merge), so a page never renders one half rebuilt. */
#define _GNU_SOURCE /* pipe2 */
#include "proxy/front_profile.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy/fetch.h"
#include "proxy/log.h"
#include "proxy/loop.h"
#include "profiler/hook.h"
#include "profiler/latency.h"

static struct tf_workers *workers;       /* set once before serving */
static const char *profile_path;
static unsigned max_nodes;               /* --profile-max-nodes, for the log */
/* One latency merge at a time: this process's latency registry and what it
 * is made of (below). */
static pthread_mutex_t latency_lock = PTHREAD_MUTEX_INITIALIZER;
/* One user of this process's call tree at a time (a merge, then an export
 * or the function table read it; a hand-over; Clear; a request's own tree
 * asked of the workers, as one reader at a time in a single process);
 * taken before latency_lock where both are (Clear), so that no page's
 * latency waits behind it. A network thread's page or export does not wait
 * for it (errno EBUSY, as for a single process's trees: hook_export.c): an
 * export of a big tree takes seconds, and the page's latency part needs
 * none of it. The main thread's (the stop's files) does. */
static pthread_mutex_t tree_lock = PTHREAD_MUTEX_INITIALIZER;
/* What the workers that have stopped measured: a latency dump (under
 * latency_lock) and a tree dump (under tree_lock); NULL: nothing. */
static char *kept_latency, *kept_tree;
static size_t kept_tree_len;
/* Under tree_lock: this process's merged tree passed the node cap since
 * start or Clear, and the log said so. */
static bool cap_said;
/* Under latency_lock: the latency dump last pulled from each worker still
 * measuring (or dead and not yet moved to dead_dumps), by origin. */
struct last_pulled {
    char *origin, *dump;
    bool answered;             /* in the current pull: its in-flight count is current */
};
static struct last_pulled *pulled;
static size_t n_pulled;
/* Under latency_lock: the last pulls of workers that died without handing
 * their profile over, counted with kept_latency. */
static char **dead_dumps;
static size_t n_dead;
/* Workers reaped while latency_lock was busy, for its next holder (under
 * lost_lock, which is never held long: the main thread reaps). */
static pthread_mutex_t lost_lock = PTHREAD_MUTEX_INITIALIZER;
static char **lost_origins;
static size_t n_lost;
#define PULL_US 2000000u       /* the puller thread pulls this often */
/* Orders Start/Stop against a new generation's welcome (front_welcome). */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;

/* A byte here (tf_front_profile_stop) makes ask_workers' requests (the
 * puller's and the pages') give up at once, then and from then on; not a
 * hand-over's (front_absorb), nor a new worker's welcome. */
static int quit_pipe[2] = { -1, -1 };
static bool quitting; /* atomic: that byte was written */
static bool cut;      /* atomic: tf_front_profile_cut, no export from now on */

/* tf_fetch_all's give_up: the quit byte is there, so every worker left unanswered is
 * given up on. */
static bool stop_asking(void *unused)
{
    (void)unused;
    return true; /* the byte stays: every later wait gives up too */
}

/* What ask_workers got: every worker's answer; not, because
 * tf_front_profile_stop left some worker unanswered (it is still running,
 * its profile not handed over yet); or not, because some worker gave none
 * in time, or another than expected (logged). In the last two, what the
 * answers make up leaves a worker out. */
enum asked { ASKED_ALL, ASKED_CUT_SHORT, ASKED_SOME_SILENT };

/* Call fn with each worker's answer to method + path (status 200 or 303,
 * or also, which some are expected to give; 0: none), all asked at once,
 * each awaited limit_ms, or until tf_front_profile_stop. On the main
 * thread only once every worker is gone (the stop's files, made of what
 * they handed over): none is asked, so its signals and reaping never wait
 * for one. */
static enum asked ask_workers(const char *method, const char *path, unsigned also, long limit_ms,
                              void (*fn)(const char *origin, struct tf_fetched *f, void *arg),
                              void *arg)
{
    size_t n = 0;
    char **origins = tf_workers_origins(workers, &n);
    struct tf_fetched *f = calloc(n ? n : 1, sizeof(*f));
    if (!f)
        tf_log_error("profile: out of memory asking the workers for %s", path);
    else if (n)
        tf_fetch_all((const char *const *)origins, n, method, path, limit_ms, f, quit_pipe[0],
                     stop_asking, NULL);
    bool quit = __atomic_load_n(&quitting, __ATOMIC_ACQUIRE), cut_short = false, silent = !f;
    for (size_t i = 0; f && i < n; i++) {
        if (f[i].status == 200 || f[i].status == 303 || (also && f[i].status == also)) {
            fn(origins[i], &f[i], arg);
        } else if (f[i].refused && !quit) { /* dead, not reaped yet: its profile went with it */
            tf_log_info("profile: worker %s is gone (its control port refuses): left out of "
                        "%s %.*s", origins[i], method, (int)strcspn(path, "?"), path);
        } else {
            silent = true;
            if (!quit && f[i].status) /* the path without its query: never logged raw */
                tf_log_error("profile: worker %s answered %s %.*s with status %u", origins[i],
                             method, (int)strcspn(path, "?"), path, f[i].status);
            else if (!quit)
                tf_log_error("profile: worker %s did not answer %s %.*s within %ld s",
                             origins[i], method, (int)strcspn(path, "?"), path,
                             limit_ms / 1000);
        }
        cut_short = cut_short || (quit && !f[i].status);
        tf_fetched_free(&f[i]);
    }
    free(f);
    tf_workers_origins_free(origins, n);
    return cut_short ? ASKED_CUT_SHORT : silent ? ASKED_SOME_SILENT : ASKED_ALL;
}

static void ignore(const char *origin, struct tf_fetched *f, void *arg)
{
    (void)origin, (void)f, (void)arg;
}

/* POST one of start, stop, clear to every worker. */
static void broadcast(const char *action)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", profile_path, action);
    ask_workers("POST", path, 0, TF_FETCH_LIMIT_MS, ignore, NULL);
}

static void front_enable(bool on)
{
    pthread_mutex_lock(&state_lock);
    prof_hook_enable(on);
    broadcast(on ? "start" : "stop");
    pthread_mutex_unlock(&state_lock);
}

/* A worker of a new generation started from the command line's --profile:
 * give it the page's Start/Stop state. */
static void front_welcome(const char *origin)
{
    char path[4200];
    pthread_mutex_lock(&state_lock);
    snprintf(path, sizeof(path), "%s/%s", profile_path, prof_hook_enabled() ? "start" : "stop");
    struct tf_fetched f;
    if (tf_fetch(origin, "POST", path, TF_FETCH_LIMIT_MS, &f) < 0 || f.status != 303)
        tf_log_error("profile: worker %s did not take the profiling state (status %u)", origin,
                     f.status);
    tf_fetched_free(&f);
    pthread_mutex_unlock(&state_lock);
}

static void front_clear(void)
{
    pthread_mutex_lock(&tree_lock); /* first: latency_lock is never held waiting for it */
    pthread_mutex_lock(&latency_lock);
    prof_hook_clear();
    broadcast("clear");
    free(kept_latency);
    free(kept_tree);
    kept_latency = kept_tree = NULL;
    for (size_t i = 0; i < n_pulled; i++) {
        free(pulled[i].origin);
        free(pulled[i].dump);
    }
    n_pulled = 0;
    for (size_t i = 0; i < n_dead; i++)
        free(dead_dumps[i]);
    n_dead = 0;
    cap_said = false;
    pthread_mutex_unlock(&latency_lock);
    pthread_mutex_unlock(&tree_lock);
}

/* Under latency_lock: origin's entry in pulled, or NULL. */
static struct last_pulled *find_pulled(const char *origin)
{
    for (size_t i = 0; i < n_pulled; i++)
        if (!strcmp(pulled[i].origin, origin))
            return &pulled[i];
    return NULL;
}

/* Under latency_lock: origin's last dump, which is no longer kept there
 * (malloc'd; NULL if the front never had one). */
static char *forget_pulled(const char *origin)
{
    struct last_pulled *p = find_pulled(origin);
    if (!p)
        return NULL;
    char *dump = p->dump;
    free(p->origin);
    *p = pulled[--n_pulled];
    return dump;
}

/* ask_workers: keep the worker's answer as what the front last had of it.
 * Out of memory keeps the previous one. */
static void remember(const char *origin, struct tf_fetched *f, void *arg)
{
    (void)arg;
    struct last_pulled *p = find_pulled(origin);
    if (!f->body)
        return;
    if (!p) {
        struct last_pulled *grown = realloc(pulled, (n_pulled + 1) * sizeof(*pulled));
        char *copy = strdup(origin);
        if (grown)
            pulled = grown;
        if (!grown || !copy) {
            free(copy);
            return;
        }
        p = &pulled[n_pulled++];
        *p = (struct last_pulled){ copy, NULL, false };
    }
    free(p->dump);
    p->dump = f->body; /* taken over */
    f->body = NULL;
    p->answered = true;
}

/* Ask every worker for its latency. Call with latency_lock. */
static void pull_latency(void)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/latency-dump", profile_path);
    for (size_t i = 0; i < n_pulled; i++)
        pulled[i].answered = false;
    /* one cut short or silent counts as last pulled */
    ask_workers("GET", path, 0, TF_FETCH_LIMIT_MS, remember, NULL);
}

/* Under latency_lock: a dead worker's last pull joins dead_dumps (nothing if
 * the front never had one; out of memory leaves it counted in pulled). */
static void bury(const char *origin)
{
    struct last_pulled *p = find_pulled(origin);
    char **grown = p ? realloc(dead_dumps, (n_dead + 1) * sizeof(*dead_dumps)) : NULL;
    if (!grown) {
        if (p)
            tf_log_error("profile: out of memory keeping the latency of dead worker %s", origin);
        return;
    }
    dead_dumps = grown;
    dead_dumps[n_dead++] = forget_pulled(origin);
    if (dead_dumps[n_dead - 1]) /* its call trees went with it: no links to them */
        prof_latency_dump_forget_trees(dead_dumps[n_dead - 1]);
    tf_log_info("profile: kept the latency worker %s had when last asked", origin);
}

/* Under latency_lock, before letting it go: the workers reaped meanwhile. */
static void bury_lost(void)
{
    pthread_mutex_lock(&lost_lock);
    for (size_t i = 0; i < n_lost; i++) {
        bury(lost_origins[i]);
        free(lost_origins[i]);
    }
    n_lost = 0;
    pthread_mutex_unlock(&lost_lock);
}

/* This process's registry := kept_latency, the dead workers' last pulls and
 * every worker's last pull (one that did not answer the last pull counts as
 * it was before); with handed (a stopping worker's dump, no longer among
 * those), kept_latency := kept_latency + handed first, in the same hold of
 * the registry's lock (a page drawn meanwhile never sees that part alone).
 * Control threads, with latency_lock. *in_flight: the requests in flight
 * of those that answered. -1 on out of memory (logged; handed may be lost,
 * else the registry stays as the last merge left it). */
static int load_latency(const char *handed, int *in_flight)
{
    int stale = 0, rc = 0;
    struct prof_latency_source *src = calloc(1 + n_dead + n_pulled, sizeof(*src));
    size_t n = 0;
    *in_flight = 0;
    if (!src) {
        tf_log_error("profile: out of memory adding up the workers' latency");
        return -1;
    }
    src[n++] = (struct prof_latency_source){ kept_latency, NULL };
    for (size_t i = 0; i < n_dead; i++)
        src[n++] = (struct prof_latency_source){ dead_dumps[i], &stale };
    for (size_t i = 0; i < n_pulled; i++)
        src[n++] = (struct prof_latency_source){ pulled[i].dump,
                                                 pulled[i].answered ? in_flight : &stale };
    if (handed) {
        const struct prof_latency_source keep[] = { { kept_latency, NULL }, { handed, NULL } };
        char *kept = NULL;
        rc = prof_latency_merge_keeping(keep, 2, &kept, src + 1, n - 1);
        if (kept) { /* the sum, even if the whole then ran out of memory */
            free(kept_latency);
            kept_latency = kept;
        }
    } else {
        rc = prof_latency_merge(src, n);
    }
    if (rc < 0)
        tf_log_error("profile: out of memory adding up the workers' latency");
    free(src);
    return rc;
}

/* Add a tree dump to this process's call tree, which has the node cap a
 * worker's has: the log says once per Clear when the merge passes it (the
 * workers' own trees may all be under it). Call with tree_lock; -1 when
 * malformed. */
static int import_tree(const char *text, size_t len)
{
    int rc = prof_hook_import(text, len);
    if (rc > 0 && !cap_said) {
        cap_said = true;
        tf_log_error("profile: --profile-max-nodes (%u) reached merging the workers' call "
                     "trees: calls on call paths not yet in the merge are counted, not "
                     "recorded, until Clear (the profile page says how many)", max_nodes);
    }
    return rc;
}

static void load_kept_tree(void)
{
    prof_hook_clear();
    if (kept_tree && import_tree(kept_tree, kept_tree_len) < 0)
        tf_log_error("profile: the stopped workers' call tree is unreadable");
}

/* This process's latency registry := what the stopped workers had plus
 * every worker's now. Returns requests in flight. */
static int front_refresh(void)
{
    pthread_mutex_lock(&latency_lock);
    pull_latency();
    bury_lost();
    int in_flight;
    load_latency(NULL, &in_flight);
    pthread_mutex_unlock(&latency_lock);
    return in_flight;
}

/* The puller's: tf_front_profile_stop ends it (before the workers' list
 * and the configuration it reads are freed). */
static pthread_mutex_t puller_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t puller_wake;  /* on CLOCK_MONOTONIC */
static bool puller_running, puller_stop;
static pthread_t puller_thread;

/* Every PULL_US, each worker's latency, kept in case the worker dies
 * without handing it over; a round is skipped while a page merges (it pulls
 * too). Its own thread: a worker slow to answer (stopped, swapping) never
 * holds up the main thread's signals and reaping. */
static void *puller(void *unused)
{
    (void)unused;
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += PULL_US / 1000000u;
        pthread_mutex_lock(&puller_lock);
        while (!puller_stop && pthread_cond_timedwait(&puller_wake, &puller_lock, &until) == 0)
            ;
        bool stop = puller_stop;
        pthread_mutex_unlock(&puller_lock);
        if (stop)
            return NULL;
        if (pthread_mutex_trylock(&latency_lock) != 0)
            continue;
        pull_latency();
        bury_lost();
        pthread_mutex_unlock(&latency_lock);
    }
}

void tf_front_profile_stop(void)
{
    __atomic_store_n(&quitting, true, __ATOMIC_RELEASE); /* before the byte wakes them */
    if (quit_pipe[1] >= 0 && write(quit_pipe[1], "q", 1) != 1) { /* empty: cannot fail */ }
    if (!puller_running)
        return;
    pthread_mutex_lock(&puller_lock);
    puller_stop = true;
    pthread_cond_signal(&puller_wake);
    pthread_mutex_unlock(&puller_lock);
    pthread_join(puller_thread, NULL); /* its pull, if one is under way, gave up */
    puller_running = false;
}

/* A worker died without handing its profile over: its last pull is counted
 * with the stopped workers'. Main thread: never waits for a merge (one may
 * take seconds), whose holder takes it over then; until that, the pull
 * still counts among the workers'. */
static void front_lost(const char *origin)
{
    if (pthread_mutex_trylock(&latency_lock) == 0) {
        bury(origin);
        pthread_mutex_unlock(&latency_lock);
        return;
    }
    pthread_mutex_lock(&lost_lock);
    char **grown = realloc(lost_origins, (n_lost + 1) * sizeof(*lost_origins));
    char *copy = strdup(origin);
    if (grown)
        lost_origins = grown;
    if (grown && copy)
        lost_origins[n_lost++] = copy;
    else
        free(copy); /* out of memory: its last pull stays among the workers' */
    pthread_mutex_unlock(&lost_lock);
}

static void add_tree(const char *origin, struct tf_fetched *f, void *arg)
{
    (void)arg;
    if (!f->body || import_tree(f->body, f->len) < 0)
        tf_log_error("profile: unreadable call tree from worker %s", origin);
}

/* This process's function profile := what the stopped workers had plus
 * the merge of every worker's. Call with tree_lock. -1 when it leaves a
 * worker out: errno EAGAIN when the server's stop did, ETIMEDOUT when the
 * worker sent no tree in time (logged, naming it). */
static int merge_trees(void)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/tree", profile_path);
    load_kept_tree();
    enum asked asked = ask_workers("GET", path, 0, TF_FETCH_LIMIT_MS, add_tree, NULL);
    if (asked == ASKED_ALL)
        return 0;
    errno = asked == ASKED_CUT_SHORT ? EAGAIN : ETIMEDOUT;
    return -1;
}

/* tree_lock for a page or export: a network thread does not wait for it
 * (false), the main thread (the stop's files) does. */
static bool take_tree_lock(void)
{
    if (tf_loop_current())
        return pthread_mutex_trylock(&tree_lock) == 0;
    pthread_mutex_lock(&tree_lock);
    return true;
}

/* kept_tree := kept_tree + origin's answer f. Call with tree_lock; -1
 * (kept_tree unchanged) on failure. */
static int keep_tree(const char *origin, struct tf_fetched *f)
{
    size_t tlen = 0;
    load_kept_tree();
    add_tree(origin, f, NULL);
    char *t = prof_hook_export("tree", &tlen);
    if (!t)
        return -1;
    free(kept_tree);
    kept_tree = t, kept_tree_len = tlen;
    return 0;
}

/* A worker (on its control port) is stopping, its requests done: what it
 * measured joins what the stopped workers had, and it is not asked again
 * (its latency as last pulled, if it cannot tell now). false if it is not
 * a worker still measuring. */
static bool front_absorb(unsigned port)
{
    char origin[48], latency_path[4200], tree_path[4200];
    snprintf(origin, sizeof(origin), "http://127.0.0.1:%u", port);
    snprintf(latency_path, sizeof(latency_path), "%s/latency-dump", profile_path);
    snprintf(tree_path, sizeof(tree_path), "%s/tree", profile_path);
    /* its tree first, with tree_lock alone: a merge asks the worker, or
     * finds its tree kept; and no page's latency waits meanwhile (behind an
     * export, say) */
    pthread_mutex_lock(&tree_lock);
    bool known = tf_workers_measuring(workers, origin, false);
    if (known) {
        struct tf_fetched tree = { 0 };
        if (tf_fetch(origin, "GET", tree_path, TF_FETCH_LIMIT_MS, &tree) < 0 ||
            tree.status != 200 || keep_tree(origin, &tree) < 0)
            tf_log_error("profile: the call tree of stopping worker %s could not be kept", origin);
        tf_fetched_free(&tree);
        tf_workers_measuring(workers, origin, true); /* no longer asked, for either */
    }
    pthread_mutex_unlock(&tree_lock);
    if (!known)
        return false;
    /* then its latency: its last pull counts until then */
    pthread_mutex_lock(&latency_lock);
    struct tf_fetched latency = { 0 };
    char *last = forget_pulled(origin);
    bool got = tf_fetch(origin, "GET", latency_path, TF_FETCH_LIMIT_MS, &latency) == 0 &&
               latency.status == 200 && latency.body;
    int in_flight;
    if (load_latency(got ? latency.body : last, &in_flight) < 0)
        tf_log_error("profile: the latency of stopping worker %s could not be kept", origin);
    else if (!got)
        tf_log_error("profile: stopping worker %s did not send its latency; %s", origin,
                     last ? "kept what it had when last asked" : "it is lost");
    free(last);
    tf_fetched_free(&latency);
    pthread_mutex_unlock(&latency_lock);
    return true;
}

/* A worker (on its control port) had a request interrupted by its watchdog:
 * the main thread replaces it, or says why not (workers.h). */
static bool front_replace(unsigned port, uint64_t completed)
{
    char origin[48];
    snprintf(origin, sizeof(origin), "http://127.0.0.1:%u", port);
    return tf_workers_ask_replace(workers, origin, completed);
}

void tf_front_profile_cut(void)
{
    __atomic_store_n(&cut, true, __ATOMIC_RELEASE);
}

/* NULL with errno EINTR after tf_front_profile_cut: the stop's second
 * SIGINT/SIGTERM came before every worker had handed its profile over (no
 * file from a part of them); EAGAIN while the stop waits for them; EBUSY
 * while another page, export or hand-over has the tree. */
static char *front_export(const char *format, size_t *len)
{
    if (__atomic_load_n(&cut, __ATOMIC_ACQUIRE)) { /* not even a hand-over's tree_lock */
        errno = EINTR;
        return NULL;
    }
    if (!take_tree_lock()) {
        errno = EBUSY;
        return NULL;
    }
    char *out = merge_trees() == 0 ? prof_hook_export(format, len) : NULL;
    int why = errno; /* EFBIG: too large; EAGAIN: merge_trees */
    pthread_mutex_unlock(&tree_lock);
    errno = why;
    return out;
}

static char *front_table(const char *query, bool json, const char *profile_href, size_t *len,
                         bool *bad_view)
{
    if (__atomic_load_n(&cut, __ATOMIC_ACQUIRE)) { /* as front_export: no table from a part */
        errno = EAGAIN;
        return NULL;
    }
    if (!take_tree_lock()) { /* as front_export */
        errno = EBUSY;
        return NULL;
    }
    char *out = merge_trees() == 0 ? prof_hook_table(query, json, profile_href, len, bad_view)
                                   : NULL;
    int why = errno; /* EAGAIN: merge_trees */
    pthread_mutex_unlock(&tree_lock);
    errno = why;
    return out;
}

struct found {
    char *body;
    size_t len;
};

static void keep_first(const char *origin, struct tf_fetched *f, void *arg)
{
    (void)origin;
    struct found *found = arg;
    if (!found->body && f->status == 200) {
        found->body = f->body;
        found->len = f->len;
        f->body = NULL;
    }
}

/* A slow request's own tree stays in the worker that ran it (request ids
 * are unique across workers): ask all at once, as the other pages do (one
 * slow worker costs a control thread one limit, and the stop none), with
 * tree_lock (see there). NULL when none has it; errno EAGAIN when the stop
 * left some unasked, EBUSY as front_export. The worker makes the page as
 * at <profile path>/request, the only place it is served: its links are
 * what profile_href would give. */
static char *front_request_html(uint64_t id, const char *query, const char *profile_href,
                                size_t *len)
{
    (void)id; /* in the query too, which the worker reads as this page did */
    (void)profile_href;
    size_t cap = strlen(profile_path) + strlen(query) + sizeof("/request?");
    char *url = malloc(cap);
    struct found found = { NULL, 0 };
    if (!url)
        return NULL;
    if (!take_tree_lock()) {
        free(url);
        errno = EBUSY;
        return NULL;
    }
    snprintf(url, cap, "%s/request?%s", profile_path, query);
    enum asked asked = ask_workers("GET", url, 404, TF_FETCH_LIMIT_MS, keep_first, &found);
    pthread_mutex_unlock(&tree_lock);
    free(url); /* 404: not that worker's */
    if (!found.body) /* never a stale errno: EAGAIN is the page's 503, ETIMEDOUT its 504 */
        errno = asked == ASKED_CUT_SHORT    ? EAGAIN
                : asked == ASKED_SOME_SILENT ? ETIMEDOUT
                                             : ENOENT;
    *len = found.len;
    return found.body;
}

struct joined {
    char *out;
    size_t used;
    bool json;
    unsigned count;
};

static void join(const char *origin, struct tf_fetched *f, void *arg)
{
    (void)origin;
    struct joined *j = arg;
    if (!j->out || !f->body)
        return;
    char *grown = realloc(j->out, j->used + f->len + 8);
    if (!grown)
        return;
    j->out = grown;
    j->used += (size_t)sprintf(j->out + j->used, "%s%s", j->json ? (j->count ? ", " : "[") : "",
                               f->body);
    j->count++;
}

/* The requests running in every worker: under one heading, each worker's
 * HTML section, or their JSON documents in {"workers": [...]}. */
static char *front_inflight(bool json, size_t *len)
{
    char path[4200];
    struct joined j = { strdup(json ? "{\"workers\": " : "<h2 id=inflight>In flight</h2>\n"), 0,
                        json, 0 };
    j.used = j.out ? strlen(j.out) : 0;
    snprintf(path, sizeof(path), "%s/%s", profile_path, json ? "api/inflight" : "inflight");
    if (ask_workers("GET", path, 0, TF_FETCH_LIMIT_MS, join, &j) == ASKED_CUT_SHORT) {
        free(j.out);
        errno = EAGAIN;
        return NULL;
    }
    if (j.out && json) {
        char *grown = realloc(j.out, j.used + 8);
        if (grown)
            j.used += (size_t)sprintf((j.out = grown) + j.used, "%s}\n", j.count ? "]" : "[]");
    }
    *len = j.used;
    return j.out;
}

const struct tf_profiler_controls *tf_front_profile_controls(struct tf_workers *w,
                                                             const struct tf_config *cfg)
{
    static const struct tf_profiler_controls controls = {
        .enable = front_enable, .enabled = prof_hook_enabled, .export = front_export,
        .table = front_table, .request_html = front_request_html, .clear = front_clear,
        .inflight = front_inflight, .refresh = front_refresh, .absorb = front_absorb,
        .replace = front_replace,
    };
    bool pull = cfg->profile_latency;
    prof_hook_read_in_place(); /* every reader and writer of the trees holds tree_lock */
    workers = w;
    profile_path = cfg->profile_path;
    max_nodes = cfg->profile_max_nodes;
    if (pipe2(quit_pipe, O_CLOEXEC) < 0) /* then a pull under way is waited for at the stop */
        quit_pipe[0] = quit_pipe[1] = -1;
    tf_workers_on_new_worker(w, front_welcome);
    tf_workers_on_lost_worker(w, front_lost);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&puller_wake, &attr);
    pthread_condattr_destroy(&attr);
    puller_running = pull && pthread_create(&puller_thread, NULL, puller, NULL) == 0;
    if (pull && !puller_running)
        tf_log_error("profile: cannot start the thread that keeps the workers' latency; "
                     "a worker that dies loses what it measured since the last page");
    return &controls;
}
