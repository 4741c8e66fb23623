/* unavailable.c — the front's 503 while no worker is alive (see
 * unavailable.h): a libmicrohttpd daemon on its own thread, nothing shared
 * with the control server. It must never close or shut down the public
 * socket: it listens on a duplicate, quiesced (handed back) before it stops. */
#include "proxy/unavailable.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "proxy/log.h"
#include "proxy/server.h"

#define TIMEOUT_S 10 /* a client that sends no request in this time is closed */

struct tf_unavailable {
    struct MHD_Daemon *mhd;
    char retry_after[16];   /* read-only after start */
};

/* A body up to this size is read and dropped before the 503: closed with
 * it unread, the connection would end in a reset, and a client that sends
 * its whole body before reading (Python's http.client) would get that
 * instead of the answer (the workers linger; this daemon drains). A longer
 * one, or one that waits for 100 Continue, is answered at its head. */
#define DRAIN_MAX (64u * 1024u * 1024u)

struct request {
    char *target; /* as sent (libmicrohttpd's url lacks the query), for the access log */
    bool reading;     /* its body is being read and dropped */
    uint64_t drained; /* bytes of it */
};

/* The request's state in *con_cls; freed in forget(). */
static void *keep_uri(void *cls, const char *uri, struct MHD_Connection *connection)
{
    (void)cls;
    (void)connection;
    struct request *r = calloc(1, sizeof(*r));
    if (r && !(r->target = strdup(uri))) {
        free(r);
        r = NULL;
    }
    return r;
}

static void forget(void *cls, struct MHD_Connection *connection, void **con_cls,
                   enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)connection;
    (void)toe;
    struct request *r = *con_cls;
    if (r)
        free(r->target);
    free(r);
    *con_cls = NULL;
}

static void log_access(struct MHD_Connection *connection, const char *target,
                       const char *method, const char *version, uint64_t bytes)
{
    char addr[INET6_ADDRSTRLEN] = "-";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr,
                  sizeof(addr));
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, addr,
                  sizeof(addr));
    struct tf_access_entry e = {
        .remote_addr = addr, .method = method, .target = target ? target : "-",
        .version = version, .status = 503, .bytes = bytes,
        .referer = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Referer"),
        .user_agent = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "User-Agent"),
    };
    tf_log_access(&e);
}

/* Read the body and drop it (see DRAIN_MAX)? */
static bool drains(struct MHD_Connection *connection)
{
    if (MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Expect"))
        return false;
    const char *te = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                 "Transfer-Encoding");
    if (te) /* chunked: counted as it comes; another coding: read until the close */
        return !strcasecmp(te, "chunked");
    const char *cl = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Content-Length");
    unsigned long long n = cl ? strtoull(cl, NULL, 10) : 0;
    return n > 0 && n <= DRAIN_MAX;
}

/* Every request: the 503, once its body (if any) is read and dropped or
 * at its head (see drains). */
static enum MHD_Result answer(void *cls, struct MHD_Connection *connection, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)url;
    (void)upload_data;
    const struct tf_unavailable *u = cls;
    struct request *req = *con_cls;
    if (*upload_data_size) {
        if (!req || (req->drained += *upload_data_size) > DRAIN_MAX) {
            tf_log_info("no worker running: a chunked body went past %u MiB; connection "
                        "closed without an answer", DRAIN_MAX >> 20);
            return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req && !req->reading && drains(connection)) {
        req->reading = true; /* the body comes in the next calls, then a last empty one */
        return MHD_YES;
    }
    uint64_t bytes = 0;
    struct MHD_Response *r = tf_error_response(
        503, "No worker process is running: they stopped and new ones cannot start yet (the "
             "error log says why). Try again later.", true, &bytes);
    if (!r)
        return MHD_NO;
    enum MHD_Result queued = MHD_add_response_header(r, "Retry-After", u->retry_after) == MHD_YES
                                 ? MHD_queue_response(connection, 503, r) : MHD_NO;
    MHD_destroy_response(r);
    if (queued == MHD_YES && tf_log_access_enabled())
        log_access(connection, req ? req->target : NULL, method, version, bytes);
    return queued;
}

struct tf_unavailable *tf_unavailable_start(int listen_fd, unsigned retry_after_s)
{
    struct tf_unavailable *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    snprintf(u->retry_after, sizeof(u->retry_after), "%u", retry_after_s);
    int fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 3); /* the daemon's to close */
    if (fd < 0) {
        free(u);
        return NULL;
    }
    u->mhd = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC, 0, NULL, NULL, answer, u,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_URI_LOG_CALLBACK, keep_uri, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, forget, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)TIMEOUT_S,
        MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
        MHD_OPTION_END);
    if (!u->mhd) {
        close(fd);
        free(u);
        return NULL;
    }
    return u;
}

/* What a stopped daemon's requests still have to finish: a drain of
 * DRAIN_MAX at a slow client's pace. */
#define FINISH_S 60

/* The daemon's connections left (0 when it cannot tell). */
static unsigned connections_left(struct tf_unavailable *u)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(u->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}

/* Its own thread, once u accepts no more: stop it when its connections
 * have gone, or after FINISH_S. */
static void *finish(void *arg)
{
    struct tf_unavailable *u = arg;
    const struct timespec pause = { 0, 50 * 1000 * 1000 };
    for (unsigned waited_ms = 0; connections_left(u) && waited_ms < FINISH_S * 1000;
         waited_ms += 50)
        nanosleep(&pause, NULL);
    MHD_stop_daemon(u->mhd);
    free(u);
    return NULL;
}

void tf_unavailable_stop(struct tf_unavailable *u)
{
    if (!u)
        return;
    /* Quiesced first: stopping must not shut the listening socket down
     * (that would be the workers' socket too), only close the duplicate. */
    MHD_socket fd = MHD_quiesce_daemon(u->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    pthread_t t;
    pthread_attr_t attr;
    bool away = false;
    if (pthread_attr_init(&attr) == 0) {
        away = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
               pthread_create(&t, &attr, finish, u) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!away) { /* no thread: its connections are dropped now */
        MHD_stop_daemon(u->mhd);
        free(u);
    }
}
