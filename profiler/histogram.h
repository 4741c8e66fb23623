/* histogram.h — a log-bucketed latency histogram in microseconds, in the
 * manner of HdrHistogram: exact below 256 us, then 128 buckets per power of
 * two, so any percentile it reports is within 1% of the true value. Fixed
 * size (32 KB), no allocation; not thread-safe (the caller holds the lock).
 * Counts are 64-bit: 2^32 requests in one bucket is months of a busy route,
 * sooner in a front adding up its workers, and a count that wraps or stops
 * (saturates) sends Prometheus counters down or percentiles astray. */
#ifndef PROF_HISTOGRAM_H
#define PROF_HISTOGRAM_H

#include <stdint.h>

#define PROF_HIST_LINEAR 256u         /* exact buckets 0..255 us */
#define PROF_HIST_SUB 128u            /* buckets per power of two above */
#define PROF_HIST_MAGNITUDES 30u      /* 256 us << 30: about 76 hours */
#define PROF_HIST_BUCKETS (PROF_HIST_LINEAR + PROF_HIST_SUB * PROF_HIST_MAGNITUDES)

struct prof_histogram {
    uint64_t count;
    uint64_t sum_us;
    uint64_t max_us;
    uint64_t buckets[PROF_HIST_BUCKETS];
};

void prof_histogram_record(struct prof_histogram *h, uint64_t us);
/* The value at percentile p (0 < p <= 100): the upper bound of the bucket
 * holding that rank, capped at the recorded maximum. 0 when empty. */
uint64_t prof_histogram_percentile(const struct prof_histogram *h, double p);
/* Recorded values <= us (for Prometheus buckets), never one above us: exact
 * when us is a bucket's largest value or no value above us was recorded;
 * else the bucket holding us is left out (values up to 1% below us). */
uint64_t prof_histogram_count_le(const struct prof_histogram *h, uint64_t us);
void prof_histogram_merge(struct prof_histogram *into, const struct prof_histogram *from);

/* Bucket index of a value, and the largest value in a bucket (for tests). */
unsigned prof_histogram_bucket(uint64_t us);
uint64_t prof_histogram_bucket_max(unsigned bucket);

#endif
