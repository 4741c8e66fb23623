/* errors.c — the streams to the error log (see errors.h). write() encodes to
 * UTF-8 and hands whole lines to the error log in one write(), so lines from
 * concurrent threads never cut into each other (print() alone makes several
 * writes per line). An unfinished line is held for the thread that writes
 * it, so no other thread's output joins it, until its newline; it is ended
 * (a newline added, as mod_wsgi's log lines are) by flush(), by the end of
 * the thread's part of a request, by the thread's end and by the
 * interpreter's (wsgi_interp_stop); one past 8 KiB goes out as it is. */
#include "wsgi/errors.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/log.h"

#define PARTIAL_MAX 8192 /* an unfinished line longer than this is written as it is */

enum { SLOT_STDERR, SLOT_STDOUT, SLOTS };

struct error_stream {
    PyObject_HEAD
    const char *name;           /* static: "<stderr>", "<stdout>" */
    int slot;                   /* which of a thread's held lines is this stream's */
};

/* One thread's unfinished lines, one per stream. Only its thread changes
 * them, with the GIL; the list links them all for the flush at the end. */
struct held {
    struct held *prev, *next;
    size_t len[SLOTS];
    char text[SLOTS][PARTIAL_MAX + 1]; /* + the newline that ends it */
};

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER; /* the list */
static struct held *held_all;
static pthread_key_t held_key; /* its destructor writes out a thread's lines */
static pthread_once_t held_once = PTHREAD_ONCE_INIT;
static __thread struct held *held_here; /* the same, read on every request */

/* Write out h's unfinished line in slot, ended with a newline. */
static void end_line(struct held *h, int slot)
{
    size_t n = h->len[slot];
    if (!n)
        return;
    h->text[slot][n++] = '\n';
    h->len[slot] = 0;
    tf_log_raw(h->text[slot], n);
}

/* A thread ends: what it held is written, and its buffer goes. */
static void held_release(void *arg)
{
    struct held *h = arg;
    held_here = NULL;
    pthread_mutex_lock(&held_lock);
    for (int i = 0; i < SLOTS; i++)
        end_line(h, i);
    if (h->prev)
        h->prev->next = h->next;
    else
        held_all = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&held_lock);
    free(h);
}

static void held_key_create(void)
{
    (void)pthread_key_create(&held_key, held_release);
}

/* This thread's held lines; with create, made on first use (NULL when out
 * of memory: the line is then written unfinished). */
static struct held *held_mine(bool create)
{
    struct held *h = held_here;
    if (h || !create || !(h = calloc(1, sizeof(*h))))
        return h;
    pthread_once(&held_once, held_key_create);
    if (pthread_setspecific(held_key, h) != 0) {
        free(h);
        return NULL;
    }
    held_here = h;
    pthread_mutex_lock(&held_lock);
    h->next = held_all;
    if (held_all)
        held_all->prev = h;
    held_all = h;
    pthread_mutex_unlock(&held_lock);
    return h;
}

/* One write() to the error log, without the GIL (it may block on a slow disk). */
static void emit(const char *data, size_t n)
{
    if (!n)
        return;
    Py_BEGIN_ALLOW_THREADS
    tf_log_raw(data, n);
    Py_END_ALLOW_THREADS
}

/* Pass on the lines data completes (with what this thread held before
 * them) in one write, and hold the rest. Returns 0, or -1 with MemoryError
 * set (nothing written or held). */
static int stream_put(struct error_stream *s, const char *data, size_t n)
{
    const char *last_newline = memrchr(data, '\n', n);
    size_t whole = last_newline ? (size_t)(last_newline + 1 - data) : 0;
    struct held *h = held_mine(whole < n);
    size_t held = h ? h->len[s->slot] : 0;
    if (!h || (whole ? 0 : held) + n - whole > PARTIAL_MAX) /* cannot hold: out with all */
        whole = n;
    char *joined = NULL;
    size_t out_len = whole;
    if (whole && held) {
        if (!(joined = malloc(held + whole))) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(joined, h->text[s->slot], held);
        memcpy(joined + held, data, whole);
        out_len += held;
        h->len[s->slot] = held = 0;
    }
    if (whole < n) {
        memcpy(h->text[s->slot] + held, data + whole, n - whole);
        h->len[s->slot] = held + n - whole;
    }
    emit(joined ? joined : data, out_len);
    free(joined);
    return 0;
}

void wsgi_errors_flush(PyObject *stream)
{
    struct held *h = held_mine(false);
    if (h)
        end_line(h, ((struct error_stream *)stream)->slot);
}

void wsgi_errors_end_part(void)
{
    struct held *h = held_mine(false);
    if (h)
        for (int i = 0; i < SLOTS; i++)
            end_line(h, i);
}

void wsgi_errors_flush_all(void)
{
    pthread_mutex_lock(&held_lock);
    for (struct held *h = held_all; h; h = h->next)
        for (int i = 0; i < SLOTS; i++)
            end_line(h, i);
    pthread_mutex_unlock(&held_lock);
}

