/* export_pstats.h — a call tree in cProfile's own format: the marshalled
 * stats dict that pstats.Stats and snakeviz load, the other formats being
 * in export.h. Labels are Python objects: GIL held. */
#ifndef PROF_EXPORT_PSTATS_H
#define PROF_EXPORT_PSTATS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#include "profiler/calltree.h"

/* marshal.dumps of {func: (cc, nc, tt, ct, callers)}, as
 * cProfile.Profile.snapshot_stats makes it; malloc'd, NULL on error (no
 * exception left set). */
char *prof_export_pstats(const struct prof_tree *t, size_t *len);

#endif
