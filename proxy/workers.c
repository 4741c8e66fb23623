/* workers.c — the front's worker processes (see workers.h). */
#include "proxy/workers.h"
#include "proxy/workers_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proxy/hash.h"
#include "proxy/log.h"
#include "proxy/nonces.h"
#include "proxy/platform.h"
#include "proxy/front_keys.h"
#include "proxy/reload_watch.h"
#include "proxy/service_notify.h"
#include "proxy/fetch.h"
#include "proxy/unavailable.h"
#include "proxy/worker_env.h"

#define FILES_REFRESH_US 5000000u /* the app imports lazily: ask again this often */
#define RETRY_S 5                 /* a dead worker whose replacement failed: try again */
#define RETRY_US (RETRY_S * 1000000u)
/* --- spawning -------------------------------------------------------------- */

/* 16 random bytes as hex; -1 when the system has no randomness to give. */
static int random_token(char *out, size_t cap)
{
    unsigned char raw[16];
    if (tf_random_bytes(raw, sizeof(raw)) < 0)
        return -1;
    if (cap < 2 * sizeof(raw) + 1)
        return -1;
    tf_hex(raw, sizeof(raw), out);
    return 0;
}

/* k was reaped. exited is set under w->lock: the control server reads it
 * (tf_workers_origins, tf_workers_measuring), and serves on during a stop's
 * kill. */
static void set_exited(struct tf_workers *w, struct worker *k)
{
    pthread_mutex_lock(&w->lock);
    k->exited = true;
    pthread_mutex_unlock(&w->lock);
}

/* SIGKILL every worker of g still running and reap it. */
static void kill_and_reap(struct tf_workers *w, struct generation *g)
{
    for (unsigned i = 0; i < g->n; i++)
        if (g->workers[i].pid > 0 && !g->workers[i].exited) {
            tf_signal_process(g->workers[i].pid, true);
            waitpid(g->workers[i].pid, NULL, 0);
            set_exited(w, &g->workers[i]);
        }
}

bool tf_workers_has_ended(pid_t pid)
{
    siginfo_t info = { 0 };
    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

/* Let a ready generation accept (write "GO"). */
static void let_go(struct generation *g)
{
    for (unsigned i = 0; i < g->n; i++) {
        struct worker *k = &g->workers[i];
        static const char go[] = TF_WORKER_GO "\n";
        if (k->go_fd >= 0 && write(k->go_fd, go, sizeof(go) - 1) != (ssize_t)sizeof(go) - 1)
            tf_log_error("worker %d: cannot tell it to start accepting", (int)k->pid);
        if (k->go_fd >= 0)
            close(k->go_fd);
        k->go_fd = -1;
    }
}

/* Make a generation stop accepting, and wait until it has (each worker
 * answers once its listening socket is out of its poll set and closed; 202:
 * it was told to go an instant ago and quiesces as its server starts, having
 * taken a few connections at most, which it serves).
 * All its workers are asked at once, each answer awaited TF_FETCH_QUICK_MS
 * at most (its control port answers without the GIL), reading signals
 * meanwhile: a SIGINT/SIGTERM ends the wait at once and is put back for the
 * caller's next wait (a stop's: kill; a reload's: then the stop). why:
 * "reload" or "stop". */
static void quiesce(struct tf_workers *w, struct generation *g, const char *why)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/quiesce", w->cfg->profile_path);
    const char **origins = calloc(g->n, sizeof(*origins));
    struct worker **asked = calloc(g->n, sizeof(*asked));
    struct tf_fetched *f = calloc(g->n, sizeof(*f));
    size_t n = 0;
    for (unsigned i = 0; origins && asked && f && i < g->n; i++)
        if (!g->workers[i].exited) {
            asked[n] = &g->workers[i];
            origins[n++] = g->workers[i].origin;
        }
    if (!origins || !asked || !f)
        tf_log_error("%s: out of memory asking the workers to stop accepting (they do on "
                     "SIGTERM)", why);
    int sig = tf_fetch_all_or_signal(origins, n, "POST", path, TF_FETCH_QUICK_MS, f);
    for (size_t i = 0; i < n; i++) {
        if (!sig && !f[i].status && tf_workers_has_ended(asked[i]->pid))
            tf_log_info("%s: worker %d had exited when asked to stop accepting", why,
                        (int)asked[i]->pid);
        else if (!sig && f[i].status != 303 && f[i].status != 202)
            tf_log_error("%s: worker %d did not confirm it stopped accepting within %d s "
                         "(status %u)", why, (int)asked[i]->pid, TF_FETCH_QUICK_MS / 1000,
                         f[i].status);
        tf_fetched_free(&f[i]);
    }
    free(origins);
    free(asked);
    free(f);
}

