/* latency_internal.h — what latency.c (the registry and its reports)
 * shares with latency_dump.c (a front adding up its workers' registries as
 * text). Nothing else includes it. One mutex, prof_latency_lock, guards all
 * of the registry: every function here but prof_latency_tree_ids is called
 * with it held. */
#ifndef PROF_LATENCY_INTERNAL_H
#define PROF_LATENCY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "profiler/histogram.h"
#include "profiler/latency.h"
#include "profiler/text.h"

#define ROUTE_KEY_MAX 128
#define OTHER_ROUTE "(other)" /* the routes past the cap */

/* libcurl's own timings of an upstream transfer */
struct upstream_stats {
    struct prof_histogram connect, ttfb, total;
};

/* About 100 KB (three 32 KB histograms), 200 KB for the upstream backend. */
struct backend_stats {
    struct prof_histogram total, queue, ttfb;
    struct upstream_stats *up; /* backend upstream only, else NULL; same allocation */
    uint64_t status[6]; /* index status / 100; 0 = other */
    uint64_t ran_inline; /* backend wsgi: requests run inline (wsgi/fastpath.h) */
};

struct route {
    char key[ROUTE_KEY_MAX];
    struct backend_stats *backend[PROF_BACKENDS];
    /* A front's (latency_dump.c): the loaded dumps with an "(other)" row
     * that have this route too, the last load that counted it, and
     * whether a loaded dump said it is partial (see prof_latency_partial). */
    unsigned overflowed_with, last_load;
    bool said_partial;
};

struct slow_request {
    uint64_t id;
    char method[16];
    char target[256];
    unsigned status;
    uint64_t total_us, queue_us, ttfb_us;
    time_t when;
    bool tree; /* a worker said it keeps this request's call tree (a front's entries) */
};

extern pthread_mutex_t prof_latency_lock;
extern uint64_t prof_latency_requests_total; /* requests timed */
/* A front's: dumps loaded since the reset, and of those the ones whose
 * "(other)" row holds a worker's (other): that worker ran out of route
 * slots (not only the front's own (other), of routes it had no row for). */
extern unsigned prof_latency_loads, prof_latency_overflowed_loads;

/* prof_latency_reset's work, with the lock held, but for the keys a
 * front's merges gave rows (prof_latency_forget_rows: Clear does both). */
void prof_latency_empty(void);
/* Under the lock: a front's merges forget which keys had rows. */
void prof_latency_forget_rows(void);
/* --profile-max-routes (at least 1). */
unsigned prof_latency_route_cap(void);
/* Under the lock: no route gets a row from now until the registry is
 * emptied (a front's merge: only the rows it reserved). */
void prof_latency_close_rows(void);

/* Does r hold only part of its requests? In a front, when a worker that
 * counted requests under "(other)" has no row of r's: some of r's may be
 * there. Never in a single process: a route with a slot gets all of its. */
bool prof_latency_partial(const struct route *r);

/* The route for key, created if there is room, else the "(other)" route; a
 * key not yet known and not to be made (a 404: a scan of made-up URLs would
 * take every slot) is "(not found)". Those two take no slot of the cap.
 * NULL only on out of memory. */
struct route *prof_latency_route(const char *key, bool may_create);
/* r's statistics for backend b, created if need be (one allocation, freed
 * with free()). NULL only on out of memory. */
struct backend_stats *prof_latency_stats(struct route *r, enum prof_backend b);
/* Keep s (its phases given) if it is among the slowest. */
void prof_latency_keep_if_slow(const struct prof_sample *s, uint64_t total, uint64_t queue,
                               uint64_t ttfb);
/* The slowest requests kept, *n of them, in no order (the registry's own). */
struct slow_request *prof_latency_slowest(unsigned *n);

typedef void (*prof_latency_visit_fn)(struct prof_text *t, const struct route *r,
                                      enum prof_backend b, const struct backend_stats *s,
                                      bool first);
/* Call fn for each (route, backend) with data, sorted by route key so
 * reports are stable; out of memory fails t. */
void prof_latency_each(struct prof_text *t, prof_latency_visit_fn fn);

/* Without the lock: the ids of the requests whose call tree this process
 * keeps, sorted (malloc'd, *n of them; NULL on out of memory). */
uint64_t *prof_latency_tree_ids(size_t *n);
/* Is id among ids (prof_latency_tree_ids')? */
bool prof_latency_in_ids(uint64_t id, const uint64_t *ids, size_t n);

#endif
