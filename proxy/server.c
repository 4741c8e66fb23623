/* server.c — libmicrohttpd glue (see server.h). Per request the access
 * handler runs a small state machine: NEW (headers: check, collect) → BODY
 * (spool upload data) → DISPATCHED (connection suspended, backend working) →
 * RESPONDED, and routes each request to its backend. A login checked away
 * from the loop suspends it in HEAD_CHECKING (an upload's, from NEW, before
 * its body: then BODY) or CHECKING (from the body's end: then DISPATCHED),
 * and any phase may go to RESPONDED when the request is refused. Per-request state is
 * released in exactly one place, the request-completed callback. The other
 * parts of the server: server_start.c (its start and stop, which gives the
 * daemons these callbacks), request_head.c (the head's checks), request_end.c
 * (the completion callback: access log, latency sample, linger), daemon_loop.c
 * (a daemon on its loop), acceptor.c (a worker's), profile_pages.c (the
 * profiler's pages). This file never touches Python. */
#define _GNU_SOURCE /* strndup */
#include "proxy/server.h"
#include "proxy/server_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/auth.h"
#include "proxy/conn_memory.h"
#include "proxy/connection.h"
#include "proxy/http_check.h"
#include "proxy/log.h"
#include "proxy/loop.h"
#include "proxy/mirror.h"
#include "proxy/platform.h"
#include "proxy/static.h"
#include "proxy/upstream.h"
#include "profiler/latency.h"

/* Bytes of an over-limit chunked body read and dropped before the request
 * is answered without the rest (refuse_mid_body). */
#define TF_DISCARD_MAX (16u * 1024u * 1024u)
#define MAX_BODY_DETAIL "The request body is larger than --max-body."
#define NO_ROUTE_DETAIL "No route serves this path."
#define NO_ROOM_DETAIL "The request's headers leave no room for the answer's; send fewer or " \
                       "smaller ones."

static const char *reason_phrase(unsigned status)
{
    const char *r = MHD_get_reason_phrase_for(status);
    return r && *r ? r : "Error";
}

size_t tf_error_text(unsigned status, const char *detail, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%u %s\n%s%s", status, reason_phrase(status),
                     detail ? detail : "", detail ? "\n" : "");
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : strlen(buf);
}

struct MHD_Response *tf_error_response(unsigned status, const char *detail, bool close,
                                       uint64_t *body_len)
{
    char body[512];
    size_t n = tf_error_text(status, detail, body, sizeof(body));
    if (body_len)
        *body_len = (uint64_t)n;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return NULL;
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    if (close)
        MHD_add_response_header(r, "Connection", "close");
    return r;
}

/* Answer with r now (final access-handler call); NULL (out of memory) closes. */
enum MHD_Result tf_server_queue(struct tf_request *req, unsigned status, struct MHD_Response *r)
{
    if (!r)
        return MHD_NO;
    req->status = status;
    req->phase = PHASE_RESPONDED;
    enum MHD_Result ok = MHD_queue_response(req->connection, status, r);
    MHD_destroy_response(r);
    if (ok == MHD_YES && req->file_fd >= 0)
        tf_watch_add(req->daemon, req, WATCH_FILE_OUT);
    return ok;
}

enum MHD_Result tf_server_reply(struct tf_request *req, unsigned status, const char *detail,
                                bool close)
{
    return tf_server_queue(req, status, tf_error_response(status, detail, close, &req->bytes_out));
}

/* Send the response a backend handed to req (not NULL). */
static enum MHD_Result queue_answer(struct tf_server *server, struct tf_request *req)
{
    req->t_responded = tf_now_us();
    struct MHD_Response *r = req->response;
    req->response = NULL;
    if (__atomic_load_n(&server->stopping, __ATOMIC_SEQ_CST) ||
        __atomic_load_n(&server->quiesced, __ATOMIC_SEQ_CST)) /* let keep-alive clients go */
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    return tf_server_queue(req, req->status, r);
}

/* req goes to its backend now: the queue wait ends here, but for the app's
 * requests where a thread starts it (wsgi/pool.c sets t_dispatched again). */
