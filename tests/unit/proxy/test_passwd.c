/* Unit tests for proxy/passwd.c: every htpasswd hash format verified right
 * and wrong (fixtures made once with Apache's htpasswd 2.4, openssl passwd
 * and libxcrypt, pasted here), malformed lines skipped with a warning,
 * htdigest realms, and a changed file re-read without a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/passwd.h"
#include "scratch.h"

struct fixture {
    const char *hash, *password, *how;
};

static const struct fixture fixtures[] = {
    /* htpasswd -nbB -C 4 */
    { "$2y$04$shDZ9Ff6Xv8drsG5eePjyOFB7w6SfDgGXB3jLih36blGRa7OO4avy", "pw-B -C 4", "bcrypt 2y" },
    { "$2y$05$tDsZfH7FIV0k2cZLtcE9guwY.8r7gwvnXvFBmfKiQX6g2NiHFFEtS", "s3cret-B", "bcrypt 2y" },
    { "$2y$04$I8iueHd4Uem.vIn6Q7170unUCzSsS.F8VfD9ipqWsEkueCRX.9OT.", "gr\xc3\xbc\xc3\x9f" "e",
      "bcrypt, UTF-8 password" },
    /* libxcrypt with $2a$ / $2b$ settings */
    { "$2a$04$abcdefghijABCDEFGHIJ0uxPqhz5YXpHcnXkRI1U.iZXjCHourZOa", "two-a pw", "bcrypt 2a" },
    { "$2b$04$Zyxwvutsrqponmlkjihgf.KANRQqOT29BPSebR8TA10iz1kWnPOpe", "two-b pw", "bcrypt 2b" },
    /* htpasswd -nbm */
    { "$apr1$9yKlBeiv$0eOFYN.hCAoXHXTPdzv2X0", "pw-m", "apr1" },
    { "$apr1$TBfrTGpw$OLkksH5egVZKyW3Wuh8C3/", "s3cret-M", "apr1" },
    { "$apr1$w9/1d2ov$o.veNnRmVzRzyuw.940NJ1", "a:b:c", "apr1, colons in the password" },
    /* htpasswd -nbs */
    { "{SHA}Ve878e5lOgwSjWid5/VhR4gReac=", "pw-s", "SHA-1" },
    { "{SHA}gn765T1uaSmJvKEorBukPP44hg8=", "s3cret-S", "SHA-1" },
    /* htpasswd -nbd */
    { "2m9xE4lWrI486", "pw-d", "DES crypt" },
    { "WXH6AFMTZ29eg", "s3cret-D", "DES crypt" },
    /* openssl passwd -1, htpasswd -nb2, htpasswd -nb5 */
    { "$1$Xy7Q2zPq$jxKONzWBgz.YcxCfOSw3N1", "md5-crypt pw", "glibc $1$" },
    { "$5$xrBTMQgERYwxvATv$9tUkO6Aa15gnkN7MMUlBBHwlUz0ZlUGG5bqm2kkCSJ1", "pw-2", "glibc $5$" },
    { "$6$/be8TIBTsEa5Xwze$oKkH5933.Dh4tRfW/RtuPjzoro8BnhM93ZgfzLYrSxBV2228fm7yjomVVYKOQ3T."
      "GHm5jzLsVg91zRfLvIMcZ1", "pw-5", "glibc $6$" },
};

static void test_every_format_right_and_wrong(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        const struct fixture *f = &fixtures[i];
        assert_true(tf_passwd_hash_known(f->hash));
        if (tf_passwd_verify(f->hash, f->password) != 1)
            fail_msg("%s: the right password was refused (%s)", f->how, f->hash);
        char wrong[128];
        snprintf(wrong, sizeof(wrong), "x%s", f->password);
        assert_int_equal(tf_passwd_verify(f->hash, wrong), 0);
        assert_int_equal(tf_passwd_verify(f->hash, ""), 0);
        /* one character more or less: DES crypt reads 8 characters only, so not for it */
        if (strlen(f->password) > 1 && strlen(f->hash) != 13) {
            snprintf(wrong, sizeof(wrong), "%sx", f->password);
            assert_int_equal(tf_passwd_verify(f->hash, wrong), 0);
            snprintf(wrong, sizeof(wrong), "%.*s", (int)strlen(f->password) - 1, f->password);
            assert_int_equal(tf_passwd_verify(f->hash, wrong), 0);
        }
    }
}

static void test_unknown_formats(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "plaintext", "", "{SHA}tooshort", "$apr1$$abc", "$apr1$123456789$0eOFYN.hCAoXHXTPdzv2X0",
        "$2y$04$short", "$3$abc", "2m9xE4lWrI48", "2m9xE4lWrI48!", "$2x$04$abcdefghijABCDEFGHIJ0u"
        "xPqhz5YXpHcnXkRI1U.iZXjCHourZOa",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(tf_passwd_hash_known(bad[i]));
        assert_int_equal(tf_passwd_verify(bad[i], "plaintext"), -1);
    }
}

