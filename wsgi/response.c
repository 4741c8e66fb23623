/* response.c — start_response and write() (PEP 3333), and building the MHD
 * response from what they collected (see response.h). All of it runs on the
 * app thread with the GIL held, except copying or spilling a large chunk and
 * the body's wait for a slow client, which release the GIL. */
#include "wsgi/response.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "proxy/http_check.h"
#include "proxy/log.h"
#include "proxy/request.h"
#include "proxy/server.h"
#include "wsgi/headers.h"
#include "wsgi/interp.h"
#include "wsgi/watchdog.h"

struct start_response {
    PyObject_HEAD
    struct wsgi_task *task;     /* borrowed; NULL once the task has ended */
    vectorcallfunc vectorcall;  /* sr_vectorcall: called without an argument tuple */
};

/* The bytes of a str whose characters all fit latin-1 (NUL-terminated, as
 * CPython keeps them). -1 if not a str or wider than latin-1. */
static int latin1_view(PyObject *s, const char **p, size_t *n)
{
    if (!PyUnicode_Check(s) || PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND)
        return -1;
    *p = (const char *)PyUnicode_1BYTE_DATA(s);
    *n = (size_t)PyUnicode_GET_LENGTH(s);
    return 0;
}

/* The app's Content-Length value; whitespace around it is not part of it
 * (RFC 9110 5.5; mod_wsgi and gunicorn strip it too). -2 if invalid. */
static int64_t parse_length(const char *v, size_t n)
{
    int64_t x = 0;
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n == 0)
        return -2;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9' || x > (INT64_MAX - 9) / 10)
            return -2;
        x = x * 10 + (v[i] - '0');
    }
    return x;
}

/* Validate the headers list; sets *content_length, and *bytes to what they
 * take in the answer's head. 0, or -1 with exception. */
static int check_headers(PyObject *headers, int64_t *content_length, size_t *bytes)
{
    if (!PyList_Check(headers)) {
        PyErr_Format(PyExc_TypeError, "start_response: headers must be a list, not %.100s",
                     Py_TYPE(headers)->tp_name);
        return -1;
    }
    *content_length = -1;
    *bytes = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = PyList_GET_ITEM(headers, i); /* borrowed */
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_Format(PyExc_TypeError,
                         "start_response: header %zd must be a (name, value) tuple, not %R", i,
                         item);
            return -1;
        }
        const char *name, *value;
        size_t nlen, vlen;
        if (latin1_view(PyTuple_GET_ITEM(item, 0), &name, &nlen) < 0 ||
            latin1_view(PyTuple_GET_ITEM(item, 1), &value, &vlen) < 0) {
            PyErr_Format(PyExc_TypeError,
                         "start_response: header %R: name and value must be latin-1 str", item);
            return -1;
        }
        if (!wsgi_header_name_valid(name, nlen) || !wsgi_header_value_valid(value, vlen)) {
            PyErr_Format(PyExc_ValueError,
                         "start_response: invalid header %R (bad name, or a control "
                         "character such as a newline in the value)", item);
            return -1;
        }
        /* "Name: value\r\n"; an empty value goes out as " " (tf_response_add_header) */
        *bytes += nlen + (vlen ? vlen : 1) + 4;
        if (nlen == 14 && !strncasecmp(name, "Content-Length", 14)) {
            *content_length = parse_length(value, vlen);
            if (*content_length == -2) {
                PyErr_Format(PyExc_ValueError, "start_response: invalid Content-Length %R", item);
                return -1;
            }
        }
    }
    return 0;
}

static PyObject *sr_write(PyObject *self, PyObject *data);
static PyMethodDef write_def = { "write", sr_write, METH_O, "PEP 3333 write(bytes)" };

static PyObject *sr_start(PyObject *self, PyObject *status, PyObject *headers,
                          PyObject *exc_info);

/* start_response(status, response_headers, exc_info=None), its arguments
 * taken as Python takes a function's (vectorcall: no tuple, no format
 * string to parse; a third of the call's cost). */
