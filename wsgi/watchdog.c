/* watchdog.c — the registry of running WSGI requests, the watchdog thread
 * that reports (and with --request-timeout-action 504 interrupts) the stuck
 * ones, and the In flight report (see watchdog.h). It must never touch a
 * request that has ended: whatever leaves the registry lock holds its own
 * reference; and it never holds the GIL longer than one scan, nor the
 * registry lock while Python code may run. Stacks are read with public API
 * only: sys._current_frames() and PyFrame_GetBack/GetCode/GetLineNumber,
 * with the collector off (stack_read_begin): nothing may let another thread
 * run while its frames are made into objects. */
#include "wsgi/watchdog.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "profiler/inflight.h"
#include "profiler/text.h"
#include "proxy/log.h"
#include "proxy/log_stamp.h"
#include "proxy/platform.h"
#include "proxy/request.h"
#include "wsgi/errors.h"

#define TICK_NS (100L * 1000 * 1000) /* the watchdog looks every 0.1 s */
#define MAX_FRAMES 100               /* innermost frames shown per stack */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct wsgi_watch *running; /* guarded by lock: the registry */

/* Written once by wsgi_watchdog_start() before any request runs. */
static struct {
    double timeout;      /* seconds; 0 = off */
    uint64_t timeout_us;
    bool dump_all, interrupt;
    const char *action;  /* "log" or "504" */
    unsigned worker_pid; /* a worker's (the front labels its part of the page), or 0 */
} settings;
static PyObject *timeout_exc; /* tracfront.RequestTimeout (GIL; set once, never freed):
                                 wsgi_watchdog_python_init's */
static PyObject *noop;        /* `lambda: None`: running it delivers a pending async exception */
/* Set once before wsgi_watchdog_start, called on the watchdog thread. */
static void (*on_interrupt)(uint64_t completed);
static uint64_t completed; /* atomic: requests that left the registry not interrupted */

/* The watchdog thread and its stop signal. */
static pthread_t watchdog;
static bool watchdog_started;                /* main thread only */
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cond;
static bool stopping;                        /* guarded by stop_lock */

/* A registry entry copied out of the lock. */
struct snapshot {
    struct tf_request *req; /* own reference */
    unsigned long thread_id;
    uint64_t started;
    char *stack;            /* malloc'd, or NULL */
};

void wsgi_watchdog_enter(struct wsgi_watch *w, struct tf_request *req)
{
    tf_request_ref(req);
    *w = (struct wsgi_watch){ .req = req, .thread_id = PyThread_get_thread_ident(),
                              .started = tf_now_us(),
                              .completed_before = __atomic_load_n(&completed, __ATOMIC_RELAXED) };
    pthread_mutex_lock(&lock);
    w->next = running;
    if (running)
        running->prev = w;
    running = w;
    pthread_mutex_unlock(&lock);
}

/* GIL held. A RequestTimeout set while the thread ran no bytecode is still
 * pending on it: running any Python function delivers it here, where it is
 * dropped (clearing it with PyThreadState_SetAsyncExc(id, NULL) instead would
 * leave the interpreter's eval-breaker flag up for every thread). */
static void swallow_late_timeout(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *r = PyObject_CallNoArgs(noop); /* new ref */
    if (!r)
        PyErr_Clear(); /* only RequestTimeout can come out of `lambda: None` */
    Py_XDECREF(r);
    PyErr_Restore(type, value, tb);
}

void wsgi_watchdog_leave(struct wsgi_watch *w)
{
    pthread_mutex_lock(&lock);
    if (w->prev)
        w->prev->next = w->next;
    else
        running = w->next;
    if (w->next)
        w->next->prev = w->prev;
    bool interrupted = w->interrupted;
    pthread_mutex_unlock(&lock);
    if (!interrupted)
        __atomic_add_fetch(&completed, 1, __ATOMIC_RELAXED);
    if (interrupted) {
        swallow_late_timeout();
        tf_request_interrupt(w->req, false); /* a later part of it is not interrupted */
    }
    tf_request_unref(w->req);
}

