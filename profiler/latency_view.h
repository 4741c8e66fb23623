/* latency_view.h — which latency rows the profile page shows, and in what
 * order: the page's own GET parameters routes_sort and routes_limit (named
 * apart from the function table's sort and limit), read from its query, and
 * the choice of rows they make. Pure logic, no lock and no registry: the
 * page (latency.c) fills the rows under its lock; the function table keeps
 * the view in its links. The machine formats (/metrics, /api/latency, the
 * --workers dump) never take a view. */
#ifndef PROF_LATENCY_VIEW_H
#define PROF_LATENCY_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* routes_sort's keys: route ascending, the numbers most first. */
enum prof_routes_order {
    PROF_ROUTES_BY_ROUTE, PROF_ROUTES_BY_REQUESTS, PROF_ROUTES_BY_TOTAL, PROF_ROUTES_BY_MEAN,
    PROF_ROUTES_BY_P50, PROF_ROUTES_BY_P90, PROF_ROUTES_BY_P99, PROF_ROUTES_BY_MAX,
    PROF_ROUTES_BY_ERRORS, PROF_ROUTES_ORDERS
};

#define PROF_ROUTES_DEFAULT_ORDER PROF_ROUTES_BY_TOTAL
#define PROF_ROUTES_DEFAULT_LIMIT 50

struct prof_routes_view {
    enum prof_routes_order order;
    size_t limit;   /* rows of the app's routes shown; 0: all */
    bool bad_order; /* routes_sort named no key: order is the default */
    bool bad_limit; /* routes_limit was not a positive number nor "all": limit is the default */
};

/* The view in a query string (the page's; NULL: none; values decoded as a
 * form sends them); the last routes_sort and routes_limit count. */
void prof_routes_view_parse(struct prof_routes_view *v, const char *query);
/* routes_sort's name for o ("total"...), and what it means ("total time"). */
const char *prof_routes_order_name(enum prof_routes_order o);
const char *prof_routes_order_label(enum prof_routes_order o);
/* The view's parameters that differ from the defaults, as a query
 * ("routes_sort=p99&routes_limit=all", "" for the default view) in out
 * (cap bytes; 64 hold any); for the function table's links and forms. */
void prof_routes_view_query(const struct prof_routes_view *v, char *out, size_t cap);

/* The same as a form's hidden inputs (HTML; 160 bytes hold any). */
void prof_routes_view_hidden(const struct prof_routes_view *v, char *out, size_t cap);

/* query (raw, NULL: none) with every name=... parameter taken out and
 * name=value (value raw: a key or a number) put at its end; malloc'd, NULL
 * on out of memory. For links that change one parameter of the view. */
char *prof_query_with(const char *query, const char *name, const char *value);

/* A row of the latency table as the view sorts it: a route on a backend. */
struct prof_routes_row {
    const char *key;  /* the route key */
    unsigned backend; /* enum prof_backend, the tie-break after the key */
    bool special;     /* (other) or (not found): no route of the app's */
    uint64_t requests, total_us, p50_us, p90_us, p99_us, max_us, errors;
    const void *data; /* the caller's */
    uint64_t by;      /* prof_routes_select's: the figure of its order */
};

/* Sort rows[0..n) for v, then keep in rows[0..) the first v->limit rows
 * of the app's routes and every special row with requests, in that order;
 * returns how many are kept. Ties go by key, then backend. */
size_t prof_routes_select(struct prof_routes_row *rows, size_t n, const struct prof_routes_view *v);

#endif