static void mark_dispatched(struct tf_request *req)
{
    req->phase = PHASE_DISPATCHED;
    req->t_ready = req->t_dispatched = tf_now_us();
    if (!req->head_used) /* dispatched before the final call: a body still arriving */
        req->head_used = tf_head_used(req->connection);
}

/* Let the backend run req inline (tf_inline_fn). True when it did: *result
 * is the access handler's answer. */
static bool run_inline(struct tf_server *server, struct tf_request *req, tf_inline_fn fn,
                       void *backend, enum MHD_Result *result)
{
    mark_dispatched(req);
    tf_request_ref(req); /* the backend's, as for tf_server_dispatch */
    __atomic_store_n(&req->answering_inline, true, __ATOMIC_SEQ_CST);
    int ran = fn(backend, req);
    __atomic_store_n(&req->answering_inline, false, __ATOMIC_SEQ_CST);
    if (!ran) {
        tf_request_unref(req);
        return false;
    }
    req->ran_inline = true;
    if (req->response)
        *result = queue_answer(server, req);
    else if (req->status) /* answered without a response: out of memory */
        *result = MHD_NO;
    else { /* no answer yet: wait for it as a dispatched request does (a resume
              that came since is kept by libmicrohttpd and cancels this suspend) */
        MHD_suspend_connection(req->connection);
        *result = MHD_YES;
    }
    return true;
}

enum MHD_Result tf_server_dispatch(struct tf_server *server, struct tf_request *req,
                                   tf_dispatch_fn to, void *backend)
{
    mark_dispatched(req);
    /* Suspend before dispatching: the backend may answer (and resume) at once. */
    MHD_suspend_connection(req->connection);
    tf_request_ref(req);
    if (to(backend, req) < 0) {
        tf_request_unref(req);
        if (req->native)
            tf_log_error("%s %s: out of memory; answered 503", req->method, req->log_target);
        else if (req->backend == PROF_BACKEND_WSGI && !server->cfg->workers)
            tf_log_error("%s %s: every app thread is busy and the queue is full (--queue-size); "
                         "answered 503", req->method, req->log_target);
        else
            tf_log_error("%s %s: no %s can take the request (%s); answered 503", req->method,
                         req->log_target, server->cfg->workers ? "worker" : "upstream transfer",
                         server->cfg->workers ? "none is running" : "out of memory");
        req->response = tf_error_response(503, "The server is overloaded; try again.", false,
                                          &req->bytes_out);
        req->status = 503;
        tf_request_resume(req);
    }
    return MHD_YES;
}

/* Files from a --static folder, answered on this I/O thread (sendfile).
 * close: at an upload's head, its body unread (only a 405 is given there). */
static enum MHD_Result serve_static(struct tf_request *req, const char *rest, bool close)
{
    size_t n = strcspn(rest, "?");
    char *path = strndup(rest, n);
    struct tf_static_answer a = { .file_fd = -1 };
    req->backend = PROF_BACKEND_STATIC;
    if (!path || tf_static_answer(req->route->dir, path, req, &a) < 0) {
        free(path);
        return tf_server_reply(req, 500, "Out of memory.", close);
    }
    free(path);
    if (close && a.response)
        MHD_add_response_header(a.response, MHD_HTTP_HEADER_CONNECTION, "close");
    req->t_ready = req->t_dispatched = tf_now_us();
    req->bytes_out = a.body_len;
    req->file_fd = a.file_fd;
    req->file_end = a.file_end;
    return tf_server_queue(req, a.status, a.response);
}

/* The backend that answers a request matched to route (NULL: no --route
 * matched). With --mirror only those default requests go to the primary
 * (and are copied to the other side): an explicit route is served as
 * without --mirror, so "--route /legacy=upstream" keeps its meaning. */
static enum tf_backend_kind answering_kind(const struct tf_server *server,
                                           const struct tf_route *route)
{
    if (route)
        return route->kind;
    return server->mirror ? tf_mirror_primary(server->mirror) : server->cfg->routes.fallback;
}

/* --- tracd's login paths: who is this client? ------------------------------- */

/* Does tracfront's auth still have to look at req, routed by r (an app request)? */
static bool auth_applies(struct tf_server *server, const struct tf_request *req,
                         const struct tf_route *r)
{
    return server->auth && !req->auth_checked && answering_kind(server, r) == TF_ROUTE_APP;
}