static void free_generation(struct generation *g)
{
    for (unsigned i = 0; i < g->n; i++) /* a worker never told to go just exits */
        if (g->workers[i].go_fd >= 0)
            close(g->workers[i].go_fd);
    tf_reload_files_free(&g->files);
    free(g->workers);
    free(g);
}

/* Wait until deadline for a new worker's "READY PORT" on fd, noting the
 * signals that come meanwhile in seen (for wait_for_stop to act on once the
 * generation is ready or given up); give up at once on SIGINT/SIGTERM. The
 * worker's control port, or 0. */
static unsigned wait_ready(int fd, uint64_t deadline, struct tf_signals_held *seen)
{
    for (;;) {
        uint64_t now = tf_now_us();
        int left = now < deadline ? (int)((deadline - now) / 1000) : 0;
        int sig = tf_signals_wait_fd(fd, left);
        if (tf_signals_hold(seen, sig))
            return 0;
        if (sig > 0)
            continue;
        char line[64];
        unsigned port = 0;
        /* fd is readable: the line is there whole (one short write), or its end */
        if (sig < 0 && tf_read_line(fd, line, sizeof(line), left) == 0 &&
            sscanf(line, TF_WORKER_READY, &port) == 1)
            return port;
        return 0;
    }
}

struct generation *tf_workers_spawn(struct tf_workers *w, unsigned n, int *stop, char *err,
                                    size_t errlen)
{
    *stop = 0;
    struct generation *g = calloc(1, sizeof(*g));
    int *fds = calloc(n, sizeof(*fds));
    if (!g || !fds || !(g->workers = calloc(n, sizeof(*g->workers)))) {
        snprintf(err, errlen, "out of memory");
        free(fds);
        if (g)
            free(g->workers);
        free(g);
        return NULL;
    }
    const char *env[] = { w->fd_env, w->port_env, w->control_env, w->secret_env,
                          w->nonces_fd >= 0 ? w->nonces_env : NULL, NULL };
    const struct tf_spawn how = { .argv = w->argv, .env = env,
                                  .left_out = tf_worker_env_inherited,
                                  .ready_var = TF_WORKER_VAR_READY_FD,
                                  .go_var = TF_WORKER_VAR_GO_FD,
                                  .inherit_fds = { w->listen_fd, w->nonces_fd } };
    for (g->n = 0; g->n < n; g->n++) {
        struct worker *k = &g->workers[g->n];
        k->gen = g;
        k->go_fd = -1;
        if ((k->pid = tf_spawn_self(&how, &fds[g->n], &k->go_fd)) < 0) {
            snprintf(err, errlen, "cannot start a worker process: %s", strerror(errno));
            break;
        }
    }
    uint64_t deadline = tf_now_us() + (uint64_t)(w->cfg->worker_start_timeout * 1e6);
    struct tf_signals_held seen = { 0, 0 };
    for (unsigned i = 0; i < g->n; i++) {
        unsigned port = err[0] || seen.stop ? 0 : wait_ready(fds[i], deadline, &seen);
        if (!port && !err[0] && !seen.stop)
            snprintf(err, errlen, "worker %d did not start (it exited, or was not ready within "
                     "--worker-start-timeout; its error is in the log above)", (int)g->workers[i].pid);
        snprintf(g->workers[i].origin, sizeof(g->workers[i].origin), "http://127.0.0.1:%u", port);
        close(fds[i]);
    }
    free(fds);
    tf_signals_put_back(&seen);
    *stop = seen.stop;
    if (seen.stop)
        tf_log_info("signal %d: stopping the new workers before they are ready", seen.stop);
    if (err[0] || seen.stop) {
        kill_and_reap(w, g);
        free_generation(g);
        return NULL;
    }
    return g;
}

