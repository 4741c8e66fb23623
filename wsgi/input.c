/* input.c — wsgi.input (see input.h). Reads from a temp-file spool release
 * the GIL around pread(), holding the request meanwhile; reads from memory
 * copy straight into the bytes object. The body is complete before the app
 * runs, so reads never wait on the network. The request pointer and the
 * position are read and changed only with the GIL held: after any release of
 * it, look again. Threads may share one stream: a read takes its range (moves
 * the position past it) before it lets go of the GIL, so each byte goes to one
 * read, and the position never passes the body's end. */
#include "wsgi/input.h"

#include <errno.h>
#include <string.h>

#include "proxy/request.h"

struct input {
    PyObject_HEAD
    struct tf_request *req;     /* owned reference; NULL once detached */
    uint64_t pos;               /* the next unread byte: at most req->body.size */
};

/* wsgi.input objects of ended tasks that nothing else held (refcount 1:
 * the task's), kept for the next tasks: an allocation fewer a request. Not
 * tracked by the collector, no weak references (the type has no
 * tp_weaklistoffset): with its refcount at 1, a kept object is out of any
 * Python code's reach. Detached (req NULL) meanwhile. Under the GIL. */
#define INPUT_POOL 8
static PyObject *input_pool[INPUT_POOL];
static int input_pooled;

PyObject *wsgi_input_new(struct tf_request *req)
{
    struct input *in = input_pooled ? (struct input *)input_pool[--input_pooled]
                                    : PyObject_New(struct input, &wsgi_input_type); /* new ref */
    if (!in)
        return NULL;
    tf_request_ref(req);
    in->req = req;
    in->pos = 0;
    return (PyObject *)in;
}

void wsgi_input_pool_clear(void)
{
    while (input_pooled)
        Py_DECREF(input_pool[--input_pooled]);
}

void wsgi_input_detach(PyObject *input)
{
    struct input *in = (struct input *)input;
    struct tf_request *req = in->req;
    in->req = NULL;
    if (req)
        tf_request_unref(req);
}

void wsgi_input_release(PyObject *input)
{
    wsgi_input_detach(input);
    if (Py_REFCNT(input) == 1 && input_pooled < INPUT_POOL) {
        input_pool[input_pooled++] = input; /* its reference is the pool's */
        return;
    }
    Py_DECREF(input);
}

static void input_dealloc(PyObject *self)
{
    wsgi_input_detach(self);
    PyObject_Free(self);
}

/* The request, or NULL with RuntimeError once its task has ended. */
static struct tf_request *live_request(const struct input *in)
{
    if (!in->req)
        PyErr_SetString(PyExc_RuntimeError, "wsgi.input read after the request ended");
    return in->req;
}

/* Bytes left to read: 0, or -1 with RuntimeError once detached. */
static int remaining(const struct input *in, uint64_t *left)
{
    const struct tf_request *req = live_request(in);
    if (!req)
        return -1;
    *left = req->body.size - in->pos;
    return 0;
}

/* Fill buf with n bytes at pos (GIL released for a file spool: the request
 * is held meanwhile, its task may end on another thread). A spool shorter
 * than its size is EIO, not whatever errno was left over. */
