/* config.c — flags and INI keys (see config.h). One table describes every key:
 * its kind and where it lands in struct tf_config; the command line and the
 * INI reader both go through tf_config_set(), so the two can never disagree. */
#include "proxy/config.h"
#include "proxy/cidr.h"
#include "proxy/http_check.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum kind { K_STRING, K_LIST, K_UINT, K_SIZE, K_SECONDS, K_LISTEN, K_PATH_PREFIX, K_BOOL,
            K_TRISTATE /* an int: -1 not given, else 0 or 1 */ };

struct key {
    const char *name;
    enum kind kind;
    size_t offset;       /* of the field; for K_LIST the char ** (count follows) */
    size_t count_offset; /* K_LIST only */
    unsigned min, max;   /* K_UINT: the range; K_SECONDS: min is the least in ms, and
                          * max 1 takes 0 too (it means no limit) */
};

#define F(field) offsetof(struct tf_config, field)
static const struct key keys[] = {
    { "listen", K_LISTEN, 0, 0, 0, 0 },
    { "app", K_STRING, F(app), 0, 0, 0 },
    { "wsgi-file", K_STRING, F(wsgi_file), 0, 0, 0 },
    { "trac-env", K_STRING, F(trac_env), 0, 0, 0 },
    { "trac-env-parent-dir", K_STRING, F(trac_env_parent_dir), 0, 0, 0 },
    { "pythonpath", K_LIST, F(pythonpath), F(n_pythonpath), 0, 0 },
    { "venv", K_STRING, F(venv), 0, 0, 0 },
    { "env", K_LIST, F(env), F(n_env), 0, 0 },
    { "mount", K_PATH_PREFIX, F(mount), 0, 0, 0 },
    { "threads", K_UINT, F(threads), 0, 1, 1024 },
    { "io-threads", K_UINT, F(io_threads), 0, 1, 64 },
    { "queue-size", K_UINT, F(queue_size), 0, 1, 1000000 },
    { "inline-fast-calls", K_BOOL, F(inline_fast_calls), 0, 0, 0 },
    { "max-body", K_SIZE, F(max_body), 0, 0, 0 },
    { "max-spill", K_SIZE, F(max_spill), 0, 0, 0 },
    { "access-log", K_STRING, F(access_log), 0, 0, 0 },
    { "error-log", K_STRING, F(error_log), 0, 0, 0 },
    { "graceful-timeout", K_SECONDS, F(graceful_timeout), 0, 0, 0 },
    { "idle-timeout", K_SECONDS, F(idle_timeout), 0, 0, 0 },
    { "header-timeout", K_SECONDS, F(header_timeout), 0, 0, 0 },
    { "max-connections", K_UINT, F(max_connections), 0, 1, 1000000 },
    { "request-timeout", K_SECONDS, F(request_timeout), 0, 0, 0 },
    { "request-timeout-action", K_STRING, F(request_timeout_action), 0, 0, 0 },
    { "dump-all", K_BOOL, F(dump_all), 0, 0, 0 },
    { "gc-freeze", K_BOOL, F(gc_freeze), 0, 0, 0 },
    { "profile-path", K_PATH_PREFIX, F(profile_path), 0, 0, 0 },
    { "profile-max-routes", K_UINT, F(profile_max_routes), 0, 1, 100000 },
    { "profile-slowest", K_UINT, F(profile_slowest), 0, 0, 10000 },
    { "profile", K_BOOL, F(profile), 0, 0, 0 },
    { "profile-latency", K_BOOL, F(profile_latency), 0, 0, 0 },
    { "profile-unwind", K_BOOL, F(profile_unwind), 0, 0, 0 },
    { "profile-builtins", K_TRISTATE, F(profile_builtins), 0, 0, 0 },
    { "profile-clock", K_STRING, F(profile_clock), 0, 0, 0 },
    { "profile-discard-first", K_BOOL, F(profile_discard_first), 0, 0, 0 },
    { "profile-max-nodes", K_UINT, F(profile_max_nodes), 0, 100, 10000000 },
    { "profile-log", K_STRING, F(profile_log), 0, 0, 0 },
    { "profile-callgrind", K_STRING, F(profile_callgrind), 0, 0, 0 },
    { "profile-flush-at-shutdown", K_BOOL, F(profile_flush_at_shutdown), 0, 0, 0 },
    { "profile-allow", K_LIST, F(profile_allow), F(n_profile_allow), 0, 0 },
    { "upstream", K_STRING, F(upstream), 0, 0, 0 },
    { "route", K_LIST, F(route_specs), F(n_route_specs), 0, 0 },
    { "static", K_LIST, F(static_specs), F(n_static_specs), 0, 0 },
    { "upstream-host", K_STRING, F(upstream_host), 0, 0, 0 },
    { "upstream-pin", K_BOOL, F(upstream_pin), 0, 0, 0 },
    { "upstream-connect-timeout", K_SECONDS, F(upstream_connect_timeout), 0, 1, 0 },
    { "upstream-read-timeout", K_SECONDS, F(upstream_read_timeout), 0, 1, 1 },
    { "mirror", K_BOOL, F(mirror), 0, 0, 0 },
    { "mirror-primary", K_STRING, F(mirror_primary), 0, 0, 0 },
    { "mirror-queue", K_UINT, F(mirror_queue), 0, 1, 100000 },
    { "workers", K_UINT, F(workers), 0, 0, 256 },
    { "reload", K_BOOL, F(reload), 0, 0, 0 },
    { "worker-start-timeout", K_SECONDS, F(worker_start_timeout), 0, 1000, 0 },
    { "worker", K_BOOL, F(worker), 0, 0, 0 }, /* internal: set by the front, not in --help */
    { "basic-auth", K_LIST, F(basic_auth), F(n_basic_auth), 0, 0 },
    { "digest-auth", K_LIST, F(digest_auth), F(n_digest_auth), 0, 0 },
    { "auth", K_LIST, F(digest_auth), F(n_digest_auth), 0, 0 }, /* tracd's name for it */
    { "digest-nonce-lifetime", K_SECONDS, F(digest_nonce_lifetime), 0, 0, 0 },
    { "user", K_STRING, F(user), 0, 0, 0 },
    { "group", K_STRING, F(group), 0, 0, 0 },
};
#undef F

