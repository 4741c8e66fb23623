/* frame_hook.c — see frame_hook.h. */
#include "profiler/frame_hook.h"

#include "profiler/clock.h"

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#define Py_BUILD_CORE 1
#include <internal/pycore_frame.h> /* struct _PyInterpreterFrame: f_code, owner */
#undef Py_BUILD_CORE
#define HAVE_FRAME_HOOK 1
#endif

#ifdef HAVE_FRAME_HOOK
static _Thread_local struct prof_tree *thread_tree;
static bool installed; /* guarded by the GIL */

enum { LAZY_FLAGS = CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR };

/* A generator function's call only builds the generator (its frame is still
 * the caller's); the body runs, and is counted, on each resumption, when the
 * generator owns the frame. cProfile counts the same events. */
static PyObject *eval_frame(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    struct prof_tree *t = thread_tree;
    PyCodeObject *code = f->f_code;
    if (!t || ((code->co_flags & LAZY_FLAGS) && f->owner != FRAME_OWNED_BY_GENERATOR))
        return _PyEval_EvalFrameDefault(ts, f, throwflag);
    struct prof_node *n = prof_tree_enter(t, code, prof_clock_ns());
    if (n && !n->label)
        n->label = Py_NewRef(code);
    PyObject *result = _PyEval_EvalFrameDefault(ts, f, throwflag);
    prof_tree_leave(t, prof_clock_ns()); /* t: the tree this call entered */
    return result;
}

bool prof_frame_hook_available(void)
{
    return true;
}

bool prof_frame_hook_misses_subscr(void)
{
    return Py_Version < 0x030B04F0; /* gh-104441 came with 3.11.4 */
}

void prof_frame_hook_set(struct prof_tree *t)
{
    if (t && !installed) {
        _PyInterpreterState_SetEvalFrameFunc(PyInterpreterState_Get(), eval_frame);
        installed = true;
    }
    thread_tree = t;
}

void prof_frame_hook_remove(void)
{
    if (installed) /* the default again: inlined Python-to-Python calls come back */
        _PyInterpreterState_SetEvalFrameFunc(PyInterpreterState_Get(), _PyEval_EvalFrameDefault);
    installed = false;
}
#else
bool prof_frame_hook_available(void)
{
    return false;
}

bool prof_frame_hook_misses_subscr(void)
{
    return false;
}

/* main() refuses --profile-builtins=false here, so these are never asked. */
void prof_frame_hook_set(struct prof_tree *t)
{
    (void)t;
}

void prof_frame_hook_remove(void)
{
}
#endif
