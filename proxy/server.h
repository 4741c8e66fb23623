/* server.h — the HTTP front: libmicrohttpd daemons (one per network
 * thread, each driven by that thread's loop, proxy/loop.h) that read each
 * request (headers checked, body spooled), suspend the connection while a
 * backend works, and send the backend's response. The server never knows
 * which backend answered: a backend gets a struct tf_request and eventually
 * calls tf_request_respond(). Client network I/O happens only on the
 * network threads. */
#ifndef TF_SERVER_H
#define TF_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/config.h"
#include "proxy/request.h"

struct MHD_Response;

/* Hand req to a backend. The backend receives a reference it must drop when
 * done. Returns 0, or -1 when it cannot take more (the client gets 503). */
typedef int (*tf_dispatch_fn)(void *backend, struct tf_request *req);

/* Run req here and now, inside libmicrohttpd's call that read it (no
 * suspend and resume), if the backend judges it quick. The backend receives
 * a reference as with tf_dispatch_fn. 1 when it ran (answered through
 * tf_request_respond), 0 when declined (the reference stays the caller's).
 * req->t_dispatched is set just before the call: the run may start its
 * clock there rather than read it again. */
typedef int (*tf_inline_fn)(void *backend, struct tf_request *req);

struct tf_server;
struct tf_upstream;

/* The backends a request can be routed to (cfg->routes decides); a NULL
 * function means that backend is not configured. */
struct tf_backends {
    tf_dispatch_fn app;            /* the WSGI pool */
    tf_inline_fn app_inline;       /* the same, inline (NULL: never; --inline-fast-calls) */
    bool (*app_idle)(void *app_ctx); /* has the pool a thread free now, nothing queued? */
    void *app_ctx;
    tf_dispatch_fn upstream;       /* libcurl to --upstream */
    void *upstream_ctx;
    struct tf_upstream *pins;      /* --upstream-pin: whom to ask for a pinned link */
    struct tf_loop **loops;        /* the network threads (proxy/loop.h); a server's I/O
                                      thread i is loops[i] */
    unsigned n_loops;
};

/* Where and how a server listens when it is not simply cfg->listen. */
struct tf_server_socket {
    int fd;                  /* the listening socket (tf_server_listen_socket's). Not shared,
                                it is the server's from tf_server_start_on on: closed at the
                                stop, or at once when the start fails; shared, the caller's */
    unsigned io_threads;     /* 0: --io-threads */
    unsigned first_loop;     /* I/O thread i is backends->loops[first_loop + i] */
    unsigned relay_port;     /* a worker: profile pages are its front's, on this loopback port */
    bool shared;             /* fd is shared by the workers: take connections from it with
                                an acceptor thread that can stop (tf_server_quiesce) */
    bool control;            /* a loopback port between a front and its workers: the
                                profile is open to loopback whatever --profile-allow says,
                                and its requests are not written to the access log */
};
/* A listening socket for host:port (the front's, which its workers share);
 * the bound port in *bound. -1 with err. */
int tf_server_listen_socket(const char *host, unsigned port, unsigned *bound, char *err,
                            size_t errlen);
struct tf_server *tf_server_start_on(const struct tf_config *cfg,
                                     const struct tf_backends *backends,
                                     const struct tf_server_socket *sock, char *err, size_t errlen);
/* A worker stepping down: stop accepting and close this process's
 * descriptor of the shared socket (the front's and the other workers' stay
 * open); connections already open are served. 0, or -1 when not a shared
 * socket's server or already done. */
int tf_server_quiesce(struct tf_server *server);
/* A worker: POST <profile>/quiesce on its control server quiesces public
 * (one asked for before this call: at once). */
void tf_server_set_twin(struct tf_server *control, struct tf_server *public_server);
/* The control server's side of POST <profile>/quiesce: quiesce its twin,
 * now (true) or once tf_server_set_twin gives it (false: the worker was told
 * to go, and its public server is not serving yet). */
bool tf_server_quiesce_twin(struct tf_server *control);
unsigned tf_server_port(const struct tf_server *server);
/* Stop taking new connections (they are closed on accept) and close
 * keep-alive connections after their current response. */
void tf_server_begin_stop(struct tf_server *server);
/* Requests received and not yet completed: what a graceful stop waits for
 * (not --mirror copies: a stop abandons them). */
int tf_server_in_flight(const struct tf_server *server);
/* Close every connection and free the server. */
void tf_server_stop(struct tf_server *server);

/* The function profiler's controls, provided by the Python side (main.c
 * wires them) so this library stays free of Python. */
struct tf_profiler_controls {
    void (*enable)(bool on);
    bool (*enabled)(void);
    /* malloc'd, or NULL (errno EFBIG: past the format's size limit; EINTR: a
     * front's stop, told to end at once while it asked its workers; EAGAIN:
     * a front's stop, its workers' profiles not all handed over yet) */
    char *(*export)(const char *format, size_t *len);
    /* *bad_view: the query's filter or sort is invalid (the JSON says which);
     * NULL as export's (EAGAIN), or on out of memory. profile_href, here and
     * in request_html: the profile path relative to the page's own URL
     * (profile_pages.c), which every link is made on. */
    char *(*table)(const char *query, bool json, const char *profile_href, size_t *len,
                   bool *bad_view);
    /* NULL: no such request kept (EAGAIN: as export's) */
    char *(*request_html)(uint64_t id, const char *query, const char *profile_href, size_t *len);
    void (*clear)(void);
    /* The WSGI requests running now, with their Python stacks: an HTML
     * fragment or JSON, malloc'd (*len set), NULL on out of memory (or
     * EAGAIN: as export's). */
    char *(*inflight)(bool json, size_t *len);
    char *(*modules)(size_t *len); /* the app's loaded Python files, one per line; may be NULL */
    int (*refresh)(void);          /* a front: merge the workers' latency; returns in flight */
    bool (*absorb)(unsigned port); /* a front: keep the profile of the worker stopping there */
    /* a front: the worker there had a request interrupted by its watchdog
     * (completed: the requests it completed without one) and asks to be
     * replaced; false if it is no current worker */
    bool (*replace)(unsigned port, uint64_t completed);
};
void tf_server_set_profiler(struct tf_server *server, const struct tf_profiler_controls *c);

/* At shutdown: write the configured profile files (--profile-log,
 * --profile-callgrind; with nothing profiled, none: a file there stays as
 * it is), or with --profile-flush-at-shutdown remove them. */
void tf_server_profile_shutdown(const struct tf_server *server);

/* The text of an error answer ("413 Content Too Large\nDETAIL\n", detail
 * may be NULL) in buf; returns its length (cut to fit). */
size_t tf_error_text(unsigned status, const char *detail, char *buf, size_t size);
/* A short text/plain error response ("404 Not Found\n" and detail), with
 * Connection: close when close is true; its body length goes to *body_len
 * (may be NULL). NULL on out of memory. */
struct MHD_Response *tf_error_response(unsigned status, const char *detail, bool close,
                                       uint64_t *body_len);

#endif
