/* hook.c — see hook.h. The collector: the hook's events build the running
 * request's tree, taken from a pool of spare trees and drained into the
 * accumulated tree (or kept among the slowest) when the request ends. Keys
 * are the code object (Python functions) or the PyMethodDef (built-ins), as
 * in CPython's Modules/_lsprof.c; labels are label.h's. The trees' exports
 * and pages are hook_export.c's (through hook_internal.h). */
#include "profiler/hook.h"

#include <stdlib.h>

#include "profiler/calltree.h"
#include "profiler/clock.h"
#include "profiler/frame_hook.h"
#include "profiler/hook_internal.h"
#include "profiler/label.h"
#include "profiler/latency.h"

struct collector {
    PyObject_HEAD
    uint64_t id;            /* the request's id */
    struct prof_tree *tree; /* from the spare trees; NULL once the request ended */
    PyThreadState *thread;  /* the request's */
    bool misplaced;         /* the app gave the hook back in another call than took it */
    bool paused;            /* prof_hook_pause'd: the thread's events go nowhere meanwhile */
};

/* The slowest profiled requests' own trees (by time in the profiled code). */
struct kept_tree {
    uint64_t id, app_ns;
    bool used;
    struct prof_tree tree;
};

/* Accumulated profile: guarded by the GIL; use prof_hook_accumulated(). */
static struct prof_tree accumulated;
static bool accumulated_ready;
static bool discard_next;
static size_t node_cap = 200000;
static int enabled; /* atomic */
static struct kept_tree *kept; /* guarded by the GIL; kept_cap slots */
static unsigned kept_cap;
/* kept[i]'s request id while it holds a tree, else 0 (ids start at 1):
 * written under the GIL with atomic stores, read without it by
 * copy_kept_ids() for the slowest-requests table. */
static uint64_t *kept_ids;
static bool with_builtins = true; /* PyEval_SetProfile; else the frame hook */
static unsigned collectors_alive; /* guarded by the GIL */

/* Trees for requests to record in, kept drained between requests: a page's
 * calls take the same paths request after request, so a used tree already
 * has their nodes, and each node its twin in the accumulated tree (no
 * allocation, no lookup when merging: about 7% less CPU time per profiled
 * real-Trac page than a fresh tree per request). Guarded by the GIL. The
 * spare trees hold at most a quarter of the node cap between them (a tree
 * that does not fit is freed), and are freed when profiling stops or is
 * cleared: their nodes hold code objects. */
enum { SPARE_TREES_MAX = 16 };
static struct prof_tree *spare_trees[SPARE_TREES_MAX];
static unsigned n_spare_trees;
static size_t spare_nodes;

static struct prof_tree *take_tree(void)
{
    struct prof_tree *t;
    if (n_spare_trees) {
        t = spare_trees[--n_spare_trees];
        spare_nodes -= t->nodes;
    } else if ((t = malloc(sizeof(*t)))) {
        prof_tree_init(t, &prof_python_label_ops, node_cap);
    }
    if (t) /* room for a whole cap of this request's paths, whatever it kept */
        t->max_nodes = t->nodes + node_cap;
    return t;
}

static void free_tree(struct prof_tree *t)
{
    prof_tree_free(t);
    free(t);
}

static void give_back_tree(struct prof_tree *t)
{
    if (n_spare_trees < SPARE_TREES_MAX && spare_nodes + t->nodes <= node_cap / 4) {
        spare_trees[n_spare_trees++] = t;
        spare_nodes += t->nodes;
    } else {
        free_tree(t);
    }
}

static void free_spare_trees(void)
{
    bool freed = n_spare_trees > 0;
    while (n_spare_trees)
        free_tree(spare_trees[--n_spare_trees]);
    spare_nodes = 0;
    if (freed) /* not on every request while profiling is stopped */
        prof_label_forget_unused();
}

struct prof_tree *prof_hook_accumulated(void)
{
    if (!accumulated_ready) {
        prof_tree_init(&accumulated, &prof_python_label_ops, node_cap);
        accumulated_ready = true;
    }
    return &accumulated;
}

/* Any thread, no GIL needed: the ids of the requests whose own call tree is
 * kept now, at most cap of them into ids; returns how many (latency.h's
 * prof_latency_set_tree_ids). */
