/* upstream.c — libcurl transfers to the upstream (see upstream.h). Each
 * network thread's loop (proxy/loop.h) has a lane: a curl multi handle
 * driven by the loop's epoll set (curl_multi_socket_action), with its own
 * pool of upstream connections. A request is forwarded on the lane of the
 * thread that read it, so the whole exchange stays on one thread. Work from
 * elsewhere (a mirror copy sent by an app thread) is posted to a lane's
 * loop as a command, and so is work that must not run where it arises (a
 * drained channel waking its transfer from inside libmicrohttpd's reader;
 * a pin's release). The response head is checked
 * line by line (forward.c); the body goes into the request's channel. The
 * client is answered at the end of a small response, or as soon as 16 KiB
 * or 2 ms of a larger one are in, so small answers cost one suspend/resume
 * and large ones stream. A client's transfer is paced by its client (the
 * channel's high-water mark pauses it); a --mirror copy has no reader, so
 * it takes at most COPY_TURN_BYTES per turn of the loop and is paused until
 * the next: the other connections on the loop are served in between. */
#include "proxy/upstream.h"

#include <curl/curl.h>
#include <pthread.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "proxy/forward.h"
#include "proxy/log.h"
#include "proxy/loop.h"
#include "proxy/platform.h"
#include "proxy/server.h"

#define EARLY_BYTES (16u * 1024u)   /* answer the client once this much body is in */
#define EARLY_US 2000u              /* ... or once the head is this old */
#define IDLE_CHECK_US 100000u
#define COPY_TURN_BYTES (256u * 1024u) /* a --mirror copy's body per loop turn, at most */

enum command_kind { CMD_START, CMD_WAKE, CMD_PIN_FREE };

struct command {
    enum command_kind kind;
    struct lane *lane;
    struct tf_request *req;         /* CMD_START, CMD_WAKE: a reference */
    struct tf_upstream_pin *pin;    /* CMD_PIN_FREE */
};

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

struct tf_upstream {
    struct lane *lanes;             /* lanes[i] is on loop i; read-only */
    unsigned n_lanes;
    unsigned next_lane;             /* atomic: work from other threads goes round the lanes */
};

static void run_command(void *arg);

/* Run a command on lane's loop (req: a reference it takes over). -1 on
 * out of memory, the command not run. */
static int post(enum command_kind kind, struct lane *lane, struct tf_request *req,
                struct tf_upstream_pin *pin)
{
    struct command *c = malloc(sizeof(*c));
    if (c)
        *c = (struct command){ .kind = kind, .lane = lane, .req = req, .pin = pin };
    if (!c || tf_loop_post(lane->loop, run_command, c) < 0) {
        tf_log_error("upstream: out of memory; a command to a network thread is lost");
        free(c);
        return -1;
    }
    return 0;
}

/* --- curl callbacks (the lane's loop) ------------------------------------- */

static size_t on_header(char *line, size_t size, size_t n, void *userp)
{
    struct transfer *t = userp;
    size_t len = size * n;
    t->last_io = tf_now_us();
    int rc = tf_response_head_feed(&t->head, line, len);
    if (rc < 0)
        return 0; /* abort: answered 502 at completion */
    if (rc == 1)
        t->t_head = t->last_io;
    return len;
}

static bool respond(struct transfer *t, uint64_t size);

/* A --mirror copy (no client: nothing else slows it down) that has had its
 * share of this turn of the loop: paused until the next (resume_yielded). */
