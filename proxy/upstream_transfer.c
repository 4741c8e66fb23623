/* upstream_transfer.c — one request's libcurl transfer to the upstream,
 * on its lane's loop (lanes: upstream.c): its curl options and callbacks,
 * and the client's answer. The response head is checked line by line
 * (forward.c); the body goes into the request's channel. The client is
 * answered at the end of a small response, or as soon as 16 KiB or 2 ms of a
 * larger one are in, so small answers cost one suspend/resume and large ones
 * stream. A client's transfer is paced by its client (the channel's
 * high-water mark pauses it); a --mirror copy has no reader, so it takes at
 * most COPY_TURN_BYTES per turn of the loop and is paused until the next
 * (the lane's tick resumes it): the other connections on the loop are
 * served in between. */
#include "proxy/upstream.h"
#include "proxy/upstream_internal.h"

#include <curl/curl.h>
#include <pthread.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/forward.h"
#include "proxy/log.h"
#include "proxy/platform.h"
#include "proxy/server.h"

#define EARLY_BYTES (16u * 1024u)   /* answer the client once this much body is in */
#define EARLY_US 2000u              /* ... or once the head is this old */
#define IDLE_CHECK_US 100000u
#define COPY_TURN_BYTES (256u * 1024u) /* a --mirror copy's body per loop turn, at most */

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
    /* no body: a HEAD's or a 304's length is the one a GET would get, if known
     * (RFC 9110 8.6: a 304 must not say another, as a 0) */
    if (req->is_head || status == 304)
        size = length >= 0 ? (uint64_t)length : UINT64_MAX;
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
    /* A HEAD or 304 whose GET length is unknown: libmicrohttpd 0.9.75 would
     * frame it chunked and send the closing chunk, which the client would
     * read as the next answer. Unframed, it closes the connection instead. */
    if (r && (req->is_head || status == 304) && size == UINT64_MAX)
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

void tf_upstream_say_unsaid(void)
{
    unsigned long unsaid;
    if (say_copy_failure(&unsaid, 0))
        tf_log_error("upstream: %lu more failed --mirror copies not logged since the last such "
                     "line", unsaid);
}

/* A --mirror copy its pair stopped (mirror.c): [info], as often as failed
 * copies are said (the compare page counts it, and says why). */
static void say_copy_stopped(struct tf_request *req)
{
    unsigned long unsaid = 0;
    if (say_copy_failure(&unsaid, tf_now_us()))
        tf_log_info("upstream: %s %s: the --mirror copy was stopped: it ran on after its pair's "
                    "answer ended or its client left (the compare page says which)%s",
                    req->method, req->log_target,
                    unsaid ? "; more failed or stopped copies were not logged" : "");
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
    } else if (rc != CURLE_OK && !t->req->connection && tf_request_copy_stopped(t->req)) {
        say_copy_stopped(t->req); /* a copy its pair stopped (mirror.c says why) */
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

void tf_upstream_transfer_end(struct transfer *t, CURLcode rc)
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
        tf_upstream_pin_drop(pin);
}

void tf_upstream_transfer_start(struct lane *lane, struct tf_request *req)
{
    struct transfer *t = calloc(1, sizeof(*t));
    if (!t)
        goto out_of_memory;
    t->lane = lane;
    t->req = req;
    t->last_io = tf_now_us();
    tf_response_head_init(&t->head);
    req->backend_state = t;
    req->producer_wake = tf_upstream_producer_wake;
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
    if (req->pin) /* dropped by tf_upstream_transfer_end */
        __atomic_add_fetch(&req->pin->refs, 1, __ATOMIC_RELAXED);
    t->next = lane->active;
    if (lane->active)
        lane->active->prev = t;
    lane->active = t;
    CURLcode rc = t->target && t->headers ? set_options(t) : CURLE_OUT_OF_MEMORY;
    if (rc == CURLE_OK && curl_multi_add_handle(lane->multi, t->easy) != CURLM_OK)
        rc = CURLE_FAILED_INIT;
    if (rc != CURLE_OK)
        tf_upstream_transfer_end(t, rc);
    return;
out_of_memory:
    tf_request_respond(req, tf_error_response(500, "Out of memory.", false, NULL), 500);
    tf_request_unref(req);
}

/* --- timers (the lane's tick) --------------------------------------------- */

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
 * transfers whose upstream went silent; end --mirror copies stopped by
 * their pair (tf_request_client_gone); watch waiting clients for a
 * hang-up. Returns the ms until the next check is needed, -1 for none. */
long tf_upstream_timers_check(struct lane *lane, uint64_t now)
{
    if (!lane->active)
        return -1;
    bool waiting = false, idle_check = now - lane->last_idle_check >= IDLE_CHECK_US;
    uint64_t idle_max = (uint64_t)(lane->cfg->upstream_read_timeout * 1e6);
    if (idle_check)
        lane->last_idle_check = now;
    for (struct transfer *t = lane->active, *next; t; t = next) {
        next = t->next;
        if (idle_check && !t->req->connection && tf_request_client_gone(t->req)) {
            tf_upstream_transfer_end(t, CURLE_ABORTED_BY_CALLBACK); /* a copy stopped, also
                                                                        one idle or paused */
            continue;
        }
        if (t->head.done && !t->responded) {
            if (now - t->t_head >= EARLY_US && !respond(t, UINT64_MAX)) {
                tf_upstream_transfer_end(t, CURLE_WRITE_ERROR); /* answered 502 */
                continue;
            }
            if (!t->responded)
                waiting = true;
        }
        if (idle_check && idle_max && t->connected && !t->paused && !t->yielded &&
            now - t->last_io > idle_max) {
            t->timed_out = true;
            tf_upstream_transfer_end(t, CURLE_OPERATION_TIMEDOUT);
        } else if (idle_check) {
            watch_if_waiting(t, now);
        }
    }
    return waiting ? 1 : (long)(IDLE_CHECK_US / 1000);
}