const char tf_config_usage[] =
    "usage: tracfront [options]\n"
    "\n"
    "Application (one of; optional with --upstream or --static):\n"
    "  --app MODULE[:CALLABLE]      a WSGI callable, e.g. myapp:app (default: application)\n"
    "  --wsgi-file PATH             a .wsgi script defining `application` (mod_wsgi style)\n"
    "  --trac-env PATH              a Trac environment, served by trac.web.main\n"
    "  --trac-env-parent-dir DIR    every Trac environment under DIR, with Trac's index\n"
    "\n"
    "Python:\n"
    "  --pythonpath DIR[:DIR...]    put DIR first on sys.path, with its .pth files (repeatable)\n"
    "  --venv DIR                   use the virtual environment in DIR\n"
    "  --env KEY=VALUE              extra WSGI environ entry (repeatable)\n"
    "  --mount PREFIX               serve under PREFIX (becomes SCRIPT_NAME)\n"
    "\n"
    "Server:\n"
    "  --listen HOST:PORT           address to listen on (default 127.0.0.1:8000; port 0 = any;\n"
    "                               :PORT is 127.0.0.1:PORT, 0.0.0.0:PORT every interface)\n"
    "  --threads N                  WSGI calls at once (default 8), on app threads or, when\n"
    "                               nothing is queued, on the network thread that read them\n"
    "  --workers N                  run the app in N worker processes behind this one\n"
    "                               (default 0: in this process)\n"
    "  --reload                     new workers when the app's files change (implies\n"
    "                               --workers 1); SIGHUP does the same on demand\n"
    "  --worker-start-timeout S     a new worker must be ready within S seconds (default 60;\n"
    "                               at least 1; only with --workers or --reload)\n"
    "  --io-threads N               network threads, each serving its connections and their\n"
    "                               upstream transfers (default: number of CPUs)\n"
    "  --queue-size N               requests that may wait for an app thread (default 1024)\n"
    "  --inline-fast-calls=BOOL     run a request inside the network thread's read of it when\n"
    "                               its method and target answered fast on their last calls\n"
    "                               (default true)\n"
    "  --max-body BYTES             largest request body, K/M/G suffixes (default 1G; 0 = no limit)\n"
    "  --max-spill BYTES            a streamed response (write() or an iterable) kept in a file\n"
    "                               for a slow client, at most (K/M/G; default 1G; 0 = no file);\n"
    "                               then the app's thread waits for the client\n"
    "  --idle-timeout SECONDS       close a connection silent this long (default 60; 0 = never)\n"
    "  --header-timeout SECONDS     close a connection whose request head takes longer\n"
    "                               (default 60; 0 = off)\n"
    "  --max-connections N          client connections open at once; more wait to be\n"
    "                               accepted (default: from ulimit -n, see README)\n"
    "  --graceful-timeout SECONDS   on SIGTERM, wait this long for requests in flight (default 30)\n"
    "  --request-timeout SECONDS    log the Python stack of a WSGI request running this long\n"
    "                               (default 0 = off; fractions allowed)\n"
    "  --request-timeout-action log|504  504: also interrupt it and answer 504 (default log;\n"
    "                               only with --request-timeout, as --dump-all)\n"
    "  --dump-all                   a stuck request's report has every Python thread's stack\n"
    "  --gc-freeze                  gc.freeze() after the 1st, 10th, 100th, ... request, so\n"
    "                               the garbage collector skips the app's long-lived objects\n"
    "  --access-log FILE|-|off      access log, Combined Log Format + microseconds (default off)\n"
    "  --error-log FILE|-|off       error log (default - = stderr)\n"
    "  --user USER                  started as root: bind the port, then run as USER (a name\n"
    "                               or uid) with its groups; the logs are opened as USER\n"
    "  --group GROUP                the group to run as (default: USER's); only with --user\n"
    "\n"
    "Routing and proxy:\n"
    "  --upstream URL               forward to this HTTP server, e.g. http://127.0.0.1:80\n"
    "  --route PREFIX=BACKEND       app, upstream or static:DIR for PREFIX (repeatable;\n"
    "                               longest prefix wins)\n"
    "  --static PREFIX=DIR          files from DIR under PREFIX (= --route PREFIX=static:DIR)\n"
    "  --upstream-host HOST         Host header sent upstream (default: the client's; this\n"
    "                               and the next three: only with --upstream)\n"
    "  --upstream-pin               one upstream connection per client connection (NTLM)\n"
    "  --upstream-connect-timeout S connecting to the upstream (default 5; at least 0.001)\n"
    "  --upstream-read-timeout S    upstream silent this long: 504 (default 60; 0: no limit;\n"
    "                               else at least 0.001)\n"
    "  --mirror                     copy each GET/HEAD to the other backend to compare latency\n"
    "  --mirror-primary app|upstream  whose answer the client gets (default app)\n"
    "  --mirror-queue N             mirrored requests in flight at most (default 16)\n"
    "\n"
    "Authentication (as tracd; credentials are asked for on the login path only):\n"
    "  --basic-auth PROJECT,HTPASSWD,REALM   Basic auth on PROJECT's /login (PROJECT: the\n"
    "                               environment's folder name, or * for all; repeatable)\n"
    "  --digest-auth PROJECT,HTDIGEST,REALM  Digest auth likewise, from an htdigest file\n"
    "                               (--auth, tracd's name, is the same)\n"
    "  --digest-nonce-lifetime S    a Digest nonce is stale after S seconds (default 300;\n"
    "                               only with --digest-auth)\n"
    "\n"
    "Profiler:\n"
    "  --profile-path PATH          the profiler's pages (default /__profile__), for the\n"
    "                               addresses of --profile-allow\n"
    "  --profile-max-routes N       routes with their own latency statistics (default 500)\n"
    "  --profile-allow CIDR         who may see the profiler (repeatable; default loopback)\n"
    "  --profile-slowest N          slowest requests kept with their details (default 20)\n"
    "  --profile-latency=BOOL       time every request per route (default true)\n"
    "  --profile                    function profiling on from the start (else: the page's Start)\n"
    "  --profile-unwind             profile the response body's iteration too\n"
    "  --profile-builtins=BOOL      profile built-in calls too, as cProfile (default true;\n"
    "                               false on CPython 3.11.0-3.11.2, which can crash then);\n"
    "                               false: Python functions only, at a fraction of the cost\n"
    "  --profile-clock wall|cpu     time calls by the wall clock (default) or by the thread's\n"
    "                               CPU time, which leaves out waiting for the GIL and I/O\n"
    "  --profile-discard-first=BOOL drop the first profiled request (default true)\n"
    "  --profile-max-nodes N        call-tree nodes kept (default 200000)\n"
    "  --profile-log FILE           pstats file, written by the page's Save and at clean shutdown\n"
    "  --profile-callgrind FILE     callgrind file, likewise\n"
    "  --profile-flush-at-shutdown  remove those files at shutdown instead (repoze's option;\n"
    "                               only with one of them)\n"
    "  --config FILE                INI file with these keys in a [tracfront] section\n"
    "                               (`;` and `#` start comment lines only)\n"
    "  --help, --version\n";

