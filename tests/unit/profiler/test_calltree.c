/* Unit tests for profiler/calltree.c: timing, recursion as cProfile counts
 * it, per-caller edges, merge, the node cap, draining a tree to use it
 * again, copying a tree, and label ownership. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "profiler/calltree.h"

static int live_labels;
static void *copy_label(void *l)
{
    live_labels++;
    return l;
}
static void release_label(void *l)
{
    (void)l;
    live_labels--;
}
static const struct prof_label_ops ops = { .copy = copy_label, .release = release_label };

static char F, G, H; /* keys */

static void enter(struct prof_tree *t, const void *key, uint64_t now)
{
    struct prof_node *n = prof_tree_enter(t, key, now);
    if (n && !n->label)
        n->label = copy_label((void *)key);
}

static const struct prof_flat_entry *find(const struct prof_flat *f, const void *key)
{
    for (size_t i = 0; i < f->n_entries; i++)
        if (f->entries[i].key == key)
            return &f->entries[i];
    fail_msg("no entry for key");
    return NULL;
}

static const struct prof_flat_caller *caller(const struct prof_flat_entry *e, const void *key)
{
    for (size_t i = 0; i < e->n_callers; i++)
        if (e->callers[i].caller_key == key)
            return &e->callers[i];
    return NULL;
}

static void test_times_and_counts(void **state)
{
    (void)state;
    struct prof_tree t;
    prof_tree_init(&t, &ops, 100);
    /* f [0,100): g [10,40) with h [20,30); g [50,70); h [80,90) */
    enter(&t, &F, 0);
    enter(&t, &G, 10);
    enter(&t, &H, 20);
    prof_tree_leave(&t, 30);
    prof_tree_leave(&t, 40);
    enter(&t, &G, 50);
    prof_tree_leave(&t, 70);
    enter(&t, &H, 80);
    prof_tree_leave(&t, 90);
    prof_tree_leave(&t, 100);
    struct prof_node *f = t.root.child;
    assert_ptr_equal(f->key, &F);
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->total_ns, 100);
    assert_int_equal(f->inline_ns, 100 - 30 - 20 - 10);
    struct prof_flat *flat = prof_tree_flatten(&t);
    assert_non_null(flat);
    assert_int_equal(flat->n_entries, 3);
    const struct prof_flat_entry *g = find(flat, &G), *h = find(flat, &H);
    assert_int_equal(g->calls, 2);
    assert_int_equal(g->total_ns, 50);
    assert_int_equal(g->inline_ns, 40);
    assert_int_equal(h->calls, 2);
    assert_int_equal(h->n_callers, 2);
    assert_int_equal(caller(h, &G)->calls, 1);
    assert_int_equal(caller(h, &F)->calls, 1);
    assert_int_equal(find(flat, &F)->n_callers, 0);
    prof_flat_free(flat);
    prof_tree_free(&t);
    assert_int_equal(live_labels, 0);
}

/* Calls as a script, one tick per character: f, g or h enters that
 * function, ')' leaves the innermost. */
static void play(struct prof_tree *t, const char *script)
{
    const void *keys[] = { &F, &G, &H };
    for (uint64_t now = 0; script[now]; now++) {
        if (script[now] == ')')
            prof_tree_leave(t, now);
        else
            enter(t, keys[script[now] - 'f'], now);
    }
}

/* The callee lists mirror the caller lists: each edge once from each side,
 * the callee side pointing at the callee's own record of that caller. */