/* --- what --reload watches: the app's files, asked of the workers (reload_watch.h) ---- */

/* Ask every worker of g which Python files the app has loaded and watch
 * them all: a module one worker imported and the others did not yet (a Trac
 * plugin of a shared plugins_dir, loaded where that project's first request
 * landed) is the app's code as well. A file stays watched once listed, so a
 * worker that does not answer this time keeps what it listed before.
 * Returns the SIGINT/SIGTERM that came meanwhile (put back), or 0. */
static int refresh_files(struct tf_workers *w, struct generation *g)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/modules", w->cfg->profile_path);
    g->files_at = tf_now_us();
    const char **origins = calloc(g->n, sizeof(*origins));
    struct tf_fetched *f = calloc(g->n, sizeof(*f));
    size_t n = 0;
    for (unsigned i = 0; origins && f && i < g->n; i++)
        if (!g->workers[i].exited)
            origins[n++] = g->workers[i].origin;
    /* on the main thread: a stuck or stopped worker must not keep it from
     * its signals and children for long (the lists are asked again later) */
    int sig = tf_fetch_all_or_signal(origins, n, "GET", path, TF_FETCH_QUICK_MS, f);
    for (size_t i = 0; i < n; i++) {
        if (f[i].status == 200 && f[i].body)
            tf_reload_files_add(&g->files, f[i].body, f[i].len);
        tf_fetched_free(&f[i]);
    }
    free(origins);
    free(f);
    return sig;
}

/* A file the reload should react to, named in why; false if none, or if a
 * stop came while the workers were asked (a reload would only be killed). */
static bool something_changed(struct tf_workers *w, struct generation *g, char *why, size_t cap)
{
    if (tf_now_us() - g->files_at >= FILES_REFRESH_US && refresh_files(w, g))
        return false;
    return tf_reload_watch_changed(&w->watched, w->cfg, &g->files, why, cap);
}

/* From now on, a change starts the next reload. */
static void mark_checked(struct tf_workers *w)
{
    struct generation *g = w->current;
    tf_reload_watch_mark(&w->watched, w->cfg, g ? &g->files : NULL);
}

/* --- generations ---------------------------------------------------------- */

static void retire(struct tf_workers *w);

static bool all_exited(const struct generation *g)
{
    for (unsigned i = 0; i < g->n; i++)
        if (!g->workers[i].exited)
            return false;
    return true;
}

/* A new generation could not start. With none of the current one left
 * (reaped), nobody accepts: clients get a 503 from the front meanwhile. */
static void reload_failed(struct tf_workers *w, const char *err)
{
    if (w->current && !all_exited(w->current)) {
        tf_log_error("reload failed: %s; the running workers keep serving", err);
        return;
    }
    if (!w->unavailable && !(w->unavailable = tf_unavailable_start(w->listen_fd, RETRY_S)))
        tf_log_error("cannot answer clients while no worker runs: out of memory or threads");
    tf_log_error("reload failed: %s; no worker is running: %s until one starts (tried again "
                 "every %u s, and on SIGHUP)", err,
                 w->unavailable ? "clients get a 503" : "connections wait", RETRY_S);
}

void tf_workers_take_over(struct tf_workers *w, struct generation *g, struct generation *old,
                          const char *why)
{
    /* after they are current: a Start/Stop from now on reaches them as well */
    for (unsigned i = 0; w->on_new_worker && i < g->n; i++)
        if (g->workers[i].go_fd >= 0)
            w->on_new_worker(g->workers[i].origin);
    /* One generation accepts at a time: old ones stop first (new connections
     * wait in the socket's backlog meanwhile), so no client is served by the
     * new code and then by the old. */
    if (old)
        quiesce(w, old, why);
    tf_unavailable_stop(w->unavailable); /* before the new ones accept, as old ones */
    w->unavailable = NULL;
    let_go(g);
    if (old)
        retire(w);
}

