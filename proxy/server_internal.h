/* server_internal.h — the server's state, shared by the files that make up
 * the server: server.c (libmicrohttpd's callbacks, routing), server_start.c
 * (start and stop), request_head.c (a request's head), request_end.c (its
 * end), daemon_loop.c (a daemon on its loop), connection.c (a client
 * connection's state), limits.c (--max-connections and descriptors run
 * out), acceptor.c (a worker's acceptor thread), profile_pages.c (the
 * profiler's pages). Nothing else includes it. */
#ifndef TF_SERVER_INTERNAL_H
#define TF_SERVER_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>

#include "proxy/limits.h"
#include "proxy/server.h"

enum phase { PHASE_NEW, PHASE_BODY,
             PHASE_HEAD_CHECKING /* an upload's login, away from the loop, before its body */,
             PHASE_CHECKING /* a login, away from the loop */,
             PHASE_DISPATCHED, PHASE_RESPONDED };

/* One libmicrohttpd daemon per I/O thread, driven by that thread's loop. */
struct tf_daemon {
    struct MHD_Daemon *mhd;
    struct tf_loop *loop;
    struct tf_server *server;
    int needs_run;                  /* atomic: a connection was resumed (libmicrohttpd in
                                       this mode does not notice by itself) */
    struct tf_request *watched;     /* loop thread only: requests looked at once a second
                                       for a client gone or a file shrunk (daemon_loop.c) */
    uint64_t next_look;             /* loop thread only: when to look at them next (us) */
    struct tf_connection *conns;    /* loop thread only: its client connections
                                       (connection.c) */
    unsigned n_conns;               /* loop thread only: how many are in conns */
    unsigned share;                 /* read-only after start: its part of --max-connections,
                                       which its lingering sockets count in (connection.c) */
    uint64_t head_us, next_head_us; /* read-only after start: a first and a later request's
                                       head may take this long (us; 0 = no limit) */
    uint64_t next_sweep;            /* loop thread only: when to look at the deadlines next */
    bool accept_failed;             /* loop thread only: an accept failed with no connection
                                       open (libmicrohttpd would retry at once; daemon_loop.c) */
    uint64_t accept_paused_until;   /* loop thread only: not run from its epoll set until
                                       then (us); 0 = it is watched */
    bool accept_held;               /* loop thread only: libmicrohttpd stopped accepting (an
                                       accept failed with connections open) until one closes;
                                       the loop accepts for it meanwhile (daemon_loop.c) */
    bool listen_watched;            /* loop thread only: while held, its listening socket is
                                       in the loop's epoll set */
    uint64_t accept_retry_at;       /* loop thread only: while held and not watched, when to
                                       watch it again (us) */
    struct tf_lingerer *linger;     /* loop thread only: its sockets closing lingering
                                       (linger.h); NULL before attach and after detach */
};

struct tf_server {
    struct tf_daemon *daemons;      /* n_daemons; main thread: start/stop only */
    unsigned n_daemons;
    unsigned next_daemon;           /* the acceptor's: connections go round the daemons */
    const struct tf_config *cfg;    /* read-only */
    const struct tf_backends *backends; /* read-only */
    struct tf_mirror *mirror;       /* --mirror; read-only pointer after start */
    unsigned relay_port;            /* a worker: its front's profile pages, on this port */
    int quiesced;                   /* atomic: a worker stepping down stops accepting */
    int open_connections;           /* atomic: client connections open now */
    unsigned logins_checking;       /* atomic: Basic logins checked away from the loops */
    unsigned long started_connections; /* atomic: client connections ever started */
    struct tf_episode full;         /* atomics: at --max-connections (limits.c) */
    int shared_fd;                  /* a worker: the socket its acceptor thread takes from
                                       (closed when it stops); -1 */
    int acceptor_wake[2];           /* a byte here ends the acceptor */
    pthread_t acceptor;
    struct tf_server *twin;         /* a worker's control server: its public one (atomic;
                                       the main thread sets it once serving) */
    int quiesce_asked;              /* atomic: the front asked before twin was set (a stop
                                       right after GO): the public server quiesces once set */
    unsigned port;                  /* read-only after start */
    bool control;                   /* read-only after start: a loopback port between a front
                                       and its workers; its requests are not the access log's */
    int in_flight;                  /* atomic; I/O threads: requests with complete headers */
    int stopping;                   /* atomic; main thread sets it once */
    const struct tf_profiler_controls *profiler; /* atomic: set once, maybe after start; may be NULL */
    struct tf_cidr *profile_allow;  /* read-only after start */
    size_t n_profile_allow;
    bool profile_allow_default;     /* loopback, no --profile-allow: not what a proxy forwards */
    struct tf_auth *auth;           /* --basic-auth/--digest-auth, NULL = none; read-only
                                       pointer after start (tf_auth_check locks inside) */
};

/* --- request_head.c --- */
struct tf_framing;
/* First access-handler call: everything up to the end of the headers.
 * Returns 0 when the request may go on, else the status to refuse it with. */
int tf_head_take(struct tf_request *req, const char *method, const char *version,
                 struct tf_framing *framing);
/* REMOTE_ADDR and REMOTE_PORT of the connection's client, formatted once per
 * connection (kept in req->conn when it is set). */
