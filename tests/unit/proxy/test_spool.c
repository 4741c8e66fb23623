/* Unit tests for proxy/spool.c: memory, the move to a temp file past the
 * threshold, reads across the boundary, and a shared spool outliving its
 * source. */
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

/* A shared spool reads the same bytes, in memory or in the file, and
 * still does once the source is freed. */
static void test_share_outlives_its_source(void **state)
{
    (void)state;
    size_t sizes[] = { 0, 11, TF_SPOOL_MEMORY_MAX + 1 };
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        struct tf_spool src, dst;
        tf_spool_init(&src);
        char *data = malloc(sizes[k] + 1);
        for (size_t i = 0; i < sizes[k]; i++)
            data[i] = (char)(i * 13);
        assert_int_equal(tf_spool_append(&src, data, sizes[k]), 0);
        assert_int_equal(tf_spool_share(&dst, &src), 0);
        assert_int_equal(dst.size, sizes[k]);
        assert_int_equal(dst.fd >= 0, src.fd >= 0);
        tf_spool_free(&src);
        char *back = malloc(sizes[k] + 1);
        size_t got = 0;
        ssize_t r;
        while ((r = tf_spool_read(&dst, got, back + got, 65536)) > 0)
            got += (size_t)r;
        assert_int_equal(r, 0);
        assert_int_equal(got, sizes[k]);
        assert_memory_equal(back, data, sizes[k]);
        tf_spool_free(&dst);
        free(back);
        free(data);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_then_file),
        cmocka_unit_test(test_small_stays_in_memory),
        cmocka_unit_test(test_share_outlives_its_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
