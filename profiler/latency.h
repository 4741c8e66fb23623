/* latency.h — always-on request timing: every request that reached a backend
 * is recorded under its route key and backend, as histograms of the total
 * time, the queue wait and the time to first byte, plus counts by status
 * class. Recording takes one mutex, about 60-100 ns uncontended (timed by
 * scripts/bench/latency_record.c); reports copy what they need under it.
 * Routes are capped (--profile-max-routes);
 * later ones are counted under "(other)". The N slowest requests are kept
 * with their method, target, status and phases (--profile-slowest). */
#ifndef PROF_LATENCY_H
#define PROF_LATENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum prof_backend { PROF_BACKEND_WSGI, PROF_BACKEND_UPSTREAM, PROF_BACKEND_STATIC, PROF_BACKENDS };

struct prof_sample {
    uint64_t id;              /* the request's id (links a slow request to its call tree) */
    const char *method;
    const char *target;       /* raw request target */
    enum prof_backend backend;
    unsigned status;
    bool ran_inline;          /* backend wsgi: run inside the network thread's read of it */
    bool routed;              /* sent by a --route or --static prefix, not to the default backend */
    uint64_t t_received, t_dispatched, t_first_byte, t_done; /* monotonic us */
    uint64_t t_ready;         /* handed to its backend, its body in (0: t_received): the
                                 queue wait is from there to t_dispatched, never the upload */
    /* backend upstream only: durations measured by libcurl from the start of
     * its transfer (connect is 0 on a reused connection) */
    uint64_t upstream_connect_us, upstream_first_byte_us, upstream_total_us;
};

/* Call once before any request: route cap, and how many of the slowest
 * requests to keep. Returns 0 or -1 (out of memory). */
int prof_latency_init(unsigned max_routes, unsigned slowest);
void prof_latency_record(const struct prof_sample *s);
void prof_latency_reset(void);

/* Reports, as malloc'd NUL-terminated text (NULL on out of memory). */
char *prof_latency_prometheus(int in_flight);
char *prof_latency_json(int in_flight);
char *prof_latency_slowest_json(void);
/* Before any request: ids(out, cap) puts the ids of the requests whose own
 * call tree this process keeps into out (at most cap; any thread, no lock
 * of this module held) and returns how many. The slowest-requests table
 * links a call tree only for those (NULL: none), and a front (--workers) for
 * those its workers' dumps name. */
void prof_latency_set_tree_ids(size_t (*ids)(uint64_t *out, size_t cap));

/* The page; appendix (an HTML fragment, e.g. the function table) goes last.
 * view: the page's query (its sort, filter...), which its buttons keep;
 * its routes_sort and routes_limit order and cut the route table
 * (latency_view.h), which the machine formats never are.
 * can_save: there are profile files to write (--profile-log or
 * --profile-callgrind), so the page offers its "Save files" button.
 * profile_href: the profile path relative to the page's own URL (hook.h),
 * every link's and form's start. */
char *prof_latency_html(int in_flight, const char *profile_href, const char *view, bool profiling,
                        bool can_save, const char *appendix);

/* A front (--workers) adds up its workers: the whole registry as text, and
 * this process's registry made the sum of such texts (its workers', its
 * own). Each source's requests in flight are added to its *in_flight (NULL:
 * not counted). With more routes than the route cap, a route that had a
 * row in an earlier merge keeps it until prof_latency_reset (its counters
 * never go down), and the free rows go to the routes with the most time in
 * all (then the most requests), the rest to (other): the same rows whatever
 * order the texts come in. -1 on out of memory (the registry then holds
 * part of them). */
char *prof_latency_dump(int in_flight);
struct prof_latency_source {
    const char *text; /* NUL-terminated; NULL: none */
    int *in_flight;
};
int prof_latency_merge(const struct prof_latency_source *src, size_t n);
/* *kept := the dump of keep's sources added up (malloc'd; NULL on failure),
 * and the registry := that plus others', with the registry's lock held
 * throughout: no report sees keep's sum alone. -1 on out of memory (the
 * registry then holds part of them; *kept may be NULL). */
int prof_latency_merge_keeping(const struct prof_latency_source *keep, size_t n_keep,
                               char **kept, const struct prof_latency_source *others,
                               size_t n_others);
/* In a dump (prof_latency_dump's text), say of every slow request that no
 * call tree is kept for it (a dead worker's: its trees went with it). */
void prof_latency_dump_forget_trees(char *dump);

#endif
