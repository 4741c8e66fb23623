/* label.h — what a call-tree node's label is on the Python side, as in
 * CPython's Modules/_lsprof.c: the code object for a Python function, the
 * built-in's cProfile name (a str) for a built-in. Labels are strong
 * references, taken and released under the GIL: every function here runs
 * with the GIL held. */
#ifndef PROF_LABEL_H
#define PROF_LABEL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "profiler/calltree.h"

/* How the trees hold such labels: a reference each, and two labels name one
 * function when their prof_label_tuple()s are equal (the reports add such
 * entries up). */
extern const struct prof_label_ops prof_python_label_ops;

/* A built-in's key in the trees: its method definition, tagged so that the
 * ops' canonical step tells it from a code object without reading it. */
const void *prof_label_builtin_key(const PyMethodDef *ml);

/* Forget the first code objects (see label.c) that no tree holds any more,
 * and the aliases remembered: after trees are freed (a Clear, profiling
 * stopped), not per request (it walks every label). */
void prof_label_forget_unused(void);
/* Drop the aliases evicted since the last call (label.c): at a request's end,
 * where what that runs cannot catch the state half changed. */
void prof_label_release_evicted(void);
/* At most max_keys labels get a first code object (the node cap). */
void prof_label_configure(size_t max_keys);

/* cProfile's label(): (file, line, name) for code, ('~', 0, name) for a
 * built-in. New ref; NULL with an exception set on failure. */
PyObject *prof_label_tuple(PyObject *label);

/* cProfile's name for the built-in fn (normalizeUserObj in _lsprof.c),
 * without addresses, made once per PyMethodDef and kept for the process's
 * life. New ref, or NULL (an exception may be left set: the caller clears
 * it). */
PyObject *prof_label_builtin(PyCFunctionObject *fn);

#endif
