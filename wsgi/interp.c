/* interp.c — starting and stopping the embedded interpreter (see interp.h).
 * Python never installs signal handlers here (the main thread waits for
 * signals itself), and the interpreter is Debian's /usr/bin/python3 (or the
 * --venv one) whatever python3 comes first on PATH. */
#include "wsgi/interp.h"
#include "wsgi/watchdog.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proxy/log.h"
#include "wsgi/app.h"
#include "wsgi/environ.h"
#include "wsgi/errors.h"
#include "wsgi/filewrapper.h"
#include "wsgi/input.h"
#include "wsgi/response.h"
#include "wsgi/sys_path.h"

struct wsgi_context wsgi_ctx;
static PyThreadState *main_thread_state; /* main thread only */

/* The traceback as traceback.format_exception writes it, one str (new
 * ref), or NULL with an exception set. Formatted, not printed: printing makes
 * a write per line, which other threads' lines came between, and through
 * sys.stderr as the app may have wrapped it (Django 3.2 with colorama: a
 * flush after every write, which cut PyErr_Display's pieces into lines). */
static PyObject *format_traceback(PyObject *type, PyObject *value, PyObject *tb)
{
    PyObject *traceback = PyImport_ImportModule("traceback"); /* new refs */
    PyObject *lines = traceback ? PyObject_CallMethod(traceback, "format_exception", "OOO", type,
                                                      value ? value : Py_None, tb ? tb : Py_None)
                                : NULL;
    PyObject *empty = lines ? PyUnicode_FromString("") : NULL;
    PyObject *text = empty ? PyUnicode_Join(empty, lines) : NULL;
    Py_XDECREF(empty);
    Py_XDECREF(lines);
    Py_XDECREF(traceback);
    return text;
}

void wsgi_log_exception(const char *fmt, ...)
{
    static const char follows[] = "; traceback follows";
    char heading[1024 + sizeof(follows)];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(heading, 1024, fmt, ap);
    va_end(ap);
    memcpy(heading + (n < 0 ? 0 : n < 1024 ? n : 1023), follows, sizeof(follows));
    PyObject *type, *value, *tb, *text = NULL;
    PyErr_Fetch(&type, &value, &tb);
    if (wsgi_ctx.errors) /* this thread's unfinished line is not the traceback's start */
        wsgi_errors_flush(wsgi_ctx.errors);
    if (type) {
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb && value)
            PyException_SetTraceback(value, tb);
        if (!(text = format_traceback(type, value, tb)))
            PyErr_Clear();
    }
    /* the heading and the traceback in one write: another thread's lines
     * cannot come between them, nor their lines mix */
    if (wsgi_errors_log_block(heading, text) < 0 || (type && !text)) {
        PyErr_Clear();
        PyErr_Display(type, value, tb); /* to sys.stderr; sets no sys.last_* */
    }
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

static int ready_types(void)
{
    return PyType_Ready(&wsgi_errors_type) < 0 || PyType_Ready(&wsgi_input_type) < 0 ||
                   PyType_Ready(&wsgi_filewrapper_type) < 0 ||
                   PyType_Ready(&wsgi_start_response_type) < 0
               ? -1
               : 0;
}

/* sys.stderr and sys.stdout write to the error log, whole lines at once.
 * Python's own sys.stdout would be block-buffered on the process's stdout:
 * print() would show up nowhere until exit, and be lost by an _exit(). */
static int set_std_streams(void)
{
    return !(wsgi_ctx.errors = wsgi_errors_new("<stderr>")) ||
                   !(wsgi_ctx.output = wsgi_errors_new("<stdout>")) ||
                   PySys_SetObject("stderr", wsgi_ctx.errors) < 0 ||
                   PySys_SetObject("stdout", wsgi_ctx.output) < 0
               ? -1
               : 0;
}

/* What Py_FinalizeEx would do for the streams: flush sys.stdout and
 * sys.stderr (the app may have wrapped ours), then ours. */
