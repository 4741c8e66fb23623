/* latency.c — the latency registry (see latency.h): an open-addressing hash
 * table of routes, each with lazily allocated per-backend statistics. One
 * mutex guards all of it; recording is a hash, a lookup and three bucket
 * increments. Reports format under the lock (they are rare and bounded by
 * the route cap). A front's adding up of its workers is latency_dump.c. */
#include "profiler/latency.h"
#include "profiler/latency_internal.h"
#include "profiler/latency_view.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "profiler/fnv.h"
#include "profiler/histogram.h"
#include "profiler/route.h"
#include "profiler/text.h"

#define NOT_FOUND_ROUTE "(not found)"

pthread_mutex_t prof_latency_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slow_request *slowest; /* guarded by prof_latency_lock; slow_cap entries */
static time_t started;               /* set once by prof_latency_init */
uint64_t prof_latency_requests_total; /* guarded by prof_latency_lock */
unsigned prof_latency_loads, prof_latency_overflowed_loads; /* guarded by prof_latency_lock */
static unsigned slow_cap, slow_count;
static unsigned fastest_kept; /* guarded by prof_latency_lock: once slowest is full, its
                                 fastest entry */
static struct route **table;   /* guarded by prof_latency_lock; open addressing */
static size_t table_size;      /* power of two, > 2 * (max_routes + 2) */
static unsigned route_count;   /* guarded by prof_latency_lock: routes in table */
static unsigned capped_count;  /* guarded by prof_latency_lock: of those, the ones counted
                                  against route_cap: all but (other) and (not found) */
static unsigned route_cap;
static size_t (*kept_tree_ids)(uint64_t *ids, size_t cap); /* set before any request */

static const char *backend_name(enum prof_backend b)
{
    static const char *const names[] = { "wsgi", "upstream", "static" };
    return b < PROF_BACKENDS ? names[b] : "?";
}

int prof_latency_init(unsigned max_routes, unsigned slowest_kept)
{
    started = time(NULL);
    slow_cap = slowest_kept;
    if (slow_cap && !(slowest = calloc(slow_cap, sizeof(*slowest))))
        return -1;
    route_cap = max_routes ? max_routes : 1;
    table_size = 16;
    while (table_size < 2u * ((size_t)route_cap + 2))
        table_size *= 2;
    table = calloc(table_size, sizeof(*table));
    return table ? 0 : -1;
}

void prof_latency_set_tree_ids(size_t (*ids)(uint64_t *ids, size_t cap))
{
    kept_tree_ids = ids;
}

static int id_order(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The trees are as many as the rows (both --profile-slowest), so slow_cap
 * of them is all. */
uint64_t *prof_latency_tree_ids(size_t *n)
{
    uint64_t *ids = malloc((slow_cap ? slow_cap : 1) * sizeof(*ids));
    *n = ids && kept_tree_ids ? kept_tree_ids(ids, slow_cap) : 0;
    if (ids)
        qsort(ids, *n, sizeof(*ids), id_order);
    return ids;
}

bool prof_latency_in_ids(uint64_t id, const uint64_t *ids, size_t n)
{
    return n && bsearch(&id, ids, n, sizeof(*ids), id_order);
}

struct route *prof_latency_route(const char *key, bool may_create)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        size_t i = (size_t)prof_fnv1a_str(PROF_FNV1A_START, key) & (table_size - 1);
        while (table[i]) {
            if (!strcmp(table[i]->key, key))
                return table[i];
            i = (i + 1) & (table_size - 1);
        }
        bool special = !strcmp(key, OTHER_ROUTE) || !strcmp(key, NOT_FOUND_ROUTE);
        if (!may_create && !special) {
            key = NOT_FOUND_ROUTE;
            continue;
        }
        if (capped_count < route_cap || special) { /* the two special ones take no slot */
            struct route *r = calloc(1, sizeof(*r));
            if (!r)
                return NULL;
            snprintf(r->key, sizeof(r->key), "%s", key);
            table[i] = r;
            route_count++;
            capped_count += !special;
            return r;
        }
        key = OTHER_ROUTE;
    }
    return NULL;
}

