/* linger.c — lingering closes (see linger.h): sockets whose answer is sent,
 * shut down for writing, read and dropped from until the client closes or a
 * limit is up. Each is watched on the lingerer's loop; the limits in time are
 * looked at from the caller's tick (tf_linger_sweep). Nothing here knows
 * HTTP or libmicrohttpd: a socket is a descriptor and a few counters. */
#include "proxy/linger.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/loop.h"
#include "proxy/platform.h"

#define DRAIN_BUF (64u * 1024u)
#define DRAIN_READS 16 /* per wake-up: a fast sender does not hold the loop */

const struct tf_linger_limits tf_linger_default = {
    .max_sockets = 64,
    .max_bytes = 64u * 1024u * 1024u,
    .total_us = 30u * 1000000u,
    .quiet_us = 5u * 1000000u,
};

struct lingering {
    struct lingering *prev, *next;
    struct tf_lingerer *owner;
    int fd;
    uint64_t since, last_read; /* monotonic us */
    uint64_t bytes;
};

struct tf_lingerer {
    struct tf_loop *loop;
    struct tf_linger_limits limits;
    uint64_t (*clock)(void);        /* every time here is its */
    struct lingering *head, *tail;  /* oldest first */
    unsigned count;
    char *buf; /* DRAIN_BUF bytes, where drained data goes */
};

struct tf_lingerer *tf_linger_new(struct tf_loop *loop, const struct tf_linger_limits *limits,
                                  uint64_t (*clock)(void))
{
    struct tf_lingerer *l = calloc(1, sizeof(*l));
    if (!l || !(l->buf = malloc(DRAIN_BUF))) {
        free(l);
        return NULL;
    }
    l->loop = loop;
    l->limits = *limits;
    l->clock = clock ? clock : tf_now_us;
    return l;
}

static void finish(struct lingering *s)
{
    struct tf_lingerer *l = s->owner;
    tf_loop_unwatch(l->loop, s->fd);
    close(s->fd);
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        l->tail = s->prev;
    l->count--;
    free(s);
}

void tf_linger_free(struct tf_lingerer *l)
{
    if (!l)
        return;
    while (l->head)
        finish(l->head);
    free(l->buf);
    free(l);
}

/* Read what the client sent and drop it; closed at its end, an error, or
 * past max_bytes. */
static void on_readable(void *ctx, int fd, uint32_t events)
{
    (void)events;
    struct lingering *s = ctx;
    struct tf_lingerer *l = s->owner;
    for (int i = 0; i < DRAIN_READS; i++) {
        ssize_t n = recv(fd, l->buf, DRAIN_BUF, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0 || (s->bytes += (uint64_t)n) > l->limits.max_bytes) {
            finish(s);
            return;
        }
        s->last_read = l->clock();
    }
}

int tf_linger_add(struct tf_lingerer *l, int fd)
{
    struct lingering *s = l->count < l->limits.max_sockets ? calloc(1, sizeof(*s)) : NULL;
    if (!s || shutdown(fd, SHUT_WR) < 0) {
        free(s);
        close(fd);
        return -1;
    }
    uint64_t now = l->clock();
    *s = (struct lingering){ .owner = l, .fd = fd, .since = now, .last_read = now,
                             .prev = l->tail };
    if (tf_loop_watch(l->loop, fd, EPOLLIN | EPOLLRDHUP, on_readable, s) < 0) {
        free(s);
        close(fd);
        return -1;
    }
    if (l->tail)
        l->tail->next = s;
    else
        l->head = s;
    l->tail = s;
    l->count++;
    return 0;
}

bool tf_linger_close_oldest(struct tf_lingerer *l)
{
    if (!l || !l->head)
        return false;
    finish(l->head);
    return true;
}

long tf_linger_sweep(struct tf_lingerer *l)
{
    if (!l->head) /* every turn of a loop: no clock read for nothing */
        return -1;
    uint64_t next = UINT64_MAX, now = l->clock();
    struct lingering *after;
    for (struct lingering *s = l->head; s; s = after) {
        after = s->next;
        uint64_t quiet_end = s->last_read + l->limits.quiet_us;
        uint64_t end = s->since + l->limits.total_us;
        if (quiet_end < end)
            end = quiet_end;
        if (now >= end) {
            finish(s);
            continue;
        }
        if (end < next)
            next = end;
    }
    return next == UINT64_MAX ? -1 : (long)((next - now) / 1000u) + 1;
}

unsigned tf_linger_count(const struct tf_lingerer *l)
{
    return l ? l->count : 0;
}
