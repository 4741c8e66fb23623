/* main.c — tracfront's entry point: read the configuration, start Python and
 * the app, the app threads and the HTTP server; then wait for SIGINT/SIGTERM
 * and shut down gracefully: stop accepting, let requests in flight finish
 * (bounded by --graceful-timeout), finalize Python so atexit handlers run. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/auth.h"
#include "proxy/config.h"
#include "proxy/fetch.h"
#include "proxy/log.h"
#include "proxy/loop.h"
#include "proxy/nonces.h"
#include "proxy/platform.h"
#include "proxy/server.h"
#include "proxy/request.h"
#include "proxy/upstream.h"
#include "proxy/workers.h"
#include "proxy/front_profile.h"
#include "wsgi/app.h"
#include <signal.h>
#include "profiler/frame_hook.h"
#include "profiler/hook.h"
#include "profiler/latency.h"
#include "wsgi/interp.h"
#include "wsgi/options.h"
#include "wsgi/pool.h"
#include "wsgi/watchdog.h"

static const char *app_label(const struct tf_config *cfg)
{
    if (cfg->app)
        return cfg->app;
    if (cfg->wsgi_file)
        return cfg->wsgi_file;
    return cfg->trac_env ? cfg->trac_env : cfg->trac_env_parent_dir;
}

/* "app myapp:application, 8 threads; upstream http://...; 2 static routes" */
static void describe(const struct tf_config *cfg, char *out, size_t n)
{
    size_t len = 0, statics = 0;
    out[0] = 0;
    if (cfg->have_app)
        len += cfg->workers
                   ? (size_t)snprintf(out + len, n - len, "app %s, %u workers of %u threads%s",
                                      app_label(cfg), cfg->workers, cfg->threads,
                                      cfg->reload ? ", reloading" : "")
                   : (size_t)snprintf(out + len, n - len, "app %s, %u threads", app_label(cfg),
                                      cfg->threads);
    if (cfg->upstream && len < n)
        len += (size_t)snprintf(out + len, n - len, "%supstream %s%s", len ? "; " : "",
                                cfg->upstream, cfg->mirror ? ", mirrored" : "");
    for (size_t i = 0; i < cfg->routes.n; i++)
        statics += cfg->routes.routes[i].kind == TF_ROUTE_STATIC;
    if (statics && len < n)
        len += (size_t)snprintf(out + len, n - len, "%s%zu static route%s", len ? "; " : "",
                                statics, statics > 1 ? "s" : "");
    if (len < n)
        snprintf(out + len, n - len, "; up to %u connections%s", cfg->max_connections,
                 cfg->workers ? " per worker" : "");
}

/* A worker's settings from its front, taken out of the environment before
 * the app loads, as TF_AUTH_SECRET is: os.environ and the programs the app
 * runs have no use for them. Main thread, before other threads start. */
static const char *const worker_vars[] = { "TF_LISTEN_FD", "TF_FRONT_PORT", "TF_FRONT_CONTROL",
                                           "TF_WORKER_READY_FD", "TF_WORKER_GO_FD" };
#define N_WORKER_VARS (sizeof(worker_vars) / sizeof(*worker_vars))
static char worker_values[N_WORKER_VARS][24]; /* "" = not set */

/* A descriptor the front passed (its number in value) is not for the
 * programs the app starts, at import too: a shell left in the background
 * would hold the listening socket open after a stop (new connections
 * waiting in its backlog, not refused), or the ready pipe the front reads. */
static void close_on_exec(const char *value)
{
    char *end;
    long fd = value && *value ? strtol(value, &end, 10) : -1;
    if (fd > STDERR_FILENO && fd <= INT_MAX && !*end)
        fcntl((int)fd, F_SETFD, FD_CLOEXEC);
}

static void take_worker_env(void)
{
    for (size_t i = 0; i < N_WORKER_VARS; i++) {
        const char *value = getenv(worker_vars[i]);
        snprintf(worker_values[i], sizeof(worker_values[i]), "%s", value ? value : "");
        if (strstr(worker_vars[i], "_FD"))
            close_on_exec(value);
        unsetenv(worker_vars[i]);
    }
}

static const char *worker_env(const char *name)
{
    for (size_t i = 0; i < N_WORKER_VARS; i++)
        if (!strcmp(name, worker_vars[i]))
            return worker_values[i][0] ? worker_values[i] : NULL;
    return NULL;
}

