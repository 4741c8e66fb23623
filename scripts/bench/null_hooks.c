/* null_hooks: the two profiling hooks of CPython 3.11 doing nothing, for
 * scripts/bench-profiler's floors (scripts/bench/null_hook_middleware.py).
 * What a profile costs at the least, whatever it records:
 *
 *   profile_on() / profile_off()   a profile function (PyEval_SetProfile) on
 *                                  the calling thread that returns at once,
 *                                  what --profile and cProfile install;
 *   frame_hook_on()                a frame-evaluation function (PEP 523) for
 *                                  the interpreter that only calls the
 *                                  default, what --profile-builtins=false
 *                                  installs.
 *
 * Built by scripts/bench-profiler into build/bench/ against /usr/bin/python3. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int do_nothing(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)frame;
    (void)what;
    (void)arg;
    return 0;
}

static PyObject *profile_on(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyEval_SetProfile(do_nothing, NULL);
    Py_RETURN_NONE;
}

static PyObject *profile_off(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyEval_SetProfile(NULL, NULL);
    Py_RETURN_NONE;
}

static PyObject *pass_through(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    return _PyEval_EvalFrameDefault(ts, f, throwflag);
}

static PyObject *frame_hook_on(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    _PyInterpreterState_SetEvalFrameFunc(PyInterpreterState_Get(), pass_through);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    { "profile_on", profile_on, METH_NOARGS, "A do-nothing profile function on this thread." },
    { "profile_off", profile_off, METH_NOARGS, "No profile function on this thread." },
    { "frame_hook_on", frame_hook_on, METH_NOARGS, "A pass-through frame evaluation function." },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = { PyModuleDef_HEAD_INIT, "null_hooks", NULL, -1, methods,
                                     NULL, NULL, NULL, NULL };

PyMODINIT_FUNC PyInit_null_hooks(void)
{
    return PyModule_Create(&module);
}
