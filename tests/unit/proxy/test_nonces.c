/* Unit tests for proxy/nonces.c: a nonce is ours only under its key and
 * realm; each nc is taken once, an nc behind the highest or 0 is not; a table
 * made by the front and shared (a memfd, as the workers map it) gives two
 * tf_nonces the same record, so one takes the other's nonce and refuses a
 * replay of what the other took. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
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

static void test_shared_table(void **state)
{
    (void)state;
    int fd = tf_nonces_table_create();
    assert_true(fd >= 0);
    assert_int_equal(tf_nonces_table_share(fd), 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nc_taken_once), cmocka_unit_test(test_shared_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
