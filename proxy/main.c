/* main.c — tracfront's entry point: read the configuration, start Python and
 * the app, the app threads and the HTTP server; then wait for SIGINT/SIGTERM
 * and shut down gracefully: stop accepting, let requests in flight finish
 * (bounded by --graceful-timeout), finalize Python so atexit handlers run. */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/auth.h"
#include "proxy/config.h"
#include "proxy/exit_watch.h"
#include "proxy/fetch.h"
#include "proxy/log.h"
#include "proxy/log_stamp.h"
#include "proxy/loop.h"
#include "proxy/platform.h"
#include "proxy/privileges.h"
#include "proxy/server.h"
#include "proxy/service_notify.h"
#include "proxy/socket_activation.h"
#include "proxy/trac_projects.h"
#include "proxy/request.h"
#include "proxy/upstream.h"
#include "proxy/worker_env.h"
#include "proxy/workers.h"
#include "proxy/front_profile.h"
#include "wsgi/app.h"
#include <signal.h>
#include "profiler/frame_hook.h"
#include "profiler/hook.h"
#include "profiler/latency.h"
#include "profiler/route.h"
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
                   ? (size_t)snprintf(out + len, n - len, "app %s, %u worker%s of %u thread%s%s",
                                      app_label(cfg), cfg->workers, cfg->workers > 1 ? "s" : "",
                                      cfg->threads, cfg->threads > 1 ? "s" : "",
                                      cfg->reload ? ", reloading" : "")
                   : (size_t)snprintf(out + len, n - len, "app %s, %u thread%s", app_label(cfg),
                                      cfg->threads, cfg->threads > 1 ? "s" : "");
    if (cfg->upstream && len < n)
        len += (size_t)snprintf(out + len, n - len, "%supstream %s%s", len ? "; " : "",
                                cfg->upstream, cfg->mirror ? ", mirrored" : "");
    for (size_t i = 0; i < cfg->routes.n; i++)
        statics += cfg->routes.routes[i].kind == TF_ROUTE_STATIC;
    if (statics && len < n)
        len += (size_t)snprintf(out + len, n - len, "%s%zu static route%s", len ? "; " : "",
                                statics, statics > 1 ? "s" : "");
    if (len < n)
        snprintf(out + len, n - len, "; up to %u connection%s%s", cfg->max_connections,
                 cfg->max_connections > 1 ? "s" : "", cfg->workers ? " per worker" : "");
}

/* Whether the error log is a file of its own (not off, not stderr, the
 * default): what tracfront says on stderr goes there too, else it would
 * show twice. */
static bool error_log_apart(void)
{
    struct stat log_file, terminal;
    int fd = tf_log_error_fd(), stderr_fd = tf_log_stderr_fd();
    return fd >= 0 && !(fstat(fd, &log_file) == 0 && fstat(stderr_fd, &terminal) == 0 &&
                        log_file.st_dev == terminal.st_dev && log_file.st_ino == terminal.st_ino);
}

/* On stderr, and in the error log with the pid (it says "stopped" too). */
static void print_listening(const struct tf_config *cfg, unsigned port)
{
    char what[1024], where[300];
    describe(cfg, what, sizeof(what));
    snprintf(where, sizeof(where), "http://%s%s%s:%u/", strchr(cfg->listen_host, ':') ? "[" : "",
             cfg->listen_host, strchr(cfg->listen_host, ':') ? "]" : "", port);
    dprintf(tf_log_stderr_fd(), "tracfront %s: listening on %s (%s)\n", TF_VERSION, where, what);
    if (error_log_apart())
        tf_log_info("tracfront %s (pid %d): listening on %s (%s)", TF_VERSION, (int)getpid(),
                    where, what);
    char ready[400];
    snprintf(ready, sizeof(ready), "READY=1\nSTATUS=listening on %s", where);
    tf_notify(ready);
}

/* Why the server cannot start: on stderr, and in the error log unless that
 * is stderr too. Returns 1, the exit status. */
static int start_failed(const char *err)
{
    dprintf(tf_log_stderr_fd(), "tracfront: %s\n", err);
    if (error_log_apart())
        tf_log_error("%s", err);
    return 1;
}

