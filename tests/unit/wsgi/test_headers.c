/* Unit tests for wsgi/headers.c: the status line and header rules an app's
 * start_response() call is held to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "wsgi/headers.h"

#define S(x) x, strlen(x)

static void test_status(void **state)
{
    (void)state;
    assert_int_equal(wsgi_status_parse(S("200 OK")), 200);
    assert_int_equal(wsgi_status_parse(S("404 Not Found")), 404);
    assert_int_equal(wsgi_status_parse(S("599 ")), 599);
    assert_int_equal(wsgi_status_parse(S("200")), 0);
    assert_int_equal(wsgi_status_parse(S("20 OK")), 0);
    assert_int_equal(wsgi_status_parse(S("2000 OK")), 0);
    assert_int_equal(wsgi_status_parse(S("abc OK")), 0);
    assert_int_equal(wsgi_status_parse(S("200 OK\r\nX: y")), 0);
    assert_int_equal(wsgi_status_parse(S("099 Low")), 0);
}

static void test_header_rules(void **state)
{
    (void)state;
    assert_true(wsgi_header_name_valid(S("Content-Type")));
    assert_false(wsgi_header_name_valid(S("Bad Header")));
    assert_false(wsgi_header_name_valid(S("X:y")));
    assert_true(wsgi_header_value_valid(S("text/html; charset=utf-8")));
    assert_true(wsgi_header_value_valid(S("a\tb")));
    assert_false(wsgi_header_value_valid(S("a\r\nSet-Cookie: x")));
    assert_false(wsgi_header_value_valid("a\0b", 3));
    assert_true(wsgi_header_is_hop_by_hop(S("Connection")));
    assert_true(wsgi_header_is_hop_by_hop(S("transfer-encoding")));
    assert_false(wsgi_header_is_hop_by_hop(S("Content-Length")));
    assert_false(wsgi_header_is_hop_by_hop(S("Set-Cookie")));
    static const char *const hop[] = { "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                                       "Upgrade", "Proxy-Authenticate", "PROXY-AUTHORIZATION" };
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        assert_true(wsgi_header_is_hop_by_hop(S(hop[i])));
    /* only whole names: a prefix or a longer name is not one */
    assert_false(wsgi_header_is_hop_by_hop(S("T")));
    assert_false(wsgi_header_is_hop_by_hop(S("Tex")));
    assert_false(wsgi_header_is_hop_by_hop(S("Upgrade-Insecure-Requests")));
    assert_false(wsgi_header_is_hop_by_hop("Connection", 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_header_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