/* A worker: SERVER_PORT is its front's, and the front waits for "READY PORT"
 * (the worker's control port) on the pipe it passed. */
static unsigned env_port(const char *name)
{
    const char *port = worker_env(name);
    return port ? (unsigned)strtoul(port, NULL, 10) : 0;
}

static void report_ready(unsigned port)
{
    const char *fd = worker_env("TF_WORKER_READY_FD");
    char line[32];
    int n = snprintf(line, sizeof(line), "READY %u\n", port);
    if (!fd || write(atoi(fd), line, (size_t)n) != n)
        tf_log_error("worker: cannot tell the front it is ready");
    if (fd)
        close(atoi(fd));
}

static void print_listening(const struct tf_config *cfg, unsigned port)
{
    char what[1024];
    describe(cfg, what, sizeof(what));
    dprintf(tf_log_stderr_fd(), "tracfront %s: listening on http://%s%s%s:%u/ (%s)\n",
            TF_VERSION, strchr(cfg->listen_host, ':') ? "[" : "", cfg->listen_host,
            strchr(cfg->listen_host, ':') ? "]" : "", port, what);
}

/* Why the server cannot start: on stderr, and in the error log unless that
 * is stderr too (the default), where it would show twice. Returns 1, the
 * exit status. */
static int start_failed(const char *err)
{
    struct stat log_file, terminal;
    int fd = tf_log_error_fd(), stderr_fd = tf_log_stderr_fd();
    dprintf(stderr_fd, "tracfront: %s\n", err);
    if (fd >= 0 && !(fstat(fd, &log_file) == 0 && fstat(stderr_fd, &terminal) == 0 &&
                     log_file.st_dev == terminal.st_dev && log_file.st_ino == terminal.st_ino))
        tf_log_error("%s", err);
    return 1;
}

/* Wait until nothing is in flight (and, for quiet_us, nothing arrives),
 * at most timeout seconds. A worker stepping down waits a little quiet
 * time: its keep-alive clients get their next answer with Connection:
 * close and reconnect to the new workers instead of finding it gone; the
 * timeout cuts that quiet time short, never a finished stop (an idle
 * worker hands its profile over). 0 once idle, -1 at the timeout with
 * requests still in flight, or the second SIGINT/SIGTERM that ended the
 * wait. A worker takes no second one (signals_end false): a stop signal
 * to the whole process group, or the front's death, reaches it more than
 * once (the group's, then the front's; the kernel's death signal once per
 * thread of the front), and its front decides when to stop waiting. */
static int drain(struct tf_server *server, struct wsgi_pool *pool, double timeout,
                 uint64_t quiet_us, bool signals_end)
{
    uint64_t now = tf_now_us(), deadline = now + (uint64_t)(timeout * 1e6), quiet_since = now;
    for (;;) {
        now = tf_now_us();
        bool busy = tf_server_in_flight(server) > 0 || (pool && wsgi_pool_busy(pool) > 0);
        if (busy)
            quiet_since = now;
        if (!busy && (now - quiet_since >= quiet_us || now >= deadline))
            return 0;
        if (now >= deadline)
            return -1;
        int sig = tf_signals_wait(20);
        if ((sig == SIGINT || sig == SIGTERM) && signals_end)
            return sig;
        if (sig == SIGUSR1)
            (void)tf_log_reopen();
    }
}

/* Wait for SIGINT/SIGTERM; SIGHUP reloads the workers (a front), SIGCHLD
 * and every second tick them; SIGUSR1 reopens the logs (a front's workers
 * too). Returns the signal; or 0 for a worker (front: its front's pid, else
 * 0) whose front is gone: the kernel's death signal should have come first,
 * this is the backstop that keeps an orphan from holding the port. */