int wsgi_watchdog_raise(void)
{
    PyObject *r = PyObject_CallNoArgs(noop); /* new ref; NULL: the pending one came */
    if (r) { /* none pending here (the request's write() called from another thread) */
        Py_DECREF(r);
        PyErr_SetNone(timeout_exc);
    }
    return -1;
}

bool wsgi_watchdog_timed_out(void)
{
    return timeout_exc && PyErr_ExceptionMatches(timeout_exc);
}

bool wsgi_watchdog_is_timeout(PyObject *value)
{
    return timeout_exc && PyObject_TypeCheck(value, (PyTypeObject *)timeout_exc);
}

static bool newly_overdue(const struct wsgi_watch *w, uint64_t now)
{
    return !w->reported && now > w->started && now - w->started >= settings.timeout_us;
}

/* Copy the registry out: every entry, or (overdue_only) those newly past the
 * timeout, which are marked reported. Returns the count (*out malloc'd, NULL
 * when 0), or -1 on out of memory (nothing marked). */
static ssize_t take_snapshot(struct snapshot **out, uint64_t now, bool overdue_only)
{
    size_t n = 0, i = 0;
    pthread_mutex_lock(&lock);
    for (struct wsgi_watch *w = running; w; w = w->next)
        n += !overdue_only || newly_overdue(w, now);
    struct snapshot *list = n ? calloc(n, sizeof(*list)) : NULL;
    for (struct wsgi_watch *w = running; list && w; w = w->next) {
        if (overdue_only && !newly_overdue(w, now))
            continue;
        w->reported = w->reported || overdue_only;
        tf_request_ref(w->req);
        list[i++] = (struct snapshot){ w->req, w->thread_id, w->started, NULL };
    }
    pthread_mutex_unlock(&lock);
    *out = list;
    return n && !list ? -1 : (ssize_t)i;
}

static void free_snapshot(struct snapshot *list, ssize_t n)
{
    for (ssize_t i = 0; i < n; i++) {
        free(list[i].stack);
        tf_request_unref(list[i].req);
    }
    free(list);
}

/* GIL held: sys._current_frames(), {thread id: innermost frame} (new ref),
 * or NULL (error cleared). Only inside a stack read (stack_read_begin). */
static PyObject *current_frames(void)
{
    PyObject *fn = PySys_GetObject("_current_frames"); /* borrowed */
    PyObject *frames = fn ? PyObject_CallNoArgs(fn) : NULL; /* new ref */
    if (!frames || !PyDict_Check(frames)) {
        Py_XDECREF(frames);
        PyErr_Clear();
        return NULL;
    }
    return frames;
}

/* GIL held, inside a stack read: one traceback line for frame f. */
static void describe_frame(struct prof_text *t, PyFrameObject *f)
{
    PyCodeObject *code = PyFrame_GetCode(f); /* new ref */
    PyObject *file = PyObject_GetAttrString((PyObject *)code, "co_filename"); /* new ref */
    PyObject *name = PyObject_GetAttrString((PyObject *)code, "co_qualname"); /* new ref */
    const char *file_s = file && PyUnicode_Check(file) ? PyUnicode_AsUTF8(file) : NULL;
    const char *name_s = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    if (!file_s || !name_s)
        PyErr_Clear();
    /* the app's names: a newline in one must not start a line of the log */
    char *file_e = file_s ? wsgi_errors_escape_inline(file_s) : NULL;
    char *name_e = name_s ? wsgi_errors_escape_inline(name_s) : NULL;
    prof_text_add(t, "  File \"%s\", line %d, in %s\n", file_e ? file_e : "?",
                  PyFrame_GetLineNumber(f), name_e ? name_e : "?");
    free(name_e);
    free(file_e);
    Py_XDECREF(name);
    Py_XDECREF(file);
    Py_DECREF(code);
}