static PyObject *sr_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames)
{
    static const char *const names[] = { "status", "response_headers", "exc_info" };
    PyObject *arg[3] = { NULL, NULL, NULL };
    Py_ssize_t n = PyVectorcall_NARGS(nargsf), n_kw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (n > 3) {
        PyErr_Format(PyExc_TypeError, "start_response() takes at most 3 arguments (%zd given)",
                     n + n_kw);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        arg[i] = args[i];
    for (Py_ssize_t k = 0; k < n_kw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k); /* borrowed */
        int j = 0;
        while (j < 3 && PyUnicode_CompareWithASCIIString(key, names[j]) != 0)
            j++;
        if (j == 3) {
            PyErr_Format(PyExc_TypeError,
                         "start_response() got an unexpected keyword argument '%U'", key);
            return NULL;
        }
        if (arg[j]) {
            PyErr_Format(PyExc_TypeError,
                         "start_response() got multiple values for argument '%s'", names[j]);
            return NULL;
        }
        arg[j] = args[n + k];
    }
    if (!arg[0] || !arg[1]) {
        PyErr_Format(PyExc_TypeError, "start_response() missing required argument '%s'",
                     names[arg[0] ? 1 : 0]);
        return NULL;
    }
    return sr_start(self, arg[0], arg[1], arg[2] ? arg[2] : Py_None);
}

static PyObject *sr_start(PyObject *self, PyObject *status, PyObject *headers,
                          PyObject *exc_info)
{
    /* What needs memory first: an allocation may run the collector, whose
     * finalizers and callbacks may run Python and let go of the GIL, and an
     * app that calls start_response on another thread may see its request
     * end meanwhile (the task freed, its memory another request's). The
     * task is read after the last allocation and never touched after a
     * Python object is let go. The headers are checked as copied: the app
     * may change its list later, or meanwhile. */
    PyObject *snapshot = PyList_Check(headers) ? PyList_GetSlice(headers, 0, PY_SSIZE_T_MAX)
                                               : Py_NewRef(headers); /* check_headers says */
    struct wsgi_task *task = ((struct start_response *)self)->task;
    if (!snapshot)
        goto fail;
    if (!task) {
        PyErr_SetString(PyExc_RuntimeError, "start_response called after the request ended");
        goto fail;
    }
    if (exc_info != Py_None) {
        PyObject *value = PyTuple_Check(exc_info) && PyTuple_GET_SIZE(exc_info) == 3
                              ? PyTuple_GET_ITEM(exc_info, 1) : NULL; /* borrowed */
        if (!task->sent && value && wsgi_watchdog_is_timeout(value))
            task->timeout_answered = true; /* run.c: not turned into the 504 */
        if (task->sent) { /* too late to change the status: re-raise (PEP 3333) */
            if (!value || !PyExceptionInstance_Check(value)) {
                PyErr_SetString(PyExc_TypeError,
                                "start_response: exc_info must be sys.exc_info() of a raised exception");
                goto fail;
            }
            PyObject *tb = PyTuple_GET_ITEM(exc_info, 2); /* borrowed */
            if (PyTraceBack_Check(tb))
                PyException_SetTraceback(value, tb);
            PyErr_SetObject((PyObject *)Py_TYPE(value), value);
            goto fail;
        }
    } else if (task->status) {
        PyErr_SetString(PyExc_RuntimeError,
                        "start_response called a second time without exc_info");
        goto fail;
    }
    const char *s;
    size_t slen;
    unsigned code;
    if (latin1_view(status, &s, &slen) < 0 || !(code = wsgi_status_parse(s, slen)) || code < 200) {
        PyErr_Format(PyExc_ValueError,
                     "start_response: invalid status %R (want a str like '200 OK', code 200-999)",
                     status);
        goto fail;
    }
    int64_t content_length;
    size_t head_bytes;
    if (check_headers(snapshot, &content_length, &head_bytes) < 0)
        goto fail;
    /* the task's own write(), the same for each call (kept with its
     * StartResponse: wsgi_start_response_new); ours before anything is let
     * go, and in the collector's sight from now on, as any bound method the
     * app holds */
    PyObject *write = Py_NewRef(task->write); /* new ref */
    if (!PyObject_GC_IsTracked(write))
        PyObject_GC_Track(write);
    /* plain stores; what they replace is let go once the task is done with */
    PyObject *old_status = task->status, *old_headers = task->headers;
    task->status = Py_NewRef(status);
    task->headers = snapshot;
    task->code = code;
    task->content_length = content_length;
    task->head_bytes = head_bytes;
    /* Nothing was sent: a body counted so far (a 204's, dropped) was not this
     * answer's, and counted against its Content-Length it would cut it. */
    task->body_bytes = 0;
    Py_XDECREF(old_status);
    Py_XDECREF(old_headers);
    return write;
fail:
    Py_XDECREF(snapshot);
    return NULL;
}