static int wait_for_stop(struct tf_workers *workers, pid_t front)
{
    int sig;
    while ((sig = tf_signals_wait(1000)) == 0 || sig == SIGHUP || sig == SIGCHLD ||
           sig == SIGUSR1) {
        if (front && getppid() != front)
            return 0;
        if (sig == SIGUSR1) {
            if (tf_log_reopen() == 0)
                tf_log_info("SIGUSR1: log files reopened");
            if (workers)
                tf_workers_forward(workers, SIGUSR1);
        } else if (sig == SIGHUP && workers)
            tf_workers_reload(workers, "SIGHUP");
        else if (sig == SIGHUP && !front) /* a worker's front reloads (SIGHUP to the group) */
            tf_log_info("SIGHUP: nothing to reload (the app runs in this process; see --workers)");
        else if (workers) /* a second, or a child ended */
            tf_workers_tick(workers);
    }
    return sig;
}

/* A worker, once ready: wait for the front's "GO" (its old generation has
 * stopped accepting), then serve the shared socket. NULL on failure. */
static struct tf_server *accept_when_told(const struct tf_config *cfg,
                                          const struct tf_backends *backends,
                                          const struct tf_profiler_controls *controls,
                                          struct tf_server *control)
{
    char line[16], err[1024] = "";
    int go = (int)env_port("TF_WORKER_GO_FD");
    int ms = (int)(cfg->worker_start_timeout * 1000) + 5000;
    bool told = tf_read_line(go, line, sizeof(line), ms) == 0 && !strcmp(line, "GO");
    close(go);
    if (!told) { /* the front gave up on this generation, or is gone */
        tf_log_info("worker: not needed; exiting");
        return NULL;
    }
    struct tf_server_socket shared = { .fd = (int)env_port("TF_LISTEN_FD"), .io_threads = 1,
                                       .relay_port = env_port("TF_FRONT_CONTROL"),
                                       .shared = true };
    struct tf_server *server = tf_server_start_on(cfg, backends, &shared, err, sizeof(err));
    if (!server) {
        tf_log_error("worker: %s", err);
        return NULL;
    }
    tf_server_set_profiler(server, controls);
    tf_server_set_twin(control, server);
    return server;
}

/* A worker stopping with its requests done: the front takes its profile
 * over (from the control port, still open), so a reload loses none of it,
 * and the profile files the front writes at a stop hold all of it. */
static void hand_profile_to_front(const struct tf_config *cfg, unsigned control_port)
{
    char origin[48], path[4200];
    snprintf(origin, sizeof(origin), "http://127.0.0.1:%u", env_port("TF_FRONT_CONTROL"));
    snprintf(path, sizeof(path), "%s/stopped?port=%u", cfg->profile_path, control_port);
    struct tf_fetched f;
    if (tf_fetch(origin, "POST", path, &f) < 0)
        tf_log_error("profile: the front did not answer this worker's hand-over (it is gone, "
                     "or was busy %d s): what this worker measured is lost",
                     TF_FETCH_LIMIT_MS / 1000);
    else if (f.status != 303)
        tf_log_error("the front did not take this worker's profile (status %u)", f.status);
    tf_fetched_free(&f);
}

/* Stop the loops first (nothing runs on them while their servers go), then
 * the servers (control may be server, or NULL), then the upstream (closing
 * connections releases pins), and free the loops (their threads end). */
static void stop_network(struct tf_backends *b, struct tf_server *control,
                         struct tf_server *server, struct tf_upstream *upstream)
{
    tf_loops_stop(b->loops, b->n_loops);
    if (control != server)
        tf_server_stop(control);
    tf_server_stop(server);
    tf_upstream_stop(upstream);
    tf_loops_free(b->loops, b->n_loops);
}

/* --profile-builtins=false on a Python whose frame hook misses some calls. */
static void warn_frame_hook_misses(const struct tf_config *cfg)
{
    if (!cfg->profile_builtins && prof_frame_hook_misses_subscr())
        tf_log_info("--profile-builtins=false: this Python (%s, before 3.11.4) runs obj[key] "
                    "into a Python __getitem__ without the frame-evaluation hook (CPython "
                    "gh-104405): those calls are not counted, their time is their caller's own; "
                    "--profile-builtins=true counts them", Py_GetVersion());
}

/* The function profiler's settings (a front's too: it renders the merged profile). */
static void configure_profiler(const struct tf_config *cfg)
{
    prof_hook_configure(cfg->profile_max_nodes, cfg->profile_discard_first, cfg->profile_slowest,
                        cfg->profile_builtins,
                        cfg->profile_clock && !strcmp(cfg->profile_clock, "cpu"));
}

#define FORCED_EXIT_S 5 /* what Python gets to finish once its end is bounded */

