/* export.h — the accumulated function profile in the formats other tools
 * read: collapsed stacks (flamegraph.pl), speedscope JSON, and callgrind
 * (KCachegrind, QCachegrind, callgrind_annotate); pstats lives in
 * export_pstats.h. Labels are Python objects, so every function here runs
 * with the GIL held; results are malloc'd text, NULL on error (errno EFBIG:
 * too large). */
#ifndef PROF_EXPORT_H
#define PROF_EXPORT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#include "profiler/calltree.h"

/* A node's label as text: file ("~" for a built-in), first line (0 for a
 * built-in) and name, as UTF-8 valid until prof_label_text_free(). Never
 * fails ("?" for what cannot be had): a name that is not valid Unicode (a
 * lone surrogate, as os.fsdecode makes of a file name that is not UTF-8)
 * is written with backslash escapes, "caf\udce9.py", so one odd file name
 * cannot fail a whole report. No exception left set. */
struct prof_label_text {
    const char *file, *name;
    long line;
    PyObject *owned_file, *owned_name; /* new refs behind file and name, or NULL */
};
void prof_label_text(PyObject *label, struct prof_label_text *out);
void prof_label_text_free(struct prof_label_text *lt);

/* "name (file:line)" for a code object, the cProfile name for a built-in:
 * how every export and the flame graph name a frame. New ref, or NULL (no
 * exception left set); its PyUnicode_AsUTF8 never fails (names that are not
 * valid Unicode are backslash-escaped, as in prof_label_text). */
PyObject *prof_frame_name(PyObject *label);

/* Collapsed stacks write every path whole, so their size grows with the
 * depth squared (one 5000-deep request: 325 MB). Past this size the export
 * stops: NULL with errno EFBIG. */
#define PROF_COLLAPSED_MAX ((size_t)64 << 20)
char *prof_export_collapsed(const struct prof_tree *t, size_t *len);
/* speedscope's evented profile: an open and a close event per node. */
char *prof_export_speedscope(const struct prof_tree *t, size_t *len);
char *prof_export_callgrind(const struct prof_tree *t, size_t *len);

#endif
