/* upstream.c — the lanes that libcurl transfers to the upstream run on (see
 * upstream.h; one transfer is upstream_transfer.c's). Each network thread's
 * loop (proxy/loop.h) has a lane: a curl multi handle driven by the loop's
 * epoll set (curl_multi_socket_action), with its own pool of upstream
 * connections. A request is forwarded on the lane of the thread that read
 * it, so the whole exchange stays on one thread. Work from elsewhere (a
 * mirror copy sent by an app thread) is posted to a lane's loop as a
 * command, and so is work that must not run where it arises (a drained
 * channel waking its transfer from inside libmicrohttpd's reader; a pin's
 * release). */
#include "proxy/upstream.h"
#include "proxy/upstream_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "proxy/log.h"
#include "proxy/loop.h"
#include "proxy/platform.h"

enum command_kind { CMD_START, CMD_WAKE, CMD_PIN_FREE };

struct command {
    enum command_kind kind;
    struct lane *lane;
    struct tf_request *req;         /* CMD_START, CMD_WAKE: a reference */
    struct tf_upstream_pin *pin;    /* CMD_PIN_FREE */
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
void tf_upstream_pin_drop(struct tf_upstream_pin *pin)
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
void tf_upstream_producer_wake(struct tf_request *req)
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
        /* mid-transfer: curl closes the connection */
        tf_upstream_transfer_end(t, CURLE_ABORTED_BY_CALLBACK);
    } else if (t && t->paused) {
        t->paused = false;
        t->over_high = false;
        t->last_io = tf_now_us();
        if (tf_request_client_gone(req))
            tf_upstream_transfer_end(t, CURLE_WRITE_ERROR);
        else if (curl_easy_pause(t->easy, CURLPAUSE_CONT) != CURLE_OK)
            tf_upstream_transfer_end(t, CURLE_WRITE_ERROR); /* its held data could not be taken */
    }
    tf_request_unref(req);
}

static void run_command(void *arg)
{
    struct command *c = arg;
    if (c->kind == CMD_START)
        tf_upstream_transfer_start(c->lane, c->req);
    else if (c->kind == CMD_WAKE)
        wake(c->req);
    else
        tf_upstream_pin_drop(c->pin);
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
            tf_upstream_transfer_end(t, msg->data.result);
    }
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
            tf_upstream_transfer_end(t, CURLE_WRITE_ERROR); /* its held data could not be taken */
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
    long wait = tf_upstream_timers_check(lane, now);
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
        /* the dispatcher's reference becomes the transfer's */
        tf_upstream_transfer_start(lane, req);
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
        tf_upstream_transfer_end(l->active, CURLE_ABORTED_BY_CALLBACK);
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