static void test_callees_mirror_callers(void **state)
{
    (void)state;
    struct prof_tree t;
    prof_tree_init(&t, &ops, 100);
    play(&t, "fgh)g))h)g))"); /* f → g → h, g → g; f → h; f → g */
    struct prof_flat *flat = prof_tree_flatten(&t);
    assert_non_null(flat);
    size_t edges_seen_from_callers = 0, edges_seen_from_callees = 0;
    for (size_t i = 0; i < flat->n_entries; i++) {
        const struct prof_flat_entry *e = &flat->entries[i];
        edges_seen_from_callees += e->n_callers;
        edges_seen_from_callers += e->n_callees;
        for (size_t k = 0; k < e->n_callees; k++) {
            const struct prof_flat_entry *callee = &flat->entries[e->callees[k].entry];
            const struct prof_flat_caller *edge = e->callees[k].edge;
            assert_ptr_equal(edge->caller_key, e->key);
            assert_true(edge >= callee->callers && edge < callee->callers + callee->n_callers);
        }
    }
    assert_int_equal(edges_seen_from_callers, 4); /* f→g, f→h, g→h, g→g */
    assert_int_equal(edges_seen_from_callees, 4);
    const struct prof_flat_entry *f = find(flat, &F), *g = find(flat, &G);
    assert_int_equal(f->n_callees, 2);
    assert_int_equal(g->n_callees, 2);
    for (size_t k = 0; k < f->n_callees; k++)
        if (flat->entries[f->callees[k].entry].key == &G)
            assert_int_equal(f->callees[k].edge->calls, 2);
    assert_int_equal(find(flat, &H)->n_callees, 0);
    prof_flat_free(flat);
    prof_tree_free(&t);
    assert_int_equal(live_labels, 0);
}

/* G and H each call F, which calls n distinct functions: the flat view's
 * index grows past several sizes while it is built (it once lost an edge's
 * slot when the lookup of its caller made the table move, and a pair seen
 * again then got a second edge). F has exactly n callees, each called twice. */
static void test_wide_fan_out_at_every_size(void **state)
{
    (void)state;
    static char keys[300], other;
    for (size_t n = 1; n <= 2 * sizeof(keys); n++) {
        struct prof_tree t;
        prof_tree_init(&t, &ops, 100000);
        uint64_t now = 0;
        const void *parents[2] = { &G, &H };
        for (size_t p = 0; p < 2; p++) {
            enter(&t, parents[p], now++);
            enter(&t, &F, now++);
            for (size_t i = 0; i < (n - 1) % sizeof(keys) + 1; i++) {
                enter(&t, &keys[i], now++);
                prof_tree_leave(&t, now++);
            }
            prof_tree_leave(&t, now++);
            prof_tree_leave(&t, now++);
        }
        if (n > sizeof(keys)) { /* one more entry, visited first (the latest call
                                   leads its siblings): edges land on the other sizes */
            enter(&t, &other, now++);
            prof_tree_leave(&t, now++);
        }
        struct prof_flat *flat = prof_tree_flatten(&t);
        assert_non_null(flat);
        const struct prof_flat_entry *f = find(flat, &F);
        assert_int_equal(f->n_callees, (n - 1) % sizeof(keys) + 1);
        assert_int_equal(f->n_callers, 2);
        for (size_t k = 0; k < f->n_callees; k++)
            assert_int_equal(f->callees[k].edge->calls, 2);
        prof_flat_free(flat);
        prof_tree_free(&t);
    }
    assert_int_equal(live_labels, 0);
}

static void test_recursion_counted_once(void **state)
{
    (void)state;
    struct prof_tree t;
    prof_tree_init(&t, &ops, 100);
    /* f [0,100) → f [10,60) → f [20,30) */
    enter(&t, &F, 0);
    enter(&t, &F, 10);
    enter(&t, &F, 20);
    prof_tree_leave(&t, 30);
    prof_tree_leave(&t, 60);
    prof_tree_leave(&t, 100);
    struct prof_flat *flat = prof_tree_flatten(&t);
    const struct prof_flat_entry *f = find(flat, &F);
    assert_int_equal(f->calls, 3);
    assert_int_equal(f->reccalls, 2);      /* primitive calls: 1 */
    assert_int_equal(f->total_ns, 100);    /* the outermost call only */
    assert_int_equal(f->inline_ns, 100);   /* every call's own time */
    const struct prof_flat_caller *self = caller(f, &F);
    assert_non_null(self);
    assert_int_equal(self->calls, 2);
    assert_int_equal(self->reccalls, 1);   /* f→f inside f→f */
    assert_int_equal(self->total_ns, 50);
    prof_flat_free(flat);
    prof_tree_free(&t);
    assert_int_equal(live_labels, 0);
}