/* --workers: this process opens the socket, runs the workers and adds up
 * their profiles on a loopback control port; it serves no request itself. */
static int run_front(struct tf_config *cfg, char **argv)
{
    char err[1024] = "";
    unsigned port = 0, control_port = 0;
    if (wsgi_interp_start(cfg, err, sizeof(err)) < 0) /* to render the merged profile */
        return start_failed(err);
    warn_frame_hook_misses(cfg);
    int fd = tf_server_listen_socket(cfg->listen_host, cfg->listen_port, &port, err, sizeof(err));
    int cfd = fd < 0 ? -1 : tf_server_listen_socket("127.0.0.1", 0, &control_port, err, sizeof(err));
    struct tf_backends none = { .n_loops = 1 }; /* the control port's one network thread */
    struct tf_server_socket sock = { .fd = cfd, .io_threads = 1, .control = true };
    none.loops = cfd < 0 ? NULL : tf_loops_start(1, err, sizeof(err));
    struct tf_server *control =
        !none.loops ? NULL : tf_server_start_on(cfg, &none, &sock, err, sizeof(err));
    struct tf_workers *workers = control ? tf_workers_new(cfg, argv, fd) : NULL;
    if (!workers)
        return start_failed(err[0] ? err : "out of memory");
    configure_profiler(cfg);
    prof_hook_enable(cfg->profile);
    tf_server_set_profiler(control, tf_front_profile_controls(workers, cfg));
    int started = tf_workers_begin(workers, port, control_port, err, sizeof(err));
    if (started < 0)
        return start_failed(err);
    if (started == 0)
        print_listening(cfg, port);
    int sig = wait_for_stop(workers, 0); /* at once if SIGINT/SIGTERM ended the start */
    tf_log_info("signal %d: stopping the workers (up to %gs for requests in flight; a second "
                "SIGINT/SIGTERM stops them at once)", sig, cfg->graceful_timeout);
    tf_workers_close_socket(workers); /* first: new connections are refused from now on */
    tf_front_profile_stop(); /* its puller and pages stop asking the workers, at once */
    /* the control port serves on: each worker hands its profile over to it
     * once its requests are done, as in a reload */
    /* a worker's own bound (run_server): --graceful-timeout, then at least
     * FORCED_EXIT_S for Python's end; a second more for its hand-over */
    if (tf_workers_stop(workers, cfg->graceful_timeout + FORCED_EXIT_S + 1) > 0) /* closes fd */
        tf_front_profile_cut(); /* a second signal: no file from part of them */
    tf_server_profile_shutdown(control); /* what they handed over: every request they finished */
    stop_network(&none, control, NULL, NULL); /* before the workers' list goes: pages read it */
    tf_workers_free(workers);
    tf_log_info("stopped");
    return 0;
}

#define WAITED_MAX 16 /* threads named when Python's end is given up on */

/* Once the server stopped serving, Python's end (threading's shutdown,
 * which joins the app's non-daemon threads, then the atexit handlers) has
 * no limit of its own, and a stop that stopped waiting takes the GIL back
 * under requests still running (one in C code that never releases it).
 * Nothing else reads the signal pipe then: this thread does, and ends the
 * process when the bound passes, set by the earliest of: a normal stop's
 * finalize (exit_watch_arm: what is left of --graceful-timeout, at least
 * FORCED_EXIT_S); FORCED_EXIT_S from a stop that stopped waiting, from a
 * second SIGINT/SIGTERM (a worker takes none: its front decides, see
 * drain), or from its front's end (nobody else would end it). */
struct exit_watch {
    pid_t front;       /* a worker's front, or 0 */
    int done[2];       /* the main thread closes done[1] once Python finished */
    pthread_mutex_t lock;
    uint64_t deadline; /* lock: tf_now_us() to exit at, or 0: not bounded yet */
    bool graceful;     /* lock: the deadline is exit_watch_arm's */
    struct wsgi_thread waited[WAITED_MAX]; /* lock: what exit_watch_note_threads found */
    size_t n_waited;
    bool front_gone;   /* the watch thread's: its end was seen and bounded */
    pthread_t thread;
};

/* Bound Python's end by deadline unless an earlier bound is set. Returns
 * whether it did. */
