/* request_head.c — a request's head, taken from libmicrohttpd once its
 * headers are complete (see server_internal.h): the checks libmicrohttpd
 * does not make (RFC 9112), the headers copied into the request, the
 * client's address, an absolute-form target made origin-form. */
#include "proxy/server_internal.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "proxy/connection.h"
#include "proxy/head_layout.h"
#include "proxy/http_check.h"
#include "proxy/request.h"

struct header_walk {
    struct tf_request *req;
    struct tf_framing framing;
    struct tf_head_layout layout;
    bool check_layout;
    int status;          /* first failing check */
    size_t count, bytes; /* pass 1 */
    char *store;         /* pass 2 */
    const char *host;    /* an absolute-form target's authority (not 0-ended) */
    size_t host_len;
};

/* A field value without the whitespace after it (RFC 9112 5: OWS is not
 * part of the value; libmicrohttpd drops only the leading one). */
static size_t value_length(const char *value, size_t value_size)
{
    while (value_size && (value[value_size - 1] == ' ' || value[value_size - 1] == '\t'))
        value_size--;
    return value_size;
}

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct header_walk *w = cls;
    if (w->check_layout)
        tf_head_layout_header(&w->layout, key, key_size, value, value_size);
    if (!value)
        value = "", value_size = 0;
    size_t trimmed = value_length(value, value_size);
    if (trimmed != value_size && !w->status &&
        ((key_size == 17 && !strncasecmp(key, "Transfer-Encoding", 17)) ||
         (key_size == 14 && !strncasecmp(key, "Content-Length", 14))))
        w->status = 400; /* libmicrohttpd frames the body by the raw value: it would not
                            read "chunked " as chunked, and wait for the close */
    value_size = trimmed;
    int st = tf_check_header(&w->framing, key, key_size, value, value_size);
    if (st && !w->status)
        w->status = st;
    w->count++;
    w->bytes += key_size + value_size + 2;
    return MHD_YES;
}

static void store_header(struct header_walk *w, const char *key, size_t key_size,
                         const char *value, size_t value_size)
{
    struct tf_request *req = w->req;
    struct tf_header *h = &req->headers[req->n_headers++];
    memcpy(w->store, key, key_size);
    w->store[key_size] = 0;
    h->name = w->store;
    h->name_len = key_size;
    w->store += key_size + 1;
    memcpy(w->store, value, value_size);
    w->store[value_size] = 0;
    h->value = w->store;
    h->value_len = value_size;
    w->store += value_size + 1;
}

static enum MHD_Result copy_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct header_walk *w = cls;
    if (w->host && key_size == 4 && !strncasecmp(key, "Host", 4))
        return MHD_YES; /* the target's authority stands in for it */
    if (!value)
        value = "", value_size = 0;
    store_header(w, key, key_size, value, value_length(value, value_size));
    return MHD_YES;
}

void tf_head_set_remote(struct tf_request *req, struct MHD_Connection *connection)
{
    struct tf_connection *conn = req->conn;
    _Static_assert(sizeof(conn->remote_addr) == sizeof(req->remote_addr), "as tf_request's");
    if (conn && conn->remote_known) { /* a connection's client never changes */
        memcpy(req->remote_addr, conn->remote_addr, sizeof(req->remote_addr));
        req->remote_port = conn->remote_port;
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) { /* by hand: inet_ntop's sprintf was 2% of a hello request */
        const struct sockaddr_in *in = (const void *)sa;
        const unsigned char *b = (const unsigned char *)&in->sin_addr;
        char *o = req->remote_addr;
        for (int i = 0; i < 4; i++) {
            if (b[i] >= 100)
                *o++ = (char)('0' + b[i] / 100);
            if (b[i] >= 10)
                *o++ = (char)('0' + b[i] / 10 % 10);
            *o++ = (char)('0' + b[i] % 10);
            *o++ = i < 3 ? '.' : 0;
        }
        req->remote_port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, req->remote_addr, sizeof(req->remote_addr));
        req->remote_port = ntohs(in6->sin6_port);
    }
    if (conn) {
        memcpy(conn->remote_addr, req->remote_addr, sizeof(conn->remote_addr));
        conn->remote_port = req->remote_port;
        conn->remote_known = true;
    }
}

/* An absolute-form target ("http://host/path?q", scheme in any case) as
 * origin-form ("/path?q"), once, so routes, the profile path and the
 * upstream all see the same thing; the access log keeps the one sent. Its
 * authority (checked by tf_check_target) goes to w->host: it replaces the
 * Host header (RFC 9112 3.2.2), for the app, the upstream and the log alike.
 * 0, or -1 on out of memory. */
static int origin_form(struct tf_request *req, struct header_walk *w)
{
    const char *t = req->target;
    size_t skip = tf_absolute_scheme_len(t);
    if (!skip)
        return 0;
    size_t host_len = strcspn(t + skip, "/?#");
    const char *path = t + skip + host_len;
    size_t n = strlen(path) + 2;
    char *copy = malloc(n);
    if (!copy)
        return -1;
    snprintf(copy, n, "%s%s", *path == '/' ? "" : "/", path);
    req->sent_target = req->target;
    if (tf_request_target_set(req, copy) < 0)
        return -1; /* req->target is copy, freed with req */
    w->host = req->sent_target + skip;
    w->host_len = host_len;
    return 0;
}

