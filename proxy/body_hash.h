/* body_hash.h — the 64-bit hash --mirror compares answer bodies by: XXH64
 * (seed 0), the algorithm of Yann Collet's xxHash, written here from its
 * specification (no dependency). It reads eight bytes per step in four
 * independent lanes, many times faster than the byte-at-a-time FNV-1a it
 * replaces, which took most of a network thread's time on a large copy.
 * Fed in pieces of any sizes, it gives the hash of their concatenation, so
 * two backends' bodies compare whatever their chunking. Not a MAC: equal
 * hashes mean equal bodies only by overwhelming likelihood. */
#ifndef TF_BODY_HASH_H
#define TF_BODY_HASH_H

#include <stddef.h>
#include <stdint.h>

struct tf_body_hash {
    uint64_t lane[4];
    uint64_t bytes;             /* fed so far */
    unsigned char block[32];    /* the partial block: bytes % 32 of them */
};

void tf_body_hash_init(struct tf_body_hash *h);
void tf_body_hash_feed(struct tf_body_hash *h, const void *data, size_t len);
/* The hash of everything fed so far; h is left as it was (feeding may go on). */
uint64_t tf_body_hash_value(const struct tf_body_hash *h);

#endif
