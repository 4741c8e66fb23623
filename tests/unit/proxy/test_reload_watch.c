/* Unit tests for proxy/reload_watch.c: the app's files are the union of the
 * workers' lists, each path once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/reload_watch.h"

static void add(struct tf_reload_files *files, const char *list)
{
    assert_int_equal(tf_reload_files_add(files, list, strlen(list)), 0);
}

static void test_files_are_the_union_of_the_lists(void **state)
{
    (void)state;
    struct tf_reload_files files = { NULL, 0 };
    add(&files, "/app/b.py\n/app/a.py\n");
    add(&files, "/app/c.py\n/app/a.py\n\n/app/d.py"); /* another worker's; no last newline */
    add(&files, "");
    assert_int_equal(files.n, 4);
    const char *want[] = { "/app/a.py", "/app/b.py", "/app/c.py", "/app/d.py" };
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(files.paths[i], want[i]);
    add(&files, "/app/a.py\n/app/d.py\n"); /* nothing new */
    assert_int_equal(files.n, 4);
    tf_reload_files_free(&files);
    assert_int_equal(files.n, 0);
    assert_null(files.paths);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_are_the_union_of_the_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
