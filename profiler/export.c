/* export.c — see export.h. Collapsed stacks and speedscope come straight
 * from the call tree, in nanoseconds (whole microseconds rounded the many
 * sub-microsecond paths to nothing): collapsed stacks a line per path with
 * its inline time, speedscope an open and a close event per node;
 * callgrind comes from the flat view, each function with its inline cost
 * and, per callee, the call count and inclusive cost (nanoseconds). */
#include "profiler/export.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "profiler/text.h"

/* str itself when it has a UTF-8 form, else a copy in which what has none
 * (lone surrogates) is backslash-escaped. New ref, or NULL (no exception
 * left set). */
static PyObject *printable(PyObject *str)
{
    if (!str || !PyUnicode_Check(str))
        return NULL;
    if (PyUnicode_AsUTF8(str))
        return Py_NewRef(str);
    PyErr_Clear();
    PyObject *bytes = PyUnicode_AsEncodedString(str, "utf-8", "backslashreplace"); /* new ref */
    PyObject *r = bytes ? PyUnicode_DecodeUTF8(PyBytes_AS_STRING(bytes),
                                               PyBytes_GET_SIZE(bytes), NULL) : NULL;
    Py_XDECREF(bytes);
    PyErr_Clear();
    return r;
}

/* printable(attribute name of obj): new ref or NULL. */
static PyObject *printable_attr(PyObject *obj, const char *name)
{
    PyObject *v = PyObject_GetAttrString(obj, name); /* new ref */
    PyObject *r = printable(v);
    Py_XDECREF(v);
    PyErr_Clear();
    return r;
}

/* The UTF-8 of a printable() result, or "?" without one. */
static const char *utf8_or_unknown(PyObject *printable_str)
{
    const char *s = printable_str ? PyUnicode_AsUTF8(printable_str) : NULL;
    return s ? s : "?";
}

void prof_label_text(PyObject *label, struct prof_label_text *out)
{
    memset(out, 0, sizeof(*out));
    if (!label || PyUnicode_Check(label)) { /* a built-in: named by its string */
        out->file = "~";
        out->owned_name = printable(label);
    } else {
        out->owned_file = printable_attr(label, "co_filename");
        out->owned_name = printable_attr(label, "co_name");
        PyObject *line = PyObject_GetAttrString(label, "co_firstlineno"); /* new ref */
        out->line = line ? PyLong_AsLong(line) : 0;
        Py_XDECREF(line);
        out->file = utf8_or_unknown(out->owned_file);
    }
    out->name = utf8_or_unknown(out->owned_name);
    PyErr_Clear();
}

void prof_label_text_free(struct prof_label_text *lt)
{
    Py_CLEAR(lt->owned_file);
    Py_CLEAR(lt->owned_name);
}

PyObject *prof_frame_name(PyObject *label)
{
    if (!label)
        return PyUnicode_FromString("?");
    if (PyUnicode_Check(label))
        return printable(label);
    struct prof_label_text lt;
    prof_label_text(label, &lt);
    PyObject *r = PyUnicode_FromFormat("%s (%s:%ld)", lt.name, lt.file, lt.line);
    prof_label_text_free(&lt);
    PyErr_Clear();
    return r;
}

/* --- collapsed stacks ---------------------------------------------------- */

struct walk {
    struct prof_text text;
    const char **names;          /* the current path, UTF-8 (borrowed from names_owned) */
    PyObject **names_owned;
    size_t depth, cap;
    bool too_large;              /* the text passed PROF_COLLAPSED_MAX */
};

static int push_name(struct walk *w, PyObject *label)
{
    if (w->depth == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        const char **n = realloc(w->names, cap * sizeof(*n));
        PyObject **o = n ? realloc(w->names_owned, cap * sizeof(*o)) : NULL;
        if (n)
            w->names = n;
        if (!n || !o)
            return -1;
        w->names_owned = o;
        w->cap = cap;
    }
    PyObject *name = prof_frame_name(label);
    const char *utf8 = name ? PyUnicode_AsUTF8(name) : NULL;
    if (!utf8) {
        Py_XDECREF(name);
        PyErr_Clear();
        return -1;
    }
    w->names_owned[w->depth] = name;
    w->names[w->depth++] = utf8;
    return 0;
}

static void pop_name(struct walk *w)
{
    Py_DECREF(w->names_owned[--w->depth]);
}

