/* export_pstats.c — see export_pstats.h. Built through the Python objects
 * cProfile itself would build, then marshalled: the figures are the call
 * tree's flat view (calltree.h), its labels named by prof_label_tuple. */
#include "profiler/export_pstats.h"

#include <marshal.h>
#include <stdlib.h>
#include <string.h>

#include "profiler/label.h"

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
    PyObject *who = prof_label_tuple(c->caller_label);
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
        PyObject *func = prof_label_tuple(e->label), *callers = NULL, *value = NULL;
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

char *prof_export_pstats(const struct prof_tree *t, size_t *len)
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
