/* Unit tests for profiler/latency_dump.c: a front (--workers) reading its
 * workers' registries as text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "profiler/latency.h"

/* A worker's route whose 1 us bucket holds 5e9 requests and whose 2 s
 * bucket (1908) one: read as 32 bits, the 5e9 wrapped to 705032704, so
 * Prometheus' le="0.0005" read that and p50 read 2 s. */
static void test_bucket_counts_past_32_bits_are_read_whole(void **state)
{
    (void)state;
    const char *dump = "T\t5000000001\t0\n"
                       "R\t/a\t0\t0 0 5000000001 0 0 0"
                       "\t5000000001 7000000000 2000000 1:5000000000 1908:1"
                       "\t0 0 0\t0 0 0\t0 0 0\t0 0 0\t0 0 0\t0\n";
    int in_flight = 0;
    assert_int_equal(prof_latency_load(dump, strlen(dump), &in_flight), 0);
    char *json = prof_latency_json(0);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"count\":5000000001,"));
    if (!strstr(json, "\"p50_us\":1,"))
        fail_msg("p50 is not 1 us: %s", json);
    free(json);
    char *prom = prof_latency_prometheus(0);
    assert_non_null(prom);
    if (!strstr(prom, "tracfront_request_duration_seconds_bucket{route=\"/a\",backend=\"wsgi\","
                      "le=\"0.0005\"} 5000000000\n"))
        fail_msg("le=0.0005 is not 5000000000: %s", prom);
    free(prom);
    char *again = prof_latency_dump(0); /* the front's own dump (kept when a worker ends) */
    assert_non_null(again);
    assert_non_null(strstr(again, " 1:5000000000 1908:1"));
    free(again);
}

int main(void)
{
    if (prof_latency_init(10, 4) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_counts_past_32_bits_are_read_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
