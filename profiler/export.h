/* export.h — the accumulated function profile in the formats other tools
 * read: collapsed stacks (flamegraph.pl), speedscope JSON, and callgrind
 * (KCachegrind, QCachegrind, callgrind_annotate). pstats lives in hook.c.
 * Labels are Python objects, so every function here runs with the GIL held;
 * results are malloc'd text, NULL on error. */
#ifndef PROF_EXPORT_H
#define PROF_EXPORT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#include "profiler/calltree.h"

/* "name (file:line)" for a code object, the cProfile name for a built-in:
 * how every export and the flame graph name a frame. New ref, or NULL (no
 * exception left set). */
PyObject *prof_frame_name(PyObject *label);

char *prof_export_collapsed(const struct prof_tree *t, size_t *len);
char *prof_export_speedscope(const struct prof_tree *t, size_t *len);
char *prof_export_callgrind(const struct prof_tree *t, size_t *len);

#endif
