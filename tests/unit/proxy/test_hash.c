/* Unit tests for proxy/hash.c: MD5 against RFC 1321's test suite, SHA-1
 * against FIPS 180's examples, HMAC-MD5 against RFC 2202. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/hash.h"

static void test_md5_rfc1321(void **state)
{
    (void)state;
    static const char *const vectors[][2] = {
        { "", "d41d8cd98f00b204e9800998ecf8427e" },
        { "a", "0cc175b9c0f1b6a831c399e269772661" },
        { "abc", "900150983cd24fb0d6963f7d28e17f72" },
        { "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
        { "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
        { "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
          "d174ab98d277d9f5a5611c2c9f419d9f" },
        { "1234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0", "57edf4a22be3c955ac49da2e2107b67a" },
    };
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        char hex[33];
        tf_md5_hex(vectors[i][0], strlen(vectors[i][0]), hex);
        assert_string_equal(hex, vectors[i][1]);
    }
}

/* Fed in uneven pieces, across block boundaries: the same digest. */
static void test_md5_incremental(void **state)
{
    (void)state;
    const char *msg = "1234567890123456789012345678901234567890123456789012345678901234567890"
                      "1234567890";
    struct tf_md5 ctx;
    unsigned char d[16];
    char hex[33];
    tf_md5_init(&ctx);
    for (size_t off = 0, step = 1; off < 80; off += step, step = step * 2 + 1)
        tf_md5_update(&ctx, msg + off, off + step > 80 ? 80 - off : step);
    tf_md5_final(&ctx, d);
    tf_hex(d, 16, hex);
    assert_string_equal(hex, "57edf4a22be3c955ac49da2e2107b67a");
}

static void sha1_hex(const void *data, size_t len, size_t repeat, char hex[41])
{
    struct tf_sha1 ctx;
    unsigned char d[20];
    tf_sha1_init(&ctx);
    for (size_t i = 0; i < repeat; i++)
        tf_sha1_update(&ctx, data, len);
    tf_sha1_final(&ctx, d);
    tf_hex(d, 20, hex);
}

static void test_sha1_fips180(void **state)
{
    (void)state;
    char hex[41];
    sha1_hex("abc", 3, 1, hex);
    assert_string_equal(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha1_hex(two, strlen(two), 1, hex);
    assert_string_equal(hex, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    sha1_hex("", 0, 1, hex);
    assert_string_equal(hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    sha1_hex("aaaaaaaaaa", 10, 100000, hex); /* one million 'a' */
    assert_string_equal(hex, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

static void test_hmac_md5_rfc2202(void **state)
{
    (void)state;
    unsigned char key[80], mac[16];
    char hex[33];
    memset(key, 0x0b, 16);
    tf_hmac_md5(key, 16, "Hi There", 8, mac);
    tf_hex(mac, 16, hex);
    assert_string_equal(hex, "9294727a3638bb1c13f48ef8158bfc9d");
    tf_hmac_md5("Jefe", 4, "what do ya want for nothing?", 28, mac);
    tf_hex(mac, 16, hex);
    assert_string_equal(hex, "750c783e6ab0b503eaa86e310a5db738");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_md5_rfc1321), cmocka_unit_test(test_md5_incremental),
        cmocka_unit_test(test_sha1_fips180), cmocka_unit_test(test_hmac_md5_rfc2202),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