static PyObject *errors_write(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "write() argument must be str, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    PyObject *bytes = PyUnicode_AsEncodedString(arg, "utf-8", "backslashreplace"); /* new ref */
    if (!bytes)
        return NULL;
    int rc = stream_put((struct error_stream *)self, PyBytes_AS_STRING(bytes),
                        (size_t)PyBytes_GET_SIZE(bytes));
    Py_DECREF(bytes);
    return rc < 0 ? NULL : PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
}

static PyObject *errors_writelines(PyObject *self, PyObject *lines)
{
    PyObject *it = PyObject_GetIter(lines); /* new ref */
    PyObject *line;
    if (!it)
        return NULL;
    while ((line = PyIter_Next(it))) { /* new ref */
        PyObject *r = errors_write(self, line);
        Py_DECREF(line);
        if (!r) {
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *errors_flush(PyObject *self, PyObject *unused)
{
    (void)unused;
    wsgi_errors_flush(self);
    Py_RETURN_NONE;
}

/* The error log's descriptor for Python code, which writes to it directly:
 * faulthandler.enable() (at import in some apps) asks for it, and so do
 * subprocesses given stderr=sys.stderr; an app may also close it or put
 * /dev/null on it (python-daemon): a duplicate, not the logs' own
 * (tf_log_python_fd). With the log off, /dev/null, which discards as the log
 * does (faulthandler must not fail to load the app). */
static PyObject *errors_fileno(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    static int devnull = -1; /* the GIL guards it */
    int fd = tf_log_python_fd();
    if (fd < 0 && devnull < 0 && (devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/dev/null");
    return PyLong_FromLong(fd >= 0 ? fd : devnull);
}

static PyObject *errors_false(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_FALSE;
}

static PyObject *errors_true(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_TRUE;
}

/* sys.stdout.reconfigure(line_buffering=True), a common line at the top of
 * container apps: these streams already write each line as it ends, so the
 * settings change nothing (an encoding other than UTF-8 is refused). */
static PyObject *errors_reconfigure(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *names[] = { "encoding", "errors", "newline", "line_buffering",
                             "write_through", NULL };
    const char *encoding = NULL, *errors = NULL, *newline = NULL;
    PyObject *line_buffering = NULL, *write_through = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$zzzOO:reconfigure", names, &encoding,
                                     &errors, &newline, &line_buffering, &write_through))
        return NULL;
    if (encoding && strcasecmp(encoding, "utf-8") && strcasecmp(encoding, "utf8")) {
        PyErr_Format(PyExc_ValueError, "the error log is UTF-8, not %.100s", encoding);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* What a text file opened for writing answers, so that code which checks a
 * stream before using it (logging, faulthandler, click, tqdm) takes these. */
static PyMethodDef errors_methods[] = {
    { "write", errors_write, METH_O, "Write a str to the error log (whole lines at once)." },
    { "writelines", errors_writelines, METH_O, "Write each str of an iterable." },
    { "flush", errors_flush, METH_NOARGS, "Write out an unfinished line." },
    { "fileno", errors_fileno, METH_NOARGS, "A descriptor of the error log." },
    { "isatty", errors_false, METH_NOARGS, NULL },
    { "readable", errors_false, METH_NOARGS, NULL },
    { "seekable", errors_false, METH_NOARGS, NULL },
    { "writable", errors_true, METH_NOARGS, NULL },
    { "reconfigure", (PyCFunction)(void (*)(void))errors_reconfigure,
      METH_VARARGS | METH_KEYWORDS, "Accepted; each line is written as it ends already." },
    { NULL, NULL, 0, NULL },
};

static PyObject *errors_name(PyObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(((struct error_stream *)self)->name);
}

/* closure: the attribute's constant text */
static PyObject *errors_text(PyObject *self, void *closure)
{
    (void)self;
    return PyUnicode_FromString(closure);
}

static PyObject *errors_closed(PyObject *self, void *closure)
{
    (void)self;
    (void)closure;
    Py_RETURN_FALSE;
}

static PyObject *errors_line_buffering(PyObject *self, void *closure)
{
    (void)self;
    (void)closure;
    Py_RETURN_TRUE;
}

static PyGetSetDef errors_getset[] = {
    { "name", errors_name, NULL, NULL, NULL },
    { "encoding", errors_text, NULL, NULL, "utf-8" },
    { "errors", errors_text, NULL, "how unencodable text is written", "backslashreplace" },
    { "mode", errors_text, NULL, NULL, "w" },
    { "closed", errors_closed, NULL, NULL, NULL },
    { "line_buffering", errors_line_buffering, NULL, NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

PyTypeObject wsgi_errors_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracfront.ErrorStream",
    .tp_basicsize = sizeof(struct error_stream),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.errors, sys.stderr and sys.stdout: writes to tracfront's error log",
    .tp_methods = errors_methods,
    .tp_getset = errors_getset,
};

PyObject *wsgi_errors_new(const char *name)
{
    struct error_stream *s = PyObject_New(struct error_stream, &wsgi_errors_type); /* new ref */
    if (!s)
        return NULL;
    s->name = name;
    s->slot = strcmp(name, "<stdout>") ? SLOT_STDERR : SLOT_STDOUT;
    return (PyObject *)s;
}
