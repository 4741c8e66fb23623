/* request_end.c — the end of a request (see server_internal.h): its access
 * log line, its latency sample, whether its connection lingers, and the
 * release of its state, the one place that frees it. */
#include "proxy/server_internal.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "proxy/connection.h"
#include "proxy/log.h"
#include "proxy/platform.h"
#include "proxy/request.h"
#include "profiler/latency.h"

/* The status of a request no backend answered: the one libmicrohttpd sent
 * itself (431, 400, 413...), 408 for a request that stopped coming until
 * --idle-timeout or whose head missed --header-timeout (as Apache and nginx
 * log them), else 400 (the client left mid-request; nginx logs such a
 * request 400 too). */
static unsigned status_unanswered(const struct tf_request *req, struct MHD_Connection *connection,
                                  enum MHD_RequestTerminationCode toe)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_HTTP_STATUS);
    if (ci && ci->http_status)
        return ci->http_status;
    if (req->conn && req->conn->head_timed_out)
        return 408;
    return toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? 408 : 400;
}

/* Did the request announce a body (a Content-Length but 0, or a
 * Transfer-Encoding, valid or not)? Answered before it was read, its client
 * may still be sending it. */
static bool body_announced(struct MHD_Connection *connection)
{
    const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    return (length && strcmp(length, "0") != 0) ||
           MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                       MHD_HTTP_HEADER_TRANSFER_ENCODING);
}

/* Was the request answered? libmicrohttpd ends its own refusals (400, 413,
 * 431...) "with error", after the answer was sent. */
static bool answered(struct MHD_Connection *connection, enum MHD_RequestTerminationCode toe)
{
    return toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ||
           (toe == MHD_REQUEST_TERMINATED_WITH_ERROR &&
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_HTTP_STATUS));
}

/* libmicrohttpd could not build req's answer's head in what the request
 * left of its connection's pool: bytes read with its head (a pipelined
 * request, blank lines before it) take some too, and tf_head_used does not
 * count them. Nothing was
 * sent: logged so, and an answer that was no error is logged 500. */
static void head_not_sent(struct tf_request *req)
{
    tf_log_error("%s %s: the answer's head (%u) did not fit what the request left of the "
                 "connection's %u bytes (bytes read with it take room too: a pipelined "
                 "request, blank lines before it); connection closed with nothing sent", req->method ? req->method : "-",
                 req->log_target,
                 req->status, TF_CONNECTION_POOL);
    if (req->status < 400)
        req->status = 500;
    req->bytes_out = 0;
}

static void write_access_log(const struct tf_request *req, struct MHD_Connection *connection,
                             enum MHD_RequestTerminationCode toe, uint64_t now)
{
    struct tf_access_entry e = {
        .remote_addr = req->remote_addr[0] ? req->remote_addr : "-",
        .method = req->method ? req->method : "-",
        .target = req->sent_target ? req->sent_target : req->target,
        .version = req->version ? req->version : "-",
        .status = req->status ? req->status : status_unanswered(req, connection, toe),
        .bytes = req->bytes_out,
        .referer = tf_request_header(req, "Referer"),
        .user_agent = tf_request_header(req, "User-Agent"),
        .remote_user = req->remote_user,
        .duration_us = now - req->t_received,
    };
    tf_log_access(&e);
}

void tf_server_on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    struct tf_server *server = cls;
    struct tf_request *req = *con_cls;
    bool head_failed = tf_daemon_head_failed(); /* its line came before this call */
    if (!req) {
        if (head_failed)
            tf_log_error("http: an answer's head did not fit its connection's pool; "
                         "connection closed with nothing sent");
        return;
    }
    *con_cls = NULL;
    tf_request_unwatch_hangup(req); /* its socket closes next */
    tf_daemon_log_explained(false); /* its line, if any, came before this call */
    if (head_failed)
        head_not_sent(req);
    uint64_t now = tf_now_us();
    if (tf_log_access_enabled() && !server->control) /* clients' requests only */
        write_access_log(req, connection, toe, now);
    uint64_t dispatched = __atomic_load_n(&req->t_dispatched, __ATOMIC_RELAXED); /* pool.c */
    if (dispatched && !req->native && server->cfg->profile_latency) {
        uint64_t up_connect = 0, up_first = 0, up_total = 0; /* only the upstream sets them */
        if (req->backend == PROF_BACKEND_UPSTREAM) {
            pthread_mutex_lock(&req->lock); /* the upstream's lane writes its timings under it */
            up_connect = req->upstream_connect_us, up_first = req->upstream_first_byte_us,
            up_total = req->upstream_total_us;
            pthread_mutex_unlock(&req->lock);
        }
        struct prof_sample sample = {
            .id = req->id, .method = req->method, .target = req->target,
            .backend = (enum prof_backend)req->backend,
            .status = req->status,
            .ran_inline = req->ran_inline,
            .routed = req->route != NULL,
            .t_received = req->t_received, .t_ready = req->t_ready, .t_dispatched = dispatched,
            .t_first_byte = req->t_first_byte ? req->t_first_byte : req->t_responded,
            .t_done = now,
            .upstream_connect_us = up_connect,
            .upstream_first_byte_us = up_first,
            .upstream_total_us = up_total,
        };
        prof_latency_record(&sample);
    }
    tf_watch_remove(req);
    if (req->conn) { /* the next request's head is due from now */
        req->conn->req = NULL;
        if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
            tf_connection_request_done(req->conn, now);
        if (!req->read_whole && answered(connection, toe) && body_announced(connection))
            req->conn->linger = true; /* the client may still be sending it */
    }
    tf_request_connection_closed(req, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (req->connection) /* reached the access handler: counted in flight */
        __atomic_sub_fetch(&server->in_flight, 1, __ATOMIC_RELAXED);
    tf_request_unref(req);
}