static bool bound_by(struct exit_watch *w, uint64_t deadline, bool graceful)
{
    pthread_mutex_lock(&w->lock);
    bool sooner = !w->deadline || deadline < w->deadline;
    if (sooner) {
        w->deadline = deadline;
        w->graceful = graceful;
    }
    pthread_mutex_unlock(&w->lock);
    return sooner;
}

/* "; still running: 'a', 'b'" for the threads of w->waited whose task is
 * still there (no GIL: the watch may fire while Python holds it), else "". */
static void name_still_running(const struct exit_watch *w, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < w->n_waited && used < cap; i++) {
        char task[64], name[64];
        snprintf(task, sizeof(task), "/proc/self/task/%ld", w->waited[i].native_id);
        if (access(task, F_OK) == 0)
            used += (size_t)snprintf(out + used, cap - used, "%s'%s'",
                                     used ? ", " : "; still running: ",
                                     tf_log_escape(w->waited[i].name, name, sizeof(name)));
    }
}

static __attribute__((noreturn)) void give_up(struct exit_watch *w)
{
    char still[WAITED_MAX * 72];
    pthread_mutex_lock(&w->lock);
    bool graceful = w->graceful;
    pthread_mutex_unlock(&w->lock);
    if (graceful) {
        name_still_running(w, still, sizeof(still));
        tf_log_error("Python's end did not finish within --graceful-timeout (at least %d s "
                     "after the requests for the profile's hand-over or files, the network "
                     "threads' ends and Python's: threading's shutdown waits for the app's "
                     "non-daemon threads, then the atexit handlers run)%s; exiting without it",
                     FORCED_EXIT_S, still);
    } else {
        tf_log_error("Python did not finish within %d s (a non-daemon thread that never ends, "
                     "an atexit handler that blocks, or a request that never releases the "
                     "GIL): exiting without it", FORCED_EXIT_S);
    }
    _exit(0);
}

static void *watch_exit(void *arg)
{
    struct exit_watch *w = arg;
    for (;;) {
        uint64_t now = tf_now_us();
        pthread_mutex_lock(&w->lock);
        uint64_t deadline = w->deadline;
        pthread_mutex_unlock(&w->lock);
        if (deadline && now >= deadline)
            give_up(w);
        if (w->front && !w->front_gone && getppid() != w->front) { /* also under a longer bound */
            w->front_gone = true;
            if (bound_by(w, now + FORCED_EXIT_S * 1000000u, false))
                tf_log_info("the front (pid %d) is gone: Python gets %d s more to finish",
                            (int)w->front, FORCED_EXIT_S);
            continue;
        }
        /* at most a second: exit_watch_arm's bound is read again by then */
        uint64_t left = deadline ? (deadline - now + 999) / 1000 : 1000;
        int sig = tf_signals_wait_fd(w->done[0], left < 1000 ? (int)left : 1000);
        if (sig < 0)
            return NULL; /* done */
        if ((sig == SIGINT || sig == SIGTERM) && !w->front &&
            bound_by(w, tf_now_us() + FORCED_EXIT_S * 1000000u, false))
            tf_log_error("signal %d again: Python gets %d s more to finish", sig, FORCED_EXIT_S);
        else if (sig == SIGUSR1)
            (void)tf_log_reopen();
    }
}

/* Start watching (bounded at once: the stop stopped waiting). Without a
 * thread: a bounded end is cut by SIGALRM (no app handler for it, which
 * would keep the process), else SIGINT/SIGTERM end the process at once. */
static void exit_watch_start(struct exit_watch *w, pid_t front, bool bounded)
{
    *w = (struct exit_watch){ .front = front, .done = { -1, -1 },
                              .deadline = bounded ? tf_now_us() + FORCED_EXIT_S * 1000000u : 0 };
    pthread_mutex_init(&w->lock, NULL);
    int rc = pipe(w->done) < 0 ? errno : 0;
    for (int i = 0; i < 2 && rc == 0; i++)
        fcntl(w->done[i], F_SETFD, FD_CLOEXEC); /* not for the programs Python starts */
    if (rc == 0)
        rc = pthread_create(&w->thread, NULL, watch_exit, w);
    if (rc == 0)
        return;
    if (w->done[0] >= 0) {
        close(w->done[0]);
        close(w->done[1]);
    }
    w->done[0] = w->done[1] = -1;
    if (bounded || (front && getppid() != front)) {
        tf_log_error("cannot watch Python's end (%s): SIGALRM ends this process if Python has "
                     "not finished within %d s", strerror(rc), FORCED_EXIT_S);
        signal(SIGALRM, SIG_DFL);
        alarm(FORCED_EXIT_S);
    } else {
        tf_log_error("cannot watch Python's end (%s): a second SIGINT/SIGTERM ends this "
                     "process at once", strerror(rc));
        tf_signals_default_while_starting();
    }
}

