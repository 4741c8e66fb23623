/* limits.c — episodes of running into --max-connections or out of
 * descriptors (see limits.h). An episode opens at the first time the limit
 * is met (logged) and ends, logged with how long it lasted (until it was
 * seen gone: an accept that worked), once the limit was seen gone and not
 * met again for a second: a server that keeps meeting it at every accepted
 * connection says it twice, not twice per connection. It never sleeps or
 * takes a lock. */
#include "proxy/limits.h"
#include "proxy/server_internal.h"

#include <errno.h>
#include <string.h>

#include "proxy/log.h"
#include "proxy/platform.h"

#define QUIET_US 1000000u

/* Accepting fails for the whole process: the descriptors are its own. */
static struct tf_episode accept_failures;

/* Met now: true when that opens an episode. */
static bool met(struct tf_episode *e, uint64_t now)
{
    __atomic_store_n(&e->last_us, now, __ATOMIC_RELAXED);
    __atomic_store_n(&e->passed_us, 0, __ATOMIC_RELAXED);
    if (__atomic_fetch_add(&e->count, 1, __ATOMIC_ACQ_REL) != 0)
        return false;
    __atomic_store_n(&e->first_us, now, __ATOMIC_RELAXED);
    return true;
}

/* The limit is not met now: the episode, if one is open, lasted until now
 * (unless it is met again). */
static void seen_gone(struct tf_episode *e)
{
    if (__atomic_load_n(&e->count, __ATOMIC_RELAXED) && !__atomic_load_n(&e->passed_us,
                                                                         __ATOMIC_RELAXED))
        __atomic_store_n(&e->passed_us, tf_now_us(), __ATOMIC_RELAXED);
}

/* An episode seen gone and not met for QUIET_US ends: its count (and
 * *lasted_s: from its start until it was seen gone, not until it was last
 * met, which a single failed accept would make 0.0s however long the wait
 * after it), else 0; one caller gets it. */
static unsigned long ended(struct tf_episode *e, uint64_t now, double *lasted_s)
{
    uint64_t last = __atomic_load_n(&e->last_us, __ATOMIC_RELAXED);
    uint64_t passed = __atomic_load_n(&e->passed_us, __ATOMIC_RELAXED);
    if (!passed || now < last + QUIET_US)
        return 0;
    unsigned long n = __atomic_exchange_n(&e->count, 0, __ATOMIC_ACQ_REL);
    uint64_t first = __atomic_load_n(&e->first_us, __ATOMIC_RELAXED);
    *lasted_s = (double)(passed > first ? passed - first : 0) / 1e6;
    return n;
}

static int open_now(const struct tf_server *server)
{
    return __atomic_load_n(&server->open_connections, __ATOMIC_RELAXED);
}

bool tf_limits_accept_starved(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

void tf_limits_accept_failed(const struct tf_server *server, const char *why)
{
    if (met(&accept_failures, tf_now_us()))
        tf_log_error("cannot accept connections: %s (%d open); new ones wait until "
                     "descriptors are free. Raise the descriptor limit (ulimit -n, systemd's "
                     "LimitNOFILE=) or lower --max-connections (%u); said once until accepting "
                     "works again", why, open_now(server), server->cfg->max_connections);
}

void tf_limits_full(struct tf_server *server, int open)
{
    if (met(&server->full, tf_now_us()))
        tf_log_error("--max-connections %u reached (%d open); new connections wait to be "
                     "accepted until one closes. Raise it (and ulimit -n with it) if this "
                     "server should hold more; said once until below it again",
                     server->cfg->max_connections, open);
}

void tf_limits_connection_started(struct tf_server *server, int open)
{
    seen_gone(&accept_failures);
    if ((unsigned)open >= server->cfg->max_connections)
        tf_limits_full(server, open);
}

bool tf_limits_take_message(struct tf_server *server, const char *msg)
{
    /* by their beginnings: a line that quotes a client's URL has it later */
    static const char accept_error[] = "Error accepting connection: ",
                      resource_limit[] = "Hit process or system resource limit",
                      connection_limit[] = "Server reached connection limit";
    if (!strncmp(msg, accept_error, sizeof(accept_error) - 1)) {
        tf_limits_accept_failed(server, msg + sizeof(accept_error) - 1);
        return true;
    }
    if (!strncmp(msg, resource_limit, sizeof(resource_limit) - 1)) /* follows that error */
        return true;
    if (!strncmp(msg, connection_limit, sizeof(connection_limit) - 1)) {
        tf_limits_full(server, open_now(server));
        return true;
    }
    return false;
}

long tf_limits_tick(struct tf_server *server)
{
    bool full = __atomic_load_n(&server->full.count, __ATOMIC_RELAXED) != 0;
    bool failing = __atomic_load_n(&accept_failures.count, __ATOMIC_RELAXED) != 0;
    if (!full && !failing)
        return -1;
    uint64_t now = tf_now_us();
    double lasted;
    if (full) {
        if ((unsigned)open_now(server) >= server->cfg->max_connections)
            met(&server->full, now);
        else
            seen_gone(&server->full);
        if (ended(&server->full, now, &lasted))
            tf_log_info("below --max-connections %u again, after %.1fs at it",
                        server->cfg->max_connections, lasted);
    }
    unsigned long n = failing ? ended(&accept_failures, now, &lasted) : 0;
    if (n)
        tf_log_info("accepting connections again; %lu attempt%s failed in %.1fs", n,
                    n == 1 ? "" : "s", lasted);
    return QUIET_US / 1000u;
}