static bool copy_must_yield(struct transfer *t, size_t len)
{
    if (t->req->connection)
        return false;
    if (t->turn != t->lane->turn) {
        t->turn = t->lane->turn;
        t->turn_bytes = 0;
    }
    if (t->turn_bytes >= COPY_TURN_BYTES) {
        t->yielded = true;
        t->lane->yielded++;
        return true;
    }
    t->turn_bytes += len;
    return false;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    struct transfer *t = userp;
    struct tf_request *req = t->req;
    size_t len = size * n;
    t->last_io = tf_now_us();
    if (copy_must_yield(t, len))
        return CURL_WRITEFUNC_PAUSE; /* curl keeps the data until unpaused */
    if (t->over_high) {
        if (tf_request_park(req)) {
            t->paused = true;
            return CURL_WRITEFUNC_PAUSE; /* curl keeps the data until unpaused */
        }
        t->over_high = false;
    }
    if (tf_request_push(req, data, len, &t->over_high) < 0)
        return 0; /* the client left: abort */
    t->pushed += len;
    if (!t->responded && t->pushed >= EARLY_BYTES && !respond(t, UINT64_MAX))
        return 0; /* abort: answered 502 at completion */
    return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *userp)
{
    struct transfer *t = userp;
    ssize_t got = tf_spool_read(&t->req->body, t->body_off, buf, size * n);
    if (got < 0)
        return CURL_READFUNC_ABORT;
    t->body_off += (uint64_t)got;
    t->last_io = tf_now_us();
    return (size_t)got;
}

static int on_seek(void *userp, curl_off_t offset, int origin)
{
    struct transfer *t = userp; /* curl rewinds to resend on a fresh connection */
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > t->req->body.size)
        return CURL_SEEKFUNC_CANTSEEK;
    t->body_off = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* Connected (or a pooled connection taken): curl is about to send the
 * request, and calls again before a resend (a reused connection that closed
 * without an answer is retried on a new one). The read timeout starts now.
 * A pinned non-idempotent request: the upstream may have acted on it, so it
 * is sent once at most, as nginx does (proxy_next_upstream). */
static int on_prereq(void *userp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    struct transfer *t = userp;
    t->connected = true;
    t->last_io = tf_now_us();
    if (t->sends++ == 0 || !t->send_once)
        return CURL_PREREQFUNC_OK;
    t->resend_refused = true;
    return CURL_PREREQFUNC_ABORT;
}

/* --- answering the client ------------------------------------------------- */

/* size: the body's length when the transfer is complete, else UINT64_MAX.
 * false when the head does not fit the client's connection (libmicrohttpd
 * would close it with nothing sent): nothing is answered, the head is marked
 * invalid, and the transfer must end (finish answers 502). */
static bool respond(struct transfer *t, uint64_t size)
{
    struct tf_request *req = t->req;
    unsigned status = t->head.status;
    int64_t length = t->head.framing.content_length; /* -1: none */
    if (size == UINT64_MAX && length >= 0 && !t->head.framing.transfer_encoding)
        size = (uint64_t)length;
    bool bodyless = req->is_head || status == 204 || status == 304;
    /* no body: a HEAD's or a 304's length is the one a GET would get, if known */
    if (req->is_head || status == 304)
        size = length >= 0 ? (uint64_t)length : status == 304 ? 0 : UINT64_MAX;
    else if (bodyless)
        size = 0;
    /* all in, for a client: one write for head and body */
    bool whole = !bodyless && req->connection && t->head.done && size == t->pushed &&
                 size <= EARLY_BYTES;
    struct MHD_Response *r = whole ? tf_request_whole_response(req, size) : NULL;
    if (!r)
        r = tf_request_stream_response(req, size);
    if (r)
        tf_response_head_apply(&t->head, r, req, t->lane->cfg);
    if (r && req->connection && !tf_request_head_fits(req, tf_response_headers_size(r))) {
        MHD_destroy_response(r);
        pthread_mutex_lock(&req->lock);
        req->tap_streaming = false; /* the 502 ends the tap, not this stream */
        pthread_mutex_unlock(&req->lock);
        t->head.invalid = "a response head too large for the client's connection (with the "
                          "request's head, more than libmicrohttpd's 32 KiB per connection)";
        return false;
    }
    /* A HEAD whose GET length is unknown: libmicrohttpd 0.9.75 would frame
     * it chunked and send the closing chunk, which the client would read as
     * the next answer. Unframed, it closes the connection instead. */
    if (r && req->is_head && size == UINT64_MAX)
        MHD_set_response_options(r, MHD_RF_HTTP_1_0_COMPATIBLE_STRICT, MHD_RO_END);
    t->responded = true;
    tf_request_respond(req, r, status); /* r NULL (out of memory): the connection closes */
    return true;
}

