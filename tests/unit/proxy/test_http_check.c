/* Unit tests for proxy/http_check.c: each RFC 9112 rule on its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/http_check.h"

static int header(struct tf_framing *f, const char *name, const char *value)
{
    return tf_check_header(f, name, strlen(name), value, strlen(value));
}

static void test_header_syntax(void **state)
{
    (void)state;
    struct tf_framing f;
    tf_framing_init(&f);
    assert_int_equal(header(&f, "X-Ok", "fine\tvalue"), 0);
    assert_int_equal(header(&f, "Bad Name", "v"), 400);
    assert_int_equal(header(&f, "Bad\x01", "v"), 400);
    assert_int_equal(header(&f, "", "v"), 400);
    assert_int_equal(tf_check_header(&f, "X-Nul", 5, "a\0b", 3), 400);
    assert_int_equal(header(&f, "X-Cr", "a\rb"), 400);
    assert_int_equal(header(&f, "X-Del", "a\x7f"), 400);
}

static void test_content_length(void **state)
{
    (void)state;
    struct tf_framing f;
    tf_framing_init(&f);
    assert_int_equal(header(&f, "Content-Length", "42"), 0);
    assert_int_equal(f.content_length, 42);
    assert_int_equal(header(&f, "content-length", "42"), 0); /* same value repeated */
    assert_int_equal(header(&f, "Content-Length", "43"), 400);
    tf_framing_init(&f);
    assert_int_equal(header(&f, "Content-Length", "7, 7"), 0);
    assert_int_equal(f.content_length, 7);
    tf_framing_init(&f);
    assert_int_equal(header(&f, "Content-Length", "7, 8"), 400);
    tf_framing_init(&f);
    assert_int_equal(header(&f, "Content-Length", "-1"), 400);
    tf_framing_init(&f);
    assert_int_equal(header(&f, "Content-Length", "12abc"), 400);
    tf_framing_init(&f);
    assert_int_equal(header(&f, "Content-Length", "99999999999999999999999"), 400);
    tf_framing_init(&f);
    assert_int_equal(header(&f, "Content-Length", ""), 400);
}

static void test_transfer_encoding(void **state)
{
    (void)state;
    struct tf_framing f;
    tf_framing_init(&f);
    header(&f, "Host", "h");
    assert_int_equal(header(&f, "Transfer-Encoding", "chunked"), 0);
    assert_int_equal(tf_check_framing(&f, true), 0);
    assert_true(f.chunked);
    /* CL with TE: smuggling risk */
    assert_int_equal(header(&f, "Content-Length", "5"), 0);
    assert_int_equal(tf_check_framing(&f, true), 400);
    /* TE on HTTP/1.0 */
    tf_framing_init(&f);
    header(&f, "Transfer-Encoding", "chunked");
    assert_int_equal(tf_check_framing(&f, false), 400);
    /* unsupported coding before chunked → 501 */
    tf_framing_init(&f);
    header(&f, "Host", "h");
    header(&f, "Transfer-Encoding", "gzip, chunked");
    assert_int_equal(tf_check_framing(&f, true), 501);
    /* chunked not last → 400 */
    tf_framing_init(&f);
    header(&f, "Host", "h");
    header(&f, "Transfer-Encoding", "chunked, gzip");
    assert_int_equal(tf_check_framing(&f, true), 400);
    /* chunked twice */
    tf_framing_init(&f);
    header(&f, "Host", "h");
    header(&f, "Transfer-Encoding", "chunked");
    header(&f, "Transfer-Encoding", "chunked");
    assert_int_equal(tf_check_framing(&f, true), 400);
    /* only an unknown coding → 501 */
    tf_framing_init(&f);
    header(&f, "Host", "h");
    header(&f, "Transfer-Encoding", "gzip");
    assert_int_equal(tf_check_framing(&f, true), 501);
}

