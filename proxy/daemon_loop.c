/* daemon_loop.c — a libmicrohttpd daemon on its I/O thread's loop (see
 * server_internal.h): run when its sockets are ready or a timeout is due,
 * resumed connections, the requests looked at once a second, the clients
 * watched for a hang-up while suspended, its lingering closes' limits
 * (linger.h), accepting for it while it will not (out of descriptors), and
 * libmicrohttpd's own log lines. */
#define _GNU_SOURCE /* accept4 */
#include "proxy/server_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/connection.h"
#include "proxy/limits.h"
#include "proxy/linger.h"
#include "proxy/log.h"
#include "proxy/loop.h"
#include "proxy/platform.h"
#include "proxy/request.h"

/* --- requests looked at once a second ---------------------------------------
 * Two stalls of libmicrohttpd 0.9.75 that only a look from outside ends, and
 * a client gone while its app's streamed answer waits for the next chunk:
 *
 * A client gone while its body arrives. 0.9.75 takes a short read for a
 * drained socket and waits for the socket's next edge, so a client's FIN
 * that came with the last bytes it sent of an unfinished body went unnoticed
 * until --idle-timeout, keeping the request (and its spooled body) in flight
 * and holding up a graceful stop. The look peeks at the socket: at a pending
 * end of stream it suspends the connection and resumes it at once; a resumed
 * connection is read again, that read sees the end, and libmicrohttpd drops
 * the request. (A body that is complete is answered: only the client's side
 * ended.) A request whose read buffer is full when its client goes is not
 * read again and waits for --idle-timeout as before; it is not looked at
 * twice (a resume restarts that timeout).
 *
 * A file shrinking while it is sent (a static file or wsgi.file_wrapper's).
 * sendfile then returns 0, which 0.9.75 takes for a full socket: it waits for
 * a write edge that never comes, until --idle-timeout, and logs nothing. The
 * look compares the file's size with the end of what the answer promised; if
 * it is short, the reason is logged and the socket shut down, which the
 * suspend and resume make libmicrohttpd notice at once: the connection
 * closes, as nginx closes it.
 *
 * A client that closed while a WSGI app's stream waits for its next chunk
 * (an SSE page between two events). libmicrohttpd does not look at the
 * suspended connection, so only a send failing told, one chunk later: the
 * app thread went on for nobody until its second chunk after the close (a
 * 30 s heartbeat: 30 s more than under gunicorn). The look peeks at the
 * socket of a stream that has waited half a second (not a page between two
 * writes, of a client that only half-closed) and resumes it at an end of
 * stream or an error: its reader ends the connection (body_channel.c).
 *
 * The first two lean on 0.9.75's internals: suspending from the loop's tick
 * rather than a callback (allowed there on the thread that runs MHD_run),
 * and a resumed connection being marked read-ready. */
#define TF_LOOK_US 1000000

void tf_watch_add(struct tf_daemon *d, struct tf_request *req, enum tf_watch why)
{
    req->watch_prev = NULL;
    req->watch_next = d->watched;
    if (d->watched)
        d->watched->watch_prev = req;
    d->watched = req;
    req->watch = why;
}

void tf_watch_remove(struct tf_request *req)
{
    if (req->watch == WATCH_NONE)
        return;
    if (req->watch_prev)
        req->watch_prev->watch_next = req->watch_next;
    else
        req->daemon->watched = req->watch_next;
    if (req->watch_next)
        req->watch_next->watch_prev = req->watch_prev;
    req->watch = WATCH_NONE;
}

/* True if the file req's answer is sent from is now shorter than promised
 * (logged). */
