/* Unit tests for proxy/nonces.c: a nonce is ours only under its key and
 * realm; each nc is taken once, an nc behind the highest or 0 is not; a table
 * made by the front and shared (a memfd, as the workers map it) gives two
 * tf_nonces the same record, so one takes the other's nonce and refuses a
 * replay of what the other took. A worker takes the table only from a
 * decimal descriptor that is the front's table, and leaves any other open;
 * a nonce made late never takes a newer one's slot. */
#define _GNU_SOURCE /* memfd_create */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/nonces.h"

static const unsigned char key[32] = "0123456789abcdef0123456789abcdef";

static void test_nc_taken_once(void **state)
{
    (void)state;
    struct tf_nonces *n = tf_nonces_new(key, 60);
    char nonce[TF_NONCE_LEN + 1], forged[TF_NONCE_LEN + 1];
    assert_non_null(n);
    tf_nonces_make(n, "Trac", nonce);
    assert_int_equal(strlen(nonce), TF_NONCE_LEN);
    assert_true(tf_nonces_ours(n, "Trac", nonce));
    assert_false(tf_nonces_ours(n, "Other", nonce));
    memcpy(forged, nonce, sizeof(forged));
    forged[23] = forged[23] == '1' ? '2' : '1'; /* another counter, same HMAC */
    assert_false(tf_nonces_ours(n, "Trac", forged));
    assert_int_equal(tf_nonces_take(n, nonce, "00000000"), TF_NONCE_NC_ZERO);
    assert_int_equal(tf_nonces_take(n, nonce, "00000001"), TF_NONCE_FRESH);
    assert_int_equal(tf_nonces_take(n, nonce, "00000001"), TF_NONCE_NC_USED);
    assert_int_equal(tf_nonces_take(n, nonce, "00000003"), TF_NONCE_FRESH);
    assert_int_equal(tf_nonces_take(n, nonce, "00000002"), TF_NONCE_NC_BEHIND);
    struct tf_nonces *other = tf_nonces_new(key, 60); /* a table of its own */
    assert_non_null(other);
    assert_true(tf_nonces_ours(other, "Trac", nonce));
    assert_int_equal(tf_nonces_take(other, nonce, "00000004"), TF_NONCE_ELSEWHERE);
    tf_nonces_free(other);
    tf_nonces_free(n);
}

/* The front's table as TF_AUTH_NONCES_FD gives it: fd's number. */
static const char *number(int fd)
{
    static char text[16];
    snprintf(text, sizeof(text), "%d", fd);
    return text;
}

static bool is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void test_share_takes_only_the_fronts_table(void **state)
{
    (void)state;
    static const char *const malformed[] = { "", "x", "6x", "6 ", " 6", "+6", "-1", "0x6",
                                             "99999999999" };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(*malformed); i++) {
        errno = 0;
        assert_int_equal(tf_nonces_table_share(malformed[i], true), -1);
        assert_int_equal(errno, EINVAL);
    }
    int p[2], other = memfd_create("not-the-table", 0);
    assert_int_equal(pipe(p), 0);
    assert_true(other >= 0);
    assert_int_equal(ftruncate(other, 1 << 20), 0);
    const int tried[] = { p[0], other, 1234 }; /* a memfd without the table's seals; not open */
    for (size_t i = 0; i < 3; i++) {
        errno = 0;
        assert_int_equal(tf_nonces_table_share(number(tried[i]), true), -1);
        assert_int_equal(errno, i == 2 ? EBADF : EINVAL);
    }
    assert_true(is_open(p[0]) && is_open(other)); /* never closed: not ours */
    close(p[0]);
    close(p[1]);
    close(other);
}

static void test_table_not_used_is_closed_unmapped(void **state)
{
    (void)state;
    char err[256] = "";
    int fd = tf_nonces_table_create(err, sizeof(err));
    assert_true(fd >= 0);
    assert_string_equal(err, "");
    int kept = dup(fd);
    assert_int_equal(tf_nonces_table_share(number(fd), false), 0);
    assert_false(is_open(fd));
    uint32_t *head = mmap(NULL, 4096, PROT_READ, MAP_SHARED, kept, 0);
    assert_true(head != MAP_FAILED);
    struct tf_nonces *n = tf_nonces_new(key, 60); /* a table of its own */
    char nonce[TF_NONCE_LEN + 1];
    tf_nonces_make(n, "Trac", nonce);
    assert_int_equal(head[1], 0); /* the shared table's counter: not counted there */
    tf_nonces_free(n);
    munmap(head, 4096);
    close(kept);
}

static void test_shared_table(void **state)
{
    (void)state;
    char err[256];
    int fd = tf_nonces_table_create(err, sizeof(err));
    assert_true(fd >= 0);
    assert_int_equal(tf_nonces_table_share(number(fd), true), 0);
    assert_false(is_open(fd));
    struct tf_nonces *a = tf_nonces_new(key, 60), *b = tf_nonces_new(key, 60);
    char nonce[TF_NONCE_LEN + 1];
    assert_non_null(a);
    assert_non_null(b);
    tf_nonces_make(a, "Trac", nonce);
    assert_int_equal(tf_nonces_take(b, nonce, "00000001"), TF_NONCE_FRESH);
    assert_int_equal(tf_nonces_take(a, nonce, "00000001"), TF_NONCE_NC_USED);
    assert_int_equal(tf_nonces_take(a, nonce, "00000002"), TF_NONCE_FRESH);
    tf_nonces_free(a);
    tf_nonces_free(b);
}

/* A thread that drew its nonce's counter, then was held up while 4096
 * more were made, must not give that slot back to its older nonce: the
 * newer one would be answered stale. The late thread is played by setting
 * the table's counter back (its layout: id, counter, slots). Shares a
 * second table, replacing the one test_shared_table shared. */
static void test_late_nonce_never_takes_a_newer_slot(void **state)
{
    (void)state;
    char err[256];
    int fd = tf_nonces_table_create(err, sizeof(err)), kept = dup(fd);
    assert_true(fd >= 0 && kept >= 0);
    assert_int_equal(tf_nonces_table_share(number(fd), true), 0);
    uint32_t *head = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, kept, 0);
    assert_true(head != MAP_FAILED);
    struct tf_nonces *n = tf_nonces_new(key, 60);
    char newer[TF_NONCE_LEN + 1], late[TF_NONCE_LEN + 1];
    for (unsigned i = 0; i <= 4096; i++) /* counters 1 to 4097: 4097 took 1's slot */
        tf_nonces_make(n, "Trac", newer);
    __atomic_store_n(&head[1], 0, __ATOMIC_SEQ_CST); /* the late thread's counter is 1 */
    tf_nonces_make(n, "Trac", late);
    assert_int_equal(tf_nonces_take(n, late, "00000001"), TF_NONCE_FORGOTTEN);
    assert_int_equal(tf_nonces_take(n, newer, "00000001"), TF_NONCE_FRESH);
    tf_nonces_free(n);
    munmap(head, 4096);
    close(kept);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nc_taken_once),
        cmocka_unit_test(test_share_takes_only_the_fronts_table),
        cmocka_unit_test(test_table_not_used_is_closed_unmapped),
        cmocka_unit_test(test_shared_table),
        cmocka_unit_test(test_late_nonce_never_takes_a_newer_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
