/* flame.h — an inline SVG flame graph of the accumulated call tree for the
 * profile page: frame width is inclusive time, depth is the call stack, and
 * every frame is a link that zooms the graph to it (?zoom=N, N a preorder
 * node number of the current tree). No JavaScript. GIL held. */
#ifndef PROF_FLAME_H
#define PROF_FLAME_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#include "profiler/calltree.h"

/* An HTML fragment (heading + SVG); malloc'd, NULL on error. zoom 0 = all.
 * Frame links are base_href + "zoom=N#flame" (base_href ends in ? or &). */
char *prof_flame_html(const struct prof_tree *t, unsigned long zoom, const char *base_href,
                      size_t *len);

#endif
