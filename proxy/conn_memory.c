/* conn_memory.c — gives back the memory a spike of client connections
 * leaves (see conn_memory.h). Each open connection holds libmicrohttpd's
 * pool (TF_CONNECTION_POOL, 32 KiB: 0.9.75 takes it from malloc, mapping
 * only larger ones), and glibc keeps freed heap memory for later: 10,000
 * keep-alive connections left the process 330 MB bigger for good after they
 * closed. So once the connections open fall to a quarter of their peak since
 * the last trim, a peak of TRIM_PEAK or more, malloc_trim(0) hands the free
 * pages back (madvise; what is in use stays), at most a few times per spike
 * (each trim takes the connections open then as the next peak). It takes
 * up to tens of ms (64 ms for 240 MB left in 7,500 holes), so a network
 * thread steps away from its loop for it (a spare thread carries on). It
 * never takes a lock of its own. */
#include "proxy/conn_memory.h"

#include <malloc.h>
#include <stdbool.h>

#include "proxy/loop.h"

#define TRIM_PEAK 512 /* connections: 16 MiB of pools */

static int open_now; /* atomic */
static int peak;     /* atomic: the most open since the last trim */

void tf_conn_memory_opened(void)
{
    int open = __atomic_add_fetch(&open_now, 1, __ATOMIC_RELAXED);
    int seen = __atomic_load_n(&peak, __ATOMIC_RELAXED);
    while (open > seen && !__atomic_compare_exchange_n(&peak, &seen, open, false,
                                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static void trim(void *arg)
{
    (void)arg;
    malloc_trim(0);
}

void tf_conn_memory_closed(void)
{
    int open = __atomic_sub_fetch(&open_now, 1, __ATOMIC_RELAXED);
    int seen = __atomic_load_n(&peak, __ATOMIC_RELAXED);
    if (seen < TRIM_PEAK || open > seen / 4)
        return;
    if (__atomic_compare_exchange_n(&peak, &seen, open, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) { /* one thread trims */
        struct tf_loop *loop = tf_loop_current();
        if (!loop || tf_loop_step_away(loop, trim, NULL) < 0)
            trim(NULL);
    }
}