/* A failed --mirror copy has no client; with the upstream down every
 * request's copy fails, and a line each flooded the log (16 MB in a burst).
 * True once a second, with *unsaid the copies that failed unsaid since; at
 * the stop (now 0) true if some are unsaid. */
static bool say_copy_failure(unsigned long *unsaid, uint64_t now)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t said_at;
    static unsigned long pending;
    pthread_mutex_lock(&lock);
    bool say = !now ? pending > 0 : !said_at || now - said_at >= 1000000u;
    if (say) {
        *unsaid = pending;
        pending = 0;
        said_at = now;
    } else if (now) {
        pending++;
    }
    pthread_mutex_unlock(&lock);
    return say;
}

static void fail(struct transfer *t, unsigned status, const char *why)
{
    struct tf_request *req = t->req;
    unsigned long unsaid = 0;
    if (!req->connection) {
        char more[80] = "";
        if (say_copy_failure(&unsaid, tf_now_us())) {
            if (unsaid)
                snprintf(more, sizeof(more), "; %lu more failed copies not logged since the "
                         "last such line", unsaid);
            tf_log_error("upstream: %s %s: %s (the --mirror copy failed; no client waits for "
                         "it%s)", req->method, req->log_target, why, more);
        }
    } else {
        tf_log_error("upstream: %s %s: %s (%s)", req->method, req->log_target, why,
                     t->responded ? "answered with the connection cut: the head was already sent"
                     : status == 504 ? "answered 504" : "answered 502");
    }
    tf_request_tap_failed(req, why);
    if (t->responded) {
        tf_request_finish(req, true);
        return;
    }
    char detail[300];
    snprintf(detail, sizeof(detail), "The upstream server %s.",
             status == 504 ? "did not answer in time" : "could not be reached or gave an invalid answer");
    t->responded = true;
    tf_request_respond(req, tf_error_response(status, detail, false, &req->bytes_out), status);
}

/* The client hung up while it waited (wake): as nginx, an answer not begun
 * is logged 499 (client closed request) and the connection closed; one
 * begun keeps its status, and ends cut. */
static void abort_for_client(struct transfer *t)
{
    struct tf_request *req = t->req;
    tf_log_info("upstream: %s %s: the client closed its connection %s; the upstream "
                "connection is closed too", req->method, req->log_target,
                t->responded ? "during the answer" : "before the answer (logged 499)");
    if (t->responded) {
        tf_request_finish(req, true);
        return;
    }
    t->responded = true;
    tf_request_respond(req, NULL, 499);
}

static void note_timing(struct transfer *t)
{
    curl_off_t connect = 0, first = 0, total = 0;
    curl_easy_getinfo(t->easy, CURLINFO_CONNECT_TIME_T, &connect);
    curl_easy_getinfo(t->easy, CURLINFO_STARTTRANSFER_TIME_T, &first);
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total);
    pthread_mutex_lock(&t->req->lock); /* read under it when the request is logged */
    t->req->upstream_connect_us = (uint64_t)connect;
    t->req->upstream_first_byte_us = (uint64_t)first;
    t->req->upstream_total_us = (uint64_t)total;
    pthread_mutex_unlock(&t->req->lock);
}

