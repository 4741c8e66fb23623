/* route.c — the route table (see route.h). Prefixes are compared with the
 * request path percent-decoded, as --mount's and nginx's locations are, and
 * end on a segment boundary: "/chrome" matches "/chrome", "/chrome/x",
 * "/%63hrome/x" and "/chrome?q" but never "/chromex". */
#include "proxy/route.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/http_check.h"

int tf_route_add(struct tf_route_table *t, const char *spec, bool is_static, char *err,
                 size_t errlen)
{
    const char *flag = is_static ? "--static" : "--route";
    const char *eq = strchr(spec, '=');
    if (!eq || spec[0] != '/') {
        snprintf(err, errlen, "%s: '%s' is not PREFIX=%s (PREFIX starts with '/')", flag, spec,
                 is_static ? "DIR" : "app|upstream|static:DIR");
        return -1;
    }
    size_t plen = (size_t)(eq - spec);
    while (plen > 0 && spec[plen - 1] == '/')
        plen--;
    if (!tf_path_prefix_can_match(spec, plen)) {
        snprintf(err, errlen, "%s: '%.*s' can never match a request's path (no %%, ?, #, spaces "
                 "or control characters, and no . or .. segments)", flag, (int)plen, spec);
        return -1;
    }
    const char *what = eq + 1, *dir = NULL;
    struct tf_route r = { .prefix_len = plen };
    if (is_static)
        r.kind = TF_ROUTE_STATIC, dir = what;
    else if (!strcmp(what, "app"))
        r.kind = TF_ROUTE_APP;
    else if (!strcmp(what, "upstream"))
        r.kind = TF_ROUTE_UPSTREAM;
    else if (!strncmp(what, "static:", 7))
        r.kind = TF_ROUTE_STATIC, dir = what + 7;
    else {
        snprintf(err, errlen, "%s: '%s': the backend must be app, upstream or static:DIR", flag,
                 spec);
        return -1;
    }
    if (dir) { /* kept absolute but unresolved: each request resolves it (static.c) */
        char real[PATH_MAX], cwd[PATH_MAX];
        struct stat st;
        if (!*dir || !realpath(dir, real) || stat(real, &st) < 0) {
            snprintf(err, errlen, "%s: '%s': the folder '%s' does not exist", flag, spec, dir);
            return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s: '%s': '%s' is not a folder", flag, spec, dir);
            return -1;
        }
        const char *base = "", *sep = "";
        if (dir[0] != '/') {
            if (!getcwd(cwd, sizeof(cwd))) {
                snprintf(err, errlen, "%s: '%s': the current folder is unknown", flag, spec);
                return -1;
            }
            base = cwd, sep = "/";
        }
        size_t len = strlen(base) + strlen(sep) + strlen(dir) + 1;
        if (!(r.dir = malloc(len)))
            goto nomem;
        snprintf(r.dir, len, "%s%s%s", base, sep, dir);
    }
    for (size_t i = 0; i < t->n; i++)
        if (t->routes[i].prefix_len == plen && !strncmp(t->routes[i].prefix, spec, plen)) {
            snprintf(err, errlen, "%s: the prefix '%.*s' is routed twice", flag, (int)plen, spec);
            free(r.dir);
            return -1;
        }
    struct tf_route *grown = realloc(t->routes, (t->n + 1) * sizeof(*grown));
    if (!grown || !(r.prefix = strndup(spec, plen))) {
        if (grown)
            t->routes = grown;
        free(r.dir);
        goto nomem;
    }
    t->routes = grown;
    t->routes[t->n++] = r;
    return 0;
nomem:
    snprintf(err, errlen, "%s: out of memory", flag);
    return -1;
}

static int longest_first(const void *a, const void *b)
{
    const struct tf_route *x = a, *y = b;
    return x->prefix_len < y->prefix_len ? 1 : x->prefix_len > y->prefix_len ? -1 : 0;
}

int tf_route_finish(struct tf_route_table *t, bool have_app, bool have_upstream, char *err,
                    size_t errlen)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct tf_route *r = &t->routes[i];
        if (r->kind == TF_ROUTE_UPSTREAM && !have_upstream) {
            snprintf(err, errlen, "--route: '%s' goes to the upstream, but no --upstream URL "
                     "is given", r->prefix_len ? r->prefix : "/");
            return -1;
        }
        if (r->kind == TF_ROUTE_APP && !have_app) {
            snprintf(err, errlen, "--route: '%s' goes to the app, but no application is given "
                     "(--app, --wsgi-file, --trac-env or --trac-env-parent-dir)",
                     r->prefix_len ? r->prefix : "/");
            return -1;
        }
    }
    if (t->n)
        qsort(t->routes, t->n, sizeof(*t->routes), longest_first);
    t->fallback = have_app ? TF_ROUTE_APP : have_upstream ? TF_ROUTE_UPSTREAM : TF_ROUTE_NONE;
    return 0;
}

const struct tf_route *tf_route_find(const struct tf_route_table *t, const char *target,
                                     const char **rest)
{
    for (size_t i = 0; i < t->n; i++)
        if (tf_path_under_prefix(target, t->routes[i].prefix, t->routes[i].prefix_len, rest))
            return &t->routes[i];
    *rest = target;
    return NULL;
}

const char *tf_route_rest(const struct tf_route *r, const char *target)
{
    const char *rest;
    return tf_path_under_prefix(target, r->prefix, r->prefix_len, &rest) ? rest : target;
}

void tf_route_table_free(struct tf_route_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->routes[i].prefix);
        free(t->routes[i].dir);
    }
    free(t->routes);
    memset(t, 0, sizeof(*t));
}
