/* upstream_internal.h — what upstream.c (the lanes: a curl multi handle per
 * network thread's loop, the commands posted to it, pins) shares with
 * upstream_transfer.c (one request's transfer, from its curl options to
 * the client's answer). Nothing else includes it. A lane and its
 * transfers belong to the lane's loop thread (but cfg and loop, read-only). */
#ifndef TF_UPSTREAM_INTERNAL_H
#define TF_UPSTREAM_INTERNAL_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/config.h"
#include "proxy/forward.h"
#include "proxy/request.h"

struct tf_loop;

struct tf_upstream_pin {
    struct lane *lane;              /* the lane whose loop uses the share */
    CURLSH *share;                  /* its own connection cache; that loop only */
    int refs;                       /* atomic: the client connection + its transfers */
};

struct transfer {
    struct lane *lane;
    struct tf_request *req;         /* a reference */
    CURL *easy;
    struct curl_slist *headers;
    char *target;
    struct tf_response_head head;
    uint64_t body_off;              /* request body bytes read by curl */
    uint64_t pushed;                /* response body bytes queued */
    uint64_t t_head, last_io;       /* monotonic us */
    unsigned sends;                 /* times curl began to send the request */
    bool send_once;                 /* a pinned non-idempotent request: never resent */
    bool connected;                 /* curl has a connection (on_prereq): the read timeout
                                       counts from then, the connect timeout before */
    bool client_abort;              /* ended for a client that hung up while waiting */
    uint64_t turn;                  /* a copy: the lane's turn its turn_bytes are of */
    size_t turn_bytes;              /* a copy: body bytes taken in that turn */
    bool responded, paused, over_high, timed_out, resend_refused;
    bool yielded;                   /* a copy paused until the loop's next turn */
    char errbuf[CURL_ERROR_SIZE];
    struct transfer *prev, *next;   /* the active list */
};

/* One loop's curl multi handle (and so its pool of upstream connections).
 * Everything but cfg and loop belongs to the loop's thread. */
struct lane {
    const struct tf_config *cfg;
    struct tf_loop *loop;
    CURLM *multi;
    struct transfer *active;
    CURL **idle_easy;               /* reusable handles */
    size_t n_idle_easy, cap_idle_easy;
    uint64_t last_idle_check;
    uint64_t timer_due;             /* curl's timeout, monotonic us */
    uint64_t turn;                  /* the loop's turns, counted by lane_tick */
    unsigned yielded;               /* transfers with yielded set */
    bool timer_set;
    bool stopping;                  /* lane_stop: what still runs is abandoned */
};

/* upstream_transfer.c, on the lane's loop. Forward req on lane (the
 * reference becomes the transfer's); out of memory answers 500. */
void tf_upstream_transfer_start(struct lane *lane, struct tf_request *req);
/* Take t off its lane, answer or finish its request (rc: how curl ended
 * it), free it. */
void tf_upstream_transfer_end(struct transfer *t, CURLcode rc);
/* Answer heads that have waited long enough for their body; time out
 * transfers whose upstream went silent; end --mirror copies their pair
 * stopped; watch waiting clients for a hang-up. Returns the ms until the
 * next check is needed, -1 for none. */
long tf_upstream_timers_check(struct lane *lane, uint64_t now);

/* upstream.c. req->producer_wake of a transfer's request, on the client
 * connection's loop: wakes the transfer through a command to its lane. */
void tf_upstream_producer_wake(struct tf_request *req);
/* On the pin's lane's loop: drop a reference; the last one closes the
 * connection. */
void tf_upstream_pin_drop(struct tf_upstream_pin *pin);

#endif
