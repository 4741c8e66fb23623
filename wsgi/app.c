/* app.c — loading the WSGI callable (see app.h). Failures name the flag and
 * say what to do; the Python traceback goes to the error log. */
#include "wsgi/app.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proxy/hash.h"
#include "proxy/platform.h"
#include "wsgi/interp.h"
#include "wsgi/options.h"

/* "ExcType: message" of the pending exception (which stays set). */
static void describe_exception(char *out, size_t cap)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *s = value ? PyObject_Str(value) : NULL; /* new ref */
    const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
    snprintf(out, cap, "%s: %s", type ? ((PyTypeObject *)type)->tp_name : "error",
             msg ? msg : "?");
    Py_XDECREF(s);
    if (PyErr_Occurred())
        PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

static PyObject *fail(const char *flag, const char *what, char *err, size_t errlen)
{
    char why[400] = "";
    if (PyErr_Occurred()) {
        describe_exception(why, sizeof(why));
        wsgi_log_exception("%s: %s", flag, what);
    }
    snprintf(err, errlen, "%s: %s%s%s", flag, what, why[0] ? ": " : "", why);
    return NULL;
}

/* getattr along a dotted path; new ref or NULL. */
static PyObject *resolve_attr(PyObject *obj, const char *dotted)
{
    char *copy = strdup(dotted), *save = NULL;
    Py_INCREF(obj);
    for (char *part = strtok_r(copy, ".", &save); part && obj; part = strtok_r(NULL, ".", &save))
        Py_SETREF(obj, PyObject_GetAttrString(obj, part));
    free(copy);
    return obj;
}

/* Is the pending exception a ModuleNotFoundError for module itself or one
 * of its parent packages (which stays set)? Not one for a module it
 * imports: that one was found, and --pythonpath is not what is wrong. */
static bool module_not_found(const char *module)
{
    if (!PyErr_ExceptionMatches(PyExc_ModuleNotFoundError))
        return false;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *name = value ? PyObject_GetAttrString(value, "name") : NULL; /* new ref */
    const char *missing = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    size_t n = missing ? strlen(missing) : 0;
    bool ours = n && !strncmp(module, missing, n) && (module[n] == 0 || module[n] == '.');
    Py_XDECREF(name);
    if (PyErr_Occurred())
        PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return ours;
}

/* Why the import of module failed, from the pending exception (which stays
 * set): a syntax error names its file (the module's, or one it imports);
 * only the module (or its package) not found suggests --pythonpath. */
static void import_failure(const char *module, char *what, size_t cap)
{
    if (PyErr_ExceptionMatches(PyExc_SyntaxError)) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyObject *file = value ? PyObject_GetAttrString(value, "filename") : NULL; /* new ref */
        const char *name = file && PyUnicode_Check(file) ? PyUnicode_AsUTF8(file) : NULL;
        snprintf(what, cap, "cannot import module '%s': a syntax error in %s", module,
                 name ? name : "it or a module it imports");
        Py_XDECREF(file);
        if (PyErr_Occurred())
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
    } else if (module_not_found(module)) {
        snprintf(what, cap, "cannot import module '%s' (is it on --pythonpath?)", module);
    } else if (PyErr_ExceptionMatches(PyExc_ImportError)) {
        snprintf(what, cap, "cannot import module '%s': an import in it failed", module);
    } else {
        snprintf(what, cap, "module '%s' raised while being imported", module);
    }
}

static PyObject *load_module_callable(const char *flag, const char *module, const char *attr,
                                      char *err, size_t errlen)
{
    char what[512];
    PyObject *mod = PyImport_ImportModule(module); /* new ref */
    if (!mod) {
        import_failure(module, what, sizeof(what));
        return fail(flag, what, err, errlen);
    }
    PyObject *app = resolve_attr(mod, attr); /* new ref */
    Py_DECREF(mod);
    if (!app) {
        snprintf(what, sizeof(what), "module '%s' has no attribute '%s'", module, attr);
        return fail(flag, what, err, errlen);
    }
    if (!PyCallable_Check(app)) {
        Py_DECREF(app);
        snprintf(what, sizeof(what), "'%s:%s' is not callable", module, attr);
        return fail(flag, what, err, errlen);
    }
    return app;
}

