/* calltree.c — see calltree.h. Timing follows cProfile's contexts: a call's
 * inclusive time is charged to its node and to its parent frame's sub-call
 * time; inline time is inclusive minus sub-calls. prof_tree_flatten() walks
 * the tree keeping counts of the functions (and caller->callee pairs) active
 * above each node: a call with an active ancestor of the same function is a
 * recursive call, and its time is already in the outer call's cumulative
 * time, exactly as cProfile's recursionLevel bookkeeping does it. A function
 * is a name here (keys whose labels prof_label_ops calls the same), as the
 * reports add entries up by name: cProfile, keeping one entry per name,
 * counts the same calls as recursive. */
#include "profiler/calltree.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t new_tree_id(void)
{
    static uint64_t last;
    return __atomic_add_fetch(&last, 1, __ATOMIC_RELAXED);
}

void prof_tree_init(struct prof_tree *t, const struct prof_label_ops *ops, size_t max_nodes)
{
    memset(t, 0, sizeof(*t));
    t->ops = ops;
    t->max_nodes = max_nodes;
    t->id = new_tree_id();
}

/* Free everything under n, leaves first: always the first child of a
 * node, so no stack is needed (see struct prof_walk). */
static void free_children(struct prof_tree *t, struct prof_node *n)
{
    struct prof_node *c = n->child;
    while (c) {
        if (c->child) {
            c = c->child;
            continue;
        }
        struct prof_node *p = c->parent;
        p->child = c->sibling;
        if (c->label && t->ops)
            t->ops->release(c->label);
        if (!t->block)
            free(c);
        c = p->child ? p->child : p != n ? p : NULL;
    }
}

void prof_tree_move(struct prof_tree *to, struct prof_tree *from)
{
    *to = *from;
    for (struct prof_node *c = to->root.child; c; c = c->sibling)
        c->parent = &to->root;
    prof_tree_init(from, from->ops, from->max_nodes); /* a new id: twins into it are stale */
}

int prof_tree_copy(struct prof_tree *to, const struct prof_tree *from)
{
    prof_tree_init(to, from->ops, from->max_nodes);
    to->dropped_calls = from->dropped_calls;
    to->requests_left_out = from->requests_left_out;
    to->most_at_once = from->most_at_once;
    if (!from->nodes)
        return 0;
    if (!(to->block = malloc(from->nodes * sizeof(*to->block))))
        return -1;
    /* Entering a node, its copy goes after last under parent, and becomes
     * the parent of what follows (its children, if any); leaving it, the
     * parent is its copy again, and becomes the last of its siblings. */
    struct prof_node *parent = &to->root, *last = NULL;
    struct prof_walk w;
    prof_walk_children(&w, &from->root);
    while (prof_walk_next(&w)) {
        if (w.leaving) {
            last = parent;
            parent = parent->parent;
            continue;
        }
        if (to->nodes == from->nodes) { /* more nodes than counted: never */
            prof_tree_free(to);
            return -1;
        }
        const struct prof_node *n = w.node;
        struct prof_node *c = &to->block[to->nodes++];
        *c = (struct prof_node){ .key = n->key, .parent = parent, .calls = n->calls,
                                 .total_ns = n->total_ns, .inline_ns = n->inline_ns };
        c->label = n->label && to->ops ? to->ops->copy(n->label) : NULL;
        *(last ? &last->sibling : &parent->child) = c;
        parent = c;
        last = NULL;
    }
    return 0;
}

void prof_tree_free(struct prof_tree *t)
{
    free_children(t, &t->root);
    free(t->block);
    t->block = NULL;
    free(t->stack);
    t->stack = NULL;
    t->depth = t->stack_cap = t->nodes = 0;
    t->id = new_tree_id(); /* twins pointing here are stale */
}

/* parent's child for key, moved to the front; NULL if none. A linear scan
 * with move-to-front: a function calls the same few callees over and over,
 * so the one wanted is nearly always first. */
static struct prof_node *find_child(struct prof_node *parent, const void *key)
{
    for (struct prof_node **link = &parent->child; *link; link = &(*link)->sibling) {
        struct prof_node *c = *link;
        if (c->key != key)
            continue;
        if (link != &parent->child) {
            *link = c->sibling;
            c->sibling = parent->child;
            parent->child = c;
        }
        return c;
    }
    return NULL;
}

