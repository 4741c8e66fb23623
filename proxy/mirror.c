/* mirror.c — request pairs for --mirror (see mirror.h). A pair is freed by
 * whichever of its two taps ends last, on whatever thread that is. A stop
 * does not wait for copies, so a pair may end after the server is gone:
 * each holds a reference to the struct tf_mirror. A copy never outlives its
 * primary for long (stop_copy): an endless answer's copy would hold its
 * place, and an upstream connection or an app thread, for good. */
#include "proxy/mirror.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/log.h"
#include "proxy/platform.h"
#include "proxy/server.h"
#include "profiler/compare.h"

struct tf_mirror {
    const struct tf_config *cfg;
    const struct tf_backends *backends;
    enum tf_backend_kind primary;
    unsigned in_flight;             /* atomic: copies not yet ended (the --mirror-queue bound) */
    unsigned app_copies;            /* atomic: copies sent to the app and not yet ended */
    unsigned app_copies_max;        /* half of --threads (none with 1); read-only */
    unsigned refs;                  /* atomic: the server's, and one per pair not yet recorded */
};

/* A copy still running when its primary has ended may take as long again as
 * the primary took, and at least this long, to finish. */
#define COPY_GRACE_US 5000000u

struct pair {
    struct tf_mirror *mirror;
    struct tf_tap primary, copy;
    int remaining;                  /* atomic: taps not yet ended */
    uint64_t t_start;
    uint64_t grace_us;              /* the copy's, once the primary has ended (stop_copy) */
    char *method, *target;
};

struct tf_mirror *tf_mirror_new(const struct tf_config *cfg, const struct tf_backends *backends)
{
    struct tf_mirror *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->cfg = cfg;
    m->backends = backends;
    m->refs = 1;
    m->primary = cfg->mirror_primary && !strcmp(cfg->mirror_primary, "upstream")
                     ? TF_ROUTE_UPSTREAM : TF_ROUTE_APP;
    m->app_copies_max = cfg->threads / 2;
    prof_compare_init(cfg->profile_max_routes);
    return m;
}

static void mirror_unref(struct tf_mirror *m)
{
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(m);
}

void tf_mirror_free(struct tf_mirror *m)
{
    if (m)
        mirror_unref(m);
}

enum tf_backend_kind tf_mirror_primary(const struct tf_mirror *m)
{
    return m->primary;
}

static void side(struct prof_compare_side *out, const struct tf_tap *tap, uint64_t t_start)
{
    out->status = tap->status;
    snprintf(out->encoding, sizeof(out->encoding), "%s", tap->encoding);
    out->bytes = tap->body.bytes;
    out->hash = tf_body_hash_value(&tap->body);
    out->error = tap->error;
    snprintf(out->why, sizeof(out->why), "%s", tap->why);
    out->abandoned = tap->abandoned;
    out->held_back = tap->held_back;
    out->latency_us = tap->t_end > t_start ? tap->t_end - t_start : 0;
}

static void free_pair(struct pair *p)
{
    free(p->method);
    free(p->target);
    free(p);
}

/* Give back a copy's places: in the queue, and in the app if it went there. */
static void copy_ended(struct tf_mirror *m)
{
    if (m->primary == TF_ROUTE_UPSTREAM)
        __atomic_sub_fetch(&m->app_copies, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&m->in_flight, 1, __ATOMIC_RELAXED);
}

/* Take a place for a copy: in the queue (--mirror-queue), and for a copy to
 * the app, a thread that is free now, with at most half of them (none of a
 * single one) taken by copies, so that copies never queue ahead of clients'
 * requests and always leave threads for them: a copy that would wait is
 * dropped instead. false: no room (nothing taken). */
static bool copy_may_go(struct tf_mirror *m)
{
    if (__atomic_add_fetch(&m->in_flight, 1, __ATOMIC_RELAXED) > m->cfg->mirror_queue) {
        __atomic_sub_fetch(&m->in_flight, 1, __ATOMIC_RELAXED);
        return false;
    }
    if (m->primary == TF_ROUTE_UPSTREAM &&
        (__atomic_add_fetch(&m->app_copies, 1, __ATOMIC_RELAXED) > m->app_copies_max ||
         (m->backends->app_idle && !m->backends->app_idle(m->backends->app_ctx)))) {
        copy_ended(m);
        return false;
    }
    return true;
}

