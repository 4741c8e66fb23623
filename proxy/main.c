/* main.c — tracfront's entry point: read the configuration, start Python and
 * the app, the app threads and the HTTP server; then wait for SIGINT/SIGTERM
 * and shut down gracefully: stop accepting, let requests in flight finish
 * (bounded by --graceful-timeout), finalize Python so atexit handlers run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/platform.h"
#include "proxy/server.h"
#include "proxy/upstream.h"
#include "proxy/workers.h"
#include "proxy/front_profile.h"
#include "wsgi/app.h"
#include <signal.h>
#include "profiler/hook.h"
#include "profiler/latency.h"
#include "wsgi/interp.h"
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
        snprintf(out + len, n - len, "%s%zu static route%s", len ? "; " : "", statics,
                 statics > 1 ? "s" : "");
}

/* A worker: SERVER_PORT is its front's, and the front waits for "READY PORT"
 * on the pipe it passed. */
static unsigned front_port(void)
{
    const char *port = getenv("TF_FRONT_PORT");
    return port ? (unsigned)strtoul(port, NULL, 10) : 0;
}

static void report_ready(unsigned port)
{
    const char *fd = getenv("TF_WORKER_READY_FD");
    char line[32];
    int n = snprintf(line, sizeof(line), "READY %u\n", port);
    if (!fd || write(atoi(fd), line, (size_t)n) != n)
        tf_log_error("worker: cannot tell the front it is ready");
    if (fd)
        close(atoi(fd));
}

/* Wait for requests in flight to end, at most timeout seconds. */
static bool drain(struct tf_server *server, struct wsgi_pool *pool, double timeout)
{
    uint64_t deadline = tf_now_us() + (uint64_t)(timeout * 1e6);
    while (tf_server_in_flight(server) > 0 || (pool && wsgi_pool_busy(pool) > 0)) {
        if (tf_now_us() >= deadline)
            return false;
        int sig = tf_signals_wait(20);
        if (sig == SIGINT || sig == SIGTERM) /* a second one: stop waiting */
            return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    struct tf_config cfg;
    char err[1024] = "";
    if (tf_signals_install() < 0) {
        perror("tracfront: cannot install signal handlers");
        return 1;
    }
    if (tf_config_load(&cfg, argc, argv, err, sizeof(err)) < 0) {
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
    if (cfg.worker)
        tf_log_set_worker_tag();
    if (prof_latency_init(cfg.profile_max_routes, cfg.profile_slowest) < 0) {
        fprintf(stderr, "tracfront: out of memory\n");
        return 1;
    }
    struct wsgi_pool *pool = NULL;
    struct tf_upstream *upstream = NULL;
    struct tf_backends backends = { 0 };
    struct tf_workers *workers = NULL;
    bool front = cfg.workers > 0; /* the app runs in worker processes */
    if (cfg.have_app) {
        if (wsgi_interp_start(&cfg, err, sizeof(err)) < 0) {
            fprintf(stderr, "tracfront: %s\n", err);
            tf_log_error("%s", err);
            return 1;
        }
    }
    if (cfg.have_app && !front) {
        if (!(pool = wsgi_pool_new(cfg.queue_size))) {
            fprintf(stderr, "tracfront: out of memory\n");
            return 1;
        }
        backends.app = wsgi_pool_submit;
        backends.app_ctx = pool;
    }
    if (cfg.upstream || front) {
        if (!(upstream = tf_upstream_start(&cfg, err, sizeof(err)))) {
            fprintf(stderr, "tracfront: %s\n", err);
            return 1;
        }
    }
    if (cfg.upstream) {
        backends.upstream = tf_upstream_submit;
        backends.upstream_ctx = upstream;
        backends.pins = cfg.upstream_pin ? upstream : NULL;
    }
    if (front) {
        if (!(workers = tf_workers_new(&cfg, argv, upstream)) ||
            !(cfg.worker_token = strdup(tf_workers_token(workers)))) {
            fprintf(stderr, "tracfront: out of memory\n");
            return 1;
        }
        backends.app = tf_workers_submit;
        backends.app_ctx = workers;
    }
    struct tf_server *server = tf_server_start(&cfg, &backends, err, sizeof(err));
    if (!server) {
        fprintf(stderr, "tracfront: %s\n", err);
        return 1;
    }
    static const struct tf_profiler_controls controls = {
        prof_hook_enable, prof_hook_enabled, prof_hook_export, prof_hook_table,
        prof_hook_request_html, prof_hook_clear, .modules = wsgi_app_files,
        .inflight = wsgi_watchdog_inflight,
    };
    if (pool) {
        if (wsgi_watchdog_start(&cfg, err, sizeof(err)) < 0) { /* before the page can ask it */
            fprintf(stderr, "tracfront: %s\n", err);
            return 1;
        }
        prof_hook_configure(cfg.profile_max_nodes, cfg.profile_discard_first, cfg.profile_slowest);
        prof_hook_enable(cfg.profile);
        tf_server_set_profiler(server, &controls);
        wsgi_interp_set_port(cfg.worker ? front_port() : tf_server_port(server));
        if (wsgi_pool_start(pool, cfg.threads) < 0) {
            fprintf(stderr, "tracfront: cannot start app threads\n");
            return 1;
        }
    }
    if (front) {
        prof_hook_configure(cfg.profile_max_nodes, cfg.profile_discard_first, cfg.profile_slowest);
        prof_hook_enable(cfg.profile);
        tf_server_set_profiler(server, tf_front_profile_controls(workers, cfg.profile_path));
        if (tf_workers_begin(workers, tf_server_port(server), err, sizeof(err)) < 0) {
            fprintf(stderr, "tracfront: %s\n", err);
            tf_log_error("%s", err);
            return 1;
        }
    }
    if (cfg.worker) {
        report_ready(tf_server_port(server));
    } else {
        char what[1024];
        describe(&cfg, what, sizeof(what));
    fprintf(stderr, "tracfront %s: listening on http://%s%s%s:%u/ (%s)\n",
            TF_VERSION, strchr(cfg.listen_host, ':') ? "[" : "", cfg.listen_host,
            strchr(cfg.listen_host, ':') ? "]" : "", tf_server_port(server), what);
        fflush(stderr);
    }

    int sig;
    while ((sig = tf_signals_wait(1000)) == 0 || sig == SIGHUP || sig == SIGCHLD) {
        if (sig == SIGHUP && workers)
            tf_workers_reload(workers, "SIGHUP");
        else if (sig == SIGHUP)
            tf_log_info("SIGHUP: nothing to reload (the app runs in this process; see --workers)");
        else if (workers) /* a second, or a child ended */
            tf_workers_tick(workers);
    }
    tf_log_info("signal %d: stopping; waiting up to %.0fs for requests in flight", sig,
                cfg.graceful_timeout);
    tf_server_begin_stop(server);
    bool idle = drain(server, pool, cfg.graceful_timeout);
    if (!idle) {
        tf_log_error("requests still running after --graceful-timeout; exiting without them");
        if (pool)
            wsgi_interp_stop(false);
        tf_log_close();
        _exit(0);
    }
    tf_server_profile_shutdown(server); /* every request is done: the profile is whole */
    tf_workers_stop(workers, cfg.graceful_timeout);
    tf_server_stop(server);
    tf_upstream_stop(upstream); /* after the server: closing connections releases pins */
    if (pool) {
        wsgi_watchdog_stop(); /* before the app threads it watches */
        wsgi_pool_stop(pool);
        wsgi_interp_stop(true);
    }
    tf_log_info("stopped");
    tf_log_close();
    tf_config_free(&cfg);
    return 0;
}
