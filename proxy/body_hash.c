/* body_hash.c — XXH64 in pieces (see body_hash.h). The constants and steps
 * are the specification's (xxHash's doc/xxhash_spec.md); unit tests check
 * the published digests. Pure computation: no allocation, no locks. */
#include "proxy/body_hash.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static uint64_t rotl(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

/* Little-endian loads whatever the host (memcpy: no alignment needed). */
static uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint32_t load32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static uint64_t round64(uint64_t acc, uint64_t input)
{
    return rotl(acc + input * P2, 31) * P1;
}

static uint64_t merge(uint64_t acc, uint64_t lane)
{
    return (acc ^ round64(0, lane)) * P1 + P4;
}

/* One 32-byte block: eight bytes into each lane. */
static void block(uint64_t lane[4], const unsigned char *p)
{
    for (int i = 0; i < 4; i++)
        lane[i] = round64(lane[i], load64(p + 8 * i));
}

void tf_body_hash_init(struct tf_body_hash *h)
{
    memset(h, 0, sizeof(*h));
    h->lane[0] = P1 + P2;
    h->lane[1] = P2;
    h->lane[2] = 0;
    h->lane[3] = -P1;
}

void tf_body_hash_feed(struct tf_body_hash *h, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t held = (size_t)(h->bytes % 32);
    h->bytes += len;
    if (held) { /* complete the partial block first */
        size_t take = 32 - held < len ? 32 - held : len;
        memcpy(h->block + held, p, take);
        p += take;
        len -= take;
        if (held + take < 32)
            return;
        block(h->lane, h->block);
    }
    for (; len >= 32; p += 32, len -= 32)
        block(h->lane, p);
    memcpy(h->block, p, len);
}

uint64_t tf_body_hash_value(const struct tf_body_hash *h)
{
    const uint64_t *v = h->lane;
    uint64_t acc;
    if (h->bytes >= 32) {
        acc = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18);
        for (int i = 0; i < 4; i++)
            acc = merge(acc, v[i]);
    } else {
        acc = P5;
    }
    acc += h->bytes;
    const unsigned char *p = h->block;
    size_t left = (size_t)(h->bytes % 32);
    for (; left >= 8; p += 8, left -= 8)
        acc = rotl(acc ^ round64(0, load64(p)), 27) * P1 + P4;
    if (left >= 4) {
        acc = rotl(acc ^ (uint64_t)load32(p) * P1, 23) * P2 + P3;
        p += 4;
        left -= 4;
    }
    for (; left > 0; p++, left--)
        acc = rotl(acc ^ *p * P5, 11) * P1;
    acc ^= acc >> 33;
    acc *= P2;
    acc ^= acc >> 29;
    acc *= P3;
    acc ^= acc >> 32;
    return acc;
}