/* GIL held, inside a stack read: the stack ending at frame (borrowed) as
 * traceback.format_stack prints it, outermost first; malloc'd, NULL on out
 * of memory. */
static char *format_stack(PyObject *frame)
{
    PyFrameObject *chain[MAX_FRAMES];
    size_t n = 0, skipped = 0;
    PyFrameObject *f = (PyFrameObject *)frame;
    Py_INCREF(f);
    while (f) { /* innermost first */
        PyFrameObject *back = PyFrame_GetBack(f); /* new ref */
        if (n < MAX_FRAMES) {
            chain[n++] = f;
        } else {
            skipped++;
            Py_DECREF(f);
        }
        f = back;
    }
    struct prof_text t = { 0 };
    if (skipped)
        prof_text_add(&t, "  ... %zu outer frames not shown\n", skipped);
    while (n-- > 0) {
        describe_frame(&t, chain[n]);
        Py_DECREF(chain[n]);
    }
    return prof_text_finish(&t);
}

/* GIL held, inside a stack read: each entry's current stack (stays NULL
 * when its thread runs no Python frame, e.g. between calls). */
static void fill_stacks(struct snapshot *list, ssize_t n, PyObject *frames)
{
    for (ssize_t i = 0; frames && i < n; i++) {
        PyObject *key = PyLong_FromUnsignedLong(list[i].thread_id); /* new ref */
        PyObject *frame = key ? PyDict_GetItemWithError(frames, key) : NULL; /* borrowed */
        Py_XDECREF(key);
        if (frame && PyFrame_Check(frame))
            list[i].stack = format_stack(frame);
        else
            PyErr_Clear();
    }
}

/* GIL held, before a stack read (it runs Python, which can collect and let
 * the GIL go): {thread id: name} of the threading module's threads (new
 * ref), or NULL when threading was never imported. */
static PyObject *thread_names(void)
{
    PyObject *names = NULL, *threads = NULL;
    PyObject *mod_name = PyUnicode_FromString("threading"); /* new ref */
    PyObject *mod = mod_name ? PyImport_GetModule(mod_name) : NULL; /* new ref, no import */
    Py_XDECREF(mod_name);
    if (mod && (threads = PyObject_CallMethod(mod, "enumerate", NULL)) &&
        (names = PyDict_New())) {
        for (Py_ssize_t i = 0; PyList_Check(threads) && i < PyList_GET_SIZE(threads); i++) {
            PyObject *th = PyList_GET_ITEM(threads, i); /* borrowed */
            PyObject *id = PyObject_GetAttrString(th, "ident"), *name =
                PyObject_GetAttrString(th, "name"); /* new refs */
            if (id && name && PyLong_CheckExact(id)) /* looked up in a stack read */
                PyDict_SetItem(names, id, name);
            Py_XDECREF(id);
            Py_XDECREF(name);
        }
    }
    PyErr_Clear();
    Py_XDECREF(threads);
    Py_XDECREF(mod);
    return names;
}

/* A read of other threads' stacks: the GIL, and the collector off from the
 * first frame object made to the last frame read. sys._current_frames() and
 * PyFrame_GetBack() make a frame object for a frame of another thread
 * (CPython 3.11, _PyFrame_MakeAndSetFrameObject): a GC-tracked allocation,
 * which can collect, and a finalizer that lets the GIL go (a socket's close,
 * a log write, a sleep) lets that thread run on and return from the very
 * frame being made into an object. The new object then points at the
 * popped frame: its code object (freed with the frame when that held the
 * last reference, as with code compiled per request) is read after free,
 * and the object's address is written into the thread's frame stack, where
 * later frames are pushed (heap corruption). With the collector off,
 * nothing between begin and end runs Python or lets the GIL go (the code
 * objects' attributes, line numbers, and dictionaries keyed by exact ints
 * run none), so no other thread moves meanwhile, and no Python sees or
 * changes the collector's state. What runs Python (threading.enumerate for
 * the thread names) goes before, with the GIL. One exception: an audit hook
 * the app added (sys.addaudithook) runs on sys._current_frames' event, after
 * the collector went off and before any frame is made; one that lets the GIL
 * go lets other threads see the collector off, and one that turns it back on
 * (gc.enable() on another thread meanwhile) reopens the race. Walking the
 * thread states instead (PyThreadState_GetFrame) raises no event, but needs
 * the runtime's lock on the list of thread states, which is not public. */
