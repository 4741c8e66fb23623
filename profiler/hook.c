/* hook.c — see hook.h. Keys are the code object (Python functions) or the
 * PyMethodDef (built-ins), as in CPython's Modules/_lsprof.c; a node's label
 * is the code object itself or the built-in's cProfile name, both strong
 * references released under the GIL. */
#include "profiler/hook.h"

#include <errno.h>
#include <marshal.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>

#include "profiler/calltree.h"
#include "profiler/clock.h"
#include "profiler/export.h"
#include "profiler/flame.h"
#include "profiler/frame_hook.h"
#include "profiler/functable.h"
#include "profiler/latency.h"
#include "profiler/text.h"
#include "profiler/treeio.h"

struct collector {
    PyObject_HEAD
    uint64_t id;            /* the request's id */
    struct prof_tree *tree; /* from the spare trees; NULL once the request ended */
    PyThreadState *thread;  /* the request's */
    bool misplaced;         /* the app gave the hook back in another call than took it */
};

/* The slowest profiled requests' own trees (by time in the profiled code). */
struct kept_tree {
    uint64_t id, app_ns;
    bool used;
    struct prof_tree tree;
};

static void *label_copy(void *l)
{
    Py_XINCREF((PyObject *)l);
    return l;
}

static void label_release(void *l)
{
    Py_XDECREF((PyObject *)l);
}

/* cProfile's label(): (file, line, name) for code, ('~', 0, name) for a
 * built-in. New ref. */
static PyObject *func_label(PyObject *label)
{
    if (PyUnicode_Check(label))
        return Py_BuildValue("(siO)", "~", 0, label);
    PyObject *file = PyObject_GetAttrString(label, "co_filename");
    PyObject *line = PyObject_GetAttrString(label, "co_firstlineno");
    PyObject *name = PyObject_GetAttrString(label, "co_name");
    PyObject *r = file && line && name ? PyTuple_Pack(3, file, line, name) : NULL;
    Py_XDECREF(file);
    Py_XDECREF(line);
    Py_XDECREF(name);
    return r;
}

/* Labels name one function when their func_label()s are equal: the
 * reports add such entries up (see prof_label_ops). No exception left set. */
static uint64_t label_hash(void *l)
{
    PyObject *name = func_label(l);
    Py_hash_t h = name ? PyObject_Hash(name) : 0;
    Py_XDECREF(name);
    PyErr_Clear();
    return (uint64_t)h;
}

static bool label_same(void *a, void *b)
{
    if (a == b)
        return true;
    PyObject *x = func_label(a), *y = func_label(b);
    bool same = x && y && PyObject_RichCompareBool(x, y, Py_EQ) == 1;
    Py_XDECREF(x);
    Py_XDECREF(y);
    PyErr_Clear();
    return same;
}

static const struct prof_label_ops label_ops = { label_copy, label_release, label_hash,
                                                 label_same };

/* Accumulated profile: guarded by the GIL; use accumulated_tree(). */
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
        prof_tree_init(t, &label_ops, node_cap);
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
    while (n_spare_trees)
        free_tree(spare_trees[--n_spare_trees]);
    spare_nodes = 0;
}

/* GIL held: the accumulated tree, initialised on first use. */
static struct prof_tree *accumulated_tree(void)
{
    if (!accumulated_ready) {
        prof_tree_init(&accumulated, &label_ops, node_cap);
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
    struct prof_tree *t = accumulated_tree();
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
    if (slot->used)
        prof_tree_free(&slot->tree);
    prof_tree_init(&slot->tree, &label_ops, node_cap);
    prof_tree_merge(&slot->tree, c->tree); /* only this request's calls: the rest is drained */
    slot->id = c->id;
    slot->app_ns = app_ns;
    slot->used = true;
    __atomic_store_n(&kept_ids[slot - kept], c->id, __ATOMIC_RELAXED);
}

void prof_hook_enable(bool on)
{
    __atomic_store_n(&enabled, on ? 1 : 0, __ATOMIC_RELAXED);
}

bool prof_hook_enabled(void)
{
    return __atomic_load_n(&enabled, __ATOMIC_RELAXED) != 0;
}

/* repr(getattr(type(self), name)) without the private _PyType_Lookup: walk
 * the MRO's dicts as it does. New ref or NULL (no exception left set). */
static PyObject *type_attr_repr(PyObject *self, const char *name)
{
    PyObject *mro = Py_TYPE(self)->tp_mro; /* borrowed */
    PyObject *key = PyUnicode_FromString(name), *found = NULL, *res = NULL;
    if (!key || !mro)
        goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro) && !found; i++) {
        PyObject *dict = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_dict; /* borrowed */
        found = dict ? PyDict_GetItemWithError(dict, key) : NULL;           /* borrowed */
    }
    if (found)
        res = PyObject_Repr(found);
