/* Unit tests for proxy/route.c: parsing, longest prefix, segment boundaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proxy/route.h"

static const char *kind_of(const struct tf_route_table *t, const char *target, const char **rest)
{
    const struct tf_route *r = tf_route_find(t, target, rest);
    enum tf_backend_kind k = r ? r->kind : t->fallback;
    return k == TF_ROUTE_APP ? "app" : k == TF_ROUTE_UPSTREAM ? "upstream"
         : k == TF_ROUTE_STATIC ? "static" : "none";
}

static void test_longest_prefix_on_segment_boundaries(void **state)
{
    (void)state;
    struct tf_route_table t = { 0 };
    char err[256];
    assert_int_equal(tf_route_add(&t, "/a=upstream", false, err, sizeof(err)), 0);
    assert_int_equal(tf_route_add(&t, "/a/b/=app", false, err, sizeof(err)), 0);
    assert_int_equal(tf_route_add(&t, "/chrome=/tmp", true, err, sizeof(err)), 0);
    assert_int_equal(tf_route_finish(&t, true, true, err, sizeof(err)), 0);
    const char *rest;
    assert_string_equal(kind_of(&t, "/a", &rest), "upstream");
    assert_string_equal(rest, "");
    assert_string_equal(kind_of(&t, "/a?x=1", &rest), "upstream");
    assert_string_equal(rest, "?x=1");
    assert_string_equal(kind_of(&t, "/a/c", &rest), "upstream");
    assert_string_equal(kind_of(&t, "/a/b/c", &rest), "app");   /* longer wins */
    assert_string_equal(rest, "/c");
    assert_string_equal(kind_of(&t, "/ab", &rest), "app");      /* not on a boundary: fallback */
    assert_string_equal(kind_of(&t, "/chrome/x.css", &rest), "static");
    assert_string_equal(rest, "/x.css");
    assert_string_equal(kind_of(&t, "/chromex", &rest), "app");
    tf_route_table_free(&t);
}

static void test_fallbacks(void **state)
{
    (void)state;
    char err[256];
    const char *rest;
    struct tf_route_table only_upstream = { 0 }, nothing = { 0 };
    assert_int_equal(tf_route_finish(&only_upstream, false, true, err, sizeof(err)), 0);
    assert_string_equal(kind_of(&only_upstream, "/x", &rest), "upstream");
    assert_int_equal(tf_route_add(&nothing, "/s=/tmp", true, err, sizeof(err)), 0);
    assert_int_equal(tf_route_finish(&nothing, false, false, err, sizeof(err)), 0);
    assert_string_equal(kind_of(&nothing, "/x", &rest), "none");
    tf_route_table_free(&only_upstream);
    tf_route_table_free(&nothing);
}

static void expect_error(const char *spec, bool is_static, bool app, bool upstream,
                         const char *needle)
{
    struct tf_route_table t = { 0 };
    char err[256] = "";
    int rc = tf_route_add(&t, spec, is_static, err, sizeof(err));
    if (rc == 0)
        rc = tf_route_finish(&t, app, upstream, err, sizeof(err));
    assert_int_equal(rc, -1);
    if (!strstr(err, needle))
        fail_msg("'%s' does not mention '%s'", err, needle);
    tf_route_table_free(&t);
}

static void test_errors_name_the_flag(void **state)
{
    (void)state;
    expect_error("noslash=app", false, true, true, "--route");
    expect_error("/x", false, true, true, "PREFIX=");
    expect_error("/x=elsewhere", false, true, true, "app, upstream or static");
    expect_error("/x=static:/no/such/folder", false, true, true, "does not exist");
    expect_error("/x=/no/such/folder", true, true, true, "--static");
    expect_error("/x=/proc/self/status", true, true, true, "is not a folder");
    expect_error("/x=upstream", false, true, false, "no --upstream");
    expect_error("/x=app", false, false, true, "no application");
    expect_error("/s%20=app", false, true, true, "can never match");  /* as --mount */
    expect_error("/s?x=app", false, true, true, "can never match");
    expect_error("/a/../b=app", false, true, true, "can never match");
    struct tf_route_table t = { 0 };
    char err[256];
    assert_int_equal(tf_route_add(&t, "/x=app", false, err, sizeof(err)), 0);
    assert_int_equal(tf_route_add(&t, "/x/=upstream", false, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "twice"));
    tf_route_table_free(&t);
}

/* Prefixes are compared with the decoded path, as --mount's and nginx's
 * location: a browser sends /caf%C3%A9 for /café. */
static void test_prefixes_match_the_decoded_path(void **state)
{
    (void)state;
    struct tf_route_table t = { 0 };
    char err[256];
    assert_int_equal(tf_route_add(&t, "/caf\xc3\xa9=upstream", false, err, sizeof(err)), 0);
    assert_int_equal(tf_route_add(&t, "/a=upstream", false, err, sizeof(err)), 0);
    assert_int_equal(tf_route_finish(&t, true, true, err, sizeof(err)), 0);
    const char *rest;
    assert_string_equal(kind_of(&t, "/caf%C3%A9/x.txt", &rest), "upstream");
    assert_string_equal(rest, "/x.txt");
    assert_string_equal(kind_of(&t, "/caf%c3%a9?q=1", &rest), "upstream");
    assert_string_equal(rest, "?q=1");
    assert_string_equal(kind_of(&t, "/caf\xc3\xa9", &rest), "upstream");
    assert_string_equal(kind_of(&t, "/%61/x", &rest), "upstream");
    assert_string_equal(rest, "/x");
    assert_string_equal(kind_of(&t, "/a%2Fx", &rest), "upstream"); /* %2F is a '/', as --mount */
    assert_string_equal(rest, "%2Fx");
    assert_string_equal(kind_of(&t, "/a%2", &rest), "app");      /* not an escape */
    assert_string_equal(kind_of(&t, "/%61b", &rest), "app");     /* not on a boundary */
    assert_string_equal(kind_of(&t, "/caf%C3", &rest), "app");
    assert_string_equal(kind_of(&t, "/x?/a", &rest), "app");     /* the query is not the path */
    tf_route_table_free(&t);
}

/* A static folder is kept as given, made absolute, not resolved: static.c
 * resolves it per request, so a swapped symlink in it takes effect. */
static void test_static_folder_kept_unresolved(void **state)
{
    (void)state;
    struct tf_route_table t = { 0 };
    char err[256], cwd[PATH_MAX], want[PATH_MAX + 8];
    assert_int_equal(tf_route_add(&t, "/a=/tmp/../tmp", true, err, sizeof(err)), 0);
    assert_int_equal(tf_route_add(&t, "/b=.", true, err, sizeof(err)), 0);
    assert_string_equal(t.routes[0].dir, "/tmp/../tmp");
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(want, sizeof(want), "%s/.", cwd);
    assert_string_equal(t.routes[1].dir, want);
    tf_route_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest_prefix_on_segment_boundaries),
        cmocka_unit_test(test_fallbacks),
        cmocka_unit_test(test_errors_name_the_flag),
        cmocka_unit_test(test_static_folder_kept_unresolved),
        cmocka_unit_test(test_prefixes_match_the_decoded_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
