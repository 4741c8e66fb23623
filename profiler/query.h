/* query.h — the parameters of a profile page's query string, as a GET form
 * sends them (application/x-www-form-urlencoded): name=value pairs between
 * '&'s, values with '+' for a space and %XX for a byte. One reader for
 * every page: the function table's view, the latency table's, the id of a
 * slow request's own tree. */
#ifndef PROF_QUERY_H
#define PROF_QUERY_H

#include <stdbool.h>
#include <stddef.h>

struct prof_param {
    const char *name, *value; /* raw, into the query; value is "" without an '=' */
    size_t name_len, value_len;
    bool has_value;           /* an '=' was there */
};

/* The parameter at *cursor (a query, or what an earlier call left of it),
 * *cursor moved past it and its '&'; false at the end. Empty parameters
 * ("a&&b") are skipped. */
bool prof_query_next(const char **cursor, struct prof_param *p);
/* Is p's (raw) name exactly name? */
bool prof_param_is(const struct prof_param *p, const char *name);
/* p's value decoded into dst (cap > 0 bytes, NUL-terminated; cut to fit):
 * '+' is a space, %XX that byte, anything else as it is (a '%' without two
 * hex digits too). Returns false when it was cut. */
bool prof_param_value(const struct prof_param *p, char *dst, size_t cap);
/* The decoded value of the last parameter of query (NULL: none) named name
 * with an '=' (as the page's readers all take the last one), into dst as
 * prof_param_value; false when there is none. */
bool prof_query_get(const char *query, const char *name, char *dst, size_t cap);

#endif