struct backend_stats *prof_latency_stats(struct route *r, enum prof_backend b)
{
    if (r->backend[b])
        return r->backend[b];
    bool up = b == PROF_BACKEND_UPSTREAM;
    struct backend_stats *s = calloc(1, sizeof(*s) + (up ? sizeof(*s->up) : 0));
    if (s && up)
        s->up = (struct upstream_stats *)(s + 1);
    return r->backend[b] = s;
}

bool prof_latency_partial(const struct route *r)
{
    return r->said_partial ||
           (r->key[0] != '(' && r->overflowed_with < prof_latency_overflowed_loads);
}

void prof_latency_keep_if_slow(const struct prof_sample *s, uint64_t total, uint64_t queue,
                         uint64_t ttfb)
{
    if (!slow_cap)
        return;
    unsigned at;
    if (slow_count == slow_cap) { /* full: replace the fastest kept, if slower */
        at = fastest_kept;
        if (slowest[at].total_us >= total)
            return; /* the common case, with no scan */
    } else {
        at = slow_count++;
    }
    struct slow_request *r = &slowest[at];
    r->id = s->id;
    snprintf(r->method, sizeof(r->method), "%s", s->method ? s->method : "-");
    snprintf(r->target, sizeof(r->target), "%s", s->target);
    r->status = s->status;
    r->total_us = total;
    r->queue_us = queue;
    r->ttfb_us = ttfb;
    r->when = time(NULL);
    r->tree = false;
    if (slow_count == slow_cap) {
        fastest_kept = 0;
        for (unsigned i = 1; i < slow_count; i++)
            if (slowest[i].total_us < slowest[fastest_kept].total_us)
                fastest_kept = i;
    }
}

struct slow_request *prof_latency_slowest(unsigned *n)
{
    *n = slow_count;
    return slowest;
}

void prof_latency_record(const struct prof_sample *s)
{
    char key[ROUTE_KEY_MAX];
    prof_route_key(s->target, strlen(s->target), !s->routed, key, sizeof(key));
    uint64_t first = s->t_first_byte ? s->t_first_byte : s->t_done;
    pthread_mutex_lock(&prof_latency_lock);
    struct route *r = table ? prof_latency_route(key, s->status != 404) : NULL;
    struct backend_stats *b = r ? prof_latency_stats(r, s->backend) : NULL;
    uint64_t total = s->t_done - s->t_received;
    uint64_t ready = s->t_ready ? s->t_ready : s->t_received;
    uint64_t queue = s->t_dispatched > ready ? s->t_dispatched - ready : 0;
    uint64_t ttfb = first - s->t_received;
    if (b) {
        prof_histogram_record(&b->total, total);
        prof_histogram_record(&b->queue, queue);
        prof_histogram_record(&b->ttfb, ttfb);
        if (b->up && s->upstream_total_us) {
            prof_histogram_record(&b->up->connect, s->upstream_connect_us);
            prof_histogram_record(&b->up->ttfb, s->upstream_first_byte_us);
            prof_histogram_record(&b->up->total, s->upstream_total_us);
        }
        b->status[s->status >= 100 && s->status < 600 ? s->status / 100 : 0]++;
        b->ran_inline += s->ran_inline;
    }
    prof_latency_keep_if_slow(s, total, queue, ttfb);
    prof_latency_requests_total++;
    pthread_mutex_unlock(&prof_latency_lock);
}

void prof_latency_empty(void)
{
    for (size_t i = 0; i < table_size; i++) {
        if (!table[i])
            continue;
        for (int b = 0; b < PROF_BACKENDS; b++)
            free(table[i]->backend[b]);
        free(table[i]);
        table[i] = NULL;
    }
    route_count = capped_count = 0;
    prof_latency_loads = prof_latency_overflowed_loads = 0;
    slow_count = 0;
    prof_latency_requests_total = 0;
}

void prof_latency_reset(void)
{
    pthread_mutex_lock(&prof_latency_lock);
    prof_latency_empty();
    prof_latency_forget_rows();
    pthread_mutex_unlock(&prof_latency_lock);
}

