/* calltree.h — a call tree for the function profiler: one node per distinct
 * call path, with exact call counts, inclusive and inline (self) time. Keys
 * are opaque pointers (a code object, a C method's definition) and each node
 * carries an owner label (the Python object naming it), retained and released
 * through prof_label_ops. Nothing here knows Python: the hook feeds events
 * in, and prof_tree_flatten() turns a tree into cProfile's flat statistics
 * (recursive calls counted once in the cumulative time, as cProfile does;
 * a function is a label's name when prof_label_ops says which labels share one).
 * A tree is used by one thread at a time; the owner provides the locking. */
#ifndef PROF_CALLTREE_H
#define PROF_CALLTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct prof_label_ops {
    void *(*copy)(void *label);   /* a new reference to label */
    void (*release)(void *label);
    /* Optional (NULL: a label names only itself). Distinct keys can name
     * one function (a list comprehension in another: two code objects, one
     * file:line(name)), and the reports add such entries up into one row.
     * prof_tree_flatten() then counts a call with an active ancestor of the
     * same name as recursive, so that the row's cumulative time never counts
     * the same time twice. hash must agree with same. */
    uint64_t (*hash)(void *label);
    bool (*same)(void *a, void *b);
    /* Optional (NULL: every key is its own). The key that stands for key in
     * every tree: key itself, or an earlier key of the same function (code
     * compiled again, by exec of a string for each request, names the
     * function the first code object did; each would otherwise add its own
     * copy of its subtree). Asked by prof_tree_enter() only when the parent
     * has no child for key; the node's key is then the one returned. It may
     * run the garbage collector, and so re-enter the tree. */
    const void *(*canonical)(const void *key);
};

struct prof_node {
    const void *key;
    void *label;                  /* owned, through ops */
    struct prof_node *parent, *child, *sibling;
    uint64_t calls;
    uint64_t total_ns;            /* inclusive, summed over every call */
    uint64_t inline_ns;           /* not in sub-calls */
    struct prof_node *twin;       /* this path's node in the tree last drained into */
};

struct prof_frame {
    struct prof_node *node;       /* NULL past the node cap: not attributed */
    uint64_t t0, sub_ns;
};

struct prof_tree {
    struct prof_node root;        /* key NULL: above the first call */
    const struct prof_label_ops *ops;
    struct prof_frame *stack;
    size_t depth, stack_cap;
    size_t nodes, max_nodes;
    uint64_t dropped_calls;       /* calls not recorded because of the cap */
    uint64_t requests_left_out;   /* hook.c: requests whose app took the profile hook */
    unsigned most_at_once;        /* most requests profiled at once into it (hook.c; a
                                   * front's: the most of any worker's) */
    uint64_t id;                  /* unique per init and free: twins are valid for it */
    uint64_t twins_for;           /* the id of the tree this one's twins are in */
    struct prof_node *block;      /* a copy's nodes, one allocation (prof_tree_copy) */
};

void prof_tree_init(struct prof_tree *t, const struct prof_label_ops *ops, size_t max_nodes);
void prof_tree_free(struct prof_tree *t);
/* Move from's nodes into to (uninitialised) and leave from empty, with a new
 * id. A shared tree is moved out before it is freed: freeing drops labels,
 * which can run Python (a weak reference's callback), which lets other
 * threads use the shared tree meanwhile. */
void prof_tree_move(struct prof_tree *to, struct prof_tree *from);

/* to (uninitialised) := a copy of from's nodes, in the same order, each
 * label copied through ops, with from's counts of dropped calls, requests
 * left out and requests at once. Runs nothing but ops->copy. For reading a
 * shared tree where other threads can run meanwhile (an export that makes
 * Python objects): the copy is the reader's alone. Its nodes are one
 * allocation: it is for reading (and prof_tree_free), never for adding
 * nodes to. 0, or -1 without memory (to is then empty). */