done:
    Py_XDECREF(key);
    PyErr_Clear();
    return res;
}

/* name without a trailing " at 0x...>" (a repr's address): the same
 * function is at another address in each worker process and after each
 * reload, and the front merges its workers' rows by name. Steals name. */
static PyObject *without_address(PyObject *name)
{
    Py_ssize_t len;
    const char *s = name ? PyUnicode_AsUTF8AndSize(name, &len) : NULL;
    if (!s || len < 2 || s[len - 1] != '>') {
        PyErr_Clear();
        return name;
    }
    Py_ssize_t i = len - 1;
    while (i > 0 && isxdigit((unsigned char)s[i - 1]))
        i--;
    if (i == len - 1 || i < 6 || memcmp(s + i - 6, " at 0x", 6) != 0)
        return name;
    /* the address is ASCII: the name's last len - (i - 6) characters are too */
    PyObject *head = PyUnicode_Substring(name, 0, PyUnicode_GET_LENGTH(name) - (len - (i - 6)));
    PyObject *r = head ? PyUnicode_FromFormat("%U>", head) : NULL;
    Py_XDECREF(head);
    Py_DECREF(name);
    return r;
}

/* cProfile's name for a built-in (normalizeUserObj in _lsprof.c), without
 * addresses. New ref. */
static PyObject *builtin_name(PyCFunctionObject *fn)
{
    const char *name = fn->m_ml->ml_name;
    if (fn->m_self == NULL) {
        PyObject *mod = fn->m_module, *modname = NULL;
        if (mod && PyUnicode_Check(mod)) {
            modname = Py_NewRef(mod);
        } else if (mod && PyModule_Check(mod)) {
            modname = PyModule_GetNameObject(mod);
            PyErr_Clear();
        }
        if (modname && PyUnicode_CompareWithASCIIString(modname, "builtins") != 0) {
            PyObject *r = PyUnicode_FromFormat("<%U.%s>", modname, name);
            Py_DECREF(modname);
            return r;
        }
        Py_XDECREF(modname);
        return PyUnicode_FromFormat("<%s>", name);
    }
    PyObject *r = type_attr_repr(fn->m_self, name);
    if (r)
        return without_address(r);
    if (fn->m_module && PyUnicode_Check(fn->m_module))
        return PyUnicode_FromFormat("<built-in method %S.%s>", fn->m_module, name);
    return PyUnicode_FromFormat("<built-in method %s>", name);
}

/* The names of built-ins, made once per key (the PyMethodDef), as _lsprof.c
 * names an entry when it first sees it; without this, every request's tree
 * formatted the same names again (3-4% of a profiled Trac page's CPU time).
 * Open addressing, power-of-two capacity, at most half full; past
 * NAMES_MAX entries names are made per node again. Guarded by the GIL; kept
 * for the process's life, as the method definitions are. */
enum { NAMES_MIN = 256, NAMES_MAX = 1 << 16 };
static struct {
    const void **keys;
    PyObject **names;
    size_t cap, used;
} builtin_names;

static size_t name_slot(const void *key, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9E3779B97F4A7C15u;
    size_t i = (size_t)(h ^ (h >> 29)) & (cap - 1);
    while (builtin_names.keys[i] && builtin_names.keys[i] != key)
        i = (i + 1) & (cap - 1);
    return i;
}