/* parent's child for key, made if missing (NULL past the node cap or
 * without memory). With canonical, a missing key is looked for again as
 * ops->canonical gives it, and made under that key. */
static struct prof_node *child_of(struct prof_tree *t, struct prof_node *parent, const void *key,
                                  bool canonical)
{
    struct prof_node *c = find_child(parent, key);
    if (c)
        return c;
    if (canonical && t->ops && t->ops->canonical && t->nodes < t->max_nodes) {
        const void *k = t->ops->canonical(key); /* may re-enter: nothing held across it */
        if (k != key && (c = find_child(parent, k)))
            return c;
        key = k;
    }
    if (t->nodes >= t->max_nodes)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->key = key;
    c->parent = parent;
    c->sibling = parent->child;
    parent->child = c;
    t->nodes++;
    return c;
}

void prof_walk_children(struct prof_walk *w, const struct prof_node *parent)
{
    *w = (struct prof_walk){ .node = parent->child };
}

void prof_walk_subtree(struct prof_walk *w, const struct prof_node *n)
{
    *w = (struct prof_walk){ .node = n, .one = true };
}

void prof_walk_skip(struct prof_walk *w)
{
    w->skip = true;
}

bool prof_walk_next(struct prof_walk *w)
{
    const struct prof_node *n = w->node;
    if (!n)
        return false;
    if (!w->started) {
        w->started = true;
        return true;
    }
    if (!w->leaving) { /* entering n: go under it, or leave it */
        if (n->child && !w->skip) {
            w->node = n->child;
            w->depth++;
        } else {
            w->leaving = true;
        }
        w->skip = false;
        return true;
    }
    if (w->depth == 0 && (w->one || !n->sibling)) { /* left the last of the walk */
        w->node = NULL;
        return false;
    }
    if (n->sibling) {
        w->node = n->sibling;
        w->leaving = false;
    } else { /* the last child left: leave its parent */
        w->node = n->parent;
        w->depth--;
    }
    return true;
}

struct prof_node *prof_tree_child(struct prof_tree *t, struct prof_node *parent, const void *key)
{
    return child_of(t, parent, key, false);
}

struct prof_node *prof_tree_enter(struct prof_tree *t, const void *key, uint64_t now)
{
    if (t->depth == t->stack_cap) {
        size_t cap = t->stack_cap ? t->stack_cap * 2 : 64;
        struct prof_frame *s = realloc(t->stack, cap * sizeof(*s));
        if (!s) {
            t->dropped_calls++;
            return NULL;
        }
        t->stack = s;
        t->stack_cap = cap;
    }
    struct prof_node *parent = t->depth ? t->stack[t->depth - 1].node : &t->root;
    struct prof_node *n = parent ? child_of(t, parent, key, true) : NULL;
    if (!n)
        t->dropped_calls++;
    t->stack[t->depth++] = (struct prof_frame){ n, now, 0 };
    return n;
}

void prof_tree_leave(struct prof_tree *t, uint64_t now)
{
    if (t->depth == 0)
        return;
    struct prof_frame *f = &t->stack[--t->depth];
    uint64_t total = now > f->t0 ? now - f->t0 : 0;
    uint64_t inl = total > f->sub_ns ? total - f->sub_ns : 0;
    if (t->depth)
        t->stack[t->depth - 1].sub_ns += total;
    if (f->node) {
        f->node->calls++;
        f->node->total_ns += total;
        f->node->inline_ns += inl;
    }
}

void prof_tree_unwind(struct prof_tree *t, uint64_t now)
{
    while (t->depth)
        prof_tree_leave(t, now);
}

/* Add src's subtrees below dst (NULL: into has no room for them; they are
 * counted as dropped). A node without calls is skipped with its subtree: in
 * a drained tree, a node has calls only if its parent has. With drain, src's
 * counts are zeroed on the way and each node keeps its twin. Iterative: the
 * destination of the node entered is cur, or none when it is under nulls
 * levels that into had no room for. */