/* G and H name one function (two code objects of one file:line(name), as
 * a list comprehension nested in another): what their names say. */
static char G_AND_H[] = "g", F_NAME[] = "f";
static const char *name_of(void *label)
{
    return label == &G || label == &H ? G_AND_H : F_NAME;
}
static uint64_t hash_name(void *label)
{
    (void)label;
    return 7; /* every name collides: same_name tells them apart */
}
static bool same_name(void *a, void *b)
{
    return name_of(a) == name_of(b);
}
static const struct prof_label_ops named_ops = { copy_label, release_label, hash_name,
                                                 same_name, NULL };

/* H is G compiled again (one function): H stands for G once G has a key. */
static unsigned canonical_asked;
static const void *g_for_h(const void *key)
{
    canonical_asked++;
    return key == &H ? &G : key;
}
static const struct prof_label_ops canonical_ops = { copy_label, release_label, hash_name,
                                                     same_name, g_for_h };

static void test_a_key_taken_for_an_earlier_one_follows_its_path(void **state)
{
    (void)state;
    struct prof_tree t;
    prof_tree_init(&t, &canonical_ops, 100);
    canonical_asked = 0;
    /* f → g, f → h, f → h: one path f → g, three calls */
    enter(&t, &F, 0);
    for (uint64_t i = 0; i < 3; i++) {
        struct prof_node *n = prof_tree_enter(&t, i ? &H : &G, 10 * i + 1);
        assert_non_null(n);
        assert_ptr_equal(n->key, &G);
        prof_tree_leave(&t, 10 * i + 5);
    }
    prof_tree_leave(&t, 100);
    assert_int_equal(t.nodes, 2);
    const struct prof_node *f = t.root.child, *g = f->child;
    assert_ptr_equal(g->key, &G);
    assert_null(g->sibling);
    assert_int_equal(g->calls, 3);
    assert_int_equal(g->total_ns, 12);
    /* asked only on a miss: f once, g once, h twice (never found as itself) */
    assert_int_equal(canonical_asked, 4);
    /* merging and reading back never ask: their keys are already the tree's */
    struct prof_tree into;
    prof_tree_init(&into, &canonical_ops, 100);
    prof_tree_merge(&into, &t);
    assert_int_equal(canonical_asked, 4);
    assert_int_equal(into.root.child->child->calls, 3);
    prof_tree_free(&into);
    prof_tree_free(&t);
    assert_int_equal(live_labels, 0);
}

static void test_nested_keys_of_one_name_are_recursion(void **state)
{
    (void)state;
    struct prof_tree t;
    prof_tree_init(&t, &named_ops, 100);
    /* f [0,100) → g [10,60) → h [20,30), h [40,50); f → h [70,80) */
    enter(&t, &F, 0);
    enter(&t, &G, 10);
    enter(&t, &H, 20);
    prof_tree_leave(&t, 30);
    enter(&t, &H, 40);
    prof_tree_leave(&t, 50);
    prof_tree_leave(&t, 60);
    enter(&t, &H, 70);
    prof_tree_leave(&t, 80);
    prof_tree_leave(&t, 100);
    struct prof_flat *flat = prof_tree_flatten(&t);
    assert_non_null(flat);
    const struct prof_flat_entry *g = find(flat, &G), *h = find(flat, &H);
    const void *fn = flat->entries[g->function].key; /* whichever the walk met first */
    assert_true(fn == &G || fn == &H);
    assert_int_equal(h->function, g->function);
    assert_int_equal(find(flat, &F)->function, (size_t)(find(flat, &F) - flat->entries));
    /* h's calls in g are recursive: the name's cumulative time is g's 50
     * and h's 10 outside g, never more than f's 100 */
    assert_int_equal(g->calls, 1);
    assert_int_equal(g->reccalls, 0);
    assert_int_equal(g->total_ns, 50);
    assert_int_equal(h->calls, 3);
    assert_int_equal(h->reccalls, 2);
    assert_int_equal(h->total_ns, 10);
    assert_int_equal(caller(h, &G)->reccalls, 0); /* the first g→h pair active: not recursive */
    assert_int_equal(caller(h, &G)->total_ns, 20);
    assert_int_equal(caller(h, &F)->total_ns, 10);
    prof_flat_free(flat);
    prof_tree_free(&t);
    assert_int_equal(live_labels, 0);
}

