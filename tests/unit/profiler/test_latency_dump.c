/* Unit tests for profiler/latency_dump.c: a front (--workers) reading its
 * workers' registries as text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "profiler/latency.h"

#define MAX_ROUTES 10

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

/* A worker's dump with n requests of 1 us under each of the keys. */
static char *worker_dump(const char *const *keys, unsigned n)
{
    static char text[4096];
    size_t o = 0;
    for (; *keys; keys++)
        o += (size_t)snprintf(text + o, sizeof(text) - o,
                              "R\t%s\t0\t0 0 %u 0 0 0\t%u %u 1 1:%u\t0 0 0\t0 0 0\t0 0 0"
                              "\t0 0 0\t0 0 0\t0\n", *keys, n, n, n, n);
    return text;
}

/* The JSON row of key (its text up to the next row). */
static char *row_of(const char *json, const char *key, char *out, size_t cap)
{
    char route[64];
    snprintf(route, sizeof(route), "{\"route\":\"%s\"", key);
    const char *at = strstr(json, route);
    if (!at)
        fail_msg("no row %s in %s", key, json);
    size_t n = strcspn(at + 1, "{");
    snprintf(out, cap, "%.*s", (int)(n < cap - 1 ? n : cap - 1), at);
    return out;
}

/* Each worker gives its --profile-max-routes slots to its own first
 * routes: /a has a slot in one worker, and in another that filled its
 * slots first its /a requests are in (other). The front's /a row holds
 * only part of /a's requests, and says so (whatever order the dumps come
 * in); /b and /c, with a slot wherever they were seen, do not. */
static void test_a_row_some_worker_counted_under_other_is_partial(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        prof_latency_reset();
        static const char *const first[] = { "/a", NULL };
        static const char *const second[] = { "(other)", "/b", "/c", NULL };
        int in_flight = 0;
        for (int i = 0; i < 2; i++) {
            const char *dump = worker_dump((i == order) ? first : second, 2);
            assert_int_equal(prof_latency_load(dump, strlen(dump), &in_flight), 0);
        }
        char *json = prof_latency_json(0), row[600];
        assert_non_null(json);
        assert_non_null(strstr(row_of(json, "/a", row, sizeof(row)), "\"partial\":true"));
        assert_non_null(strstr(row_of(json, "/b", row, sizeof(row)), "\"partial\":false"));
        assert_non_null(strstr(row_of(json, "/c", row, sizeof(row)), "\"partial\":false"));
        free(json);
        char *page = prof_latency_html(0, "/__profile__", false, false, "");
        assert_non_null(page);
        assert_non_null(strstr(page, "<code>/a</code> <small"));
        assert_non_null(strstr(page, "<code>/b</code><td>"));
        free(page);
        /* the front keeps what a worker had when it stops as its own dump:
         * the mark survives it */
        char *kept = prof_latency_dump(0);
        assert_non_null(kept);
        prof_latency_reset();
        assert_int_equal(prof_latency_load(kept, strlen(kept), &in_flight), 0);
        const char *late[] = { "/a", "/b", NULL }; /* and a worker that has both */
        const char *dump = worker_dump(late, 1);
        assert_int_equal(prof_latency_load(dump, strlen(dump), &in_flight), 0);
        json = prof_latency_json(0);
        assert_non_null(json);
        assert_non_null(strstr(row_of(json, "/a", row, sizeof(row)), "\"partial\":true"));
        assert_non_null(strstr(row_of(json, "/b", row, sizeof(row)), "\"partial\":false"));
        free(json);
        free(kept);
    }
}

/* One process (no --workers): a route with a slot has all its requests. */
static void test_a_single_process_has_no_partial_rows(void **state)
{
    (void)state;
    prof_latency_reset();
    for (unsigned i = 0; i < MAX_ROUTES + 2; i++) {
        char key[16];
        snprintf(key, sizeof(key), "/r%u", i);
        struct prof_sample s = { .id = i + 1, .method = "GET", .target = key,
                                 .status = 200, .t_received = 1, .t_dispatched = 2,
                                 .t_done = 3 };
        prof_latency_record(&s);
    }
    char *json = prof_latency_json(0);
    assert_non_null(json);
    assert_non_null(strstr(json, "(other)"));
    assert_null(strstr(json, "\"partial\":true"));
    free(json);
}

int main(void)
{
    if (prof_latency_init(MAX_ROUTES, 4) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_counts_past_32_bits_are_read_whole),
        cmocka_unit_test(test_a_row_some_worker_counted_under_other_is_partial),
        cmocka_unit_test(test_a_single_process_has_no_partial_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