static size_t copy_kept_ids(uint64_t *ids, size_t cap)
{
    size_t n = 0;
    for (unsigned i = 0; i < kept_cap && n < cap; i++) {
        uint64_t id = __atomic_load_n(&kept_ids[i], __ATOMIC_RELAXED);
        if (id)
            ids[n++] = id;
    }
    return n;
}

void prof_hook_configure(size_t max_nodes, bool discard_first, unsigned keep_slowest,
                         bool builtins, bool cpu_clock)
{
    prof_clock_init();
    prof_clock_use_cpu(cpu_clock);
    with_builtins = builtins;
    node_cap = max_nodes;
    prof_label_configure(max_nodes);
    discard_next = discard_first;
    kept = keep_slowest ? calloc(keep_slowest, sizeof(*kept)) : NULL;
    kept_ids = kept ? calloc(keep_slowest, sizeof(*kept_ids)) : NULL;
    if (!kept_ids) {
        free(kept);
        kept = NULL;
    }
    kept_cap = kept ? keep_slowest : 0;
    prof_latency_set_tree_ids(copy_kept_ids); /* link only the trees kept here */
}

/* GIL held: collectors_alive requests are being profiled at once now. */
static void note_at_once(void)
{
    struct prof_tree *t = prof_hook_accumulated();
    if (collectors_alive > t->most_at_once)
        t->most_at_once = collectors_alive;
}

/* GIL held: copy c's tree if its request is among the slowest. */
static void keep_if_slow(struct collector *c)
{
    uint64_t app_ns = 0;
    for (const struct prof_node *n = c->tree->root.child; n; n = n->sibling)
        app_ns += n->total_ns;
    struct kept_tree *slot = NULL;
    for (unsigned i = 0; i < kept_cap && (!slot || slot->used); i++)
        if (!kept[i].used || !slot || kept[i].app_ns < slot->app_ns)
            slot = &kept[i];
    if (!slot || (slot->used && slot->app_ns >= app_ns))
        return;
    __atomic_store_n(&kept_ids[slot - kept], 0, __ATOMIC_RELAXED);
    struct prof_tree replaced;
    bool had = slot->used;
    if (had) /* freed once the slot is whole again (prof_tree_move) */
        prof_tree_move(&replaced, &slot->tree);
    prof_tree_init(&slot->tree, &prof_python_label_ops, node_cap);
    prof_tree_merge(&slot->tree, c->tree); /* only this request's calls: the rest is drained */
    slot->id = c->id;
    slot->app_ns = app_ns;
    slot->used = true;
    __atomic_store_n(&kept_ids[slot - kept], c->id, __ATOMIC_RELAXED);
    if (had)
        prof_tree_free(&replaced);
}

const struct prof_tree *prof_hook_kept_tree(uint64_t id, uint64_t *app_ns)
{
    for (unsigned i = 0; i < kept_cap; i++)
        if (kept[i].used && kept[i].id == id) {
            *app_ns = kept[i].app_ns;
            return &kept[i].tree;
        }
    return NULL;
}

void prof_hook_enable(bool on)
{
    __atomic_store_n(&enabled, on ? 1 : 0, __ATOMIC_RELAXED);
}

bool prof_hook_enabled(void)
{
    return __atomic_load_n(&enabled, __ATOMIC_RELAXED) != 0;
}

bool prof_hook_profiles_builtins(void)
{
    return with_builtins;
}

