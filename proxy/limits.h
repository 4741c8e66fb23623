/* limits.h — the server running into a limit on connections (server-internal,
 * like server_internal.h): --max-connections, and accepting a connection
 * failing for want of a descriptor or memory. Either is met again at every
 * connection while it lasts, so each is said once per episode, with what to
 * do, and again when it has passed, with how long it lasted (and how many
 * accepts failed), not once per connection. Any thread; no lock. */
#ifndef TF_LIMITS_H
#define TF_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

struct tf_server;

/* One limit being met: atomics, zero = no episode. */
struct tf_episode {
    unsigned long count;        /* times met in this episode */
    uint64_t first_us, last_us; /* monotonic: its start and the last time met */
    uint64_t passed_us;         /* when first seen gone since it was last met; 0 = not */
};

/* After an accept failed for want of a descriptor or memory, it is tried
 * again this much later (nginx: 500 ms), not at once: that took a CPU. */
#define TF_ACCEPT_RETRY_MS 250u

/* Whether accept's errno err is one of those: out of descriptors or memory. */
bool tf_limits_accept_starved(int err);
/* Accepting a connection failed (why: the system's words, strerror). The
 * descriptors are the process's: one episode per process. */
void tf_limits_accept_failed(const struct tf_server *server, const char *why);
/* A connection started: accepting works again; counted against
 * --max-connections (open: the server's connections now open). */
void tf_limits_connection_started(struct tf_server *server, int open);
/* --max-connections reached (the worker's acceptor, while it waits). */
void tf_limits_full(struct tf_server *server, int open);
/* A libmicrohttpd message about these limits: counted in its episode and
 * true (the caller logs nothing), else false. */
bool tf_limits_take_message(struct tf_server *server, const char *msg);
/* From the network threads' ticks: end the episodes that passed a second
 * ago (logged). The ms until it wants to look again, or -1 (none open). */
long tf_limits_tick(struct tf_server *server);

#endif