unsigned prof_latency_route_cap(void)
{
    return route_cap;
}

void prof_latency_close_rows(void)
{
    capped_count = route_cap;
}

static int key_order(const void *a, const void *b)
{
    return strcmp((*(const struct route *const *)a)->key, (*(const struct route *const *)b)->key);
}

void prof_latency_each(struct prof_text *t, prof_latency_visit_fn fn)
{
    const struct route **sorted = malloc((route_count + 1) * sizeof(*sorted));
    size_t n = 0;
    if (!sorted) {
        t->failed = true;
        return;
    }
    for (size_t i = 0; i < table_size; i++)
        if (table[i])
            sorted[n++] = table[i];
    qsort(sorted, n, sizeof(*sorted), key_order);
    bool first = true;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < PROF_BACKENDS; b++)
            if (sorted[i]->backend[b]) {
                fn(t, sorted[i], (enum prof_backend)b, sorted[i]->backend[b], first);
                first = false;
            }
    free(sorted);
}

static const uint64_t prom_bounds_us[] = { 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
                                           250000, 500000, 1000000, 2500000, 5000000, 10000000 };

static void labels(struct prof_text *t, const struct route *r, enum prof_backend b)
{
    prof_text_add(t, "route=\"");
    prof_text_escaped(t, r->key, PROF_ESC_PROM);
    prof_text_add(t, "\",backend=\"%s\"", backend_name(b));
}

