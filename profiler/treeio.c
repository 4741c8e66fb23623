/* treeio.c — see treeio.h. The text never carries tabs or newlines inside a
 * field: they are replaced by spaces when dumping (PROF_ESC_LINE). */
#include "profiler/treeio.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "profiler/export.h"
#include "profiler/text.h"

/* Version 2 adds the calls past the node cap after the header, version 3
 * then the most requests profiled at once; versions 1 and 2 (without those
 * lines: none) are still read. */
#define DUMP_HEADER "tracfront-tree 3\n"
#define DUMP_HEADER_V2 "tracfront-tree 2\n"
#define DUMP_HEADER_V1 "tracfront-tree 1\n"

/* file, line and name of a label: a code object (or a stand-in) or a str. */
static void add_label(struct prof_text *t, PyObject *label)
{
    struct prof_label_text lt;
    prof_label_text(label, &lt);
    prof_text_escaped(t, lt.file, PROF_ESC_LINE);
    prof_text_add(t, "\t%ld\t", lt.line);
    prof_text_escaped(t, lt.name, PROF_ESC_LINE);
    prof_label_text_free(&lt);
}

static void dump_children(struct prof_text *t, const struct prof_node *root)
{
    struct prof_walk w;
    prof_walk_children(&w, root);
    while (prof_walk_next(&w)) {
        const struct prof_node *n = w.node;
        if (w.leaving)
            continue;
        prof_text_add(t, "%u\t%llu\t%llu\t%llu\t", w.depth + 1, (unsigned long long)n->calls,
                      (unsigned long long)n->total_ns, (unsigned long long)n->inline_ns);
        add_label(t, n->label);
        prof_text_add(t, "\n");
    }
}

char *prof_tree_dump(const struct prof_tree *t, size_t *len)
{
    struct prof_text text = { 0 };
    prof_text_add(&text, DUMP_HEADER "dropped\t%llu\nat_once\t%u\n",
                  (unsigned long long)t->dropped_calls, t->most_at_once);
    dump_children(&text, &t->root);
    return prof_text_finish_len(&text, len);
}

/* One label object per (file, line, name), kept for the process: its
 * address is the key, the same in every tree loaded here. New ref. */
static PyObject *interned_label(const char *file, long line, const char *name)
{
    static PyObject *labels, *namespace_type;
    if (!labels && !(labels = PyDict_New()))
        return NULL;
    PyObject *key = Py_BuildValue("(sls)", file, line, name);
    PyObject *label = key ? PyDict_GetItemWithError(labels, key) : NULL; /* borrowed */
    if (label || !key) {
        Py_XDECREF(key);
        return Py_XNewRef(label);
    }
    if (!strcmp(file, "~") && line == 0) { /* a built-in: named by its string */
        label = PyUnicode_FromString(name);
    } else {
        if (!namespace_type) {
            PyObject *types = PyImport_ImportModule("types");
            namespace_type = types ? PyObject_GetAttrString(types, "SimpleNamespace") : NULL;
            Py_XDECREF(types);
        }
        PyObject *kw = namespace_type ? Py_BuildValue("{s:s,s:l,s:s}", "co_filename", file,
                                                      "co_firstlineno", line, "co_name", name)
                                      : NULL;
        PyObject *no_args = kw ? PyTuple_New(0) : NULL;
        label = no_args ? PyObject_Call(namespace_type, no_args, kw) : NULL;
        Py_XDECREF(no_args);
        Py_XDECREF(kw);
    }
    if (label && PyDict_SetItem(labels, key, label) < 0)
        Py_CLEAR(label);
    Py_DECREF(key);
    return label;
}

struct parsed {
    unsigned depth;
    unsigned long long calls, total_ns, inline_ns;
    long line;
    char *file, *name; /* inside the line buffer */
};