static void merge_children(struct prof_tree *into, struct prof_node *dst, struct prof_node *src,
                           bool drain)
{
    struct prof_node *cur = dst;
    unsigned nulls = dst ? 0 : 1;
    bool skipped = false;
    struct prof_walk w;
    prof_walk_children(&w, src);
    while (prof_walk_next(&w)) {
        struct prof_node *c = (struct prof_node *)w.node;
        if (w.leaving) { /* back up to the destination of c's parent */
            if (skipped)
                skipped = false;
            else if (nulls)
                nulls--;
            else
                cur = cur->parent;
            continue;
        }
        if (!c->calls) {
            prof_walk_skip(&w);
            skipped = true;
            continue;
        }
        struct prof_node *d = nulls                ? NULL
                              : drain && c->twin ? c->twin
                                                 : child_of(into, cur, c->key, false);
        if (d) {
            if (!d->label && c->label && into->ops)
                d->label = into->ops->copy(c->label);
            d->calls += c->calls;
            d->total_ns += c->total_ns;
            d->inline_ns += c->inline_ns;
            cur = d;
        } else {
            if (into)
                into->dropped_calls += c->calls;
            nulls++;
        }
        if (drain) {
            c->twin = d;
            c->calls = c->total_ns = c->inline_ns = 0;
        }
    }
}

void prof_tree_merge(struct prof_tree *into, const struct prof_tree *from)
{
    merge_children(into, &into->root, (struct prof_node *)&from->root, false);
    into->dropped_calls += from->dropped_calls;
}

static void forget_twins(struct prof_node *n)
{
    struct prof_walk w;
    prof_walk_children(&w, n);
    while (prof_walk_next(&w))
        ((struct prof_node *)w.node)->twin = NULL;
}

void prof_tree_drain(struct prof_tree *into, struct prof_tree *from)
{
    uint64_t into_id = into ? into->id : 0;
    if (from->twins_for != into_id) {
        forget_twins(&from->root);
        from->twins_for = into_id;
    }
    merge_children(into, into ? &into->root : NULL, &from->root, true);
    if (into)
        into->dropped_calls += from->dropped_calls;
    from->dropped_calls = 0;
}

/* --- flattening ------------------------------------------------------------ */

/* Open-addressing map from a pointer pair to a counter or an index. */
struct slot {
    const void *a, *b;
    size_t value;
    bool used;
};
struct pairmap {
    struct slot *slots;
    size_t cap, n;
};

static size_t pair_hash(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)a * 0x9E3779B97F4A7C15u ^ ((uintptr_t)b + 0x7F4A7C159E3779B9u);
    return (size_t)(x ^ (x >> 29));
}

/* The value of (a, b), or 0 if it has none. Never grows the table. */
static size_t pairmap_find(const struct pairmap *m, const void *a, const void *b)
{
    if (!m->cap)
        return 0;
    for (size_t i = pair_hash(a, b) & (m->cap - 1); m->slots[i].used; i = (i + 1) & (m->cap - 1))
        if (m->slots[i].a == a && m->slots[i].b == b)
            return m->slots[i].value;
    return 0;
}

/* The value slot for (a, b), created as 0. NULL on out of memory. The
 * table may grow: a slot from an earlier call is then gone. */
static size_t *pairmap_at(struct pairmap *m, const void *a, const void *b)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        struct slot *s = calloc(cap, sizeof(*s));
        if (!s)
            return NULL;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].used)
                continue;
            size_t j = pair_hash(m->slots[i].a, m->slots[i].b) & (cap - 1);
            while (s[j].used)
                j = (j + 1) & (cap - 1);
            s[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = s;
        m->cap = cap;
    }
    size_t i = pair_hash(a, b) & (m->cap - 1);
    while (m->slots[i].used) {
        if (m->slots[i].a == a && m->slots[i].b == b)
            return &m->slots[i].value;
        i = (i + 1) & (m->cap - 1);
    }
    m->slots[i] = (struct slot){ a, b, 0, true };
    m->n++;
    return &m->slots[i].value;
}

struct edge {
    size_t caller, callee;        /* indexes into entries */
    struct prof_flat_caller c;
};