/* Check req here. MHD_YES to go on; else the challenge (401, 400 or 500)
 * is queued and *result is the access handler's answer. close: the body
 * was not read, so the connection must close after the answer. */
static bool login_refused(struct tf_server *server, struct tf_request *req, bool close,
                          enum MHD_Result *result)
{
    req->auth_checked = true;
    struct MHD_Response *challenge;
    unsigned st = tf_auth_check(server->auth, req, &challenge);
    if (!st)
        return false;
    if (challenge && close)
        MHD_add_response_header(challenge, MHD_HTTP_HEADER_CONNECTION, "close");
    *result = tf_server_queue(req, st, challenge);
    return true;
}

/* Away from the loop: the slow check, then back to it (PHASE_CHECKING). */
static void check_away(void *arg)
{
    struct tf_request *req = arg;
    struct tf_server *server = req->server;
    struct MHD_Response *challenge;
    unsigned st = tf_auth_check(server->auth, req, &challenge);
    req->response = challenge; /* the loop reads them after the resume */
    req->status = st;
    __atomic_sub_fetch(&server->logins_checking, 1, __ATOMIC_RELAXED);
    tf_request_resume(req);
    tf_request_unref(req);
}

/* Basic credentials: a bcrypt hash takes milliseconds to a second to check,
 * which on this thread would hold every connection of its loop (as an app
 * call would; Apache checks in the request's worker). So the check steps
 * away from the loop, as an app call does, at most --threads at once.
 * phase: PHASE_CHECKING from the final call, PHASE_HEAD_CHECKING from the
 * first one of an upload (its body is taken only once the check passed). */
static enum MHD_Result check_login_away(struct tf_server *server, struct tf_request *req,
                                        enum phase phase)
{
    req->auth_checked = true;
    unsigned limit = server->cfg->threads;
    struct tf_loop *loop = tf_loop_current();
    if (__atomic_add_fetch(&server->logins_checking, 1, __ATOMIC_RELAXED) > limit) {
        __atomic_sub_fetch(&server->logins_checking, 1, __ATOMIC_RELAXED);
        tf_log_error("%s %s: %u logins are being checked already (--threads); answered 503",
                     req->method, req->log_target, limit);
        return tf_server_reply(req, 503, "Too many logins are being checked; try again.",
                               phase == PHASE_HEAD_CHECKING);
    }
    req->phase = phase;
    MHD_suspend_connection(req->connection); /* a resume that comes first cancels it */
    tf_request_ref(req);
    if (!loop || tf_loop_step_away(loop, check_away, req) < 0)
        check_away(req); /* out of memory: here */
    return MHD_YES;
}

/* Is path prefix itself or below it ("/a/b" for "/a", not "/ab"), decoded
 * as the app sees it? */
static bool under_prefix(const char *path, const char *prefix)
{
    return tf_path_under_prefix(path, prefix, strlen(prefix), NULL);
}

/* The backend kind that serves a request routed to r here: TF_ROUTE_NONE
 * when none does (no route, or a front's control port, which has neither
 * app nor upstream: only the profile is served there). */
static enum tf_backend_kind serving_kind(const struct tf_server *server,
                                         const struct tf_route *r)
{
    const struct tf_backends *b = server->backends;
    enum tf_backend_kind kind = answering_kind(server, r);
    if ((kind == TF_ROUTE_APP && !b->app) || (kind == TF_ROUTE_UPSTREAM && !b->upstream))
        return TF_ROUTE_NONE;
    return kind;
}

/* Which route req takes, a request that is not the profiler's: sets
 * req->route and *rest (the path after its prefix). At the head of an
 * upload and at the final call alike. False when its dot segments lead out
 * of that route: the 400 (or 500, out of memory) is queued, closing, and
 * *result is the access handler's answer. */