/* A normal stop's requests are done: the rest (the profile, the network
 * threads' ends, which take the GIL, and Python's end) is bounded by what is
 * left of --graceful-timeout from stop_began, but at least FORCED_EXIT_S (the
 * atexit handlers' allowance), as gunicorn's and uWSGI's masters end a
 * worker at their graceful timeout. Without a watch thread, SIGALRM ends
 * the process then. */
static void exit_watch_arm(struct exit_watch *w, uint64_t stop_began, double graceful_timeout)
{
    uint64_t now = tf_now_us(), least = now + FORCED_EXIT_S * 1000000u;
    uint64_t deadline = stop_began + (uint64_t)(graceful_timeout * 1e6);
    deadline = deadline > least ? deadline : least;
    if (w->done[1] < 0) {
        signal(SIGALRM, SIG_DFL);
        alarm((unsigned)((deadline - now + 999999) / 1000000u));
        return;
    }
    bound_by(w, deadline, true);
}

/* Python's end begins (the main thread, app threads idle): the threads it
 * will wait for, named if the bound passes. */
static void exit_watch_note_threads(struct exit_watch *w)
{
    if (w->done[1] < 0)
        return;
    struct wsgi_thread waited[WAITED_MAX];
    size_t n = wsgi_interp_threads_waited(waited, WAITED_MAX);
    pthread_mutex_lock(&w->lock);
    memcpy(w->waited, waited, n * sizeof(*waited));
    w->n_waited = n;
    pthread_mutex_unlock(&w->lock);
}

/* Python finished: the watch ends (it exits the process if too late). */
static void exit_watch_end(struct exit_watch *w)
{
    if (w->done[1] < 0)
        return;
    /* a byte, not only the close: a child forked meanwhile (an atexit handler,
     * multiprocessing) holds the pipe's write end too */
    if (write(w->done[1], "x", 1) != 1) { /* an empty pipe: cannot fail */ }
    close(w->done[1]);
    pthread_join(w->thread, NULL);
    close(w->done[0]);
    pthread_mutex_destroy(&w->lock);
}

/* Python's end given up on while app code may still run in it: the atexit
 * handlers get FORCED_EXIT_S, without finalizing, then the process exits. */
__attribute__((noreturn)) static void exit_without_finalizing(pid_t front)
{
    struct exit_watch bounded;
    exit_watch_start(&bounded, front, true);
    wsgi_interp_stop(false);
    _exit(0); /* the I/O threads may still be logging: no tf_log_close() under them */
}

static void report_signal_taken(int sig)
{
    if (sig == SIGINT && wsgi_interp_sigint_is_pythons())
        return;
    tf_log_error("the app set its own handler for %s at import; tracfront keeps its own "
                 "(shutdown, reload, log reopening), so the app's is not called",
                 sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP"
                 : sig == SIGUSR1 ? "SIGUSR1" : "SIGCHLD");
}

/* The app in this process (also a worker of a front), the upstream, and
 * the HTTP server(s). */
