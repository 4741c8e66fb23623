/* errors.c — the streams to the error log (see errors.h). write() encodes to
 * UTF-8 and hands whole lines to the error log in one write(), so lines from
 * concurrent threads never cut into each other (print() alone makes several
 * writes per line). An unfinished line is held for the thread that writes
 * it, so no other thread's output joins it, until its newline; it is ended
 * (a newline added, as mod_wsgi's log lines are) by flush(), by the end of
 * the thread's part of a request, by the thread's end and by the
 * interpreter's (wsgi_interp_stop); one past 8 KiB is written at once, ended.
 * Each line goes out stamped "[date] [app] " with its control bytes escaped,
 * so that what the app writes (or a client has it write: a URL with %0a in
 * a log line) cannot pass for tracfront's own lines nor drive a terminal.
 * Every write() is made without the GIL: a log reader may stall. */
#include "wsgi/errors.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/log.h"
#include "proxy/log_stamp.h"

#define PARTIAL_MAX 8192 /* an unfinished line longer than this is written at once, ended */
/* The most a held line takes written: each byte may be 4 ("\x1b"), plus the
 * stamp and the newline that ends it. */
#define WRITTEN_MAX (4 * PARTIAL_MAX + TF_LOG_STAMP_MAX + 1)

enum { SLOT_STDERR, SLOT_STDOUT, SLOTS };

struct error_stream {
    PyObject_HEAD
    const char *name;           /* static: "<stderr>", "<stdout>" */
    int slot;                   /* which of a thread's held lines is this stream's */
};

/* One thread's unfinished lines, one per stream, made when it first holds
 * one. Only its thread changes them, with the GIL, and only it uses out;
 * the list links them all for the flush at the end. */
struct held {
    struct held *prev, *next;
    size_t len[SLOTS];
    char text[SLOTS][PARTIAL_MAX];
    char out[WRITTEN_MAX]; /* a line as written: held_line() never needs more */
};

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER; /* the list */
static struct held *held_all;
static pthread_key_t held_key; /* its destructor writes out a thread's lines */
static pthread_once_t held_once = PTHREAD_ONCE_INIT;
static __thread struct held *held_here; /* the same, read on every request */

/* App output as the error log takes it, built into out: each line started
 * with stamp and ended with a newline; control bytes other than newline and
 * tab, and DEL, written "\xHH" as Apache writes them, and so are the code
 * points of the C1 controls (U+0080-U+009F, which some terminals take as ESC
 * sequences: "\x9b" for U+009B, not its two UTF-8 bytes). */
struct lines {
    char *out;
    size_t len;
    bool at_start; /* the next byte starts a line */
    bool one_line; /* a newline is escaped too: never starts a line (nor stamps) */
    char stamp[TF_LOG_STAMP_MAX];
    size_t stamp_len;
};

static bool is_control(unsigned char c, bool one_line)
{
    return (c < 0x20 && ((c != '\n' || one_line) && c != '\t')) || c == 0x7f;
}

/* U+0080-U+009F in UTF-8: 0xc2 0x80-0x9f. */
static bool is_c1(const char *p, size_t left)
{
    return left > 1 && (unsigned char)p[0] == 0xc2 && (unsigned char)p[1] >= 0x80 &&
           (unsigned char)p[1] <= 0x9f;
}

/* What data[0..n) takes written as lines, but for the first line's stamp
 * and the newline that may end the last (LINES_ROOM_BASE). */
#define LINES_ROOM_BASE (TF_LOG_STAMP_MAX + 1)
static size_t lines_room(const char *data, size_t n)
{
    size_t room = n;
    for (size_t i = 0; i < n; i++)
        room += data[i] == '\n' ? TF_LOG_STAMP_MAX : is_control((unsigned char)data[i], false) ? 3
                                                    : is_c1(data + i, n - i)           ? 2
                                                                                       : 0;
    return room;
}

static void lines_begin(struct lines *w, char *out)
{
    w->out = out;
    w->len = 0;
    w->at_start = true;
    w->one_line = false;
    w->stamp_len = tf_log_stamp(w->stamp, sizeof(w->stamp), "app");
}

