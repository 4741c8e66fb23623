/* compare.c — the mirror comparison table (see compare.h). Routes are kept
 * in a small array searched linearly: mirrored traffic is sampled traffic,
 * and a few hundred routes compare in well under a microsecond. */
#include "profiler/compare.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "profiler/histogram.h"
#include "profiler/route.h"
#include "profiler/text.h"

#define KEY_MAX 128
#define KEPT 20 /* recent mismatches, and recent failures */

struct compare_route {
    char key[KEY_MAX];
    struct prof_histogram app, upstream;
    uint64_t pairs, status_mismatches, size_mismatches, hash_mismatches;
    uint64_t abandoned;               /* of pairs: not compared */
    uint64_t failed;                  /* of pairs: not compared */
    uint64_t held_back;               /* of pairs: not timed */
};

struct mismatch {
    char method[16], target[256];
    struct prof_compare_side app, upstream;
};

struct failure {
    char method[16], target[256];
    const char *side;                 /* "app" or "upstream" */
    struct prof_compare_side answer;
};

/* The last KEPT entries of a list: slots of an array, reused oldest first. */
struct ring {
    unsigned n, next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct compare_route *routes;  /* guarded by lock */
static unsigned n_routes, cap_routes;
static struct mismatch recent[KEPT];  /* guarded by lock, as the rings */
static struct failure failures[KEPT];
static struct ring recent_ring, failure_ring;
static uint64_t mirrored, dropped, abandoned, failed, held_back; /* guarded by lock */

void prof_compare_init(unsigned max_routes)
{
    pthread_mutex_lock(&lock);
    cap_routes = max_routes ? max_routes : 1;
    pthread_mutex_unlock(&lock);
}

static struct compare_route *find(const char *key)
{
    for (unsigned i = 0; i < n_routes; i++)
        if (!strcmp(routes[i].key, key))
            return &routes[i];
    if (n_routes >= cap_routes) {
        key = "(other)";
        for (unsigned i = 0; i < n_routes; i++)
            if (!strcmp(routes[i].key, key))
                return &routes[i];
    }
    struct compare_route *grown = realloc(routes, (n_routes + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    routes = grown;
    struct compare_route *r = &routes[n_routes++];
    memset(r, 0, sizeof(*r));
    snprintf(r->key, sizeof(r->key), "%s", key);
    return r;
}

/* The slot for a new entry. */
static unsigned ring_push(struct ring *r)
{
    unsigned slot = r->next;
    r->next = (r->next + 1) % KEPT;
    if (r->n < KEPT)
        r->n++;
    return slot;
}

/* The slot of the i-th entry, oldest first. */
static unsigned ring_at(const struct ring *r, unsigned i)
{
    unsigned start = r->n < KEPT ? 0 : r->next;
    return (start + i) % KEPT;
}

/* With the lock held: keep a mismatching pair among the recent ones. */
static void keep_mismatch(const char *method, const char *target,
                          const struct prof_compare_side *app,
                          const struct prof_compare_side *upstream)
{
    struct mismatch *m = &recent[ring_push(&recent_ring)];
    snprintf(m->method, sizeof(m->method), "%s", method);
    snprintf(m->target, sizeof(m->target), "%s", target);
    m->app = *app;
    m->upstream = *upstream;
}

/* With the lock held: both answers are whole; compare them. r may be NULL
 * (out of memory): then only the recent mismatches see the pair. */
static void compare_pair(struct compare_route *r, const char *method, const char *target,
                         const struct prof_compare_side *app,
                         const struct prof_compare_side *upstream)
{
    bool status_differs = app->status != upstream->status;
    bool size_differs = app->bytes != upstream->bytes;
    bool hash_differs = !size_differs && app->hash != upstream->hash;
    bool slow_client = app->held_back || upstream->held_back;
    held_back += slow_client;
    if (r) {
        if (slow_client) {
            r->held_back++;
        } else {
            prof_histogram_record(&r->app, app->latency_us);
            prof_histogram_record(&r->upstream, upstream->latency_us);
        }
        r->status_mismatches += status_differs;
        r->size_mismatches += size_differs;
        r->hash_mismatches += hash_differs;
    }
    if (status_differs || size_differs || hash_differs)
        keep_mismatch(method, target, app, upstream);
}

/* With the lock held: a side that gave no whole answer, kept with its error. */
static void keep_failure(const char *method, const char *target, const char *side,
                         const struct prof_compare_side *answer)
{
    struct failure *f = &failures[ring_push(&failure_ring)];
    snprintf(f->method, sizeof(f->method), "%s", method);
    snprintf(f->target, sizeof(f->target), "%s", target);
    f->side = side;
    f->answer = *answer;
}

void prof_compare_record(const char *method, const char *target,
                         const struct prof_compare_side *app,
                         const struct prof_compare_side *upstream)
{
    char key[KEY_MAX];
    prof_route_key(target, strlen(target), true, key, sizeof(key)); /* mirrored: the default's */
    /* A client that left early cut its answer short (or never needed
     * it): the difference and the time are the client's, not a backend's. */
    bool left = app->abandoned || upstream->abandoned;
    /* A side refused, reset or timed out has no answer to compare (its 502
     * or 504 is tracfront's), and its time is that of the failure. */
    bool broke = !left && (app->error || upstream->error);
    pthread_mutex_lock(&lock);
    mirrored++; /* here, not when sent: a pair in flight at a reset is counted with it */
    struct compare_route *r = find(key);
    if (r) {
        r->pairs++;
        r->abandoned += left;
        r->failed += broke;
    }
    abandoned += left;
    failed += broke;
    if (broke && app->error)
        keep_failure(method, target, "app", app);
    if (broke && upstream->error)
        keep_failure(method, target, "upstream", upstream);
    if (!left && !broke)
        compare_pair(r, method, target, app, upstream);
    pthread_mutex_unlock(&lock);
}

void prof_compare_count_dropped(void)
{
    pthread_mutex_lock(&lock);
    dropped++;
    pthread_mutex_unlock(&lock);
}

void prof_compare_reset(void)
{
    pthread_mutex_lock(&lock);
    free(routes);
    routes = NULL;
    n_routes = 0;
    recent_ring = failure_ring = (struct ring){ 0 };
    mirrored = dropped = abandoned = failed = held_back = 0;
    pthread_mutex_unlock(&lock);
}

static double ratio(const struct prof_histogram *a, const struct prof_histogram *b, double p)
{
    uint64_t x = prof_histogram_percentile(a, p), y = prof_histogram_percentile(b, p);
    return x ? (double)y / (double)x : 0.0;
}

static void json_side(struct prof_text *t, const char *name, const struct prof_histogram *h)
{
    prof_text_add(t, "\"%s\":{\"count\":%llu,\"p50_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f}",
                  name, (unsigned long long)h->count,
                  (double)prof_histogram_percentile(h, 50) / 1000.0,
                  (double)prof_histogram_percentile(h, 95) / 1000.0,
                  (double)prof_histogram_percentile(h, 99) / 1000.0);
}

/* Did the two sides encode the body differently (e.g. gzip on one side)? */
static bool encodings_differ(const struct mismatch *m)
{
    return strcasecmp(m->app.encoding, m->upstream.encoding) != 0;
}

static void json_mismatch(struct prof_text *t, const struct mismatch *m, bool first)
{
    prof_text_add(t, "%s{\"method\":\"", first ? "" : ",");
    prof_text_escaped(t, m->method, PROF_ESC_JSON);
    prof_text_add(t, "\",\"target\":\"");
    prof_text_escaped(t, m->target, PROF_ESC_JSON);
    prof_text_add(t, "\",\"app_status\":%u,\"upstream_status\":%u,\"app_bytes\":%llu,"
                  "\"upstream_bytes\":%llu,\"same_hash\":%s,\"app_encoding\":\"",
                  m->app.status, m->upstream.status, (unsigned long long)m->app.bytes,
                  (unsigned long long)m->upstream.bytes,
                  m->app.hash == m->upstream.hash ? "true" : "false");
    prof_text_escaped(t, m->app.encoding, PROF_ESC_JSON);
    prof_text_add(t, "\",\"upstream_encoding\":\"");
    prof_text_escaped(t, m->upstream.encoding, PROF_ESC_JSON);
    prof_text_add(t, "\",\"encoding_differs\":%s}", encodings_differ(m) ? "true" : "false");
}

/* What a failed side's error says: its backend's words, or a general one. */
static const char *failure_why(const struct failure *f)
{
    return f->answer.why[0] ? f->answer.why : "the answer ended with an error";
}

static void json_failure(struct prof_text *t, const struct failure *f, bool first)
{
    prof_text_add(t, "%s{\"method\":\"", first ? "" : ",");
    prof_text_escaped(t, f->method, PROF_ESC_JSON);
    prof_text_add(t, "\",\"target\":\"");
    prof_text_escaped(t, f->target, PROF_ESC_JSON);
    prof_text_add(t, "\",\"side\":\"%s\",\"status\":%u,\"error\":\"", f->side, f->answer.status);
    prof_text_escaped(t, failure_why(f), PROF_ESC_JSON);
    prof_text_add(t, "\"}");
}

static void json_route(struct prof_text *t, const struct compare_route *r, bool first)
{
    prof_text_add(t, "%s{\"route\":\"", first ? "" : ",");
    prof_text_escaped(t, r->key, PROF_ESC_JSON);
    prof_text_add(t, "\",\"pairs\":%llu,\"abandoned\":%llu,\"failed\":%llu,\"held_back\":%llu,"
                  "\"status_mismatches\":%llu,\"size_mismatches\":%llu,"
                  "\"hash_mismatches\":%llu,", (unsigned long long)r->pairs,
                  (unsigned long long)r->abandoned, (unsigned long long)r->failed,
                  (unsigned long long)r->held_back, (unsigned long long)r->status_mismatches,
                  (unsigned long long)r->size_mismatches,
                  (unsigned long long)r->hash_mismatches);
    json_side(t, "app", &r->app);
    prof_text_add(t, ",");
    json_side(t, "upstream", &r->upstream);
    prof_text_add(t, ",\"ratio_p50\":%.3f,\"ratio_p95\":%.3f,\"ratio_p99\":%.3f}",
                  ratio(&r->app, &r->upstream, 50), ratio(&r->app, &r->upstream, 95),
                  ratio(&r->app, &r->upstream, 99));
}

char *prof_compare_json(const char *primary)
{
    struct prof_text t = { 0 };
    pthread_mutex_lock(&lock);
    prof_text_add(&t, "{\"primary\":\"%s\",\"mirrored\":%llu,\"dropped\":%llu,"
                  "\"abandoned\":%llu,\"failed\":%llu,\"held_back\":%llu,\"routes\":[", primary,
                  (unsigned long long)mirrored, (unsigned long long)dropped,
                  (unsigned long long)abandoned, (unsigned long long)failed,
                  (unsigned long long)held_back);
    for (unsigned i = 0; i < n_routes; i++)
        json_route(&t, &routes[i], i == 0);
    prof_text_add(&t, "],\"mismatches\":[");
    for (unsigned i = 0; i < recent_ring.n; i++)
        json_mismatch(&t, &recent[ring_at(&recent_ring, i)], i == 0);
    prof_text_add(&t, "],\"failures\":[");
    for (unsigned i = 0; i < failure_ring.n; i++)
        json_failure(&t, &failures[ring_at(&failure_ring, i)], i == 0);
    prof_text_add(&t, "]}\n");
    pthread_mutex_unlock(&lock);
    return prof_text_finish(&t);
}

static void html_ms(struct prof_text *t, const struct prof_histogram *h)
{
    prof_text_add(t, "<td>%.1f<td>%.1f<td>%.1f", (double)prof_histogram_percentile(h, 50) / 1000.0,
                  (double)prof_histogram_percentile(h, 95) / 1000.0,
                  (double)prof_histogram_percentile(h, 99) / 1000.0);
}

static void html_routes(struct prof_text *t)
{
    prof_text_add(t, "<table><tr><th>route<th>pairs<th>abandoned<th>failed<th>held back"
                     "<th>app p50<th>p95<th>p99<th>upstream p50<th>p95<th>p99"
                     "<th>upstream/app p50<th>p95<th>p99<th>status &ne;<th>size &ne;"
                     "<th title=\"bodies of the same size that differ (a pair whose sizes "
                     "differ counts under size &ne; alone)\">hash &ne;\n");
    for (unsigned i = 0; i < n_routes; i++) {
        const struct compare_route *r = &routes[i];
        prof_text_add(t, "<tr><td><code>");
        prof_text_escaped(t, r->key, PROF_ESC_HTML);
        prof_text_add(t, "</code><td>%llu<td>%llu<td>%llu<td>%llu", (unsigned long long)r->pairs,
                      (unsigned long long)r->abandoned, (unsigned long long)r->failed,
                      (unsigned long long)r->held_back);
        html_ms(t, &r->app);
        html_ms(t, &r->upstream);
        prof_text_add(t, "<td>%.2f<td>%.2f<td>%.2f<td>%llu<td>%llu<td>%llu\n",
                      ratio(&r->app, &r->upstream, 50), ratio(&r->app, &r->upstream, 95),
                      ratio(&r->app, &r->upstream, 99), (unsigned long long)r->status_mismatches,
                      (unsigned long long)r->size_mismatches,
                      (unsigned long long)r->hash_mismatches);
    }
    prof_text_add(t, "</table>\n");
}

/* The request cell of a row: method and target. */
static void html_request(struct prof_text *t, const char *method, const char *target)
{
    prof_text_add(t, "<tr><td><code>");
    prof_text_escaped(t, method, PROF_ESC_HTML);
    prof_text_add(t, " ");
    prof_text_escaped(t, target, PROF_ESC_HTML);
    prof_text_add(t, "</code>");
}

/* The encodings cell: "same", or each side's (the likely reason for the sizes). */
static void html_encodings(struct prof_text *t, const struct mismatch *m)
{
    if (!encodings_differ(m)) {
        prof_text_add(t, "same\n");
        return;
    }
    prof_text_escaped(t, m->app.encoding[0] ? m->app.encoding : "identity", PROF_ESC_HTML);
    prof_text_add(t, " &ne; ");
    prof_text_escaped(t, m->upstream.encoding[0] ? m->upstream.encoding : "identity",
                      PROF_ESC_HTML);
    prof_text_add(t, "\n");
}

static void html_mismatches(struct prof_text *t)
{
    prof_text_add(t, "<h2>Recent mismatches</h2><table><tr><th>request<th>app status"
                     "<th>upstream status<th>app bytes<th>upstream bytes<th>same body"
                     "<th>encodings\n");
    for (unsigned i = recent_ring.n; i-- > 0;) { /* newest first */
        const struct mismatch *m = &recent[ring_at(&recent_ring, i)];
        bool same = m->app.hash == m->upstream.hash && m->app.bytes == m->upstream.bytes;
        html_request(t, m->method, m->target);
        prof_text_add(t, "<td>%u<td>%u<td>%llu<td>%llu<td>%s<td>", m->app.status,
                      m->upstream.status, (unsigned long long)m->app.bytes,
                      (unsigned long long)m->upstream.bytes, same ? "yes" : "no");
        html_encodings(t, m);
    }
    prof_text_add(t, "</table>\n");
}

static void html_failures(struct prof_text *t)
{
    prof_text_add(t, "<h2>Recent failures</h2><p>No whole answer from that side (refused, "
                     "reset, timed out): the pair is counted, not compared.</p><table><tr>"
                     "<th>request<th>side<th>error\n");
    for (unsigned i = failure_ring.n; i-- > 0;) { /* newest first */
        const struct failure *f = &failures[ring_at(&failure_ring, i)];
        html_request(t, f->method, f->target);
        prof_text_add(t, "<td>%s<td style=\"text-align:left\">", f->side);
        prof_text_escaped(t, failure_why(f), PROF_ESC_HTML);
        prof_text_add(t, "\n");
    }
    prof_text_add(t, "</table>\n");
}

char *prof_compare_html(const char *primary, const char *profile_href)
{
    struct prof_text t = { 0 };
    pthread_mutex_lock(&lock);
    prof_text_add(&t, PROF_HTML_START "<title>tracfront: app vs upstream</title>"
            "<style>body{font:14px sans-serif}td,th{padding:2px 8px;text-align:right}"
            "td:first-child{text-align:left}</style><h1>App vs upstream</h1>"
            "<p><a href=\"");
    prof_text_escaped(&t, profile_href, PROF_ESC_HTML);
    prof_text_add(&t, "\">&larr; profile</a> &middot; <a href=\"");
    prof_text_escaped(&t, profile_href, PROF_ESC_HTML);
    prof_text_add(&t, "/api/compare\">JSON</a></p><p>The client gets the %s's answer; the other "
                  "side gets a copy of each GET and HEAD. %llu mirrored (pairs ended), %llu "
                  "dropped (no room: --mirror-queue, or the app's share of copies), %llu "
                  "abandoned (the client left before its answer was "
                  "complete: counted, not compared), %llu failed (a side gave no whole answer: "
                  "counted, not compared), %llu held back (the primary waited for a slow "
                  "client: answers compared, times not). Times in ms, from dispatch to the "
                  "last body byte.</p>", primary, (unsigned long long)mirrored,
                  (unsigned long long)dropped, (unsigned long long)abandoned,
                  (unsigned long long)failed, (unsigned long long)held_back);
    html_routes(&t);
    html_mismatches(&t);
    html_failures(&t);
    pthread_mutex_unlock(&lock);
    return prof_text_finish(&t);
}