static void test_host(void **state)
{
    (void)state;
    struct tf_framing f;
    tf_framing_init(&f);
    assert_int_equal(tf_check_framing(&f, true), 400);  /* HTTP/1.1 needs Host */
    assert_int_equal(tf_check_framing(&f, false), 0);   /* HTTP/1.0 does not */
    header(&f, "Host", "a");
    assert_int_equal(tf_check_framing(&f, true), 0);
    header(&f, "Host", "b");
    assert_int_equal(tf_check_framing(&f, true), 400);
    tf_framing_init(&f);
    assert_int_equal(header(&f, "Host", "example.org:8080"), 0);
    assert_int_equal(header(&f, "Host", "[::1]:80"), 0);
    assert_int_equal(header(&f, "Host", "a b"), 400);
    assert_int_equal(header(&f, "Host", "a/b"), 400);
    assert_int_equal(header(&f, "Host", "a@b"), 400);
    /* uri-host [ ":" port ] (RFC 9110 7.2), an IPv6 address only in brackets;
     * empty is allowed (RFC 9112 3.2) */
    assert_int_equal(header(&f, "Host", ""), 0);
    assert_int_equal(header(&f, "Host", "[::1]"), 0);
    assert_int_equal(header(&f, "Host", "[v1.x]:8"), 0);
    assert_int_equal(header(&f, "Host", "h:"), 0);
    assert_int_equal(header(&f, "Host", "10.0.0.1:65535"), 0);
    assert_int_equal(header(&f, "Host", "::1"), 400);
    assert_int_equal(header(&f, "Host", ":80"), 400);
    assert_int_equal(header(&f, "Host", "a:b:c"), 400);
    assert_int_equal(header(&f, "Host", "h:abc"), 400);
    assert_int_equal(header(&f, "Host", "[::1"), 400);
    assert_int_equal(header(&f, "Host", "[]"), 400);
    assert_int_equal(header(&f, "Host", "[::1]x"), 400);
    assert_int_equal(header(&f, "Host", "a]b"), 400);
    assert_int_equal(header(&f, "Host", "[a[b]"), 400);
}

static void test_target(void **state)
{
    (void)state;
    assert_int_equal(tf_check_target("/", "GET"), 0);
    assert_int_equal(tf_check_target("/a?b=c", "GET"), 0);
    assert_int_equal(tf_check_target("http://example.org/x", "GET"), 0);
    assert_int_equal(tf_check_target("*", "OPTIONS"), 0);
    assert_int_equal(tf_check_target("*", "GET"), 400);
    assert_int_equal(tf_check_target("relative", "GET"), 400);
    assert_int_equal(tf_check_target("/a\x01", "GET"), 400);
    assert_int_equal(tf_check_target("", "GET"), 400);
    assert_int_equal(tf_check_target("/a#b", "GET"), 400);
    assert_int_equal(tf_check_target("/a?b#c", "GET"), 400);
    assert_int_equal(tf_check_target("http://h#c", "GET"), 400);
    /* absolute-form: a host, no userinfo */
    assert_int_equal(tf_check_target("HTTPS://[::1]:8443?q", "GET"), 0);
    assert_int_equal(tf_check_target("http://h", "GET"), 0);
    assert_int_equal(tf_check_target("http:///x", "GET"), 400);
    assert_int_equal(tf_check_target("http://:80/x", "GET"), 400);
    assert_int_equal(tf_check_target("http://u:p@h/x", "GET"), 400);
    assert_int_equal(tf_check_target("http://a:b:c/x", "GET"), 400);
    /* CONNECT: a tunnel tracfront does not make, whatever the target (a path
     * was served, and libmicrohttpd dropped the answer's length: RFC 9112 6.3) */
    assert_int_equal(tf_check_target("/x", "CONNECT"), 501);
    assert_int_equal(tf_check_target("h:443", "CONNECT"), 501);
    assert_int_equal(tf_absolute_scheme_len("hTTp://h/"), 7);
    assert_int_equal(tf_absolute_scheme_len("https://h/"), 8);
    assert_int_equal(tf_absolute_scheme_len("/http://h/"), 0);
}

static void test_token(void **state)
{
    (void)state;
    assert_true(tf_is_token("GET", 3));
    assert_true(tf_is_token("X-Custom_1!", 11));
    assert_false(tf_is_token("a:b", 3));
    assert_false(tf_is_token("a b", 3));
    assert_false(tf_is_token("", 0));
}

/* Every byte against the grammar's own lists: tchar (RFC 9110 5.6.2) for
 * names, and a reg-name's characters (or ':' then an empty port) after the
 * first of a Host. */