static const struct key *find_key(const char *name)
{
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof(norm))
        return NULL;
    for (size_t i = 0; i <= n; i++)
        norm[i] = name[i] == '_' ? '-' : name[i];
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (!strcmp(keys[i].name, norm))
            return &keys[i];
    return NULL;
}

const char *tf_config_key_name(const char *key, bool *repeatable)
{
    const struct key *k = find_key(key);
    if (k && repeatable)
        *repeatable = k->kind == K_LIST;
    return k ? k->name : NULL;
}

bool tf_config_value(const struct tf_config *cfg, const char *key, char *out, size_t cap)
{
    const struct key *k = find_key(key);
    const char *base = (const char *)cfg;
    if (!k)
        return false;
    switch (k->kind) {
    case K_STRING:
    case K_PATH_PREFIX: {
        const char *v = *(char *const *)(base + k->offset);
        snprintf(out, cap, "%s", v ? v : "");
        return true;
    }
    case K_UINT: snprintf(out, cap, "%u", *(const unsigned *)(base + k->offset)); return true;
    case K_SIZE:
        snprintf(out, cap, "%llu", (unsigned long long)*(const uint64_t *)(base + k->offset));
        return true;
    case K_SECONDS: { /* the fewest decimals that read back the same: never an exponent */
        double d = *(const double *)(base + k->offset);
        for (int decimals = 0; decimals <= 340; decimals++) { /* 340: any double's exact value */
            snprintf(out, cap, "%.*f", decimals, d);
            if (strtod(out, NULL) == d)
                break;
        }
        return true;
    }
    case K_BOOL:
        snprintf(out, cap, "%s", *(const bool *)(base + k->offset) ? "true" : "false");
        return true;
    case K_LISTEN:
        snprintf(out, cap, strchr(cfg->listen_host, ':') ? "[%s]:%u" : "%s:%u", cfg->listen_host,
                 cfg->listen_port);
        return true;
    case K_TRISTATE: {
        int v = *(const int *)(base + k->offset);
        snprintf(out, cap, "%s", v < 0 ? "" : v ? "true" : "false");
        return true;
    }
    case K_LIST: return false;
    }
    return false;
}