int prof_tree_copy(struct prof_tree *to, const struct prof_tree *from);

/* A call to key starts at now (ns). Returns the node, whose label is NULL if
 * it was just created (the caller sets it), or NULL if the cap cut it off or
 * memory ran out (the call is then counted in dropped_calls). */
struct prof_node *prof_tree_enter(struct prof_tree *t, const void *key, uint64_t now);
/* The child of parent for key, made if missing (label NULL: the caller sets
 * it); NULL past the node cap or out of memory. For building a tree from a
 * saved one (another process's). */
struct prof_node *prof_tree_child(struct prof_tree *t, struct prof_node *parent, const void *key);
/* The innermost call returns at now. Ignored with nothing entered. */
void prof_tree_leave(struct prof_tree *t, uint64_t now);
/* Close every open call at now (a request ended with frames still open). */
void prof_tree_unwind(struct prof_tree *t, uint64_t now);

/* Add from's counts into into (same keys; labels copied for new nodes).
 * Nodes without calls carry nothing and are skipped. */
void prof_tree_merge(struct prof_tree *into, const struct prof_tree *from);
/* prof_tree_merge, then zero from's counts, keeping its nodes, so that from
 * can record again without allocating: for a tree used request after
 * request. Each of from's nodes remembers its twin in into, so the next drain
 * into the same tree skips the lookups. into NULL: only zero. No calls may be
 * open in from. */
void prof_tree_drain(struct prof_tree *into, struct prof_tree *from);

/* A walk of a subtree without recursion (a call tree can be as deep as
 * its node cap, far deeper than a thread's stack allows recursing): it
 * follows the parent, child and sibling links, and so takes no memory. Each
 * node is visited twice, entering it and, after everything under it, leaving
 * it. The tree must not change during the walk. */
struct prof_walk {
    const struct prof_node *node; /* the node visited, NULL once done */
    unsigned depth;               /* 0 for the walk's first level */
    bool leaving;                 /* false: entering node; true: its subtree is done */
    bool one, started, skip;      /* (internal) */
};
/* Walk the children of parent and everything under them. */
void prof_walk_children(struct prof_walk *w, const struct prof_node *parent);
/* Walk n (depth 0) and everything under it, not its siblings. */
void prof_walk_subtree(struct prof_walk *w, const struct prof_node *n);
/* Step to the next visit; false at the end. */
bool prof_walk_next(struct prof_walk *w);
/* Entering a node: do not go under it (the next visit is its leaving). */
void prof_walk_skip(struct prof_walk *w);

/* cProfile's flat view. */
struct prof_flat_caller {
    const void *caller_key;
    void *caller_label;           /* borrowed from the tree */
    uint64_t calls, reccalls, total_ns, inline_ns;
};
/* An edge seen from its caller: the callee, and the callee's record of
 * this caller (so walking callees costs what walking callers does). */
struct prof_flat_callee {
    size_t entry;                 /* the callee's index in prof_flat.entries */
    const struct prof_flat_caller *edge;
};
struct prof_flat_entry {
    const void *key;
    void *label;                  /* borrowed from the tree */
    uint64_t calls, reccalls, total_ns, inline_ns;
    size_t function;              /* the index of the first entry of the same name (ops->same),
                                   * its own if none: entries of one name share the active
                                   * counts that tell recursion */
    struct prof_flat_caller *callers;
    size_t n_callers;
    struct prof_flat_callee *callees;
    size_t n_callees;
};
struct prof_flat {
    struct prof_flat_entry *entries;
    size_t n_entries;
    struct prof_flat_caller *callers_block; /* every entry's callers, one allocation */
    struct prof_flat_callee *callees_block; /* and callees */
};
/* NULL on out of memory. Labels are borrowed: free the flat view before the tree. */
struct prof_flat *prof_tree_flatten(const struct prof_tree *t);
void prof_flat_free(struct prof_flat *f);

#endif