static int run_server(struct tf_config *cfg)
{
    char err[1024] = "";
    pid_t front = cfg->worker ? getppid() : 0; /* see wait_for_stop */
    struct wsgi_pool *pool = NULL;
    struct tf_upstream *upstream = NULL;
    struct tf_backends backends = { 0 };
    /* a worker serves its share of the port on one loop (the other workers
     * share the load), and its control port on another, which the front asks
     * while the first relays a profile page to it */
    backends.n_loops = cfg->worker ? 2 : cfg->io_threads;
    if (!(backends.loops = tf_loops_start(backends.n_loops, err, sizeof(err))))
        return start_failed(err);
    if (cfg->have_app) {
        tf_signals_default_while_starting();
        int loaded = wsgi_interp_start(cfg, err, sizeof(err));
        tf_signals_reclaim(report_signal_taken);
        if (loaded < 0)
            return start_failed(err);
        if (!cfg->worker) /* the front says it */
            warn_frame_hook_misses(cfg);
        if (!(pool = wsgi_pool_new(cfg->queue_size)))
            return start_failed("out of memory");
        backends.app = wsgi_pool_submit;
        backends.app_idle = wsgi_pool_idle;
        backends.app_inline = cfg->inline_fast_calls ? wsgi_pool_run_inline : NULL;
        backends.app_ctx = pool;
    }
    if (cfg->upstream) {
        if (!(upstream = tf_upstream_start(cfg, backends.loops, backends.n_loops, err,
                                           sizeof(err))))
            return start_failed(err);
        backends.upstream = tf_upstream_submit;
        backends.upstream_ctx = upstream;
        backends.pins = cfg->upstream_pin ? upstream : NULL;
    }
    struct tf_server *server = NULL, *control = NULL;
    unsigned control_port = 0;
    if (cfg->worker) { /* a loopback port for the front's questions; the shared socket later */
        int cfd = tf_server_listen_socket("127.0.0.1", 0, &control_port, err, sizeof(err));
        struct tf_server_socket own = { .fd = cfd, .io_threads = 1, .first_loop = 1,
                                        .control = true };
        server = control = cfd >= 0 ? tf_server_start_on(cfg, &backends, &own, err, sizeof(err))
                                    : NULL;
    } else {
        server = tf_server_start(cfg, &backends, err, sizeof(err));
    }
    if (!server)
        return start_failed(err);
    static const struct tf_profiler_controls controls = {
        prof_hook_enable, prof_hook_enabled, prof_hook_export, prof_hook_table,
        prof_hook_request_html, prof_hook_clear, .modules = wsgi_app_files,
        .inflight = wsgi_watchdog_inflight,
    };
    if (pool) {
        if (wsgi_watchdog_start(cfg, err, sizeof(err)) < 0) /* before the page can ask it */
            return start_failed(err);
        configure_profiler(cfg);
        prof_hook_enable(cfg->profile);
        tf_server_set_profiler(server, &controls);
        if (control)
            tf_server_set_profiler(control, &controls);
        wsgi_interp_set_port(cfg->worker ? env_port("TF_FRONT_PORT") : tf_server_port(server));
        if (wsgi_pool_start(pool, cfg->threads) < 0)
            return start_failed("cannot start app threads");
    }
    if (cfg->worker) {
        report_ready(control_port);
        if (!(server = accept_when_told(cfg, &backends, &controls, control)))
            return 1;
    } else {
        print_listening(cfg, tf_server_port(server));
    }

    int sig = wait_for_stop(NULL, front);
    uint64_t stop_began = tf_now_us();
    if (sig)
        tf_log_info("signal %d: stopping; waiting up to %gs for requests in flight", sig,
                    cfg->graceful_timeout);
    else
        tf_log_info("the front (pid %d) is gone: stopping; waiting up to %gs for requests in "
                    "flight", (int)front, cfg->graceful_timeout);
    if (cfg->worker) /* the other workers take the new connections; this one's copy of the
                        socket is closed, so once all are a stop refuses new connections */
        tf_server_quiesce(server);
    else
        tf_server_begin_stop(server);
    int ended = drain(server, pool, cfg->graceful_timeout, cfg->worker ? 300000u : 0u,
                      !cfg->worker);
    if (ended) {
        if (ended > 0)
            tf_log_error("signal %d again: exiting without waiting for the requests still "
                         "running", ended);
        else
            tf_log_error("requests still running after --graceful-timeout; exiting without them");
        if (pool)
            exit_without_finalizing(front);
        _exit(0);
    }
    struct exit_watch watch = { .done = { -1, -1 } };
    if (pool) {
        exit_watch_start(&watch, front, false);
        exit_watch_arm(&watch, stop_began, cfg->graceful_timeout);
    }
    if (!cfg->worker)
        tf_server_profile_shutdown(server); /* every request is done: the profile is whole */
    else
        hand_profile_to_front(cfg, control_port);
    stop_network(&backends, control, server, upstream);
    if (pool) {
        wsgi_watchdog_stop(); /* before the app threads it watches */
        wsgi_pool_stop(pool);
        exit_watch_note_threads(&watch);
        wsgi_interp_stop(true);
    }
    exit_watch_end(&watch);
    tf_log_info("stopped");
    return 0;
}