/* The script's absolute path, as os.path.abspath makes it (symlinks kept,
 * as given): what its module is named after and its __file__. New ref. */
static PyObject *absolute_path(const char *path)
{
    PyObject *given = PyUnicode_DecodeFSDefault(path); /* new ref */
    PyObject *os_path = PyImport_ImportModule("os.path"); /* new ref */
    PyObject *abs = given && os_path ? PyObject_CallMethod(os_path, "abspath", "O", given) : NULL;
    Py_XDECREF(given);
    Py_XDECREF(os_path);
    return abs;
}

/* The script's own module, "_tracfront_wsgi_<md5 of its absolute path>" in
 * sys.modules, as mod_wsgi's _mod_wsgi_<md5>: the same name in every worker
 * and every run, so what one process pickles (classes the script defines)
 * another loads. Borrowed ref to its dict, with __file__ set; or NULL. */
static PyObject *script_globals(PyObject *abspath)
{
    PyObject *raw = PyUnicode_EncodeFSDefault(abspath); /* new ref */
    if (!raw)
        return NULL;
    char hex[33], name[64];
    tf_md5_hex(PyBytes_AS_STRING(raw), (size_t)PyBytes_GET_SIZE(raw), hex);
    Py_DECREF(raw);
    snprintf(name, sizeof(name), "_tracfront_wsgi_%s", hex);
    PyObject *mod = PyImport_AddModule(name); /* borrowed */
    PyObject *globals = mod ? PyModule_GetDict(mod) : NULL; /* borrowed */
    if (!globals || PyDict_SetItemString(globals, "__file__", abspath) < 0 ||
        PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) < 0)
        return NULL;
    return globals;
}

