/* label.c — see label.h: the ops the trees hold labels with, and the
 * names of built-ins, made once per PyMethodDef. Called from inside the
 * profiling hook, which saves and restores the app's exception around it. */
#include "profiler/label.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *label_copy(void *l)
{
    Py_XINCREF((PyObject *)l);
    return l;
}

static void label_release(void *l)
{
    Py_XDECREF((PyObject *)l);
}

PyObject *prof_label_tuple(PyObject *label)
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

/* Labels name one function when their prof_label_tuple()s are equal: the
 * reports add such entries up (see prof_label_ops). No exception left set. */
static uint64_t label_hash(void *l)
{
    PyObject *name = prof_label_tuple(l);
    Py_hash_t h = name ? PyObject_Hash(name) : 0;
    Py_XDECREF(name);
    PyErr_Clear();
    return (uint64_t)h;
}

static bool label_same(void *a, void *b)
{
    if (a == b)
        return true;
    PyObject *x = prof_label_tuple(a), *y = prof_label_tuple(b);
    bool same = x && y && PyObject_RichCompareBool(x, y, Py_EQ) == 1;
    Py_XDECREF(x);
    Py_XDECREF(y);
    PyErr_Clear();
    return same;
}

/* --- one key per function --------------------------------------------------
 * A tree's keys are code objects, and built-ins' tagged method definitions
 * (prof_label_builtin_key), and in a tree read back from text (treeio.c)
 * label tuples. Code compiled again for each request (exec of a string, as
 * repoze.profile's cProfile.runctx does; a template compiled per render) is
 * a new code object each time, with the label of the last: it takes the
 * first one's key, so its calls follow the same path. first_code maps a
 * label to that first code object; it holds a reference, so a key's
 * address is never reused while the map has it, and every node keyed by it
 * holds one too (its label is its key). At most key_cap labels (the node
 * cap: a node per label at least): past it, new labels keep their own keys.
 * Live functions that share a label (every namedtuple's __new__,
 * <string>:1(<lambda>)) are asked for again on each call, as their key is
 * never a node's: aliases remembers the last few, with a reference to each
 * (so that its address stays its own), until the next sweep. GIL held.
 * Dropping a code object's last reference can run Python (a weak
 * reference's callback), which can let other threads run, and they use
 * this state: a reference is only dropped once the state is whole again
 * (evicted aliases wait in evicted until prof_label_release_evicted). */
static PyObject *first_code;
static PyObject *evicted; /* a list, or NULL */
/* A long request's evictions: past it, no alias is remembered until the
 * request ends (only then are they let go: Python that dropping one runs
 * must not run inside a tree's enter). */
enum { EVICTED_MAX = 1024 };
static Py_ssize_t key_cap = 200000;
enum { ALIASES = 256 };
static struct {
    PyObject *code;        /* owned */
    const void *canonical; /* first_code's */
} aliases[ALIASES];

static size_t alias_slot(const void *code)
{
    uint64_t h = (uint64_t)(uintptr_t)code * 0x9E3779B97F4A7C15u;
    return (size_t)(h >> 56) & (ALIASES - 1);
}

/* The first code object of code's label, added to the map if it has room;
 * code itself if it is the first, or past the cap, or without memory. */
static const void *first_of_label(PyObject *code)
{
    const void *canonical = code;
    int gc_was_on = PyGC_Disable(); /* no collection, no finalizer re-entering the tree */
    PyObject *name = prof_label_tuple(code), *first = NULL;
    if (name && (first_code || (first_code = PyDict_New())))
        first = PyDict_GET_SIZE(first_code) < key_cap
                    ? PyDict_SetDefault(first_code, name, code) /* borrowed */
                    : PyDict_GetItemWithError(first_code, name);
    if (first)
        canonical = first;
    Py_XDECREF(name);
    if (gc_was_on)
        PyGC_Enable();
    return canonical;
}

static const void *label_canonical(const void *key)
{
    PyObject *code = (PyObject *)key;
    if (((uintptr_t)key & 1) || !PyCode_Check(code))
        return key;
    size_t slot = alias_slot(key);
    if (aliases[slot].code == code)
        return aliases[slot].canonical;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* never disturb the app's exception */
    const void *canonical = first_of_label(code);
    bool room = !evicted || PyList_GET_SIZE(evicted) < EVICTED_MAX;
    if (canonical != key && room) { /* past EVICTED_MAX the slot keeps its alias */
        PyObject *old = aliases[slot].code;
        aliases[slot].code = Py_NewRef(code);
        aliases[slot].canonical = canonical;
        int gc_was_on = PyGC_Disable(); /* PyList_New could collect, and run Python */
        bool kept = old && (evicted || (evicted = PyList_New(0))) &&
                    PyList_Append(evicted, old) == 0;
        if (gc_was_on)
            PyGC_Enable();
        if (kept)
            Py_DECREF(old); /* the list's now: dropped at the request's end */
        else
            Py_XDECREF(old); /* without memory for the list */
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return canonical;
}

void prof_label_configure(size_t max_keys)
{
    key_cap = max_keys < (size_t)PY_SSIZE_T_MAX ? (Py_ssize_t)max_keys : PY_SSIZE_T_MAX;
}

void prof_label_release_evicted(void)
{
    PyObject *list = evicted;
    evicted = NULL; /* detached first: what its drop runs may evict again */
    Py_XDECREF(list);
}

void prof_label_forget_unused(void)
{
    PyObject *type, *value, *tb, *label, *code;
    PyErr_Fetch(&type, &value, &tb);
    /* Everything is taken out first, its references moved to dropped; they
     * are let go at the end, once no alias or map entry points at them.
     * Both lists are made before: making one can collect, and run Python
     * (a finalizer that lets the GIL go), and another thread could then
     * remember an alias of a first code object this is about to drop. */
    PyObject *dropped = PyList_New(0);
    PyObject *unused = dropped && first_code ? PyList_New(0) : NULL;
    for (size_t i = 0; dropped && i < ALIASES; i++) { /* first: they point into the map */
        PyObject *alias = aliases[i].code;
        aliases[i].code = NULL;
        aliases[i].canonical = NULL;
        if (alias && PyList_Append(dropped, alias) < 0)
            Py_CLEAR(dropped); /* below: the rest stay; this one is the list's no more */
        Py_XDECREF(alias);     /* the list has it (or, without memory, it goes now) */
    }
    Py_ssize_t pos = 0;
    while (dropped && unused && PyDict_Next(first_code, &pos, &label, &code))
        if (Py_REFCNT(code) == 1 && PyList_Append(unused, label) < 0) /* only the map's */
            Py_CLEAR(unused);
    for (Py_ssize_t i = 0; dropped && unused && i < PyList_GET_SIZE(unused); i++) {
        PyObject *name = PyList_GET_ITEM(unused, i); /* borrowed: the list keeps it */
        PyObject *first = PyDict_GetItemWithError(first_code, name); /* borrowed */
        if (first && PyList_Append(dropped, first) == 0) /* kept past the delete */
            PyDict_DelItem(first_code, name);
    }
    Py_XDECREF(unused);
    PyObject *waiting = evicted;
    evicted = NULL;
    Py_XDECREF(dropped); /* the state is whole: what this runs may use it */
    Py_XDECREF(waiting);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

const void *prof_label_builtin_key(const PyMethodDef *ml)
{
    return (const char *)ml + 1; /* odd: no code object's address */
}

const struct prof_label_ops prof_python_label_ops = { label_copy, label_release, label_hash,
                                                      label_same, label_canonical };

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

PyObject *prof_label_builtin(PyCFunctionObject *fn)
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
