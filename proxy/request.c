/* request.c — one request's lifetime, its headers, the answer handed to the
 * I/O thread, and the --mirror tap (see request.h). The streamed-body
 * channel is in body_channel.c. */
#include "proxy/request.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/log.h"
#include "proxy/platform.h"

static uint64_t last_id; /* atomic */

void tf_request_id_base(uint64_t base)
{
    __atomic_store_n(&last_id, base, __ATOMIC_RELAXED);
}

/* req->room's waits are timed by the monotonic clock (wait_for_reader): a
 * wall clock set back does not stretch them. */
static pthread_condattr_t room_attr;

__attribute__((constructor)) static void room_attr_init(void)
{
    pthread_condattr_init(&room_attr);
    pthread_condattr_setclock(&room_attr, CLOCK_MONOTONIC);
}

struct tf_request *tf_request_new(struct tf_server *server, const char *target)
{
    struct tf_request *req = tf_zalloc(sizeof(*req));
    if (!req)
        return NULL;
    if (!target)
        target = "";
    size_t n = strlen(target) + 1; /* a short one in the request's own block */
    char *copy = n <= sizeof(req->target_room) ? req->target_room : malloc(n);
    if (!copy || tf_request_target_set(req, memcpy(copy, target, n)) < 0) {
        if (copy != req->target_room)
            free(copy);
        free(req);
        return NULL;
    }
    req->server = server;
    req->id = __atomic_add_fetch(&last_id, 1, __ATOMIC_RELAXED);
    req->refs = 1;
    req->t_received = tf_now_us();
    tf_spool_init(&req->body);
    req->spill_fd = -1;
    req->file_fd = -1;
    req->hangup_fd = -1;
    pthread_mutex_init(&req->lock, NULL);
    pthread_cond_init(&req->room, &room_attr);
    return req;
}

static char no_log_target[] = "-";

static void free_log_target(struct tf_request *req)
{
    if (req->log_target != req->target && req->log_target != no_log_target)
        free(req->log_target);
    req->log_target = NULL;
}

int tf_request_target_set(struct tf_request *req, char *target)
{
    free_log_target(req);
    req->target = target;
    req->log_target = tf_log_quote(target);
    if (req->log_target)
        return 0;
    req->log_target = no_log_target;
    return -1;
}

void tf_request_ref(struct tf_request *req)
{
    __atomic_add_fetch(&req->refs, 1, __ATOMIC_RELAXED);
}