static void flush_std_streams(void)
{
    static const char *const names[] = { "stdout", "stderr" };
    for (size_t i = 0; i < 2; i++) {
        PyObject *stream = PySys_GetObject(names[i]); /* borrowed */
        PyObject *r = stream && stream != Py_None ? PyObject_CallMethod(stream, "flush", NULL)
                                                  : NULL;
        if (!r)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    wsgi_errors_flush_all();
}

/* A fatal signal (a segfault in a C extension, an abort) writes every
 * thread's Python stack into the error log before the process dies, as
 * uWSGI reports a segfault: else the log would say nothing (a worker's front
 * says only its signal). Not when faulthandler is on already
 * (PYTHONFAULTHANDLER); an app that enables it at import chooses its file. */
static void enable_faulthandler(void)
{
    int fd = tf_log_error_fd();
    if (fd < 0)
        return;
    PyObject *module = PyImport_ImportModule("faulthandler");                   /* new ref */
    PyObject *on = module ? PyObject_CallMethod(module, "is_enabled", NULL) : NULL; /* new ref */
    PyObject *r = on == Py_False ? PyObject_CallMethod(module, "enable", "iO", fd, Py_True)
                                 : NULL; /* new ref */
    if (!on || (on == Py_False && !r))
        wsgi_log_exception("faulthandler.enable(): a crash will leave no Python stack in the log");
    Py_XDECREF(r);
    Py_XDECREF(on);
    Py_XDECREF(module);
}

static int init_python(const struct tf_config *cfg, char *err, size_t errlen)
{
    char program[4096];
    if (cfg->venv) /* checked by wsgi_options_check() */
        snprintf(program, sizeof(program), "%s/bin/python3", cfg->venv);
    else
        snprintf(program, sizeof(program), "%s", TF_PY_EXECUTABLE);
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, program);
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        snprintf(err, errlen, "cannot start Python (%s): %s", program,
                 st.err_msg ? st.err_msg : "unknown error");
        return -1;
    }
    return 0;
}

int wsgi_interp_start(const struct tf_config *cfg, char *err, size_t errlen)
{
    if (init_python(cfg, err, errlen) < 0)
        return -1;
    wsgi_ctx.cfg = cfg;
    if (ready_types() < 0 || set_std_streams() < 0 ||
        wsgi_sys_path_setup(cfg) < 0) {
        PyErr_Print();
        snprintf(err, errlen, "cannot set up the Python side of tracfront");
        goto fail;
    }
    enable_faulthandler();
    if (cfg->workers) { /* a front: Python only to render the merged profile */
        main_thread_state = PyEval_SaveThread();
        return 0;
    }
    if (wsgi_watchdog_python_init() < 0) {
        PyErr_Print();
        snprintf(err, errlen, "cannot create the module tracfront (see the error log)");
        goto fail;
    }
    if (!(wsgi_ctx.app = wsgi_app_load(cfg, err, errlen)))
        goto fail;
    wsgi_app_files_note(true);
    if (!(wsgi_ctx.base_environ = wsgi_environ_base())) {
        wsgi_log_exception("building the base environ");
        snprintf(err, errlen, "cannot build the WSGI environ (see the error log; check --env)");
        goto fail;
    }
    main_thread_state = PyEval_SaveThread();
    return 0;
fail:
    main_thread_state = PyEval_SaveThread();
    return -1;
}

bool wsgi_interp_sigint_is_pythons(void)
{
    PyEval_RestoreThread(main_thread_state);
    bool pythons = false;
    PyObject *name = PyUnicode_FromString("signal");
    PyObject *signal = name ? PyImport_GetModule(name) : NULL; /* new ref, NULL: not imported */
    Py_XDECREF(name);
    if (signal) {
        PyObject *now = PyObject_CallMethod(signal, "getsignal", "i", SIGINT);
        PyObject *dflt = PyObject_GetAttrString(signal, "default_int_handler");
        pythons = now && now == dflt;
        Py_XDECREF(now);
        Py_XDECREF(dflt);
        Py_DECREF(signal);
    }
    PyErr_Clear();
    main_thread_state = PyEval_SaveThread();
    return pythons;
}

