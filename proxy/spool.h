/* spool.h — a request body held in memory up to a threshold, then moved to an
 * anonymous temporary file, so a 1 GiB upload costs disk, not RSS. Written by
 * the I/O thread while the body arrives, read by one app thread afterwards;
 * never both at once, so there is no lock. */
#ifndef TF_SPOOL_H
#define TF_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TF_SPOOL_MEMORY_MAX (256u * 1024u)

struct tf_spool {
    char *mem;          /* owned; NULL once moved to fd */
    size_t mem_cap;
    uint64_t size;
    int fd;             /* -1 while in memory */
};

void tf_spool_init(struct tf_spool *s);
/* Append; returns 0, or -1 (errno set) with the spool unchanged. */
int tf_spool_append(struct tf_spool *s, const char *data, size_t len);
/* A second spool with src's bytes, for a reader of its own (a --mirror
 * copy of the request): the bytes in memory are copied, a file is shared
 * through a duplicate descriptor. From then on neither may be appended to
 * (both read it with pread). 0, or -1 (errno set) with dst empty. */
int tf_spool_share(struct tf_spool *dst, const struct tf_spool *src);
/* Copy up to n bytes at off; returns the count (0 at the end) or -1. */
ssize_t tf_spool_read(const struct tf_spool *s, uint64_t off, char *buf, size_t n);
void tf_spool_free(struct tf_spool *s);

#endif
