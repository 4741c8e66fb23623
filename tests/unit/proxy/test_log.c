/* Unit tests for proxy/log.c: tf_log_quote, how tracfront's error-log lines
 * quote a request's target (escaped, and cut with "…" past TF_LOG_QUOTE_MAX). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/log.h"

#define ELLIPSIS "\xe2\x80\xa6"

static char *repeat(const char *unit, size_t times)
{
    size_t len = strlen(unit);
    char *s = malloc(len * times + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * len, unit, len);
    s[len * times] = '\0';
    return s;
}

static void test_plain_and_short_is_itself(void **state)
{
    (void)state;
    const char *s = "/wiki/Start?x=1";
    assert_ptr_equal(tf_log_quote(s), s);
    const char *empty = "";
    assert_ptr_equal(tf_log_quote(empty), empty);
    char *max = repeat("a", TF_LOG_QUOTE_MAX);
    assert_ptr_equal(tf_log_quote(max), max);
    free(max);
}

static void test_escaped_when_short(void **state)
{
    (void)state;
    char *q = tf_log_quote("/a\"b\\c\x9b");
    assert_string_equal(q, "/a\\\"b\\\\c\\x9b");
    free(q);
}

static void test_long_is_cut_with_an_ellipsis(void **state)
{
    (void)state;
    char *long_plain = repeat("a", TF_LOG_QUOTE_MAX + 1);
    char *q = tf_log_quote(long_plain);
    assert_int_equal(strlen(q), TF_LOG_QUOTE_MAX + strlen(ELLIPSIS));
    assert_memory_equal(q, long_plain, TF_LOG_QUOTE_MAX);
    assert_string_equal(q + TF_LOG_QUOTE_MAX, ELLIPSIS);
    free(q);
    free(long_plain);
    /* escaped bytes count as they show, and one is never cut in two */
    char *long_escaped = repeat("\x9b", TF_LOG_QUOTE_MAX);
    q = tf_log_quote(long_escaped);
    size_t shown = strlen(q) - strlen(ELLIPSIS);
    assert_int_equal(shown % 4, 0);
    assert_true(shown >= TF_LOG_QUOTE_MAX && shown < TF_LOG_QUOTE_MAX + 4);
    assert_memory_equal(q, "\\x9b\\x9b", 8);
    assert_string_equal(q + shown, ELLIPSIS);
    free(q);
    free(long_escaped);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_short_is_itself),
        cmocka_unit_test(test_escaped_when_short),
        cmocka_unit_test(test_long_is_cut_with_an_ellipsis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