/* Root runs the app as root: the files it makes (Trac's ENV/log/trac.log)
 * are root's, and the same app started later as its own user fails on them.
 * Said once, before the app loads (a front's workers do not repeat it). */
static void warn_if_root(void)
{
    static const char why[] =
        "running as root: the app runs as root and the files it makes (a Trac environment's "
        "log, attachments) are root's; run tracfront as the app's own user: systemd's User= "
        "and Group= (with AmbientCapabilities=CAP_NET_BIND_SERVICE for a port below 1024), "
        "or setpriv --reuid=USER --regid=GROUP --init-groups (README: Running as a service)";
    if (geteuid() != 0)
        return;
    dprintf(tf_log_stderr_fd(), "tracfront: warning: %s\n", why);
    if (error_log_apart())
        tf_log_warn("%s", why);
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
            tf_workers_reopen_logs(NULL);
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
        if (sig == SIGUSR1)
            tf_workers_reopen_logs(workers);
        else if (sig == SIGHUP && workers)
            tf_workers_reload(workers, "SIGHUP", true);
        else if (sig == SIGHUP && !front) /* a worker's front reloads (SIGHUP to the group) */
            tf_log_info("SIGHUP: nothing to reload (the app runs in this process; see --workers)");
        else if (workers) /* a second, or a child ended */
            tf_workers_tick(workers);
    }
    if (sig)
        tf_notify("STOPPING=1"); /* a worker has nothing to notify (tf_notify_take) */
    return sig;
}

/* A worker, once ready: wait for the front's "GO" (its old generation has
 * stopped accepting), then serve the shared socket. NULL on failure. */
static struct tf_server *accept_when_told(const struct tf_config *cfg,
                                          const struct tf_backends *backends,
                                          const struct tf_profiler_controls *controls,
                                          struct tf_server *control)
{
    char err[1024] = "";
    if (!tf_worker_env_wait_go((int)(cfg->worker_start_timeout * 1000) + 5000)) {
        tf_log_info("worker: not needed; exiting");
        return NULL;
    }
    struct tf_server_socket shared = {
        .fd = (int)tf_worker_env_number(TF_WORKER_VAR_LISTEN_FD), .io_threads = 1,
        .relay_port = tf_worker_env_number(TF_WORKER_VAR_FRONT_CONTROL), .shared = true };
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
    snprintf(origin, sizeof(origin), "http://127.0.0.1:%u",
             tf_worker_env_number(TF_WORKER_VAR_FRONT_CONTROL));
    snprintf(path, sizeof(path), "%s/stopped?port=%u", cfg->profile_path, control_port);
    struct tf_fetched f;
    if (tf_fetch(origin, "POST", path, TF_FETCH_LIMIT_MS, &f) < 0) /* it takes our tree */
        tf_log_error("profile: the front did not answer this worker's hand-over (it is gone, "
                     "or was busy %d s): what this worker measured is lost",
                     TF_FETCH_LIMIT_MS / 1000);
    else if (f.status != 303)
        tf_log_error("the front did not take this worker's profile (status %u)", f.status);
    tf_fetched_free(&f);
}

/* Where a worker asks its front for a replacement (ask_to_be_replaced):
 * made on the main thread before the watchdog starts, read on its thread. */
static char replace_origin[48], replace_path[4200];

/* The watchdog interrupted a request in this worker (--request-timeout-action
 * 504): what it interrupted may be left half done in the app for the rest of
 * this process, so the front is asked to replace it (workers.h: it may keep
 * it instead), as uWSGI's harakiri ends the process. completed: the
 * requests this worker had completed without an interrupt when the
 * interrupted one began (wsgi_watchdog_on_interrupt). Watchdog thread;
 * TF_FETCH_QUICK_MS at most. A 404: it is no current worker any more (a
 * reload or the stop is replacing it). */
