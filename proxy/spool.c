/* spool.c — request body storage (see spool.h). Memory grows by doubling up to
 * TF_SPOOL_MEMORY_MAX; the first append past it copies the bytes so far into a
 * temp file and every later byte goes straight to that file. */
#include "proxy/spool.h"
#include "proxy/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tf_spool_init(struct tf_spool *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int move_to_file(struct tf_spool *s)
{
    int fd = tf_tempfile();
    if (fd < 0)
        return -1;
    if (write_all(fd, s->mem, (size_t)s->size) < 0) {
        close(fd);
        return -1;
    }
    free(s->mem);
    s->mem = NULL;
    s->mem_cap = 0;
    s->fd = fd;
    return 0;
}

int tf_spool_append(struct tf_spool *s, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    if (s->fd < 0 && s->size + len > TF_SPOOL_MEMORY_MAX && move_to_file(s) < 0)
        return -1;
    if (s->fd >= 0) {
        off_t end = (off_t)s->size;
        if (lseek(s->fd, end, SEEK_SET) < 0 || write_all(s->fd, data, len) < 0) {
            if (ftruncate(s->fd, end) < 0) { /* best effort: keep size consistent */ }
            return -1;
        }
        s->size += len;
        return 0;
    }
    if (s->size + len > s->mem_cap) {
        size_t cap = s->mem_cap ? s->mem_cap : 4096;
        while (cap < s->size + len)
            cap *= 2;
        char *p = realloc(s->mem, cap);
        if (!p)
            return -1;
        s->mem = p;
        s->mem_cap = cap;
    }
    memcpy(s->mem + s->size, data, len);
    s->size += len;
    return 0;
}

int tf_spool_share(struct tf_spool *dst, const struct tf_spool *src)
{
    tf_spool_init(dst);
    if (src->fd >= 0) {
        if ((dst->fd = fcntl(src->fd, F_DUPFD_CLOEXEC, 0)) < 0)
            return -1;
    } else if (src->size > 0) {
        if (!(dst->mem = malloc((size_t)src->size)))
            return -1;
        memcpy(dst->mem, src->mem, (size_t)src->size);
        dst->mem_cap = (size_t)src->size;
    }
    dst->size = src->size;
    return 0;
}

ssize_t tf_spool_read(const struct tf_spool *s, uint64_t off, char *buf, size_t n)
{
    if (off >= s->size)
        return 0;
    if (n > s->size - off)
        n = (size_t)(s->size - off);
    if (s->fd < 0) {
        memcpy(buf, s->mem + off, n);
        return (ssize_t)n;
    }
    for (;;) {
        ssize_t r = pread(s->fd, buf, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        return r;
    }
}

void tf_spool_free(struct tf_spool *s)
{
    free(s->mem);
    if (s->fd >= 0)
        close(s->fd);
    tf_spool_init(s);
}
