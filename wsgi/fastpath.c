/* fastpath.c — the memory behind inline runs (see fastpath.h): a table of
 * slots indexed by 12 bits of the key, each one 64-bit word holding 48
 * other bits of it (the tag) and its streak of fast calls. Two keys that share a
 * slot evict each other, which only delays inlining. The starts of the
 * inline calls running now are kept per network thread. */
#include "wsgi/fastpath.h"

#include "profiler/fnv.h"

#define SLOTS 4096 /* WSGI_FASTPATH_SLOT's range */
#define STREAK_MAX 0xffffu

static uint64_t slots[SLOTS];                        /* atomic: tag << 16 | streak */
static uint64_t running_since[WSGI_FASTPATH_RUNNERS]; /* atomic: 0, or an inline call's start */
static unsigned runners_seen;                        /* atomic: highest runner + 1 */

uint64_t wsgi_fastpath_key(const char *method, const char *target)
{
    uint64_t h = prof_fnv1a_str(PROF_FNV1A_START, method);
    return prof_fnv1a_str(prof_fnv1a(h, " ", 1), target); /* "GET /path" */
}

static uint64_t *slot_of(uint64_t key)
{
    return &slots[WSGI_FASTPATH_SLOT(key)];
}

static uint64_t tag_of(uint64_t key)
{
    return key & 0xffffffffffffu;
}

bool wsgi_fastpath_ok(uint64_t key, uint64_t now_us)
{
    uint64_t v = __atomic_load_n(slot_of(key), __ATOMIC_RELAXED);
    if (v >> 16 != tag_of(key) || (v & STREAK_MAX) < WSGI_FASTPATH_STREAK)
        return false;
    unsigned n = __atomic_load_n(&runners_seen, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        uint64_t since = __atomic_load_n(&running_since[i], __ATOMIC_RELAXED);
        if (since && since < now_us && now_us - since >= WSGI_FASTPATH_LONG_US)
            return false; /* an inline call is running long: its path may be stuck */
    }
    return true;
}

void wsgi_fastpath_note(uint64_t key, uint64_t took_us)
{
    uint64_t *slot = slot_of(key);
    uint64_t v = __atomic_load_n(slot, __ATOMIC_RELAXED), next;
    do {
        uint64_t streak = v >> 16 == tag_of(key) ? v & STREAK_MAX : 0;
        if (took_us >= WSGI_FASTPATH_LONG_US)
            streak = 0;
        else if (streak < STREAK_MAX)
            streak++;
        next = tag_of(key) << 16 | streak;
    } while (!__atomic_compare_exchange_n(slot, &v, next, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
}

int wsgi_fastpath_begin(unsigned runner, uint64_t now_us)
{
    if (runner >= WSGI_FASTPATH_RUNNERS)
        return -1;
    __atomic_store_n(&running_since[runner], now_us ? now_us : 1, __ATOMIC_RELAXED);
    unsigned seen = __atomic_load_n(&runners_seen, __ATOMIC_RELAXED);
    while (seen <= runner &&
           !__atomic_compare_exchange_n(&runners_seen, &seen, runner + 1, true, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED)) {
    }
    return 0;
}

void wsgi_fastpath_end(unsigned runner)
{
    if (runner < WSGI_FASTPATH_RUNNERS)
        __atomic_store_n(&running_since[runner], 0, __ATOMIC_RELAXED);
}

void wsgi_fastpath_reset(void)
{
    for (unsigned i = 0; i < SLOTS; i++)
        __atomic_store_n(&slots[i], 0, __ATOMIC_RELAXED);
}