static void finish(struct transfer *t, CURLcode rc)
{
    char why[400];
    note_timing(t);
    if (t->lane->stopping && !t->req->connection) { /* a --mirror copy: a stop does not wait */
        tf_request_tap_failed(t->req, "abandoned: tracfront stopped");
        tf_request_finish(t->req, true);
    } else if (t->client_abort) {
        abort_for_client(t);
    } else if (t->timed_out) {
        snprintf(why, sizeof(why), "no data for %gs (--upstream-read-timeout)",
                 t->lane->cfg->upstream_read_timeout);
        fail(t, 504, why);
    } else if (t->head.invalid) {
        snprintf(why, sizeof(why), "invalid response: %s", t->head.invalid);
        fail(t, 502, why);
    } else if (t->resend_refused) {
        snprintf(why, sizeof(why), "the reused --upstream-pin connection closed without an "
                 "answer; a %s is not sent again (not idempotent: the upstream may have "
                 "acted on it)", t->req->method);
        fail(t, 502, why);
    } else if (rc != CURLE_OK) {
        if ((rc == CURLE_WRITE_ERROR || t->lane->stopping) && t->responded &&
            tf_request_client_gone(t->req)) { /* also ended by the stop before its next write */
            tf_request_finish(t->req, true); /* the client left: nothing to log */
            return;
        }
        snprintf(why, sizeof(why), "%s%s%s", curl_easy_strerror(rc), t->errbuf[0] ? ": " : "",
                 t->errbuf);
        if (rc == CURLE_OPERATION_TIMEDOUT && !t->connected) /* else curl names no option */
            snprintf(why, sizeof(why), "no connection within %gs (--upstream-connect-timeout)",
                     t->lane->cfg->upstream_connect_timeout);
        fail(t, rc == CURLE_OPERATION_TIMEDOUT ? 504 : 502, why);
    } else if (!t->head.done) {
        fail(t, 502, "no response head");
    } else if (!t->responded && !respond(t, t->pushed)) {
        snprintf(why, sizeof(why), "invalid response: %s", t->head.invalid);
        fail(t, 502, why);
    } else {
        tf_request_finish(t->req, false);
    }
}

/* --- starting and ending transfers ---------------------------------------- */

static bool idempotent(const char *method)
{
    static const char *const ok[] = { "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE" };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!strcmp(method, ok[i]))
            return true;
    return false;
}

static CURL *take_easy(struct lane *lane)
{
    if (lane->n_idle_easy == 0)
        return curl_easy_init();
    CURL *e = lane->idle_easy[--lane->n_idle_easy];
    curl_easy_reset(e);
    return e;
}

static void give_back_easy(struct lane *lane, CURL *e)
{
    if (lane->n_idle_easy == lane->cap_idle_easy) {
        size_t cap = lane->cap_idle_easy ? lane->cap_idle_easy * 2 : 16;
        CURL **grown = realloc(lane->idle_easy, cap * sizeof(*grown));
        if (!grown) {
            curl_easy_cleanup(e);
            return;
        }
        lane->idle_easy = grown;
        lane->cap_idle_easy = cap;
    }
    lane->idle_easy[lane->n_idle_easy++] = e;
}