void tf_workers_reload(struct tf_workers *w, const char *why, bool asked)
{
    char err[512] = "";
    int stop;
    tf_log_info("reload: %s; starting %u new worker%s", why, w->cfg->workers,
                w->cfg->workers > 1 ? "s" : "");
    if (asked)
        tf_notify_reloading();
    if (w->keys_at_start) { /* what the file says now, as the new workers will read it */
        char **now = tf_front_keys_read(w->argc, w->argv);
        tf_front_keys_say_changes(w->keys_at_start, now, w->cfg->config_file);
        tf_front_keys_free(now);
    }
    mark_checked(w); /* what changes from now on starts the next reload */
    w->last_attempt = tf_now_us();
    struct generation *g = tf_workers_spawn(w, w->cfg->workers, &stop, err, sizeof(err));
    if (!g && !stop) {
        reload_failed(w, err);
        tf_notify(asked ? "READY=1\nSTATUS=reload failed (see the error log)"
                        : "STATUS=workers failed to restart (see the error log)");
    }
    if (!g) /* a stop: the signal is pending again, for wait_for_stop */
        return;
    g->number = ++w->next_number;
    pthread_mutex_lock(&w->lock);
    struct generation *old = w->current;
    w->current = g;
    if (old) { /* it finishes what it has and exits (see retire); asked until then */
        old->next = w->retired;
        w->retired = old;
    }
    pthread_mutex_unlock(&w->lock);
    tf_workers_take_over(w, g, old, "reload");
    tf_log_info("reload: new workers are serving (generation %u)", g->number);
    char done[100];
    snprintf(done, sizeof(done), "%sSTATUS=new workers are serving (generation %u)",
             asked ? "READY=1\n" : "", g->number);
    tf_notify(done);
}

/* fn(worker, arg) for every worker, the current generation's first, until
 * fn returns true; returns that worker, or NULL. */
static struct worker *each_worker(struct tf_workers *w, bool (*fn)(struct worker *, void *),
                                  void *arg)
{
    struct generation *lists[] = { w->current, w->retired };
    for (int l = 0; l < 2; l++)
        for (struct generation *g = lists[l]; g; g = l ? g->next : NULL)
            for (unsigned i = 0; i < g->n; i++)
                if (fn(&g->workers[i], arg))
                    return &g->workers[i];
    return NULL;
}

static bool has_pid(struct worker *k, void *pid)
{
    return k->pid == *(pid_t *)pid;
}

static struct worker *find_worker(struct tf_workers *w, pid_t pid)
{
    return each_worker(w, has_pid, &pid);
}

/* The next of the workers that have ended: reaped (its status in *status,
 * unless NULL) and set exited. NULL once no child that ended is left (one
 * that is no worker is reaped and passed over). */
static struct worker *reap_worker(struct tf_workers *w, int *status)
{
    pid_t pid;
    while ((pid = tf_reap(status)) > 0) {
        struct worker *k = find_worker(w, pid);
        if (k) {
            set_exited(w, k);
            return k;
        }
    }
    return NULL;
}

static bool shares_origin(struct worker *k, void *dead)
{
    return k != dead && !k->exited && !strcmp(k->origin, ((struct worker *)dead)->origin);
}

/* Old generations: SIGTERM (a worker then stops accepting, serves what it
 * has and exits), free once their processes are gone. */
static void retire(struct tf_workers *w)
{
    for (struct generation **link = &w->retired; *link;) {
        struct generation *g = *link;
        if (!g->terminated) {
            for (unsigned i = 0; i < g->n; i++)
                if (!g->workers[i].exited)
                    tf_signal_process(g->workers[i].pid, false);
            g->terminated = true;
        }
        if (all_exited(g)) {
            pthread_mutex_lock(&w->lock);
            *link = g->next;
            pthread_mutex_unlock(&w->lock);
            free_generation(g);
        } else {
            link = &g->next;
        }
    }
}

/* How a reaped worker ended, for the log: "status 70", "signal 11, Segmentation
 * fault". Main thread only (strsignal's text may be a static buffer). */
