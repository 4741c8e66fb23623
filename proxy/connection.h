/* connection.h — what the server keeps per client connection (server-internal,
 * like server_internal.h): the deadline for a request's head
 * (--header-timeout), --upstream-pin's upstream link, and whether the
 * connection closes lingering (linger.h). libmicrohttpd 0.9.75
 * restarts its connection timeout on every read, so a client that sends its
 * headers a byte at a time (slowloris) would hold a connection for as long as
 * it likes; the deadline is what ends it, as nginx's client_header_timeout.
 * Everything here runs on the I/O thread of the connection's daemon; the
 * work is per connection and per completed request, never a system call per
 * request (one per connection's end). */
#ifndef TF_CONNECTION_H
#define TF_CONNECTION_H

#include <stdbool.h>
#include <stdint.h>

struct MHD_Connection;
struct tf_daemon;
struct tf_request;
struct tf_upstream_pin;

struct tf_connection {
    struct tf_connection *prev, *next; /* in its daemon's list */
    struct tf_daemon *daemon;
    struct MHD_Connection *mhd;
    struct tf_upstream_pin *pin;    /* --upstream-pin's link, or NULL */
    struct tf_request *req;         /* the request being read or answered (from the URI
                                       callback to the completed one), or NULL */
    uint64_t head_deadline;         /* monotonic us: the request head being read must be
                                       complete by then; 0 = none (one is being answered,
                                       or --header-timeout 0) */
    bool head_timed_out;            /* closed for missing it: its request is logged 408 */
    bool linger;                    /* its last answer came before the body its request
                                       announced was read: the socket closes lingering
                                       (linger.h) */
    bool remote_known;              /* remote_addr and remote_port hold the client's
                                       (tf_head_set_remote): its requests copy them */
    unsigned remote_port;
    char remote_addr[64];           /* as tf_request's */
};

/* The times a daemon gives a request's head (us; 0 = none): a connection's
 * first request from the connection's start; a later one from the end of
 * the one before, a second more than idle_s at least, so a keep-alive
 * connection that stays silent is still closed by --idle-timeout, silently. */
void tf_connection_timeouts(struct tf_daemon *d, double header_s, unsigned idle_s);

/* A new connection, in d's list, its first head due now + the head timeout.
 * d's oldest lingering sockets are closed while they and its connections
 * would pass its share of --max-connections. NULL on out of memory (the
 * connection then has no deadline, and is not counted). */
struct tf_connection *tf_connection_start(struct tf_daemon *d, struct MHD_Connection *mhd,
                                          uint64_t now);
/* The connection closes (libmicrohttpd's socket is still open): out of the
 * list, freed (its pin is the caller's). With conn->linger, or input from
 * the client still unread (one recv with MSG_PEEK, as nginx looks), its
 * socket is duplicated and handed to its daemon's lingerer, unless the
 * daemon is off its loop (stopping). */
void tf_connection_end(struct tf_connection *conn);
/* Answer conn's request, whose body is arriving, with a minimal text error
 * (tf_error_text; no body for head_only, a HEAD) with Date and Connection:
 * close, written to the socket here: libmicrohttpd 0.9.75 cannot queue an
 * answer before a body ends. Written only when the socket's send queue is
 * empty (nothing earlier is still unsent); the caller then ends the request
 * (MHD_NO). 0 when it was written (*body_len: the bytes of its body sent;
 * the socket lingers), -1 when nothing was. */
int tf_connection_refuse(struct tf_connection *conn, unsigned status, const char *detail,
                         bool head_only, uint64_t *body_len);

/* A request's head is complete: no deadline while it is answered. */
static inline void tf_connection_head_done(struct tf_connection *conn)
{
    if (conn)
        conn->head_deadline = 0;
}
/* A request line arrived (tf_server_on_uri): with --idle-timeout 0, a later
 * request's head is timed from here, as nothing timed it since the last
 * answer; the last answer's linger no longer applies. On conn's network
 * thread. */
void tf_connection_request_line(struct tf_connection *conn);
/* A request on conn was answered whole at now: the next head is due. */
void tf_connection_request_done(struct tf_connection *conn, uint64_t now);

/* At most once a second: shut down the connections of d past their head
 * deadline (logged at info; libmicrohttpd then sees the end and closes
 * them). Returns the ms until it wants to look again, or -1 for never (no
 * connection has a deadline). */
long tf_connection_sweep(struct tf_daemon *d);

#endif