static void prom_histogram(struct prof_text *t, const char *name, const struct route *r,
                           enum prof_backend b, const struct prof_histogram *h)
{
    for (size_t i = 0; i < sizeof(prom_bounds_us) / sizeof(prom_bounds_us[0]); i++) {
        prof_text_add(t, "%s_bucket{", name);
        labels(t, r, b);
        prof_text_add(t, ",le=\"%g\"} %llu\n", (double)prom_bounds_us[i] / 1e6,
            (unsigned long long)prof_histogram_count_le(h, prom_bounds_us[i]));
    }
    prof_text_add(t, "%s_bucket{", name);
    labels(t, r, b);
    prof_text_add(t, ",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
    prof_text_add(t, "%s_sum{", name);
    labels(t, r, b);
    prof_text_add(t, "} %.6f\n%s_count{", (double)h->sum_us / 1e6, name);
    labels(t, r, b);
    prof_text_add(t, "} %llu\n", (unsigned long long)h->count);
}

static void prom_duration(struct prof_text *t, const struct route *r, enum prof_backend b,
                          const struct backend_stats *s, bool first)
{
    (void)first;
    prom_histogram(t, "tracfront_request_duration_seconds", r, b, &s->total);
}

static void prom_queue(struct prof_text *t, const struct route *r, enum prof_backend b,
                       const struct backend_stats *s, bool first)
{
    (void)first;
    prom_histogram(t, "tracfront_request_queue_seconds", r, b, &s->queue);
}

static void prom_status(struct prof_text *t, const struct route *r, enum prof_backend b,
                        const struct backend_stats *s, bool first)
{
    (void)first;
    for (int c = 0; c < 6; c++) {
        if (!s->status[c])
            continue;
        prof_text_add(t, "tracfront_requests_total{");
        labels(t, r, b);
        if (c)
            prof_text_add(t, ",code=\"%dxx\"} %llu\n", c, (unsigned long long)s->status[c]);
        else
            prof_text_add(t, ",code=\"other\"} %llu\n", (unsigned long long)s->status[c]);
    }
}

static void prom_inline(struct prof_text *t, const struct route *r, enum prof_backend b,
                        const struct backend_stats *s, bool first)
{
    (void)first;
    if (b != PROF_BACKEND_WSGI)
        return;
    prof_text_add(t, "tracfront_requests_inline_total{");
    labels(t, r, b);
    prof_text_add(t, "} %llu\n", (unsigned long long)s->ran_inline);
}

char *prof_latency_prometheus(int in_flight)
{
    struct prof_text t = { 0 };
    prof_text_add(&t, "# HELP tracfront_requests_in_flight Requests received and not yet completed.\n"
            "# TYPE tracfront_requests_in_flight gauge\n"
            "tracfront_requests_in_flight %d\n", in_flight);
    pthread_mutex_lock(&prof_latency_lock);
    prof_text_add(&t, "# HELP tracfront_request_duration_seconds From request received to last byte sent.\n"
            "# TYPE tracfront_request_duration_seconds histogram\n");
    prof_latency_each(&t, prom_duration);
    prof_text_add(&t, "# HELP tracfront_request_queue_seconds Time waiting for an app thread.\n"
            "# TYPE tracfront_request_queue_seconds histogram\n");
    prof_latency_each(&t, prom_queue);
    prof_text_add(&t, "# HELP tracfront_requests_total Requests completed, by status class.\n"
            "# TYPE tracfront_requests_total counter\n");
    prof_latency_each(&t, prom_status);
    prof_text_add(&t, "# HELP tracfront_requests_inline_total Requests the app ran inside the "
            "network thread's read of them.\n# TYPE tracfront_requests_inline_total counter\n");
    prof_latency_each(&t, prom_inline);
    pthread_mutex_unlock(&prof_latency_lock);
    return prof_text_finish(&t);
}

static void json_route(struct prof_text *t, const struct route *r, enum prof_backend b,
                       const struct backend_stats *s, bool first)
{
    const struct prof_histogram *h = &s->total;
    prof_text_add(t, "%s{\"route\":\"", first ? "" : ",");
    prof_text_escaped(t, r->key, PROF_ESC_JSON);
    prof_text_add(t, "\",\"backend\":\"%s\",\"partial\":%s,\"count\":%llu,\"mean_us\":%llu,"
           "\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,\"max_us\":%llu,\"queue_p50_us\":%llu,"
           "\"queue_p99_us\":%llu,\"ttfb_p50_us\":%llu,\"ttfb_p99_us\":%llu,\"inline\":%llu,",
        backend_name(b), prof_latency_partial(r) ? "true" : "false", (unsigned long long)h->count,
        (unsigned long long)(h->count ? h->sum_us / h->count : 0),
        (unsigned long long)prof_histogram_percentile(h, 50),
        (unsigned long long)prof_histogram_percentile(h, 90),
        (unsigned long long)prof_histogram_percentile(h, 99), (unsigned long long)h->max_us,
        (unsigned long long)prof_histogram_percentile(&s->queue, 50),
        (unsigned long long)prof_histogram_percentile(&s->queue, 99),
        (unsigned long long)prof_histogram_percentile(&s->ttfb, 50),
        (unsigned long long)prof_histogram_percentile(&s->ttfb, 99),
        (unsigned long long)s->ran_inline);
    if (s->up)
        prof_text_add(t, "\"upstream\":{\"count\":%llu,\"connect_p50_us\":%llu,"
                      "\"connect_p99_us\":%llu,\"first_byte_p50_us\":%llu,"
                      "\"first_byte_p99_us\":%llu,\"total_p50_us\":%llu,\"total_p99_us\":%llu},",
            (unsigned long long)s->up->total.count,
            (unsigned long long)prof_histogram_percentile(&s->up->connect, 50),
            (unsigned long long)prof_histogram_percentile(&s->up->connect, 99),
            (unsigned long long)prof_histogram_percentile(&s->up->ttfb, 50),
            (unsigned long long)prof_histogram_percentile(&s->up->ttfb, 99),
            (unsigned long long)prof_histogram_percentile(&s->up->total, 50),
            (unsigned long long)prof_histogram_percentile(&s->up->total, 99));
    prof_text_add(t, "\"status\":{");
    bool firstc = true;
    for (int c = 0; c < 6; c++) {
        if (!s->status[c])
            continue;
        if (c)
            prof_text_add(t, "%s\"%dxx\":%llu", firstc ? "" : ",", c, (unsigned long long)s->status[c]);
        else
            prof_text_add(t, "%s\"other\":%llu", firstc ? "" : ",", (unsigned long long)s->status[c]);
        firstc = false;
    }
    prof_text_add(t, "}}");
}

static int slower_first(const void *a, const void *b)
{
    const struct slow_request *x = a, *y = b;
    return x->total_us < y->total_us ? 1 : x->total_us > y->total_us ? -1 : 0;
}

/* With the lock held: the kept slow requests, slowest first (malloc'd). */
static struct slow_request *sorted_slowest(unsigned *n)
{
    *n = slow_count;
    struct slow_request *copy = malloc((slow_count ? slow_count : 1) * sizeof(*copy));
    if (copy) {
        memcpy(copy, slowest, slow_count * sizeof(*copy));
        qsort(copy, slow_count, sizeof(*copy), slower_first);
    }
    return copy;
}

char *prof_latency_slowest_json(void)
{
    struct prof_text t = { 0 };
    unsigned n;
    pthread_mutex_lock(&prof_latency_lock);
    struct slow_request *list = sorted_slowest(&n);
    pthread_mutex_unlock(&prof_latency_lock);
    if (!list)
        return NULL;
    prof_text_add(&t, "{\"slowest\":[");
    for (unsigned i = 0; i < n; i++) {
        prof_text_add(&t, "%s{\"id\":%llu,\"method\":\"", i ? "," : "",
                      (unsigned long long)list[i].id);
        prof_text_escaped(&t, list[i].method, PROF_ESC_JSON);
        prof_text_add(&t, "\",\"target\":\"");
        prof_text_escaped(&t, list[i].target, PROF_ESC_JSON);
        prof_text_add(&t, "\",\"status\":%u,\"total_us\":%llu,\"queue_us\":%llu,\"ttfb_us\":%llu,"
                "\"time\":%lld}", list[i].status, (unsigned long long)list[i].total_us,
            (unsigned long long)list[i].queue_us, (unsigned long long)list[i].ttfb_us,
            (long long)list[i].when);
    }
    prof_text_add(&t, "]}\n");
    free(list);
    return prof_text_finish(&t);
}

char *prof_latency_json(int in_flight)
{
    struct prof_text t = { 0 };
    prof_text_add(&t, "{\"in_flight\":%d,\"routes\":[", in_flight);
    pthread_mutex_lock(&prof_latency_lock);
    prof_latency_each(&t, json_route);
    pthread_mutex_unlock(&prof_latency_lock);
    prof_text_add(&t, "]}\n");
    return prof_text_finish(&t);
}

/* A 120x20 inline SVG: one bar per power of two from 64 us to 16 s, height
 * on a log scale of the count, so rare slow requests stay visible. */
static void html_sparkline(struct prof_text *t, const struct prof_histogram *h)
{
    enum { BINS = 19 };
    uint64_t bins[BINS] = { 0 }, most = 0;
    for (unsigned b = 0; b < PROF_HIST_BUCKETS; b++) {
        if (!h->buckets[b])
            continue;
        uint64_t v = prof_histogram_bucket_max(b);
        int bin = v < 64 ? 0 : 63 - __builtin_clzll(v) - 6; /* 64us → 0 ... 16s → 18 */
        bins[bin < BINS ? bin : BINS - 1] += h->buckets[b];
    }
    for (int i = 0; i < BINS; i++)
        if (bins[i] > most)
            most = bins[i];
    prof_text_add(t, "<svg width=\"120\" height=\"20\"><title>64 us to 16 s, powers of two</title>");
    for (int i = 0; i < BINS && most; i++) {
        if (!bins[i])
            continue;
        double hgt = 2.0 + 18.0 * log((double)bins[i] + 1.0) / log((double)most + 1.0);
        prof_text_add(t, "<rect x=\"%d\" y=\"%.1f\" width=\"5\" height=\"%.1f\" fill=\"#c64\">"
                         "<title>%llu</title></rect>",
                      i * 6 + 3, 20.0 - hgt, hgt, (unsigned long long)bins[i]);
    }
    prof_text_add(t, "</svg>");
}

static void html_route(struct prof_text *t, const struct prof_routes_row *row)
{
    const struct route *r = row->data;
    const struct backend_stats *s = r->backend[row->backend];
    const struct prof_histogram *h = &s->total;
    prof_text_add(t, "<tr><td><code>");
    prof_text_escaped(t, r->key, PROF_ESC_HTML);
    if (prof_latency_partial(r))
        prof_text_add(t, "</code> <small title=\"some of its requests are under (other): a worker "
                         "had no route slot left for it\">(partial)</small>");
    else
        prof_text_add(t, "</code>");
    prof_text_add(t, "<td>%s<td>%llu<td>%.3f<td>%.1f<td>%.1f<td>%.1f<td>%.1f<td>%.1f<td>%.1f"
                     "<td>%llu/%llu",
        backend_name((enum prof_backend)row->backend), (unsigned long long)h->count,
        (double)h->sum_us / 1e6, h->count ? (double)h->sum_us / (double)h->count / 1000.0 : 0.0,
        (double)prof_histogram_percentile(h, 50) / 1000.0,
        (double)prof_histogram_percentile(h, 90) / 1000.0,
        (double)prof_histogram_percentile(h, 99) / 1000.0,
        (double)h->max_us / 1000.0, (double)prof_histogram_percentile(&s->queue, 99) / 1000.0,
        (unsigned long long)row->errors, (unsigned long long)h->count);
    if (row->backend == PROF_BACKEND_WSGI)
        prof_text_add(t, "<td>%llu", (unsigned long long)s->ran_inline);
    else
        prof_text_add(t, "<td>-");
    prof_text_add(t, "<td>");
    html_sparkline(t, h);
    prof_text_add(t, "\n");
}

/* With the lock held: a row per route and backend with data, its figures
 * filled in (malloc'd, *n of them; NULL on out of memory); of the
 * percentiles, only the one order sorts by (each scans a histogram, and the
 * rows shown print theirs: html_route). */
static struct prof_routes_row *routes_rows(enum prof_routes_order order, size_t *n)
{
    unsigned pct = order == PROF_ROUTES_BY_P50 ? 50 : order == PROF_ROUTES_BY_P90 ? 90
                   : order == PROF_ROUTES_BY_P99 ? 99 : 0;
    size_t cap = (size_t)route_count * PROF_BACKENDS + 1;
    struct prof_routes_row *rows = malloc(cap * sizeof(*rows));
    *n = 0;
    for (size_t i = 0; rows && i < table_size; i++)
        for (unsigned b = 0; table[i] && b < PROF_BACKENDS; b++) {
            const struct backend_stats *s = table[i]->backend[b];
            if (!s)
                continue;
            uint64_t p = pct ? prof_histogram_percentile(&s->total, pct) : 0;
            rows[(*n)++] = (struct prof_routes_row){
                .key = table[i]->key, .backend = b, .special = table[i]->key[0] == '(',
                .requests = s->total.count, .total_us = s->total.sum_us,
                .p50_us = pct == 50 ? p : 0, .p90_us = pct == 90 ? p : 0,
                .p99_us = pct == 99 ? p : 0, .max_us = s->total.max_us,
                .errors = s->status[4] + s->status[5], .data = table[i],
            };
        }
    return rows;
}

/* A link of the route table's: the page's view with name=value. */
static void html_view_link(struct prof_text *t, const char *profile_href, const char *view,
                           const char *name, const char *value)
{
    char *query = prof_query_with(view, name, value);
    if (!query) {
        t->failed = true;
        return;
    }
    prof_text_add(t, "<a href=\"");
    prof_text_escaped(t, profile_href, PROF_ESC_HTML);
    prof_text_add(t, "?");
    prof_text_escaped(t, query, PROF_ESC_HTML);
    prof_text_add(t, "#routes\">");
    free(query);
}

/* The header: a column the view sorts by links to that order. */
static void html_routes_header(struct prof_text *t, const char *profile_href, const char *view,
                               const struct prof_routes_view *v)
{
    static const struct { const char *label; int order; } columns[] = {
        { "route", PROF_ROUTES_BY_ROUTE }, { "backend", -1 },
        { "requests", PROF_ROUTES_BY_REQUESTS },
        { "total (s)", PROF_ROUTES_BY_TOTAL }, { "mean", PROF_ROUTES_BY_MEAN },
        { "p50", PROF_ROUTES_BY_P50 }, { "p90", PROF_ROUTES_BY_P90 }, { "p99", PROF_ROUTES_BY_P99 },
        { "max", PROF_ROUTES_BY_MAX }, { "queue p99", -1 }, { "errors", PROF_ROUTES_BY_ERRORS },
        { "inline", -1 }, { "distribution", -1 },
    };
    prof_text_add(t, "<table><tr>");
    for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]); i++) {
        int o = columns[i].order;
        if (o < 0) {
            prof_text_add(t, "<th>%s", columns[i].label);
            continue;
        }
        bool route = o == PROF_ROUTES_BY_ROUTE, current = (int)v->order == o;
        prof_text_add(t, "<th%s>", !current ? "" : route ? " aria-sort=ascending"
                                                         : " aria-sort=descending");
        html_view_link(t, profile_href, view, "routes_sort", prof_routes_order_name(o));
        prof_text_add(t, "%s%s</a>", columns[i].label, !current ? "" : route ? " &#9652;"
                                                                            : " &#9662;");
    }
    prof_text_add(t, "\n");
}