static void describe_end(int status, char *out, size_t cap)
{
    if (WIFSIGNALED(status))
        snprintf(out, cap, "signal %d, %s%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(out, cap, "status %d", WEXITSTATUS(status));
}

/* A worker of a retired generation was reaped (when: "after a reload",
 * "during the stop"): its exit 0 is what SIGTERM asks of it, anything else
 * (killed, crashed, an error status) an [error], as Apache's "child pid N
 * exit signal ...": nothing else would say it ended that way. */
static void say_if_retired_died(const struct worker *k, int status, const char *when)
{
    char how[96];
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    describe_end(status, how, sizeof(how));
    tf_log_error("worker %d of generation %u (stepping down %s) exited (%s): the requests it "
                 "was still running, if any, got no answer", (int)k->pid, k->gen->number, when,
                 how);
}

static bool has_dead_worker(const struct generation *g)
{
    for (unsigned i = 0; i < g->n; i++)
        if (g->workers[i].exited)
            return true;
    return false;
}

void tf_workers_tick(struct tf_workers *w)
{
    int status;
    struct worker *k;
    char why[4200] = "";
    while ((k = reap_worker(w, &status))) {
        pthread_mutex_lock(&w->lock);
        bool lost = !k->absorbed && !each_worker(w, shares_origin, k);
        pthread_mutex_unlock(&w->lock);
        if (lost && w->on_lost_worker)
            w->on_lost_worker(k->origin);
        if (k->gen == w->current) {
            char how[96];
            describe_end(status, how, sizeof(how));
            tf_log_error("worker %d exited (%s); restarting the workers", (int)k->pid, how);
            snprintf(why, sizeof(why), "worker %d died", (int)k->pid);
        } else {
            say_if_retired_died(k, status, k->gen->one_replaced ? "after its replacement"
                                                                : "after a reload");
        }
    }
    retire(w);
    if (!why[0] && w->current && !tf_workers_replace_interrupted(w)) /* a stop came meanwhile */
        return;
    if (!why[0] && w->current && has_dead_worker(w->current) &&
        tf_now_us() - w->last_attempt >= RETRY_US)
        snprintf(why, sizeof(why), "a worker is still missing after a failed restart");
    bool changed = !why[0] && w->cfg->reload && w->current &&
                   something_changed(w, w->current, why, sizeof(why));
    if (why[0])
        tf_workers_reload(w, why, changed);
}

static bool send_signal(struct worker *k, void *sig)
{
    if (!k->exited && kill(k->pid, *(int *)sig) < 0)
        tf_log_error("worker %d: cannot send it signal %d: %s", (int)k->pid, *(int *)sig,
                     strerror(errno));
    return false;
}

void tf_workers_forward(struct tf_workers *w, int sig)
{
    each_worker(w, send_signal, &sig);
}

void tf_workers_reopen_logs(struct tf_workers *w)
{
    char said[160];
    if (tf_log_reopen(said, sizeof(said)) == 0)
        tf_log_info("SIGUSR1: %s", said);
    if (w)
        tf_workers_forward(w, SIGUSR1);
}

/* --- start and stop ---------------------------------------------------------- */

struct tf_workers *tf_workers_new(const struct tf_config *cfg, char **argv, int listen_fd)
{
    struct tf_workers *w = calloc(1, sizeof(*w));
    size_t argc = 0, n_pinned = 0;
    while (argv[argc])
        argc++;
    char **pinned = w ? tf_front_pinned_flags(cfg) : NULL;
    while (pinned && pinned[n_pinned])
        n_pinned++;
    if (!w || !pinned || !(w->argv = calloc(argc + n_pinned + 2, sizeof(char *)))) {
        tf_front_pinned_flags_free(pinned);
        free(w);
        return NULL;
    }
    memcpy(w->argv, argv, argc * sizeof(char *));
    w->argv[argc] = "--worker";
    memcpy(w->argv + argc + 1, pinned, n_pinned * sizeof(char *));
    w->argc = (int)argc;
    w->pinned = pinned;
    w->keys_at_start = cfg->config_file ? tf_front_keys_read(w->argc, w->argv) : NULL;
    w->cfg = cfg;
    w->listen_fd = listen_fd;
    pthread_mutex_init(&w->lock, NULL);
    snprintf(w->fd_env, sizeof(w->fd_env), TF_WORKER_VAR_LISTEN_FD "=%d", listen_fd);
    int n = snprintf(w->secret_env, sizeof(w->secret_env), TF_WORKER_VAR_AUTH_SECRET "=");
    if (random_token(w->secret_env + n, sizeof(w->secret_env) - (size_t)n) < 0) {
        tf_front_pinned_flags_free(w->pinned);
        tf_front_keys_free(w->keys_at_start);
        free(w->argv);
        free(w);
        return NULL;
    }
    /* One table for every worker of every generation, as the key is; made
     * without --digest-auth too, which a reload may bring (the file's). */
    char why[128];
    w->nonces_fd = tf_nonces_table_create(why, sizeof(why));
    snprintf(w->nonces_env, sizeof(w->nonces_env), TF_WORKER_VAR_NONCES_FD "=%d", w->nonces_fd);
    if (w->nonces_fd < 0)
        tf_log_error("cannot make the table of Digest nonces the workers share (%s): each keeps "
                     "one of its own, so a nonce one worker issued is answered stale at the "
                     "others (browsers then retry)", why);
    return w;
}

void tf_workers_on_new_worker(struct tf_workers *w, void (*fn)(const char *origin))
{
    w->on_new_worker = fn;
}

void tf_workers_on_lost_worker(struct tf_workers *w, void (*fn)(const char *origin))
{
    w->on_lost_worker = fn;
}

int tf_workers_begin(struct tf_workers *w, unsigned public_port, unsigned control_port,
                     char *err, size_t errlen)
{
    snprintf(w->port_env, sizeof(w->port_env), TF_WORKER_VAR_FRONT_PORT "=%u", public_port);
    snprintf(w->control_env, sizeof(w->control_env), TF_WORKER_VAR_FRONT_CONTROL "=%u",
             control_port);
    mark_checked(w);
    err[0] = 0;
    int stop;
    struct generation *g = tf_workers_spawn(w, w->cfg->workers, &stop, err, errlen);
    if (!g)
        return stop ? 1 : -1;
    g->number = ++w->next_number;
    pthread_mutex_lock(&w->lock);
    w->current = g;
    pthread_mutex_unlock(&w->lock);
    let_go(g);
    return 0;
}

/* A worker gone in the stop (how: "ended", "was killed"): unless it handed
 * its profile over first, the stop's profile files are written without
 * what it measured, and the log says so. */
static void say_if_left_out(struct tf_workers *w, struct worker *k, const char *how)
{
    const struct tf_config *cfg = w->cfg;
    pthread_mutex_lock(&w->lock);
    bool absorbed = k->absorbed;
    pthread_mutex_unlock(&w->lock);
    if (absorbed || (!cfg->profile_log && !cfg->profile_callgrind) ||
        cfg->profile_flush_at_shutdown)
        return;
    tf_log_error("profile: worker %d %s before it handed its profile over: %s what it "
                 "measured", (int)k->pid, how,
                 !cfg->profile_callgrind ? "--profile-log leaves out"
                 : !cfg->profile_log     ? "--profile-callgrind leaves out"
                                         : "--profile-log and --profile-callgrind leave out");
}

/* Reap until every worker of the retired list has exited (0), the timeout
 * passed (-1), or a second SIGINT/SIGTERM came to this process (returned).
 * The workers' own signals (a stop to the whole process group) are theirs:
 * each takes one, finishes its requests and hands its profile over. SIGUSR1
 * (logrotate) reopens the logs and goes on to the workers, as before the
 * stop. */
static int wait_all_exited(struct tf_workers *w, double timeout)
{
    uint64_t deadline = tf_now_us() + (uint64_t)(timeout * 1e6);
    for (;;) {
        struct worker *k;
        int status;
        while ((k = reap_worker(w, &status))) {
            say_if_retired_died(k, status, "in the stop");
            say_if_left_out(w, k, "ended");
        }
        bool done = true;
        for (struct generation *g = w->retired; g; g = g->next)
            done = done && all_exited(g);
        if (done)
            return 0;
        if (tf_now_us() >= deadline)
            return -1;
        int sig = tf_signals_wait(20); /* SIGCHLD ends it early */
        if (sig == SIGINT || sig == SIGTERM)
            return sig;
        if (sig == SIGUSR1)
            tf_workers_reopen_logs(w);
        else if (sig == SIGHUP)
            tf_log_info("SIGHUP: no reload: the workers are stopping");
    }
}

void tf_workers_close_socket(struct tf_workers *w)
{
    if (!w || w->listen_fd < 0)
        return;
    tf_unavailable_stop(w->unavailable); /* before the socket it answers on goes */
    w->unavailable = NULL;
    close(w->listen_fd);
    w->listen_fd = -1;
    /* and so do the workers, at once: a SIGTERM to the front alone (kill PID,
     * systemd's KillMode=mixed) reaches them only later, from tf_workers_stop.
     * Old generations were quiesced when they retired. */
    if (w->current)
        quiesce(w, w->current, "stop");
}

int tf_workers_stop(struct tf_workers *w, double timeout)
{
    if (!w)
        return 0;
    tf_workers_close_socket(w);
    pthread_mutex_lock(&w->lock); /* the control server may be listing origins */
    if (w->current) {
        w->current->next = w->retired;
        w->retired = w->current;
        w->current = NULL;
    }
    pthread_mutex_unlock(&w->lock);
    retire(w); /* SIGTERM to whatever was not told yet */
    int ended = wait_all_exited(w, timeout);
    if (ended > 0)
        tf_log_error("signal %d again: killing the workers and the requests they still run",
                     ended);
    else if (ended < 0)
        tf_log_error("workers still running %gs after the stop; killing them", timeout);
    for (struct generation *g = w->retired; g; g = g->next) {
        for (unsigned i = 0; ended < 0 && i < g->n; i++) /* (a second signal: no file at all) */
            if (!g->workers[i].exited)
                say_if_left_out(w, &g->workers[i], "was killed");
        kill_and_reap(w, g); /* past the timeout, or told to */
    }
    return ended;
}

void tf_workers_free(struct tf_workers *w)
{
    if (!w)
        return;
    while (w->retired) { /* every worker reaped: tf_workers_stop moved them all here */
        struct generation *g = w->retired;
        w->retired = g->next;
        free_generation(g);
    }
    pthread_mutex_destroy(&w->lock);
    if (w->nonces_fd >= 0)
        close(w->nonces_fd);
    tf_front_pinned_flags_free(w->pinned);
    tf_front_keys_free(w->keys_at_start);
    free(w->argv);
    free(w);
}

/* With the lock: does k still hold a profile of its own? */
static bool is_measuring(const struct worker *k)
{
    return !k->exited && !k->absorbed;
}

struct collected {
    struct worker **out;
    size_t n, cap;
};

static bool collect_measuring(struct worker *k, void *arg)
{
    struct collected *c = arg;
    if (is_measuring(k) && c->n++ < c->cap)
        c->out[c->n - 1] = k;
    return false;
}

/* With the lock: the workers still holding a profile of their own (the
 * current generation's, then old ones finishing their requests), at most
 * cap of them into out; returns how many there are. */
static size_t measuring(struct tf_workers *w, struct worker **out, size_t cap)
{
    struct collected c = { out, 0, cap };
    each_worker(w, collect_measuring, &c);
    return c.n;
}

char **tf_workers_origins(struct tf_workers *w, size_t *n)
{
    *n = 0;
    pthread_mutex_lock(&w->lock);
    size_t cap = measuring(w, NULL, 0);
    struct worker **ks = calloc(cap ? cap : 1, sizeof(*ks));
    char **out = ks ? calloc(cap ? cap : 1, sizeof(*out)) : NULL;
    if (out)
        measuring(w, ks, cap);
    for (size_t i = 0; out && i < cap; i++)
        if ((out[*n] = strdup(ks[i]->origin)))
            (*n)++;
    pthread_mutex_unlock(&w->lock);
    free(ks);
    return out;
}

static bool measuring_at(struct worker *k, void *origin)
{
    return is_measuring(k) && !strcmp(k->origin, origin);
}

bool tf_workers_measuring(struct tf_workers *w, const char *origin, bool absorbed)
{
    pthread_mutex_lock(&w->lock);
    struct worker *k = each_worker(w, measuring_at, (void *)origin);
    if (k && absorbed)
        k->absorbed = true;
    pthread_mutex_unlock(&w->lock);
    return k != NULL;
}

void tf_workers_origins_free(char **origins, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(origins[i]);
    free(origins);
}
