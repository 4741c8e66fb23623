/* route.h — which backend answers a request: the longest --route prefix that
 * matches the raw path on a segment boundary, else the default (the app if
 * there is one, else the upstream). Built once from the configuration on the
 * main thread; read-only afterwards, so lookups take no lock. */
#ifndef TF_ROUTE_H
#define TF_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

enum tf_backend_kind { TF_ROUTE_NONE, TF_ROUTE_APP, TF_ROUTE_UPSTREAM, TF_ROUTE_STATIC };

struct tf_route {
    char *prefix;               /* "/chrome", or "" for everything; no trailing '/' */
    size_t prefix_len;
    enum tf_backend_kind kind;
    char *dir;                  /* TF_ROUTE_STATIC: the folder, absolute, symlinks kept */
};

struct tf_route_table {
    struct tf_route *routes;    /* longest prefix first */
    size_t n;
    enum tf_backend_kind fallback; /* for paths no route matches */
};

/* Parse "PREFIX=app|upstream|static:DIR" (what --route takes) and, with
 * is_static, "PREFIX=DIR" (what --static takes) into the table. Returns 0,
 * or -1 with a message naming the flag in err (table unchanged). */
int tf_route_add(struct tf_route_table *t, const char *spec, bool is_static, char *err,
                 size_t errlen);
/* Sort (longest prefix first) and set the fallback. Checks that every route
 * has its backend: returns -1 with err for "=upstream" without --upstream. */
int tf_route_finish(struct tf_route_table *t, bool have_app, bool have_upstream, char *err,
                    size_t errlen);
/* The route for a raw request target (the query is ignored); NULL means the
 * fallback. *rest is the part of the path after the matched prefix. */
const struct tf_route *tf_route_find(const struct tf_route_table *t, const char *target,
                                     const char **rest);
/* The part of target after r's prefix (r matched it: "", or from a '/',
 * "%2F" or '?'). */
const char *tf_route_rest(const struct tf_route *r, const char *target);
void tf_route_table_free(struct tf_route_table *t);

#endif