static void lines_add(struct lines *w, const char *data, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)data[i];
        if (w->at_start) {
            memcpy(w->out + w->len, w->stamp, w->stamp_len);
            w->len += w->stamp_len;
            w->at_start = false;
        }
        if (c == '\n' && !w->one_line)
            w->at_start = true;
        if (is_c1(data + i, n - i))
            c = (unsigned char)data[++i];
        else if (!is_control(c, w->one_line)) {
            w->out[w->len++] = (char)c;
            continue;
        }
        w->out[w->len++] = '\\';
        w->out[w->len++] = 'x';
        w->out[w->len++] = hex[c >> 4];
        w->out[w->len++] = hex[c & 15];
    }
}

/* The last line ended, if it was not. Returns the length of it all. */
static size_t lines_end(struct lines *w)
{
    if (!w->at_start)
        w->out[w->len++] = '\n';
    w->at_start = true;
    return w->len;
}

/* One write() to the error log, without the GIL (it may block on a slow
 * disk or a stalled pipe); under heading, an [error] line of tracfront's. */
static void emit(const char *heading, const char *data, size_t n)
{
    if (!n && !heading)
        return;
    Py_BEGIN_ALLOW_THREADS
    if (heading)
        tf_log_error_block(data, n, "%s", heading);
    else
        tf_log_raw(data, n);
    Py_END_ALLOW_THREADS
}

/* a (this thread's held line) then b as lines, the last one ended, into
 * buf (cap bytes) if they fit, else into *allocated (malloc'd, for the
 * caller to free; NULL when buf was used). Returns the text, its length in
 * *len; NULL when out of memory. */
static const char *format_lines(const char *a, size_t an, const char *b, size_t bn, char *buf,
                                size_t cap, char **allocated, size_t *len)
{
    size_t room = LINES_ROOM_BASE + lines_room(a, an) + lines_room(b, bn);
    *allocated = NULL;
    if (room > cap && !(buf = *allocated = malloc(room)))
        return NULL;
    struct lines w;
    lines_begin(&w, buf);
    lines_add(&w, a, an);
    lines_add(&w, b, bn);
    *len = lines_end(&w);
    return buf;
}

/* h's unfinished line in slot, ended, as written (in h->out, which always
 * has room for it); 0 if none. h's own thread only: out is its. */
static size_t held_line(struct held *h, int slot)
{
    char *allocated;
    size_t len = 0;
    if (h->len[slot])
        (void)format_lines(h->text[slot], h->len[slot], NULL, 0, h->out, sizeof(h->out),
                           &allocated, &len);
    h->len[slot] = 0;
    return len;
}

/* A thread ends: what it held is written, and its buffer goes. Taken off
 * the list under the lock, written after it is let go: a reader that stalls
 * the write must not keep a thread that holds the GIL waiting for the lock
 * (held_mine). Off the list, no other thread reaches h. */
static void held_release(void *arg)
{
    struct held *h = arg;
    held_here = NULL;
    pthread_mutex_lock(&held_lock);
    if (h->prev)
        h->prev->next = h->next;
    else
        held_all = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&held_lock);
    for (int i = 0; i < SLOTS; i++)
        tf_log_raw(h->out, held_line(h, i)); /* no GIL here */
    free(h);
}

/* A fork() while another thread held the lock (the app's os.fork()) would
 * leave it held for good in the child: made anew there, where no other
 * thread runs (as log.c does for its sinks). */
static void held_after_fork(void)
{
    pthread_mutex_init(&held_lock, NULL);
}

__attribute__((constructor)) static void held_watch_forks(void)
{
    pthread_atfork(NULL, NULL, held_after_fork);
}

static void held_key_create(void)
{
    (void)pthread_key_create(&held_key, held_release);
}

/* This thread's held lines; with create, made on first use (NULL when out
 * of memory: its lines are then written as they come, each ended). */
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

/* Pass on the lines data completes (with what this thread held before
 * them) in one write, and hold the rest; a rest that would make the held
 * line longer than PARTIAL_MAX goes out too, ended. Returns 0, or -1 with
 * MemoryError set (nothing written or held). */
