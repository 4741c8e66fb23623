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
    const struct prof_latency_source src[] = { { dump, NULL } };
    assert_int_equal(prof_latency_merge(src, 1), 0);
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

/* A worker's dump with n requests of us microseconds each under each of
 * the keys (malloc'd). */
static char *worker_dump_of(const char *const *keys, unsigned n, unsigned us)
{
    char *text = malloc(4096);
    size_t o = 0;
    assert_non_null(text);
    text[0] = '\0';
    for (; *keys; keys++)
        o += (size_t)snprintf(text + o, 4096 - o,
                              "R\t%s\t0\t0 0 %u 0 0 0\t%u %u %u 1:%u\t0 0 0\t0 0 0\t0 0 0"
                              "\t0 0 0\t0 0 0\t0\n", *keys, n, n, n * us, us, n);
    return text;
}

static char *worker_dump(const char *const *keys, unsigned n)
{
    return worker_dump_of(keys, n, 1);
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

/* The JSON row of key has text in it. */
static void assert_row_has(const char *json, const char *key, const char *text)
{
    char row[600];
    if (!strstr(row_of(json, key, row, sizeof(row)), text))
        fail_msg("no %s in the row of %s: %s", text, key, row);
}

/* n keys PREFIX0, PREFIX1... written in keys, listed in out. */
static void numbered_keys(const char *prefix, int n, char keys[][16], const char **out)
{
    for (int i = 0; i < n; i++) {
        snprintf(keys[i], sizeof(keys[i]), "%s%d", prefix, i);
        out[i] = keys[i];
    }
}

/* Each worker gives its --profile-max-routes slots to its own first
 * routes: /a has a slot in one worker, and in another that filled its
 * slots first its /a requests are in (other). The front's /a row holds
 * only part of /a's requests, and says so (whatever order the dumps come
 * in); /b and /c, with a slot wherever they were seen, do not. */
static void test_a_row_some_worker_counted_under_other_is_partial(void **state)
{
    (void)state;
    prof_latency_reset(); /* a Clear: no rows kept from another test */
    for (int order = 0; order < 2; order++) {
        static const char *const first[] = { "/a", NULL };
        static const char *const second[] = { "(other)", "/b", "/c", NULL };
        char *dumps[2] = { worker_dump(order ? second : first, 2),
                           worker_dump(order ? first : second, 2) };
        const struct prof_latency_source src[] = { { dumps[0], NULL }, { dumps[1], NULL } };
        assert_int_equal(prof_latency_merge(src, 2), 0);
        free(dumps[0]);
        free(dumps[1]);
        char *json = prof_latency_json(0);
        assert_non_null(json);
        assert_row_has(json, "/a", "\"partial\":true");
        assert_row_has(json, "/b", "\"partial\":false");
        assert_row_has(json, "/c", "\"partial\":false");
        free(json);
        char *page = prof_latency_html(0, "/__profile__", "", false, false, "");
        assert_non_null(page);
        assert_non_null(strstr(page, "<code>/a</code> <small"));
        assert_non_null(strstr(page, "<code>/b</code><td>"));
        free(page);
        /* the front keeps what a worker had when it stops as its own dump:
         * the mark survives it */
        char *kept = prof_latency_dump(0);
        assert_non_null(kept);
        const char *late[] = { "/a", "/b", NULL }; /* and a worker that has both */
        char *dump = worker_dump(late, 1);
        const struct prof_latency_source again[] = { { kept, NULL }, { dump, NULL } };
        assert_int_equal(prof_latency_merge(again, 2), 0);
        free(dump);
        json = prof_latency_json(0);
        assert_non_null(json);
        assert_row_has(json, "/a", "\"partial\":true");
        assert_row_has(json, "/b", "\"partial\":false");
        free(json);
        free(kept);
    }
}

/* Workers give their MAX_ROUTES slots to different routes, so the union
 * does not fit the front's: the rows it keeps are the routes with the most
 * time, whichever worker's dump comes first, and the rest is in (other),
 * nothing lost (the front used to fill its slots with the first dump's
 * routes: the slowest route of the second had no row). */
static void test_the_fronts_rows_are_the_busiest_routes_in_any_order(void **state)
{
    (void)state;
    const char *light[MAX_ROUTES + 1] = { 0 }, *heavy[] = { "/heavy", NULL };
    char keys[MAX_ROUTES][16];
    numbered_keys("/light", MAX_ROUTES, keys, light);
    char *dumps[] = { worker_dump_of(light, 2, 10), worker_dump_of(heavy, 1, 5000000) };
    for (int order = 0; order < 2; order++) {
        prof_latency_reset(); /* a Clear: the rows are given again */
        const struct prof_latency_source src[] = { { dumps[order], NULL },
                                                   { dumps[!order], NULL } };
        assert_int_equal(prof_latency_merge(src, 2), 0);
        char *json = prof_latency_json(0);
        assert_non_null(json);
        assert_row_has(json, "/heavy", "\"count\":1,");
        /* nine of the ten light ones have a row, the last by key is in (other) */
        assert_row_has(json, "/light0", "\"count\":2,");
        assert_row_has(json, "/light8", "\"count\":2,");
        assert_null(strstr(json, "/light9"));
        assert_row_has(json, "(other)", "\"count\":2,");
        free(json);
    }
    free(dumps[0]);
    free(dumps[1]);
}

/* A front's rows stay until Clear: a route that overtakes one with a row
 * goes to (other) rather than take that row (which would vanish and its
 * counts with it: a Prometheus counter going down), and a merge of only
 * some of the dumps (a worker's hand-over, added to what the stopped ones
 * had) leaves room for the rows its dumps lack. */
static void test_the_fronts_rows_stay_until_clear(void **state)
{
    (void)state;
    prof_latency_reset();
    const char *light[MAX_ROUTES + 1] = { 0 }, *heavy[] = { "/heavy", NULL };
    char keys[MAX_ROUTES][16];
    numbered_keys("/light", MAX_ROUTES, keys, light);
    char *lights = worker_dump_of(light, 1, 10), *heavies = worker_dump_of(heavy, 3, 5000000);
    const char *one[] = { "/light0", "/new", NULL };
    char *handed = worker_dump_of(one, 1, 9000000);
    const struct prof_latency_source first[] = { { lights, NULL } };
    const struct prof_latency_source later[] = { { lights, NULL }, { heavies, NULL } };
    const struct prof_latency_source hand_over[] = { { handed, NULL } };
    for (int step = 0; step < 3; step++) {
        assert_int_equal(prof_latency_merge(step == 0 ? first : step == 1 ? later : hand_over,
                                            step == 1 ? 2 : 1), 0);
        char *json = prof_latency_json(0);
        assert_non_null(json);
        assert_null(strstr(json, "/heavy"));
        assert_null(strstr(json, "/new"));
        if (step < 2)
            assert_row_has(json, "/light9", "\"count\":1,");
        if (step == 1)
            assert_row_has(json, "(other)", "\"count\":3,");
        free(json);
    }
    prof_latency_reset(); /* Clear: given again, by time */
    assert_int_equal(prof_latency_merge(later, 2), 0);
    char *json = prof_latency_json(0);
    assert_non_null(json);
    assert_row_has(json, "/heavy", "\"count\":3,");
    free(json);
    free(lights);
    free(heavies);
    free(handed);
}

/* The routes a front had no free row for go to its own (other), in the
 * dump it keeps of stopped workers: that (other) holds no request of a
 * route with a row, so it makes no row partial (a worker's (other) does).
 * Every row was marked partial once a hand-over found the rows full. */
static void test_the_fronts_own_other_makes_no_row_partial(void **state)
{
    (void)state;
    prof_latency_reset();
    const char *bs[MAX_ROUTES + 1] = { 0 }, *more[MAX_ROUTES + 1] = { 0 }, *a[] = { "/a", NULL };
    char keys[MAX_ROUTES][16];
    numbered_keys("/b", MAX_ROUTES - 1, keys, bs);
    memcpy(more, bs, sizeof(bs));
    more[MAX_ROUTES - 1] = "/c";
    char *w1 = worker_dump(a, 1), *w2 = worker_dump(bs, 1), *w2_later = worker_dump(more, 2);
    const struct prof_latency_source page[] = { { w1, NULL }, { w2, NULL } };
    assert_int_equal(prof_latency_merge(page, 2), 0); /* every row given: /a and /b0-8 */
    const struct prof_latency_source hand_over[] = { { NULL, NULL }, { w2_later, NULL } };
    assert_int_equal(prof_latency_merge(hand_over, 2), 0);
    char *kept = prof_latency_dump(0); /* /c in the front's own (other) */
    assert_non_null(kept);
    assert_non_null(strstr(kept, "R\t(other)\t"));
    const struct prof_latency_source next[] = { { kept, NULL }, { w1, NULL } };
    assert_int_equal(prof_latency_merge(next, 2), 0);
    char *json = prof_latency_json(0);
    assert_non_null(json);
    assert_row_has(json, "/a", "\"partial\":false");
    assert_row_has(json, "/b0", "\"partial\":false");
    assert_row_has(json, "(other)", "\"count\":2,");
    assert_null(strstr(json, "\"partial\":true"));
    free(json);
    free(kept);
    free(w1);
    free(w2);
    free(w2_later);
}

/* A cut or garbled dump (a worker killed while answering) is read as far
 * as it makes sense, never past its end. */
static void test_a_garbled_dump_is_read_without_overrun(void **state)
{
    (void)state;
    static const char *const garbled[] = {
        "", "\n", "R", "R\t", "R\t/a", "R\t/a\t0", "R\t/a\t0\t1 2", "R\t/a\t0\t1\t",
        "\n\nR\t\t\t\t\n", "R\t(other)\t0\t0 0 1 0 0 0\t1 5 5 3:1",
    };
    prof_latency_reset();
    for (size_t i = 0; i < sizeof(garbled) / sizeof(garbled[0]); i++) {
        char *text = strdup(garbled[i]); /* exactly its length: ASan sees an overrun */
        assert_non_null(text);
        const struct prof_latency_source src[] = { { text, NULL }, { NULL, NULL } };
        assert_int_equal(prof_latency_merge(src, 2), 0);
        char *json = prof_latency_json(0);
        assert_non_null(json);
        free(json);
        free(text);
    }
    const char *row = "R\t/b\t0\t0 0 2 0 0 0\t2 10 6 3:2"; /* ends after the histogram */
    const struct prof_latency_source src[] = { { row, NULL } };
    assert_int_equal(prof_latency_merge(src, 1), 0);
    char *json = prof_latency_json(0), got[600];
    assert_non_null(json);
    assert_non_null(strstr(row_of(json, "/b", got, sizeof(got)), "\"count\":2,"));
    free(json);
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
        cmocka_unit_test(test_the_fronts_rows_are_the_busiest_routes_in_any_order),
        cmocka_unit_test(test_the_fronts_rows_stay_until_clear),
        cmocka_unit_test(test_the_fronts_own_other_makes_no_row_partial),
        cmocka_unit_test(test_a_garbled_dump_is_read_without_overrun),
        cmocka_unit_test(test_a_single_process_has_no_partial_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