void tf_head_set_remote(struct tf_request *req, struct MHD_Connection *connection);
/* The bytes of the connection's pool (TF_CONNECTION_POOL) libmicrohttpd
 * 0.9.75 keeps for the request once it is read: its head, a record per
 * header, query argument, cookie and trailer, the copy of its Cookie header.
 * The answer's head must fit in the rest (bytes of a pipelined request
 * already read take some more, not counted). Final access-handler call. */
size_t tf_head_used(struct MHD_Connection *connection);
/* What the rest must hold at least, a small answer's head (an error
 * page's): else nothing could be sent, and the request is refused with 431
 * before its backend runs (nginx answers 400 for heads too large). */
#define TF_HEAD_ROOM_MIN 256u
/* Cut the query of a target with more arguments than libmicrohttpd can
 * store, in its own copy (the request is then refused with 414). */
bool tf_head_cut_long_query(const char *uri);

/* --- daemon_loop.c --- */
enum tf_watch { WATCH_NONE, WATCH_BODY_IN, WATCH_FILE_OUT, WATCH_STREAM_WAIT };
/* Look at req once a second (why), on d's loop, until tf_watch_remove. */
void tf_watch_add(struct tf_daemon *d, struct tf_request *req, enum tf_watch why);
void tf_watch_remove(struct tf_request *req);
/* tf_loop_call functions: put the daemon (arg) on its loop, take it off. */
int tf_daemon_attach(void *arg);
int tf_daemon_detach(void *arg);
/* tf_loop_call function: close the daemon's (arg) oldest lingering socket,
 * for a descriptor wanted. 1 when one was, else 0. */
int tf_daemon_close_lingering(void *arg);
/* On d's loop, before its listening socket is closed: the loop no longer
 * accepts for libmicrohttpd (see accept_held). */
void tf_daemon_accept_release(struct tf_daemon *d);
/* libmicrohttpd's logger (MHD_OPTION_EXTERNAL_LOGGER; cls is the server). */
void tf_daemon_log(void *cls, const char *fmt, va_list ap);
/* Whether libmicrohttpd, on this thread, could not build the head of the
 * answer of the request it completes next (no room left in its connection's
 * pool): the connection closed with nothing sent. Clears it. */
bool tf_daemon_head_failed(void);

/* --- request_end.c --- */
/* libmicrohttpd's MHD_OPTION_NOTIFY_COMPLETED (cls is the server). */
void tf_server_on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                            enum MHD_RequestTerminationCode toe);

/* --- acceptor.c --- */
/* A worker's: start the thread that takes connections from shared_fd;
 * tf_server_quiesce stops it. 0, or -1. */
int tf_acceptor_start(struct tf_server *server);

/* --- server.c --- */
/* libmicrohttpd's callbacks (cls is the server), which server_start.c
 * gives each daemon: the access handler, the accept policy (no connection
 * while stopping), MHD_OPTION_URI_LOG_CALLBACK (makes the request's state)
 * and MHD_OPTION_NOTIFY_CONNECTION (a client connection's). */
enum MHD_Result tf_server_on_request(void *cls, struct MHD_Connection *connection,
                                     const char *url, const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls);
enum MHD_Result tf_server_on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void *tf_server_on_uri(void *cls, const char *uri, struct MHD_Connection *connection);
void tf_server_on_connection(void *cls, struct MHD_Connection *connection,
                             void **socket_context, enum MHD_ConnectionNotificationCode code);
/* Queue r (taken) as the answer to req; MHD_NO when r is NULL. */
enum MHD_Result tf_server_queue(struct tf_request *req, unsigned status, struct MHD_Response *r);
/* Answer with a short text error (tf_error_response). */
enum MHD_Result tf_server_reply(struct tf_request *req, unsigned status, const char *detail,
                                bool close);
/* Final access-handler call: suspend the connection and hand req (with a
 * reference) to a backend, which answers through tf_request_respond or
 * req->response + tf_request_resume; 503 if it refuses. */
enum MHD_Result tf_server_dispatch(struct tf_server *server, struct tf_request *req,
                                   tf_dispatch_fn to, void *backend);

/* Does the target name the profile path or something under it (decoded, as
 * tf_path_under_prefix)? *sub is the raw rest ("" or "/metrics?x"). */
bool tf_profile_path_match(const char *target, const char *profile, const char **sub);
/* What the head of a request for the profile path decides alone, before
 * any page is made: 403 to a client the profiler is not open to, 404 for a
 * worker's /stopped, 405 (with Allow) for a method the page does not take.
 * True with that answer queued and *result the access handler's; close:
 * the body was not read (an upload refused at its head). */
bool tf_profile_refused(struct tf_server *server, struct tf_request *req, const char *sub,
                        bool close, enum MHD_Result *result);
/* Answer a request for the profile path (final access-handler call). */
enum MHD_Result tf_profile_serve(struct tf_server *server, struct tf_request *req,
                                 const char *sub);
/* --profile-allow, or loopback when none is given (always on a control
 * port). 0, or -1 on out of memory. */
int tf_profile_allow_init(struct tf_server *server, const struct tf_config *cfg, bool control);

#endif
