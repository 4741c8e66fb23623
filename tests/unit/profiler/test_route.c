/* Unit tests for profiler/route.c: which segments fold into :id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "profiler/route.h"

static void expect_key(const char *target, const char *want)
{
    char out[128];
    size_t n = prof_route_key(target, strlen(target), true, out, sizeof(out));
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void test_folding(void **state)
{
    (void)state;
    expect_key("/ticket/123", "/ticket/:id");
    expect_key("/ticket/123?action=edit", "/ticket/:id");
    expect_key("/changeset/4f2a9c1e0b/trunk", "/changeset/:id/trunk");
    expect_key("/attachment/ticket/42/file.txt", "/attachment/ticket/:id/file.txt");
    expect_key("/x/123e4567-e89b-12d3-a456-426614174000", "/x/:id");
    expect_key("/wiki/WikiStart", "/wiki/WikiStart");
    expect_key("/wiki/deadbeef", "/wiki/deadbeef"); /* hex word without a digit stays */
    expect_key("/timeline", "/timeline");
    expect_key("/", "/");
    expect_key("", "/");
    expect_key("/report/1/", "/report/:id/");
}

/* A path sent percent-encoded and one sent raw are one route: escapes of
 * unreserved and non-ASCII bytes are decoded; the others (a slash, a
 * question mark, a percent sign) stay escapes, in upper case. */
static void test_percent_escapes(void **state)
{
    (void)state;
    expect_key("/caf%C3%A9", "/caf\xc3\xa9");
    expect_key("/caf%c3%a9/x", "/caf\xc3\xa9/x");
    expect_key("/caf\xc3\xa9", "/caf\xc3\xa9");
    expect_key("/%7Euser/%41b", "/~user/Ab");
    expect_key("/a%2fb/a%2Fb", "/a%2Fb/a%2Fb");    /* an escaped slash is no separator */
    expect_key("/q%3F/%25/%20", "/q%3F/%25/%20");
    expect_key("/ticket/%31%32", "/ticket/:id");    /* decoded, then folded */
    expect_key("/bad%zz/%4", "/bad%zz/%4");         /* not escapes: as sent */
    /* non-ASCII escapes decoded only when they spell UTF-8: else two routes
     * would read alike once shown as text */
    expect_key("/raw%FF", "/raw%FF");
    expect_key("/raw\xff", "/raw%FF"); /* a raw byte that is not UTF-8: as its escape */
    expect_key("/x\xc3\xa9\xff\xc3", "/x\xc3\xa9%FF%C3");
    expect_key("/y\xc3%A9", "/y\xc3\xa9"); /* one character, spelled half raw */
    expect_key("/y%C3\xa9\xff", "/y\xc3\xa9%FF");
    expect_key("/raw%fe", "/raw%FE");
    expect_key("/x%C3", "/x%C3");                      /* cut short */
    expect_key("/x%C3%A9%FF", "/x\xc3\xa9%FF");
    expect_key("/x%E2%82%AC%C3%A9", "/x\xe2\x82\xac\xc3\xa9");
    expect_key("/x%C0%AF", "/x%C0%AF");                /* overlong */
}

static void test_truncation(void **state)
{
    (void)state;
    char out[12];
    prof_route_key("/abc/defghijk/x", 15, true, out, sizeof(out));
    assert_string_equal(out, "/abc/\xe2\x80\xa6"); /* "/abc/…": cut, and marked so */
    assert_true(strlen(out) < sizeof(out));
    /* an id longer than the room left still folds */
    char key[20];
    const char *hash = "/x/0123456789abcdef0123456789abcdef01234567";
    prof_route_key(hash, strlen(hash), true, key, sizeof(key));
    assert_string_equal(key, "/x/:id");
    /* ids of any length, escaped or not */
    char long_id[200] = "/t/", big[512];
    memset(long_id + 3, '7', 150);
    prof_route_key(long_id, strlen(long_id), true, big, sizeof(big));
    assert_string_equal(big, "/t/:id");
    const char *escaped = "/t/%31%32%33%34%35%36%37%38%39%30%31%32%33%34%35%36%37%38%39%30%31%32%33";
    prof_route_key(escaped, strlen(escaped), true, big, sizeof(big));
    assert_string_equal(big, "/t/:id");
}

/* A key too long for ROUTE_KEY_MAX (128) is cut at a segment boundary and
 * ends in "/…": a long page name under /wiki/ was counted as the route
 * /wiki/ itself, and a long first segment as / (the site's root). */
static void test_cut_key_is_marked(void **state)
{
    (void)state;
    char target[400] = "/";
    memset(target + 1, 'b', 140);
    expect_key(target, "/\xe2\x80\xa6");
    strcpy(target, "/wiki/");
    memset(target + 6, 'b', 140);
    expect_key(target, "/wiki/\xe2\x80\xa6");
    strcat(target, "/x?q=1");
    expect_key(target, "/wiki/\xe2\x80\xa6");
    /* many short segments: the last whole ones that leave room for the mark */
    char want[200] = "";
    target[0] = 0;
    for (int i = 0; i < 60; i++)
        strcat(target, "/ab");
    for (int i = 0; i < 41; i++)
        strcat(want, "/ab");
    strcat(want, "/\xe2\x80\xa6");
    expect_key(target, want);
    assert_true(strlen(want) < 128);
    /* a key that just fits is not cut */
    target[0] = '/';
    memset(target + 1, 'c', 126);
    target[127] = 0;
    expect_key(target, target);
}

/* Leading segments kept as written (a --mount and a Trac project folder):
 * counted as segments, not slashes; ids after them still fold. */
static void test_keep_leading(void **state)
{
    (void)state;
    prof_route_keep_leading(2);
    expect_key("/trac/2024/ticket/5", "/trac/2024/ticket/:id");
    expect_key("/trac//2024/7", "/trac//2024/:id");
    expect_key("/2024", "/2024");
    expect_key("/123/456/789", "/123/456/:id");
    char out[64]; /* a static or upstream path: folded as ever */
    prof_route_key("/files/123/a", 12, false, out, sizeof(out));
    assert_string_equal(out, "/files/:id/a");
    prof_route_keep_leading(0);
    expect_key("/123/456", "/:id/:id");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folding),
        cmocka_unit_test(test_percent_escapes),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_cut_key_is_marked),
        cmocka_unit_test(test_keep_leading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