int tf_parse_size(const char *text, uint64_t *out)
{
    if (!text || *text < '0' || *text > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(text, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: return -1;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || (shift && n > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)n << shift;
    return 0;
}

static int parse_uint(const char *text, unsigned min, unsigned max, unsigned *out)
{
    if (!text || *text < '0' || *text > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long n = strtoul(text, &end, 10);
    if (errno || *end || n < min || n > max)
        return -1;
    *out = (unsigned)n;
    return 0;
}

int tf_parse_listen(const char *text, char **host, unsigned *port)
{
    const char *colon = strrchr(text, ':');
    const char *h = text, *p = text;
    size_t hlen = 0;
    if (colon) {
        p = colon + 1;
        hlen = (size_t)(colon - text);
        if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
            h = text + 1;
            hlen -= 2;
        } else if (memchr(text, ':', hlen)) {
            return -1; /* an IPv6 address needs brackets */
        }
    }
    if (parse_uint(p, 0, 65535, port) < 0)
        return -1;
    *host = hlen ? strndup(h, hlen) : strdup("127.0.0.1");
    return *host ? 0 : -1;
}

int tf_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" }, *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(text, yes[i]))
            return *out = true, 0;
        if (!strcasecmp(text, no[i]))
            return *out = false, 0;
    }
    return -1;
}

/* Plain decimal seconds ("5", "0.25"): strtod alone would also take "nan",
 * "inf", hex and leading spaces. */
static int set_seconds(const char *value, double *out)
{
    size_t digits = strspn(value, "0123456789"), n = digits, fraction = 0;
    if (value[n] == '.') {
        fraction = strspn(value + n + 1, "0123456789");
        n += 1 + fraction;
    }
    if (value[n] || digits + fraction == 0)
        return -1;
    char *end;
    errno = 0;
    double d = strtod(value, &end);
    if (errno || *end || d > 86400 * 365)
        return -1;
    *out = d;
    return 0;
}

