/* latency_dump.c — a front (--workers) adding up its workers' latency
 * (see latency.h): the registry as text, one line per total (T), per
 * (route, backend) (R) and per slow request kept (S), and such texts added
 * up into this process's registry. Under prof_latency_lock
 * (latency_internal.h), as every other use of the registry. */
#include "profiler/latency.h"
#include "profiler/latency_internal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void dump_histogram(struct prof_text *t, const struct prof_histogram *h)
{
    prof_text_add(t, "\t%llu %llu %llu", (unsigned long long)h->count,
                  (unsigned long long)h->sum_us, (unsigned long long)h->max_us);
    for (unsigned b = 0; b < PROF_HIST_BUCKETS; b++)
        if (h->buckets[b])
            prof_text_add(t, " %u:%llu", b, (unsigned long long)h->buckets[b]);
}

/* Does this process's (other) row hold requests of routes that have a row
 * elsewhere? A process's own (other) does (it ran out of slots); a front's
 * only when a dump it added up had such an (other): the routes the front
 * itself had no row for have none anywhere (their rows are not partial). */
static bool other_is_overflow(void)
{
    return prof_latency_loads == 0 || prof_latency_overflowed_loads > 0;
}

static void dump_stats(struct prof_text *t, const struct route *r, enum prof_backend b,
                       const struct backend_stats *s, bool first)
{
    (void)first;
    prof_text_add(t, "R\t%s\t%d\t%llu %llu %llu %llu %llu %llu", r->key, (int)b,
                  (unsigned long long)s->status[0], (unsigned long long)s->status[1],
                  (unsigned long long)s->status[2], (unsigned long long)s->status[3],
                  (unsigned long long)s->status[4], (unsigned long long)s->status[5]);
    static const struct prof_histogram none; /* the upstream's timings of another backend */
    const struct prof_histogram *hs[] = { &s->total, &s->queue, &s->ttfb,
                                          s->up ? &s->up->connect : &none,
                                          s->up ? &s->up->ttfb : &none,
                                          s->up ? &s->up->total : &none };
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        dump_histogram(t, hs[i]);
    prof_text_add(t, "\t%llu\t%d\n", (unsigned long long)s->ran_inline,
                  strcmp(r->key, OTHER_ROUTE) ? prof_latency_partial(r) : other_is_overflow());
}

void prof_latency_dump_forget_trees(char *dump)
{
    for (char *line = dump; *line;) {
        size_t len = strcspn(line, "\n");
        /* S, id, method, status, total, queue, ttfb, when, tree, target: tabs
         * never appear in a field (the target's are dumped as spaces) */
        char *field = strncmp(line, "S\t", 2) == 0 ? line : NULL;
        for (int tabs = 0; field && tabs < 8; tabs++)
            field = memchr(field + 1, '\t', len - (size_t)(field + 1 - line));
        if (field && field[1] == '1')
            field[1] = '0';
        line += len + (line[len] == '\n');
    }
}

/* prof_latency_dump with the lock held, ids its tree ids. */
static char *dump_locked(int in_flight, const uint64_t *ids, size_t n_ids)
{
    struct prof_text t = { 0 };
    prof_text_add(&t, "T\t%llu\t%d\n", (unsigned long long)prof_latency_requests_total, in_flight);
    prof_latency_each(&t, dump_stats);
    /* A call tree is said only for the trees kept here: a front re-dumps what
     * its stopped workers had, and their trees went with them. */
    unsigned n;
    const struct slow_request *slowest = prof_latency_slowest(&n);
    for (unsigned i = 0; i < n; i++) {
        const struct slow_request *r = &slowest[i];
        prof_text_add(&t, "S\t%llu\t%s\t%u\t%llu\t%llu\t%llu\t%lld\t%d\t",
                      (unsigned long long)r->id, r->method, r->status,
                      (unsigned long long)r->total_us, (unsigned long long)r->queue_us,
                      (unsigned long long)r->ttfb_us, (long long)r->when,
                      prof_latency_in_ids(r->id, ids, n_ids));
        for (const char *p = r->target; *p; p++) /* the target last: no tabs, newlines kept out */
            prof_text_add(&t, "%c", *p == '\n' || *p == '\t' ? ' ' : *p);
        prof_text_add(&t, "\n");
    }
    return prof_text_finish(&t);
}

