/* Unit tests for profiler/text.c: the escapes of every report. Whatever the
 * input bytes (function names, raw request paths), the output is valid
 * UTF-8: valid sequences pass through, each invalid byte becomes U+FFFD. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "profiler/text.h"

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD in UTF-8 */

static void expect_escaped(const char *in, enum prof_escape how, const char *want)
{
    struct prof_text t = { 0 };
    prof_text_escaped(&t, in, how);
    prof_text_add(&t, "%s", ""); /* an empty input still gives a string */
    char *out = prof_text_finish(&t);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

static void test_valid_utf8_passes_through(void **state)
{
    (void)state;
    const char *text = "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x94\xa5"; /* café 日本 🔥 */
    expect_escaped(text, PROF_ESC_JSON, text);
    expect_escaped(text, PROF_ESC_PROM, text);
    expect_escaped(text, PROF_ESC_HTML, text);
}

static void test_invalid_bytes_become_replacement_characters(void **state)
{
    (void)state;
    expect_escaped("/raw\xff\xfe", PROF_ESC_PROM, "/raw%FF%FE"); /* series stay apart */
    expect_escaped("/raw\xff\xfe", PROF_ESC_JSON, "/raw" REPLACEMENT REPLACEMENT);
    expect_escaped("caf\xe9_legacy", PROF_ESC_HTML, "caf" REPLACEMENT "_legacy"); /* Latin-1 */
    expect_escaped("cut\xc3", PROF_ESC_JSON, "cut" REPLACEMENT);        /* sequence cut short */
    expect_escaped("\xc0\xaf", PROF_ESC_JSON, REPLACEMENT REPLACEMENT); /* overlong '/' */
    expect_escaped("\xed\xa0\x80", PROF_ESC_JSON,                       /* a surrogate */
                   REPLACEMENT REPLACEMENT REPLACEMENT);
    expect_escaped("\xf4\x90\x80\x80", PROF_ESC_JSON, /* past U+10FFFF */
                   REPLACEMENT REPLACEMENT REPLACEMENT REPLACEMENT);
    expect_escaped("\x80x", PROF_ESC_JSON, REPLACEMENT "x"); /* a stray continuation byte */
}

static void test_each_format_escapes_its_own_characters(void **state)
{
    (void)state;
    expect_escaped("a\"b\\c\nd\x01", PROF_ESC_JSON, "a\\\"b\\\\c\\nd\\u0001");
    expect_escaped("a\"b\\c\nd", PROF_ESC_PROM, "a\\\"b\\\\c\\nd");
    expect_escaped("<a href='x'>&\"", PROF_ESC_HTML, "&#60;a href=&#39;x&#39;&#62;&#38;&#34;");
    /* line formats have no escapes: what would break a line or a field is replaced */
    expect_escaped("a\tb\nc\r;d\"\\\xff", PROF_ESC_LINE, "a b c ;d\"\\" REPLACEMENT);
    expect_escaped("f;g\nh", PROF_ESC_STACK, "f:g h");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_utf8_passes_through),
        cmocka_unit_test(test_invalid_bytes_become_replacement_characters),
        cmocka_unit_test(test_each_format_escapes_its_own_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