int tf_config_set(struct tf_config *cfg, const char *name, const char *value,
                  char *err, size_t errlen)
{
    const struct key *k = find_key(name);
    if (!k) {
        snprintf(err, errlen, "unknown key '%s' (see --help)", name);
        return -1;
    }
    char *base = (char *)cfg;
    switch (k->kind) {
    case K_STRING: {
        char *copy = strdup(value);
        if (!copy)
            goto nomem;
        char **field = (char **)(base + k->offset);
        free(*field);
        *field = copy;
        return 0;
    }
    case K_LIST: {
        char ***list = (char ***)(base + k->offset);
        size_t *count = (size_t *)(base + k->count_offset);
        struct tf_cidr range;
        if (!strcmp(k->name, "profile-allow") && tf_cidr_parse(value, &range) < 0) {
            snprintf(err, errlen, "%s: '%s' is not an address or CIDR range "
                     "(e.g. 10.0.0.0/8, ::1)", k->name, value);
            return -1;
        }
        char **grown = realloc(*list, (*count + 1) * sizeof(char *));
        if (!grown)
            goto nomem;
        *list = grown;
        if (!(grown[*count] = strdup(value)))
            goto nomem;
        (*count)++;
        return 0;
    }
    case K_UINT:
        if (parse_uint(value, k->min, k->max, (unsigned *)(base + k->offset)) < 0) {
            snprintf(err, errlen, "%s: '%s' is not a whole number from %u to %u", k->name,
                     value, k->min, k->max);
            return -1;
        }
        return 0;
    case K_SIZE:
        if (tf_parse_size(value, (uint64_t *)(base + k->offset)) < 0) {
            snprintf(err, errlen, "%s: '%s' is not a size in bytes (e.g. 1048576, 512K, 100M, 1G)",
                     k->name, value);
            return -1;
        }
        return 0;
    case K_SECONDS: {
        double seconds;
        if (set_seconds(value, &seconds) < 0) {
            snprintf(err, errlen, "%s: '%s' is not a number of seconds", k->name, value);
            return -1;
        }
        /* 0 would mean libcurl's 300 s, or no worker ready; under a microsecond
         * is 0 µs in upstream.c's check of --upstream-read-timeout: no limit */
        if (seconds * 1000 < k->min && !(seconds == 0 && k->max)) {
            snprintf(err, errlen, "%s: '%s' is too short (at least %g s%s)", k->name, value,
                     k->min / 1000.0, k->max ? ", or 0: no limit" : "");
            return -1;
        }
        *(double *)(base + k->offset) = seconds;
        return 0;
    }
    case K_LISTEN: {
        char *host = NULL;
        unsigned port;
        if (tf_parse_listen(value, &host, &port) < 0) {
            free(host);
            snprintf(err, errlen, "listen: '%s' is not HOST:PORT (e.g. 127.0.0.1:8000, [::1]:0)",
                     value);
            return -1;
        }
        free(cfg->listen_host);
        cfg->listen_host = host;
        cfg->listen_port = port;
        return 0;
    }
    case K_BOOL:
    case K_TRISTATE: {
        bool b;
        if (tf_parse_bool(value, &b) < 0) {
            snprintf(err, errlen, "%s: '%s' is not true or false", k->name, value);
            return -1;
        }
        if (k->kind == K_BOOL)
            *(bool *)(base + k->offset) = b;
        else
            *(int *)(base + k->offset) = b;
        return 0;
    }
    case K_PATH_PREFIX: {
        size_t n = strlen(value);
        while (n > 0 && value[n - 1] == '/')
            n--;
        if (n > 0 && value[0] != '/') {
            snprintf(err, errlen, "%s: '%s' must start with '/'", k->name, value);
            return -1;
        }
        if (!tf_path_prefix_can_match(value, n)) {
            snprintf(err, errlen, "%s: '%s' can never match a request's path (no %%, ?, #, "
                     "spaces or control characters, and no . or .. segments)", k->name, value);
            return -1;
        }
        char *copy = strndup(value, n);
        if (!copy)
            goto nomem;
        char **field = (char **)(base + k->offset);
        free(*field);
        *field = copy;
        return 0;
    }
    }
nomem:
    snprintf(err, errlen, "%s: out of memory", k->name);
    return -1;
}