char *prof_latency_dump(int in_flight)
{
    size_t n_ids;
    uint64_t *ids = prof_latency_tree_ids(&n_ids);
    if (!ids)
        return NULL;
    pthread_mutex_lock(&prof_latency_lock);
    char *dump = dump_locked(in_flight, ids, n_ids);
    pthread_mutex_unlock(&prof_latency_lock);
    free(ids);
    return dump;
}

/* "count sum max b:n b:n ..." added into h (NULL: read past it). */
static void load_histogram(struct prof_histogram *h, char *field)
{
    static struct prof_histogram read; /* under prof_latency_lock; 32 KB, off the stack */
    if (!h)
        return;
    memset(&read, 0, sizeof(read));
    char *save = NULL, *tok = strtok_r(field, " ", &save);
    uint64_t *v[3] = { &read.count, &read.sum_us, &read.max_us };
    for (int i = 0; i < 3 && tok; i++, tok = strtok_r(NULL, " ", &save))
        *v[i] = strtoull(tok, NULL, 10);
    for (; tok; tok = strtok_r(NULL, " ", &save)) {
        unsigned b = 0;
        unsigned long long n = 0;
        if (sscanf(tok, "%u:%llu", &b, &n) == 2 && b < PROF_HIST_BUCKETS)
            read.buckets[b] += n;
    }
    prof_histogram_merge(h, &read);
}

/* One R line of the load'th dump (overflowed: it has an "(other)" row). */
static void load_stats(char *line, unsigned load, bool overflowed)
{
    char *save = NULL, *key = strtok_r(line + 2, "\t", &save);
    char *backend = strtok_r(NULL, "\t", &save), *status = strtok_r(NULL, "\t", &save);
    int b = backend ? atoi(backend) : -1;
    struct route *r = key && b >= 0 && b < PROF_BACKENDS ? prof_latency_route(key, true) : NULL;
    struct backend_stats *s = r ? prof_latency_stats(r, (enum prof_backend)b) : NULL;
    if (!s || !status)
        return;
    if (overflowed && r->last_load != load) /* once per dump, not per backend */
        r->overflowed_with++;
    r->last_load = load;
    unsigned long long c[6] = { 0 };
    sscanf(status, "%llu %llu %llu %llu %llu %llu", &c[0], &c[1], &c[2], &c[3], &c[4], &c[5]);
    for (int i = 0; i < 6; i++)
        s->status[i] += c[i];
    struct prof_histogram *hs[] = { &s->total, &s->queue, &s->ttfb,
                                    s->up ? &s->up->connect : NULL, s->up ? &s->up->ttfb : NULL,
                                    s->up ? &s->up->total : NULL };
    char *field;
    size_t i = 0;
    for (; i < sizeof(hs) / sizeof(hs[0]) && (field = strtok_r(NULL, "\t", &save)); i++)
        load_histogram(hs[i], field);
    if (i == sizeof(hs) / sizeof(hs[0]) && (field = strtok_r(NULL, "\t", &save)))
        s->ran_inline += strtoull(field, NULL, 10);
    if (field && (field = strtok_r(NULL, "\t", &save)) && *field == '1' && key[0] != '(' &&
        !strcmp(r->key, key))
        r->said_partial = true; /* the front's own dump, of workers that stopped (not when
                                   this row went to (other)) */
}

static void load_slow(char *line)
{
    struct prof_sample s = { 0 };
    char method[16] = "-";
    unsigned long long id, total, queue, ttfb;
    long long when;
    int used = 0, tree = 0;
    if (sscanf(line, "S\t%llu\t%15[^\t]\t%u\t%llu\t%llu\t%llu\t%lld\t%d\t%n", &id, method,
               &s.status, &total, &queue, &ttfb, &when, &tree, &used) < 8 || !used)
        return;
    s.id = id;
    s.method = method;
    s.target = line + used;
    prof_latency_keep_if_slow(&s, total, queue, ttfb);
    unsigned n;
    struct slow_request *slowest = prof_latency_slowest(&n);
    for (unsigned i = 0; i < n; i++) /* keep the worker's time, not ours */
        if (slowest[i].id == id) {
            slowest[i].when = (time_t)when;
            slowest[i].tree = tree == 1;
        }
}

/* Has the dump an (other) row that holds a worker's (other) (see
 * other_is_overflow; a row without that field, too)? Then a route it has
 * no row of may have requests there. */