static void enter(struct collector *c, const void *key, PyObject *code, PyCFunctionObject *fn)
{
    struct prof_node *n = prof_tree_enter(c->tree, key, prof_clock_ns());
    if (!n || n->label)
        return;
    if (code) { /* the node's key may be an earlier code object of code's function */
        n->label = Py_NewRef((PyObject *)n->key);
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* never disturb the app's exception */
    n->label = prof_label_builtin(fn);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

static int on_event(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    struct collector *c = (struct collector *)obj;
    switch (what) {
    case PyTrace_CALL: {
        PyCodeObject *code = PyFrame_GetCode(frame); /* new ref */
        enter(c, code, (PyObject *)code, NULL);
        Py_DECREF(code);
        break;
    }
    case PyTrace_RETURN:
        prof_tree_leave(c->tree, prof_clock_ns());
        break;
    case PyTrace_C_CALL:
        if (PyCFunction_Check(arg))
            enter(c, prof_label_builtin_key(((PyCFunctionObject *)arg)->m_ml), NULL,
                  (PyCFunctionObject *)arg);
        break;
    case PyTrace_C_RETURN:
    case PyTrace_C_EXCEPTION:
        if (PyCFunction_Check(arg))
            prof_tree_leave(c->tree, prof_clock_ns());
        break;
    default:
        break;
    }
    return 0;
}

/* Do the calls open in c's tree match the thread's frames, frame (borrowed,
 * may be NULL) and its callers, innermost first? A built-in's call has no
 * frame (one is open while it runs Python code: sorted's key=), and the
 * frames below the request's first call are not in the tree. A call past
 * the node cap has no node to tell what it was: no match. Without memory
 * for a frame object, no match either, and no exception left set. */
static bool open_calls_match(const struct collector *c, PyFrameObject *frame)
{
    const struct prof_tree *t = c->tree;
    PyFrameObject *f = (PyFrameObject *)Py_XNewRef(frame);
    bool match = true;
    for (size_t i = t->depth; match && i-- > 0;) {
        const struct prof_node *n = t->stack[i].node;
        if (n && n->label && PyUnicode_Check((PyObject *)n->label))
            continue;
        PyCodeObject *code = f ? PyFrame_GetCode(f) : NULL; /* new ref */
        match = n && code && (n->key == (const void *)code || /* or code compiled again */
                              (n->label && prof_python_label_ops.same(n->label, code)));
        Py_XDECREF(code);
        PyFrameObject *back = f ? PyFrame_GetBack(f) : NULL; /* new ref */
        Py_XDECREF(f);
        f = back;
    }
    Py_XDECREF(f);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        match = false;
    }
    return match;
}

/* collector(frame, event, arg), as the thread calls it when an app gives
 * back what sys.getprofile() gave it (old = sys.getprofile();
 * sys.setprofile(f); ...; sys.setprofile(old)): the C hook is set again, so
 * that the next events come to on_event directly, and this one is passed on.
 * The calls made meanwhile were f's: their time is in the sys.setprofile call
 * that gave the hook away, which is still open if the hook comes back in the
 * call that took it; else the tree's open calls are not the thread's, and
 * the request is left out (prof_hook_end). Called by f itself, a profiler
 * that passes each event on to the one it replaced, it leaves f the hook:
 * the events are passed on, and the request is whole. Borrows its
 * arguments; new ref to None. */
static PyObject *collector_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static const struct {
        const char *name;
        int what;
    } events[] = { { "call", PyTrace_CALL },         { "return", PyTrace_RETURN },
                   { "c_call", PyTrace_C_CALL },     { "c_return", PyTrace_C_RETURN },
                   { "c_exception", PyTrace_C_EXCEPTION } };
    struct collector *c = (struct collector *)self;
    PyThreadState *ts = PyThreadState_Get();
    PyObject *frame, *event, *arg;
    if ((kwargs && PyDict_GET_SIZE(kwargs)) ||
        !PyArg_ParseTuple(args, "O!UO:ProfileCollector", &PyFrame_Type, &frame, &event, &arg)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "ProfileCollector takes (frame, event, arg)");
        return NULL;
    }
    /* only on its request's thread while it runs, as sys.setprofile does */
    if (!with_builtins || !c->tree || c->thread != ts)
        Py_RETURN_NONE;
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        if (PyUnicode_CompareWithASCIIString(event, events[i].name) != 0)
            continue;
        if (ts->c_profileobj == self && ts->c_profilefunc != on_event) { /* given back */
            PyEval_SetProfile(on_event, self);
            PyFrameObject *f = (PyFrameObject *)frame, *caller = NULL;
            if (events[i].what == PyTrace_CALL) /* f is not in the tree yet */
                f = caller = PyFrame_GetBack(f); /* new ref */
            if (!open_calls_match(c, f))
                c->misplaced = true;
            Py_XDECREF(caller);
        }
        on_event(self, (PyFrameObject *)frame, events[i].what, arg);
        break;
    }
    Py_RETURN_NONE;
}

static void collector_dealloc(PyObject *self)
{
    struct collector *c = (struct collector *)self;
    if (c->tree)
        free_tree(c->tree);
    PyObject_Free(self);
}

static PyTypeObject collector_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracfront.ProfileCollector",
    .tp_basicsize = sizeof(struct collector),
    .tp_dealloc = collector_dealloc,
    .tp_call = collector_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

/* GIL held: the calling thread's events go to c (NULL: nowhere). */
static void hook_thread(struct collector *c)
{
    if (!with_builtins)
        prof_frame_hook_set(c ? c->tree : NULL);
    else if (c)
        PyEval_SetProfile(on_event, (PyObject *)c);
    else
        PyEval_SetProfile(NULL, NULL);
}