struct stack_read {
    PyGILState_STATE gil;
    int gc_was_on;
    PyObject *names;  /* thread_names() if asked: new ref or NULL */
    PyObject *frames; /* current_frames(): new ref or NULL */
};

static void stack_read_begin(struct stack_read *r, bool with_names)
{
    r->gil = PyGILState_Ensure();
    r->names = with_names ? thread_names() : NULL;
    r->gc_was_on = PyGC_Disable();
    r->frames = current_frames();
}

/* The collector back on before anything is let go: a deallocation may run
 * a finalizer (Python), which must find it as the app left it. */
static void stack_read_end(struct stack_read *r)
{
    if (r->gc_was_on)
        PyGC_Enable();
    Py_XDECREF(r->frames);
    Py_XDECREF(r->names);
    PyGILState_Release(r->gil);
}

/* GIL held: one thread's heading for --dump-all. */
static void label_thread(struct prof_text *t, unsigned long id, PyObject *names,
                         const struct snapshot *apps, ssize_t n_apps)
{
    for (ssize_t i = 0; i < n_apps; i++) {
        if (apps[i].thread_id != id)
            continue;
        prof_text_add(t, "Thread %lu (app thread, request %llu ", id,
                      (unsigned long long)apps[i].req->id);
        prof_text_add(t, "%s %s):\n", apps[i].req->method, apps[i].req->log_target);
        return;
    }
    PyObject *key = PyLong_FromUnsignedLong(id); /* new ref */
    PyObject *name = key && names ? PyDict_GetItemWithError(names, key) : NULL; /* borrowed */
    const char *s = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    PyErr_Clear();
    char *escaped = s ? wsgi_errors_escape_inline(s) : NULL; /* the app's name */
    prof_text_add(t, "Thread %lu (%s):\n", id, escaped ? escaped : "not an app thread");
    free(escaped);
    Py_XDECREF(key);
}

/* GIL held, inside a stack read: every Python thread's stack (threads
 * running no Python code have none), app threads labelled with their
 * request, the others with their names (borrowed: thread_names()'s, or
 * NULL); malloc'd or NULL. */
static char *format_all(PyObject *frames, PyObject *names)
{
    struct snapshot *apps;
    ssize_t n_apps = take_snapshot(&apps, 0, false);
    struct prof_text t = { 0 };
    PyObject *key, *frame; /* borrowed */
    Py_ssize_t pos = 0;
    while (PyDict_Next(frames, &pos, &key, &frame)) {
        unsigned long id = PyLong_AsUnsignedLong(key);
        if (PyErr_Occurred() || !PyFrame_Check(frame)) {
            PyErr_Clear();
            continue;
        }
        label_thread(&t, id, names, apps, n_apps);
        char *stack = format_stack(frame);
        prof_text_add(&t, "%s", stack ? stack : "  (stack unavailable)\n");
        free(stack);
    }
    free_snapshot(apps, n_apps);
    return prof_text_finish(&t);
}

/* GIL held: raise RequestTimeout in each entry's thread if that thread still
 * runs the same run of the same request (the lock keeps it from leaving
 * meanwhile; SetAsyncExc runs no Python code). Returns how many were raised,
 * and in *completed_before the fewest requests completed before one of them
 * began (a cold start's first request began with none, whatever completed
 * beside it since). */