static void test_htpasswd_file(void **state)
{
    (void)state;
    const char *path = scratch_write("htpasswd",
        "# a comment\n"
        "\n"
        "alice:$apr1$TBfrTGpw$OLkksH5egVZKyW3Wuh8C3/\n"
        "nocolon\n"
        "plain:secret\n"
        ":{SHA}gn765T1uaSmJvKEorBukPP44hg8=\n"
        "  bob:{SHA}gn765T1uaSmJvKEorBukPP44hg8=:a comment field  \r\n"
        "alice:{SHA}gn765T1uaSmJvKEorBukPP44hg8=\n");
    char err[256], hash[256];
    struct tf_passwd *pw = tf_passwd_open(path, TF_PASSWD_HTPASSWD, NULL, "--basic-auth", err,
                                          sizeof(err));
    assert_non_null(pw);
    assert_int_equal(tf_passwd_count(pw), 2);
    assert_int_equal(tf_passwd_lookup(pw, "alice", hash, sizeof(hash)), 0);
    assert_string_equal(hash, "$apr1$TBfrTGpw$OLkksH5egVZKyW3Wuh8C3/"); /* the first line wins */
    assert_int_equal(tf_passwd_verify(hash, "s3cret-M"), 1);
    assert_int_equal(tf_passwd_lookup(pw, "bob", hash, sizeof(hash)), 0);
    assert_string_equal(hash, "{SHA}gn765T1uaSmJvKEorBukPP44hg8=");
    assert_int_equal(tf_passwd_lookup(pw, "plain", hash, sizeof(hash)), -1);
    assert_int_equal(tf_passwd_lookup(pw, "carol", hash, sizeof(hash)), -1);
    assert_string_equal(hash, "");
    const char *log = scratch_log();
    assert_non_null(strstr(log, "line 4: not USER:HASH; line skipped"));
    assert_non_null(strstr(log, "line 5: the password hash is not bcrypt"));
    assert_non_null(strstr(log, "line 6: not USER:HASH"));
    assert_non_null(strstr(log, "line 8: that user is already on line 3"));
    assert_null(strstr(log, "secret")); /* a plaintext line's password is never logged */
    tf_passwd_free(pw);
}

static void test_htdigest_realms(void **state)
{
    (void)state;
    const char *path = scratch_write("htdigest",
        "alice:Trac:939E7578ED9E3C518A452ACEE763BCE9\n"
        "alice:Other:11111111111111111111111111111111\n"
        "bob:Other:22222222222222222222222222222222\n"
        "carol:Trac:not-hex\n"
        "dave:Trac\n");
    char err[256], ha1[64];
    struct tf_passwd *pw = tf_passwd_open(path, TF_PASSWD_HTDIGEST, "Trac", "--digest-auth",
                                          err, sizeof(err));
    assert_non_null(pw);
    assert_int_equal(tf_passwd_count(pw), 1);
    assert_int_equal(tf_passwd_lookup(pw, "alice", ha1, sizeof(ha1)), 0);
    assert_string_equal(ha1, "939e7578ed9e3c518a452acee763bce9"); /* lowercased */
    assert_int_equal(tf_passwd_lookup(pw, "bob", ha1, sizeof(ha1)), -1);
    const char *log = scratch_log();
    assert_non_null(strstr(log, "line 4: the hash is not 32 hex digits"));
    assert_non_null(strstr(log, "line 5: not USER:REALM:HA1"));
    tf_passwd_free(pw);
}

static void test_missing_file(void **state)
{
    (void)state;
    char err[256];
    assert_null(tf_passwd_open("/nonexistent/htpasswd", TF_PASSWD_HTPASSWD, NULL, "--basic-auth",
                               err, sizeof(err)));
    assert_string_equal(err, "--basic-auth: cannot read '/nonexistent/htpasswd': "
                             "No such file or directory");
}

static void test_changed_file_is_reread(void **state)
{
    (void)state;
    const char *path = scratch_write("changing", "alice:{SHA}gn765T1uaSmJvKEorBukPP44hg8=\n");
    char err[256], hash[256];
    struct tf_passwd *pw = tf_passwd_open(path, TF_PASSWD_HTPASSWD, NULL, "--basic-auth", err,
                                          sizeof(err));
    assert_non_null(pw);
    assert_int_equal(tf_passwd_lookup(pw, "bob", hash, sizeof(hash)), -1);
    scratch_write("changing", "bob:$apr1$TBfrTGpw$OLkksH5egVZKyW3Wuh8C3/\n");
    usleep(1100 * 1000); /* files are looked at once a second at most */
    assert_int_equal(tf_passwd_lookup(pw, "bob", hash, sizeof(hash)), 0);
    assert_int_equal(tf_passwd_lookup(pw, "alice", hash, sizeof(hash)), -1);
    assert_int_equal(unlink(path), 0); /* gone: as Apache, nobody logs in */
    usleep(1100 * 1000);
    assert_int_equal(tf_passwd_lookup(pw, "bob", hash, sizeof(hash)), TF_PASSWD_UNREADABLE);
    assert_string_equal(hash, "");
    assert_non_null(strstr(scratch_log(), "cannot re-read it (No such file or directory); "
                                       "its logins answer 500 until it can"));
    scratch_write("changing", "bob:$apr1$TBfrTGpw$OLkksH5egVZKyW3Wuh8C3/\n"); /* back */
    usleep(1100 * 1000);
    assert_int_equal(tf_passwd_lookup(pw, "bob", hash, sizeof(hash)), 0);
    assert_int_equal(tf_passwd_lookup(pw, "alice", hash, sizeof(hash)), -1);
    tf_passwd_free(pw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_format_right_and_wrong), cmocka_unit_test(test_unknown_formats),
        cmocka_unit_test(test_htpasswd_file), cmocka_unit_test(test_htdigest_realms),
        cmocka_unit_test(test_missing_file), cmocka_unit_test(test_changed_file_is_reread),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