static int parse_line(char *line, struct parsed *p)
{
    char *fields[7], *rest = line;
    int n = 0;
    while (rest && n < 7) /* strsep: an empty field (an empty file name) stays a field */
        fields[n++] = strsep(&rest, "\t");
    if (n != 7 || rest)
        return -1;
    p->depth = (unsigned)strtoul(fields[0], NULL, 10);
    p->calls = strtoull(fields[1], NULL, 10);
    p->total_ns = strtoull(fields[2], NULL, 10);
    p->inline_ns = strtoull(fields[3], NULL, 10);
    p->file = fields[4];
    p->line = strtol(fields[5], NULL, 10);
    p->name = fields[6];
    return p->depth >= 1 ? 0 : -1;
}

/* A header line "name\t<number>": the number, or -1 when line is not one. */
static long long header_number(const char *line, const char *name)
{
    size_t n = strlen(name);
    char *end = NULL;
    unsigned long long v = 0;
    if (line && !strncmp(line, name, n) && line[n] == '\t' && line[n + 1] >= '0' &&
        line[n + 1] <= '9')
        v = strtoull(line + n + 1, &end, 10);
    return end && !*end && v <= LLONG_MAX ? (long long)v : -1;
}

int prof_tree_load(struct prof_tree *t, const char *text, size_t len)
{
    size_t hlen = strlen(DUMP_HEADER);
    int version = len < hlen                                   ? 0
                  : memcmp(text, DUMP_HEADER, hlen) == 0    ? 3
                  : memcmp(text, DUMP_HEADER_V2, hlen) == 0 ? 2
                  : memcmp(text, DUMP_HEADER_V1, hlen) == 0 ? 1
                                                            : 0;
    if (!version)
        return -1;
    char *copy = strndup(text + hlen, len - hlen), *save = NULL;
    struct prof_node **path = NULL; /* path[d - 1]: the last node read at depth d */
    size_t cap = 0;
    unsigned previous = 0; /* a node is at most one level below the one before it */
    bool past_cap = false;
    int rc = copy ? 0 : -1;
    char *line = copy ? strtok_r(copy, "\n", &save) : NULL;
    if (version >= 2 && line) { /* "dropped\t<calls>" */
        long long dropped = header_number(line, "dropped");
        rc = dropped < 0 ? -1 : 0;
        t->dropped_calls += dropped < 0 ? 0 : (uint64_t)dropped;
        line = strtok_r(NULL, "\n", &save);
    }
    if (version >= 3 && line && rc == 0) { /* "at_once\t<requests>" */
        long long at_once = header_number(line, "at_once");
        rc = at_once < 0 || at_once > UINT_MAX ? -1 : 0;
        if (rc == 0 && (unsigned)at_once > t->most_at_once)
            t->most_at_once = (unsigned)at_once;
        line = strtok_r(NULL, "\n", &save);
    }
    for (; line && rc == 0; line = strtok_r(NULL, "\n", &save)) {
        struct parsed p;
        if (parse_line(line, &p) < 0 || p.depth > previous + 1) {
            rc = -1;
            break;
        }
        if (p.depth > cap) {
            struct prof_node **grown = realloc(path, (cap + 64) * sizeof(*grown));
            if (!grown) {
                rc = -1;
                break;
            }
            path = grown;
            cap += 64;
        }
        struct prof_node *parent = p.depth == 1 ? &t->root : path[p.depth - 2];
        PyObject *label = parent ? interned_label(p.file, p.line, p.name) : NULL;
        struct prof_node *n = label ? prof_tree_child(t, parent, label) : NULL;
        if (n && !n->label)
            n->label = t->ops->copy(label);
        Py_XDECREF(label);
        PyErr_Clear();
        if (n) {
            n->calls += p.calls;
            n->total_ns += p.total_ns;
            n->inline_ns += p.inline_ns;
        } else {
            t->dropped_calls += p.calls;
            past_cap = past_cap || (label && t->nodes >= t->max_nodes);
        }
        path[p.depth - 1] = n; /* NULL: its children are dropped too */
        previous = p.depth;
    }
    free(path);
    free(copy);
    return rc < 0 ? rc : past_cap;
}