static bool file_shrank(const struct tf_request *req)
{
    struct stat st;
    if (fstat(req->file_fd, &st) < 0 || (uint64_t)st.st_size >= req->file_end)
        return false;
    char link[64], name[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", req->file_fd);
    ssize_t n = readlink(link, name, sizeof(name) - 1);
    name[n < 0 ? 0 : n] = '\0';
    tf_log_error("%s %s: the file %s changed while being sent: it has %" PRIu64 " bytes, the "
                 "answer promised %" PRIu64 "; connection closed", req->method, req->log_target,
                 name, (uint64_t)st.st_size, req->file_end);
    return true;
}

/* A stream that has waited a while for its producer whose client closed
 * (or reset) its connection: marked hung up. True if the reader was still
 * waiting: the caller resumes it. */
static bool stream_client_left(struct tf_request *req, int fd, uint64_t now)
{
    pthread_mutex_lock(&req->lock);
    bool waited = req->reader_suspended && req->last_read_us <= now &&
                  now - req->last_read_us >= TF_LOOK_US / 2;
    pthread_mutex_unlock(&req->lock);
    char c;
    ssize_t got = waited ? recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) : 1;
    if (got > 0 || (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
        return false; /* waiting yet, data (a pipelined request), or nothing came */
    if (got == 0 && req->sent_all_first)
        return false; /* the end it half-closed with, not a hang-up */
    pthread_mutex_lock(&req->lock);
    req->client_hung_up = true;
    bool resume = req->reader_suspended;
    req->reader_suspended = false;
    pthread_mutex_unlock(&req->lock);
    return resume;
}

void tf_request_peek_half_close(struct tf_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    char c;
    req->stream_peeked = true;
    req->sent_all_first = ci && recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

void tf_request_watch_stream_wait(struct tf_request *req, bool waiting)
{
    if (waiting && req->watch == WATCH_NONE)
        tf_watch_add(req->daemon, req, WATCH_STREAM_WAIT);
    else if (!waiting && req->watch == WATCH_STREAM_WAIT)
        tf_watch_remove(req);
}

static void look_at_watched(struct tf_daemon *d)
{
    uint64_t now = tf_now_us();
    if (now < d->next_look)
        return;
    d->next_look = now + TF_LOOK_US;
    struct tf_request *next;
    for (struct tf_request *req = d->watched; req; req = next) {
        next = req->watch_next;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
            continue;
        if (req->watch == WATCH_STREAM_WAIT) {
            if (stream_client_left(req, ci->connect_fd, now)) {
                tf_watch_remove(req);
                tf_request_resume(req);
            }
            continue;
        }
        char c;
        if (req->watch == WATCH_BODY_IN
                ? recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) != 0
                : !file_shrank(req))
            continue;
        if (req->watch == WATCH_FILE_OUT)
            shutdown(ci->connect_fd, SHUT_RDWR);
        tf_watch_remove(req);
        MHD_suspend_connection(req->connection);
        tf_request_resume(req);
    }
}

/* The daemon whose run this is (the current loop's), or NULL. */
static struct tf_daemon *running_daemon(struct tf_server *server)
{
    struct tf_loop *loop = tf_loop_current();
    for (unsigned i = 0; loop && i < server->n_daemons; i++)
        if (server->daemons[i].loop == loop)
            return &server->daemons[i];
    return NULL;
}

/* libmicrohttpd 0.9.75, out of descriptors with no connection open, keeps
 * its listening socket in its epoll set ("will try busy waiting"): the
 * loop would run it again at once, a whole CPU. So the daemon whose run
 * this is is taken off its loop for TF_ACCEPT_RETRY_MS. */
static void pause_accepting(struct tf_server *server)
{
    struct tf_daemon *d = running_daemon(server);
    if (d)
        d->accept_failed = true; /* run_daemon acts on it */
}

/* --- accepting for libmicrohttpd while it will not ---------------------------
 * With connections open, libmicrohttpd 0.9.75 takes an accept failing for
 * want of a descriptor as a reason to take its listening socket out of its
 * epoll set ("temporarily suspending accept()") until one of its
 * connections closes, not until descriptors are free again: a network
 * thread whose keep-alive clients kept talking accepted nothing, whatever
 * --idle-timeout. Meanwhile the loop watches that socket itself and hands
 * what it accepts to libmicrohttpd (MHD_add_connection, as a worker's
 * acceptor does); a failure closes a lingering socket and tries again, else
 * waits TF_ACCEPT_RETRY_MS. A connection closing ends it (run_daemon): then
 * libmicrohttpd watches its socket again itself. */

static int listening_fd(struct tf_daemon *d)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_LISTEN_FD);
    return info ? info->listen_fd : -1;
}

/* Out of the loop's epoll set until accept_retry_at. */
static void accept_later(struct tf_daemon *d)
{
    if (d->listen_watched)
        tf_loop_unwatch(d->loop, listening_fd(d));
    d->listen_watched = false;
    d->accept_retry_at = tf_now_us() + TF_ACCEPT_RETRY_MS * 1000u;
}

void tf_daemon_accept_release(struct tf_daemon *d)
{
    accept_later(d);
    d->accept_held = false;
}

