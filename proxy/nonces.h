/* nonces.h — Digest nonces (RFC 7616) for auth.c: each carries its issue
 * time, the id of the table that issued it and a counter under an HMAC, so
 * it cannot be forged and expires after --digest-nonce-lifetime. A table of
 * the highest nonce count (nc) taken per nonce refuses answers seen before.
 * With --workers the front makes that table in memory its workers inherit
 * across their exec (as Apache's mod_auth_digest keeps it in shared memory),
 * so a nonce one worker issued is taken at every other, and an nc taken at
 * one is refused at all. Never logs. */
#ifndef TF_NONCES_H
#define TF_NONCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TF_NONCE_LEN 56         /* 8 hex time, 8 hex table id, 8 hex counter, 32 hex HMAC */
#define TF_NONCE_REALM_MAX 255  /* longest realm a nonce is made for */

struct tf_nonces;

/* The front, --workers: make the table its workers share (a sealed memfd).
 * A descriptor for them to inherit (close-on-exec set), or -1 with the
 * call that failed and why in err ("memfd_create: Function not
 * implemented"); each worker then keeps a table of its own. */
int tf_nonces_table_create(char *err, size_t errlen);

/* A worker, before any tf_nonces_new(): take the front's table from value,
 * TF_AUTH_NONCES_FD's: a descriptor's number in decimal digits only. Once
 * it is found to be a table tf_nonces_table_create made, it is mapped (if
 * use: a worker without Digest does not) and closed. 0, or -1 with errno
 * (EINVAL: not a number, or not such a table; EBADF: not open), and then
 * the descriptor is left open, close-on-exec: what a stray variable names
 * is never closed, nor inherited by the app's programs. Without it the worker keeps a table of its own: the others'
 * nonces are answered stale. */
int tf_nonces_table_share(const char *value, bool use);

/* Nonces under key (32 bytes, copied), good for lifetime_s seconds; in the
 * shared table when there is one, else in one of its own. NULL on out of
 * memory or without random numbers (errno set). */
struct tf_nonces *tf_nonces_new(const unsigned char key[32], uint32_t lifetime_s);
void tf_nonces_free(struct tf_nonces *n);

/* A new nonce for realm (at most TF_NONCE_REALM_MAX bytes). Any thread. */
void tf_nonces_make(struct tf_nonces *n, const char *realm, char out[TF_NONCE_LEN + 1]);

/* Was nonce made under this key for realm (by this process, another worker
 * or an earlier generation of them)? */
bool tf_nonces_ours(const struct tf_nonces *n, const char *realm, const char *nonce);

enum tf_nonce_state {
    TF_NONCE_FRESH,             /* taken: nc is now the highest seen */
    TF_NONCE_OLD,               /* past its lifetime */
    TF_NONCE_ELSEWHERE,         /* issued under another table (a worker that could not
                                   share it) */
    TF_NONCE_FORGOTTEN,         /* left the table (too many nonces issued since) */
    TF_NONCE_NC_USED,           /* this nc was taken before: a replay? */
    TF_NONCE_NC_BEHIND,         /* below the highest nc taken: sent out of order */
    TF_NONCE_NC_ZERO,           /* nc 00000000: counts start at 1 */
};

/* For an answer whose response was verified (nonce ours, nc 8 hex digits):
 * may it be taken? Only TF_NONCE_FRESH is; the others are answered stale so
 * the client retries with a new nonce. Any thread, any worker. */
enum tf_nonce_state tf_nonces_take(struct tf_nonces *n, const char *nonce, const char *nc_hex);

#endif
