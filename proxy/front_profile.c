/* front_profile.c — the profiler controls of a front with --workers: the
 * function profile lives in the workers, so Start/Stop/Clear go to every
 * worker, and each page or export first merges the workers' call trees
 * (format "tree") into this process's profile, then renders it as usual.
 * Latency needs none of this: the front times every request itself. */
#include "proxy/front_profile.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/log.h"
#include "profiler/hook.h"

static struct tf_workers *workers;       /* set once before serving */
static const char *profile_path;
static pthread_mutex_t merge_lock = PTHREAD_MUTEX_INITIALIZER; /* one merge at a time */

/* POST one of /start, /stop, /clear to every worker. */
static void broadcast(const char *action)
{
    size_t n = 0;
    char **origins = tf_workers_origins(workers, &n), path[4200];
    snprintf(path, sizeof(path), "%s/%s", profile_path, action);
    for (size_t i = 0; i < n; i++) {
        char *body = NULL;
        size_t len = 0;
        unsigned status = tf_workers_fetch(origins[i], "POST", path, &body, &len);
        if (status != 303 && status != 200)
            tf_log_error("profile: worker %s did not take %s (status %u)", origins[i], action,
                         status);
        free(body);
    }
    tf_workers_origins_free(origins, n);
}

static void front_enable(bool on)
{
    prof_hook_enable(on);
    broadcast(on ? "start" : "stop");
}

static void front_clear(void)
{
    prof_hook_clear();
    broadcast("clear");
}

/* This process's profile := the merge of every worker's. Call with merge_lock. */
static void merge_workers(void)
{
    size_t n = 0;
    char **origins = tf_workers_origins(workers, &n), path[4200];
    snprintf(path, sizeof(path), "%s/tree", profile_path);
    prof_hook_clear();
    for (size_t i = 0; i < n; i++) {
        char *body = NULL;
        size_t len = 0;
        if (tf_workers_fetch(origins[i], "GET", path, &body, &len) != 200 ||
            prof_hook_import(body, len) < 0)
            tf_log_error("profile: no call tree from worker %s", origins[i]);
        free(body);
    }
    tf_workers_origins_free(origins, n);
}

static char *front_export(const char *format, size_t *len)
{
    pthread_mutex_lock(&merge_lock);
    merge_workers();
    char *out = prof_hook_export(format, len);
    pthread_mutex_unlock(&merge_lock);
    return out;
}

static char *front_table(const char *query, bool json, const char *path, size_t *len)
{
    pthread_mutex_lock(&merge_lock);
    merge_workers();
    char *out = prof_hook_table(query, json, path, len);
    pthread_mutex_unlock(&merge_lock);
    return out;
}

/* A slow request's own tree stays in the worker that ran it: ask each. */
static char *front_request_html(uint64_t id, const char *query, const char *path, size_t *len)
{
    size_t n = 0;
    char **origins = tf_workers_origins(workers, &n), url[4400], *found = NULL;
    (void)id; /* in the query too, which the worker reads as this page did */
    snprintf(url, sizeof(url), "%s/request?%s", path, query);
    for (size_t i = 0; i < n && !found; i++) {
        char *body = NULL;
        if (tf_workers_fetch(origins[i], "GET", url, &body, len) == 200)
            found = body;
        else
            free(body);
    }
    tf_workers_origins_free(origins, n);
    return found;
}

/* The requests running in every worker: the workers' HTML sections one
 * after the other, or their JSON "requests" lists joined into one. */
static char *front_inflight(bool json, size_t *len)
{
    size_t n = 0, used = 0;
    char **origins = tf_workers_origins(workers, &n), path[4200];
    snprintf(path, sizeof(path), "%s/%s", profile_path, json ? "api/inflight" : "inflight");
    char *out = strdup(json ? "{\"workers\": " : "");
    used = out ? strlen(out) : 0;
    for (size_t i = 0; out && i < n; i++) {
        char *body = NULL;
        size_t blen = 0;
        if (tf_workers_fetch(origins[i], "GET", path, &body, &blen) == 200) {
            char *grown = realloc(out, used + blen + 8);
            if (grown) {
                out = grown;
                used += (size_t)sprintf(out + used, "%s%s", json ? (i ? ", " : "[") : "", body);
            }
        }
        free(body);
    }
    if (out && json) {
        char *grown = realloc(out, used + 8);
        if (grown)
            used += (size_t)sprintf((out = grown) + used, "%s}\n", n ? "]" : "[]");
    }
    tf_workers_origins_free(origins, n);
    *len = used;
    return out;
}

const struct tf_profiler_controls *tf_front_profile_controls(struct tf_workers *w,
                                                             const char *path)
{
    static const struct tf_profiler_controls controls = {
        .enable = front_enable, .enabled = prof_hook_enabled, .export = front_export,
        .table = front_table, .request_html = front_request_html, .clear = front_clear,
        .inflight = front_inflight,
    };
    workers = w;
    profile_path = path;
    return &controls;
}
