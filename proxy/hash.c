/* hash.c — MD5 and SHA-1 written from RFC 1321 and FIPS 180-4 (see hash.h):
 * a few lines of public-domain-style code instead of a crypto library, for
 * legacy password formats only. Both share the block buffering and padding;
 * only the compression function and the byte order differ. Never allocates. */
#include "proxy/hash.h"

#include <string.h>

#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

typedef void (*compress_fn)(uint32_t *state, const unsigned char block[64]);

/* Append data to a block-buffered digest, compressing each full block. */
static void feed(uint32_t *state, uint64_t *bytes, unsigned char block[64], compress_fn compress,
                 const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t used = (size_t)(*bytes % 64);
    *bytes += len;
    if (used) {
        size_t take = 64 - used < len ? 64 - used : len;
        memcpy(block + used, p, take);
        p += take;
        len -= take;
        if (used + take < 64)
            return;
        compress(state, block);
    }
    for (; len >= 64; p += 64, len -= 64)
        compress(state, p);
    memcpy(block, p, len);
}

/* The final padding: 0x80, zeros, and the bit length (little-endian for MD5,
 * big-endian for SHA-1) so that the message ends on a block boundary. */
static void pad(uint32_t *state, uint64_t *bytes, unsigned char block[64], compress_fn compress,
                int big_endian)
{
    static const unsigned char first[64] = { 0x80 };
    uint64_t bits = *bytes * 8;
    size_t used = (size_t)(*bytes % 64);
    feed(state, bytes, block, compress, first, used < 56 ? 56 - used : 120 - used);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(bits >> (big_endian ? 56 - 8 * i : 8 * i));
    feed(state, bytes, block, compress, len, 8);
}

void tf_hex(const unsigned char *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = 0;
}

/* --- MD5 ---------------------------------------------------------------- */

/* Per-step shift amounts and K[i] = floor(2^32 * |sin(i + 1)|). */
static const unsigned char md5_shifts[64] = {
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
};
static const uint32_t md5_sines[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

static void md5_compress(uint32_t *state, const unsigned char block[64])
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)block[4 * i] | (uint32_t)block[4 * i + 1] << 8 |
               (uint32_t)block[4 * i + 2] << 16 | (uint32_t)block[4 * i + 3] << 24;
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16)
            f = (b & c) | (~b & d), g = i;
        else if (i < 32)
            f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
        else if (i < 48)
            f = b ^ c ^ d, g = (3 * i + 5) % 16;
        else
            f = c ^ (b | ~d), g = (7 * i) % 16;
        uint32_t t = d;
        d = c;
        c = b;
        b = b + ROTL(a + f + md5_sines[i] + m[g], md5_shifts[i]);
        a = t;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
}

void tf_md5_init(struct tf_md5 *ctx)
{
    static const uint32_t h[4] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476 };
    memcpy(ctx->state, h, sizeof(h));
    ctx->bytes = 0;
}

void tf_md5_update(struct tf_md5 *ctx, const void *data, size_t len)
{
    feed(ctx->state, &ctx->bytes, ctx->block, md5_compress, data, len);
}

void tf_md5_final(struct tf_md5 *ctx, unsigned char digest[16])
{
    pad(ctx->state, &ctx->bytes, ctx->block, md5_compress, 0);
    for (int i = 0; i < 16; i++)
        digest[i] = (unsigned char)(ctx->state[i / 4] >> (8 * (i % 4)));
}

void tf_md5_hex(const void *data, size_t len, char hex[33])
{
    struct tf_md5 ctx;
    unsigned char d[16];
    tf_md5_init(&ctx);
    tf_md5_update(&ctx, data, len);
    tf_md5_final(&ctx, d);
    tf_hex(d, 16, hex);
}

void tf_hmac_md5(const void *key, size_t key_len, const void *msg, size_t len,
                 unsigned char mac[16])
{
    unsigned char ipad[64] = { 0 }, opad[64] = { 0 }, inner[16];
    memcpy(ipad, key, key_len > 64 ? 64 : key_len);
    memcpy(opad, ipad, 64);
    for (int i = 0; i < 64; i++) {
        ipad[i] ^= 0x36;
        opad[i] ^= 0x5c;
    }
    struct tf_md5 ctx;
    tf_md5_init(&ctx);
    tf_md5_update(&ctx, ipad, 64);
    tf_md5_update(&ctx, msg, len);
    tf_md5_final(&ctx, inner);
    tf_md5_init(&ctx);
    tf_md5_update(&ctx, opad, 64);
    tf_md5_update(&ctx, inner, 16);
    tf_md5_final(&ctx, mac);
}

/* --- SHA-1 -------------------------------------------------------------- */

static void sha1_compress(uint32_t *state, const unsigned char block[64])
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = ROTL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)
            f = (b & c) | (~b & d), k = 0x5a827999;
        else if (i < 40)
            f = b ^ c ^ d, k = 0x6ed9eba1;
        else if (i < 60)
            f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
        else
            f = b ^ c ^ d, k = 0xca62c1d6;
        uint32_t t = ROTL(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = ROTL(b, 30);
        b = a;
        a = t;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
}

void tf_sha1_init(struct tf_sha1 *ctx)
{
    static const uint32_t h[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };
    memcpy(ctx->state, h, sizeof(h));
    ctx->bytes = 0;
}

void tf_sha1_update(struct tf_sha1 *ctx, const void *data, size_t len)
{
    feed(ctx->state, &ctx->bytes, ctx->block, sha1_compress, data, len);
}

void tf_sha1_final(struct tf_sha1 *ctx, unsigned char digest[20])
{
    pad(ctx->state, &ctx->bytes, ctx->block, sha1_compress, 1);
    for (int i = 0; i < 20; i++)
        digest[i] = (unsigned char)(ctx->state[i / 4] >> (24 - 8 * (i % 4)));
}