/* First call: everything up to the end of the headers. Returns 0 when the
 * request may go on, else the status to refuse it with. */
int tf_head_take(struct tf_request *req, const char *method, const char *version,
                 struct tf_framing *framing)
{
    if (tf_request_set_line(req, method, version) < 0)
        return 500;
    /* libmicrohttpd passes HTTP/1.0 to HTTP/1.9 only: a later 1.x is taken as
     * 1.1 (RFC 9112 2.3), as nginx and Apache do */
    req->http11 = strncmp(version, "HTTP/1.", 7) == 0 && strcmp(version + 7, "0") != 0;
    req->is_head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (req->refuse_status)
        return req->refuse_status;
    size_t method_len = strlen(method);
    if (!tf_is_token(method, method_len))
        return 400;
    if (method_len > TF_METHOD_MAX) /* none is registered that long; logged whole */
        return 501;
    if (!req->http11 && strcmp(version, MHD_HTTP_VERSION_1_0) != 0)
        return 505;
    int st = tf_check_target(req->target, method);
    if (st)
        return st;
    struct header_walk w = { .req = req, .check_layout = tf_head_layout_known() };
    if (w.check_layout) { /* before origin_form, which changes req->target */
        const union MHD_ConnectionInfo *size =
            MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
        tf_head_layout_start(&w.layout, method, req->wire_target, req->wire_target_len, version,
                             size ? size->header_size : 0);
    }
    req->wire_target = NULL; /* libmicrohttpd's buffer: not to be read past this call */
    if (origin_form(req, &w) < 0)
        return 500;
    tf_framing_init(&w.framing);
    MHD_get_connection_values_n(req->connection, MHD_HEADER_KIND, count_header, &w);
    if (w.status)
        return w.status;
    if (w.check_layout && !tf_head_layout_whole(&w.layout))
        return 400; /* a NUL, a folded line, a bare LF: libmicrohttpd cut or split the head */
    if ((st = tf_check_framing(&w.framing, req->http11)))
        return st;
    if (w.host) /* room for the authority as a Host header of its own */
        w.count++, w.bytes += sizeof("Host") + w.host_len + 1;
    if (tf_request_alloc_headers(req, w.count, w.bytes) < 0)
        return 500;
    w.store = req->header_store;
    MHD_get_connection_values_n(req->connection, MHD_HEADER_KIND, copy_header, &w);
    if (w.host)
        store_header(&w, "Host", 4, w.host, w.host_len);
    *framing = w.framing;
    return 0;
}

/* libmicrohttpd 0.9.75's pool blocks are rounded to 16 bytes; each header,
 * query argument, cookie and trailer is a 64-byte record (56, rounded). */
#define POOL_ROUND(n) (((n) + 15u) & ~(size_t)15u)
#define VALUE_RECORD 64u

/* What tf_head_used counts, in one walk of the connection's records. */
struct pool_walk {
    size_t trailers;   /* their lines, read into the request's part */
    bool cookie_seen;  /* the first Cookie header is copied to be parsed */
    size_t cookie_len;
};

static enum MHD_Result walk_record(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)value;
    struct pool_walk *w = cls;
    if (kind == MHD_FOOTER_KIND) {
        w->trailers += key_size + value_size + 4;
    } else if (kind == MHD_HEADER_KIND && !w->cookie_seen && key_size == 6 &&
               !strncasecmp(key, "Cookie", 6)) {
        w->cookie_seen = true;
        w->cookie_len = value_size;
    }
    return MHD_YES;
}

size_t tf_head_used(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    struct pool_walk w = { 0 };
    int records = MHD_get_connection_values_n(connection, MHD_HEADER_KIND | MHD_COOKIE_KIND |
                                                              MHD_GET_ARGUMENT_KIND |
                                                              MHD_FOOTER_KIND,
                                              walk_record, &w);
    size_t head = (ci ? ci->header_size : 0) + w.trailers;
    size_t used = POOL_ROUND(head) + (records > 0 ? (size_t)records * VALUE_RECORD : 0);
    if (w.cookie_seen)
        used += POOL_ROUND(w.cookie_len + 1);
    return used;
}

/* Query arguments libmicrohttpd 0.9.75 may store: it keeps each in the
 * connection's 32 KiB pool (with the header records), and when that runs
 * out it queues a 431 it never sends, so the client waits for
 * --idle-timeout. About 465 fit with a few headers. */
#define MAX_QUERY_ARGS 300

/* The query of a target with more arguments than that, cut off in
 * libmicrohttpd's own copy, which it parses after this callback (ours,
 * req->target, is whole): the request is then refused with 414. */
bool tf_head_cut_long_query(const char *uri)
{
    char *q = strchr(uri, '?');
    unsigned args = 1;
    for (const char *p = q; p && (p = strchr(p + 1, '&'));)
        if (++args > MAX_QUERY_ARGS) {
            q[1] = '\0'; /* the connection's read buffer: writable */
            return true;
        }
    return false;
}