void wsgi_interp_set_port(unsigned port)
{
    PyEval_RestoreThread(main_thread_state);
    wsgi_ctx.server_port = port;
    if (!wsgi_ctx.base_environ) { /* a front has no app */
        main_thread_state = PyEval_SaveThread();
        return;
    }
    char text[16];
    snprintf(text, sizeof(text), "%u", port);
    PyObject *v = PyUnicode_FromString(text);
    if (!v || PyDict_SetItemString(wsgi_ctx.base_environ, "SERVER_PORT", v) < 0)
        PyErr_Clear();
    Py_XDECREF(v);
    main_thread_state = PyEval_SaveThread();
}

/* obj.name, or NULL with no exception left set (the next call must not
 * run with one). New ref. */
static PyObject *attr_or_null(PyObject *obj, const char *name)
{
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (!v)
        PyErr_Clear();
    return v;
}

/* thread into out[n], if it is one that Python's end waits for (non-daemon,
 * or any when joined anyway; not this one), and not in out yet. Returns 1
 * if taken. */
static int take_waited(PyObject *thread, bool joined, struct wsgi_thread *out, size_t n)
{
    PyObject *daemon = attr_or_null(thread, "daemon"); /* new refs */
    PyObject *id = attr_or_null(thread, "native_id");
    PyObject *name = attr_or_null(thread, "name");
    long tid = id && PyLong_Check(id) ? PyLong_AsLong(id) : -1;
    PyErr_Clear(); /* an id past a long */
    const char *text = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    int taken = (joined || daemon == Py_False) && tid > 0 && tid != (long)getpid() && text;
    for (size_t i = 0; taken && i < n; i++)
        taken = out[i].native_id != tid;
    if (taken) {
        out[n].native_id = tid;
        snprintf(out[n].name, sizeof(out[n].name), "%s", text);
    }
    PyErr_Clear();
    Py_XDECREF(name);
    Py_XDECREF(id);
    Py_XDECREF(daemon);
    return taken;
}

/* The threads of module's attr (a list, or the keys of a dict), as
 * take_waited takes them, after the n in out; at most cap in all. Returns
 * the new n. */
static size_t take_all(const char *module, const char *attr, bool joined,
                       struct wsgi_thread *out, size_t n, size_t cap)
{
    PyObject *m = PyDict_GetItemString(PyImport_GetModuleDict(), module); /* borrowed */
    PyObject *got = m ? (joined ? PyObject_GetAttrString(m, attr)
                                : PyObject_CallMethod(m, attr, NULL))
                      : NULL;                                            /* new ref */
    PyObject *threads = got ? PySequence_List(got) : NULL;               /* new ref */
    for (Py_ssize_t i = 0; threads && i < PyList_GET_SIZE(threads) && n < cap; i++)
        n += (size_t)take_waited(PyList_GET_ITEM(threads, i), joined, out, n);
    PyErr_Clear();
    Py_XDECREF(threads);
    Py_XDECREF(got);
    return n;
}

size_t wsgi_interp_threads_waited(struct wsgi_thread *out, size_t cap)
{
    PyEval_RestoreThread(main_thread_state);
    size_t n = take_all("threading", "enumerate", false, out, 0, cap);
    /* an executor's threads are daemons when a request thread made them,
     * but concurrent.futures' exit call joins them all */
    n = take_all("concurrent.futures.thread", "_threads_queues", true, out, n, cap);
    main_thread_state = PyEval_SaveThread();
    return n;
}

void wsgi_interp_stop(bool threads_idle)
{
    PyEval_RestoreThread(main_thread_state);
    if (threads_idle) {
        Py_CLEAR(wsgi_ctx.app);
        Py_CLEAR(wsgi_ctx.base_environ);
        wsgi_start_response_pool_clear();
        wsgi_input_pool_clear();
        wsgi_errors_flush_all(); /* daemon threads' unfinished lines: finalizing flushes
                                    only this thread's */
        if (Py_FinalizeEx() < 0)
            tf_log_error("Python reported errors while finalizing");
        wsgi_ctx.errors = wsgi_ctx.output = NULL; /* gone with the runtime */
        return;
    }
    /* App threads may still be inside Python: finalizing under them is unsafe,
     * but the app's atexit handlers still get their chance. */
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *r = atexit ? PyObject_CallMethod(atexit, "_run_exitfuncs", NULL) : NULL;
    if (!r)
        PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(atexit);
    flush_std_streams();
}