static bool overflowed(const char *text)
{
    static const char other[] = "R\t" OTHER_ROUTE "\t";
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        if (len > sizeof(other) - 1 && !strncmp(line, other, sizeof(other) - 1)) {
            const char *field = line; /* R, key, backend, statuses, 6 histograms, inline */
            for (int tabs = 0; field && tabs < 11; tabs++)
                field = memchr(field + 1, '\t', (size_t)(line + len - field - 1));
            if (!field || field + 2 != line + len || field[1] != '0')
                return true;
        }
        line += len + (line[len] == '\n');
    }
    return false;
}

/* One dump added into the registry (the load'th since the reset), its
 * requests in flight into *in_flight. Consumes text (strtok). */
static void load_one(char *text, unsigned load, int *in_flight)
{
    bool overflow = overflowed(text);
    prof_latency_overflowed_loads += overflow;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == 'T' && line[1] == '\t') {
            unsigned long long total = 0;
            int flight = 0;
            sscanf(line + 2, "%llu\t%d", &total, &flight);
            prof_latency_requests_total += total;
            *in_flight += flight;
        } else if (line[0] == 'R' && line[1] == '\t') {
            load_stats(line, load, overflow);
        } else if (line[0] == 'S' && line[1] == '\t') {
            load_slow(line);
        }
    }
}

/* A route key of the dumps, with what all of them counted under it. */
struct ranked {
    const char *key; /* in a dump's text, up to the next tab */
    size_t len;
    uint64_t time_us, requests;
    bool had_row; /* among the rows of an earlier merge since the last Clear */
};

/* Under prof_latency_lock: the keys that have had a row in a merge since
 * the last Clear (prof_latency_forget_rows), sorted, at most the route cap
 * of them. They keep their rows, as a process's routes keep their slots:
 * a row that went back to (other) would make a Prometheus counter go down. */
static char **had_rows;
static size_t n_had_rows;

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool had_a_row(const char *key)
{
    return n_had_rows && bsearch(&key, had_rows, n_had_rows, sizeof(*had_rows), key_cmp);
}

void prof_latency_forget_rows(void)
{
    for (size_t i = 0; i < n_had_rows; i++)
        free(had_rows[i]);
    free(had_rows);
    had_rows = NULL;
    n_had_rows = 0;
}

/* Add the n keys (malloc'd, taken) to had_rows, which has room for them
 * (the rows given are never more than the cap). */
static void remember_rows(char **keys, size_t n)
{
    memcpy(had_rows + n_had_rows, keys, n * sizeof(*keys));
    n_had_rows += n;
    qsort(had_rows, n_had_rows, sizeof(*had_rows), key_cmp);
}

static int by_key(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int by_weight(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->had_row != y->had_row)
        return x->had_row ? -1 : 1;
    if (x->time_us != y->time_us)
        return x->time_us < y->time_us ? 1 : -1;
    if (x->requests != y->requests)
        return x->requests < y->requests ? 1 : -1;
    return by_key(a, b);
}

/* A dump's line of len bytes as a route row (R, key, backend, statuses,
 * then the total histogram's "count sum ..."); false for any other line. */
static bool ranked_row(const char *line, size_t len, struct ranked *out)
{
    if (len <= 2 || strncmp(line, "R\t", 2) || line[2] == '(') /* (other), (not found) */
        return false;
    const char *field = line + 1, *stop = line + len;
    for (int tabs = 1; field && tabs < 4; tabs++) /* past the key, backend and statuses */
        field = memchr(field + 1, '\t', (size_t)(stop - field - 1));
    if (!field)
        return false;
    char *end;
    out->key = line + 2;
    out->len = strcspn(line + 2, "\t");
    out->requests = strtoull(field + 1, &end, 10);
    out->time_us = strtoull(end, NULL, 10);
    return true;
}

/* Every route row of the dumps; -1 on out of memory. */
static int gather(const struct prof_latency_source *src, size_t n, struct ranked **out,
                  size_t *count)
{
    size_t cap = 0;
    *out = NULL;
    *count = 0;
    for (size_t i = 0; i < n; i++)
        for (const char *line = src[i].text; line && *line;) {
            size_t len = strcspn(line, "\n");
            if (*count == cap) {
                struct ranked *grown = realloc(*out, (cap ? 2 * cap : 64) * sizeof(**out));
                if (!grown)
                    return -1;
                *out = grown;
                cap = cap ? 2 * cap : 64;
            }
            *count += ranked_row(line, len, &(*out)[*count]);
            line += len + (line[len] == '\n');
        }
    return 0;
}