/* Under the table's heading: what the view could not use, how many rows
 * of how many, and the row limits. */
static void html_routes_note(struct prof_text *t, const char *profile_href, const char *view,
                             const struct prof_routes_view *v, size_t shown, size_t all)
{
    if (v->bad_order)
        prof_text_add(t, "<p><b>Unknown routes_sort: use route, requests, total, mean, p50, p90, "
                         "p99, max or errors; the rows are by total time.</b></p>\n");
    if (v->bad_limit)
        prof_text_add(t, "<p><b>routes_limit must be a positive number of rows, or all; %d are "
                         "shown.</b></p>\n", PROF_ROUTES_DEFAULT_LIMIT);
    if (shown < all)
        prof_text_add(t, "<p>%zu of %zu rows", shown, all);
    else
        prof_text_add(t, "<p>%zu row%s", all, all == 1 ? "" : "s");
    prof_text_add(t, ", by %s; (other) and (not found) are always shown. Rows: ",
                  prof_routes_order_label(v->order));
    static const char *const limits[] = { "20", "50", "200", "all" };
    char current[24] = "all";
    if (v->limit)
        snprintf(current, sizeof(current), "%zu", v->limit);
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        if (!strcmp(current, limits[i])) {
            prof_text_add(t, "<b>%s</b> ", limits[i]);
            continue;
        }
        html_view_link(t, profile_href, view, "routes_limit", limits[i]);
        prof_text_add(t, "%s</a> ", limits[i]);
    }
    prof_text_add(t, "</p>");
}