static void remember_name(const void *key, PyObject *name)
{
    if (builtin_names.used >= NAMES_MAX)
        return;
    if (2 * (builtin_names.used + 1) > builtin_names.cap) {
        size_t cap = builtin_names.cap ? 2 * builtin_names.cap : NAMES_MIN;
        const void **keys = calloc(cap, sizeof(*keys));
        PyObject **names = calloc(cap, sizeof(*names));
        if (!keys || !names) {
            free(keys);
            free(names);
            return;
        }
        const void **old_keys = builtin_names.keys;
        PyObject **old_names = builtin_names.names;
        size_t old_cap = builtin_names.cap;
        builtin_names.keys = keys;
        builtin_names.names = names;
        builtin_names.cap = cap;
        for (size_t i = 0; i < old_cap; i++) {
            if (!old_keys[i])
                continue;
            size_t j = name_slot(old_keys[i], cap);
            keys[j] = old_keys[i];
            names[j] = old_names[i];
        }
        free(old_keys);
        free(old_names);
    }
    size_t i = name_slot(key, builtin_names.cap);
    if (builtin_names.keys[i]) /* named meanwhile: builtin_name() can run Python */
        return;
    builtin_names.keys[i] = key;
    builtin_names.names[i] = Py_NewRef(name);
    builtin_names.used++;
}

/* builtin_name(fn) through the cache. New ref, or NULL. */
static PyObject *builtin_label(PyCFunctionObject *fn)
{
    const void *key = fn->m_ml;
    if (builtin_names.cap) {
        size_t i = name_slot(key, builtin_names.cap);
        if (builtin_names.keys[i])
            return Py_NewRef(builtin_names.names[i]);
    }
    PyObject *name = builtin_name(fn);
    if (name)
        remember_name(key, name);
    return name;
}

static void enter(struct collector *c, const void *key, PyObject *code, PyCFunctionObject *fn)
{
    struct prof_node *n = prof_tree_enter(c->tree, key, prof_clock_ns());
    if (!n || n->label)
        return;
    if (code) {
        n->label = Py_NewRef(code);
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* never disturb the app's exception */
    n->label = builtin_label(fn);
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
            enter(c, ((PyCFunctionObject *)arg)->m_ml, NULL, (PyCFunctionObject *)arg);
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
        match = n && code && n->key == (const void *)code;
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

int prof_hook_end(PyObject *collector)
{
    if (!collector)
        return 0;
    struct collector *c = (struct collector *)collector;
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
        if (accumulated_tree()->requests_left_out++ == 0)
            said = PROF_END_HOOK_REPLACED;
    } else {
        keep_if_slow(c);
        dropped_before = accumulated_tree()->dropped_calls;
        prof_tree_drain(accumulated_tree(), c->tree);
    }
    give_back_tree(c->tree);
    c->tree = NULL;
    if (!collectors_alive && !prof_hook_enabled()) { /* profiling was stopped */
        prof_frame_hook_remove();
        free_spare_trees();
    }
    Py_DECREF(collector);
    if (!dropped_before && accumulated_ready && accumulated.dropped_calls)
        said |= PROF_END_CAP_REACHED;
    return said;
}

/* --- pstats ---------------------------------------------------------------- */

/* Add the figures at the head of an earlier value (two counts, then two
 * times: a stats value or a caller's), if there is one (borrowed). */
static void add_earlier(PyObject *earlier, unsigned long long *n1, unsigned long long *n2,
                        double *tt, double *ct)
{
    if (!earlier)
        return;
    *n1 += PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(earlier, 0));
    *n2 += PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(earlier, 1));
    *tt += PyFloat_AsDouble(PyTuple_GET_ITEM(earlier, 2));
    *ct += PyFloat_AsDouble(PyTuple_GET_ITEM(earlier, 3));
}

/* callers[who] = (nc, cc, tt, ct) of one edge, added to what an edge from
 * another function with the same label put there. 0, or -1 with an
 * exception set. */
