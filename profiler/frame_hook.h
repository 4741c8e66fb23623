/* frame_hook.h — function profiling of Python functions only, through the
 * interpreter's frame-evaluation hook (PEP 523) instead of PyEval_SetProfile.
 *
 * Why: on CPython 3.11 a profile function, even one that does nothing, makes
 * the thread run every bytecode through the tracing path, unspecialised;
 * measured here that alone costs 1.7-2.1x on the Trac-shaped pages. The
 * frame-evaluation hook sees each Python frame start and end (a generator's
 * every resumption, as cProfile counts them) and leaves the specialised
 * interpreter running. It cannot see built-in calls: their time is the
 * caller's own time. Available on CPython 3.11 only (the hook's frame type
 * is internal and changes between versions).
 *
 * The hook is set for the whole interpreter while someone profiles; each app
 * thread says which tree (if any) its frames go to. GIL held for all calls. */
#ifndef PROF_FRAME_HOOK_H
#define PROF_FRAME_HOOK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>

#include "profiler/calltree.h"

/* Whether this build's Python supports the hook. */
bool prof_frame_hook_available(void);
/* Whether the running Python skips the hook for obj[key] into a Python
 * __getitem__ (its specialised BINARY_SUBSCR_GETITEM: CPython gh-104405,
 * fixed in 3.11.4): those calls are then not seen, their time is their
 * caller's own. Only after Python started. */
bool prof_frame_hook_misses_subscr(void);
/* Whether the running Python can crash while any profile function is set
 * (PyEval_SetProfile, as cProfile): CPython 3.11.0 to 3.11.2 leave a frame's
 * stack top stale after its call event, and the garbage collector then
 * visits objects already freed (gh-101975, fixed in 3.11.3). Real Trac 1.6
 * on Debian 12's 3.11.2 dies of it on its first attachment view. The frame
 * hook sends no such event. */
bool prof_setprofile_may_crash(void);
/* The calling thread's Python frames go into t (a node's label is the code
 * object, a strong reference); NULL: this thread is not profiled. Sets the
 * interpreter's hook on first use. */
void prof_frame_hook_set(struct prof_tree *t);
/* No thread profiles any more: give the interpreter its default back. */
void prof_frame_hook_remove(void);

#endif