static bool pick_route(struct tf_server *server, struct tf_request *req, const char **rest,
                       enum MHD_Result *result)
{
    req->route = tf_route_find(&server->cfg->routes, req->target, rest);
    if (tf_path_has_dots(req->target)) {
        /* The target goes on as received, and a server behind may resolve
         * its dot segments: they must not lead it out of the route its
         * prefix chose ("/old/../admin" to another route, or above "/"). */
        bool above_root;
        char *resolved = tf_path_resolve(req->target, &above_root);
        const char *ignored, *mount = server->cfg->mount;
        const struct tf_route *r = resolved ? tf_route_find(&server->cfg->routes, resolved,
                                                            &ignored) : NULL;
        bool resolved_ok = resolved != NULL;
        bool leaves_mount = resolved && !r && mount[0] && under_prefix(req->target, mount) &&
                            !under_prefix(resolved, mount);
        free(resolved);
        if (!resolved_ok) {
            *result = tf_server_reply(req, above_root ? 400 : 500, above_root
                                      ? "The path's dot segments climb above the root."
                                      : "Out of memory.", true);
            return false;
        }
        if (r != req->route || leaves_mount) {
            *result = tf_server_reply(req, 400, "The path's dot segments lead out of the route "
                                      "its prefix names.", true);
            return false;
        }
    }
    return true;
}

/* Final call of a request that is not the profiler's: to its backend. */
static enum MHD_Result route(struct tf_server *server, struct tf_request *req)
{
    const struct tf_backends *b = server->backends;
    const char *rest;
    enum MHD_Result result;
    if (!pick_route(server, req, &rest, &result))
        return result;
    enum tf_backend_kind kind = serving_kind(server, req->route);
    if (auth_applies(server, req, req->route)) {
        if (tf_auth_may_block(server->auth, req))
            return check_login_away(server, req, PHASE_CHECKING);
        if (login_refused(server, req, false, &result))
            return result;
    }
    if (server->mirror && !req->route) /* the other side gets a copy */
        tf_mirror_attach(server->mirror, req);
    switch (kind) {
    case TF_ROUTE_STATIC:
        return serve_static(req, rest, false);
    case TF_ROUTE_APP:
        req->backend = PROF_BACKEND_WSGI;
        if (b->app_inline && run_inline(server, req, b->app_inline, b->app_ctx, &result))
            return result;
        return tf_server_dispatch(server, req, b->app, b->app_ctx);
    case TF_ROUTE_UPSTREAM:
        req->backend = PROF_BACKEND_UPSTREAM;
        req->abort_on_hangup = true;
        return tf_server_dispatch(server, req, b->upstream, b->upstream_ctx);
    case TF_ROUTE_NONE:
        break;
    }
    return tf_server_reply(req, 404, NO_ROUTE_DETAIL, false);
}

/* The app answers nothing outside --mount (wsgi/run.c's 404): known from
 * the target alone. Not for --mirror's default requests that get a copy: the
 * other side gets it whatever the app answers. */
static bool outside_mount(const struct tf_server *server, const struct tf_request *req,
                          enum tf_backend_kind kind)
{
    const char *mount = server->cfg->mount;
    return kind == TF_ROUTE_APP && mount[0] &&
           !(server->mirror && !req->route && tf_mirror_copies(req)) &&
           !under_prefix(req->target, mount);
}

/* Its 404, timed as the app's own 404s are. */
static enum MHD_Result outside_mount_refused(struct tf_request *req)
{
    req->backend = PROF_BACKEND_WSGI;
    req->t_ready = req->t_dispatched = tf_now_us();
    return tf_server_reply(req, 404, TF_OUTSIDE_MOUNT_DETAIL, true);
}

/* A head that leaves less than TF_HEAD_ROOM_MIN of its connection's pool:
 * the 431, written to the socket itself (tf_connection_refuse: in what is
 * left libmicrohttpd may not build even its head, and would close the
 * connection with nothing sent), the socket lingering; queued as any
 * answer when an earlier one is still being sent. */
static enum MHD_Result refuse_no_room(struct tf_request *req)
{
    if (req->conn && tf_connection_refuse(req->conn, 431, NO_ROOM_DETAIL, req->is_head,
                                          &req->bytes_out) == 0) {
        req->status = 431;
        if (req->read_whole)
            req->conn->linger = false; /* nothing left to read (a pipelined request's bytes
                                          still linger: input_unread) */
        tf_daemon_log_explained(true); /* the client's mistake, not an internal error */
        return MHD_NO;
    }
    return tf_server_reply(req, 431, NO_ROOM_DETAIL, true);
}

