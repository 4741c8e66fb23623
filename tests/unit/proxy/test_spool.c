/* Unit tests for proxy/spool.c: memory, the move to a temp file past the
 * threshold, and reads across the boundary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/spool.h"

static void test_memory_then_file(void **state)
{
    (void)state;
    struct tf_spool s;
    tf_spool_init(&s);
    size_t total = TF_SPOOL_MEMORY_MAX * 3 + 123;
    char *pattern = malloc(total);
    for (size_t i = 0; i < total; i++)
        pattern[i] = (char)(i * 7 + i / 251);
    size_t off = 0;
    while (off < total) {
        size_t n = total - off < 10007 ? total - off : 10007;
        assert_int_equal(tf_spool_append(&s, pattern + off, n), 0);
        off += n;
        if (off <= TF_SPOOL_MEMORY_MAX)
            assert_int_equal(s.fd, -1);
    }
    assert_true(s.fd >= 0);
    assert_null(s.mem);
    assert_int_equal(s.size, total);
    char *back = malloc(total);
    size_t got = 0;
    while (got < total) {
        ssize_t r = tf_spool_read(&s, got, back + got, 65536);
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_memory_equal(back, pattern, total);
    assert_int_equal(tf_spool_read(&s, total, back, 10), 0);
    tf_spool_free(&s);
    free(back);
    free(pattern);
}

static void test_small_stays_in_memory(void **state)
{
    (void)state;
    struct tf_spool s;
    tf_spool_init(&s);
    assert_int_equal(tf_spool_append(&s, "hello ", 6), 0);
    assert_int_equal(tf_spool_append(&s, "world", 5), 0);
    assert_int_equal(s.fd, -1);
    char buf[32];
    assert_int_equal(tf_spool_read(&s, 3, buf, sizeof(buf)), 8);
    assert_memory_equal(buf, "lo world", 8);
    tf_spool_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_then_file),
        cmocka_unit_test(test_small_stays_in_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