static int stream_put(struct error_stream *s, const char *data, size_t n)
{
    const char *last_newline = memrchr(data, '\n', n);
    size_t whole = last_newline ? (size_t)(last_newline + 1 - data) : 0;
    struct held *h = held_mine(whole < n);
    size_t held = h ? h->len[s->slot] : 0;
    if (!n)
        return 0;
    if (!h || (whole ? 0 : held) + n - whole > PARTIAL_MAX) /* cannot hold: out with all */
        whole = n;
    if (!whole) {
        memcpy(h->text[s->slot] + held, data, n);
        h->len[s->slot] = held + n;
        return 0;
    }
    char small[1024], *allocated; /* small: a thread that never held a line has no out */
    size_t len;
    const char *out = format_lines(h ? h->text[s->slot] : NULL, held, data, whole,
                                   h ? h->out : small, h ? sizeof(h->out) : sizeof(small),
                                   &allocated, &len);
    if (!out) {
        PyErr_NoMemory();
        return -1;
    }
    if (h) {
        memcpy(h->text[s->slot], data + whole, n - whole);
        h->len[s->slot] = n - whole;
    }
    emit(NULL, out, len);
    free(allocated);
    return 0;
}

void wsgi_errors_flush(PyObject *stream)
{
    struct held *h = held_mine(false);
    if (h)
        emit(NULL, h->out, held_line(h, ((struct error_stream *)stream)->slot));
}

void wsgi_errors_end_part(void)
{
    struct held *h = held_mine(false);
    for (int i = 0; h && i < SLOTS; i++)
        emit(NULL, h->out, held_line(h, i));
}

/* Every thread's lines, taken under the lock into one buffer (not into
 * their out, which a thread may be writing from without the GIL), written
 * once the lock is let go: a thread holding the GIL may wait for it. */
void wsgi_errors_flush_all(void)
{
    size_t room = 0, len = 0;
    pthread_mutex_lock(&held_lock);
    for (struct held *h = held_all; h; h = h->next)
        for (int i = 0; i < SLOTS; i++)
            room += h->len[i] ? LINES_ROOM_BASE + lines_room(h->text[i], h->len[i]) : 0;
    char *out = room ? malloc(room) : NULL;
    for (struct held *h = held_all; out && h; h = h->next)
        for (int i = 0; i < SLOTS; i++) {
            struct lines w;
            if (!h->len[i])
                continue;
            lines_begin(&w, out + len);
            lines_add(&w, h->text[i], h->len[i]);
            len += lines_end(&w);
            h->len[i] = 0;
        }
    pthread_mutex_unlock(&held_lock);
    emit(room && !out ? "out of memory: the app's unfinished lines are not written" : NULL, out,
         len);
    free(out);
}

char *wsgi_errors_lines(const char *text, size_t len, size_t *out_len)
{
    char *allocated;
    const char *out = format_lines(NULL, 0, text, len, NULL, 0, &allocated, out_len);
    return out ? allocated : NULL;
}

char *wsgi_errors_escape_inline(const char *s)
{
    size_t n = strlen(s);
    struct lines w = { .out = malloc(4 * n + 1), .one_line = true }; /* 4: "\x0a" */
    if (!w.out)
        return NULL;
    lines_add(&w, s, n);
    w.out[w.len] = '\0';
    return w.out;
}

int wsgi_errors_log_block(const char *heading, PyObject *text)
{
    PyObject *bytes = text ? PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace")
                           : NULL; /* new ref */
    char *allocated = NULL;
    size_t len = 0;
    const char *out = bytes ? format_lines(NULL, 0, PyBytes_AS_STRING(bytes),
                                           (size_t)PyBytes_GET_SIZE(bytes), NULL, 0, &allocated,
                                           &len)
                            : NULL;
    if (bytes && !out)
        PyErr_NoMemory();
    emit(heading, out, len);
    free(allocated);
    Py_XDECREF(bytes);
    return !text || out ? 0 : -1;
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
