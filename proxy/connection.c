/* connection.c — per-connection state and the request-head deadline (see
 * connection.h). The deadline is looked at once a second from the daemon's
 * tick, so a connection may be given up to a second more; past it the
 * socket is shut down, which libmicrohttpd sees as the client's end. This
 * file never touches a request's backend state. */
#define _GNU_SOURCE
#include "proxy/connection.h"
#include "proxy/server_internal.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "proxy/log.h"
#include "proxy/platform.h"

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
    return conn;
}

void tf_connection_end(struct tf_connection *conn)
{
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
    if (!conn->head_deadline && d->head_us && !d->next_head_us)
        conn->head_deadline = tf_now_us() + d->head_us;
}

void tf_connection_request_done(struct tf_connection *conn, uint64_t now)
{
    uint64_t wait = conn->daemon->next_head_us;
    conn->head_deadline = wait ? now + wait : 0;
}

/* Shut conn down for missing its deadline, and say so. */
static void give_up(struct tf_connection *conn, double header_s)
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
                req && req->target ? req->target : "");
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
            give_up(conn, d->server->cfg->header_timeout);
    return SWEEP_US / 1000u;
}