/* One line: the path in w->names and its time. */
static void emit_collapsed(struct walk *w, uint64_t ns)
{
    for (size_t i = 0; i < w->depth; i++) {
        if (i)
            prof_text_add(&w->text, ";");
        prof_text_escaped(&w->text, w->names[i], PROF_ESC_STACK);
    }
    prof_text_add(&w->text, " %llu\n", (unsigned long long)ns);
    if (w->text.len > PROF_COLLAPSED_MAX)
        w->too_large = w->text.failed = true;
}

/* A line for every call path whose last frame has inline time, or ends
 * there (a leaf, however short: every function called shows). */
static void walk_paths(struct walk *w, const struct prof_node *root)
{
    struct prof_walk at;
    prof_walk_children(&at, root);
    while (!w->text.failed && prof_walk_next(&at)) {
        const struct prof_node *n = at.node;
        if (at.leaving) {
            pop_name(w);
            continue;
        }
        if (push_name(w, n->label) < 0) {
            w->text.failed = true;
            return;
        }
        if (n->inline_ns > 0 || (!n->child && n->calls > 0))
            emit_collapsed(w, n->inline_ns);
    }
}

char *prof_export_collapsed(const struct prof_tree *t, size_t *len)
{
    struct walk w = { 0 };
    walk_paths(&w, &t->root);
    while (w.depth)
        pop_name(&w);
    free(w.names);
    free(w.names_owned);
    if (!w.text.p && !w.text.failed)
        prof_text_add(&w.text, "%s", ""); /* an empty profile is an empty file */
    char *out = prof_text_finish_len(&w.text, len);
    if (w.too_large)
        errno = EFBIG;
    return out;
}

/* --- speedscope ------------------------------------------------------------ */

/* The frame index of label's name in frames (added if new, its index kept
 * in index): -1 on out of memory. */
static long frame_of(PyObject *label, PyObject *index, PyObject *frames)
{
    PyObject *name = prof_frame_name(label); /* new ref */
    PyObject *ix = name ? PyDict_GetItemWithError(index, name) : NULL; /* borrowed */
    long id = ix ? PyLong_AsLong(ix) : (long)PyList_GET_SIZE(frames);
    if (name && !ix && !PyErr_Occurred()) {
        PyObject *v = PyLong_FromLong(id);
        if (!v || PyDict_SetItem(index, name, v) < 0 || PyList_Append(frames, name) < 0)
            id = -1;
        Py_XDECREF(v);
    }
    if (!name || PyErr_Occurred())
        id = -1;
    Py_XDECREF(name);
    PyErr_Clear();
    return id;
}

/* A frame open on the walk's path: its frame index, when it opened, and
 * where its next child opens (after the children so far). */
struct open_frame {
    long frame;
    uint64_t at, next_child_at;
};

/* The tree as speedscope's evented profile, on a made-up timeline: each
 * node opens where its previous sibling closed (its parent's opening for
 * the first) and stays open for its inclusive time, so its own time is its
 * inline time. One open and one close event per node: linear in the tree. */
static uint64_t add_events(struct prof_text *events, const struct prof_tree *t, PyObject *index,
                           PyObject *frames)
{
    struct open_frame *path = NULL, root = { 0 };
    size_t cap = 0;
    struct prof_walk w;
    prof_walk_children(&w, &t->root);
    while (!events->failed && prof_walk_next(&w)) {
        if (w.depth >= cap) {
            size_t c = cap ? cap * 2 : 64;
            struct open_frame *p = realloc(path, c * sizeof(*p));
            if (!p) {
                events->failed = true;
                break;
            }
            path = p, cap = c;
        }
        struct open_frame *f = &path[w.depth], *parent = w.depth ? &path[w.depth - 1] : &root;
        if (!w.leaving) {
            f->frame = frame_of(w.node->label, index, frames);
            f->at = f->next_child_at = parent->next_child_at;
            events->failed |= f->frame < 0;
            prof_text_add(events, "%s{\"type\":\"O\",\"frame\":%ld,\"at\":%llu}",
                          events->len ? "," : "", f->frame, (unsigned long long)f->at);
            continue;
        }
        uint64_t close = f->at + w.node->total_ns; /* never before its children closed */
        if (close < f->next_child_at)
            close = f->next_child_at;
        prof_text_add(events, ",{\"type\":\"C\",\"frame\":%ld,\"at\":%llu}", f->frame,
                      (unsigned long long)close);
        parent->next_child_at = close;
    }
    free(path);
    return root.next_child_at;
}