/* Give the registry's route slots first to the routes that had a row in an
 * earlier merge (they keep it until Clear, present or not), then the free
 * ones to the routes with the most time in the dumps (then the most
 * requests): where workers gave theirs to different routes, their union may
 * not fit, and which rows the front has does not depend on the order the
 * dumps come in. -1 on out of memory. */
static int reserve_rows(const struct prof_latency_source *src, size_t n)
{
    struct ranked *rows;
    size_t count, kept = 0;
    if (gather(src, n, &rows, &count) < 0 || !count) {
        free(rows);
        return count ? -1 : 0;
    }
    qsort(rows, count, sizeof(*rows), by_key);
    for (size_t i = 0; i < count; i++) { /* one entry per key, its sum */
        if (kept && !by_key(&rows[kept - 1], &rows[i])) {
            rows[kept - 1].time_us += rows[i].time_us;
            rows[kept - 1].requests += rows[i].requests;
        } else {
            rows[kept++] = rows[i];
        }
    }
    size_t n_fresh = 0, cap = prof_latency_route_cap();
    if (!had_rows) /* at the cap's size at once: a later merge never grows it, and fails not */
        had_rows = malloc(cap * sizeof(*had_rows));
    char (*keys)[ROUTE_KEY_MAX] = malloc(kept * sizeof(*keys));
    char **fresh = malloc(kept * sizeof(*fresh));
    size_t free_slots = cap > n_had_rows ? cap - n_had_rows : 0;
    int rc = keys && fresh && had_rows ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < kept; i++) {
        snprintf(keys[i], sizeof(keys[i]), "%.*s", (int)rows[i].len, rows[i].key);
        rows[i].had_row = had_a_row(keys[i]);
        rows[i].key = keys[i]; /* the key as the registry has it: its order */
        rows[i].len = strlen(keys[i]);
    }
    if (rc == 0)
        qsort(rows, kept, sizeof(*rows), by_weight);
    for (size_t i = 0; rc == 0 && i < kept; i++) {
        bool had = rows[i].had_row;
        if (!had && free_slots == 0)
            break; /* the rest: (other) */
        struct route *r = prof_latency_route(rows[i].key, true);
        if (r && strcmp(r->key, rows[i].key))
            break; /* (other): not expected, the slots were counted */
        char *copy = r && !had ? strdup(r->key) : NULL;
        if (!r || (!had && !copy)) {
            rc = -1;
            break;
        }
        if (!had) {
            fresh[n_fresh++] = copy;
            free_slots--;
        }
    }
    if (n_fresh)
        remember_rows(fresh, n_fresh);
    free(fresh);
    free(keys);
    free(rows);
    return rc;
}

/* prof_latency_merge with the lock held. */
static int merge_locked(const struct prof_latency_source *src, size_t n)
{
    int rc = 0;
    prof_latency_empty();
    if (reserve_rows(src, n) < 0)
        rc = -1;
    prof_latency_close_rows(); /* the others' requests: (other) */
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *copy = src[i].text ? strdup(src[i].text) : NULL;
        int none = 0;
        if (src[i].text && !copy)
            rc = -1;
        else if (copy)
            load_one(copy, ++prof_latency_loads, src[i].in_flight ? src[i].in_flight : &none);
        free(copy);
    }
    return rc;
}

int prof_latency_merge(const struct prof_latency_source *src, size_t n)
{
    pthread_mutex_lock(&prof_latency_lock);
    int rc = merge_locked(src, n);
    pthread_mutex_unlock(&prof_latency_lock);
    return rc;
}

int prof_latency_merge_keeping(const struct prof_latency_source *keep, size_t n_keep,
                               char **kept, const struct prof_latency_source *others,
                               size_t n_others)
{
    size_t n_ids;
    uint64_t *ids = prof_latency_tree_ids(&n_ids);
    struct prof_latency_source *all = calloc(n_others + 1, sizeof(*all));
    int rc = -1;
    *kept = NULL;
    pthread_mutex_lock(&prof_latency_lock);
    if (ids && all && merge_locked(keep, n_keep) == 0 && (*kept = dump_locked(0, ids, n_ids))) {
        all[0] = (struct prof_latency_source){ *kept, NULL };
        if (n_others)
            memcpy(&all[1], others, n_others * sizeof(*others));
        rc = merge_locked(all, n_others + 1);
    }
    pthread_mutex_unlock(&prof_latency_lock);
    free(all);
    free(ids);
    return rc;
}
