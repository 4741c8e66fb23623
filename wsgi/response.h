/* response.h — start_response, write(), and turning an app's status, headers
 * and body into a libmicrohttpd response. A request's WSGI state lives in a
 * struct wsgi_task, owned by the app thread running it (GIL held for every
 * access); the response is handed to the I/O side exactly once ("sent"). */
#ifndef WSGI_RESPONSE_H
#define WSGI_RESPONSE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct tf_request;

struct wsgi_task {
    struct tf_request *req;   /* the task's own reference */
    PyObject *environ;        /* new ref */
    PyObject *input;          /* its wsgi.input, new ref: detached when the task ends */
    PyObject *start_response; /* new ref: a StartResponse bound to this task */
    PyObject *write;          /* new ref: its write(), what start_response returns */
    PyObject *result;         /* the app's iterable, new ref */
    PyObject *iterator;       /* iter(result), new ref */
    PyObject *status;         /* str from start_response, new ref */
    PyObject *headers;        /* list from start_response, new ref */
    unsigned code;
    int64_t content_length;   /* the app's Content-Length, -1 if none */
    size_t head_bytes;        /* the app's headers in the answer's head ("Name: value\r\n") */
    uint64_t body_bytes;      /* body bytes produced so far */
    bool sent;                /* the response is with the I/O side */
    bool head_refused;        /* sent is a 500: the app's head did not fit (its body stops) */
    bool head_answered;       /* a HEAD answered before its body's end (wsgi_response_write):
                                 the body stops */
    bool timeout_answered;    /* the app answered its RequestTimeout itself (start_response
                                 with its exc_info): that answer stands */
    PyObject *stop_error;     /* the OSError write() raised to stop the body: the client
                                 left, or a HEAD was answered (new ref), or NULL */
    PyObject *profile;        /* the function profiler's collector, or NULL */
};

extern PyTypeObject wsgi_start_response_type;

/* Call wherever the app's Python code may have run: if it forked and this is
 * the child, back in tracfront (a copy of an app thread, or of a network
 * thread running the request inline, with the server's sockets), log it and
 * _exit(1) at once, touching nothing shared. Not an atfork handler: a child
 * that execs (subprocess) never comes back here. */
void wsgi_task_exit_if_forked(const struct wsgi_task *task);

/* task->start_response and task->write (new refs, a kept pair or new
 * ones): 0, or -1 with an exception (both NULL). GIL held. */
int wsgi_start_response_new(struct wsgi_task *task);
/* The task is over: later calls of that start_response/write raise. */
void wsgi_start_response_detach(PyObject *start_response);
/* The task is over: later calls of its start_response and write() raise;
 * both are dropped, or kept for another task when nothing else holds them
 * (response.c). Call after everything that may hold them was dropped (the
 * app's result, environ, ...). GIL held. */
void wsgi_start_response_release(struct wsgi_task *task);
/* Drop the kept ones (before finalizing; GIL held, no task running). */
void wsgi_start_response_pool_clear(void);

/* Hand a complete body (copied) to the client: Content-Length is its size,
 * capped at the app's Content-Length; a body shorter than that goes out
 * with the app's length and ends cut (wsgi_response_end). Returns 0 or -1
 * (exception set). */
int wsgi_response_send_buffer(struct wsgi_task *task, const char *data, size_t len);
/* Hand a regular file to the client (sendfile), as a buffer is; takes
 * ownership of fd. */
int wsgi_response_send_file(struct wsgi_task *task, int fd, uint64_t offset, uint64_t size);
/* Start a streamed response (Content-Length if the app gave one, else chunked
 * on HTTP/1.1 and close-delimited on 1.0). Bodyless: nothing is sent yet.
 * A head too large for the connection is answered 500 at once (logged):
 * -1 with OSError set and task->head_refused, and the body must stop. */
int wsgi_response_start_stream(struct wsgi_task *task);
/* True when the answer carries no body: a HEAD, a 304 or a 204. The app's
 * body is then counted, not sent, and the answer goes out at its end; a
 * HEAD's as soon as its head is known (wsgi_response_write). */
bool wsgi_response_bodyless(const struct wsgi_task *task);
/* Such an answer, once its body has been produced and counted: headers (a
 * HEAD's Content-Length is its body's), and no body. A head too large for
 * the connection (libmicrohttpd's pool) is a 500 (logged) here, and in the
 * send and start functions above. */
int wsgi_response_send_head(struct wsgi_task *task);
/* End a started stream: whole, or cut (the connection aborted, logged) when
 * the body fell short of the app's Content-Length. */
void wsgi_response_end(struct wsgi_task *task);
/* A 500 (or other) error page, when nothing was sent yet. */
void wsgi_response_send_error(struct wsgi_task *task, unsigned status, const char *detail);

/* A body chunk of a started stream, from write() or the iterable: past the
 * channel's high-water mark it goes to a file of at most --max-spill bytes,
 * and past that this waits for the client with the GIL released (an inline
 * run, which cannot wait, spills without a cap). A HEAD's is counted, and
 * its answer goes out at the chunk that makes its head known: the first
 * with the app's Content-Length, else the second (its GET would stream with
 * no length, and so is its HEAD answered); the body stops there. 0, or -1
 * with OSError set: task->stop_error ("client disconnected", or the HEAD
 * answered), or OSError(errno, "cannot buffer the response: ...") when the
 * file failed, or the watchdog's RequestTimeout (--request-timeout-action
 * 504). */
int wsgi_response_write(struct wsgi_task *task, const char *data, size_t len);
/* Whether the exception set is task->stop_error (the app let it through). */
bool wsgi_response_stopped(const struct wsgi_task *task);
/* Why it stopped (its OSError's message), for the log line; with the GIL. */
const char *wsgi_response_stop_reason(const struct wsgi_task *task);

#endif
