/* Unit tests for profiler/latency_view.c: the latency table's routes_sort
 * and routes_limit, the rows they keep, and the links that change one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "profiler/latency_view.h"

static struct prof_routes_view parsed(const char *query)
{
    struct prof_routes_view v;
    prof_routes_view_parse(&v, query);
    return v;
}

static void test_defaults_and_keys(void **state)
{
    (void)state;
    struct prof_routes_view v = parsed(NULL);
    assert_int_equal(v.order, PROF_ROUTES_BY_TOTAL);
    assert_int_equal(v.limit, 50);
    assert_false(v.bad_order || v.bad_limit);
    /* the function table's sort and limit are not the routes' */
    v = parsed("sort=calls&limit=5&filter=x");
    assert_int_equal(v.order, PROF_ROUTES_BY_TOTAL);
    assert_int_equal(v.limit, 50);
    for (int o = 0; o < PROF_ROUTES_ORDERS; o++) {
        char q[64];
        snprintf(q, sizeof(q), "a=1&routes_sort=%s&b", prof_routes_order_name(o));
        v = parsed(q);
        assert_int_equal(v.order, o);
        assert_false(v.bad_order);
    }
    v = parsed("routes_limit=7&routes_sort=p99");
    assert_int_equal(v.limit, 7);
    assert_int_equal(v.order, PROF_ROUTES_BY_P99);
    assert_int_equal(parsed("routes_limit=all").limit, 0);
    assert_int_equal(parsed("routes_limit=3&routes_limit=9").limit, 9); /* the last counts */
    assert_int_equal(parsed("routes_limit=999999999").limit, 999999999);
    /* values as a form sends them */
    assert_int_equal(parsed("routes_sort=p%399").order, PROF_ROUTES_BY_P99);
    assert_int_equal(parsed("routes_limit=%61ll").limit, 0);
}

static void test_bad_values(void **state)
{
    (void)state;
    static const char *const bad_sorts[] = { "routes_sort=slowest", "routes_sort=",
                                             "routes_sort=P99", "routes_sort=p99x",
                                             "routes_sort=p%3999" };
    for (size_t i = 0; i < sizeof(bad_sorts) / sizeof(bad_sorts[0]); i++) {
        struct prof_routes_view v = parsed(bad_sorts[i]);
        assert_true(v.bad_order);
        assert_int_equal(v.order, PROF_ROUTES_BY_TOTAL);
    }
    static const char *const bad_limits[] = { "routes_limit=0", "routes_limit=-3",
                                              "routes_limit=ten", "routes_limit=5x",
                                              "routes_limit=", "routes_limit=+5",
                                              "routes_limit= 5", "routes_limit=1000000000",
                                              "routes_limit=99999999999999999999999" };
    for (size_t i = 0; i < sizeof(bad_limits) / sizeof(bad_limits[0]); i++) {
        struct prof_routes_view v = parsed(bad_limits[i]);
        assert_true(v.bad_limit);
        assert_int_equal(v.limit, 50);
    }
    /* a good value after a bad one: the last counts */
    assert_false(parsed("routes_sort=x&routes_sort=max").bad_order);
    /* a name alone, with no value, is no parameter of the view */
    assert_false(parsed("routes_sort&routes_limit").bad_order);
    assert_false(parsed("routes_sort&routes_limit").bad_limit);
}

static void test_view_query(void **state)
{
    (void)state;
    char q[64];
    prof_routes_view_query(&(struct prof_routes_view){ PROF_ROUTES_BY_TOTAL, 50, 0, 0 }, q,
                           sizeof(q));
    assert_string_equal(q, "");
    prof_routes_view_query(&(struct prof_routes_view){ PROF_ROUTES_BY_P99, 50, 0, 0 }, q,
                           sizeof(q));
    assert_string_equal(q, "routes_sort=p99");
    prof_routes_view_query(&(struct prof_routes_view){ PROF_ROUTES_BY_TOTAL, 0, 0, 0 }, q,
                           sizeof(q));
    assert_string_equal(q, "routes_limit=all");
    prof_routes_view_query(&(struct prof_routes_view){ PROF_ROUTES_BY_ROUTE, 999999999, 0, 0 },
                           q, sizeof(q));
    assert_string_equal(q, "routes_sort=route&routes_limit=999999999");
}

