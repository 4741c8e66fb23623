/* Unit tests for wsgi/fastpath.c: when a request may run inline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "wsgi/fastpath.h"

#define NOW 1000000u

static int reset(void **state)
{
    (void)state;
    wsgi_fastpath_reset();
    return 0;
}

static void fast_calls(uint64_t key, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        wsgi_fastpath_note(key, 50);
}

static void test_key_is_method_and_target(void **state)
{
    (void)state;
    uint64_t k = wsgi_fastpath_key("GET", "/wiki/Start");
    assert_true(k == wsgi_fastpath_key("GET", "/wiki/Start"));
    assert_true(k != wsgi_fastpath_key("GET", "/wiki/Start?version=3"));
    assert_true(k != wsgi_fastpath_key("POST", "/wiki/Start"));
    assert_true(k != wsgi_fastpath_key("GET", "/wiki/Star"));
    assert_true(wsgi_fastpath_key("GE", "T/x") != wsgi_fastpath_key("GET", "/x"));
}

static void test_a_streak_of_fast_calls_opens_the_path(void **state)
{
    (void)state;
    uint64_t k = wsgi_fastpath_key("GET", "/hello");
    assert_false(wsgi_fastpath_ok(k, NOW)); /* never seen */
    fast_calls(k, WSGI_FASTPATH_STREAK - 1);
    assert_false(wsgi_fastpath_ok(k, NOW));
    fast_calls(k, 1);
    assert_true(wsgi_fastpath_ok(k, NOW));
    assert_false(wsgi_fastpath_ok(wsgi_fastpath_key("GET", "/other"), NOW));
}

static void test_one_long_call_closes_it_again(void **state)
{
    (void)state;
    uint64_t k = wsgi_fastpath_key("GET", "/wiki/Start");
    fast_calls(k, 100);
    wsgi_fastpath_note(k, WSGI_FASTPATH_LONG_US - 1);
    assert_true(wsgi_fastpath_ok(k, NOW));
    wsgi_fastpath_note(k, WSGI_FASTPATH_LONG_US);
    assert_false(wsgi_fastpath_ok(k, NOW));
    fast_calls(k, WSGI_FASTPATH_STREAK - 1); /* a whole new streak is needed */
    assert_false(wsgi_fastpath_ok(k, NOW));
    fast_calls(k, 1);
    assert_true(wsgi_fastpath_ok(k, NOW));
}

static void test_an_inline_call_running_long_stops_all_inlining(void **state)
{
    (void)state;
    uint64_t a = wsgi_fastpath_key("GET", "/a"), b = wsgi_fastpath_key("GET", "/b");
    fast_calls(a, WSGI_FASTPATH_STREAK);
    fast_calls(b, WSGI_FASTPATH_STREAK);
    assert_int_equal(wsgi_fastpath_begin(3, NOW), 0);
    assert_true(wsgi_fastpath_ok(b, NOW + WSGI_FASTPATH_LONG_US - 1));
    assert_false(wsgi_fastpath_ok(b, NOW + WSGI_FASTPATH_LONG_US));
    assert_false(wsgi_fastpath_ok(a, NOW + 5 * WSGI_FASTPATH_LONG_US));
    wsgi_fastpath_end(3);
    assert_true(wsgi_fastpath_ok(b, NOW + 5 * WSGI_FASTPATH_LONG_US));
    assert_int_equal(wsgi_fastpath_begin(WSGI_FASTPATH_RUNNERS, NOW), -1);
}

static void test_a_path_sharing_a_slot_evicts_the_other(void **state)
{
    (void)state;
    /* find two keys in the same slot */
    uint64_t a = wsgi_fastpath_key("GET", "/p0"), b = 0;
    char path[32];
    for (unsigned i = 1; !b; i++) {
        snprintf(path, sizeof(path), "/p%u", i);
        uint64_t k = wsgi_fastpath_key("GET", path);
        if (WSGI_FASTPATH_SLOT(k) == WSGI_FASTPATH_SLOT(a) && k != a)
            b = k;
    }
    fast_calls(a, WSGI_FASTPATH_STREAK);
    fast_calls(b, 1);
    assert_false(wsgi_fastpath_ok(a, NOW));
    assert_false(wsgi_fastpath_ok(b, NOW));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_key_is_method_and_target, reset),
        cmocka_unit_test_setup(test_a_streak_of_fast_calls_opens_the_path, reset),
        cmocka_unit_test_setup(test_one_long_call_closes_it_again, reset),
        cmocka_unit_test_setup(test_an_inline_call_running_long_stops_all_inlining, reset),
        cmocka_unit_test_setup(test_a_path_sharing_a_slot_evicts_the_other, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
