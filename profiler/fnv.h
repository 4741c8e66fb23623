/* fnv.h — 64-bit FNV-1a for short keys that never leave the process (a
 * route's in the latency table, a request's in wsgi/fastpath.c): a few
 * instructions a byte, no table. Not keyed: its users bound what chosen
 * collisions can cost (a capped table, a slot two keys share). */
#ifndef PROF_FNV_H
#define PROF_FNV_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PROF_FNV1A_START 1469598103934665603u /* the offset basis: hash of "" */

/* h (PROF_FNV1A_START, or a hash so far) carried on over len bytes of p. */
static inline uint64_t prof_fnv1a(uint64_t h, const void *p, size_t len)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < len; i++)
        h = (h ^ c[i]) * 1099511628211u;
    return h;
}

/* The same over the NUL-terminated string s. */
static inline uint64_t prof_fnv1a_str(uint64_t h, const char *s)
{
    return prof_fnv1a(h, s, strlen(s));
}

#endif
