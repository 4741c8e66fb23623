/* frame_hook.c — see frame_hook.h. The hook stops CPython 3.11 from running
 * a Python-to-Python call inside the caller's C frame: each call becomes a
 * C call, so recursion that runs unprofiled in a few frames' worth of C
 * stack takes some hundreds of bytes per level here. Past the C stack the
 * process dies (an app may raise the recursion limit far beyond it), so
 * a call that finds too little of its thread's stack left raises
 * RecursionError instead. */
#define _GNU_SOURCE /* pthread_getattr_np */
#include "profiler/frame_hook.h"

#include <pthread.h>
#include <stdint.h>

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

/* This thread's stack: [stack_low, stack_high) (it grows down; stack_high 1
 * once its bounds cannot be had: no check), and the lowest address a profiled
 * call may start at: stack_low plus a reserve for what runs without a Python
 * call in between (C code, the error path), 0 for no check. The reserve is a
 * share of the space below the highest call seen on the thread, not of the
 * whole size: glibc puts a thread's static TLS at its stack's top, inside the
 * size pthread_getattr_np gives (a few KiB; ThreadSanitizer's state took 770
 * KiB of a 900 KiB stack, and a floor from the size refused every frame);
 * and the highest seen, not the first: a thread already deep when the hook
 * was set would keep a floor from there (none at all within 32 KiB of the
 * end) after it unwound. The whole size, for the message. */
static _Thread_local uintptr_t stack_low, stack_high, stack_top_seen, stack_floor;
static _Thread_local size_t stack_size;

enum { STACK_RESERVE_MIN = 256 * 1024, SMALL_STACK_RESERVE_MIN = 16 * 1024 };

/* An eighth of a stack of 2 MiB or more; at most 256 KiB and a quarter of a
 * smaller one (threading.stack_size() may ask for 32 KiB), at least 16 KiB. */
static size_t stack_reserve(size_t size)
{
    size_t small = size / 4 < STACK_RESERVE_MIN ? size / 4 : STACK_RESERVE_MIN;
    if (small < SMALL_STACK_RESERVE_MIN)
        small = SMALL_STACK_RESERVE_MIN;
    return size / 8 > small ? size / 8 : small;
}

static void find_stack_bounds(void)
{
    pthread_attr_t attr;
    void *low;
    size_t size;
    stack_high = 1;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        return;
    if (pthread_attr_getstack(&attr, &low, &size) == 0) {
        stack_low = (uintptr_t)low;
        stack_high = stack_low + size;
        stack_size = size;
    }
    pthread_attr_destroy(&attr);
}

/* Is the caller's frame below this thread's floor? A frame higher than any
 * seen before (the first one too) sets the floor again; one outside the
 * thread's stack (a stack of the app's own making) is not checked. */
static bool stack_nearly_used(void)
{
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    if (here > stack_top_seen) {
        if (!stack_high)
            find_stack_bounds();
        if (here >= stack_high || here < stack_low)
            return false;
        stack_top_seen = here;
        size_t free_below = here - stack_low, reserve = stack_reserve(free_below);
        stack_floor = free_below >= 2 * reserve ? stack_low + reserve : 0; /* else too small */
    }
    return here < stack_floor && here >= stack_low;
}

/* Refuse a frame, as CPython 3.11 refuses one past its recursion limit: the
 * exception set (replacing one a generator's throw() brought) and NULL,
 * the frame not run, so no trace or profile event and a generator's except
 * and finally clauses untouched (evaluating it with the error thrown in ran
 * them at the stack's edge, and they could catch it and yield). The eval
 * function's callers take NULL as from a frame that raised: _PyEval_Vector
 * clears and pops the frame, gen_send_ex2 marks the generator finished
 * and clears its frame. */
static PyObject *refuse_frame(void)
{
    PyErr_Format(PyExc_RecursionError,
                 "maximum recursion depth exceeded: under tracfront's profiler "
                 "(--profile-builtins=false) each Python call uses C stack, and this thread's "
                 "C stack (%zu KiB) is the limit",
                 stack_size / 1024);
    return NULL;
}

enum { LAZY_FLAGS = CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR };

/* A generator function's call only builds the generator (its frame is still
 * the caller's); the body runs, and is counted, on each resumption, when the
 * generator owns the frame. cProfile counts the same events. */
static PyObject *eval_frame(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    struct prof_tree *t = thread_tree;
    PyCodeObject *code = f->f_code;
    if (stack_nearly_used()) /* every thread's calls come here while the hook is set */
        return refuse_frame();
    if (!t || ((code->co_flags & LAZY_FLAGS) && f->owner != FRAME_OWNED_BY_GENERATOR))
        return _PyEval_EvalFrameDefault(ts, f, throwflag);
    struct prof_node *n = prof_tree_enter(t, code, prof_clock_ns());
    if (n && !n->label) /* its key may be an earlier code object of code's function */
        n->label = Py_NewRef((PyObject *)n->key);
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

bool prof_setprofile_may_crash(void)
{
    return Py_Version >= 0x030B00A0 && Py_Version < 0x030B03F0;
}
