/* Unit tests for proxy/body_hash.c: XXH64's published digests (the empty
 * input, the tail's 1-, 4- and 8-byte steps, whole 32-byte blocks), and the
 * same hash however the body is cut into pieces, which is what lets
 * --mirror compare two backends' bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/body_hash.h"

static uint64_t hash_of(const void *data, size_t len)
{
    struct tf_body_hash h;
    tf_body_hash_init(&h);
    tf_body_hash_feed(&h, data, len);
    return tf_body_hash_value(&h);
}

static void test_published_digests(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t xxh64;
    } cases[] = {
        { "", 0xef46db3751d8e999ull },
        { "a", 0xd24ec4f1a98c6e5bull },
        { "abc", 0x44bc2cf5ad770999ull },
        { "1234567890123456789012345678901", 0x8f367cb873a5376eull },
        { "12345678901234567890123456789012", 0x40fd1aa52d98274cull },
        { "The quick brown fox jumps over the lazy dog", 0x0b242d361fda71bcull },
        { "Nobody inspects the spammish repetition", 0xfbcea83c8a378bf1ull },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(hash_of(cases[i].text, strlen(cases[i].text)), cases[i].xxh64);
}

static void test_any_pieces_give_the_same_hash(void **state)
{
    (void)state;
    unsigned char body[300];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (unsigned char)(i * 131 + 7);
    for (size_t len = 0; len <= sizeof(body); len += 37) {
        uint64_t whole = hash_of(body, len);
        for (size_t piece = 1; piece <= 70; piece++) { /* every block offset, and then some */
            struct tf_body_hash h;
            tf_body_hash_init(&h);
            for (size_t off = 0; off < len; off += piece) {
                tf_body_hash_feed(&h, body + off, len - off < piece ? len - off : piece);
                tf_body_hash_feed(&h, "", 0);
            }
            assert_int_equal(h.bytes, len);
            assert_int_equal(tf_body_hash_value(&h), whole);
        }
    }
}

static void test_value_leaves_the_hash_going(void **state)
{
    (void)state;
    const char *text = "The quick brown fox jumps over the lazy dog";
    struct tf_body_hash h;
    tf_body_hash_init(&h);
    tf_body_hash_feed(&h, text, 10);
    assert_int_equal(tf_body_hash_value(&h), hash_of(text, 10));
    tf_body_hash_feed(&h, text + 10, strlen(text) - 10);
    assert_int_equal(tf_body_hash_value(&h), 0x0b242d361fda71bcull);
}

static void test_one_byte_changes_the_hash(void **state)
{
    (void)state;
    unsigned char body[4096] = { 0 };
    uint64_t zeros = hash_of(body, sizeof(body));
    body[2049] = 1;
    assert_int_not_equal(hash_of(body, sizeof(body)), zeros);
    assert_int_not_equal(hash_of(body, sizeof(body) - 1), hash_of(body, sizeof(body)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_digests),
        cmocka_unit_test(test_any_pieces_give_the_same_hash),
        cmocka_unit_test(test_value_leaves_the_hash_going),
        cmocka_unit_test(test_one_byte_changes_the_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