PyObject *prof_hook_begin(uint64_t id)
{
    if (!prof_hook_enabled()) {
        if (!collectors_alive) { /* profiling was stopped */
            prof_frame_hook_remove();
            free_spare_trees();
        }
        return NULL;
    }
    if (!(collector_type.tp_flags & Py_TPFLAGS_READY) && PyType_Ready(&collector_type) < 0) {
        PyErr_Clear();
        return NULL;
    }
    struct collector *c = PyObject_New(struct collector, &collector_type);
    if (!c) {
        PyErr_Clear();
        return NULL;
    }
    c->id = id;
    c->thread = PyThreadState_Get();
    c->misplaced = false;
    c->paused = false;
    if (!(c->tree = take_tree())) {
        Py_DECREF(c);
        return NULL;
    }
    collectors_alive++;
    note_at_once();
    hook_thread(c);
    return (PyObject *)c;
}

/* GIL held, on c's thread: does the thread still send its events to c, and
 * did c's tree follow the thread's calls? An app that set its own profile
 * function took them (cProfile's enable(), or sys.setprofile(f) and maybe
 * sys.setprofile(None) after); one that gave ours back has them sent to c
 * again (collector_call), unless it gave it back in another call than took
 * it (misplaced). The frame hook cannot be taken. */
static bool hook_kept(const struct collector *c)
{
    const PyThreadState *ts = c->thread;
    return !with_builtins || (ts->c_profilefunc == on_event && ts->c_profileobj == (PyObject *)c &&
                              !c->misplaced);
}

void prof_hook_pause(PyObject *collector)
{
    struct collector *c = (struct collector *)collector;
    if (!c || c->paused || !hook_kept(c))
        return; /* an app that took the hook keeps it: the request is left out anyway */
    hook_thread(NULL);
    c->paused = true;
}

void prof_hook_resume(PyObject *collector)
{
    struct collector *c = (struct collector *)collector;
    if (!c || !c->paused)
        return;
    c->paused = false;
    hook_thread(c);
}

int prof_hook_end(PyObject *collector)
{
    if (!collector)
        return 0;
    struct collector *c = (struct collector *)collector;
    prof_hook_resume(collector);
    bool replaced = !hook_kept(c);
    hook_thread(NULL);
    note_at_once(); /* one that began before a Clear still ran beside the others */
    collectors_alive--;
    uint64_t dropped_before = 0;
    int said = 0;
    prof_tree_unwind(c->tree, prof_clock_ns());
    if (discard_next) {
        discard_next = false; /* the first request pays for imports: drop it */
        prof_tree_drain(NULL, c->tree);
    } else if (replaced) { /* the rest of the request went unseen, charged to the call
                            * that took the hook: leave the request out */
        prof_tree_drain(NULL, c->tree);
        if (prof_hook_accumulated()->requests_left_out++ == 0)
            said = PROF_END_HOOK_REPLACED;
    } else {
        keep_if_slow(c);
        dropped_before = prof_hook_accumulated()->dropped_calls;
        prof_tree_drain(prof_hook_accumulated(), c->tree);
    }
    give_back_tree(c->tree);
    c->tree = NULL;
    if (!collectors_alive && !prof_hook_enabled()) { /* profiling was stopped */
        prof_frame_hook_remove();
        free_spare_trees();
    }
    Py_DECREF(collector);
    prof_label_release_evicted();
    if (!dropped_before && accumulated_ready && accumulated.dropped_calls)
        said |= PROF_END_CAP_REACHED;
    return said;
}

void prof_hook_clear(void)
{
    PyGILState_STATE g = PyGILState_Ensure();
    /* each shared tree is taken out before it is freed (prof_tree_move) */
    struct prof_tree gone;
    if (accumulated_ready) {
        prof_tree_move(&gone, &accumulated);
        accumulated_ready = false;
        prof_tree_free(&gone);
    }
    for (unsigned i = 0; i < kept_cap; i++)
        if (kept[i].used) {
            __atomic_store_n(&kept_ids[i], 0, __ATOMIC_RELAXED);
            prof_tree_move(&gone, &kept[i].tree);
            kept[i].used = false;
            prof_tree_free(&gone);
        }
    free_spare_trees();
    prof_label_forget_unused(); /* the trees that held them are gone */
    PyGILState_Release(g);
}