static void test_merge_and_cap(void **state)
{
    (void)state;
    struct prof_tree a, b;
    prof_tree_init(&a, &ops, 100);
    prof_tree_init(&b, &ops, 2);
    enter(&a, &F, 0);
    enter(&a, &G, 1);
    prof_tree_leave(&a, 2);
    prof_tree_leave(&a, 3);
    prof_tree_merge(&b, &a);
    prof_tree_merge(&b, &a);
    assert_int_equal(b.nodes, 2);
    assert_int_equal(b.root.child->calls, 2);
    assert_int_equal(b.root.child->child->calls, 2);
    /* a third distinct path does not fit */
    enter(&b, &H, 10);
    prof_tree_leave(&b, 11);
    assert_int_equal(b.dropped_calls, 1);
    assert_int_equal(b.nodes, 2);
    /* a cut subtree counts every call in it as dropped */
    struct prof_tree deep, one;
    prof_tree_init(&deep, &ops, 100);
    prof_tree_init(&one, &ops, 1);
    enter(&deep, &F, 0);
    enter(&deep, &G, 1);
    enter(&deep, &H, 2);
    prof_tree_unwind(&deep, 3);
    prof_tree_merge(&one, &deep);
    assert_int_equal(one.nodes, 1);
    assert_int_equal(one.dropped_calls, 2);
    prof_tree_free(&one);
    prof_tree_free(&deep);
    /* leaving with nothing entered is harmless; unwind closes open calls */
    prof_tree_leave(&b, 12);
    enter(&a, &H, 20);
    enter(&a, &G, 21);
    prof_tree_unwind(&a, 30);
    assert_int_equal(a.depth, 0);
    prof_tree_free(&a);
    prof_tree_free(&b);
    assert_int_equal(live_labels, 0);
}

/* The walk visits in preorder, each node entered then left, and skip
 * leaves a node's subtree out. Tree: f → (g → h), h; zoomed: g only. */
/* The walk of t's nodes into seen (32 bytes): a key's letter entering it,
 * the capital leaving it, each with its depth. */
static void walk_keys(const struct prof_tree *t, char *seen)
{
    memset(seen, 0, 32);
    struct prof_walk w;
    prof_walk_children(&w, &t->root);
    while (prof_walk_next(&w)) {
        char c = w.node->key == &F ? 'f' : w.node->key == &G ? 'g' : 'h';
        seen[strlen(seen)] = w.leaving ? (char)(c - 32) : c;
        seen[strlen(seen)] = (char)('0' + w.depth);
    }
}

static void test_walk_order_and_skip(void **state)
{
    (void)state;
    struct prof_tree t;
    prof_tree_init(&t, &ops, 100);
    enter(&t, &F, 0);
    enter(&t, &H, 1); /* children are kept most recent first: h, then g */
    prof_tree_leave(&t, 2);
    enter(&t, &G, 3);
    enter(&t, &H, 4);
    prof_tree_unwind(&t, 5);
    char seen[32];
    struct prof_walk w;
    walk_keys(&t, seen);
    assert_string_equal(seen, "f0g1h2H2G1h1H1F0");
    const struct prof_node *g = t.root.child->child;
    memset(seen, 0, sizeof(seen));
    prof_walk_subtree(&w, g);
    while (prof_walk_next(&w)) {
        seen[strlen(seen)] = w.leaving ? 'L' : 'E';
        if (!w.leaving)
            prof_walk_skip(&w);
    }
    assert_string_equal(seen, "EL");
    prof_tree_free(&t);
    assert_int_equal(live_labels, 0);
}