/* Set in the child of a fork() (pthread_atfork), before it runs anything:
 * a plain load per check, where getpid() was a system call each (glibc no
 * longer caches it), several per request. An exec'd child starts afresh. */
static bool forked;

static void note_fork(void)
{
    forked = true;
}

__attribute__((constructor)) static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, note_fork);
}

void wsgi_task_exit_if_forked(const struct wsgi_task *task)
{
    if (__builtin_expect(!forked, 1))
        return;
    pid_t pid = getpid();
    /* Not tf_log_error: its localtime_r takes glibc's time-zone lock, which
     * another thread may have held at the fork and nobody unlocks in the
     * child. A fixed prefix, no time, one write(2). */
    char line[1024];
    int n = snprintf(line, sizeof(line), "[error] %s %.900s: the app forked and its child "
                     "returned to tracfront (pid %d); exiting\n", task->req->method,
                     task->req->log_target, (int)pid);
    if (n > 0)
        tf_log_raw(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    _exit(1);
}

static PyObject *sr_write(PyObject *self, PyObject *data)
{
    struct wsgi_task *task = ((struct start_response *)self)->task;
    if (task)
        wsgi_task_exit_if_forked(task);
    if (!task || !task->status) {
        PyErr_SetString(PyExc_RuntimeError,
                        task ? "write() before start_response()" : "write() after the request ended");
        return NULL;
    }
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "write() takes bytes, not %.100s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    if (PyBytes_GET_SIZE(data) == 0)
        Py_RETURN_NONE;
    if (!task->sent && wsgi_response_start_stream(task) < 0)
        return NULL;
    if (wsgi_response_write(task, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static void sr_dealloc(PyObject *self)
{
    PyObject_Free(self);
}

PyTypeObject wsgi_start_response_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracfront.StartResponse",
    .tp_basicsize = sizeof(struct start_response),
    .tp_dealloc = sr_dealloc,
    .tp_vectorcall_offset = offsetof(struct start_response, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "start_response(status, response_headers, exc_info=None) -> write",
};

/* StartResponse objects of ended tasks that nothing else holds, each with
 * its write(), kept for the next tasks (an allocation and a bound method
 * fewer a request). A pool entry is the write() (owned), whose __self__
 * owns the StartResponse. Only what nothing can reach is kept: both held
 * only by the task (write()'s refcount 1, the StartResponse's 2: the task
 * and write()), no weak reference to write(); in the pool, write() is
 * untracked by the collector, so gc.get_objects() and its kin cannot hand
 * it out; it is tracked again when start_response hands it to the app (as
 * before, no write() is in the collector's sight before that). A kept object's task is
 * NULL meanwhile (a call raises). Under the GIL. */
#define SR_POOL 8
static PyObject *sr_pool[SR_POOL];
static int sr_pooled;

int wsgi_start_response_new(struct wsgi_task *task)
{
    if (sr_pooled) {
        PyObject *write = sr_pool[--sr_pooled]; /* its reference becomes the task's */
        struct start_response *sr = (struct start_response *)PyCFunction_GET_SELF(write);
        sr->task = task;
        task->start_response = Py_NewRef((PyObject *)sr);
        task->write = write;
        return 0;
    }
    struct start_response *sr = PyObject_New(struct start_response, &wsgi_start_response_type);
    if (!sr)
        return -1;
    sr->task = task;
    sr->vectorcall = sr_vectorcall;
    PyObject *write = PyCFunction_New(&write_def, (PyObject *)sr); /* new ref; owns sr too */
    if (!write) {
        Py_DECREF(sr);
        return -1;
    }
    PyObject_GC_UnTrack(write); /* until start_response hands it out (sr_start) */
    task->start_response = (PyObject *)sr;
    task->write = write;
    return 0;
}

void wsgi_start_response_pool_clear(void)
{
    while (sr_pooled)
        Py_DECREF(sr_pool[--sr_pooled]);
}

void wsgi_start_response_detach(PyObject *start_response)
{
    if (start_response)
        ((struct start_response *)start_response)->task = NULL;
}

void wsgi_start_response_release(struct wsgi_task *task)
{
    PyObject *self = task->start_response, *write = task->write;
    if (!self)
        return;
    ((struct start_response *)self)->task = NULL;
    task->start_response = task->write = NULL;
    if (write && sr_pooled < SR_POOL && Py_REFCNT(self) == 2 && Py_REFCNT(write) == 1 &&
        !((PyCFunctionObject *)write)->m_weakreflist) {
        if (PyObject_GC_IsTracked(write))
            PyObject_GC_UnTrack(write);
        Py_DECREF(self); /* write() holds it */
        sr_pool[sr_pooled++] = write;
        return;
    }
    Py_XDECREF(write);
    Py_DECREF(self);
}

/* --- building the MHD response ------------------------------------------ */

/* A hop-by-hop header from the app (PEP 3333 forbids them): "Connection:
 * close" is honoured, as mod_wsgi and uWSGI do (the connection closes after
 * this answer); anything else is dropped, and the first one logged. */
static void app_hop_by_hop(struct MHD_Response *r, struct wsgi_task *task, const char *name,
                           size_t nlen, const char *value)
{
    static bool logged;
    if (nlen == 10 && !strncasecmp(name, "Connection", 10) &&
        tf_connection_lists(value, "close", 5)) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        return;
    }
    if (!__atomic_exchange_n(&logged, true, __ATOMIC_RELAXED))
        tf_log_error("%s %s: header '%.*s' from the app is hop-by-hop (PEP 3333): not sent "
                     "(logged once)", task->req->method, task->req->log_target, (int)nlen, name);
}

static void add_app_headers(struct MHD_Response *r, struct wsgi_task *task)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(task->headers); i++) {
        PyObject *item = PyList_GET_ITEM(task->headers, i);
        const char *name, *value;
        size_t nlen, vlen;
        if (latin1_view(PyTuple_GET_ITEM(item, 0), &name, &nlen) < 0 ||
            latin1_view(PyTuple_GET_ITEM(item, 1), &value, &vlen) < 0)
            continue; /* checked in start_response; the list may have changed since */
        if (nlen == 14 && !strncasecmp(name, "Content-Length", 14))
            continue;
        if (wsgi_header_is_hop_by_hop(name, nlen)) {
            app_hop_by_hop(r, task, name, nlen, value);
            continue;
        }
        if (tf_response_add_header(r, name, value) != MHD_YES)
            tf_log_error("%s %s: header '%s' from the app was not sent", task->req->method,
                         task->req->log_target, name);
    }
}

static int hand_over(struct wsgi_task *task, struct MHD_Response *r)
{
    if (!r) {
        PyErr_NoMemory();
        return -1;
    }
    add_app_headers(r, task);
    task->sent = true;
    tf_request_respond(task->req, r, task->code);
    return 0;
}

/* Whether the app's head fits what the request left of its connection's
 * memory pool: libmicrohttpd 0.9.75 closes the connection with nothing sent
 * (and the access log would say 200) when it does not. */
static bool head_fits(const struct wsgi_task *task)
{
    return tf_request_head_fits(task->req, task->head_bytes);
}

/* A head that does not fit is answered 500 at once, logged (mod_wsgi:
 * "Truncated or oversized response headers"), before any body is produced
 * for it: true then, and task->head_refused. */
static bool refused_head(struct wsgi_task *task)
{
    if (head_fits(task))
        return false;
    tf_log_error("%s %s: response headers too large (%zu bytes; %u fit in what the "
                 "request left of the connection's %u): answered 500", task->req->method,
                 task->req->log_target, tf_request_head_size(task->head_bytes),
                 task->req->head_used < TF_CONNECTION_POOL
                     ? TF_CONNECTION_POOL - (unsigned)task->req->head_used : 0,
                 TF_CONNECTION_POOL);
    wsgi_response_send_error(task, 500, NULL);
    task->head_refused = true;
    return true;
}

/* What write() raises once the head was refused, so the app stops. */
static int refused_error(void)
{
    PyErr_SetString(PyExc_OSError, "response headers too large for the connection (answered "
                                   "500)");
    return -1;
}

bool wsgi_response_bodyless(const struct wsgi_task *task)
{
    return task->req->is_head || task->code == 304 || task->code == 204;
}

/* The app's Content-Length says more than its body has: *short_body is
 * true, and the answer must go out as a stream that ends cut
 * (wsgi_response_end), as mod_wsgi, gunicorn and uWSGI send it, so the
 * client can tell; else the length is capped at the app's. */
static uint64_t body_size(const struct wsgi_task *task, uint64_t size, bool *short_body)
{
    *short_body = task->content_length >= 0 && (uint64_t)task->content_length > size;
    return task->content_length >= 0 && (uint64_t)task->content_length < size
               ? (uint64_t)task->content_length : size;
}

int wsgi_response_send_buffer(struct wsgi_task *task, const char *data, size_t len)
{
    if (wsgi_response_bodyless(task)) {
        task->body_bytes += len;
        return wsgi_response_send_head(task);
    }
    if (refused_head(task))
        return 0;
    bool short_body;
    len = (size_t)body_size(task, len, &short_body);
    if (short_body) {
        if (wsgi_response_start_stream(task) < 0 || (len && wsgi_response_write(task, data, len) < 0))
            return -1;
        wsgi_response_end(task);
        return 0;
    }
    task->req->bytes_out = len;
    tf_request_tap_body(task->req, data, len);
    return hand_over(task, MHD_create_response_from_buffer(len, (void *)data,
                                                           MHD_RESPMEM_MUST_COPY));
}

/* --mirror: hash the file for the comparison once its answer is on its way
 * (fd: the tap's own descriptor). A large file takes a while: the GIL is
 * free meanwhile. The task's reference keeps req. */
static void tap_file(struct tf_request *req, int fd, uint64_t offset, uint64_t size)
{
    Py_BEGIN_ALLOW_THREADS
    tf_request_tap_file(req, fd, offset, size);
    Py_END_ALLOW_THREADS
}

/* A file shorter than the app's Content-Length, through the stream (read
 * here: the answer ends cut anyway). Closes fd. */
static int send_short_file(struct wsgi_task *task, int fd, uint64_t offset, uint64_t size)
{
    char *buf = malloc(64 * 1024);
    int rc = buf && wsgi_response_start_stream(task) == 0 ? 0 : -1;
    if (!buf)
        PyErr_NoMemory();
    while (rc == 0 && size > 0) {
        ssize_t n = pread(fd, buf, size < 64 * 1024 ? (size_t)size : 64 * 1024, (off_t)offset);
        if (n <= 0) /* shorter still (changed meanwhile): the answer ends cut all the same */
            break;
        rc = wsgi_response_write(task, buf, (size_t)n);
        offset += (uint64_t)n;
        size -= (uint64_t)n;
    }
    free(buf);
    close(fd);
    if (rc == 0)
        wsgi_response_end(task);
    return rc;
}

int wsgi_response_send_file(struct wsgi_task *task, int fd, uint64_t offset, uint64_t size)
{
    if (wsgi_response_bodyless(task)) {
        close(fd);
        task->body_bytes += size;
        return wsgi_response_send_head(task);
    }
    if (refused_head(task)) {
        close(fd);
        return 0;
    }
    bool short_body;
    size = body_size(task, size, &short_body);
    if (short_body)
        return send_short_file(task, fd, offset, size);
    task->req->bytes_out = size;
    struct MHD_Response *r = MHD_create_response_from_fd_at_offset64(size, fd, offset);
    int tap_fd = r ? tf_request_tap_file_prepare(task->req, fd) : -1;
    if (!r)
        close(fd);
    else if (size) { /* looked at while it is sent (server.c) */
        task->req->file_fd = fd;
        task->req->file_end = offset + size;
    }
    int rc = hand_over(task, r);
    if (tap_fd >= 0)
        tap_file(task->req, tap_fd, offset, size);
    return rc;
}

int wsgi_response_start_stream(struct wsgi_task *task)
{
    if (wsgi_response_bodyless(task))
        return 0; /* count the body, answer at its end (wsgi_response_send_head) */
    if (refused_head(task))
        return refused_error();
    uint64_t size = task->content_length >= 0 ? (uint64_t)task->content_length : UINT64_MAX;
    /* its thread cannot be woken while it makes the next chunk: the reader
     * ends the connection if the client leaves meanwhile (request.h) */
    task->req->hangup_ends_stream = true;
    return hand_over(task, tf_request_stream_response(task->req, size));
}

/* The answer to a HEAD, or of a 304 or 204, once the app's body (never sent)
 * has ended, or a HEAD's once its head is known (streamed: its body goes on,
 * so its GET would stream it with no length): a HEAD's length is the one a
 * GET would get, a 304's the app's own, if any (RFC 9110 8.6: a 304 may say
 * only the 200's length; a cache could take a 0 for the stored page's).
 * libmicrohttpd 0.9.75 frames a body of unknown size chunked and sends its
 * closing chunk even where no body may follow, read as the next answer: an
 * answer without a length is unframed, and the connection then closes (as
 * Apache, which drops a HEAD's 0 too). Nor is Transfer-Encoding said (RFC
 * 9112 6.1: a server MAY). */
static int answer_head(struct wsgi_task *task, bool streamed)
{
    if (refused_head(task))
        return 0;
    uint64_t size = task->content_length >= 0 ? (uint64_t)task->content_length
                                              : task->body_bytes;
    /* A HEAD whose GET streams with no length, or that the app produced no
     * body for (Trac writes none for a streamed page), has no known length;
     * a 304 without the app's length has none either. */
    bool unknown = task->content_length < 0 && task->code != 204 &&
                   (task->code == 304 ||
                    (task->req->is_head && (streamed || task->body_bytes == 0)));
    struct MHD_Response *r = tf_request_stream_response(task->req, unknown ? UINT64_MAX : size);
    if (r && unknown)
        MHD_set_response_options(r, MHD_RF_HTTP_1_0_COMPATIBLE_STRICT, MHD_RO_END);
    if (hand_over(task, r) < 0)
        return -1;
    tf_request_finish(task->req, false); /* libmicrohttpd sends no body for HEAD */
    return 0;
}

int wsgi_response_send_head(struct wsgi_task *task)
{
    return answer_head(task, false);
}

void wsgi_response_end(struct wsgi_task *task)
{
    if (task->head_answered)
        return; /* it ended there */
    bool short_body = task->content_length >= 0 &&
                      task->body_bytes < (uint64_t)task->content_length;
    if (short_body)
        tf_log_error("%s %s: the app sent %llu bytes of the %lld its Content-Length "
                     "announced; connection aborted", task->req->method, task->req->log_target,
                     (unsigned long long)task->body_bytes, (long long)task->content_length);
    tf_request_finish(task->req, short_body);
}

void wsgi_response_send_error(struct wsgi_task *task, unsigned status, const char *detail)
{
    if (task->sent) {
        tf_request_finish(task->req, true); /* headers are out: abort the connection */
        return;
    }
    if (status >= 500) { /* --mirror: tracfront's error page is not an answer of the app's */
        tf_request_tap_failed(task->req, detail ? detail : "the app failed (500; the error log "
                                                            "has its traceback)");
    } else if (task->req->tap && !task->req->is_head) {
        /* the app's side answers this itself (outside --mount): compared as the
         * client gets it */
        char body[512];
        tf_request_tap_body(task->req, body, tf_error_text(status, detail, body, sizeof(body)));
    }
    struct MHD_Response *r = tf_error_response(status, detail, false, &task->req->bytes_out);
    task->sent = true;
    tf_request_respond(task->req, r, status); /* r NULL (out of memory): the connection closes */
}

/* Count a body chunk and cap it at the app's Content-Length: *len is what
 * goes out. 1 to send it, 0 when there is nothing to send, -1 when the
 * client has gone. */
static int body_part(struct wsgi_task *task, size_t *len)
{
    if (task->content_length >= 0) {
        uint64_t room = (uint64_t)task->content_length - task->body_bytes;
        if (*len > room)
            *len = (size_t)room; /* never more than the app's Content-Length */
    }
    task->body_bytes += *len;
    if (wsgi_response_bodyless(task) || *len == 0)
        return tf_request_client_gone(task->req) ? -1 : 0;
    return 1;
}

static int write_through(struct wsgi_task *task, const char *data, size_t len);
static int write_failed(struct wsgi_task *task, struct tf_request *req, int err);

/* Raise OSError(why) as task->stop_error: the app that lets it through can
 * be told from one that fails (wsgi_response_stopped). -1. */
static int stop_body(struct wsgi_task *task, const char *why)
{
    PyObject *e = PyObject_CallFunction(PyExc_OSError, "s", why); /* new ref */
    if (!e)
        return -1;
    PyErr_SetObject(PyExc_OSError, e);
    Py_XSETREF(task->stop_error, e);
    return -1;
}

const char *wsgi_response_stop_reason(const struct wsgi_task *task)
{
    PyObject *args = task->stop_error ? PyObject_GetAttrString(task->stop_error, "args") : NULL;
    PyObject *first = args && PyTuple_Check(args) && PyTuple_GET_SIZE(args) > 0
                          ? PyTuple_GET_ITEM(args, 0) : NULL; /* borrowed */
    const char *why = first && PyUnicode_Check(first) ? PyUnicode_AsUTF8(first) : NULL;
    Py_XDECREF(args); /* the tuple lives on in stop_error, with its first item */
    PyErr_Clear();
    return why ? why : "client disconnected";
}

bool wsgi_response_stopped(const struct wsgi_task *task)
{
    if (!task->stop_error || !PyErr_Occurred())
        return false;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    bool same = value == task->stop_error;
    PyErr_Restore(type, value, tb);
    return same;
}

/* A HEAD's head is known at its body's first chunk when the app gave a
 * Content-Length, else at its second: a GET streams such a body with no
 * length (one chunk is counted: the answer says its length). A 204's or a
 * 304's at the second too, whatever the app's length: they have no body
 * (the first is let go by, so an app may still replace the answer after
 * it, exc_info, as with nothing sent). */
static bool head_known(const struct wsgi_task *task)
{
    if (task->sent)
        return false;
    if (task->code == 204 || task->code == 304)
        return task->body_bytes > 0;
    return task->req->is_head && (task->content_length >= 0 || task->body_bytes > 0);
}

static const char head_answered_why[] = "the answer is complete: it has no body (HEAD, 204 "
                                        "or 304)";

/* Without the GIL: queue all of data, waiting for the client whenever the
 * channel and its file (cap bytes) are full. 0, or -1 with *err as
 * tf_request_write sets it (an inline run, which cannot wait, fails with
 * EFBIG past the cap). */
static int write_all(struct tf_request *req, const char *data, size_t len, uint64_t cap,
                     int *err)
{
    for (;;) {
        ssize_t took = tf_request_write(req, data, len, cap, err);
        if (took < 0)
            return -1;
        data += took;
        len -= (size_t)took;
        if (len == 0)
            return 0;
        if (took == 0) /* else the rest may fit the file: try first */
            tf_request_wait_room(req);
    }
}

int wsgi_response_write(struct wsgi_task *task, const char *data, size_t len)
{
    if (task->head_refused)
        return refused_error();
    if (task->head_answered)
        return stop_body(task, head_answered_why);
    if (len && head_known(task)) {
        if (answer_head(task, true) < 0)
            return -1;
        task->head_answered = true;
        return task->head_refused ? refused_error() : stop_body(task, head_answered_why);
    }
    int part = body_part(task, &len);
    if (part <= 0)
        return part < 0 ? stop_body(task, "client disconnected") : 0;
    return write_through(task, data, len);
}

/* GIL held: queue data as write() does: memory, the file, then waiting for
 * the client. 0, or -1 with an exception set. */
static int write_through(struct wsgi_task *task, const char *data, size_t len)
{
    struct tf_request *req = task->req;
    /* An inline run's answer starts only when it returns: it cannot wait for
     * the client, so past --max-spill its body is cut (the cost of a wrong
     * guess, bounded; with --max-spill 0 its file has no cap). */
    bool inline_run = __atomic_load_n(&req->answering_inline, __ATOMIC_SEQ_CST);
    uint64_t cap = inline_run && !wsgi_ctx.cfg->max_spill ? UINT64_MAX : wsgi_ctx.cfg->max_spill;
    int err = 0;
    ssize_t took = 0;
    if (len < 64 * 1024) /* a small chunk: with the GIL held, unless it has to wait */
        took = tf_request_write(req, data, len, cap, &err);
    PyObject *sr = NULL;
    if (took >= 0 && (size_t)took < len) {
        int rc;
        /* the task may end meanwhile if write() came from another thread:
         * its start_response, kept, says whether it did (detached) */
        sr = Py_NewRef(task->start_response);
        tf_request_ref(req);
        Py_BEGIN_ALLOW_THREADS
        rc = write_all(req, data + took, len - (size_t)took, cap, &err);
        Py_END_ALLOW_THREADS
        took = rc;
    }
    struct wsgi_task *still = !sr || ((struct start_response *)sr)->task == task ? task : NULL;
    int rc = took >= 0 ? 0 : write_failed(still, req, err);
    if (sr) {
        tf_request_unref(req);
        Py_DECREF(sr);
    }
    return rc;
}

/* GIL held: the exception for a write that failed with err (tf_request_write's;
 * 0: the client is gone). task NULL: it ended while the write waited. -1. */
static int write_failed(struct wsgi_task *task, struct tf_request *req, int err)
{
    if (err == ECANCELED) /* --request-timeout-action 504 */
        return wsgi_watchdog_raise();
    if (!err && task)
        return stop_body(task, "client disconnected");
    if (err == ETIMEDOUT && task) /* an inline stream cut (logged) */
        return stop_body(task, "answer cut: an inline call streamed for over a second");
    if (!err) {
        PyErr_SetString(PyExc_OSError, "client disconnected");
        return -1;
    }
    if (err == ENOMEM) { /* a spill failure was logged where it happened; this was not */
        tf_log_error("%s %s: out of memory queueing the answer", req->method, req->log_target);
    }
    /* OSError(errno, text): e.errno says ENOSPC, and the text what failed */
    char why[200];
    snprintf(why, sizeof(why), "cannot buffer the response: %s", strerror(err));
    PyObject *args = Py_BuildValue("(is)", err, why); /* new ref */
    if (args) {
        PyErr_SetObject(PyExc_OSError, args);
        Py_DECREF(args);
    }
    return -1;
}