/* The primary has ended (the pair is alive: its copy's tap has not been
 * counted off yet): its copy's backend stops it from stop_at on
 * (tf_request_client_gone), as it stops a request whose client left. A
 * client gone: at once, the pair is not compared anyway. Else the copy may
 * take as long again as the primary took, at least COPY_GRACE_US: a slower
 * backend still finishes and is compared; an endless one is stopped. */
static void stop_copy(struct pair *p)
{
    uint64_t now = tf_now_us(), took = now - p->t_start;
    uint64_t grace = took > COPY_GRACE_US ? took : COPY_GRACE_US;
    p->grace_us = grace;
    __atomic_store_n(&p->copy.stop_at, p->primary.abandoned ? now : now + grace,
                     __ATOMIC_RELEASE);
}

/* A copy stopped past its grace is a failed side: say why. (One stopped for
 * a client that left is in an abandoned pair.) */
static void say_stopped(struct pair *p)
{
    if (!p->copy.stopped || p->primary.abandoned)
        return;
    p->copy.error = true;
    snprintf(p->copy.why, sizeof(p->copy.why), "stopped: still running %.1f s after the %s's "
             "answer ended (a copy's grace: the primary's time, at least %u s)",
             (double)p->grace_us / 1e6, p->mirror->primary == TF_ROUTE_APP ? "app" : "upstream",
             COPY_GRACE_US / 1000000u);
}

static void tap_done(struct tf_tap *tap)
{
    struct pair *p = tap->owner;
    if (tap == &p->copy)
        copy_ended(p->mirror);
    else
        stop_copy(p);
    if (__atomic_sub_fetch(&p->remaining, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    say_stopped(p);
    struct prof_compare_side primary, copy;
    side(&primary, &p->primary, p->t_start);
    side(&copy, &p->copy, p->t_start);
    struct tf_mirror *m = p->mirror;
    bool app_first = m->primary == TF_ROUTE_APP;
    prof_compare_record(p->method, p->target, app_first ? &primary : &copy,
                        app_first ? &copy : &primary);
    free_pair(p);
    mirror_unref(m);
}

bool tf_mirror_copies(const struct tf_request *req)
{
    return !strcmp(req->method, "GET") || req->is_head;
}

void tf_mirror_attach(struct tf_mirror *m, struct tf_request *req)
{
    if (!tf_mirror_copies(req))
        return;
    if (!copy_may_go(m)) {
        prof_compare_count_dropped();
        return;
    }
    struct pair *p = calloc(1, sizeof(*p));
    struct tf_request *copy = p ? tf_request_clone_detached(req) : NULL;
    if (p) {
        p->method = strdup(req->method);
        p->target = strdup(req->target);
    }
    if (!copy || !p->method || !p->target) {
        if (copy)
            tf_request_unref(copy);
        if (p)
            free_pair(p);
        copy_ended(m);
        tf_log_error("--mirror: out of memory copying %s %s; not mirrored", req->method,
                     req->log_target);
        prof_compare_count_dropped();
        return;
    }
    p->mirror = m;
    p->remaining = 2;
    p->t_start = tf_now_us();
    p->primary = (struct tf_tap){ .done = tap_done, .owner = p };
    p->copy = (struct tf_tap){ .done = tap_done, .owner = p };
    tf_body_hash_init(&p->primary.body);
    tf_body_hash_init(&p->copy.body);
    req->tap = &p->primary;
    copy->tap = &p->copy;
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    bool to_app = m->primary == TF_ROUTE_UPSTREAM;
    copy->backend = to_app ? 0 : 1; /* enum prof_backend: wsgi, upstream */
    tf_dispatch_fn to = to_app ? m->backends->app : m->backends->upstream;
    void *ctx = to_app ? m->backends->app_ctx : m->backends->upstream_ctx;
    if (to(ctx, copy) < 0) { /* that backend is full: a dropped copy, not a mismatch */
        copy->tap = req->tap = NULL;
        __atomic_sub_fetch(&m->refs, 1, __ATOMIC_RELAXED); /* the server's stays */
        tf_request_unref(copy);
        free_pair(p);
        copy_ended(m);
        prof_compare_count_dropped();
        return;
    }
}
