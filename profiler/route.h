/* route.h — the route key a request's latency is recorded under: its path
 * without the query, with id-like segments folded so /ticket/123 and
 * /ticket/456 are one route, /ticket/:id. No allocation; the one setting,
 * prof_route_keep_leading, is written before serving. */
#ifndef PROF_ROUTE_H
#define PROF_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

/* Write the key of the raw request target (len bytes) into out (cap bytes,
 * NUL-terminated; one too long is cut at a segment boundary and ends in
 * "/…", so it is no shorter route's key: /wiki/<200 bytes> is "/wiki/…",
 * not "/wiki/"). A segment that
 * is all digits, or 8+ hex digits with at least one digit (a changeset or
 * hash), or a UUID becomes ":id". Returns the key length. */
size_t prof_route_key(const char *target, size_t len, bool by_default, char *out, size_t cap);

/* For a target of the default backend (by_default: no --route or --static
 * prefix sent it elsewhere; the app, or the upstream that answers it with
 * --mirror-primary upstream), never fold the first n segments: they name
 * something, not an id (under --trac-env-parent-dir, --mount's segments and
 * the project's folder: the projects 2024 and 2025 are two routes; a routed
 * static or upstream path folds as ever). 0 until set; set before any
 * thread that records a request starts. */
void prof_route_keep_leading(unsigned n);

#endif