/* The line said libmicrohttpd stopped accepting: the daemon whose run this
 * is looks again in TF_ACCEPT_RETRY_MS. */
static void hold_accepting(struct tf_server *server)
{
    struct tf_daemon *d = running_daemon(server);
    if (d && !d->accept_held) {
        d->accept_held = true;
        accept_later(d);
    }
}

/* The listening socket is ready: up to 10 connections, as libmicrohttpd
 * takes them (level-triggered: the rest next turn). */
static void on_listen_ready(void *ctx, int fd, uint32_t events)
{
    (void)events;
    struct tf_daemon *d = ctx;
    for (unsigned taken = 0; taken < 10; taken++) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!info || info->num_connections >= d->share) {
            accept_later(d); /* libmicrohttpd would refuse it: wait for a place */
            return;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c >= 0) { /* libmicrohttpd closes it if it cannot take it */
            MHD_add_connection(d->mhd, c, (struct sockaddr *)&ss, len);
            continue;
        }
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO)
            continue; /* that client only */
        if (tf_limits_accept_starved(err)) {
            if (tf_linger_close_oldest(d->linger))
                continue;
            tf_limits_accept_failed(d->server, strerror(err));
        }
        accept_later(d); /* starved, or the socket's own error: not at once again */
        return;
    }
}

/* While held: the ms until the socket is watched again, or -1. */
static long accept_held_tick(struct tf_daemon *d)
{
    if (d->listen_watched)
        return -1;
    uint64_t now = tf_now_us();
    if (now < d->accept_retry_at)
        return (long)((d->accept_retry_at - now) / 1000u) + 1;
    if (tf_loop_watch(d->loop, listening_fd(d), EPOLLIN, on_listen_ready, d) < 0) {
        accept_later(d); /* out of memory */
        return TF_ACCEPT_RETRY_MS;
    }
    d->listen_watched = true;
    return -1;
}

int tf_daemon_close_lingering(void *arg)
{
    struct tf_daemon *d = arg;
    return tf_linger_close_oldest(d->linger);
}

/* Does libmicrohttpd's line begin with text? Its lines begin with its own
 * words; a client's URL comes only later in some of them, so a test
 * anywhere in the line could be forged by a request. */
static bool begins(const char *msg, const char *text)
{
    return strncmp(msg, text, strlen(text)) == 0;
}

/* libmicrohttpd's line about a client that went away: it closed or reset
 * the connection with its request unfinished, or reset it during the answer
 * (EPIPE, ECONNRESET: a browser that stopped a download). A reading socket
 * that epoll flags (a reset with much of the body unread, TCP urgent data)
 * is closed "due to the error: detected connection closure" (or "The
 * operation would block, retry later"): the client's doing too. */
static bool client_left(const char *fmt, const char *msg)
{
    static const char read_closed[] = "Connection socket is closed when reading request due to "
                                      "the error: ";
    if (strstr(fmt, "closed by remote side") ||
        begins(msg, "Socket has been disconnected when reading request")) /* a reset */
        return true;
    const char *read_why = begins(msg, read_closed) ? msg + sizeof(read_closed) - 1 : NULL;
    if (read_why && (begins(read_why, "detected connection closure") ||
                     begins(read_why, "The operation would block")))
        return true;
    /* the reason ends the line ("... for `URL'. Error: WHY"): the last one is
     * libmicrohttpd's, whatever the client put in its URL */
    const char *why = NULL;
    for (const char *p = msg; (p = strstr(p, "rror: ")); p++)
        why = p;
    return why && (strstr(why, "no longer available for sending") ||
                   strstr(why, "forcibly closed by remote peer"));
}

/* libmicrohttpd's line about a request it refused itself for the client's
 * mistake: a malformed or too large head or Content-Length, a bad chunk, an
 * HTTP version it does not serve (its 4xx and 505; its 500 is its own). */
static bool client_erred(const char *fmt, const char *msg)
{
    static const char refused[] = "Error processing request (HTTP response code is ";
    if (strstr(fmt, "`Content-Length' header") || strstr(fmt, "'Content-Length' header"))
        return true; /* "Failed to parse", "Too large value of": the refusal follows */
    if (begins(msg, "Not enough memory in pool to parse cookies") ||
        begins(msg, "Not enough memory in pool to allocate header record"))
        return true; /* a head too large for the connection's pool: its 431 follows */
    if (strncmp(msg, refused, sizeof(refused) - 1))
        return false;
    unsigned status = (unsigned)atoi(msg + sizeof(refused) - 1);
    return (status >= 400 && status < 500) || status == 505;
}