static void expect_with(const char *query, const char *name, const char *value, const char *want)
{
    char *got = prof_query_with(query, name, value);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_query_with(void **state)
{
    (void)state;
    expect_with(NULL, "routes_sort", "max", "routes_sort=max");
    expect_with("", "routes_sort", "max", "routes_sort=max");
    expect_with("sort=calls&filter=a%26b", "routes_sort", "p50",
                "sort=calls&filter=a%26b&routes_sort=p50");
    expect_with("routes_sort=x&sort=calls&routes_sort=y&routes_limit=3", "routes_sort", "errors",
                "sort=calls&routes_limit=3&routes_sort=errors");
    expect_with("routes_sort&&routes_sortx=1&x=routes_sort", "routes_sort", "mean",
                "routes_sortx=1&x=routes_sort&routes_sort=mean");
}

#define ROW(k, n, total, p99, err) \
    { .key = k, .special = (k)[0] == '(', .requests = n, .total_us = total, .p50_us = p99 / 2, \
      .p90_us = p99 / 2, .p99_us = p99, .max_us = p99, .errors = err }

static void expect_rows(const char *query, const char *const *want, size_t n_want)
{
    struct prof_routes_row rows[] = {
        ROW("/b", 10, 1000, 500, 0),     ROW("/a", 1, 3000, 3000, 1),
        ROW("(other)", 40, 4000, 900, 0), ROW("/c", 10, 1000, 100, 2),
        ROW("(not found)", 0, 0, 0, 0),  ROW("/d", 2, 100, 60, 0),
    };
    struct prof_routes_view v = parsed(query);
    size_t n = prof_routes_select(rows, sizeof(rows) / sizeof(rows[0]), &v);
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(rows[i].key, want[i]);
}

static void test_select(void **state)
{
    (void)state;
    /* by total time: ties by key; (not found) without requests left out */
    expect_rows("", (const char *const[]){ "(other)", "/a", "/b", "/c", "/d" }, 5);
    expect_rows("routes_sort=route",
                (const char *const[]){ "(other)", "/a", "/b", "/c", "/d" }, 5);
    expect_rows("routes_sort=requests",
                (const char *const[]){ "(other)", "/b", "/c", "/d", "/a" }, 5);
    expect_rows("routes_sort=mean", (const char *const[]){ "/a", "(other)", "/b", "/c", "/d" },
                5);
    expect_rows("routes_sort=p99", (const char *const[]){ "/a", "(other)", "/b", "/c", "/d" },
                5);
    expect_rows("routes_sort=errors",
                (const char *const[]){ "/c", "/a", "(other)", "/b", "/d" }, 5);
    /* the limit counts the app's routes; (other) stays, in its place */
    expect_rows("routes_limit=1", (const char *const[]){ "(other)", "/a" }, 2);
    expect_rows("routes_limit=2&routes_sort=route",
                (const char *const[]){ "(other)", "/a", "/b" }, 3);
    expect_rows("routes_limit=all&routes_sort=max",
                (const char *const[]){ "/a", "(other)", "/b", "/c", "/d" }, 5);
}

static void test_backends_tie_break(void **state)
{
    (void)state;
    struct prof_routes_row rows[] = {
        { .key = "/x", .backend = 1, .requests = 1 }, { .key = "/x", .backend = 0, .requests = 1 },
        { .key = "/w", .backend = 2, .requests = 1 },
    };
    struct prof_routes_view v = parsed("routes_sort=requests&routes_limit=2");
    assert_int_equal(prof_routes_select(rows, 3, &v), 2);
    assert_string_equal(rows[0].key, "/w");
    assert_string_equal(rows[1].key, "/x");
    assert_int_equal(rows[1].backend, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_keys), cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_view_query),        cmocka_unit_test(test_query_with),
        cmocka_unit_test(test_select),            cmocka_unit_test(test_backends_tie_break),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
