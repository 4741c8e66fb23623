/* server_start.c — a server's start and stop (see server.h): its listening
 * socket, one libmicrohttpd daemon per network thread with server.c's
 * callbacks (tf_server_on_*), put on that thread's loop only once all are
 * made, and their end. Main thread only; never touches Python. */
#include "proxy/server.h"
#include "proxy/server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/auth.h"
#include "proxy/connection.h"
#include "proxy/loop.h"
#include "proxy/mirror.h"
#include "proxy/platform.h"

static int resolve(const char *host, unsigned port, struct sockaddr_storage *ss, char *err,
                   size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE }, *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%u", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "--listen: cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void stop_daemons(struct tf_server *server)
{
    for (unsigned i = 0; i < server->n_daemons; i++) {
        struct tf_daemon *d = &server->daemons[i];
        if (!d->mhd)
            continue;
        tf_loop_call(d->loop, tf_daemon_detach, d);
        MHD_stop_daemon(d->mhd);
    }
    free(server->daemons);
    server->daemons = NULL;
    server->n_daemons = 0;
}

/* libmicrohttpd counts whole seconds, and 0 is no timeout: round up, so
 * 0.4 is one second, not never. */
static unsigned idle_timeout_s(double seconds)
{
    unsigned whole = (unsigned)seconds;
    return whole < seconds ? whole + 1 : whole;
}

/* Daemon i's share of --max-connections (at least 1): the shares add up to
 * it, so all are full only when the server is. */
static unsigned connection_share(const struct tf_server *server, unsigned i)
{
    unsigned max = server->cfg->max_connections, n = server->n_daemons;
    unsigned share = max / n + (i < max % n);
    return share ? share : 1;
}

/* listen_fd: the socket this daemon accepts from (it closes it), or -1
 * for none (a worker's: the acceptor thread adds the connections). */
static int start_daemon(struct tf_server *server, struct tf_daemon *d, int listen_fd, bool ipv6)
{
    const struct tf_config *cfg = server->cfg;
    tf_connection_timeouts(d, cfg->header_timeout, idle_timeout_s(cfg->idle_timeout));
    d->share = connection_share(server, (unsigned)(d - server->daemons));
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    if (listen_fd < 0)
        flags |= MHD_USE_NO_LISTEN_SOCKET;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    d->mhd = MHD_start_daemon(
        flags, 0, tf_server_on_accept, server, tf_server_on_request, server,
        MHD_OPTION_EXTERNAL_LOGGER, tf_daemon_log, server,
        /* no listening socket: the backlog option stands in, with its own value */
        listen_fd >= 0 ? MHD_OPTION_LISTEN_SOCKET : MHD_OPTION_LISTEN_BACKLOG_SIZE,
        listen_fd >= 0 ? (intptr_t)listen_fd : (intptr_t)1024,
        MHD_OPTION_URI_LOG_CALLBACK, tf_server_on_uri, server,
        MHD_OPTION_NOTIFY_COMPLETED, tf_server_on_completed, server,
        MHD_OPTION_NOTIFY_CONNECTION, tf_server_on_connection, server,
        MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout_s(cfg->idle_timeout),
        /* else FD_SETSIZE - 4, which epoll does not need */
        MHD_OPTION_CONNECTION_LIMIT, d->share,
        MHD_OPTION_STRICT_FOR_CLIENT, 0,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)TF_CONNECTION_POOL,
        MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
        MHD_OPTION_END);
    if (!d->mhd) {
        if (listen_fd >= 0)
            close(listen_fd);
        return -1;
    }
    return 0;
}

/* One daemon per I/O thread, each on its own loop; they accept from
 * duplicates of sock->fd (not shared: the last daemon's own once it starts,
 * closed here on a failure before). */
