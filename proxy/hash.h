/* hash.h — the two message digests that legacy password formats are defined
 * in terms of: MD5 (RFC 1321) for $apr1$ hashes, htdigest files and HTTP
 * Digest responses (RFC 2617), SHA-1 (FIPS 180-4) for htpasswd's {SHA}.
 * Both are broken as general-purpose hashes: never use them for anything new. */
#ifndef TF_HASH_H
#define TF_HASH_H

#include <stddef.h>
#include <stdint.h>

struct tf_md5 {
    uint32_t state[4];
    uint64_t bytes;             /* message length so far */
    unsigned char block[64];    /* partial block */
};

struct tf_sha1 {
    uint32_t state[5];
    uint64_t bytes;
    unsigned char block[64];
};

void tf_md5_init(struct tf_md5 *ctx);
void tf_md5_update(struct tf_md5 *ctx, const void *data, size_t len);
void tf_md5_final(struct tf_md5 *ctx, unsigned char digest[16]);
/* One-shot: the MD5 of data as 32 lowercase hex digits and a NUL. */
void tf_md5_hex(const void *data, size_t len, char hex[33]);

void tf_sha1_init(struct tf_sha1 *ctx);
void tf_sha1_update(struct tf_sha1 *ctx, const void *data, size_t len);
void tf_sha1_final(struct tf_sha1 *ctx, unsigned char digest[20]);

/* Lowercase hex of n bytes into out (2n + 1 chars with the NUL). */
void tf_hex(const unsigned char *bytes, size_t n, char *out);

/* HMAC-MD5 (RFC 2104) of msg under key (at most 64 bytes). */
void tf_hmac_md5(const void *key, size_t key_len, const void *msg, size_t len,
                 unsigned char mac[16]);

#endif
