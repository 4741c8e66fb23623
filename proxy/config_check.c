/* config_check.c — what the settings must be together, checked once every
 * flag and INI key is set (see config.h): one app, something to serve, files
 * and URLs that will work when they are used, options that only refine
 * another given with it; and the values derived from them. Found at start,
 * naming the flag: never a failure at the first request or at shutdown. */
#include "proxy/config.h"
#include "proxy/platform.h"
#include "proxy/privileges.h"
#include "proxy/auth.h"
#include "proxy/worker_env.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where the URL's authority ([USER:PASSWORD@]HOST[:PORT]) starts: after the
 * scheme's "://", whatever the scheme, or at the start without one. */
static const char *authority_start(const char *u)
{
    const char *scheme_end = strstr(u, "://");
    return scheme_end ? scheme_end + 3 : u;
}

/* A user name and password (USER:PASSWORD@ before the host) would go
 * upstream with every request as Basic credentials: refused before any
 * message that quotes the URL. */
static bool has_userinfo(const char *u)
{
    const char *authority = authority_start(u);
    return memchr(authority, '@', strcspn(authority, "/?#")) != NULL;
}

/* The URL as a message may quote it: anything after the scheme up to the
 * last '@' is left out, for a password whose unencoded '/', '?' or '#' hid
 * it from has_userinfo (a URL parser reads it so too). */
static const char *quotable(const char *u, char *buf, size_t buflen)
{
    const char *start = authority_start(u);
    const char *at = strrchr(start, '@');
    if (!at)
        return u;
    snprintf(buf, buflen, "%.*s...%s", (int)(start - u), u, at);
    return buf;
}

/* The URL as libcurl reads it, at start: a bad port or host failed every
 * request (502). 0, or -1 with err. */
static int check_upstream_url(const char *u, char *err, size_t errlen)
{
    CURLU *url = curl_url();
    char *port = NULL, quoted[512];
    CURLUcode rc = url ? curl_url_set(url, CURLUPART_URL, u, 0) : CURLUE_OUT_OF_MEMORY;
    bool port_zero = !rc && curl_url_get(url, CURLUPART_PORT, &port, 0) == CURLUE_OK &&
                     strtoul(port, NULL, 10) == 0;
    curl_free(port);
    curl_url_cleanup(url);
    if (rc || port_zero)
        snprintf(err, errlen, "--upstream: '%s': %s (e.g. http://127.0.0.1:8080)",
                 quotable(u, quoted, sizeof(quoted)),
                 rc ? curl_url_strerror(rc) : "port 0 cannot be connected to");
    return rc || port_zero ? -1 : 0;
}

