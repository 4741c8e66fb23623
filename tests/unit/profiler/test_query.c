/* Unit tests for profiler/query.c: a query's parameters one at a time,
 * their values decoded as a form sends them, the last of a name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "profiler/query.h"

/* The parameters of query as "name|value|has_value;" each. */
static void listed(const char *query, char *out, size_t cap)
{
    struct prof_param p;
    size_t o = 0;
    out[0] = 0;
    for (const char *c = query; prof_query_next(&c, &p);)
        o += (size_t)snprintf(out + o, cap - o, "%.*s|%.*s|%d;", (int)p.name_len, p.name,
                              (int)p.value_len, p.value, p.has_value);
}

static void test_parameters_one_at_a_time(void **state)
{
    (void)state;
    char out[256];
    listed(NULL, out, sizeof(out));
    assert_string_equal(out, "");
    listed("", out, sizeof(out));
    assert_string_equal(out, "");
    listed("a=1&b=&c&&d=x=y&", out, sizeof(out));
    assert_string_equal(out, "a|1|1;b||1;c||0;d|x=y|1;");
    listed("&&=v&e", out, sizeof(out));
    assert_string_equal(out, "|v|1;e||0;");
}

static const char *decoded(const char *value, size_t cap, bool *whole)
{
    static char dst[64];
    struct prof_param p = { "k", value, 1, strlen(value), true };
    *whole = prof_param_value(&p, dst, cap);
    return dst;
}

static void test_values_decoded_as_a_form_sends_them(void **state)
{
    (void)state;
    bool whole;
    assert_string_equal(decoded("a+b%20c%2b%26%3D", 64, &whole), "a b c+&=");
    assert_true(whole);
    assert_string_equal(decoded("%C3%a9", 64, &whole), "\xc3\xa9");
    /* a '%' without two hex digits stays as it is */
    assert_string_equal(decoded("100%", 64, &whole), "100%");
    assert_string_equal(decoded("%4", 64, &whole), "%4");
    assert_string_equal(decoded("%zz%4g", 64, &whole), "%zz%4g");
    assert_true(whole);
    /* cut to fit, and said */
    assert_string_equal(decoded("abcdef", 4, &whole), "abc");
    assert_false(whole);
    assert_string_equal(decoded("ab%41", 4, &whole), "abA");
    assert_true(whole);
    assert_string_equal(decoded("", 1, &whole), "");
    assert_true(whole);
}

static void test_the_last_of_a_name(void **state)
{
    (void)state;
    char v[16];
    /* a name that ends in another's is not it */
    assert_true(prof_query_get("grid=1&id=42", "id", v, sizeof(v)));
    assert_string_equal(v, "42");
    assert_true(prof_query_get("id=1&x=2&id=%33", "id", v, sizeof(v)));
    assert_string_equal(v, "3");
    assert_false(prof_query_get("grid=1&idx=2&id", "id", v, sizeof(v))); /* no '=' */
    assert_false(prof_query_get(NULL, "id", v, sizeof(v)));
    assert_true(prof_query_get("id=", "id", v, sizeof(v)));
    assert_string_equal(v, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parameters_one_at_a_time),
        cmocka_unit_test(test_values_decoded_as_a_form_sends_them),
        cmocka_unit_test(test_the_last_of_a_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
