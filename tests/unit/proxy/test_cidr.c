/* Unit tests for proxy/cidr.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/cidr.h"

static bool in(const char *range, const char *addr)
{
    struct tf_cidr c;
    assert_int_equal(tf_cidr_parse(range, &c), 0);
    return tf_cidr_match(&c, addr);
}

static void test_match(void **state)
{
    (void)state;
    assert_true(in("127.0.0.0/8", "127.1.2.3"));
    assert_false(in("127.0.0.0/8", "128.0.0.1"));
    assert_true(in("10.1.2.3", "10.1.2.3"));
    assert_false(in("10.1.2.3", "10.1.2.4"));
    assert_true(in("192.168.0.0/23", "192.168.1.255"));
    assert_false(in("192.168.0.0/23", "192.168.2.0"));
    assert_true(in("0.0.0.0/0", "8.8.8.8"));
    assert_true(in("::1", "::1"));
    assert_true(in("fd00::/8", "fd12:3456::1"));
    assert_false(in("fd00::/8", "fe80::1"));
    assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1"));   /* IPv4-mapped */
    assert_false(in("::1", "127.0.0.1"));
    assert_false(in("10.0.0.0/8", "not-an-address"));
}

static void test_parse_errors(void **state)
{
    (void)state;
    struct tf_cidr c;
    assert_int_equal(tf_cidr_parse("10.0.0.0/33", &c), -1);
    assert_int_equal(tf_cidr_parse("10.0.0.0/", &c), -1);
    assert_int_equal(tf_cidr_parse("10.0.0/8", &c), -1);
    assert_int_equal(tf_cidr_parse("/8", &c), -1);
    assert_int_equal(tf_cidr_parse("::1/129", &c), -1);
    assert_int_equal(tf_cidr_parse("example.org", &c), -1);
    assert_int_equal(tf_cidr_parse("10.0.0.0/8x", &c), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