static int add_caller(PyObject *callers, const struct prof_flat_caller *c)
{
    PyObject *who = func_label(c->caller_label);
    PyObject *earlier = who ? PyDict_GetItemWithError(callers, who) : NULL; /* borrowed */
    unsigned long long nc = c->calls, cc = c->calls - c->reccalls;
    double tt = (double)c->inline_ns / 1e9, ct = (double)c->total_ns / 1e9;
    add_earlier(earlier, &nc, &cc, &tt, &ct);
    PyObject *v = who && !PyErr_Occurred() ? Py_BuildValue("(KKdd)", nc, cc, tt, ct) : NULL;
    int rc = v ? PyDict_SetItem(callers, who, v) : -1;
    Py_XDECREF(who);
    Py_XDECREF(v);
    return rc;
}

/* stats[func] = (cc, nc, tt, ct, callers); callers[f] = (nc, cc, tt, ct),
 * the order cProfile.Profile.snapshot_stats writes. Distinct code objects
 * can share a label (file, line, name): eval and exec make a new one per
 * call, all <string>:1(<module>). Their figures are added together, as the
 * snapshot does for callers and pstats.Stats.add for whole entries; a
 * dict entry must never be overwritten by the last of them. New ref. */
static PyObject *build_stats(const struct prof_flat *flat)
{
    PyObject *stats = PyDict_New();
    for (size_t i = 0; stats && i < flat->n_entries; i++) {
        const struct prof_flat_entry *e = &flat->entries[i];
        PyObject *func = func_label(e->label), *callers = NULL, *value = NULL;
        PyObject *earlier = func ? PyDict_GetItemWithError(stats, func) : NULL; /* borrowed */
        if (func && !PyErr_Occurred())
            callers = earlier ? Py_NewRef(PyTuple_GET_ITEM(earlier, 4)) : PyDict_New();
        for (size_t j = 0; callers && j < e->n_callers; j++)
            if (add_caller(callers, &e->callers[j]) < 0)
                Py_CLEAR(callers);
        unsigned long long cc = e->calls - e->reccalls, nc = e->calls;
        double tt = (double)e->inline_ns / 1e9, ct = (double)e->total_ns / 1e9;
        add_earlier(earlier, &cc, &nc, &tt, &ct);
        if (callers)
            value = Py_BuildValue("(KKddO)", cc, nc, tt, ct, callers);
        if (!value || PyDict_SetItem(stats, func, value) < 0)
            Py_CLEAR(stats);
        Py_XDECREF(func);
        Py_XDECREF(callers);
        Py_XDECREF(value);
    }
    return stats;
}

static char *export_pstats(const struct prof_tree *t, size_t *len)
{
    char *out = NULL;
    struct prof_flat *flat = prof_tree_flatten(t);
    PyObject *stats = flat ? build_stats(flat) : NULL;
    PyObject *bytes = stats ? PyMarshal_WriteObjectToString(stats, Py_MARSHAL_VERSION) : NULL;
    if (bytes && (out = malloc((size_t)PyBytes_GET_SIZE(bytes) + 1))) {
        *len = (size_t)PyBytes_GET_SIZE(bytes);
        memcpy(out, PyBytes_AS_STRING(bytes), *len);
    }
    PyErr_Clear();
    Py_XDECREF(bytes);
    Py_XDECREF(stats);
    prof_flat_free(flat);
    return out;
}

char *prof_hook_export(const char *format, size_t *len)
{
    static const struct {
        const char *name;
        char *(*fn)(const struct prof_tree *t, size_t *len);
    } formats[] = {
        { "pstats", export_pstats },
        { "collapsed", prof_export_collapsed },
        { "speedscope", prof_export_speedscope },
        { "callgrind", prof_export_callgrind },
        { "tree", prof_tree_dump },
    };
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        if (strcmp(format, formats[i].name) != 0)
            continue;
        PyGILState_STATE g = PyGILState_Ensure();
        const struct prof_tree *t = accumulated_tree();
        bool empty = !t->root.child && strcmp(format, "tree") != 0;
        char *out = empty ? calloc(1, 1) : formats[i].fn(t, len);
        int why = errno; /* EFBIG: too large (export.h) */
        if (empty && out)
            *len = 0;
        PyGILState_Release(g);
        errno = why;
        return out;
    }
    return NULL;
}