struct flattener {
    const struct prof_label_ops *ops;
    struct pairmap active;        /* (function, NULL) and (caller, function) → active count,
                                   * a function being the key of its name's first entry */
    struct pairmap index;         /* (key, NULL) → entry index + 1; (caller, key) → edge + 1 */
    struct pairmap names;         /* (label hash, probe 1, 2...) → entry index + 1 */
    struct prof_flat_entry *entries;
    size_t n_entries, cap_entries;
    struct edge *edges;
    size_t n_edges, cap_edges;
    bool failed;
};

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return p;
    size_t c = *cap ? *cap * 2 : 64;
    void *q = realloc(p, c * size);
    if (q)
        *cap = c;
    return q;
}

/* The index of the first entry whose label names what entry i's names
 * (ops->same), i if none; SIZE_MAX on out of memory. Labels of one hash are
 * told apart by probing (hash, 1), (hash, 2)... */
static size_t first_of_name(struct flattener *fl, size_t i)
{
    const struct prof_label_ops *ops = fl->ops;
    void *label = fl->entries[i].label;
    if (!ops || !ops->hash || !ops->same || !label)
        return i;
    const void *h = (const void *)(uintptr_t)ops->hash(label);
    for (uintptr_t probe = 1;; probe++) {
        size_t *slot = pairmap_at(&fl->names, h, (const void *)probe);
        if (!slot)
            return SIZE_MAX;
        if (*slot == 0) {
            *slot = i + 1;
            return i;
        }
        size_t first = *slot - 1; /* ops->same may not move the map, but read it first */
        if (ops->same(fl->entries[first].label, label))
            return first;
    }
}

static struct prof_flat_entry *entry_for(struct flattener *fl, const struct prof_node *n)
{
    size_t *ix = pairmap_at(&fl->index, n->key, NULL);
    if (!ix)
        return NULL;
    if (*ix == 0) {
        struct prof_flat_entry *e = grow(fl->entries, &fl->cap_entries, fl->n_entries, sizeof(*e));
        if (!e)
            return NULL;
        fl->entries = e;
        size_t i = fl->n_entries;
        memset(&e[i], 0, sizeof(*e));
        e[i].key = n->key;
        e[i].label = n->label;
        *ix = ++fl->n_entries;
        if ((e[i].function = first_of_name(fl, i)) == SIZE_MAX)
            return NULL;
    }
    return &fl->entries[*ix - 1];
}

/* The function of an entered key: its name's first entry's key. */
static const void *function_of(const struct flattener *fl, const void *key)
{
    const struct prof_flat_entry *e = &fl->entries[pairmap_find(&fl->index, key, NULL) - 1];
    return fl->entries[e->function].key;
}

static struct prof_flat_caller *edge_for(struct flattener *fl, const struct prof_node *n,
                                         size_t callee)
{
    /* the parent was visited first: its entry is there. Looked up before
     * the edge's slot is taken, as taking one may move the table. */
    size_t caller = pairmap_find(&fl->index, n->parent->key, NULL) - 1;
    size_t *ix = pairmap_at(&fl->index, n->parent->key, n->key);
    if (!ix)
        return NULL;
    if (*ix == 0) {
        struct edge *e = grow(fl->edges, &fl->cap_edges, fl->n_edges, sizeof(*e));
        if (!e)
            return NULL;
        fl->edges = e;
        memset(&e[fl->n_edges], 0, sizeof(*e));
        e[fl->n_edges].caller = caller;
        e[fl->n_edges].callee = callee;
        e[fl->n_edges].c.caller_key = n->parent->key;
        e[fl->n_edges].c.caller_label = n->parent->label;
        *ix = ++fl->n_edges;
    }
    return &fl->edges[*ix - 1].c;
}

