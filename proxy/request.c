/* request.c — request lifetime and the streamed-body channel (see request.h).
 * The channel is a linked list of copied chunks between one producer (an app
 * thread) and one reader (libmicrohttpd's content-reader callback on an I/O
 * thread). An empty queue suspends the connection instead of busy-waiting; a
 * full one stops the producer, so a slow reader holds memory, not a thread. */
#include "proxy/request.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/platform.h"

struct tf_request *tf_request_new(struct tf_server *server, const char *target)
{
    struct tf_request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->target = strdup(target ? target : "");
    if (!req->target) {
        free(req);
        return NULL;
    }
    req->server = server;
    req->refs = 1;
    req->t_received = tf_now_us();
    tf_spool_init(&req->body);
    pthread_mutex_init(&req->lock, NULL);
    pthread_cond_init(&req->drained, NULL);
    return req;
}

void tf_request_ref(struct tf_request *req)
{
    __atomic_add_fetch(&req->refs, 1, __ATOMIC_RELAXED);
}

static void free_chunks(struct tf_request *req)
{
    struct tf_chunk *c = req->head;
    while (c) {
        struct tf_chunk *next = c->next;
        free(c);
        c = next;
    }
    req->head = req->tail = NULL;
    req->queued = 0;
}

void tf_request_unref(struct tf_request *req)
{
    if (__atomic_sub_fetch(&req->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free_chunks(req);
    if (req->response)
        MHD_destroy_response(req->response);
    tf_spool_free(&req->body);
    pthread_mutex_destroy(&req->lock);
    pthread_cond_destroy(&req->drained);
    free(req->target);
    free(req->method);
    free(req->version);
    free(req->headers);
    free(req->header_store);
    free(req);
}

const char *tf_request_header(const struct tf_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (!strcasecmp(req->headers[i].name, name))
            return req->headers[i].value;
    return NULL;
}

void tf_request_respond(struct tf_request *req, struct MHD_Response *response, unsigned status)
{
    req->response = response;
    req->status = status;
    MHD_resume_connection(req->connection);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct tf_request *req = cls;
    size_t n = 0;
    bool wake = false;
    pthread_mutex_lock(&req->lock);
    while (n < max && req->head) {
        struct tf_chunk *c = req->head;
        size_t take = c->len - c->off;
        if (take > max - n)
            take = max - n;
        memcpy(buf + n, c->data + c->off, take);
        n += take;
        c->off += take;
        if (c->off == c->len) {
            req->head = c->next;
            if (!req->head)
                req->tail = NULL;
            free(c);
        }
    }
    if (n == 0) {
        ssize_t rc = 0;
        if (req->stream_error)
            rc = MHD_CONTENT_READER_END_WITH_ERROR;
        else if (req->stream_end)
            rc = MHD_CONTENT_READER_END_OF_STREAM;
        else {
            req->reader_suspended = true;
            MHD_suspend_connection(req->connection);
        }
        if (rc && !req->t_last_byte)
            req->t_last_byte = tf_now_us();
        pthread_mutex_unlock(&req->lock);
        return rc;
    }
    if (!req->t_first_byte)
        req->t_first_byte = tf_now_us();
    req->queued -= n;
    req->bytes_out += n;
    if (req->queued <= TF_CHANNEL_LOW) {
        pthread_cond_broadcast(&req->drained);
        if (req->producer_parked) {
            req->producer_parked = false;
            wake = true;
        }
    }
    pthread_mutex_unlock(&req->lock);
    if (wake)
        req->producer_wake(req);
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    tf_request_unref(cls);
}

struct MHD_Response *tf_request_stream_response(struct tf_request *req, uint64_t size)
{
    struct MHD_Response *r = MHD_create_response_from_callback(
        size == UINT64_MAX ? MHD_SIZE_UNKNOWN : size, 64 * 1024, stream_read, req, stream_free);
    if (r)
        tf_request_ref(req);
    return r;
}

int tf_request_push(struct tf_request *req, const char *data, size_t len, bool *over_high)
{
    *over_high = false;
    if (len == 0)
        return tf_request_client_gone(req) ? -1 : 0;
    struct tf_chunk *c = malloc(sizeof(*c) + len);
    if (!c)
        return -1;
    c->next = NULL;
    c->len = len;
    c->off = 0;
    memcpy(c->data, data, len);
    pthread_mutex_lock(&req->lock);
    if (req->client_gone) {
        pthread_mutex_unlock(&req->lock);
        free(c);
        return -1;
    }
    if (req->tail)
        req->tail->next = c;
    else
        req->head = c;
    req->tail = c;
    req->queued += len;
    *over_high = req->queued >= TF_CHANNEL_HIGH;
    bool resume = req->reader_suspended;
    req->reader_suspended = false;
    pthread_mutex_unlock(&req->lock);
    if (resume)
        MHD_resume_connection(req->connection);
    return 0;
}

void tf_request_finish(struct tf_request *req, bool error)
{
    pthread_mutex_lock(&req->lock);
    req->stream_end = true;
    req->stream_error = error;
    bool resume = req->reader_suspended;
    req->reader_suspended = false;
    pthread_mutex_unlock(&req->lock);
    if (resume)
        MHD_resume_connection(req->connection);
}

int tf_request_wait_drained(struct tf_request *req)
{
    pthread_mutex_lock(&req->lock);
    while (req->queued > TF_CHANNEL_LOW && !req->client_gone)
        pthread_cond_wait(&req->drained, &req->lock);
    int rc = req->client_gone ? -1 : 0;
    pthread_mutex_unlock(&req->lock);
    return rc;
}

bool tf_request_park(struct tf_request *req)
{
    pthread_mutex_lock(&req->lock);
    bool parked = !req->client_gone && req->queued > TF_CHANNEL_LOW;
    req->producer_parked = parked;
    pthread_mutex_unlock(&req->lock);
    return parked;
}

bool tf_request_client_gone(struct tf_request *req)
{
    pthread_mutex_lock(&req->lock);
    bool gone = req->client_gone;
    pthread_mutex_unlock(&req->lock);
    return gone;
}

void tf_request_connection_closed(struct tf_request *req)
{
    pthread_mutex_lock(&req->lock);
    req->client_gone = true;
    req->reader_suspended = false;
    free_chunks(req);
    pthread_cond_broadcast(&req->drained);
    bool wake = req->producer_parked;
    req->producer_parked = false;
    pthread_mutex_unlock(&req->lock);
    if (wake)
        req->producer_wake(req);
}