void tf_request_unref(struct tf_request *req)
{
    if (__atomic_sub_fetch(&req->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (req->tap && !req->tap_ended) /* a backend that never answered */
        tf_request_tap_end(req, req->status, true);
    tf_request_drop_chunks(req);
    if (req->response)
        MHD_destroy_response(req->response);
    tf_spool_free(&req->body);
    if (req->spill_fd >= 0)
        close(req->spill_fd);
    pthread_mutex_destroy(&req->lock);
    pthread_cond_destroy(&req->room);
    free_log_target(req);
    if (req->target != req->target_room)
        free(req->target);
    if (req->sent_target != req->target_room)
        free(req->sent_target);
    if (req->method != req->line_room)
        free(req->method); /* and version */
    free(req->headers); /* and header_store */
    free(req->remote_user);
    free(req);
}

int tf_request_set_line(struct tf_request *req, const char *method, const char *version)
{
    size_t m = strlen(method) + 1, v = strlen(version) + 1;
    char *block = m + v <= sizeof(req->line_room) ? req->line_room : malloc(m + v);
    if (!block)
        return -1;
    if (req->method != req->line_room)
        free(req->method);
    req->method = memcpy(block, method, m);
    req->version = memcpy(block + m, version, v);
    return 0;
}

int tf_request_alloc_headers(struct tf_request *req, size_t n, size_t bytes)
{
    struct tf_header *block = tf_zalloc(n * sizeof(*block) + (bytes ? bytes : 1));
    if (!block)
        return -1;
    free(req->headers);
    req->headers = block;
    req->header_store = (char *)(block + n);
    req->n_headers = 0;
    return 0;
}

struct tf_request *tf_request_clone_detached(const struct tf_request *req)
{
    struct tf_request *copy = tf_request_new(req->server, req->target);
    if (!copy)
        return NULL;
    size_t store = 0;
    for (size_t i = 0; i < req->n_headers; i++)
        store += req->headers[i].name_len + req->headers[i].value_len + 2;
    if (tf_request_set_line(copy, req->method, req->version) < 0 ||
        tf_request_alloc_headers(copy, req->n_headers, store) < 0) {
        tf_request_unref(copy);
        return NULL;
    }
    char *p = copy->header_store;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct tf_header *h = &req->headers[i];
        struct tf_header *c = &copy->headers[copy->n_headers++];
        c->name = memcpy(p, h->name, h->name_len + 1);
        p += h->name_len + 1;
        c->value = memcpy(p, h->value, h->value_len + 1);
        p += h->value_len + 1;
        c->name_len = h->name_len;
        c->value_len = h->value_len;
    }
    /* A GET may have a body (a search API): the copy sends it too, as
     * nginx's mirror does. */
    if (req->has_body && tf_spool_share(&copy->body, &req->body) < 0) {
        tf_request_unref(copy);
        return NULL;
    }
    copy->has_body = req->has_body;
    copy->http11 = req->http11;
    copy->is_head = req->is_head;
    memcpy(copy->remote_addr, req->remote_addr, sizeof(copy->remote_addr));
    copy->remote_port = req->remote_port;
    copy->route = req->route;
    copy->t_dispatched = tf_now_us();
    return copy;
}

/* --- the tap ---------------------------------------------------------------- */

void tf_request_tap_body(struct tf_request *req, const char *data, size_t len)
{
    if (!req->tap || !len) /* set before the request runs, never changed */
        return;
    /* under the lock: write() from another thread of the app may race the
     * tap's end by the task's own thread, after which its pair may be freed */
    pthread_mutex_lock(&req->lock);
    if (!req->tap_ended)
        tf_body_hash_feed(&req->tap->body, data, len);
    pthread_mutex_unlock(&req->lock);
}

void tf_request_tap_failed(struct tf_request *req, const char *why)
{
    if (!req->tap || req->tap_ended) /* the producer's thread ends it: no lock needed */
        return;
    req->tap->error = true; /* even when an error page answers the client */
    snprintf(req->tap->why, sizeof(req->tap->why), "%s", why);
}

void tf_request_tap_end(struct tf_request *req, unsigned status, bool error)
{
    struct tf_tap *tap = req->tap;
    pthread_mutex_lock(&req->lock);
    bool first = tap && !req->tap_ended;
    req->tap_ended = true;
    if (first) { /* under the lock: tf_request_connection_closed may pass the tap on */
        if (status)
            tap->status = status;
        tap->error |= error;
        if (!tap->t_end)
            tap->t_end = tf_now_us();
        tap->abandoned = req->client_left || req->client_hung_up;
    }
    /* A client's answer may still be cut short: whether it got it whole is
     * known when its connection is done with it (tf_request_connection_closed) */
    bool known = !req->connection || req->client_gone;
    pthread_mutex_unlock(&req->lock);
    if (first && known)
        tap->done(tap);
}

int tf_request_tap_file_prepare(struct tf_request *req, int fd)
{
    if (!req->tap)
        return -1;
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) {
        tf_log_error("%s %s: cannot hash the file for --mirror (%m); compared as failed",
                     req->method, req->log_target);
        req->tap->error = true;
        return -1;
    }
    pthread_mutex_lock(&req->lock);
    req->tap_hashing = true;
    pthread_mutex_unlock(&req->lock);
    return copy;
}