/* Request bodies over 256 KiB and answers a slow client does not keep up
 * with go to temporary files: a folder where none can be made would fail
 * every such request, so it is refused at start. */
static int check_tempdir(char *err, size_t errlen)
{
    int fd = tf_tempfile();
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    snprintf(err, errlen, "TMPDIR: cannot make a temporary file in %s: %s (request bodies "
             "over 256 KiB and answers to slow clients are kept there); set TMPDIR to a "
             "writable folder", tf_tempdir(), strerror(errno));
    return -1;
}

/* Started with descriptors 0-2 closed (`<&- >&- 2>&-`), the first ones
 * opened would take their place: the signal pipe as stdin and stdout, the
 * listening socket as stderr, where the logs and sys.stderr then write, and
 * which a worker then gets as TF_LISTEN_FD=2, left inheritable (stdio is
 * for the programs the app starts). As daemons do, /dev/null fills them. */
static void fill_standard_descriptors(void)
{
    int fd;
    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= STDERR_FILENO) {
    }
    if (fd > STDERR_FILENO)
        close(fd);
}

int main(int argc, char **argv)
{
    struct tf_config cfg;
    char err[1024] = "";
    fill_standard_descriptors(); /* before anything opens */
    if (tf_signals_install() < 0) {
        perror("tracfront: cannot install signal handlers");
        return 1;
    }
    if (tf_config_load(&cfg, argc, argv, err, sizeof(err)) < 0 ||
        (!cfg.help && !cfg.version && wsgi_options_check(&cfg, err, sizeof(err)) < 0)) {
        fprintf(stderr, "tracfront: %s\n", err);
        tf_config_free(&cfg);
        return 2;
    }
    if (cfg.help || cfg.version) {
        if (cfg.help)
            fputs(tf_config_usage, stdout);
        else
            printf("tracfront %s (libmicrohttpd, Python %s)\n", TF_VERSION, TF_PY_EXECUTABLE);
        tf_config_free(&cfg);
        return 0;
    }
    if (tf_log_open(cfg.error_log, cfg.access_log, err, sizeof(err)) < 0) {
        fprintf(stderr, "tracfront: %s\n", err);
        tf_config_free(&cfg);
        return 2;
    }
    if (check_tempdir(err, sizeof(err)) < 0) { /* on stderr and in --error-log */
        start_failed(err);
        tf_log_close();
        tf_config_free(&cfg);
        return 2;
    }
    if (cfg.worker) {
        tf_spawned_name(argv[0]);
        const char *secret = getenv("TF_AUTH_SECRET");
        if (secret)
            tf_auth_share_key(secret);
        unsetenv("TF_AUTH_SECRET"); /* not for the app or the programs it runs */
        const char *nonces = getenv("TF_AUTH_NONCES_FD"); /* unset: the front has none */
        close_on_exec(nonces); /* kept open when it is not the table */
        if (nonces && tf_nonces_table_share(nonces, cfg.n_digest_auth > 0) < 0)
            tf_log_error("TF_AUTH_NONCES_FD=%s is not the front's table of Digest nonces (%m): "
                         "left alone; this worker answers stale to the others' nonces", nonces);
        unsetenv("TF_AUTH_NONCES_FD");
        take_worker_env();
        tf_log_set_worker_tag();
        tf_request_id_base((uint64_t)getpid() << 32); /* ids unique across the workers */
    }
    if (!cfg.profile_builtins && !prof_frame_hook_available()) {
        start_failed("--profile-builtins=false needs CPython 3.11 (this build embeds "
                     PY_VERSION ")");
        tf_config_free(&cfg);
        return 2; /* a setting this build cannot honour, as a bad one */
    }
    if (prof_latency_init(cfg.profile_max_routes, cfg.profile_slowest) < 0) {
        tf_config_free(&cfg);
        return start_failed("out of memory");
    }
    int rc = cfg.workers ? run_front(&cfg, argv) : run_server(&cfg);
    tf_log_close();
    tf_config_free(&cfg);
    return rc;
}