/* The head of an upload (a body announced, not yet read): answer it now
 * when its method and target decide (RFC 9110 10.1.1), before its body is
 * asked for (no 100 Continue) or read, as nginx does; the connection then
 * closes, lingering. A static route takes GET and HEAD only (405); a path
 * no backend here serves, or the app's outside --mount, is a 404; the
 * profiler's pages refuse as tf_profile_refused says; and a login must
 * pass (401), checked away from the loop when slow. Whatever the app or
 * upstream would answer waits for the body: only they can decide. True
 * when the first call ends here, with *result. */
static bool answered_at_head(struct tf_server *server, struct tf_request *req,
                             enum MHD_Result *result)
{
    const char *rest;
    if (tf_head_used(req->connection) + TF_HEAD_ROOM_MIN > TF_CONNECTION_POOL) {
        *result = refuse_no_room(req); /* as body_done would */
        return true;
    }
    if (tf_profile_path_match(req->target, server->cfg->profile_path, &rest))
        return tf_profile_refused(server, req, rest, true, result);
    if (!pick_route(server, req, &rest, result))
        return true;
    enum tf_backend_kind kind = serving_kind(server, req->route);
    if (kind == TF_ROUTE_STATIC && !tf_static_takes_method(req))
        *result = serve_static(req, rest, true);
    else if (kind == TF_ROUTE_NONE)
        *result = tf_server_reply(req, 404, NO_ROUTE_DETAIL, true);
    else if (outside_mount(server, req, kind))
        *result = outside_mount_refused(req);
    else if (!auth_applies(server, req, req->route))
        return false;
    else if (tf_auth_may_block(server->auth, req))
        *result = check_login_away(server, req, PHASE_HEAD_CHECKING);
    else
        return login_refused(server, req, true, result);
    return true;
}

static struct tf_daemon *daemon_of(struct tf_server *server, struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_DAEMON);
    for (unsigned i = 0; ci && i < server->n_daemons; i++)
        if (server->daemons[i].mhd == ci->daemon)
            return &server->daemons[i];
    return &server->daemons[0]; /* not reached: every connection is one of ours */
}

/* Resumed after check_away: answer its challenge (close: the body was not
 * read), or go on (head: to the body; else to the app). */
static enum MHD_Result login_checked(struct tf_server *server, struct tf_request *req, bool head)
{
    if (!req->status) {
        if (!head)
            return route(server, req);
        tf_watch_add(req->daemon, req, WATCH_BODY_IN);
        req->phase = PHASE_BODY;
        return MHD_YES;
    }
    struct MHD_Response *challenge = req->response;
    req->response = NULL;
    if (challenge && head)
        MHD_add_response_header(challenge, MHD_HTTP_HEADER_CONNECTION, "close");
    return tf_server_queue(req, req->status, challenge);
}

/* A chunked body TF_DISCARD_MAX past --max-body: the 413 goes out now
 * (tf_connection_refuse) and the request ends, the socket lingering. */
static enum MHD_Result refuse_mid_body(struct tf_server *server, struct tf_request *req)
{
    bool answered = req->conn && tf_connection_refuse(req->conn, 413, MAX_BODY_DETAIL,
                                                      req->is_head, &req->bytes_out) == 0;
    if (answered)
        req->status = 413;
    tf_log_info("%s %s: the chunked body went on past --max-body (%" PRIu64 " bytes) by more "
                "than %u MiB; %s", req->method, req->log_target, server->cfg->max_body,
                TF_DISCARD_MAX >> 20, answered ? "answered 413 without reading the rest"
                                               : "connection closed");
    tf_daemon_log_explained(true);
    return MHD_NO;
}

/* The first access-handler call: the head is whole. In flight from here:
 * a request whose head never completes (a slowloris) must not hold up a
 * graceful stop. */