/* The latency table in the page's view (latency_view.h). With the lock held. */
static void html_routes(struct prof_text *t, const char *profile_href, const char *view)
{
    struct prof_routes_view v;
    prof_routes_view_parse(&v, view);
    size_t all;
    struct prof_routes_row *rows = routes_rows(v.order, &all);
    if (!rows) {
        t->failed = true;
        return;
    }
    size_t shown = prof_routes_select(rows, all, &v);
    html_routes_note(t, profile_href, view, &v, shown, all);
    html_routes_header(t, profile_href, view, &v);
    for (size_t i = 0; i < shown; i++)
        html_route(t, &rows[i]);
    free(rows);
    prof_text_add(t, "</table>\n");
}

/* A control's button; the page's view (its query) goes with it, and the
 * page it sends back to keeps it. */
static void html_form(struct prof_text *t, const char *profile_href, const char *view,
                      const char *action, const char *label)
{
    prof_text_add(t, "<form method=post action=\"");
    prof_text_escaped(t, profile_href, PROF_ESC_HTML);
    prof_text_add(t, "/%s%s", action, view[0] ? "?" : "");
    prof_text_escaped(t, view, PROF_ESC_HTML);
    prof_text_add(t, "\" style=\"display:inline\"><button>%s</button></form> ", label);
}

