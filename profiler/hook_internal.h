/* hook_internal.h — what hook.c (the collector: it owns the accumulated
 * tree and the slowest requests' trees) shares with hook_export.c (those
 * trees out as exports and pages, and in from other processes). Nothing
 * else includes it. The GIL guards every tree: call these with it held. */
#ifndef PROF_HOOK_INTERNAL_H
#define PROF_HOOK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "profiler/calltree.h"

/* The accumulated tree, initialised on first use. */
struct prof_tree *prof_hook_accumulated(void);
/* The tree kept for request id (one of the slowest) and *app_ns, its time
 * in the profiled code; NULL when none is kept for it. */
const struct prof_tree *prof_hook_kept_tree(uint64_t id, uint64_t *app_ns);
/* Are built-in calls profiled (prof_hook_configure's builtins)? Read-only
 * after it: any thread. */
bool prof_hook_profiles_builtins(void);

#endif