static int copy_at(struct input *in, uint64_t pos, char *buf, size_t n)
{
    struct tf_request *req = live_request(in);
    if (!req)
        return -1;
    const struct tf_spool *sp = &req->body;
    if (sp->fd < 0) {
        memcpy(buf, sp->mem + pos, n);
        return 0;
    }
    ssize_t got = 0;
    size_t done = 0;
    tf_request_ref(req);
    Py_BEGIN_ALLOW_THREADS
    while (done < n && (got = tf_spool_read(sp, pos + done, buf + done, n - done)) > 0)
        done += (size_t)got;
    Py_END_ALLOW_THREADS
    int error = got < 0 ? errno : EIO;
    tf_request_unref(req); /* the last reference may close the file: keep pread's errno */
    if (done < n) {
        errno = error;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static int size_arg(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *size)
{
    *size = -1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "expected at most one argument");
        return -1;
    }
    if (nargs == 1 && args[0] != Py_None) {
        *size = PyLong_AsSsize_t(args[0]);
        if (*size == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* The next n bytes, fewer if the body ends first (new ref). The range is
 * taken before copy_at can release the GIL; allocating bytes runs no Python
 * code (bytes are not tracked by the collector), so nothing moves the
 * position between remaining() and taking it. A failed copy leaves the range
 * taken: other threads may have read on past it. */
static PyObject *read_bytes(struct input *in, uint64_t n)
{
    uint64_t left;
    if (remaining(in, &left) < 0)
        return NULL;
    if (n > left)
        n = left;
    if (n > (uint64_t)PY_SSIZE_T_MAX)
        return PyErr_NoMemory();
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n); /* new ref */
    if (!b)
        return NULL;
    uint64_t start = in->pos;
    in->pos += n;
    if (n && copy_at(in, start, PyBytes_AS_STRING(b), (size_t)n) < 0) {
        Py_DECREF(b);
        return NULL;
    }
    return b;
}

static PyObject *input_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;
    if (size_arg(args, nargs, &size) < 0)
        return NULL;
    return read_bytes((struct input *)self, size >= 0 ? (uint64_t)size : UINT64_MAX);
}

/* Length of the line at start, the position (through '\n'), at most limit
 * bytes: 0; 1 when another thread's read moved the position while this one
 * let go of the GIL (the line is no longer there: look again); -1 with an
 * exception. Call with the request live (remaining() just said so). */
static int line_length(struct input *in, uint64_t start, uint64_t limit, uint64_t *len)
{
    const struct tf_spool *sp = &in->req->body;
    if (limit == 0) { /* at the end, or no body at all: then sp->mem is NULL */
        *len = 0;
        return 0;
    }
    if (sp->fd < 0) {
        const char *line = sp->mem + start;
        const char *nl = memchr(line, '\n', (size_t)limit);
        *len = nl ? (uint64_t)(nl - line) + 1 : limit;
        return 0;
    }
    char block[8192];
    uint64_t scanned = 0;
    while (scanned < limit) {
        size_t want = limit - scanned < sizeof(block) ? (size_t)(limit - scanned) : sizeof(block);
        if (copy_at(in, start + scanned, block, want) < 0)
            return -1;
        if (in->pos != start)
            return 1;
        const char *nl = memchr(block, '\n', want);
        if (nl) {
            *len = scanned + (uint64_t)(nl - block) + 1;
            return 0;
        }
        scanned += want;
    }
    *len = limit;
    return 0;
}

/* The next line, at most size bytes (new ref). The line is measured without
 * taking it (measuring a spool's file lets go of the GIL), then taken by
 * read_bytes at once, the position unchanged since it was measured. */
static PyObject *readline_limit(struct input *in, Py_ssize_t size)
{
    uint64_t limit, len;
    int moved;
    do {
        if (remaining(in, &limit) < 0)
            return NULL;
        if (size >= 0 && (uint64_t)size < limit)
            limit = (uint64_t)size;
        moved = line_length(in, in->pos, limit, &len);
        if (moved < 0)
            return NULL;
    } while (moved);
    return read_bytes(in, len);
}

static PyObject *input_readline(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;
    if (size_arg(args, nargs, &size) < 0)
        return NULL;
    return readline_limit((struct input *)self, size);
}

static PyObject *input_readlines(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    struct input *in = (struct input *)self;
    Py_ssize_t hint;
    if (size_arg(args, nargs, &hint) < 0)
        return NULL;
    PyObject *lines = PyList_New(0); /* new ref */
    Py_ssize_t total = 0;
    if (!lines)
        return NULL;
    for (;;) {
        PyObject *line = readline_limit(in, -1); /* new ref; b"" at the end */
        if (!line || (PyBytes_GET_SIZE(line) > 0 && PyList_Append(lines, line) < 0)) {
            Py_XDECREF(line);
            Py_DECREF(lines);
            return NULL;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(line);
        Py_DECREF(line);
        total += len;
        if (len == 0 || (hint > 0 && total >= hint))
            return lines;
    }
}

/* The next line; at the end (another thread may have read to it while this
 * one measured a line) StopIteration, never b"". */
static PyObject *input_next(PyObject *self)
{
    PyObject *line = readline_limit((struct input *)self, -1); /* new ref */
    if (line && PyBytes_GET_SIZE(line) == 0)
        Py_CLEAR(line);
    return line;
}

static PyMethodDef input_methods[] = {
    { "read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL, "read([size]) -> bytes" },
    { "readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL,
      "readline([size]) -> bytes" },
    { "readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL,
      "readlines([hint]) -> list of bytes" },
    { NULL, NULL, 0, NULL },
};

PyTypeObject wsgi_input_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracfront.InputStream",
    .tp_basicsize = sizeof(struct input),
    .tp_dealloc = input_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.input: the request body",
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = input_next,
    .tp_methods = input_methods,
};