static size_t interrupt(const struct snapshot *list, ssize_t n, uint64_t *completed_before)
{
    size_t raised = 0;
    *completed_before = UINT64_MAX;
    pthread_mutex_lock(&lock);
    for (ssize_t i = 0; i < n; i++)
        for (struct wsgi_watch *w = running; w; w = w->next)
            if (w->req == list[i].req && w->started == list[i].started && !w->interrupted) {
                w->interrupted = PyThreadState_SetAsyncExc(w->thread_id, timeout_exc) == 1;
                if (w->interrupted) /* a write() waiting for the client runs no bytecode */
                    tf_request_interrupt(w->req, true);
                raised += w->interrupted;
                if (w->interrupted && w->completed_before < *completed_before)
                    *completed_before = w->completed_before;
                break;
            }
    pthread_mutex_unlock(&lock);
    return raised;
}

/* text (stacks: the app's file, function and thread names) as the app's
 * lines are written, stamped and escaped, so that none passes for a line of
 * tracfront's; malloc'd, its length in *len; NULL (len 0) when out of
 * memory: the heading goes alone. */
static char *app_lines(const char *text, size_t *len)
{
    char *lines = wsgi_errors_lines(text, strlen(text), len);
    if (!lines)
        *len = 0;
    return lines;
}

/* The line and the stack under it in one write: no other thread's lines
 * come between them. */
static void report(const struct snapshot *s, uint64_t now)
{
    size_t len;
    static const char no_frame[] = "  (no Python frame: the thread is in a C call, or waits "
                                   "for the GIL to start the app)\n";
    char *stack = app_lines(s->stack ? s->stack : no_frame, &len);
    tf_log_error_block(stack, len,
                       "stuck request %llu: %s %s has run %.1fs on an app thread "
                       "(--request-timeout %gs)%s; its Python stack (most recent call last):",
                       (unsigned long long)s->req->id, s->req->method, s->req->log_target,
                       (double)(now - s->started) / 1e6, settings.timeout,
                       settings.interrupt ? "; interrupting it (--request-timeout-action 504)"
                                          : "");
    free(stack);
}

/* One scan: report, and interrupt, the requests newly past the timeout. The
 * GIL is held only while stacks are read and the interrupts raised, not while
 * the reports are written (interrupt() checks again that each request is
 * still the one it was). */
static void check_overdue(void)
{
    struct snapshot *list;
    uint64_t now = tf_now_us();
    ssize_t n = take_snapshot(&list, now, true);
    if (n <= 0)
        return;
    struct stack_read r;
    stack_read_begin(&r, settings.dump_all);
    fill_stacks(list, n, r.frames);
    char *all = settings.dump_all && r.frames ? format_all(r.frames, r.names) : NULL;
    stack_read_end(&r);
    for (ssize_t i = 0; i < n; i++) /* logged before the 504 it may cause */
        report(&list[i], now);
    if (all) {
        size_t len;
        char *lines = app_lines(all, &len);
        tf_log_error_block(lines, len, "every Python thread's stack follows (--dump-all):");
        free(lines);
    }
    size_t raised = 0;
    uint64_t completed_before = 0;
    if (settings.interrupt) {
        PyGILState_STATE g = PyGILState_Ensure();
        raised = interrupt(list, n, &completed_before);
        PyGILState_Release(g);
    }
    free(all);
    free_snapshot(list, n);
    /* what it interrupted may be left half done in this process: a worker
     * asks its front for a replacement (the app may have swallowed it) */
    if (raised && on_interrupt)
        on_interrupt(completed_before);
}

static void *watch(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&stop_lock);
    while (!stopping) {
        struct timespec deadline;
        tf_deadline_in(CLOCK_MONOTONIC, TICK_NS / 1000, &deadline);
        pthread_cond_timedwait(&stop_cond, &stop_lock, &deadline);
        if (stopping)
            break;
        pthread_mutex_unlock(&stop_lock);
        check_overdue();
        pthread_mutex_lock(&stop_lock);
    }
    pthread_mutex_unlock(&stop_lock);
    return NULL;
}

