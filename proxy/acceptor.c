/* acceptor.c — a worker's acceptor thread (see server_internal.h): takes
 * connections from the listening socket the workers share and hands them
 * to its daemons' loops; stops when the worker steps down, and closes this
 * process's descriptor of the socket then. */
#define _GNU_SOURCE /* accept4, pipe2 */
#include "proxy/server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/limits.h"
#include "proxy/loop.h"
#include "proxy/platform.h"

struct new_connection {
    struct MHD_Daemon *mhd;
    int fd;
    struct sockaddr_storage addr;
    socklen_t len;
};

static void add_on_loop(void *arg)
{
    struct new_connection *c = arg; /* libmicrohttpd closes it if it cannot take it */
    MHD_add_connection(c->mhd, c->fd, (struct sockaddr *)&c->addr, c->len);
    free(c);
}

/* The acceptor's: the connection to the next daemon, added on its loop
 * (libmicrohttpd's calls on a daemon all come from its loop). */
static int add_connection(struct tf_server *server, int fd, const struct sockaddr_storage *ss,
                          socklen_t len)
{
    struct tf_daemon *d = &server->daemons[server->next_daemon++ % server->n_daemons];
    struct new_connection *c = malloc(sizeof(*c));
    if (c)
        *c = (struct new_connection){ .mhd = d->mhd, .fd = fd, .addr = *ss, .len = len };
    if (!c || tf_loop_post(d->loop, add_on_loop, c) < 0) {
        free(c);
        close(fd);
        return -1;
    }
    return 0;
}

/* Out of descriptors: close a lingering socket (linger.h) of one of the
 * daemons, the oldest of the first that has one. True when one was. */
static bool close_a_lingering_socket(struct tf_server *server)
{
    for (unsigned i = 0; i < server->n_daemons; i++)
        if (tf_loop_call(server->daemons[i].loop, tf_daemon_close_lingering,
                         &server->daemons[i]) == 1)
            return true;
    return false;
}

/* A worker's acceptor: the workers share one listening socket, and the
 * least busy should win each new connection (keep-alive connections stay
 * where they land), so a worker waits a little per connection it already
 * has before taking one. The ones it took that the daemon's loop has
 * not started yet count too: else a burst of new connections (a client
 * opening 8 at once) could all go to the worker that woke first. One that
 * libmicrohttpd drops before starting it (out of memory, connection limit)
 * is never reported, so after 100 ms without taking any, whatever has not
 * started is taken as dropped. At --max-connections it takes none, so
 * they wait in the socket's queue for another worker or a free place; out
 * of descriptors it closes a lingering socket and tries again, or with none
 * lingering tries again every 250 ms (nginx: 500 ms), not at once (that
 * took a whole CPU). */
static void *acceptor(void *arg)
{
    struct tf_server *server = arg;
    struct pollfd p[2] = { { .fd = server->shared_fd, .events = POLLIN },
                           { .fd = server->acceptor_wake[0], .events = POLLIN } };
    unsigned long taken = 0; /* handed to libmicrohttpd (as started_connections counts) */
    uint64_t last_take = 0;
    while (!__atomic_load_n(&server->quiesced, __ATOMIC_SEQ_CST)) {
        if (poll(p, 2, -1) <= 0 || p[1].revents)
            continue; /* EINTR, or woken to stop (checked above) */
        unsigned long started = __atomic_load_n(&server->started_connections, __ATOMIC_RELAXED);
        if (taken < started || tf_now_us() - last_take >= 100000u)
            taken = started; /* nothing still on its way */
        int busy = __atomic_load_n(&server->open_connections, __ATOMIC_RELAXED) +
                   (int)(taken - started);
        if ((unsigned)busy >= server->cfg->max_connections) {
            tf_limits_full(server, busy);
            poll(&p[1], 1, 50); /* a closed connection is not signalled: look again soon */
            continue;
        }
        if (busy > 0)
            usleep((useconds_t)(busy < 20 ? busy : 20) * 100u);
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(server->shared_fd, (struct sockaddr *)&ss, &len,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0 && tf_limits_accept_starved(errno)) {
            int err = errno;
            if (close_a_lingering_socket(server))
                continue;
            tf_limits_accept_failed(server, strerror(err));
            poll(&p[1], 1, TF_ACCEPT_RETRY_MS); /* a stop still ends the wait */
            continue;
        }
        if (fd >= 0 && add_connection(server, fd, &ss, len) == 0) {
            taken++;
            last_take = tf_now_us();
        }
    }
    return NULL;
}

int tf_acceptor_start(struct tf_server *server)
{
    if (pipe2(server->acceptor_wake, O_CLOEXEC) < 0)
        return -1;
    return pthread_create(&server->acceptor, NULL, acceptor, server) == 0 ? 0 : -1;
}

int tf_server_quiesce(struct tf_server *server)
{
    if (server->shared_fd < 0 || __atomic_exchange_n(&server->quiesced, 1, __ATOMIC_SEQ_CST))
        return -1; /* not a worker's public server, or already */
    if (write(server->acceptor_wake[1], "q", 1) != 1) { /* the pipe is empty: cannot fail */ }
    pthread_join(server->acceptor, NULL);
    close(server->acceptor_wake[0]);
    close(server->acceptor_wake[1]);
    /* Only this process's copy: in a reload the front and the new workers
     * keep the socket; in a stop, once the front and every worker have
     * closed theirs, new connections are refused instead of waiting in the
     * queue for a process that will never accept them. */
    close(server->shared_fd);
    return 0;
}
