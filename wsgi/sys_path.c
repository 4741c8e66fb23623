/* sys_path.c — sys.path for the app (see sys_path.h). The working directory
 * is there because uWSGI and gunicorn put it there, and the README's first
 * example (`--app myapp:application` beside myapp.py) needs it; it is the
 * absolute folder at start, so an app that changes directory later does not
 * change where its imports come from. --pythonpath follows mod_wsgi's
 * python-path (see add_pythonpath). */
#include "wsgi/sys_path.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* site.addsitedir() for each folder of one --pythonpath value, which may
 * name several separated by ':'. Empty parts are skipped. */
static int add_site_dirs(PyObject *site, const char *value)
{
    char *copy = strdup(value), *save = NULL;
    if (!copy) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = 0;
    for (char *dir = strtok_r(copy, ":", &save); dir && rc == 0; dir = strtok_r(NULL, ":", &save)) {
        PyObject *r = PyObject_CallMethod(site, "addsitedir", "O&", PyUnicode_DecodeFSDefault,
                                          dir); /* new ref */
        rc = r ? 0 : -1;
        Py_XDECREF(r);
    }
    free(copy);
    return rc;
}

/* Move what sys.path has gained since `before` (a copy of it) to its front,
 * in the order it was added. Returns how many entries moved, or -1. */
static Py_ssize_t move_new_entries_first(PyObject *path, PyObject *before)
{
    PyObject *added = PyList_New(0), *kept = PyList_New(0); /* new refs */
    Py_ssize_t n_added = -1;
    for (Py_ssize_t i = 0; added && kept && i < PyList_GET_SIZE(path); i++) {
        PyObject *entry = PyList_GET_ITEM(path, i); /* borrowed */
        int old = PySequence_Contains(before, entry);
        if (old < 0 || PyList_Append(old ? kept : added, entry) < 0)
            goto done;
    }
    if (!added || !kept)
        goto done;
    n_added = PyList_GET_SIZE(added);
    if (PyList_SetSlice(added, n_added, n_added, kept) < 0 ||
        PyList_SetSlice(path, 0, PyList_GET_SIZE(path), added) < 0)
        n_added = -1;
done:
    Py_XDECREF(added);
    Py_XDECREF(kept);
    return n_added;
}

/* sys.path, borrowed, or NULL with an exception set. */
static PyObject *sys_path(void)
{
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    if (!path || !PyList_Check(path)) {
        PyErr_SetString(PyExc_RuntimeError, "sys.path is not a list");
        return NULL;
    }
    return path;
}

/* The --pythonpath folders as mod_wsgi's python-path: each through
 * site.addsitedir(), so that the .pth files in it are read (Trac plugins
 * installed in develop mode are found through one), and whatever that adds
 * moved to the front of sys.path, in the order given. A folder sys.path
 * has already (a site-packages) keeps its place, as under mod_wsgi.
 * Returns how many entries are now first, or -1. */
static Py_ssize_t add_pythonpath(const struct tf_config *cfg)
{
    PyObject *path = sys_path(); /* borrowed */
    PyObject *before = path ? PyList_GetSlice(path, 0, PY_SSIZE_T_MAX) : NULL; /* new ref */
    PyObject *site = before ? PyImport_ImportModule("site") : NULL; /* new ref */
    Py_ssize_t n = site ? 0 : -1;
    for (size_t i = 0; n == 0 && i < cfg->n_pythonpath; i++)
        if (add_site_dirs(site, cfg->pythonpath[i]) < 0)
            n = -1;
    if (n == 0) /* sys_path() again: a .pth line may have replaced the list */
        n = (path = sys_path()) ? move_new_entries_first(path, before) : -1;
    Py_XDECREF(before);
    Py_XDECREF(site);
    return n;
}

/* The working directory at index at, unless sys.path has it already (it may
 * be a --pythonpath folder too). */
static int insert_working_directory(Py_ssize_t at)
{
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return 0; /* removed, or too long: there is nothing to import from */
    PyObject *path = sys_path(); /* borrowed */
    PyObject *dir = path ? PyUnicode_DecodeFSDefault(cwd) : NULL; /* new ref */
    int present = dir ? PySequence_Contains(path, dir) : -1;
    int rc = present < 0 ? -1 : present ? 0 : PyList_Insert(path, at, dir);
    Py_XDECREF(dir);
    return rc;
}

int wsgi_sys_path_setup(const struct tf_config *cfg)
{
    Py_ssize_t first = add_pythonpath(cfg);
    return first < 0 ? -1 : insert_working_directory(first);
}
