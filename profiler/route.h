/* route.h — the route key a request's latency is recorded under: its path
 * without the query, with id-like segments folded so /ticket/123 and
 * /ticket/456 are one route, /ticket/:id. Pure function, no allocation. */
#ifndef PROF_ROUTE_H
#define PROF_ROUTE_H

#include <stddef.h>

/* Write the key of the raw request target (len bytes) into out (cap bytes,
 * NUL-terminated, truncated at a segment boundary if needed). A segment that
 * is all digits, or 8+ hex digits with at least one digit (a changeset or
 * hash), or a UUID becomes ":id". Returns the key length. */
size_t prof_route_key(const char *target, size_t len, char *out, size_t cap);

#endif
