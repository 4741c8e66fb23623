/* histogram.c — see histogram.h. Bucket b >= 256 covers
 * [ (128 + s) << m, ((129 + s) << m) - 1 ] with m = (b - 256) / 128 + 1 and
 * s = (b - 256) % 128: its width over its lower bound is at most 1/128. */
#include "profiler/histogram.h"

unsigned prof_histogram_bucket(uint64_t us)
{
    if (us < PROF_HIST_LINEAR)
        return (unsigned)us;
    unsigned top = 63u - (unsigned)__builtin_clzll(us); /* us >= 256: top >= 8 */
    unsigned m = top - 7u;                              /* shift that leaves 8 bits */
    if (m > PROF_HIST_MAGNITUDES)
        return PROF_HIST_BUCKETS - 1;
    unsigned s = (unsigned)(us >> m) - PROF_HIST_SUB;   /* 0..127 */
    return PROF_HIST_LINEAR + (m - 1u) * PROF_HIST_SUB + s;
}

uint64_t prof_histogram_bucket_max(unsigned b)
{
    if (b < PROF_HIST_LINEAR)
        return b;
    unsigned m = (b - PROF_HIST_LINEAR) / PROF_HIST_SUB + 1u;
    uint64_t s = (b - PROF_HIST_LINEAR) % PROF_HIST_SUB;
    return ((PROF_HIST_SUB + s + 1u) << m) - 1u;
}

void prof_histogram_record(struct prof_histogram *h, uint64_t us)
{
    h->buckets[prof_histogram_bucket(us)]++;
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

uint64_t prof_histogram_percentile(const struct prof_histogram *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < PROF_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t v = prof_histogram_bucket_max(b);
            return v < h->max_us ? v : h->max_us;
        }
    }
    return h->max_us;
}

uint64_t prof_histogram_count_le(const struct prof_histogram *h, uint64_t us)
{
    /* Prometheus' le bounds (1 s = 1000000 us) are never a log bucket's
     * edge above 255 us: the bucket holding the bound also holds values up to
     * 1% above it, which must not be counted as <= le. So only whole buckets
     * are counted; the values of the one the bound cuts count from the next
     * bound on (at most 1% of the range below a bound, counted late rather
     * than values above it counted early). The last bucket also holds every
     * larger value: never whole. */
    if (h->max_us <= us)
        return h->count;
    uint64_t n = 0;
    for (unsigned b = 0; b < PROF_HIST_BUCKETS - 1 && prof_histogram_bucket_max(b) <= us; b++)
        n += h->buckets[b];
    return n;
}

void prof_histogram_merge(struct prof_histogram *into, const struct prof_histogram *from)
{
    for (unsigned b = 0; b < PROF_HIST_BUCKETS; b++)
        into->buckets[b] += from->buckets[b];
    into->count += from->count;
    into->sum_us += from->sum_us;
    if (from->max_us > into->max_us)
        into->max_us = from->max_us;
}
