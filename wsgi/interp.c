/* interp.c — starting and stopping the embedded interpreter (see interp.h).
 * Python never installs signal handlers here (the main thread waits for
 * signals itself), and the interpreter is Debian's /usr/bin/python3 (or the
 * --venv one) whatever python3 comes first on PATH. */
#include "wsgi/interp.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

/* The traceback goes to our own stream (wsgi_ctx.errors), not to whatever
 * sys.stderr is now: an app may have wrapped it (Django 3.2 with colorama
 * installed) in a stream that flushes after every write, and each flush of
 * ours ends a line, which cut PyErr_Display's pieces (`KeyError`, `: `,
 * `'c'`) into lines of their own. Returns 0, or -1 with an exception set. */
static int print_traceback(PyObject *type, PyObject *value, PyObject *tb)
{
    if (!wsgi_ctx.errors) { /* not set up yet, or finalized */
        PyErr_SetString(PyExc_RuntimeError, "no error stream");
        return -1;
    }
    PyObject *traceback = PyImport_ImportModule("traceback"); /* new ref */
    PyObject *r = traceback ? PyObject_CallMethod(traceback, "print_exception", "OOOOO", type,
                                                  value ? value : Py_None, tb ? tb : Py_None,
                                                  Py_None, wsgi_ctx.errors)
                            : NULL; /* new ref */
    Py_XDECREF(traceback);
    Py_XDECREF(r);
    wsgi_errors_flush(wsgi_ctx.errors); /* a last line without its newline is ended */
    return r ? 0 : -1;
}

void wsgi_log_exception(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (wsgi_ctx.errors) /* this thread's unfinished line is not the traceback's start */
        wsgi_errors_flush(wsgi_ctx.errors);
    tf_log_error("%s; traceback follows", msg);
    if (!type)
        return;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value)
        PyException_SetTraceback(value, tb);
    if (print_traceback(type, value, tb) < 0) {
        PyErr_Clear();
        PyErr_Display(type, value, tb); /* to sys.stderr; sets no sys.last_* */
    }
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
    if (!(wsgi_ctx.app = wsgi_app_load(cfg, err, errlen)))
        goto fail;
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

/* threading's shutdown, the first thing Py_FinalizeEx does, waits with no
 * limit for every non-daemon thread of the threading module (the thread
 * that imported it too, if not this one): the same wait, bounded. First, as
 * it does, the calls registered with threading._register_atexit, which tell
 * some threads to end (a ThreadPoolExecutor's idle workers), taken off its
 * list so that it does not call them again. Returns repr()s of the names of
 * the threads still running at the end (new ref), an empty list when none
 * (or threading was never imported). */
static const char join_threads_source[] =
    "def join_threads(seconds):\n"
    "    import sys, time\n"
    "    threading = sys.modules.get('threading')\n"
    "    if not threading:\n"
    "        return []\n"
    "    end = time.monotonic() + seconds\n"
    "    calls = getattr(threading, '_threading_atexits', [])\n"
    "    if hasattr(threading, '_SHUTTING_DOWN'):\n"
    "        threading._SHUTTING_DOWN = True\n"
    "    while calls:\n"
    "        calls.pop()()\n"
    "    me = threading.get_ident()\n"
    "    while True:\n"
    "        waited = [t for t in threading.enumerate()\n"
    "                  if not t.daemon and t.ident != me and t.is_alive()]\n"
    "        left = end - time.monotonic()\n"
    "        if not waited or left <= 0:\n"
    "            return [repr(t.name) for t in waited]\n"
    "        waited[0].join(left)\n";

static PyObject *threads_still_running(double seconds)
{
    PyObject *globals = PyDict_New(), *r = NULL; /* new refs */
    if (globals && PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) == 0)
        r = PyRun_String(join_threads_source, Py_file_input, globals, globals);
    PyObject *join = r ? PyDict_GetItemString(globals, "join_threads") : NULL; /* borrowed */
    Py_XDECREF(r);
    r = join ? PyObject_CallFunction(join, "d", seconds) : NULL;
    Py_XDECREF(globals);
    return r;
}

int wsgi_interp_join_threads(double seconds)
{
    PyEval_RestoreThread(main_thread_state);
    PyObject *names = threads_still_running(seconds > 0 ? seconds : 0); /* new ref */
    PyObject *sep = names ? PyUnicode_FromString(", ") : NULL;          /* new ref */
    PyObject *text = sep ? PyUnicode_Join(sep, names) : NULL;           /* new ref */
    Py_ssize_t n = text ? PyList_GET_SIZE(names) : 0;
    if (!text)
        wsgi_log_exception("waiting for the app's threads before Python's end");
    else if (n) {
        const char *list = PyUnicode_AsUTF8(text);
        tf_log_error("--graceful-timeout passed: threading's shutdown waits for thread%s %s "
                     "(non-daemon, still running); exiting without %s", n > 1 ? "s" : "",
                     list ? list : "(names unreadable)", n > 1 ? "them" : "it");
    }
    PyErr_Clear();
    Py_XDECREF(text);
    Py_XDECREF(sep);
    Py_XDECREF(names);
    main_thread_state = PyEval_SaveThread();
    return (int)n;
}

void wsgi_interp_stop(bool threads_idle)
{
    PyEval_RestoreThread(main_thread_state);
    if (threads_idle) {
        Py_CLEAR(wsgi_ctx.app);
        Py_CLEAR(wsgi_ctx.base_environ);
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
