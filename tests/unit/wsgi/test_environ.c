/* Unit tests for the pure parts of wsgi/environ.c: header → CGI names,
 * percent-decoding, splitting the request target. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/http_check.h"
#include "wsgi/environ.h"

static void test_cgi_names(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(wsgi_cgi_name("User-Agent", 10, out, sizeof(out)), WSGI_HEADER_HTTP);
    assert_string_equal(out, "HTTP_USER_AGENT");
    assert_int_equal(wsgi_cgi_name("content-type", 12, out, sizeof(out)), WSGI_HEADER_CONTENT_TYPE);
    assert_int_equal(wsgi_cgi_name("Content-Length", 14, out, sizeof(out)),
                     WSGI_HEADER_CONTENT_LENGTH);
    /* look-alikes with '_' could pose as another header: dropped (Apache/nginx do too) */
    assert_int_equal(wsgi_cgi_name("Content_Length", 14, out, sizeof(out)), WSGI_HEADER_DROP);
    assert_int_equal(wsgi_cgi_name("Remote_User", 11, out, sizeof(out)), WSGI_HEADER_DROP);
    /* Remote-User is an ordinary header: HTTP_REMOTE_USER, never REMOTE_USER */
    assert_int_equal(wsgi_cgi_name("Remote-User", 11, out, sizeof(out)), WSGI_HEADER_HTTP);
    assert_string_equal(out, "HTTP_REMOTE_USER");
    assert_int_equal(wsgi_cgi_name("X-Very-Long-Name", 16, out, 10), WSGI_HEADER_DROP);
}

static void test_percent_decode(void **state)
{
    (void)state;
    char out[64];
    size_t n = tf_percent_decode("/caf%C3%A9", 10, out);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "/caf\xc3\xa9", 6);
    n = tf_percent_decode("/a%2Fb", 6, out);
    assert_memory_equal(out, "/a/b", n);
    n = tf_percent_decode("/bad%zz%4", 9, out);
    assert_int_equal(n, 9);
    assert_memory_equal(out, "/bad%zz%4", 9);
    n = tf_percent_decode("%", 1, out);
    assert_int_equal(n, 1);
    n = tf_percent_decode("/%00x", 5, out);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "/\0x", 3);
}

static void test_target_split(void **state)
{
    (void)state;
    const char *path, *query;
    size_t len;
    wsgi_target_split("/a/b?x=1&y", &path, &len, &query);
    assert_int_equal(len, 4);
    assert_memory_equal(path, "/a/b", 4);
    assert_string_equal(query, "x=1&y");
    wsgi_target_split("/plain", &path, &len, &query);
    assert_int_equal(len, 6);
    assert_null(query);
    wsgi_target_split("/a?b?c", &path, &len, &query);
    assert_string_equal(query, "b?c");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cgi_names),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_target_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