static PyObject *load_wsgi_file(const char *path, char *err, size_t errlen)
{
    char what[600];
    PyObject *abspath = NULL, *io = NULL, *source = NULL, *code = NULL, *result = NULL,
             *app = NULL, *globals;
    if (!(abspath = absolute_path(path)) || !(io = PyImport_ImportModule("io")) ||
        !(source = PyObject_CallMethod(io, "open_code", "O", abspath))) {
        snprintf(what, sizeof(what), "cannot read '%s'", path);
        fail("--wsgi-file", what, err, errlen);
        goto done;
    }
    Py_SETREF(source, PyObject_CallMethod(source, "read", NULL)); /* bytes */
    if (!source || !(code = Py_CompileStringObject(PyBytes_AsString(source), abspath,
                                                   Py_file_input, NULL, -1))) {
        snprintf(what, sizeof(what), "cannot compile '%s'", path);
        fail("--wsgi-file", what, err, errlen);
        goto done;
    }
    if (!(globals = script_globals(abspath))) {
        fail("--wsgi-file", "cannot create its module", err, errlen);
        goto done;
    }
    if (!(result = PyEval_EvalCode(code, globals, globals))) {
        snprintf(what, sizeof(what), "'%s' raised while loading", path);
        fail("--wsgi-file", what, err, errlen);
        goto done;
    }
    app = PyDict_GetItemString(globals, "application"); /* borrowed */
    if (!app || !PyCallable_Check(app)) {
        snprintf(what, sizeof(what), "'%s' defines no callable named 'application'", path);
        app = fail("--wsgi-file", what, err, errlen);
        goto done;
    }
    Py_INCREF(app);
done:
    Py_XDECREF(abspath);
    Py_XDECREF(io);
    Py_XDECREF(source);
    Py_XDECREF(code);
    Py_XDECREF(result);
    return app;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

PyObject *wsgi_app_load(const struct tf_config *cfg, char *err, size_t errlen)
{
    if (cfg->app) { /* checked by wsgi_options_check() */
        size_t module_len;
        const char *callable = wsgi_app_spec_split(cfg->app, &module_len);
        char *module = strndup(cfg->app, module_len);
        PyObject *app = module ? load_module_callable("--app", module, callable, err, errlen)
                               : fail("--app", "out of memory", err, errlen);
        free(module);
        return app;
    }
    if (cfg->wsgi_file)
        return load_wsgi_file(cfg->wsgi_file, err, errlen);
    const char *flag = cfg->trac_env ? "--trac-env" : "--trac-env-parent-dir";
    const char *dir = cfg->trac_env ? cfg->trac_env : cfg->trac_env_parent_dir;
    if (!is_dir(dir)) {
        snprintf(err, errlen, "%s: '%s' is not a directory", flag, dir);
        return NULL;
    }
    return load_module_callable(flag, "trac.web.main", "dispatch_request", err, errlen);
}

/* Append "path\n" to a growing buffer; on out of memory *buf becomes NULL. */
static void append_line(char **buf, size_t *n, size_t *cap, const char *path)
{
    size_t plen = strlen(path);
    if (!*buf || !plen)
        return;
    if (*n + plen + 2 > *cap) {
        *cap = (*cap + plen) * 2;
        char *grown = realloc(*buf, *cap);
        if (!grown)
            free(*buf);
        *buf = grown;
        if (!grown)
            return;
    }
    memcpy(*buf + *n, path, plen);
    (*buf)[*n + plen] = '\n';
    *n += plen + 1;
}

/* The app's files as last listed, for the control port's thread: it must
 * never wait for the GIL (a request holding it would block the port, and the
 * front's next "stop accepting" with it), so threads that hold the GIL list
 * them (wsgi_app_files_note) and it copies the list. */
static struct {
    pthread_mutex_t lock;      /* guards text and len */
    char *text;                /* "path\n" each, or NULL before the first listing */
    size_t len;
    Py_ssize_t modules;        /* GIL: len(sys.modules) when listed */
    uint64_t at;               /* GIL: tf_now_us when listed */
    uint64_t begun;            /* GIL: listings begun */
    uint64_t published;        /* guarded by lock: the number of the one in text */
} listed = { PTHREAD_MUTEX_INITIALIZER, NULL, 0, -1, 0, 0, 0 };

/* With the GIL: the source files of every loaded module (and the
 * --wsgi-file), one per line, malloc'd; NULL on out of memory. */
static char *list_files(PyObject *modules, size_t *len)
{
    PyObject *values = PyDict_Values(modules); /* new ref; a copy: imports may run */
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    for (Py_ssize_t i = 0; values && i < PyList_GET_SIZE(values); i++) {
        PyObject *file = PyObject_GetAttrString(PyList_GET_ITEM(values, i), "__file__");
        const char *path = file && PyUnicode_Check(file) ? PyUnicode_AsUTF8(file) : NULL;
        if (path)
            append_line(&out, &n, &cap, path);
        Py_XDECREF(file);
        PyErr_Clear();
    }
    if (wsgi_ctx.cfg->wsgi_file)
        append_line(&out, &n, &cap, wsgi_ctx.cfg->wsgi_file);
    Py_XDECREF(values);
    PyErr_Clear(); /* PyDict_Values may have failed */
    *len = out ? n : 0;
    return out;
}

/* A listing costs a walk over sys.modules (a millisecond for Trac's): after
 * a request only when a module came or went, or this long after the last. */
#define LIST_EVERY_US 1000000u

void wsgi_app_files_note(bool now)
{
    PyObject *modules = PySys_GetObject("modules"); /* borrowed */
    if (!modules || !PyDict_Check(modules))
        return;
    Py_ssize_t count = PyDict_Size(modules);
    uint64_t t = tf_now_us();
    if (!now && count == listed.modules && t - listed.at < LIST_EVERY_US)
        return;
    size_t len;
    uint64_t begun = ++listed.begun; /* GIL */
    char *text = list_files(modules, &len), *old = NULL;
    if (!text) /* out of memory: the last list stays, and the next request lists again */
        return;
    pthread_mutex_lock(&listed.lock);
    /* listing can let the GIL go (a finalizer, a module's __getattr__): one
     * begun later may have been published meanwhile, and is newer */
    if (begun > listed.published) {
        listed.published = begun;
        listed.modules = count;
        listed.at = t;
        old = listed.text;
        listed.text = text;
        listed.len = len;
    } else {
        old = text;
    }
    pthread_mutex_unlock(&listed.lock);
    free(old);
}

char *wsgi_app_files(size_t *len)
{
    pthread_mutex_lock(&listed.lock);
    char *out = malloc(listed.len + 1);
    if (out && listed.text)
        memcpy(out, listed.text, listed.len);
    *len = out ? listed.len : 0;
    pthread_mutex_unlock(&listed.lock);
    return out;
}
