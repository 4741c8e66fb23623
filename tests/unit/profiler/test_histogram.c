/* Unit tests for profiler/histogram.c: bucket bounds, the 1% error promise,
 * percentiles against a sorted reference, merge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "profiler/histogram.h"

static void test_buckets_cover_values_within_one_percent(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 5000000; v = v < 1000 ? v + 1 : v + v / 997 + 1) {
        unsigned b = prof_histogram_bucket(v);
        uint64_t hi = prof_histogram_bucket_max(b);
        uint64_t lo = b == 0 ? 0 : prof_histogram_bucket_max(b - 1) + 1;
        if (v < lo || v > hi)
            fail_msg("value %llu outside its bucket [%llu, %llu]", (unsigned long long)v,
                     (unsigned long long)lo, (unsigned long long)hi);
        if (v >= 256 && (double)(hi - lo) / (double)lo > 0.01)
            fail_msg("bucket [%llu, %llu] wider than 1%%", (unsigned long long)lo,
                     (unsigned long long)hi);
    }
    assert_int_equal(prof_histogram_bucket(255), 255);
    assert_int_equal(prof_histogram_bucket(256), 256);
    assert_int_equal(prof_histogram_bucket(UINT64_MAX), PROF_HIST_BUCKETS - 1);
}

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_percentiles_match_sorted_values(void **state)
{
    (void)state;
    enum { N = 20000 };
    static uint64_t values[N];
    static struct prof_histogram h;
    memset(&h, 0, sizeof(h));
    srand(7);
    for (int i = 0; i < N; i++) {
        values[i] = (uint64_t)(rand() % 1000) * (uint64_t)(1 + rand() % 500); /* skewed */
        prof_histogram_record(&h, values[i]);
    }
    qsort(values, N, sizeof(values[0]), cmp);
    const double ps[] = { 50, 90, 99, 99.9, 100 };
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        uint64_t want = values[(size_t)(ps[i] / 100.0 * N + 0.999999) - 1];
        uint64_t got = prof_histogram_percentile(&h, ps[i]);
        double err = want ? ((double)got - (double)want) / (double)want : (double)got;
        if (err < 0 || err > 0.01)
            fail_msg("p%g: got %llu, want %llu (error %.4f)", ps[i], (unsigned long long)got,
                     (unsigned long long)want, err);
    }
    assert_int_equal(prof_histogram_percentile(&h, 100), values[N - 1]);
    assert_int_equal(h.count, N);
}

static void test_count_le_and_merge(void **state)
{
    (void)state;
    static struct prof_histogram a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    prof_histogram_record(&a, 5);
    prof_histogram_record(&a, 100);
    prof_histogram_record(&b, 1000);
    prof_histogram_record(&b, 5000000);
    prof_histogram_merge(&a, &b);
    assert_int_equal(a.count, 4);
    assert_int_equal(a.max_us, 5000000);
    assert_int_equal(a.sum_us, 5001105);
    assert_int_equal(prof_histogram_count_le(&a, 100), 2);
    assert_int_equal(prof_histogram_count_le(&a, 4), 0);
    assert_int_equal(prof_histogram_count_le(&a, 1000000), 3);
    struct prof_histogram empty;
    memset(&empty, 0, sizeof(empty));
    assert_int_equal(prof_histogram_percentile(&empty, 50), 0);
}

/* Prometheus' le: a bucket counts values <= its bound, never one above it,
 * also when the bound falls inside a log bucket ([1000, 1003] holds 1 ms). */
static void test_count_le_never_counts_values_above_the_bound(void **state)
{
    (void)state;
    static struct prof_histogram h;
    memset(&h, 0, sizeof(h));
    prof_histogram_record(&h, 1002);
    prof_histogram_record(&h, 1000001); /* 1 s and 1 us */
    prof_histogram_record(&h, 3000000);
    assert_int_equal(prof_histogram_bucket(1000), prof_histogram_bucket(1002));
    assert_int_equal(prof_histogram_count_le(&h, 1000), 0);
    assert_int_equal(prof_histogram_count_le(&h, 1003), 1); /* a bucket's edge: exact */
    assert_int_equal(prof_histogram_count_le(&h, 1000000), 1);
    assert_int_equal(prof_histogram_count_le(&h, 3000000), 3); /* the largest: all */
    /* against the exact counts: never above, below by at most the values in
     * the 1% under the bound */
    static const uint64_t bounds[] = { 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
                                       250000, 500000, 1000000, 2500000, 5000000, 10000000 };
    enum { N = 20000 };
    static uint64_t values[N];
    memset(&h, 0, sizeof(h));
    srand(11);
    for (int i = 0; i < N; i++) {
        values[i] = (uint64_t)(rand() % 20000) * (uint64_t)(1 + rand() % 600);
        prof_histogram_record(&h, values[i]);
    }
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        uint64_t exact = 0, near = 0;
        for (int i = 0; i < N; i++) {
            exact += values[i] <= bounds[b];
            near += values[i] <= bounds[b] && values[i] * 100 > bounds[b] * 99;
        }
        uint64_t got = prof_histogram_count_le(&h, bounds[b]);
        if (got > exact || got + near < exact)
            fail_msg("le %llu: got %llu, exact %llu (%llu within 1%% below)",
                     (unsigned long long)bounds[b], (unsigned long long)got,
                     (unsigned long long)exact, (unsigned long long)near);
    }
}

/* A bucket holds more than 2^32 values (a busy route over months, or a
 * front adding up its workers): 32-bit buckets wrapped, so Prometheus
 * counters went down and percentiles jumped to the maximum. */
static void test_bucket_counts_pass_32_bits(void **state)
{
    (void)state;
    static struct prof_histogram a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    unsigned ms = prof_histogram_bucket(1000);
    a.buckets[ms] = UINT32_MAX; /* as if recorded 2^32 - 1 times */
    a.count = UINT32_MAX;
    a.sum_us = 1000ull * UINT32_MAX;
    a.max_us = 1000;
    prof_histogram_record(&a, 1000);
    prof_histogram_record(&a, 2000000);
    assert_int_equal(a.buckets[ms], 1ull << 32);
    assert_int_equal(prof_histogram_count_le(&a, 1003), 1ull << 32);
    assert_int_equal(prof_histogram_count_le(&a, 1000000), 1ull << 32);
    assert_int_equal(prof_histogram_percentile(&a, 99), prof_histogram_bucket_max(ms));
    /* a front adds up two such workers */
    b.buckets[ms] = UINT32_MAX;
    b.count = UINT32_MAX;
    prof_histogram_merge(&a, &b);
    assert_int_equal(a.buckets[ms], (1ull << 32) + UINT32_MAX);
    assert_int_equal(prof_histogram_count_le(&a, 1000000), a.count - 1);
    assert_int_equal(prof_histogram_percentile(&a, 99.9), prof_histogram_bucket_max(ms));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_cover_values_within_one_percent),
        cmocka_unit_test(test_percentiles_match_sorted_values),
        cmocka_unit_test(test_count_le_and_merge),
        cmocka_unit_test(test_count_le_never_counts_values_above_the_bound),
        cmocka_unit_test(test_bucket_counts_pass_32_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