static bool client_left(struct tf_request *req)
{
    if (!req->connection) /* a --mirror copy: until its pair stops it */
        return tf_request_client_gone(req);
    pthread_mutex_lock(&req->lock);
    bool left = req->client_left;
    pthread_mutex_unlock(&req->lock);
    return left;
}

void tf_request_tap_file(struct tf_request *req, int fd, uint64_t offset, uint64_t size)
{
    char buf[64 * 1024];
    bool whole = true;
    while (size > 0 && whole) {
        if (client_left(req)) { /* nobody needs the hash now */
            whole = false;
            break;
        }
        ssize_t got = pread(fd, buf, size < sizeof(buf) ? (size_t)size : sizeof(buf),
                            (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        whole = got > 0;
        if (whole) { /* the tap is ours until it ends: the answer left it to us */
            tf_body_hash_feed(&req->tap->body, buf, (size_t)got);
            offset += (uint64_t)got;
            size -= (uint64_t)got;
        }
    }
    close(fd);
    tf_request_tap_end(req, 0, !whole);
}

const char *tf_request_header_next(const struct tf_request *req, const char *name,
                                   size_t *pos)
{
    for (; *pos < req->n_headers; (*pos)++)
        if (!strcasecmp(req->headers[*pos].name, name))
            return req->headers[(*pos)++].value;
    return NULL;
}

const char *tf_request_header(const struct tf_request *req, const char *name)
{
    size_t pos = 0;
    return tf_request_header_next(req, name, &pos);
}

/* What the tap keeps of the answer's head: its Content-Encoding (a body
 * gzipped on one side only differs for that reason alone). */
static void tap_head(struct tf_tap *tap, struct MHD_Response *response)
{
    const char *encoding = response ? MHD_get_response_header(response, "Content-Encoding")
                                    : NULL;
    snprintf(tap->encoding, sizeof(tap->encoding), "%s", encoding ? encoding : "");
}

void tf_request_respond(struct tf_request *req, struct MHD_Response *response, unsigned status)
{
    if (req->tap) {
        tap_head(req->tap, response);
        pthread_mutex_lock(&req->lock);
        bool streaming = req->tap_streaming && response;
        bool hashing = req->tap_hashing && response;
        pthread_mutex_unlock(&req->lock);
        req->tap->status = status;
        if (hashing) /* all produced; the hash follows (tf_request_tap_file) */
            req->tap->t_end = tf_now_us();
        else if (!streaming) /* the whole body was shown to the tap already */
            tf_request_tap_end(req, status, response == NULL);
    }
    req->status = status;
    pthread_mutex_lock(&req->lock);
    /* Nobody to answer: a mirror copy, or a client gone (its connection
     * completed, so this answer would never be queued, and a streamed one
     * holds a reference to req: neither would ever be freed). */
    bool nobody = !req->connection || req->client_gone;
    if (!nobody)
        req->response = response;
    pthread_mutex_unlock(&req->lock);
    if (nobody) {
        if (response)
            MHD_destroy_response(response);
        return;
    }
    tf_request_resume(req);
}

size_t tf_request_head_size(size_t bytes)
{
    return bytes + TF_HEAD_ADDED;
}

bool tf_request_head_fits(const struct tf_request *req, size_t bytes)
{
    return req->head_used < TF_CONNECTION_POOL &&
           tf_request_head_size(bytes) <= TF_CONNECTION_POOL - req->head_used;
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *name,
                                       const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(name) + strlen(value) + 4;
    return MHD_YES;
}

size_t tf_response_headers_size(struct MHD_Response *r)
{
    size_t bytes = 0;
    MHD_get_response_headers(r, add_header_size, &bytes);
    return bytes;
}

enum MHD_Result tf_response_add_header(struct MHD_Response *r, const char *name,
                                       const char *value)
{
    return MHD_add_response_header(r, name, *value ? value : " ");
}