/* Count n, the walk having entered it (top: a first-level node). */
static void visit(struct flattener *fl, const struct prof_node *n, bool top)
{
    struct prof_flat_entry *e = entry_for(fl, n);
    const void *fn = e ? fl->entries[e->function].key : NULL;
    /* Read the counters first: a later insertion may move the map. */
    size_t *p = e ? pairmap_at(&fl->active, fn, NULL) : NULL;
    size_t key_active = p ? *p : 0, pair_active = 0;
    if (p && !top) {
        p = pairmap_at(&fl->active, function_of(fl, n->parent->key), fn);
        pair_active = p ? *p : 0;
    }
    struct prof_flat_caller *c = p && !top ? edge_for(fl, n, (size_t)(e - fl->entries)) : NULL;
    if (!p || (!top && !c)) {
        fl->failed = true;
        return;
    }
    e->calls += n->calls;
    e->inline_ns += n->inline_ns;
    if (key_active)
        e->reccalls += n->calls;
    else
        e->total_ns += n->total_ns;
    if (c) {
        c->calls += n->calls;
        c->inline_ns += n->inline_ns;
        if (pair_active)
            c->reccalls += n->calls;
        else
            c->total_ns += n->total_ns;
    }
}

/* n's function and its caller's are active (on entering n, by +1) or no
 * longer (on leaving it, by -1). Both slots exist once visit() succeeded
 * on n. */
static void mark_active(struct flattener *fl, const struct prof_node *n, bool top, int by)
{
    const void *fn = function_of(fl, n->key);
    *pairmap_at(&fl->active, fn, NULL) += (size_t)by;
    if (!top)
        *pairmap_at(&fl->active, function_of(fl, n->parent->key), fn) += (size_t)by;
}

/* Every node under root, its function's (and its caller pair's) active
 * counts telling a recursive call. */
static void visit_all(struct flattener *fl, const struct prof_node *root)
{
    struct prof_walk w;
    prof_walk_children(&w, root);
    while (!fl->failed && prof_walk_next(&w)) {
        if (!w.leaving)
            visit(fl, w.node, w.depth == 0);
        if (!fl->failed)
            mark_active(fl, w.node, w.depth == 0, w.leaving ? -1 : 1);
    }
}

/* Give each entry its slices of callers (edges where it is the callee) and
 * callees (where it is the caller), in one pass over the edges each way:
 * linear in the edges, however many functions there are. */
static void link_edges(struct flattener *fl, struct prof_flat_caller *callers,
                       struct prof_flat_callee *callees)
{
    for (size_t i = 0; i < fl->n_edges; i++) {
        fl->entries[fl->edges[i].callee].n_callers++;
        fl->entries[fl->edges[i].caller].n_callees++;
    }
    size_t in = 0, out = 0;
    for (size_t i = 0; i < fl->n_entries; i++) { /* counts become fill positions */
        fl->entries[i].callers = callers + in;
        fl->entries[i].callees = callees + out;
        in += fl->entries[i].n_callers;
        out += fl->entries[i].n_callees;
        fl->entries[i].n_callers = fl->entries[i].n_callees = 0;
    }
    for (size_t i = 0; i < fl->n_edges; i++) {
        struct prof_flat_entry *callee = &fl->entries[fl->edges[i].callee];
        struct prof_flat_entry *caller = &fl->entries[fl->edges[i].caller];
        struct prof_flat_caller *c = &callee->callers[callee->n_callers++];
        *c = fl->edges[i].c;
        caller->callees[caller->n_callees++] = (struct prof_flat_callee){ fl->edges[i].callee, c };
    }
}

struct prof_flat *prof_tree_flatten(const struct prof_tree *t)
{
    struct flattener fl = { .ops = t->ops };
    struct prof_flat *out = calloc(1, sizeof(*out));
    if (!out)
        return NULL;
    visit_all(&fl, &t->root);
    if (!fl.failed) {
        out->callers_block = calloc(fl.n_edges + 1, sizeof(*out->callers_block));
        out->callees_block = calloc(fl.n_edges + 1, sizeof(*out->callees_block));
        fl.failed = !out->callers_block || !out->callees_block;
    }
    if (!fl.failed)
        link_edges(&fl, out->callers_block, out->callees_block);
    free(fl.active.slots);
    free(fl.index.slots);
    free(fl.names.slots);
    free(fl.edges);
    out->entries = fl.entries;
    out->n_entries = fl.n_entries;
    if (fl.failed) {
        prof_flat_free(out);
        return NULL;
    }
    return out;
}

void prof_flat_free(struct prof_flat *f)
{
    if (!f)
        return;
    free(f->callers_block);
    free(f->callees_block);
    free(f->entries);
    free(f);
}
