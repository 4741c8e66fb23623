/* inflight.h — the "In flight" report: the WSGI requests running on app
 * threads right now, with how long each has run and its current Python
 * stack, as an HTML fragment for /__profile__ and as JSON for
 * /__profile__/api/inflight. Pure formatting: the caller (wsgi/watchdog.c)
 * gathers the entries; nothing here touches Python or a request. */
#ifndef PROF_INFLIGHT_H
#define PROF_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct prof_inflight {
    uint64_t id;            /* the request's id */
    const char *method;
    const char *target;     /* raw request target */
    double running_s;       /* on its app thread this long */
    unsigned long thread;   /* Python thread id of that app thread */
    bool stuck;             /* past --request-timeout */
    const char *stack;      /* "  File ..., line N, in f\n" lines, outermost first; NULL = none */
};

/* timeout: --request-timeout in seconds (0 = off); action: "log" or "504";
 * worker_pid: a worker's process id (its front shows every worker's in
 * turn, under its own heading), or 0. Both return malloc'd NUL-terminated
 * text, or NULL on out of memory. */
char *prof_inflight_html(const struct prof_inflight *list, size_t n, double timeout,
                         const char *action, unsigned worker_pid);
char *prof_inflight_json(const struct prof_inflight *list, size_t n, double timeout,
                         const char *action, unsigned worker_pid);

#endif