char *prof_latency_html(int in_flight, const char *profile_href, const char *view, bool profiling,
                        bool can_save, const char *appendix)
{
    struct prof_text t = { 0 };
    pthread_mutex_lock(&prof_latency_lock);
    uint64_t timed = prof_latency_requests_total;
    pthread_mutex_unlock(&prof_latency_lock);
    prof_text_add(&t, PROF_HTML_START "<title>tracfront profile</title>"
            "<style>body{font:14px sans-serif}td,th{padding:2px 8px;text-align:right}"
            "td:first-child{text-align:left}td:last-child,th:last-child{text-align:left}"
            "tr.rel td{color:#555;font-size:12px}</style>"
            "<h1>tracfront profile</h1><p>Up %lds, %llu requests timed, %d in flight (this page "
            "included). "
            "Function profiling: <b>%s</b> ",
        (long)(time(NULL) - started), (unsigned long long)timed, in_flight,
        profiling ? "on" : "off");
    html_form(&t, profile_href, view, profiling ? "stop" : "start", profiling ? "Stop" : "Start");
    html_form(&t, profile_href, view, "clear", "Clear");
    if (can_save)
        html_form(&t, profile_href, view, "save", "Save files");
    static const char *const downloads[][2] = {
        { "/pstats", "pstats</a> (python3 -m pstats, snakeviz)" }, { "/callgrind", "callgrind</a>" },
        { "/collapsed", "collapsed stacks</a>" }, { "/speedscope.json", "speedscope</a>" },
        { "/metrics", "Prometheus</a>" }, { "/api/latency", "JSON</a>." },
    };
    prof_text_add(&t, "</p><p>Downloads:");
    for (size_t i = 0; i < sizeof(downloads) / sizeof(downloads[0]); i++) {
        prof_text_add(&t, "%s <a href=\"", i ? "," : "");
        prof_text_escaped(&t, profile_href, PROF_ESC_HTML);
        prof_text_add(&t, "%s\">%s", downloads[i][0], downloads[i][1]);
    }
    prof_text_add(&t, "</p><h2 id=routes>Latency by route (ms)</h2>");
    unsigned n;
    size_t n_ids;
    uint64_t *ids = prof_latency_tree_ids(&n_ids);
    pthread_mutex_lock(&prof_latency_lock);
    html_routes(&t, profile_href, view);
    struct slow_request *list = sorted_slowest(&n);
    pthread_mutex_unlock(&prof_latency_lock);
    prof_text_add(&t, "<h2>Slowest requests</h2><table><tr><th>request<th>status<th>total"
            "<th>queue<th>first byte<th>profile\n");
    for (unsigned i = 0; list && i < n; i++) {
        prof_text_add(&t, "<tr><td><code>");
        prof_text_escaped(&t, list[i].method, PROF_ESC_HTML);
        prof_text_add(&t, " ");
        prof_text_escaped(&t, list[i].target, PROF_ESC_HTML);
        prof_text_add(&t, "</code><td>%u<td>%.1f<td>%.1f<td>%.1f<td>", list[i].status,
            (double)list[i].total_us / 1000.0, (double)list[i].queue_us / 1000.0,
            (double)list[i].ttfb_us / 1000.0);
        if (list[i].tree || prof_latency_in_ids(list[i].id, ids, n_ids)) { /* else its page is a 404 */
            prof_text_add(&t, "<a href=\"");
            prof_text_escaped(&t, profile_href, PROF_ESC_HTML);
            prof_text_add(&t, "/request?id=%llu\" aria-label=\"call tree of request %llu\">call "
                              "tree</a>", (unsigned long long)list[i].id,
                          (unsigned long long)list[i].id);
        }
        prof_text_add(&t, "\n");
    }
    if (!list || !ids)
        t.failed = true;
    free(list);
    free(ids);
    prof_text_add(&t, "</table>\n%s", appendix);
    return prof_text_finish(&t);
}