/* A copy (what an export reads while Python runs) has the tree's nodes in
 * its order, their counts and labels of its own: it outlives the tree. */
static void test_copy_is_whole_and_its_own(void **state)
{
    (void)state;
    struct prof_tree t, copy;
    prof_tree_init(&t, &ops, 100);
    enter(&t, &F, 0);
    enter(&t, &H, 1);
    prof_tree_leave(&t, 2);
    enter(&t, &G, 3);
    enter(&t, &H, 4);
    enter(&t, &F, 5);
    prof_tree_unwind(&t, 9);
    enter(&t, &G, 10);
    prof_tree_leave(&t, 12);
    t.dropped_calls = 3;
    t.requests_left_out = 2;
    t.most_at_once = 4;
    int labels = live_labels;
    assert_int_equal(prof_tree_copy(&copy, &t), 0);
    assert_int_equal(live_labels, 2 * labels);
    char seen[32], copied[32];
    walk_keys(&t, seen);
    walk_keys(&copy, copied);
    assert_string_equal(copied, seen);
    assert_int_equal(copy.nodes, t.nodes);
    assert_int_equal(copy.dropped_calls, 3);
    assert_int_equal(copy.requests_left_out, 2);
    assert_int_equal(copy.most_at_once, 4);
    assert_int_equal(copy.max_nodes, 100);
    struct prof_flat *before = prof_tree_flatten(&t);
    assert_non_null(before);
    prof_tree_free(&t); /* a Clear meanwhile */
    assert_int_equal(live_labels, labels);
    struct prof_flat *after = prof_tree_flatten(&copy);
    assert_non_null(after);
    assert_int_equal(after->n_entries, before->n_entries);
    for (size_t i = 0; i < after->n_entries; i++) {
        const struct prof_flat_entry *a = &after->entries[i], *b = find(before, a->key);
        assert_int_equal(a->calls, b->calls);
        assert_int_equal(a->reccalls, b->reccalls);
        assert_int_equal(a->total_ns, b->total_ns);
        assert_int_equal(a->inline_ns, b->inline_ns);
        assert_int_equal(a->n_callers, b->n_callers);
        assert_ptr_equal(a->label, a->key);
    }
    prof_flat_free(before);
    prof_flat_free(after);
    prof_tree_free(&copy);
    assert_int_equal(live_labels, 0);
}

/* A chain far deeper than a thread's stack allows recursing (a million
 * frames: recursion at 64 bytes a level would take 64 MB): merge, drain,
 * flatten and free walk it without a stack. */
static void test_a_million_deep(void **state)
{
    (void)state;
    enum { DEPTH = 1000000 };
    struct prof_tree t, into;
    prof_tree_init(&t, &ops, DEPTH + 10);
    prof_tree_init(&into, &ops, DEPTH + 10);
    for (uint64_t i = 0; i < DEPTH; i++)
        enter(&t, &F, i);
    prof_tree_unwind(&t, 2 * DEPTH);
    prof_tree_merge(&into, &t);
    prof_tree_drain(&into, &t);
    assert_int_equal(into.nodes, DEPTH);
    const struct prof_node *n = &into.root;
    for (int i = 0; i < DEPTH; i++)
        n = n->child;
    assert_int_equal(n->calls, 2);
    assert_null(n->child);
    struct prof_tree copy;
    assert_int_equal(prof_tree_copy(&copy, &into), 0);
    assert_int_equal(copy.nodes, DEPTH);
    prof_tree_free(&copy);
    struct prof_flat *flat = prof_tree_flatten(&into);
    assert_non_null(flat);
    assert_int_equal(find(flat, &F)->calls, 2 * DEPTH);
    assert_int_equal(find(flat, &F)->reccalls, 2 * (DEPTH - 1));
    prof_flat_free(flat);
    prof_tree_drain(NULL, &into);
    assert_int_equal(into.root.child->calls, 0);
    prof_tree_free(&t);
    prof_tree_free(&into);
    assert_int_equal(live_labels, 0);
}

