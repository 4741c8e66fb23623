/* connection.c — per-connection state, the request-head deadline and the
 * closes that linger (see connection.h). The deadline is looked at once a
 * second from the daemon's tick, so a connection may be given up to a second
 * more; past it the socket is shut down, which libmicrohttpd sees as the
 * client's end. This file never touches a request's backend state. */
#define _GNU_SOURCE
#include "proxy/connection.h"
#include "proxy/server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "proxy/linger.h"
#include "proxy/log.h"
#include "proxy/platform.h"
#include "proxy/static.h"

#define SWEEP_US 1000000u

void tf_connection_timeouts(struct tf_daemon *d, double header_s, unsigned idle_s)
{
    d->head_us = (uint64_t)(header_s * 1e6);
    /* --idle-timeout 0 is "never": a later request's head is then timed
     * from its request line (tf_connection_request_line), as a silent
     * connection may wait forever. A second more than it (the sweep's
     * period), so that libmicrohttpd's own timeout, not the sweep, closes a
     * connection that stays silent. */
    uint64_t idle_us = (uint64_t)idle_s * 1000000u + SWEEP_US;
    d->next_head_us = !d->head_us || !idle_s ? 0 : d->head_us > idle_us ? d->head_us : idle_us;
}

struct tf_connection *tf_connection_start(struct tf_daemon *d, struct MHD_Connection *mhd,
                                          uint64_t now)
{
    struct tf_connection *conn = calloc(1, sizeof(*conn));
    if (!conn)
        return NULL;
    conn->daemon = d;
    conn->mhd = mhd;
    conn->head_deadline = d->head_us ? now + d->head_us : 0;
    conn->next = d->conns;
    if (d->conns)
        d->conns->prev = conn;
    d->conns = conn;
    /* A lingering socket holds a descriptor as a connection does: together
     * they keep to the daemon's share of --max-connections, which the
     * descriptor limit was sized for (the oldest lingering one gives way). */
    d->n_conns++;
    while (d->n_conns + tf_linger_count(d->linger) > d->share && tf_linger_close_oldest(d->linger))
        continue;
    return conn;
}

/* Hand a duplicate of socket (libmicrohttpd's) to d's lingerer: when
 * libmicrohttpd closes its own, the connection stays open for it. Out of
 * descriptors, the oldest lingering socket gives way to it. */
static void close_lingering(struct tf_daemon *d, int socket)
{
    int fd = fcntl(socket, F_DUPFD_CLOEXEC, 0);
    if (fd < 0 && errno == EMFILE && tf_linger_close_oldest(d->linger))
        fd = fcntl(socket, F_DUPFD_CLOEXEC, 0);
    if (fd >= 0)
        tf_linger_add(d->linger, fd); /* past its limit: closed at once */
}

/* Is the client's input waiting unread (the rest of a request libmicrohttpd
 * refused before reading it whole, or one sent behind an answer that closes
 * the connection)? A close would answer it with a reset. */
static bool input_unread(int socket)
{
    char c;
    return recv(socket, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

void tf_connection_end(struct tf_connection *conn)
{
    struct tf_daemon *d = conn->daemon;
    d->n_conns--; /* its place may go to its lingering socket */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci && d->linger && (conn->linger || input_unread(ci->connect_fd)))
        close_lingering(d, ci->connect_fd);
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        conn->daemon->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    free(conn);
}

void tf_connection_request_line(struct tf_connection *conn)
{
    const struct tf_daemon *d = conn->daemon;
    conn->linger = false;
    if (!conn->head_deadline && d->head_us && !d->next_head_us)
        conn->head_deadline = tf_now_us() + d->head_us;
}

void tf_connection_request_done(struct tf_connection *conn, uint64_t now)
{
    uint64_t wait = conn->daemon->next_head_us;
    conn->head_deadline = wait ? now + wait : 0;
}

int tf_connection_refuse(struct tf_connection *conn, unsigned status, const char *detail,
                         bool head_only, uint64_t *body_len)
{
    char head[320], body[512], date[32];
    size_t n = tf_error_text(status, detail, body, sizeof(body));
    tf_http_date(time(NULL), date, sizeof(date));
    int h = snprintf(head, sizeof(head), "HTTP/1.1 %u %s\r\nDate: %s\r\nContent-Type: "
                     "text/plain; charset=utf-8\r\nContent-Length: %zu\r\nConnection: "
                     "close\r\n\r\n", status, MHD_get_reason_phrase_for(status), date, n);
    struct iovec iov[2] = { { head, (size_t)h }, { body, head_only ? 0 : n } };
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    /* Only into an empty send queue (the client took every earlier answer),
     * which takes these few hundred bytes whole: in one that is not, the
     * write could be cut short, a truncated answer on the wire. */
    int queued;
    if (!ci || ioctl(ci->connect_fd, SIOCOUTQ, &queued) < 0 || queued > 0)
        return -1;
    ssize_t sent = sendmsg(ci->connect_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent <= 0)
        return -1;
    /* Sent, whole or (not expected) in part: the client may be reading it */
    *body_len = (size_t)sent > (size_t)h ? (uint64_t)sent - (uint64_t)h : 0;
    conn->linger = true;
    return 0;
}

/* Shut conn down for missing its deadline, and say so. */
static void cut_off_late_head(struct tf_connection *conn, double header_s)
{
    conn->head_deadline = 0;
    conn->head_timed_out = true;
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(conn->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *addr =
        MHD_get_connection_info(conn->mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char host[64] = "-", port[8] = "-";
    if (addr && addr->client_addr)
        getnameinfo(addr->client_addr, addr->client_addr->sa_family == AF_INET6
                    ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
                    host, sizeof(host), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
    const struct tf_request *req = conn->req;
    tf_log_info("client %s port %s: no complete request head within --header-timeout (%gs)%s%s; "
                "connection closed", host, port, header_s, req ? ", target " : "",
                req && req->log_target ? req->log_target : "");
    /* the reading side only: libmicrohttpd then reads an end of stream, as
     * from a client that left (one info line), not a socket error */
    if (fd)
        shutdown(fd->connect_fd, SHUT_RD);
}

long tf_connection_sweep(struct tf_daemon *d)
{
    if (!d->head_us || !d->conns)
        return -1;
    uint64_t now = tf_now_us();
    if (now < d->next_sweep)
        return (long)((d->next_sweep - now) / 1000u) + 1;
    d->next_sweep = now + SWEEP_US;
    for (struct tf_connection *conn = d->conns; conn; conn = conn->next)
        if (conn->head_deadline && now >= conn->head_deadline)
            cut_off_late_head(conn, d->server->cfg->header_timeout);
    return SWEEP_US / 1000u;
}