static void set_defaults(struct tf_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen_host = strdup("127.0.0.1");
    cfg->listen_port = 8000;
    cfg->threads = 8;
    cfg->queue_size = 1024;
    cfg->inline_fast_calls = true;
    cfg->max_body = 1ull << 30;
    cfg->max_spill = 1ull << 30; /* nginx's proxy_max_temp_file_size */
    cfg->graceful_timeout = 30;
    cfg->idle_timeout = 60;
    cfg->header_timeout = 60;
    cfg->mount = strdup("");
    cfg->profile_path = strdup("/__profile__");
    cfg->profile_max_routes = 500;
    cfg->profile_slowest = 20;
    cfg->profile_discard_first = true;
    cfg->profile_builtins = -1; /* main.c: false where setprofile may crash */
    cfg->profile_latency = true;
    cfg->profile_max_nodes = 200000;
    cfg->upstream_connect_timeout = -1; /* not given: 5 (fill_unset, config_check.c) */
    cfg->upstream_read_timeout = -1;    /* not given: 60, likewise */
    cfg->mirror_queue = 0; /* not given: 16, likewise */
    cfg->worker_start_timeout = -1;  /* not given: 60, likewise */
    cfg->digest_nonce_lifetime = -1; /* not given: 300, likewise */
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* The keys a flag replaces the file's entries of together: the app
 * choices (one app: "exclude each other"), routes (--route and --static),
 * logins (--basic-auth, --digest-auth and --auth); any other key alone. */
static int key_group(const struct key *k)
{
    static const char *const groups[][4] = {
        { "app", "wsgi-file", "trac-env", "trac-env-parent-dir" },
        { "route", "static" },
        { "basic-auth", "digest-auth", "auth" },
    };
    for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++)
        for (size_t i = 0; i < 4 && groups[g][i]; i++)
            if (!strcmp(k->name, groups[g][i]))
                return (int)g;
    return -1;
}

static bool same_group(const struct key *a, const struct key *b)
{
    int g = key_group(a);
    return g >= 0 ? key_group(b) == g : a == b;
}

/* Take the file's trac.env_path and trac.env_parent_dir entries (the first
 * n_file of env) out: they named the projects of the file's app. */
static void drop_file_projects(struct tf_config *cfg, size_t n_file)
{
    size_t kept = 0;
    for (size_t i = 0; i < cfg->n_env; i++) {
        bool projects = i < n_file && (!strncmp(cfg->env[i], "trac.env_path=", 14) ||
                                       !strncmp(cfg->env[i], "trac.env_parent_dir=", 20));
        if (projects)
            free(cfg->env[i]);
        else
            cfg->env[kept++] = cfg->env[i];
    }
    cfg->n_env = kept;
}

/* Flags win over the file (read before them), as gunicorn's command line
 * over its config file: the first flag of a key drops what the file gave
 * it. A repeatable key's entries all go, then the flags' add up, except
 * pythonpath and env, which add up with the file's (file first); keys of one
 * group (key_group) go together, and an app flag takes the file's
 * trac.env_path/trac.env_parent_dir env entries too (n_file_env: the env
 * entries the file gave). The other keys take one value, which the flag's
 * replaces anyway. */
static void drop_file_value(struct tf_config *cfg, const struct key *k, bool *dropped,
                            size_t n_file_env)
{
    if (dropped[k - keys] || (key_group(k) < 0 && k->kind != K_LIST) ||
        !strcmp(k->name, "pythonpath") || !strcmp(k->name, "env"))
        return;
    if (key_group(k) == 0)
        drop_file_projects(cfg, n_file_env);
    char *base = (char *)cfg;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (!same_group(k, &keys[i]) || dropped[i])
            continue;
        dropped[i] = true;
        char **field = (char **)(base + keys[i].offset);
        if (keys[i].kind == K_LIST) {
            size_t *count = (size_t *)(base + keys[i].count_offset);
            free_list(*(char ***)field, *count);
            *count = 0;
        } else {
            free(*field);
        }
        *field = NULL;
    }
}

/* Is arg one of the flags ("--threads", "--app=x", "--help")? */
static bool names_a_flag(const char *arg)
{
    char key[64];
    if (strncmp(arg, "--", 2) != 0)
        return false;
    size_t n = strcspn(arg + 2, "=");
    if (n == 0 || n >= sizeof(key))
        return false;
    memcpy(key, arg + 2, n);
    key[n] = 0;
    return find_key(key) || !strcmp(key, "config") || !strcmp(key, "help") ||
           !strcmp(key, "version");
}