static void test_every_byte(void **state)
{
    (void)state;
    const char *tchar_extra = "!#$%&'*+-.^_`|~", *host_extra = "-._~!$&'()*+,;=%:";
    for (int c = 0; c < 256; c++) {
        char b = (char)c;
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool tchar = alnum || (c && strchr(tchar_extra, c));
        bool host = alnum || (c && strchr(host_extra, c));
        char name[3] = { 'a', b, 0 }, value[3] = { 'a', b, 0 };
        if (tf_is_token(name, 2) != tchar)
            fail_msg("byte 0x%02x: token %d, want %d", c, !tchar, tchar);
        struct tf_framing f;
        tf_framing_init(&f);
        if ((tf_check_header(&f, "Host", 4, value, 2) == 0) != (host && c != 0))
            fail_msg("byte 0x%02x in Host: accepted %d, want %d", c, !host, host);
    }
}

/* Field values are checked a word of 8 bytes at a time: each byte value
 * at each place of a 24-byte value (three words, and a tail of 1 to 7
 * after them) is accepted exactly when it is a visible character, a space,
 * a tab or obs-text (RFC 9110 5.5), whatever surrounds it. */
static void test_field_value_every_byte_everywhere(void **state)
{
    (void)state;
    char v[32];
    for (size_t len = 1; len <= sizeof(v); len++)
        for (size_t at = 0; at < len; at++)
            for (int c = 0; c < 256; c++) {
                memset(v, 'a', sizeof(v));
                v[at] = (char)c;
                bool want = c == '\t' || (c >= 0x20 && c != 0x7f);
                if (tf_is_field_value(v, len) != want)
                    fail_msg("byte 0x%02x at %zu of %zu: accepted %d, want %d", c, at, len,
                             !want, want);
            }
}

static void expect_resolved(const char *target, const char *want)
{
    bool above = false;
    char *got = tf_path_resolve(target, &above);
    if (!want) {
        if (got || !above)
            fail_msg("%s: resolved to %s, want above the root", target, got ? got : "NULL");
    } else if (!got || strcmp(got, want)) {
        fail_msg("%s: resolved to %s, want %s", target, got ? got : "NULL", want);
    }
    free(got);
}

static void test_path_resolve(void **state)
{
    (void)state;
    expect_resolved("/", "/");
    expect_resolved("/a/b?x=/../", "/a/b");
    expect_resolved("/old/../admin", "/admin");
    expect_resolved("/old/%2e%2E/admin", "/admin");
    expect_resolved("/old/..%2fadmin", "/admin");
    expect_resolved("/old/..%5c..%5Cadmin/", NULL); /* IIS reads '\\' and %5c as '/' */
    expect_resolved("/old/..\\admin", "/admin");
    expect_resolved("/old/a%5c..%5cb", "/old/b");
    expect_resolved("/a/./b/../c", "/a/c");
    expect_resolved("/a/b/..", "/a/");
    expect_resolved("/a/.", "/a/");
    expect_resolved("/./up/x", "/up/x");
    expect_resolved("/a//b", "/a//b");     /* empty segments stay */
    expect_resolved("/a/..b/c..", "/a/..b/c..");
    expect_resolved("/.well-known/x", "/.well-known/x");
    expect_resolved("/..", NULL);
    expect_resolved("/a/../../b", NULL);
    assert_true(tf_path_has_dots("/old/../admin"));
    assert_true(tf_path_has_dots("/a/%2E"));
    assert_true(tf_path_has_dots("/a/.%2e/b"));
    assert_false(tf_path_has_dots("/a/..b/.c?x=/../"));
    assert_true(tf_path_has_dots("/a/..%5cb"));
    assert_true(tf_path_has_dots("/a\\..\\b"));
    assert_false(tf_path_has_dots("/a\\..b%5c.c"));
    assert_false(tf_path_has_dots("/"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_syntax), cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_transfer_encoding), cmocka_unit_test(test_host),
        cmocka_unit_test(test_target), cmocka_unit_test(test_token),
        cmocka_unit_test(test_every_byte), cmocka_unit_test(test_path_resolve),
        cmocka_unit_test(test_field_value_every_byte_everywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
