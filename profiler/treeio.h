/* treeio.h — a call tree as text, so a front can merge the trees of its
 * worker processes (--workers) into one profile. One line per node, parents
 * first: depth, calls, inclusive ns, inline ns, file, line, function;
 * before them, the calls past the node cap (dropped_calls), so a front's
 * merged tree carries the sum of its workers', and the most requests
 * profiled at once (most_at_once; merged: the largest). A
 * loaded node gets a label that names it exactly as the original did (a
 * stand-in with co_filename/co_firstlineno/co_name, or the built-in's name),
 * and nodes naming the same function share one key, so trees from several
 * processes merge node by node. GIL held for both. */
#ifndef PROF_TREEIO_H
#define PROF_TREEIO_H

#include <stddef.h>

#include "profiler/calltree.h"

/* malloc'd text, NULL on out of memory. */
char *prof_tree_dump(const struct prof_tree *t, size_t *len);
/* Add the tree in text to t (its dropped calls to t's, and nodes past t's
 * cap to them too). Returns 0; 1 when some of its nodes were past t's cap
 * (so counted as dropped); or -1 on malformed text (what was read so far
 * stays added). */
int prof_tree_load(struct prof_tree *t, const char *text, size_t len);

#endif
