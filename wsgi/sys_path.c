/* sys_path.c — sys.path for the app (see sys_path.h). The working directory
 * is there because uWSGI and gunicorn put it there, and the README's first
 * example (`--app myapp:application` beside myapp.py) needs it; it is the
 * absolute folder at start, so an app that changes directory later does not
 * change where its imports come from. */
#include "wsgi/sys_path.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <unistd.h>

static int prepend_pythonpath(PyObject *path, const struct tf_config *cfg)
{
    for (size_t i = cfg->n_pythonpath; i-- > 0;) {
        PyObject *dir = PyUnicode_DecodeFSDefault(cfg->pythonpath[i]); /* new ref */
        if (!dir || PyList_Insert(path, 0, dir) < 0) {
            Py_XDECREF(dir);
            return -1;
        }
        Py_DECREF(dir);
    }
    return 0;
}

/* The working directory at index at, unless sys.path has it already (it may
 * be a --pythonpath folder too). */
static int insert_working_directory(PyObject *path, Py_ssize_t at)
{
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return 0; /* removed, or too long: there is nothing to import from */
    PyObject *dir = PyUnicode_DecodeFSDefault(cwd); /* new ref */
    int present = dir ? PySequence_Contains(path, dir) : -1;
    int rc = present < 0 ? -1 : present ? 0 : PyList_Insert(path, at, dir);
    Py_XDECREF(dir);
    return rc;
}

int wsgi_sys_path_setup(const struct tf_config *cfg)
{
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    if (!path || !PyList_Check(path)) {
        PyErr_SetString(PyExc_RuntimeError, "sys.path is not a list");
        return -1;
    }
    if (prepend_pythonpath(path, cfg) < 0)
        return -1;
    return insert_working_directory(path, (Py_ssize_t)cfg->n_pythonpath);
}