static int start_daemons(struct tf_server *server, const struct tf_server_socket *sock,
                         const struct sockaddr_storage *ss, char *err, size_t errlen)
{
    const struct tf_config *cfg = server->cfg;
    unsigned n = sock->io_threads ? sock->io_threads : cfg->io_threads;
    unsigned n_loops = server->backends->n_loops;
    unsigned first = sock->first_loop < n_loops ? sock->first_loop : 0;
    if (n > n_loops - first)
        n = n_loops - first;
    int fd = sock->fd;
    if (!n || !(server->daemons = calloc(n, sizeof(*server->daemons)))) {
        snprintf(err, errlen, n ? "out of memory" : "no network thread to serve on");
        if (!sock->shared)
            close(fd);
        return -1;
    }
    server->n_daemons = n;
    for (unsigned i = 0; i < n; i++) {
        struct tf_daemon *d = &server->daemons[i];
        d->loop = server->backends->loops[first + i];
        d->server = server;
        /* the last daemon takes fd itself, the others a duplicate */
        int listen_fd = sock->shared ? -1 : i + 1 < n ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : fd;
        if ((!sock->shared && listen_fd < 0) ||
            start_daemon(server, d, listen_fd, ss->ss_family == AF_INET6) < 0) {
            if (!sock->shared && i + 1 < n)
                close(fd); /* never handed over */
            snprintf(err, errlen, "--listen: libmicrohttpd cannot serve on %s:%u",
                     cfg->listen_host, cfg->listen_port);
            return -1;
        }
    }
    /* on their loops only once all are made: none serves before the server is whole */
    for (unsigned i = 0; i < n; i++) {
        struct tf_daemon *d = &server->daemons[i];
        if (tf_loop_call(d->loop, tf_daemon_attach, d) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

struct tf_server *tf_server_start_on(const struct tf_config *cfg,
                                     const struct tf_backends *backends,
                                     const struct tf_server_socket *sock, char *err, size_t errlen)
{
    err[0] = 0;
    int own_fd = sock->shared ? -1 : sock->fd; /* closed here until start_daemons takes it */
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    struct tf_server *server = calloc(1, sizeof(*server));
    if (!server)
        goto fail;
    server->cfg = cfg;
    server->backends = backends;
    server->acceptor_wake[0] = server->acceptor_wake[1] = -1;
    server->relay_port = sock->relay_port;
    server->control = sock->control;
    if (getsockname(sock->fd, (struct sockaddr *)&ss, &sslen) < 0) {
        snprintf(err, errlen, "cannot read the listening socket's address: %s", strerror(errno));
        goto fail;
    }
    if ((cfg->mirror && !(server->mirror = tf_mirror_new(cfg, backends))) ||
        tf_profile_allow_init(server, cfg, sock->control) < 0 ||
        (!(server->auth = tf_auth_new(cfg, err, errlen)) && err[0]))
        goto fail;
    server->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)&ss)->sin_port);
    server->shared_fd = sock->shared ? sock->fd : -1;
    own_fd = -1;
    if (start_daemons(server, sock, &ss, err, errlen) < 0)
        goto fail;
    if (sock->shared && tf_acceptor_start(server) < 0) {
        snprintf(err, errlen, "cannot start the worker's acceptor thread");
        goto fail;
    }
    return server;
fail:
    if (!err[0])
        snprintf(err, errlen, "out of memory");
    if (own_fd >= 0)
        close(own_fd);
    if (!server)
        return NULL;
    stop_daemons(server);
    for (int i = 0; i < 2; i++)
        if (server->acceptor_wake[i] >= 0)
            close(server->acceptor_wake[i]);
    tf_auth_free(server->auth);
    tf_mirror_free(server->mirror);
    free(server->profile_allow);
    free(server);
    return NULL;
}

void tf_server_set_profiler(struct tf_server *server, const struct tf_profiler_controls *c)
{
    __atomic_store_n(&server->profiler, c, __ATOMIC_RELEASE); /* the page may be asked already */
}

unsigned tf_server_port(const struct tf_server *server)
{
    return server->port;
}

int tf_server_listen_socket(const char *host, unsigned port, unsigned *bound, char *err,
                            size_t errlen)
{
    struct sockaddr_storage ss;
    if (resolve(host, port, &ss, err, errlen) < 0)
        return -1;
    int fd = tf_listen_socket((struct sockaddr *)&ss, ss.ss_family == AF_INET6
                              ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in), bound);
    if (fd < 0)
        snprintf(err, errlen, "--listen: cannot listen on %s:%u: %s", host, port, strerror(errno));
    return fd;
}

/* The front may ask to quiesce as soon as it has told a worker to go (a
 * stop right after the start), before the worker's public server runs:
 * each side stores its half, then reads the other's (both seq_cst), so at
 * least one of them sees both and quiesces (tf_server_quiesce runs once). */
void tf_server_set_twin(struct tf_server *control, struct tf_server *public_server)
{
    __atomic_store_n(&control->twin, public_server, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&control->quiesce_asked, __ATOMIC_SEQ_CST))
        tf_server_quiesce(public_server);
}

bool tf_server_quiesce_twin(struct tf_server *control)
{
    __atomic_store_n(&control->quiesce_asked, 1, __ATOMIC_SEQ_CST);
    struct tf_server *twin = __atomic_load_n(&control->twin, __ATOMIC_SEQ_CST);
    if (twin)
        tf_server_quiesce(twin);
    return twin != NULL;
}

/* On the daemon's loop: it stops accepting and its copy of the listening
 * socket is closed (libmicrohttpd hands it back, and it no longer uses it). */
static void close_listening_socket(void *arg)
{
    struct tf_daemon *d = arg;
    tf_daemon_accept_release(d);
    MHD_socket fd = MHD_quiesce_daemon(d->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

/* Once every daemon closed its copy, new connections are refused, as
 * nginx's are, instead of accepted and closed unanswered. Posted, not
 * waited for: a loop may be running a request inline (for ever, or until
 * --graceful-timeout, which the caller times next). The daemons outlive the
 * posts (stop_daemons). A worker's daemons have none (tf_server_quiesce
 * closes its acceptor's copy). */
void tf_server_begin_stop(struct tf_server *server)
{
    __atomic_store_n(&server->stopping, 1, __ATOMIC_SEQ_CST);
    for (unsigned i = 0; i < server->n_daemons; i++) /* out of memory: tf_server_on_accept refuses */
        (void)tf_loop_post(server->daemons[i].loop, close_listening_socket, &server->daemons[i]);
}

int tf_server_in_flight(const struct tf_server *server)
{
    return __atomic_load_n(&server->in_flight, __ATOMIC_SEQ_CST);
}

void tf_server_stop(struct tf_server *server)
{
    if (!server)
        return;
    tf_server_quiesce(server); /* a worker's acceptor, if still running */
    stop_daemons(server);
    tf_auth_free(server->auth);
    tf_mirror_free(server->mirror);
    free(server->profile_allow);
    free(server);
}