/* Walk argv: --key value or --key=value. With apply false only --config,
 * --help and --version are taken (first pass). */
static int walk_args(struct tf_config *cfg, int argc, char **argv, bool apply,
                     char *err, size_t errlen)
{
    bool dropped[N_KEYS] = { false }; /* drop_file_value's, per key */
    size_t n_file_env = cfg->n_env;    /* all the file's before the flags */
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || !arg[2]) {
            snprintf(err, errlen, "unexpected argument '%s' (options start with --; see --help)", arg);
            return -1;
        }
        const char *name = arg + 2, *value = NULL;
        char key[64];
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (nlen >= sizeof(key)) {
            snprintf(err, errlen, "unknown flag '%s' (see --help)", arg);
            return -1;
        }
        memcpy(key, name, nlen);
        key[nlen] = 0;
        if (!strcmp(key, "help") || !strcmp(key, "version")) {
            if (!strcmp(key, "help"))
                cfg->help = true;
            else
                cfg->version = true;
            continue;
        }
        if (strcmp(key, "config") != 0 && !find_key(key)) {
            snprintf(err, errlen, "unknown flag '--%s' (see --help)", key);
            return -1;
        }
        const struct key *k = find_key(key);
        if (eq) {
            value = eq + 1;
        } else if (k && (k->kind == K_BOOL || k->kind == K_TRISTATE)) {
            /* --profile alone switches it on; --profile false also works, and
             * --profile maybe is an error about --profile (no word is an argument) */
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                value = argv[++i];
            else
                value = "true";
        } else {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", key);
                return -1;
            }
            if (names_a_flag(argv[i + 1])) {
                snprintf(err, errlen, "--%s needs a value, and the next argument, %s, is a flag "
                         "(a value that starts with -- is given as --%s=VALUE)", key,
                         argv[i + 1], key);
                return -1;
            }
            value = argv[++i];
        }
        if (!strcmp(key, "config")) {
            if (!apply && cfg->config_file) {
                snprintf(err, errlen, "--config: give it once (one INI file holds every key)");
                return -1;
            }
            if (!apply && !(cfg->config_file = strdup(value))) {
                snprintf(err, errlen, "--config: out of memory");
                return -1;
            }
            continue;
        }
        if (apply) {
            char why[400];
            drop_file_value(cfg, k, dropped, n_file_env);
            if (tf_config_set(cfg, key, value, why, sizeof(why)) < 0) {
                snprintf(err, errlen, "--%s", why);
                return -1;
            }
        }
    }
    return 0;
}

int tf_config_load(struct tf_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    set_defaults(cfg);
    if (walk_args(cfg, argc, argv, false, err, errlen) < 0)
        return -1;
    if (cfg->help || cfg->version)
        return 0;
    if (cfg->config_file && tf_config_load_file(cfg, cfg->config_file, err, errlen) < 0)
        return -1;
    if (walk_args(cfg, argc, argv, true, err, errlen) < 0)
        return -1;
    return tf_config_check(cfg, err, errlen);
}

void tf_config_free(struct tf_config *cfg)
{
    free(cfg->listen_host);
    free(cfg->app);
    free(cfg->wsgi_file);
    free(cfg->trac_env);
    free(cfg->trac_env_parent_dir);
    free_list(cfg->pythonpath, cfg->n_pythonpath);
    free(cfg->venv);
    free_list(cfg->env, cfg->n_env);
    free(cfg->mount);
    free(cfg->access_log);
    free(cfg->error_log);
    free(cfg->request_timeout_action);
    free(cfg->profile_path);
    free(cfg->profile_clock);
    free(cfg->profile_log);
    free(cfg->profile_callgrind);
    free_list(cfg->profile_allow, cfg->n_profile_allow);
    free(cfg->upstream);
    free(cfg->upstream_origin);
    free(cfg->upstream_path);
    free(cfg->upstream_host);
    free_list(cfg->route_specs, cfg->n_route_specs);
    free_list(cfg->static_specs, cfg->n_static_specs);
    tf_route_table_free(&cfg->routes);
    free(cfg->mirror_primary);
    free_list(cfg->basic_auth, cfg->n_basic_auth);
    free_list(cfg->digest_auth, cfg->n_digest_auth);
    free(cfg->user);
    free(cfg->group);
    free(cfg->config_file);
    memset(cfg, 0, sizeof(*cfg));
}