static enum MHD_Result take_head(struct tf_server *server, struct tf_request *req,
                                 struct MHD_Connection *connection, const char *method,
                                 const char *version)
{
    __atomic_add_fetch(&server->in_flight, 1, __ATOMIC_SEQ_CST);
    req->connection = connection;
    req->daemon = req->conn ? req->conn->daemon : daemon_of(server, connection);
    tf_connection_head_done(req->conn);
    struct tf_framing framing;
    int st = tf_head_take(req, method, version, &framing);
    if (st)
        return tf_server_reply(req, (unsigned)st, NULL, true);
    uint64_t max = server->cfg->max_body;
    if (max && framing.content_length > 0 && (uint64_t)framing.content_length > max)
        return tf_server_reply(req, 413, MAX_BODY_DETAIL, true);
    /* A request already coming when the stop began is in flight and
     * goes on (its body may still be arriving); a later one is not. */
    if (__atomic_load_n(&server->stopping, __ATOMIC_SEQ_CST))
        return tf_server_reply(req, 503, "The server is shutting down.", true);
    req->has_body = framing.content_length >= 0 || framing.chunked;
    if (framing.content_length > 0 || framing.chunked) {
        /* A refused upload is answered before its body is read (and
         * Expect: 100-continue gets the refusal, not a 100). A slow login
         * check suspends the connection in this first call, which
         * libmicrohttpd makes again after the resume (login_checked),
         * still before the body. An empty one (Content-Length: 0) is
         * refused as a GET is, at the final call, keeping its connection. */
        enum MHD_Result answered;
        if (answered_at_head(server, req, &answered))
            return answered;
        tf_watch_add(req->daemon, req, WATCH_BODY_IN);
    }
    /* Even without a body, answer only from the final call: libmicrohttpd
     * closes the connection after a response queued in the first one. */
    req->phase = PHASE_BODY;
    return MHD_YES;
}

/* The final access-handler call: the body has ended. Refuse what it left
 * wrong, else to the profile's pages or the route's backend. */
static enum MHD_Result body_done(struct tf_server *server, struct tf_request *req)
{
    tf_watch_remove(req);
    req->read_whole = true;
    if (req->body_too_large)
        return tf_server_reply(req, 413, MAX_BODY_DETAIL, true);
    if (req->body_failed)
        return tf_server_reply(req, 500, "The request body could not be stored.", true);
    req->head_used = tf_head_used(req->connection); /* once: dispatch keeps it */
    if (req->head_used + TF_HEAD_ROOM_MIN > TF_CONNECTION_POOL) /* before any backend */
        return refuse_no_room(req);
    const char *sub;
    if (tf_profile_path_match(req->target, server->cfg->profile_path, &sub))
        return tf_profile_serve(server, req, sub);
    return route(server, req);
}

/* A piece of the body (*size bytes, all taken): spooled, or dropped past
 * --max-body. */
static enum MHD_Result take_body_chunk(struct tf_server *server, struct tf_request *req,
                                       const char *data, size_t *size)
{
    if (req->body_too_large ||
        (server->cfg->max_body && req->body.size + *size > server->cfg->max_body)) {
        /* A chunked body past the limit: libmicrohttpd 0.9.75 cannot answer
         * before the body ends, so drop what arrives (no memory grows) and
         * give up on a client that keeps sending far past the limit. */
        req->body_too_large = true;
        req->discarded += *size;
        *size = 0;
        return req->discarded > TF_DISCARD_MAX ? refuse_mid_body(server, req) : MHD_YES;
    }
    if (!req->body_failed && tf_spool_append(&req->body, data, *size) < 0) {
        int err = errno; /* past 256 KiB the body goes to a file */
        tf_log_error("%s %s: cannot store the request body%s%s: %s", req->method,
                     req->log_target, err == ENOMEM ? "" : " in a temporary file in ",
                     err == ENOMEM ? "" : tf_tempdir(), strerror(err));
        req->body_failed = true; /* answered at the final call: MHD cannot answer mid-body */
    }
    *size = 0;
    return MHD_YES;
}

/* Resumed after tf_server_dispatch (or an inline run's suspend): send the
 * backend's answer, unless the client hung up meanwhile. */
