/* config.h — tracfront's settings, from command-line flags and an optional INI
 * file (--config FILE, section [tracfront]) with the same keys; flags win over
 * the file, also for a repeatable key (its flags replace the file's entries),
 * except pythonpath and env, which accumulate (file first). Parsed once on the main
 * thread before anything starts; read-only afterwards, so no lock. A bad value
 * is reported naming the flag or key and what would be accepted. */
#ifndef TF_CONFIG_H
#define TF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy/route.h"

struct tf_config {
    char *listen_host;          /* default "127.0.0.1" */
    unsigned listen_port;       /* default 8000; 0 = any free port */
    char *app;                  /* MODULE:CALLABLE */
    char *wsgi_file;
    char *trac_env;
    char *trac_env_parent_dir;
    char **pythonpath;          /* repeatable */
    size_t n_pythonpath;
    char *venv;
    char **env;                 /* "KEY=VALUE", repeatable */
    size_t n_env;
    char *mount;                /* "" or "/prefix" with no trailing slash */
    unsigned threads;           /* app threads */
    unsigned io_threads;        /* network threads (after loading: never 0) */
    unsigned queue_size;        /* requests waiting for an app thread */
    bool inline_fast_calls;     /* wsgi/fastpath.h (default on) */
    uint64_t max_body;          /* bytes; 0 = no limit */
    uint64_t max_spill;         /* bytes of a streamed answer (write() or an iterable) in a
                                   file per request; 0 = no file (an inline run's then has no cap) */
    char *access_log;           /* path, "-" stderr, "" or "off" off; NULL = off */
    char *error_log;            /* path, "-" stderr, "" or "off" off; NULL = stderr */
    double graceful_timeout;    /* seconds */
    double idle_timeout;        /* seconds a connection may stay silent */
    double header_timeout;      /* seconds a request's head may take to arrive; 0 = off */
    unsigned max_connections;   /* client connections per process (after loading: never 0) */
    double request_timeout;     /* seconds a WSGI request may run before it is stuck; 0 = off */
    char *request_timeout_action; /* "log" (NULL = log) or "504": also interrupt it */
    bool gc_freeze;             /* gc.freeze() after the 1st, 10th, ... request */
    bool dump_all;              /* a stuck request's report has every Python thread's stack */
    char *profile_path;         /* default "/__profile__"; served natively, never by the app */
    unsigned profile_max_routes;/* route keys with their own latency statistics */
    unsigned profile_slowest;   /* slowest requests kept with their details */
    bool profile_latency;       /* time every request (default on) */
    bool profile;               /* function profiling on from the start */
    bool profile_unwind;        /* profile the body iteration too (repoze's unwind) */
    int profile_builtins;       /* built-in calls too (PyEval_SetProfile): 1 or 0; -1 until
                                 * main.c picks the default (tf_config_load leaves it) */
    char *profile_clock;        /* "wall" (NULL = wall) or "cpu": the thread's CPU time */
    bool profile_discard_first; /* drop the first profiled request (default on) */
    unsigned profile_max_nodes; /* call-tree nodes kept */
    char *profile_log;          /* pstats file written on Save and at clean shutdown */
    char *profile_callgrind;    /* callgrind file, likewise */
    bool profile_flush_at_shutdown; /* repoze: remove those files at shutdown instead */
    char **profile_allow;       /* CIDRs that may see the profiler; none = loopback */
    size_t n_profile_allow;
    char *upstream;             /* --upstream URL as given */
    char *upstream_origin;      /* derived: "http://host:port" */
    char *upstream_path;        /* derived: "" or "/path" (no trailing '/'): replaces the route prefix */
    char *upstream_host;        /* Host header sent upstream; NULL = the client's */
    bool upstream_pin;          /* one upstream connection per client connection */
    double upstream_connect_timeout, upstream_read_timeout; /* seconds */
    char **route_specs, **static_specs; /* --route, --static as given */
    size_t n_route_specs, n_static_specs;
    struct tf_route_table routes;        /* derived from the two above */
    bool mirror;                /* copy GET/HEAD to the other backend */
    char *mirror_primary;       /* "app" or "upstream": whose answer the client gets */
    unsigned mirror_queue;      /* mirrored requests in flight at most (16 unless given) */
    bool have_app;              /* derived: an application is configured */
    unsigned workers;           /* app worker processes; 0 = the app runs in this process */
    bool reload;                /* restart the workers when the app's files change */
    double worker_start_timeout;/* seconds a new worker may take to be ready (60 unless given) */
    bool worker;                /* internal: this process is a worker of a front */
    bool modules_watched;       /* internal: a worker whose front has --reload (lists its modules) */
    char **basic_auth, **digest_auth; /* --basic-auth, --digest-auth: PROJECT,FILE,REALM */
    size_t n_basic_auth, n_digest_auth;
    double digest_nonce_lifetime; /* seconds before a Digest nonce is stale (300 unless given) */
    char *user, *group;         /* --user, --group as given (proxy/privileges.h) */
    uid_t uid;                  /* derived from them: whom to become */
    gid_t gid;
    bool drop_privileges;       /* derived: started as root with --user: switch after binding */
    char *config_file;
    bool help, version;
};

/* Fill cfg from argv (and the --config file). Returns 0, or -1 with a
 * one-line message in err; cfg must be freed either way. */
int tf_config_load(struct tf_config *cfg, int argc, char **argv, char *err, size_t errlen);
void tf_config_free(struct tf_config *cfg);

/* Set one key ("threads", "max-body"; '_' and '-' are the same) from text.
 * Returns 0, or -1 with the reason in err (cfg unchanged). */
int tf_config_set(struct tf_config *cfg, const char *key, const char *value,
                  char *err, size_t errlen);
/* Read the INI file at path into cfg, each key through tf_config_set
 * (config_file.c). 0, or -1 with err naming the file, line and problem. */
int tf_config_load_file(struct tf_config *cfg, const char *path, char *err, size_t errlen);
/* Check the settings together once every key is set, and derive the rest
 * (have_app, routes, upstream origin and path, defaults that depend on what
 * was given) (config_check.c). 0, or -1 with err naming the flag. */
int tf_config_check(struct tf_config *cfg, char *err, size_t errlen);

/* The files written later (--profile-log, --profile-callgrind) can be
 * written by this process: tf_config_check's, and again once a root start
 * became --user (main.c). 0, or -1 with err naming the flag. */
int tf_config_check_files(const struct tf_config *cfg, char *err, size_t errlen);

/* key's own name ("max-body" for "max_body"), and whether it may be given
 * more than once (a list: env, pythonpath...); NULL for an unknown key. */
const char *tf_config_key_name(const char *key, bool *repeatable);
/* A one-value key's value in cfg as a flag would give it ("8", "0.5",
 * "true", "127.0.0.1:8000"; "" for a string or profile-builtins not set)
 * into out (cap bytes); false for an unknown key or a list (pythonpath,
 * env...). */
bool tf_config_value(const struct tf_config *cfg, const char *key, char *out, size_t cap);

/* Parse "true"/"false" (also yes/no, on/off, 1/0). Returns 0 or -1. */
int tf_parse_bool(const char *text, bool *out);

/* Parse "1024", "10K", "5M", "1G" (powers of 1024). Returns 0 or -1. */
int tf_parse_size(const char *text, uint64_t *out);

/* Parse "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT". Returns 0 or -1;
 * *host is a new string (free it). */
int tf_parse_listen(const char *text, char **host, unsigned *port);

extern const char tf_config_usage[];

#endif