static __thread bool close_explained; /* see tf_daemon_log_explained */

void tf_daemon_log_explained(bool on)
{
    close_explained = on;
}

static __thread bool head_failed; /* see tf_daemon_head_failed */

bool tf_daemon_head_failed(void)
{
    bool failed = head_failed;
    head_failed = false;
    return failed;
}

/* One of libmicrohttpd's lines, whole (see tf_daemon_log). */
static void take_line(void *cls, const char *fmt, char *msg)
{
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    if (close_explained && (begins(msg, "Application reported internal error") ||
                            begins(msg, "Closing connection (application"))) {
        close_explained = false;
        return;
    }
    if (begins(msg, "Closing connection (failed to create response header")) {
        head_failed = true; /* the request's completion, next on this thread, says it */
        return;
    }
    if (begins(msg, "Hit process or system resource limit at FIRST connection"))
        pause_accepting(cls);
    else if (begins(msg, "Hit process or system resource limit at "))
        hold_accepting(cls);
    struct tf_daemon *d;
    if (begins(msg, "Error accepting connection") && (d = running_daemon(cls)))
        tf_linger_close_oldest(d->linger); /* a descriptor for a later accept */
    if (tf_limits_take_message(cls, msg)) /* said once while it lasts */
        return;
    char line[4096]; /* libmicrohttpd quotes the client's decoded URL: escaped (and cut) */
    tf_log_escape(msg, line, sizeof(line));
    if (client_left(fmt, msg) || client_erred(fmt, msg)) /* nginx says them at info */
        tf_log_info("http: %s", line);
    else
        tf_log_error("http: %s", line);
}

void tf_daemon_log(void *cls, const char *fmt, va_list ap)
{
    /* whole, however long the URL it quotes: its reason comes last, and a cut
     * line would be classified by what the client wrote in the URL */
    char small[1024], *msg = small;
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    if (n >= (int)sizeof(small) && (msg = malloc((size_t)n + 1)))
        vsnprintf(msg, (size_t)n + 1, fmt, again);
    va_end(again);
    take_line(cls, fmt, msg ? msg : small);
    if (msg != small)
        free(msg);
}

void tf_request_resume(struct tf_request *req)
{
    struct tf_daemon *d = req->daemon;
    if (__atomic_load_n(&req->answering_inline, __ATOMIC_SEQ_CST))
        return; /* not suspended: run_inline sends the answer */
    MHD_resume_connection(req->connection);
    if (!__atomic_exchange_n(&d->needs_run, 1, __ATOMIC_ACQ_REL))
        tf_loop_wake(d->loop);
}

/* --- a client's hang-up while its connection is suspended --------------------
 * libmicrohttpd does not look at a suspended connection, so a client that
 * leaves while its proxied answer is awaited would go unnoticed until a send
 * to it fails: the upstream would go on working for nobody. nginx watches
 * the socket meanwhile and closes the upstream connection (its 499). Here the
 * socket is put in the loop's own epoll set too (libmicrohttpd's set is
 * another), for its end only: its data stays libmicrohttpd's to read. */

static void on_hangup(void *ctx, int fd, uint32_t events)
{
    (void)fd;
    (void)events; /* RDHUP, HUP or ERR: the client closed (its side at least) or reset */
    struct tf_request *req = ctx;
    tf_request_unwatch_hangup(req); /* level-triggered: once is enough */
    pthread_mutex_lock(&req->lock);
    req->client_hung_up = true;
    pthread_mutex_unlock(&req->lock);
    if (req->producer_wake)
        req->producer_wake(req);
}

void tf_request_watch_hangup(struct tf_request *req)
{
    if (!req->abort_on_hangup || req->hangup_fd >= 0 || tf_request_hung_up(req))
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci && tf_loop_watch(req->daemon->loop, ci->connect_fd, EPOLLRDHUP, on_hangup, req) == 0)
        req->hangup_fd = ci->connect_fd;
}

void tf_request_unwatch_hangup(struct tf_request *req)
{
    if (req->hangup_fd < 0)
        return;
    tf_loop_unwatch(req->daemon->loop, req->hangup_fd);
    req->hangup_fd = -1;
}

