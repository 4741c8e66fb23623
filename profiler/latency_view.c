/* latency_view.c — see latency_view.h. */
#include "profiler/latency_view.h"
#include "profiler/query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const order_names[PROF_ROUTES_ORDERS] = {
    "route", "requests", "total", "mean", "p50", "p90", "p99", "max", "errors",
};
static const char *const order_labels[PROF_ROUTES_ORDERS] = {
    "route", "requests", "total time", "mean", "p50", "p90", "p99", "max", "errors",
};

const char *prof_routes_order_name(enum prof_routes_order o)
{
    return o < PROF_ROUTES_ORDERS ? order_names[o] : "?";
}

const char *prof_routes_order_label(enum prof_routes_order o)
{
    return o < PROF_ROUTES_ORDERS ? order_labels[o] : "?";
}

/* routes_limit's value: "all" (0), or 1 to 999999999 written in digits
 * alone; -1 for anything else. */
static long parse_limit(const char *p)
{
    size_t n = strlen(p);
    if (!strcmp(p, "all"))
        return 0;
    if (n == 0 || n > 9)
        return -1;
    long l = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        l = l * 10 + (p[i] - '0');
    }
    return l >= 1 ? l : -1;
}

void prof_routes_view_parse(struct prof_routes_view *v, const char *query)
{
    *v = (struct prof_routes_view){ PROF_ROUTES_DEFAULT_ORDER, PROF_ROUTES_DEFAULT_LIMIT, false,
                                    false };
    struct prof_param p;
    for (const char *c = query; prof_query_next(&c, &p);) {
        char value[16]; /* cut longer: then no key nor limit */
        if (!p.has_value)
            continue;
        bool whole = prof_param_value(&p, value, sizeof(value));
        if (prof_param_is(&p, "routes_sort")) {
            v->order = PROF_ROUTES_DEFAULT_ORDER;
            v->bad_order = true;
            for (int o = 0; whole && o < PROF_ROUTES_ORDERS; o++)
                if (!strcmp(value, order_names[o])) {
                    v->order = (enum prof_routes_order)o;
                    v->bad_order = false;
                }
        } else if (prof_param_is(&p, "routes_limit")) {
            long l = whole ? parse_limit(value) : -1;
            v->bad_limit = l < 0;
            v->limit = l < 0 ? PROF_ROUTES_DEFAULT_LIMIT : (size_t)l;
        }
    }
}

/* The view's values that differ from the defaults ("" where one does not):
 * its sort key, and its limit into limit (24 bytes). */
static const char *differing(const struct prof_routes_view *v, char *limit)
{
    limit[0] = 0;
    if (v->limit == 0)
        snprintf(limit, 24, "all");
    else if (v->limit != PROF_ROUTES_DEFAULT_LIMIT)
        snprintf(limit, 24, "%zu", v->limit);
    return v->order != PROF_ROUTES_DEFAULT_ORDER ? prof_routes_order_name(v->order) : "";
}

void prof_routes_view_query(const struct prof_routes_view *v, char *out, size_t cap)
{
    char limit[24];
    const char *sort = differing(v, limit);
    snprintf(out, cap, "%s%s%s%s%s", sort[0] ? "routes_sort=" : "", sort,
             sort[0] && limit[0] ? "&" : "", limit[0] ? "routes_limit=" : "", limit);
}

void prof_routes_view_hidden(const struct prof_routes_view *v, char *out, size_t cap)
{
    char limit[24];
    const char *sort = differing(v, limit);
    snprintf(out, cap, "%s%s%s%s%s%s",
             sort[0] ? "<input type=hidden name=routes_sort value=\"" : "", sort,
             sort[0] ? "\">" : "",
             limit[0] ? "<input type=hidden name=routes_limit value=\"" : "", limit,
             limit[0] ? "\">" : "");
}

char *prof_query_with(const char *query, const char *name, const char *value)
{
    query = query ? query : "";
    size_t cap = strlen(query) + strlen(name) + strlen(value) + 3, o = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    struct prof_param p;
    for (const char *c = query; prof_query_next(&c, &p);)
        if (!prof_param_is(&p, name)) {
            size_t n = (size_t)(p.value - p.name) + p.value_len; /* name, '=', value */
            memcpy(out + o, p.name, n);
            o += n;
            out[o++] = '&';
        }
    snprintf(out + o, cap - o, "%s=%s", name, value);
    return out;
}

/* The figure rows are sorted by for order o (none for the route order:
 * the tie-break, key then backend, is that order). */
static uint64_t figure(const struct prof_routes_row *r, enum prof_routes_order o)
{
    switch (o) {
    case PROF_ROUTES_BY_REQUESTS: return r->requests;
    case PROF_ROUTES_BY_TOTAL: return r->total_us;
    case PROF_ROUTES_BY_MEAN: return r->requests ? r->total_us / r->requests : 0;
    case PROF_ROUTES_BY_P50: return r->p50_us;
    case PROF_ROUTES_BY_P90: return r->p90_us;
    case PROF_ROUTES_BY_P99: return r->p99_us;
    case PROF_ROUTES_BY_MAX: return r->max_us;
    case PROF_ROUTES_BY_ERRORS: return r->errors;
    default: return 0;
    }
}

static int compare(const void *pa, const void *pb)
{
    const struct prof_routes_row *a = pa, *b = pb;
    int c = a->by < b->by ? 1 : a->by > b->by ? -1 : 0; /* most first */
    c = c ? c : strcmp(a->key, b->key);
    return c ? c : (a->backend > b->backend) - (a->backend < b->backend);
}

size_t prof_routes_select(struct prof_routes_row *rows, size_t n, const struct prof_routes_view *v)
{
    for (size_t i = 0; i < n; i++)
        rows[i].by = figure(&rows[i], v->order);
    qsort(rows, n, sizeof(*rows), compare);
    size_t kept = 0, app_rows = 0;
    for (size_t i = 0; i < n; i++) {
        bool keep = rows[i].special ? rows[i].requests > 0 : !v->limit || app_rows < v->limit;
        app_rows += !rows[i].special;
        if (keep)
            rows[kept++] = rows[i];
    }
    return kept;
}