/* Every option of one transfer. Returns CURLE_OK or the first failure. */
static CURLcode set_options(struct transfer *t)
{
    const struct tf_config *cfg = t->lane->cfg;
    struct tf_request *req = t->req;
    CURL *e = t->easy;
    char url[2048];
    snprintf(url, sizeof(url), "%s/", cfg->upstream_origin);
    CURLcode rc = CURLE_OK;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_REQUEST_TARGET, t->target); /* as received: never normalised */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_HTTPHEADER, t->headers);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PRIVATE, t);
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, t);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_BUFFERSIZE, 64L * 1024L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(cfg->upstream_connect_timeout * 1000 + 0.5));
    SET(CURLOPT_HTTP_CONTENT_DECODING, 0L);
    SET(CURLOPT_PROXY, ""); /* never http_proxy from the environment */
    if (req->is_head) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (req->has_body) {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.size);
        SET(CURLOPT_READFUNCTION, on_read);
        SET(CURLOPT_READDATA, t);
        SET(CURLOPT_SEEKFUNCTION, on_seek);
        SET(CURLOPT_SEEKDATA, t);
    }
    /* The method curl would send by itself: HEAD (NOBODY), POST with a body
     * (CURLOPT_POST, even for a GET with a body), else GET. */
    const char *curls = req->is_head ? "HEAD" : req->has_body ? "POST" : "GET";
    if (strcmp(req->method, curls) != 0)
        SET(CURLOPT_CUSTOMREQUEST, req->method);
    /* A stale pooled connection is retried by curl: only safe when the
     * method is idempotent, so anything else gets a fresh connection, or,
     * pinned to its connection, is never sent a second time. */
    if (!idempotent(req->method) && !req->pin)
        SET(CURLOPT_FRESH_CONNECT, 1L);
    t->send_once = !idempotent(req->method) && req->pin;
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, t);
    if (req->pin)
        SET(CURLOPT_SHARE, req->pin->share);
#undef SET
    return rc;
}

static void pin_drop(struct tf_upstream_pin *pin);

static void end_transfer(struct transfer *t, CURLcode rc)
{
    struct lane *lane = t->lane;
    curl_multi_remove_handle(lane->multi, t->easy);
    finish(t, rc);
    if (t->yielded)
        lane->yielded--;
    if (t->prev)
        t->prev->next = t->next;
    else
        lane->active = t->next;
    if (t->next)
        t->next->prev = t->prev;
    struct tf_upstream_pin *pin = t->req->pin;
    t->req->backend_state = NULL;
    if (pin)
        curl_easy_setopt(t->easy, CURLOPT_SHARE, NULL);
    give_back_easy(lane, t->easy);
    curl_slist_free_all(t->headers);
    free(t->target);
    tf_response_head_free(&t->head);
    tf_request_unref(t->req);
    free(t);
    if (pin)
        pin_drop(pin);
}

static void producer_wake(struct tf_request *req);