char *prof_hook_table(const char *query, bool json, const char *profile_path, size_t *len,
                      bool *bad_view)
{
    struct prof_view view;
    prof_view_parse(&view, query);
    *bad_view = view.bad_sort;
    PyGILState_STATE g = PyGILState_Ensure();
    const struct prof_tree *t = accumulated_tree();
    char *out;
    if (json) {
        out = prof_functable_json(t, &view, len, bad_view);
    } else { /* the page: flame graph, then the table */
        size_t flen = 0, tlen = 0;
        char base[4200];
        snprintf(base, sizeof(base), "%s?", profile_path);
        static const char python_only[] =
            "<p><i>Python functions only (--profile-builtins=false): time spent in built-in "
            "calls is their callers' own time.</i></p>";
        static const char python_only_subscr[] =
            "<p><i>Python functions only (--profile-builtins=false): time spent in built-in "
            "calls is their callers' own time. This Python (before 3.11.4) also runs "
            "<code>obj[key]</code> into a Python <code>__getitem__</code> without the hook "
            "(CPython gh-104405): those calls are not counted either. --profile-builtins=true "
            "counts them.</i></p>";
        const char *mode = with_builtins                     ? ""
                           : prof_frame_hook_misses_subscr() ? python_only_subscr
                                                             : python_only;
        struct prof_text page = { 0 };
        prof_text_put(&page, mode, strlen(mode));
        prof_clock_note(&page, t, false);
        char *flame = prof_flame_html(t, view.zoom, base, &flen);
        char *table = prof_functable_html(t, &view, profile_path, &tlen);
        if (flame && table) {
            prof_text_put(&page, flame, flen);
            prof_text_put(&page, table, tlen);
        } else {
            page.failed = true;
        }
        out = prof_text_finish_len(&page, len);
        free(flame);
        free(table);
    }
    PyGILState_Release(g);
    return out;
}

char *prof_hook_request_html(uint64_t id, const char *query, const char *profile_path,
                             size_t *len)
{
    struct prof_view view;
    prof_view_parse(&view, query);
    char *out = NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    for (unsigned i = 0; i < kept_cap; i++) {
        if (!kept[i].used || kept[i].id != id)
            continue;
        char base[4200];
        snprintf(base, sizeof(base), "%s/request?id=%llu&", profile_path, (unsigned long long)id);
        size_t flen = 0;
        char *flame = prof_flame_html(&kept[i].tree, view.zoom, base, &flen);
        struct prof_text t = { 0 };
        prof_text_add(&t, "<!doctype html><meta charset=utf-8><title>tracfront: request %llu"
                          "</title><style>body{font:14px sans-serif}</style><h1>Request %llu: "
                          "%.3f ms in the profiled code</h1><p><a href=\"",
                      (unsigned long long)id, (unsigned long long)id, (double)kept[i].app_ns / 1e6);
        prof_text_escaped(&t, profile_path, PROF_ESC_HTML);
        prof_text_add(&t, "\">back to the profile</a></p>");
        prof_dropped_note(&t, &kept[i].tree);
        prof_text_add(&t, "%s", flame ? flame : "");
        if (!flame)
            t.failed = true;
        free(flame);
        out = prof_text_finish_len(&t, len);
        break;
    }
    PyGILState_Release(g);
    return out;
}

int prof_hook_import(const char *text, size_t len)
{
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = prof_tree_load(accumulated_tree(), text, len);
    PyGILState_Release(g);
    return rc;
}

void prof_hook_clear(void)
{
    PyGILState_STATE g = PyGILState_Ensure();
    if (accumulated_ready)
        prof_tree_free(&accumulated);
    accumulated_ready = false;
    for (unsigned i = 0; i < kept_cap; i++)
        if (kept[i].used) {
            __atomic_store_n(&kept_ids[i], 0, __ATOMIC_RELAXED);
            prof_tree_free(&kept[i].tree);
            kept[i].used = false;
        }
    free_spare_trees();
    PyGILState_Release(g);
}