static void request(struct prof_tree *t, const void *outer, const void *inner, uint64_t t0)
{
    enter(t, outer, t0);
    if (inner) {
        enter(t, inner, t0 + 1);
        prof_tree_leave(t, t0 + 3);
    }
    prof_tree_leave(t, t0 + 4);
}

static void test_drain_reuses_nodes(void **state)
{
    (void)state;
    struct prof_tree t, acc;
    prof_tree_init(&t, &ops, 100);
    prof_tree_init(&acc, &ops, 100);
    request(&t, &F, &G, 0);
    prof_tree_drain(&acc, &t);
    assert_int_equal(acc.nodes, 2);
    assert_int_equal(acc.root.child->calls, 1);
    assert_int_equal(acc.root.child->total_ns, 4);
    assert_int_equal(acc.root.child->child->inline_ns, 2);
    assert_int_equal(t.root.child->calls, 0);
    assert_int_equal(t.root.child->child->total_ns, 0);
    assert_ptr_equal(t.root.child->twin, acc.root.child);
    /* the same paths again: no new node on either side */
    request(&t, &F, &G, 10);
    prof_tree_drain(&acc, &t);
    assert_int_equal(t.nodes, 2);
    assert_int_equal(acc.nodes, 2);
    assert_int_equal(acc.root.child->calls, 2);
    assert_int_equal(acc.root.child->child->calls, 2);
    /* paths not taken this time add nothing, and are not copied */
    request(&t, &H, NULL, 20);
    struct prof_tree copy;
    prof_tree_init(&copy, &ops, 100);
    prof_tree_merge(&copy, &t);
    assert_int_equal(copy.nodes, 1);
    prof_tree_free(&copy);
    prof_tree_drain(&acc, &t);
    assert_int_equal(acc.nodes, 3);
    assert_int_equal(acc.root.child->key, &H); /* the newest child comes first */
    assert_int_equal(acc.root.child->sibling->calls, 2);
    /* into freed and made again: the twins into the old one are not used */
    prof_tree_free(&acc);
    prof_tree_init(&acc, &ops, 100);
    request(&t, &F, &G, 30);
    prof_tree_drain(&acc, &t);
    assert_int_equal(acc.nodes, 2);
    assert_int_equal(acc.root.child->child->calls, 1);
    /* no room in into: counted as dropped, still zeroed */
    struct prof_tree small;
    prof_tree_init(&small, &ops, 1);
    request(&t, &F, &G, 40);
    prof_tree_drain(&small, &t);
    assert_int_equal(small.nodes, 1);
    assert_int_equal(small.dropped_calls, 1);
    assert_int_equal(t.root.child->child->calls, 0);
    /* draining into nothing only zeroes */
    request(&t, &F, &G, 50);
    prof_tree_drain(NULL, &t);
    assert_int_equal(t.root.child->calls, 0);
    prof_tree_free(&small);
    prof_tree_free(&acc);
    prof_tree_free(&t);
    assert_int_equal(live_labels, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times_and_counts),
        cmocka_unit_test(test_callees_mirror_callers),
        cmocka_unit_test(test_wide_fan_out_at_every_size),
        cmocka_unit_test(test_recursion_counted_once),
        cmocka_unit_test(test_nested_keys_of_one_name_are_recursion),
        cmocka_unit_test(test_merge_and_cap),
        cmocka_unit_test(test_drain_reuses_nodes),
        cmocka_unit_test(test_walk_order_and_skip),
        cmocka_unit_test(test_copy_is_whole_and_its_own),
        cmocka_unit_test(test_a_million_deep),
        cmocka_unit_test(test_a_key_taken_for_an_earlier_one_follows_its_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