/* --upstream http://host[:port][/path]: split into origin and path. */
static int check_upstream(struct tf_config *cfg, char *err, size_t errlen)
{
    const char *u = cfg->upstream;
    const char *rest = !strncmp(u, "http://", 7) ? u + 7 : NULL;
    size_t hostlen = rest ? strcspn(rest, "/?#") : 0;
    char quoted[512];
    if (!strncmp(u, "https://", 8)) {
        snprintf(err, errlen, "--upstream: '%s': tracfront speaks plain HTTP to its upstream "
                 "(a server on this machine or the same network); give its http:// address, "
                 "and TLS in front of tracfront, not behind it",
                 quotable(u, quoted, sizeof(quoted)));
        return -1;
    }
    if (has_userinfo(u)) { /* the URL is not echoed: it holds a password */
        snprintf(err, errlen, "--upstream: a user name or password (USER:PASSWORD@) in the URL "
                 "would go to the upstream with every request; leave it out");
        return -1;
    }
    if (!rest || hostlen == 0 || strpbrk(rest, "?# \t")) {
        snprintf(err, errlen, "--upstream: '%s' is not an http:// URL such as "
                 "http://127.0.0.1:8080 (no query or fragment)",
                 quotable(u, quoted, sizeof(quoted)));
        return -1;
    }
    if (check_upstream_url(u, err, errlen) < 0)
        return -1;
    size_t plen = strlen(rest + hostlen);
    while (plen > 0 && rest[hostlen + plen - 1] == '/')
        plen--;
    cfg->upstream_origin = strndup(u, (size_t)(rest - u) + hostlen);
    cfg->upstream_path = strndup(rest + hostlen, plen);
    if (!cfg->upstream_origin || !cfg->upstream_path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* --upstream-host goes out as the Host header: an empty one (`upstream-host =`)
 * sent `Host: `, and a space or control character cannot be in a host. */
static int check_upstream_host(const char *host, char *err, size_t errlen)
{
    for (const char *c = host; *c; c++) {
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            snprintf(err, errlen, "--upstream-host: '%s' is not a host name (no spaces or "
                     "control characters)", host);
            return -1;
        }
    }
    if (!host[0]) {
        snprintf(err, errlen, "--upstream-host: empty; give the name the upstream expects "
                 "(e.g. example.org or example.org:8080), or leave it out to send the client's");
        return -1;
    }
    return 0;
}

/* A worker of a front (--workers): the same server on the front's socket
 * (TF_WORKER_VAR_LISTEN_FD), so everything but the worker settings is as given. */
static int worker_settings(struct tf_config *cfg, char *err, size_t errlen)
{
    if (!getenv(TF_WORKER_VAR_LISTEN_FD) || !getenv(TF_WORKER_VAR_FRONT_CONTROL)) {
        snprintf(err, errlen, "--worker is internal: tracfront starts its workers itself "
                 "(see --workers)");
        return -1;
    }
    cfg->modules_watched = cfg->reload; /* the front watches; this worker lists its modules */
    cfg->reload = false;
    cfg->workers = 0;
    return 0;
}

/* Routes and backends: what answers what, and that something answers. */
static int check_backends(struct tf_config *cfg, char *err, size_t errlen)
{
    if (cfg->upstream && check_upstream(cfg, err, errlen) < 0)
        return -1;
    if (cfg->upstream_host && check_upstream_host(cfg->upstream_host, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n_route_specs; i++)
        if (tf_route_add(&cfg->routes, cfg->route_specs[i], false, err, errlen) < 0)
            return -1;
    for (size_t i = 0; i < cfg->n_static_specs; i++)
        if (tf_route_add(&cfg->routes, cfg->static_specs[i], true, err, errlen) < 0)
            return -1;
    if (tf_route_finish(&cfg->routes, cfg->have_app, cfg->upstream != NULL, err, errlen) < 0)
        return -1;
    size_t plen = strlen(cfg->profile_path);
    for (size_t i = 0; plen && i < cfg->routes.n; i++) { /* empty: refused below */
        const struct tf_route *r = &cfg->routes.routes[i];
        if (r->prefix_len >= plen && !strncmp(r->prefix, cfg->profile_path, plen) &&
            (r->prefix[plen] == 0 || r->prefix[plen] == '/')) {
            snprintf(err, errlen, "--%s %s: under --profile-path %s, which the profiler answers: "
                     "no request would reach it (move one of the two)",
                     r->kind == TF_ROUTE_STATIC ? "static" : "route", r->prefix,
                     cfg->profile_path);
            return -1;
        }
    }
    if (!cfg->have_app && !cfg->upstream && cfg->routes.n == 0) {
        snprintf(err, errlen, "nothing to serve: give --app MODULE:CALLABLE, --wsgi-file PATH, "
                 "--trac-env PATH, --trac-env-parent-dir DIR, --upstream URL or --static PREFIX=DIR");
        return -1;
    }
    if (cfg->mirror_primary && strcmp(cfg->mirror_primary, "app") != 0 &&
        strcmp(cfg->mirror_primary, "upstream") != 0) {
        snprintf(err, errlen, "--mirror-primary: '%s' is not app or upstream", cfg->mirror_primary);
        return -1;
    }
    if (cfg->mirror && (!cfg->have_app || !cfg->upstream)) {
        snprintf(err, errlen, "--mirror: needs both an application and an --upstream to compare");
        return -1;
    }
    return 0;
}

/* Options that only refine another do nothing without it: refused rather
 * than silently unused. Checked after their values. */
static int check_refinements(const struct tf_config *cfg, char *err, size_t errlen)
{
    bool upstream = cfg->upstream, timeout = cfg->request_timeout > 0;
    const struct { bool given, main; const char *flag, *main_flag; } refinements[] = {
        { cfg->mirror_primary, cfg->mirror, "--mirror-primary", "--mirror" },
        { cfg->mirror_queue, cfg->mirror, "--mirror-queue", "--mirror" },
        { cfg->upstream_host, upstream, "--upstream-host", "--upstream" },
        { cfg->upstream_pin, upstream, "--upstream-pin", "--upstream" },
        { cfg->upstream_connect_timeout >= 0, upstream, "--upstream-connect-timeout",
          "--upstream" },
        { cfg->upstream_read_timeout >= 0, upstream, "--upstream-read-timeout", "--upstream" },
        { cfg->request_timeout_action, timeout, "--request-timeout-action", "--request-timeout" },
        { cfg->dump_all, timeout, "--dump-all", "--request-timeout" },
        { cfg->group, cfg->user, "--group", "--user" },
        { cfg->digest_nonce_lifetime >= 0, cfg->n_digest_auth > 0, "--digest-nonce-lifetime",
          "--digest-auth" },
        /* a worker gets its front's flags: its own wait for the go uses it */
        { cfg->worker_start_timeout >= 0, cfg->workers || cfg->worker, "--worker-start-timeout",
          "--workers or --reload" },
        { cfg->profile_flush_at_shutdown, cfg->profile_log || cfg->profile_callgrind,
          "--profile-flush-at-shutdown", "--profile-log or --profile-callgrind" },
    };
    for (size_t i = 0; i < sizeof(refinements) / sizeof(*refinements); i++) {
        if (refinements[i].given && !refinements[i].main) {
            snprintf(err, errlen, "%s: only with %s (without, it does nothing; add that, or "
                     "drop it)", refinements[i].flag, refinements[i].main_flag);
            return -1;
        }
    }
    return 0;
}

/* The defaults left unset for check_refinements to tell them from given values. */
static void fill_unset(struct tf_config *cfg)
{
    if (!cfg->mirror_queue)
        cfg->mirror_queue = 16;
    if (cfg->upstream_connect_timeout < 0)
        cfg->upstream_connect_timeout = 5;
    if (cfg->upstream_read_timeout < 0)
        cfg->upstream_read_timeout = 60;
    if (cfg->worker_start_timeout < 0)
        cfg->worker_start_timeout = 60;
    if (cfg->digest_nonce_lifetime < 0)
        cfg->digest_nonce_lifetime = 300;
}

/* The app's folder or script must be there at start: a bad value, named,
 * not a Python error from deep inside Trac. */
static int check_app_paths(const struct tf_config *cfg, char *err, size_t errlen)
{
    const struct { const char *flag, *path; bool folder; } paths[] = {
        { "--trac-env", cfg->trac_env, true },
        { "--trac-env-parent-dir", cfg->trac_env_parent_dir, true },
        { "--wsgi-file", cfg->wsgi_file, false },
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct stat st;
        const char *path = paths[i].path;
        if (!path)
            continue;
        const char *what = paths[i].folder ? "directory" : "file";
        if (!path[0] || stat(path, &st) < 0) {
            snprintf(err, errlen, "%s: '%s' is not a %s (%s)", paths[i].flag, path, what,
                     path[0] ? strerror(errno) : "empty");
            return -1;
        }
        if (paths[i].folder != !!S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s: '%s' is not a %s", paths[i].flag, path, what);
            return -1;
        }
    }
    return 0;
}

/* In a sticky folder (/tmp) only the owner of an entry, or of the folder,
 * may rename onto it or remove it (root may always). 0, or -1 with err. */
static int check_sticky(const char *flag, const char *path, const char *dir,
                        const struct stat *dir_st, char *err, size_t errlen)
{
    struct stat st;
    uid_t me = geteuid();
    if (!(dir_st->st_mode & S_ISVTX) || me == 0 || dir_st->st_uid == me ||
        lstat(path, &st) < 0 || st.st_uid == me)
        return 0;
    snprintf(err, errlen, "%s: cannot replace '%s': it is another user's, and in the sticky "
             "folder '%s' only its owner or the folder's may (have it removed, or give "
             "another file)", flag, path, dir);
    return -1;
}

/* --profile-log and --profile-callgrind are written at shutdown as a new
 * FILE.tmp (one there is removed first), then renamed onto FILE: an empty
 * name, a folder, a folder that is not there or not writable, a folder at
 * FILE.tmp, or in a sticky folder a FILE or FILE.tmp of another user, is
 * found now, not then (when the profile would be lost). FILE itself need
 * not be writable. */
static int check_output_file(const char *flag, const char *file, char *err, size_t errlen)
{
    struct stat st, dir_st;
    char tmp[4096];
    if (!file)
        return 0;
    if (!file[0]) {
        snprintf(err, errlen, "%s: empty; give the file to write, or leave %s out", flag, flag);
        return -1;
    }
    if (stat(file, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: '%s' is a folder; give a file in it to write", flag, file);
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", file); /* as profile_pages.c's save_one */
    if (lstat(tmp, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: '%s' is a folder; the profile is written there first, then "
                 "renamed to '%s'", flag, tmp, file);
        return -1;
    }
    const char *slash = strrchr(file, '/');
    char *dir = slash ? strndup(file, slash == file ? 1 : (size_t)(slash - file)) : strdup(".");
    int rc = -1;
    if (!dir)
        snprintf(err, errlen, "out of memory");
    else if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0 || stat(dir, &dir_st) < 0)
        snprintf(err, errlen, "%s: cannot write '%s' in '%s': %s", flag, file, dir,
                 strerror(errno));
    else if (check_sticky(flag, file, dir, &dir_st, err, errlen) == 0 &&
             check_sticky(flag, tmp, dir, &dir_st, err, errlen) == 0)
        rc = 0;
    free(dir);
    return rc;
}

int tf_config_check_files(const struct tf_config *cfg, char *err, size_t errlen)
{
    return check_output_file("--profile-log", cfg->profile_log, err, errlen) < 0 ||
           check_output_file("--profile-callgrind", cfg->profile_callgrind, err, errlen) < 0
               ? -1 : 0;
}

/* Half the descriptors left after 64 for the process and the app: a client
 * connection may hold one more (its upstream connection, a spooled body or
 * answer, a static file). 16 to 65536. */
static unsigned default_max_connections(void)
{
    unsigned long fds = tf_fd_limit();
    unsigned long n = fds > 64 + 2 * 16 ? (fds - 64) / 2 : 16;
    return n > 65536 ? 65536 : (unsigned)n;
}

int tf_config_check(struct tf_config *cfg, char *err, size_t errlen)
{
    int apps = !!cfg->app + !!cfg->wsgi_file + !!cfg->trac_env + !!cfg->trac_env_parent_dir;
    cfg->have_app = apps > 0;
    if (apps > 1) {
        snprintf(err, errlen, "--app, --wsgi-file, --trac-env and --trac-env-parent-dir "
                              "exclude each other: give one");
        return -1;
    }
    if (check_app_paths(cfg, err, errlen) < 0)
        return -1;
    if (cfg->worker && worker_settings(cfg, err, errlen) < 0)
        return -1;
    if (check_backends(cfg, err, errlen) < 0)
        return -1;
    if (cfg->reload && !cfg->workers)
        cfg->workers = 1;
    if (!cfg->io_threads)
        cfg->io_threads = (unsigned)tf_cpu_count();
    if (!cfg->max_connections)
        cfg->max_connections = default_max_connections();
    if (cfg->workers && !cfg->have_app) {
        snprintf(err, errlen, "--workers/--reload: there is no application to run in workers");
        return -1;
    }
    struct stat config_stat;
    if (cfg->workers && !cfg->worker && cfg->config_file &&
        stat(cfg->config_file, &config_stat) == 0 && !S_ISREG(config_stat.st_mode)) {
        snprintf(err, errlen, "--config %s: not a regular file (a pipe?), and --workers' and "
                 "--reload's workers read it again when they start: give a file",
                 cfg->config_file);
        return -1;
    }
    if ((cfg->workers || cfg->worker) && cfg->mirror) {
        snprintf(err, errlen, "--mirror: not with --workers or --reload (each worker would "
                 "compare only its own share); run the comparison in a single process");
        return -1;
    }
    if (cfg->request_timeout_action && strcmp(cfg->request_timeout_action, "log") != 0 &&
        strcmp(cfg->request_timeout_action, "504") != 0) {
        snprintf(err, errlen, "--request-timeout-action: '%s' is not log or 504",
                 cfg->request_timeout_action);
        return -1;
    }
    if (cfg->profile_clock && strcmp(cfg->profile_clock, "wall") != 0 &&
        strcmp(cfg->profile_clock, "cpu") != 0) {
        snprintf(err, errlen, "--profile-clock: '%s' is not wall or cpu", cfg->profile_clock);
        return -1;
    }
    if (!cfg->profile_path[0]) {
        snprintf(err, errlen, "--profile-path: must be a path such as /__profile__, not empty");
        return -1;
    }
    if (tf_privileges_resolve(cfg, err, errlen) < 0)
        return -1;
    if (!cfg->drop_privileges && tf_config_check_files(cfg, err, errlen) < 0)
        return -1; /* else main.c checks them as --user, who writes them */
    if (check_refinements(cfg, err, errlen) < 0)
        return -1;
    fill_unset(cfg);
    if (tf_auth_config_check(cfg, err, errlen) < 0)
        return -1;
    return 0;
}