char *prof_export_speedscope(const struct prof_tree *t, size_t *len)
{
    struct prof_text out = { 0 }, events = { 0 };
    PyObject *index = PyDict_New(), *frames = PyList_New(0); /* new refs */
    uint64_t end = index && frames ? add_events(&events, t, index, frames) : 0;
    out.failed = !index || !frames || events.failed;
    prof_text_add(&out, "{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\","
                        "\"exporter\":\"tracfront\",\"name\":\"tracfront profile\","
                        "\"shared\":{\"frames\":[");
    for (Py_ssize_t i = 0; frames && i < PyList_GET_SIZE(frames); i++) {
        const char *name = PyUnicode_AsUTF8(PyList_GET_ITEM(frames, i));
        prof_text_add(&out, "%s{\"name\":\"", i ? "," : "");
        prof_text_escaped(&out, name ? name : "?", PROF_ESC_JSON);
        prof_text_add(&out, "\"}");
    }
    prof_text_add(&out, "]},\"profiles\":[{\"type\":\"evented\",\"name\":\"accumulated\","
                        "\"unit\":\"nanoseconds\",\"startValue\":0,\"endValue\":%llu,"
                        "\"events\":[", (unsigned long long)end);
    prof_text_put(&out, events.p ? events.p : "", events.len);
    prof_text_add(&out, "]}]}\n");
    free(events.p);
    Py_XDECREF(index);
    Py_XDECREF(frames);
    PyErr_Clear();
    return prof_text_finish_len(&out, len);
}

/* --- callgrind ----------------------------------------------------------- */

/* fl= and fn= of a function (cfl=, cfn= of a callee, with prefix "c"). The
 * readers merge functions by fn=, and a file may hold several run, __init__
 * or <lambda>: fn= is the name with its file and first line, as
 * pyprof2calltree writes it ("run app.py:4"). A built-in is its name. */
static void add_position(struct prof_text *t, const char *prefix, const struct prof_label_text *lt)
{
    prof_text_add(t, "%sfl=", prefix);
    prof_text_escaped(t, lt->file, PROF_ESC_LINE);
    prof_text_add(t, "\n%sfn=", prefix);
    prof_text_escaped(t, lt->name, PROF_ESC_LINE);
    if (strcmp(lt->file, "~") != 0) {
        prof_text_add(t, " ");
        prof_text_escaped(t, lt->file, PROF_ESC_LINE);
        prof_text_add(t, ":%ld", lt->line);
    }
    prof_text_add(t, "\n");
}

char *prof_export_callgrind(const struct prof_tree *t, size_t *len)
{
    struct prof_text out = { 0 };
    struct prof_flat *flat = prof_tree_flatten(t);
    if (!flat)
        return NULL;
    uint64_t total = 0;
    for (size_t i = 0; i < flat->n_entries; i++)
        total += flat->entries[i].inline_ns;
    prof_text_add(&out, "# callgrind format\nversion: 1\ncreator: tracfront\n"
                        "positions: line\nevents: Nanoseconds\nsummary: %llu\n\n",
                  (unsigned long long)total);
    for (size_t i = 0; i < flat->n_entries; i++) {
        const struct prof_flat_entry *e = &flat->entries[i];
        struct prof_label_text lt;
        prof_label_text(e->label, &lt);
        add_position(&out, "", &lt);
        prof_text_add(&out, "%ld %llu\n", lt.line, (unsigned long long)e->inline_ns);
        for (size_t k = 0; k < e->n_callees; k++) { /* the calls it makes */
            const struct prof_flat_caller *c = e->callees[k].edge;
            struct prof_label_text clt;
            prof_label_text(flat->entries[e->callees[k].entry].label, &clt);
            add_position(&out, "c", &clt);
            prof_text_add(&out, "calls=%llu %ld\n%ld %llu\n", (unsigned long long)c->calls,
                          clt.line, lt.line, (unsigned long long)c->total_ns);
            prof_label_text_free(&clt);
        }
        prof_text_add(&out, "\n");
        prof_label_text_free(&lt);
    }
    prof_flat_free(flat);
    return prof_text_finish_len(&out, len);
}
