/* Unit tests for profiler/inflight.c: the In flight report's HTML and JSON
 * (escaping of targets and stacks, the stuck marker, no stack, no requests). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "profiler/inflight.h"

static const struct prof_inflight rows[] = {
    { 7, "GET", "/spin?a=1&b=<x>", 2.5, 42, true,
      "  File \"/app.py\", line 3, in outer\n  File \"/app.py\", line 9, in <lambda>\n" },
    { 8, "POST", "/fast", 0.001, 43, false, NULL },
};

static void expect_in(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("'%s' not found in:\n%s", needle, text);
}

static void test_html(void **state)
{
    (void)state;
    char *html = prof_inflight_html(rows, 2, 1.5, "504", 0);
    assert_non_null(html);
    expect_in(html, "2 requests running");
    expect_in(html, "--request-timeout 1.5s (action: 504)");
    expect_in(html, "<td>7<td><code>GET /spin?a=1&#38;b=&#60;x&#62;</code><td>2.500<td><b>stuck</b>");
    /* the stack keeps its line breaks, escaped line by line */
    expect_in(html, "<pre>  File &#34;/app.py&#34;, line 3, in outer\n  File &#34;/app.py&#34;, "
                    "line 9, in &#60;lambda&#62;\n</pre>");
    expect_in(html, "<td>8<td><code>POST /fast</code><td>0.001<td>running");
    expect_in(html, "no Python frame");
    assert_null(strstr(html, "<x>"));
    free(html);
}

/* A stack line longer than a piece, with "é" across the cut: the character
 * comes out whole, not as two replacement characters. */
static void test_long_line_keeps_characters_whole(void **state)
{
    (void)state;
    char stack[1200];
    memset(stack, 'a', sizeof(stack));
    memcpy(stack + 510, "\xc3\xa9", 2); /* bytes 510 and 511: the cut is at 511 */
    stack[sizeof(stack) - 1] = 0;
    struct prof_inflight row = { 9, "GET", "/", 2.0, 44, false, stack };
    char *html = prof_inflight_html(&row, 1, 0, "log", 0);
    assert_non_null(html);
    expect_in(html, "aa\xc3\xa9" "aa");
    assert_null(strstr(html, "\xef\xbf\xbd")); /* U+FFFD */
    free(html);
}

static void test_html_empty_and_off(void **state)
{
    (void)state;
    char *html = prof_inflight_html(NULL, 0, 0, "log", 0);
    assert_non_null(html);
    expect_in(html, "0 requests running");
    expect_in(html, "--request-timeout is off");
    assert_null(strstr(html, "<table>"));
    free(html);
}

static void test_json(void **state)
{
    (void)state;
    char *json = prof_inflight_json(rows, 2, 1.5, "log", 0);
    assert_non_null(json);
    expect_in(json, "{\"request_timeout\": 1.5, \"action\": \"log\", \"requests\": [");
    expect_in(json, "\"id\": 7, \"method\": \"GET\", \"target\": \"/spin?a=1&b=<x>\"");
    expect_in(json, "\"thread\": 42, \"stuck\": true");
    expect_in(json, "\"stack\": \"  File \\\"/app.py\\\", line 3, in outer\\n  File");
    expect_in(json, "\"stuck\": false, \"stack\": null}");
    free(json);
    json = prof_inflight_json(NULL, 0, 0, "log", 0);
    assert_string_equal(json, "{\"request_timeout\": 0, \"action\": \"log\", \"requests\": []}\n");
    free(json);
}

static void test_a_workers_part(void **state)
{
    (void)state;
    char *html = prof_inflight_html(rows, 2, 0, "log", 4242);
    assert_non_null(html);
    expect_in(html, "<h3>Worker 4242</h3><p>2 requests running on its app threads.");
    assert_null(strstr(html, "<h2")); /* the front gives the one heading */
    free(html);
    char *json = prof_inflight_json(NULL, 0, 0, "log", 4242);
    assert_string_equal(json, "{\"pid\": 4242, \"request_timeout\": 0, \"action\": \"log\", "
                              "\"requests\": []}\n");
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html),
        cmocka_unit_test(test_long_line_keeps_characters_whole),
        cmocka_unit_test(test_html_empty_and_off),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_a_workers_part),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