static enum MHD_Result answer_resumed(struct tf_server *server, struct tf_request *req)
{
    tf_request_unwatch_hangup(req); /* libmicrohttpd's again */
    if (!req->response) { /* resumed without a response: the client hung up (the backend
                             logged it), or out of memory */
        if (tf_request_hung_up(req))
            tf_daemon_log_explained(true);
        return req->status ? MHD_NO : MHD_YES;
    }
    if (tf_request_hung_up(req)) { /* after its answer came, before its head went: as
                                      nginx, 499, nothing sent */
        pthread_mutex_lock(&req->lock);
        struct MHD_Response *unsent = req->response;
        req->response = NULL;
        pthread_mutex_unlock(&req->lock);
        MHD_destroy_response(unsent);
        req->status = 499;
        tf_daemon_log_explained(true);
        return MHD_NO;
    }
    return queue_answer(server, req);
}

enum MHD_Result tf_server_on_request(void *cls, struct MHD_Connection *connection,
                                     const char *url, const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
    (void)url;
    struct tf_server *server = cls;
    struct tf_request *req = *con_cls;
    if (!req)
        return MHD_NO; /* out of memory in the URI callback */
    switch ((enum phase)req->phase) {
    case PHASE_NEW:
        return take_head(server, req, connection, method, version);
    case PHASE_BODY:
        /* The final call has no data (NULL). libmicrohttpd 0.9.75 also makes an
         * empty call with data: after its 100 Continue to a request with no
         * body, when the next request is already read. An answer queued there
         * is refused (the connection then closed with none): not the end. */
        if (*upload_data_size == 0 && upload_data)
            return MHD_YES;
        if (*upload_data_size == 0)
            return body_done(server, req);
        return take_body_chunk(server, req, upload_data, upload_data_size);
    case PHASE_HEAD_CHECKING:
    case PHASE_CHECKING:
        *upload_data_size = 0;
        return login_checked(server, req, req->phase == PHASE_HEAD_CHECKING);
    case PHASE_DISPATCHED:
        return answer_resumed(server, req);
    case PHASE_RESPONDED:
        *upload_data_size = 0; /* body of a refused request: discard */
        return MHD_YES;
    }
    return MHD_NO;
}

/* While stopping, a connection accepted before the listening socket was
 * closed (tf_server_begin_stop) is closed unanswered. */
enum MHD_Result tf_server_on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    struct tf_server *server = cls;
    return __atomic_load_n(&server->stopping, __ATOMIC_SEQ_CST) ? MHD_NO : MHD_YES;
}

void *tf_server_on_uri(void *cls, const char *uri, struct MHD_Connection *connection)
{
    struct tf_server *server = cls;
    struct tf_request *req = tf_request_new(server, uri); /* before the cut */
    if (!req)
        return NULL;
    req->wire_target = uri;
    req->wire_target_len = uri ? strlen(uri) : 0;
    if (uri && tf_head_cut_long_query(uri))
        req->refuse_status = 414;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if ((req->conn = ci ? ci->socket_context : NULL)) {
        req->conn->req = req;
        req->pin = req->conn->pin;
        tf_connection_request_line(req->conn);
    }
    tf_head_set_remote(req, connection); /* here, so a request the HTTP layer refuses is logged
                                    with its client too; after req->conn, which keeps it */
    return req;
}

/* A client connection's state (connection.h) lives while it does; with
 * --upstream-pin it owns one upstream link. */
void tf_server_on_connection(void *cls, struct MHD_Connection *connection,
                             void **socket_context, enum MHD_ConnectionNotificationCode code)
{
    struct tf_server *server = cls;
    struct tf_connection *conn = *socket_context;
    if (code != MHD_CONNECTION_NOTIFY_STARTED) {
        __atomic_sub_fetch(&server->open_connections, 1, __ATOMIC_RELAXED);
        tf_conn_memory_closed();
        if (conn && conn->pin)
            tf_upstream_pin_release(conn->pin);
        if (conn)
            tf_connection_end(conn);
        *socket_context = NULL;
        return;
    }
    int open = __atomic_add_fetch(&server->open_connections, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&server->started_connections, 1, __ATOMIC_RELAXED);
    tf_conn_memory_opened();
    tf_limits_connection_started(server, open);
    conn = tf_connection_start(daemon_of(server, connection), connection, tf_now_us());
    if (conn && server->backends->pins)
        conn->pin = tf_upstream_pin_new(server->backends->pins);
    *socket_context = conn;
}