int wsgi_watchdog_python_init(void)
{
    PyObject *module = PyImport_AddModule("tracfront"); /* borrowed */
    if (!module)
        return -1;
    timeout_exc = PyErr_NewExceptionWithDoc(
        "tracfront.RequestTimeout",
        "Raised in a request's thread when it runs past --request-timeout with "
        "--request-timeout-action 504. A BaseException, so `except Exception` lets it through.",
        PyExc_BaseException, NULL); /* new ref, kept */
    if (!timeout_exc || PyModule_AddObjectRef(module, "RequestTimeout", timeout_exc) < 0)
        return -1;
    PyObject *globals = PyDict_New(); /* new ref */
    if (!globals || PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) < 0) {
        Py_XDECREF(globals);
        return -1;
    }
    noop = PyRun_String("lambda: None", Py_eval_input, globals, globals); /* new ref, kept */
    Py_DECREF(globals);
    return noop ? 0 : -1;
}

void wsgi_watchdog_on_interrupt(void (*fn)(uint64_t completed))
{
    on_interrupt = fn;
}

int wsgi_watchdog_start(const struct tf_config *cfg, char *err, size_t errlen)
{
    settings.timeout = cfg->request_timeout;
    settings.timeout_us = (uint64_t)(cfg->request_timeout * 1e6);
    settings.dump_all = cfg->dump_all;
    settings.action = cfg->request_timeout_action ? cfg->request_timeout_action : "log";
    settings.interrupt = !strcmp(settings.action, "504");
    settings.worker_pid = cfg->worker ? (unsigned)getpid() : 0;
    if (settings.timeout <= 0)
        return 0;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&stop_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&watchdog, NULL, watch, NULL) != 0) {
        snprintf(err, errlen, "--request-timeout: cannot start the watchdog thread");
        return -1;
    }
    watchdog_started = true;
    return 0;
}

void wsgi_watchdog_stop(void)
{
    if (!watchdog_started)
        return;
    pthread_mutex_lock(&stop_lock);
    stopping = true;
    pthread_cond_signal(&stop_cond);
    pthread_mutex_unlock(&stop_lock);
    pthread_join(watchdog, NULL);
    pthread_cond_destroy(&stop_cond);
    watchdog_started = false;
}

char *wsgi_watchdog_inflight(bool json, size_t *len)
{
    struct snapshot *list;
    uint64_t now = tf_now_us();
    ssize_t n = take_snapshot(&list, now, false);
    struct prof_inflight *rows = n > 0 ? calloc((size_t)n, sizeof(*rows)) : NULL;
    if (n < 0 || (n > 0 && !rows)) {
        free_snapshot(list, n < 0 ? 0 : n);
        return NULL;
    }
    if (n > 0) {
        struct stack_read r;
        stack_read_begin(&r, false);
        fill_stacks(list, n, r.frames);
        stack_read_end(&r);
    }
    for (ssize_t i = 0; i < n; i++) {
        uint64_t ran = now > list[i].started ? now - list[i].started : 0;
        rows[i] = (struct prof_inflight){ list[i].req->id, list[i].req->method,
                                          list[i].req->target, (double)ran / 1e6,
                                          list[i].thread_id,
                                          settings.timeout > 0 && ran >= settings.timeout_us,
                                          list[i].stack };
    }
    char *out = json ? prof_inflight_json(rows, (size_t)n, settings.timeout, settings.action,
                                          settings.worker_pid)
                     : prof_inflight_html(rows, (size_t)n, settings.timeout, settings.action,
                                          settings.worker_pid);
    free(rows);
    free_snapshot(list, n);
    if (out && len)
        *len = strlen(out);
    return out;
}