static void ask_to_be_replaced(uint64_t completed)
{
    char path[4300];
    snprintf(path, sizeof(path), "%s&completed=%llu", replace_path,
             (unsigned long long)completed);
    struct tf_fetched f;
    if (tf_fetch(replace_origin, "POST", path, TF_FETCH_QUICK_MS, &f) < 0)
        tf_log_error("the front did not answer this worker's request to be replaced after the "
                     "interrupt within %d s: it goes on serving", TF_FETCH_QUICK_MS / 1000);
    else if (f.status != 303 && f.status != 404)
        tf_log_error("the front refused to replace this worker after the interrupt (status %u): "
                     "it goes on serving", f.status);
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

/* What the function profiler's mode misses or risks on this Python. */
static void say_profiler_caveats(const struct tf_config *cfg)
{
    if (cfg->profile_builtins && prof_setprofile_may_crash())
        tf_log_warn("--profile-builtins=true: this Python (%s) can crash while it profiles "
                    "(SIGSEGV in its garbage collector, CPython gh-101975, fixed in 3.11.3; "
                    "cProfile and repoze.profile crash the same way): real Trac 1.6 does on "
                    "its first attachment view; the default here is false", Py_GetVersion());
    if (!cfg->profile_builtins && prof_frame_hook_misses_subscr())
        tf_log_info("--profile-builtins=false: this Python (%s, before 3.11.4) runs obj[key] "
                    "into a Python __getitem__ without the frame-evaluation hook (CPython "
                    "gh-104405): those calls are not counted, their time is their caller's own; "
                    "--profile-builtins=true counts them", Py_GetVersion());
}

/* The segments of --mount ("/a/b": 2). */
static unsigned mount_segments(const char *mount)
{
    unsigned n = 0;
    for (const char *p = mount; *p; p++)
        n += *p != '/' && (p == mount || p[-1] == '/');
    return n;
}

/* The function profiler's settings (a front's too: it renders the merged profile). */
static void configure_profiler(const struct tf_config *cfg)
{
    prof_hook_configure(cfg->profile_max_nodes, cfg->profile_discard_first, cfg->profile_slowest,
                        cfg->profile_builtins,
                        cfg->profile_clock && !strcmp(cfg->profile_clock, "cpu"));
}

#define FRONT_IO_THREADS 4 /* run_front's control port */

/* --workers: this process holds the socket fd (bound to port), runs the
 * workers and adds up their profiles on a loopback control port; it serves
 * no request itself. */
static int run_front(struct tf_config *cfg, char **argv, int fd, unsigned port)
{
    char err[1024] = "";
    unsigned control_port = 0;
#ifdef M_ARENA_MAX
    /* One malloc arena for all its threads: a merge's memory, freed, is
     * there for the next page whichever thread makes it (with an arena per
     * thread, the front kept a merge's worth for each of them) */
    mallopt(M_ARENA_MAX, 1);
#endif
    if (wsgi_interp_start(cfg, err, sizeof(err)) < 0) /* to render the merged profile */
        return start_failed(err);
    say_profiler_caveats(cfg);
    int cfd = tf_server_listen_socket("127.0.0.1", 0, &control_port, err, sizeof(err));
    /* The control port's network threads: a page is made on the thread that
     * read it, and an export of a big merged tree takes seconds; the other
     * pages, the workers' hand-overs and --reload's questions go on. */
    struct tf_backends none = { .n_loops = FRONT_IO_THREADS };
    struct tf_server_socket sock = { .fd = cfd, .io_threads = FRONT_IO_THREADS, .control = true };
    none.loops = cfd < 0 ? NULL : tf_loops_start(FRONT_IO_THREADS, err, sizeof(err));
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
     * TF_FORCED_EXIT_S for Python's end; a second more for its hand-over */
    if (tf_workers_stop(workers, cfg->graceful_timeout + TF_FORCED_EXIT_S + 1) > 0) /* closes fd */
        tf_front_profile_cut(); /* a second signal: no file from part of them */
    tf_server_profile_shutdown(control); /* what they handed over: every request they finished */
    stop_network(&none, control, NULL, NULL); /* before the workers' list goes: pages read it */
    tf_workers_free(workers);
    tf_log_info("stopped");
    return 0;
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

/* What run_server starts, phase by phase (main thread only). backends must
 * outlive the servers: it lives as long as run_server. */
struct served {
    pid_t front;                  /* a worker's front (see wait_for_stop), or 0 */
    int listen_fd;                /* not a worker: the bound socket (bind_and_drop) */
    struct tf_backends backends;  /* the network threads, the app's pool, the upstream */
    struct wsgi_pool *pool;       /* the app's threads, or NULL: no app here */
    struct tf_upstream *upstream; /* --upstream's, or NULL */
    struct tf_server *server;     /* what serves the port (a worker's: its control port
                                     until the front says GO) */
    struct tf_server *control;    /* a worker's control port, or NULL */
    unsigned control_port;
};

static const struct tf_profiler_controls app_controls = {
    prof_hook_enable, prof_hook_enabled, prof_hook_export, prof_hook_table,
    prof_hook_request_html, prof_hook_clear, .modules = wsgi_app_files,
    .inflight = wsgi_watchdog_inflight,
};

/* The network threads, the app (imported here, its threads not started
 * yet) and the upstream. -1 with err. */
static int start_backends(const struct tf_config *cfg, struct served *s, char *err, size_t errlen)
{
    struct tf_backends *b = &s->backends;
    /* a worker serves its share of the port on one loop (the other workers
     * share the load), and its control port on another, which the front asks
     * while the first relays a profile page to it */
    b->n_loops = cfg->worker ? 2 : cfg->io_threads;
    if (!(b->loops = tf_loops_start(b->n_loops, err, errlen)))
        return -1;
    if (cfg->have_app) {
        tf_signals_default_while_starting();
        int loaded = wsgi_interp_start(cfg, err, errlen);
        tf_signals_reclaim(report_signal_taken);
        if (loaded < 0)
            return -1;
        if (!cfg->worker) /* the front says it */
            say_profiler_caveats(cfg);
        if (!(s->pool = wsgi_pool_new(cfg->queue_size))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        b->app = wsgi_pool_submit;
        b->app_idle = wsgi_pool_idle;
        b->app_inline = cfg->inline_fast_calls ? wsgi_pool_run_inline : NULL;
        b->app_ctx = s->pool;
    }
    if (cfg->upstream) {
        if (!(s->upstream = tf_upstream_start(cfg, b->loops, b->n_loops, err, errlen)))
            return -1;
        b->upstream = tf_upstream_submit;
        b->upstream_ctx = s->upstream;
        b->pins = cfg->upstream_pin ? s->upstream : NULL;
    }
    return 0;
}

/* The HTTP server (a worker: its loopback port for the front's questions,
 * the shared socket later), then the app's threads, its watchdog and
 * profiler, which the server's profile page asks. -1 with err. */
static int start_servers(const struct tf_config *cfg, struct served *s, char *err, size_t errlen)
{
    if (cfg->worker) {
        int cfd = tf_server_listen_socket("127.0.0.1", 0, &s->control_port, err, errlen);
        struct tf_server_socket own = { .fd = cfd, .io_threads = 1, .first_loop = 1,
                                        .control = true };
        s->server = s->control =
            cfd >= 0 ? tf_server_start_on(cfg, &s->backends, &own, err, errlen) : NULL;
    } else {
        struct tf_server_socket bound = { .fd = s->listen_fd };
        s->server = tf_server_start_on(cfg, &s->backends, &bound, err, errlen);
    }
    if (!s->server)
        return -1;
    if (!s->pool)
        return 0;
    if (cfg->worker) {
        snprintf(replace_origin, sizeof(replace_origin), "http://127.0.0.1:%u",
                 tf_worker_env_number(TF_WORKER_VAR_FRONT_CONTROL));
        snprintf(replace_path, sizeof(replace_path), "%s/replace?port=%u", cfg->profile_path,
                 s->control_port);
        wsgi_watchdog_on_interrupt(ask_to_be_replaced);
    }
    if (wsgi_watchdog_start(cfg, err, errlen) < 0) /* before the page can ask it */
        return -1;
    configure_profiler(cfg);
    prof_hook_enable(cfg->profile);
    tf_server_set_profiler(s->server, &app_controls);
    if (s->control)
        tf_server_set_profiler(s->control, &app_controls);
    wsgi_interp_set_port(cfg->worker ? tf_worker_env_number(TF_WORKER_VAR_FRONT_PORT)
                                     : tf_server_port(s->server));
    if (wsgi_pool_start(s->pool, cfg->threads) < 0) {
        snprintf(err, errlen, "cannot start app threads");
        return -1;
    }
    return 0;
}

/* Wait for the stop, then for the requests in flight. Past the timeout or
 * at a second signal the process exits here (Python's end bounded); else
 * returns when the stop began. */
static uint64_t wait_and_drain(const struct tf_config *cfg, struct served *s)
{
    int sig = wait_for_stop(NULL, s->front);
    uint64_t stop_began = tf_now_us();
    if (sig)
        tf_log_info("signal %d: stopping; waiting up to %gs for requests in flight", sig,
                    cfg->graceful_timeout);
    else
        tf_log_info("the front (pid %d) is gone: stopping; waiting up to %gs for requests in "
                    "flight", (int)s->front, cfg->graceful_timeout);
    if (cfg->worker) /* the other workers take the new connections; this one's copy of the
                        socket is closed, so once all are a stop refuses new connections */
        tf_server_quiesce(s->server);
    else
        tf_server_begin_stop(s->server);
    int ended = drain(s->server, s->pool, cfg->graceful_timeout, cfg->worker ? 300000u : 0u,
                      !cfg->worker);
    if (ended) {
        if (ended > 0)
            tf_log_error("signal %d again: exiting without waiting for the requests still "
                         "running", ended);
        else
            tf_log_error("requests still running after --graceful-timeout; exiting without them");
        tf_upstream_say_unsaid(); /* tf_upstream_stop would have */
        if (s->pool)
            tf_exit_without_finalizing(s->front);
        _exit(0);
    }
    return stop_began;
}

/* Every request done: the profile (files, or a worker's hand-over), the
 * network, the app's threads and Python's end, all bounded from stop_began
 * (tf_exit_watch). */
static void stop_all(const struct tf_config *cfg, struct served *s, uint64_t stop_began)
{
    struct tf_exit_watch watch = TF_EXIT_WATCH_IDLE;
    if (s->pool) {
        tf_exit_watch_start(&watch, s->front, false);
        tf_exit_watch_arm(&watch, stop_began, cfg->graceful_timeout);
    }
    if (!cfg->worker)
        tf_server_profile_shutdown(s->server); /* every request is done: the profile is whole */
    else
        hand_profile_to_front(cfg, s->control_port);
    stop_network(&s->backends, s->control, s->server, s->upstream);
    if (s->pool) {
        wsgi_watchdog_stop(); /* before the app threads it watches */
        wsgi_pool_stop(s->pool);
        tf_exit_watch_note_threads(&watch);
        wsgi_interp_stop(true);
    }
    tf_exit_watch_end(&watch);
}

/* The app in this process (also a worker of a front), the upstream, and
 * the HTTP server(s). */
static int run_server(struct tf_config *cfg, int listen_fd)
{
    char err[1024] = "";
    struct served s = { .front = cfg->worker ? getppid() : 0, /* see wait_for_stop */
                        .listen_fd = listen_fd };
    if (start_backends(cfg, &s, err, sizeof(err)) < 0 ||
        start_servers(cfg, &s, err, sizeof(err)) < 0)
        return start_failed(err);
    if (cfg->worker) {
        tf_worker_env_report_ready(s.control_port);
        if (!(s.server = accept_when_told(cfg, &s.backends, &app_controls, s.control)))
            return 1;
    } else {
        print_listening(cfg, tf_server_port(s.server));
    }
    stop_all(cfg, &s, wait_and_drain(cfg, &s));
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

/* --error-log and --access-log; with --user, opened as USER (after the
 * switch: root following a link USER put where a log goes would have written
 * or given away any file), who must be able to write them, as the workers
 * and SIGUSR1 open them again by name. 0, or the exit status 2, said. */
static int open_logs(const struct tf_config *cfg)
{
    char err[1024] = "";
    if (tf_log_open(cfg->error_log, cfg->access_log, err, sizeof(err)) == 0)
        return 0;
    dprintf(tf_log_stderr_fd(), "tracfront: %s%s%s%s\n", err,
            cfg->drop_privileges ? " (opened as --user " : "",
            cfg->drop_privileges ? cfg->user : "", cfg->drop_privileges ? ")" : "");
    return 2;
}

/* What a root start checked as root, checked again as USER, who uses it
 * from now on: the profile files, the auth files, and the --config file
 * each worker reads again. 0, or -1 with err. */
static int check_as_user(const struct tf_config *cfg, char *err, size_t errlen)
{
    if (tf_config_check_files(cfg, err, errlen) < 0 || tf_auth_config_check(cfg, err, errlen) < 0)
        return -1;
    if (cfg->workers && cfg->config_file && access(cfg->config_file, R_OK) != 0) {
        snprintf(err, errlen, "--config: --user %s cannot read '%s' (%s), and each of the "
                 "--workers reads it again", cfg->user, cfg->config_file, strerror(errno));
        return -1;
    }
    return 0;
}

/* The listening socket (not a worker's: it has its front's), bound first,
 * so that a root start binds a port below 1024; then, with --user, the
 * switch to that user, before anything the user controls is opened, runs
 * or is written (the logs, the app, TMPDIR, the profile files, the
 * workers). The socket in *fd, its port in *port. 0; or the exit status,
 * said. */
static int bind_and_drop(struct tf_config *cfg, int *fd, unsigned *port)
{
    char err[1024] = "", host[INET6_ADDRSTRLEN] = "";
    *fd = cfg->worker ? -1 : tf_socket_activation_take(host, sizeof(host), port, err, sizeof(err));
    if (*fd == -2)
        return (start_failed(err), 2); /* what the unit passes is a setting */
    if (*fd >= 0) { /* said by the listening line: its address, not --listen's */
        char *taken = strdup(host);
        if (!taken)
            return start_failed("out of memory");
        free(cfg->listen_host);
        cfg->listen_host = taken;
        cfg->listen_port = *port;
    } else if (!cfg->worker) {
        *fd = tf_server_listen_socket(cfg->listen_host, cfg->listen_port, port, err, sizeof(err));
    }
    if ((!cfg->worker && *fd < 0) || tf_privileges_drop(cfg, err, sizeof(err)) < 0)
        return start_failed(err);
    if (!cfg->drop_privileges)
        return 0;
    int bad = open_logs(cfg);
    if (!bad && check_as_user(cfg, err, sizeof(err)) < 0)
        bad = (start_failed(err), 2); /* a bad setting, as at config time */
    return bad;
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
    if (cfg.profile_builtins < 0) /* not given: the frame hook where setprofile may crash */
        cfg.profile_builtins = !(prof_frame_hook_available() && prof_setprofile_may_crash());
    if (cfg.help || cfg.version) {
        if (cfg.help)
            fputs(tf_config_usage, stdout);
        else
            printf("tracfront %s (libmicrohttpd, Python %s)\n", TF_VERSION, TF_PY_EXECUTABLE);
        tf_config_free(&cfg);
        return 0;
    }
    if (!cfg.drop_privileges && open_logs(&cfg)) { /* else as USER, in bind_and_drop */
        tf_config_free(&cfg);
        return 2;
    }
    int listen_fd = -1;
    unsigned port = 0;
    int bad = bind_and_drop(&cfg, &listen_fd, &port);
    if (!bad && check_tempdir(err, sizeof(err)) < 0)
        bad = (start_failed(err), 2); /* on stderr and in --error-log: a bad setting */
    if (bad) {
        tf_log_close();
        tf_config_free(&cfg);
        return bad;
    }
    if (!cfg.worker && !cfg.drop_privileges)
        warn_if_root();
    if (!cfg.worker)
        tf_notify_take(); /* before the workers and the app: theirs is not to notify */
    if (cfg.worker) {
        tf_spawned_name(argv[0]);
        tf_worker_env_take(cfg.n_digest_auth > 0); /* before the app is imported */
        tf_log_stamp_set_worker_tag();
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
    if (tf_trac_projects(&cfg).parent_dir) /* the app's first segment names a project */
        prof_route_keep_leading(mount_segments(cfg.mount) + 1);
    int rc = cfg.workers ? run_front(&cfg, argv, listen_fd, port) : run_server(&cfg, listen_fd);
    /* no tf_log_close(): a thread the app started (detached, as Python's are)
     * may still write its last line as it ends; the exit closes the logs */
    tf_config_free(&cfg);
    return rc;
}