static void start_transfer(struct lane *lane, struct tf_request *req)
{
    struct transfer *t = calloc(1, sizeof(*t));
    if (!t)
        goto out_of_memory;
    t->lane = lane;
    t->req = req;
    t->last_io = tf_now_us();
    tf_response_head_init(&t->head);
    req->backend_state = t;
    req->producer_wake = producer_wake;
    if (req->pin && !req->pin->share && (req->pin->share = curl_share_init()))
        curl_share_setopt(req->pin->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    t->target = tf_forward_target(req, lane->cfg);
    t->headers = tf_forward_request_headers(req, lane->cfg);
    t->easy = take_easy(lane);
    if (!t->easy) {
        curl_slist_free_all(t->headers);
        free(t->target);
        free(t);
        req->backend_state = NULL;
        goto out_of_memory;
    }
    if (req->pin)
        __atomic_add_fetch(&req->pin->refs, 1, __ATOMIC_RELAXED); /* dropped by end_transfer */
    t->next = lane->active;
    if (lane->active)
        lane->active->prev = t;
    lane->active = t;
    CURLcode rc = t->target && t->headers ? set_options(t) : CURLE_OUT_OF_MEMORY;
    if (rc == CURLE_OK && curl_multi_add_handle(lane->multi, t->easy) != CURLM_OK)
        rc = CURLE_FAILED_INIT;
    if (rc != CURLE_OK)
        end_transfer(t, rc);
    return;
out_of_memory:
    tf_request_respond(req, tf_error_response(500, "Out of memory.", false, NULL), 500);
    tf_request_unref(req);
}

/* --- pins ------------------------------------------------------------------ */

/* The lane of the loop running here; from another thread, the next one. */
static struct lane *lane_here(struct tf_upstream *up)
{
    struct tf_loop *loop = tf_loop_current();
    if (loop && tf_loop_index(loop) < up->n_lanes)
        return &up->lanes[tf_loop_index(loop)];
    return &up->lanes[__atomic_fetch_add(&up->next_lane, 1, __ATOMIC_RELAXED) % up->n_lanes];
}

struct tf_upstream_pin *tf_upstream_pin_new(struct tf_upstream *up)
{
    struct tf_upstream_pin *pin = calloc(1, sizeof(*pin));
    if (pin) {
        pin->lane = lane_here(up); /* the client connection's loop */
        pin->refs = 1;
    }
    return pin;
}

/* The lane's loop: drop a reference; the last one closes the connection. */
static void pin_drop(struct tf_upstream_pin *pin)
{
    if (__atomic_sub_fetch(&pin->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (pin->share)
        curl_share_cleanup(pin->share);
    free(pin);
}

void tf_upstream_pin_release(struct tf_upstream_pin *pin)
{
    post(CMD_PIN_FREE, pin->lane, NULL, pin); /* out of memory: one pin leaks rather than
                                               freeing a share curl may use */
}

/* --- commands and the loop ------------------------------------------------- */

/* The connection's loop: the client drained the channel, or left; or it
 * hung up while waiting (tf_request_watch_hangup). t is alive: a paused
 * transfer cannot end, and the watch is on this loop, where the transfer
 * ends. Run as a command: unpausing can deliver data at once, and this
 * runs inside libmicrohttpd's content reader. */
static void producer_wake(struct tf_request *req)
{
    struct transfer *t = req->backend_state;
    if (!t)
        return;
    tf_request_ref(req);
    if (post(CMD_WAKE, t->lane, req, NULL) < 0) /* out of memory: it stays paused */
        tf_request_unref(req);
}

static void wake(struct tf_request *req)
{
    struct transfer *t = req->backend_state;
    if (t && tf_request_hung_up(req)) {
        t->client_abort = true;
        end_transfer(t, CURLE_ABORTED_BY_CALLBACK); /* mid-transfer: curl closes the connection */
    } else if (t && t->paused) {
        t->paused = false;
        t->over_high = false;
        t->last_io = tf_now_us();
        if (tf_request_client_gone(req))
            end_transfer(t, CURLE_WRITE_ERROR);
        else if (curl_easy_pause(t->easy, CURLPAUSE_CONT) != CURLE_OK)
            end_transfer(t, CURLE_WRITE_ERROR); /* the data it held could not be taken */
    }
    tf_request_unref(req);
}

static void run_command(void *arg)
{
    struct command *c = arg;
    if (c->kind == CMD_START)
        start_transfer(c->lane, c->req);
    else if (c->kind == CMD_WAKE)
        wake(c->req);
    else
        pin_drop(c->pin);
    free(c);
}

static void read_results(struct lane *lane)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(lane->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct transfer *t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        if (t)
            end_transfer(t, msg->data.result);
    }
}

/* A client that has waited IDLE_CHECK_US for its answer's head, or waits
 * for more of its body, has its socket watched for a hang-up from now on
 * (tf_request_watch_hangup): watching every request from its dispatch cost
 * two system calls each, which a fast answer never needs. */
static void watch_if_waiting(struct transfer *t, uint64_t now)
{
    struct tf_request *req = t->req;
    if (!req->abort_on_hangup || req->hangup_fd >= 0 || now - req->t_dispatched < IDLE_CHECK_US)
        return;
    pthread_mutex_lock(&req->lock); /* the connection is this loop's: it cannot end meanwhile */
    bool waiting = !req->client_gone && (!t->responded || req->reader_suspended);
    pthread_mutex_unlock(&req->lock);
    if (waiting)
        tf_request_watch_hangup(req);
}

/* Answer heads that have waited long enough for their body; time out
 * transfers whose upstream went silent; watch waiting clients for a
 * hang-up. Returns the ms until the next check is needed, -1 for none. */
static long check_timers(struct lane *lane, uint64_t now)
{
    if (!lane->active)
        return -1;
    bool waiting = false, idle_check = now - lane->last_idle_check >= IDLE_CHECK_US;
    uint64_t idle_max = (uint64_t)(lane->cfg->upstream_read_timeout * 1e6);
    if (idle_check)
        lane->last_idle_check = now;
    for (struct transfer *t = lane->active, *next; t; t = next) {
        next = t->next;
        if (t->head.done && !t->responded) {
            if (now - t->t_head >= EARLY_US && !respond(t, UINT64_MAX)) {
                end_transfer(t, CURLE_WRITE_ERROR); /* answered 502 */
                continue;
            }
            if (!t->responded)
                waiting = true;
        }
        if (idle_check && idle_max && t->connected && !t->paused && !t->yielded &&
            now - t->last_io > idle_max) {
            t->timed_out = true;
            end_transfer(t, CURLE_OPERATION_TIMEDOUT);
        } else if (idle_check) {
            watch_if_waiting(t, now);
        }
    }
    return waiting ? 1 : (long)(IDLE_CHECK_US / 1000);
}

static void on_socket_ready(void *ctx, int fd, uint32_t events)
{
    struct lane *lane = ctx;
    int flags = (events & (EPOLLIN | EPOLLHUP) ? CURL_CSELECT_IN : 0) |
                (events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                (events & EPOLLERR ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(lane->multi, fd, flags, &running);
    read_results(lane);
}

/* curl: watch s for what (CURLMOPT_SOCKETFUNCTION). */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    struct lane *lane = userp;
    if (what == CURL_POLL_REMOVE) {
        tf_loop_unwatch(lane->loop, s);
        return 0;
    }
    uint32_t events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (tf_loop_watch(lane->loop, s, events, on_socket_ready, lane) < 0) /* out of memory */
        tf_log_error("upstream: cannot watch a connection (%m); its transfer will time out");
    return 0; /* -1 would stop every transfer of this lane */
}

/* curl: call back in timeout_ms, or never when -1 (CURLMOPT_TIMERFUNCTION). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct lane *lane = userp;
    lane->timer_set = timeout_ms >= 0;
    if (lane->timer_set) {
        lane->timer_due = tf_now_us() + (uint64_t)timeout_ms * 1000u;
        tf_loop_wake(lane->loop); /* this turn's ticks may have run: take the new time into account */
    }
    return 0;
}

/* A new turn of the loop: unpause the copies that yielded in the last one.
 * curl hands over the data it kept at once, and reads on at its next
 * timeout (now). */
static void resume_yielded(struct lane *lane)
{
    for (struct transfer *t = lane->active, *next; t && lane->yielded; t = next) {
        next = t->next;
        if (!t->yielded)
            continue;
        t->yielded = false;
        lane->yielded--;
        t->last_io = tf_now_us();
        if (curl_easy_pause(t->easy, CURLPAUSE_CONT) != CURLE_OK)
            end_transfer(t, CURLE_WRITE_ERROR); /* the data it held could not be taken */
    }
}

/* Each turn of the lane's loop. */
static long lane_tick(void *ctx)
{
    struct lane *lane = ctx;
    lane->turn++;
    if (lane->yielded)
        resume_yielded(lane);
    uint64_t now = tf_now_us();
    if (lane->timer_set && now >= lane->timer_due) {
        int running;
        lane->timer_set = false;
        curl_multi_socket_action(lane->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        read_results(lane);
        now = tf_now_us();
    }
    long wait = check_timers(lane, now);
    if (lane->yielded) /* they go on next turn, after the other connections' */
        wait = 0;
    if (lane->timer_set) {
        long due = lane->timer_due <= now ? 0 : (long)((lane->timer_due - now + 999) / 1000);
        if (wait < 0 || due < wait)
            wait = due;
    }
    return wait;
}

int tf_upstream_submit(void *upstream, struct tf_request *req)
{
    struct tf_upstream *up = upstream;
    struct lane *lane = req->pin ? req->pin->lane : lane_here(up); /* a pin's share is its lane's */
    if (lane->loop == tf_loop_current()) {
        start_transfer(lane, req); /* the dispatcher's reference becomes the transfer's */
        return 0;
    }
    return post(CMD_START, lane, req, NULL); /* -1: the dispatcher keeps its reference and
                                                answers 503 */
}

static int add_lane_tick(void *arg) /* on the lane's loop */
{
    struct lane *l = arg;
    return tf_loop_add_tick(l->loop, lane_tick, l);
}

static int remove_lane_tick(void *arg) /* on the lane's loop, or after it stopped */
{
    struct lane *l = arg;
    tf_loop_remove_tick(l->loop, lane_tick, l);
    return 0;
}

static int lane_start(struct lane *l, const struct tf_config *cfg, struct tf_loop *loop)
{
    l->cfg = cfg;
    l->loop = loop;
    if (!(l->multi = curl_multi_init()))
        return -1;
    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, 64L);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
    return tf_loop_call(loop, add_lane_tick, l);
}

/* Free what the lane holds once nothing runs on it. */
static void lane_free(struct lane *l)
{
    if (!l->multi)
        return;
    for (size_t i = 0; i < l->n_idle_easy; i++)
        curl_easy_cleanup(l->idle_easy[i]);
    free(l->idle_easy);
    curl_multi_cleanup(l->multi); /* its sockets: unwatched through on_socket */
    l->multi = NULL;
}

/* The loop has stopped: run what was posted to it, end what still runs. */
static void lane_stop(struct lane *l)
{
    if (!l->multi)
        return;
    tf_loop_run_posted(l->loop); /* pins the closing connections released */
    l->stopping = true;
    while (l->active) /* --mirror copies, or anything at a forced stop */
        end_transfer(l->active, CURLE_ABORTED_BY_CALLBACK);
    remove_lane_tick(l);
    lane_free(l);
}

struct tf_upstream *tf_upstream_start(const struct tf_config *cfg, struct tf_loop **loops,
                                      unsigned n_loops, char *err, size_t errlen)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "--upstream: libcurl failed to initialise");
        return NULL;
    }
    struct tf_upstream *up = calloc(1, sizeof(*up));
    if (!up || !(up->lanes = calloc(n_loops ? n_loops : 1, sizeof(*up->lanes)))) {
        snprintf(err, errlen, "--upstream: out of memory");
        free(up);
        curl_global_cleanup();
        return NULL;
    }
    for (; up->n_lanes < n_loops; up->n_lanes++) {
        if (lane_start(&up->lanes[up->n_lanes], cfg, loops[up->n_lanes]) < 0) {
            snprintf(err, errlen, "--upstream: cannot set up libcurl");
            for (unsigned i = 0; i <= up->n_lanes; i++) { /* no transfer yet: no socket */
                struct lane *l = &up->lanes[i];
                if (l->loop)
                    tf_loop_call(l->loop, remove_lane_tick, l); /* the loops run */
                lane_free(l);
            }
            free(up->lanes);
            free(up);
            curl_global_cleanup();
            return NULL;
        }
    }
    return up;
}

void tf_upstream_say_unsaid(void)
{
    unsigned long unsaid;
    if (say_copy_failure(&unsaid, 0))
        tf_log_error("upstream: %lu more failed --mirror copies not logged since the last such "
                     "line", unsaid);
}

void tf_upstream_stop(struct tf_upstream *up)
{
    if (!up)
        return;
    for (unsigned i = 0; i < up->n_lanes; i++)
        lane_stop(&up->lanes[i]);
    tf_upstream_say_unsaid();
    free(up->lanes);
    free(up);
    curl_global_cleanup();
}