/* MHD_run, and another run next turn when it closed connections: below
 * its connection limit again, or accepting again after a failed accept
 * (a connection's end clears that, after the run's accepts), libmicrohttpd
 * puts its listening socket back in its epoll set only at the start of a
 * run. */
static void run_daemon(struct tf_daemon *d)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    unsigned before = info ? info->num_connections : 0;
    MHD_run(d->mhd);
    if (d->accept_failed) { /* see pause_accepting */
        d->accept_failed = false;
        info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (info && !d->accept_paused_until)
            tf_loop_unwatch(d->loop, info->epoll_fd);
        d->accept_paused_until = tf_now_us() + TF_ACCEPT_RETRY_MS * 1000u;
    }
    info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    if (info && info->num_connections < before) {
        if (d->accept_held)
            tf_daemon_accept_release(d);
        __atomic_store_n(&d->needs_run, 1, __ATOMIC_RELEASE);
        tf_loop_wake(d->loop);
    }
}

static void on_daemon_ready(void *ctx, int fd, uint32_t events)
{
    (void)fd;
    (void)events;
    run_daemon(ctx);
}

/* After pause_accepting: 0 once the daemon is on its loop again, else the
 * ms until it may be. */
static long resume_accepting(struct tf_daemon *d)
{
    uint64_t now = tf_now_us();
    if (now < d->accept_paused_until)
        return (long)((d->accept_paused_until - now) / 1000u) + 1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || tf_loop_watch(d->loop, info->epoll_fd, EPOLLIN, on_daemon_ready, d) < 0)
        return TF_ACCEPT_RETRY_MS; /* out of memory: try again */
    d->accept_paused_until = 0;
    return 0;
}

/* The sooner of two waits in ms, -1 being none. */
static long earliest(long a, long b)
{
    return a < 0 || (b >= 0 && b < a) ? b : a;
}

/* Run the daemon when it has work without a ready socket (data already
 * read, a timeout due); returns the ms until it next needs a run. */
static long daemon_tick(void *ctx)
{
    struct tf_daemon *d = ctx;
    MHD_UNSIGNED_LONG_LONG ms;
    long paused = d->accept_paused_until ? resume_accepting(d) : 0;
    if (paused > 0) /* no connection is open: nothing else to do */
        return paused;
    bool timed = MHD_get_timeout(d->mhd, &ms) == MHD_YES, due = timed && ms == 0;
    bool watched = d->watched != NULL;
    if (watched)
        look_at_watched(d);
    long sweep = tf_connection_sweep(d), limits = tf_limits_tick(d->server);
    long linger = tf_linger_sweep(d->linger);
    bool ran = __atomic_exchange_n(&d->needs_run, 0, __ATOMIC_ACQ_REL) || due;
    if (ran)
        run_daemon(d);
    long held = d->accept_held ? accept_held_tick(d) : -1;
    long next = earliest(earliest(earliest(sweep, limits), linger), held);
    if (d->watched) { /* also when libmicrohttpd has no timeout: a suspended stream's */
        uint64_t now = tf_now_us();
        next = earliest(next, d->next_look > now ? (long)((d->next_look - now) / 1000u) + 1 : 0);
    }
    /* Asked again only when libmicrohttpd may have changed since (the
     * sweeps above do not call it): a timeout read microseconds ago stands. */
    if (ran || watched || d->watched)
        timed = MHD_get_timeout(d->mhd, &ms) == MHD_YES;
    if (!timed)
        return next;
    if (ms > 1000)
        ms = 1000;
    return next >= 0 && next < (long)ms ? next : (long)ms;
}

int tf_daemon_attach(void *arg) /* on the daemon's loop */
{
    struct tf_daemon *d = arg;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    return !info || !(d->linger = tf_linger_new(d->loop, &tf_linger_default, NULL)) ||
           tf_loop_watch(d->loop, info->epoll_fd, EPOLLIN, on_daemon_ready, d) < 0 ||
           tf_loop_add_tick(d->loop, daemon_tick, d) < 0 ? -1 : 0;
}

int tf_daemon_detach(void *arg) /* on the daemon's loop, or after it stopped */
{
    struct tf_daemon *d = arg;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (info)
        tf_loop_unwatch(d->loop, info->epoll_fd);
    tf_daemon_accept_release(d);
    tf_loop_remove_tick(d->loop, daemon_tick, d);
    tf_linger_free(d->linger); /* a stop does not wait for them */
    d->linger = NULL;
    return 0;
}
