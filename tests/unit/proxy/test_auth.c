/* Unit tests for proxy/auth.c: tracd's login paths, the configuration's
 * checks (errors name the flag), Basic and Digest answers verified or
 * refused (the RFC 2617 example, replayed and forged nonces, a wrong uri),
 * and malformed Authorization headers that must get a 401, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <microhttpd.h>

#include "proxy/auth.h"
#include "proxy/config.h"
#include "proxy/hash.h"
#include "scratch.h"

static char htpasswd[300], htdigest[300];
static char trac_main[300]; /* a folder named main: --trac-env must be one */

/* alice / s3cret-M as Apache MD5; bob / s3cret-S as SHA-1 (htpasswd -nbm, -nbs) */
static const char htpasswd_text[] = "alice:$apr1$TBfrTGpw$OLkksH5egVZKyW3Wuh8C3/\n"
                                    "bob:{SHA}gn765T1uaSmJvKEorBukPP44hg8=\n";
/* Mufasa / "Circle Of Life" in realm testrealm@host.com: RFC 2617's example */
static const char htdigest_text[] = "Mufasa:testrealm@host.com:939e7578ed9e3c518a452acee763bce9\n";

static void test_rfc2617_example(void **state)
{
    (void)state;
    char ha1[33], out[33];
    const char *a1 = "Mufasa:testrealm@host.com:Circle Of Life";
    tf_md5_hex(a1, strlen(a1), ha1);
    assert_string_equal(ha1, "939e7578ed9e3c518a452acee763bce9");
    tf_auth_digest_response(ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b",
                            "auth", "GET", "/dir/index.html", out);
    assert_string_equal(out, "6629fae49393a05397450978507c4ef1");
}

static void test_login_paths(void **state)
{
    (void)state;
    char project[64];
    static const struct {
        const char *target, *mount;
        bool parent_dir, login;
        const char *project;
    } cases[] = {
        { "/login", "", false, true, "" },
        { "/login/", "", false, true, "" },
        { "/login?referer=/wiki", "", false, true, "" },
        { "//login", "", false, true, "" },
        { "/%6Cogin", "", false, true, "" },       /* decoded as PATH_INFO is */
        { "/login/more", "", false, true, "" },    /* tracd looks at one segment only */
        { "/logout", "", false, false, NULL },
        { "/loginx", "", false, false, NULL },
        { "/wiki/login", "", false, false, NULL },
        { "/", "", false, false, NULL },
        { "*", "", false, false, NULL },
        { "/trac/login", "/trac", false, true, "" },
        { "/login", "/trac", false, false, NULL },  /* outside the mount: the app says 404 */
        { "/tracx/login", "/trac", false, false, NULL },
        { "/proj/login", "", true, true, "proj" },
        { "/proj//login/", "", true, true, "proj" },
        { "/login", "", true, false, NULL },        /* the index of projects */
        { "/proj/wiki/login", "", true, false, NULL },
        { "/trac/p%20q/login", "/trac", true, true, "p q" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool login = tf_auth_login_path(cases[i].target, cases[i].mount, cases[i].parent_dir,
                                        project, sizeof(project));
        if (login != cases[i].login)
            fail_msg("%s (mount '%s', parent dir %d): login %d", cases[i].target,
                     cases[i].mount, cases[i].parent_dir, login);
        if (login)
            assert_string_equal(project, cases[i].project);
    }
}

static int load(struct tf_config *cfg, char *err, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return tf_config_load(cfg, argc, argv, err, 1024);
}

static void expect_error(char **argv, const char *message)
{
    struct tf_config cfg;
    char err[1024] = "";
    assert_int_equal(load(&cfg, err, argv), -1);
    if (!strstr(err, message))
        fail_msg("expected '%s' in '%s'", message, err);
    tf_config_free(&cfg);
}

static void test_config_errors_name_the_flag(void **state)
{
    (void)state;
    char spec[400], other[400];
    snprintf(spec, sizeof(spec), "*,%s,Realm", htpasswd);
    expect_error((char *[]){ "tf", "--app", "m:a", "--basic-auth", "*,x", NULL },
                 "--basic-auth: '*,x' is not PROJECT,HTPASSWD,REALM");
    expect_error((char *[]){ "tf", "--app", "m:a", "--digest-auth", ",f,R", NULL },
                 "--digest-auth: ',f,R' is not PROJECT,HTDIGEST,REALM");
    expect_error((char *[]){ "tf", "--app", "m:a", "--basic-auth", "*,/nonexistent/pw,R", NULL },
                 "--basic-auth: cannot read '/nonexistent/pw': No such file or directory");
    expect_error((char *[]){ "tf", "--upstream", "http://127.0.0.1:9", "--basic-auth", spec, NULL },
                 "--basic-auth: needs an application");
    snprintf(other, sizeof(other), "proj,%s,Realm", htpasswd);
    expect_error((char *[]){ "tf", "--app", "m:a", "--basic-auth", other, NULL },
                 "with --app or --wsgi-file there is one project: use * for PROJECT");
    expect_error((char *[]){ "tf", "--trac-env", trac_main, "--basic-auth", other, NULL },
                 "project 'proj' is not served: --trac-env serves 'main'");
    expect_error((char *[]){ "tf", "--trac-env-parent-dir", scratch_dir, "--basic-auth", "a/b,f,R",
                             NULL }, "'a/b' is not a project");
    expect_error((char *[]){ "tf", "--app", "m:a", "--basic-auth", spec, "--digest-auth", spec,
                             NULL }, "--digest-auth: project '*' already has a --basic-auth");
    snprintf(other, sizeof(other), "*,%s,Say \"hi\"", htpasswd);
    expect_error((char *[]){ "tf", "--app", "m:a", "--basic-auth", other, NULL },
                 "--basic-auth: the realm 'Say \"hi\"' must be at most 200 characters without "
                 "quotes");
    snprintf(other, sizeof(other), "*,%s,R", htdigest);
    expect_error((char *[]){ "tf", "--app", "m:a", "--digest-auth", other,
                             "--digest-nonce-lifetime", "0", NULL },
                 "--digest-nonce-lifetime: 0 is not from 1 to 86400 seconds");
    expect_error((char *[]){ "tf", "--app", "m:a", "--digest-nonce-lifetime", "60", NULL },
                 "--digest-nonce-lifetime: only with --digest-auth");
}

static void test_config_accepts(void **state)
{
    (void)state;
    struct tf_config cfg;
    char err[1024] = "", a[400], b[400];
    snprintf(a, sizeof(a), "main,%s,Realm, with a comma", htpasswd);
    snprintf(b, sizeof(b), "*,%s,testrealm@host.com", htdigest);
    char *argv[] = { "tf", "--trac-env", trac_main, "--basic-auth", a,
                     "--digest-auth", b, NULL };
    assert_int_equal(load(&cfg, err, argv), 0);
    assert_int_equal(cfg.n_basic_auth, 1);
    assert_int_equal(cfg.n_digest_auth, 1);
    assert_true(cfg.digest_nonce_lifetime == 300);
    struct tf_auth *auth = tf_auth_new(&cfg, err, sizeof(err));
    assert_non_null(auth);
    tf_auth_free(auth);
    tf_config_free(&cfg);
}

/* A request as server.c would hand it over, with at most one header. */
static struct tf_request *request(const char *method, const char *target, const char *auth)
{
    struct tf_request *req = tf_request_new(NULL, target);
    assert_non_null(req);
    assert_int_equal(tf_request_set_line(req, method, "HTTP/1.1"), 0);
    strcpy(req->remote_addr, "192.0.2.7");
    size_t vlen = auth ? strlen(auth) : 0;
    assert_int_equal(tf_request_alloc_headers(req, 1, vlen + 16), 0);
    if (auth) {
        memcpy(req->header_store, "Authorization", 14);
        memcpy(req->header_store + 14, auth, vlen + 1);
        req->headers[0] = (struct tf_header){ req->header_store, req->header_store + 14, 13,
                                              vlen };
        req->n_headers = 1;
    }
    return req;
}

/* Run one request through tf_auth_check: the status, the user, and the
 * WWW-Authenticate header (copied into challenge, "" if none). */
static unsigned check(struct tf_auth *auth, const char *method, const char *target,
                      const char *authorization, char *user, char *challenge)
{
    struct tf_request *req = request(method, target, authorization);
    struct MHD_Response *r = NULL;
    unsigned st = tf_auth_check(auth, req, &r);
    snprintf(user, 64, "%s", req->remote_user ? req->remote_user : "");
    const char *h = r ? MHD_get_response_header(r, "WWW-Authenticate") : NULL;
    snprintf(challenge, 512, "%s", h ? h : "");
    if (st)
        assert_non_null(r);
    else
        assert_null(r);
    if (req->remote_user)
        assert_string_equal(req->auth_type, strstr(authorization, "Digest") ? "Digest" : "Basic");
    if (r)
        MHD_destroy_response(r);
    tf_request_unref(req);
    return st;
}

static struct tf_auth *make_auth(struct tf_config *cfg, char **argv)
{
    char err[1024] = "";
    assert_int_equal(load(cfg, err, argv), 0);
    struct tf_auth *auth = tf_auth_new(cfg, err, sizeof(err));
    assert_non_null(auth);
    return auth;
}

static void test_basic(void **state)
{
    (void)state;
    struct tf_config cfg;
    char spec[400], user[64], ch[512];
    snprintf(spec, sizeof(spec), "*,%s,Trac", htpasswd);
    struct tf_auth *auth = make_auth(&cfg, (char *[]){ "tf", "--app", "m:a", "--basic-auth",
                                                       spec, NULL });
    /* alice:s3cret-M, bob:s3cret-S, alice:wrong */
    assert_int_equal(check(auth, "GET", "/login", "Basic YWxpY2U6czNjcmV0LU0=", user, ch), 0);
    assert_string_equal(user, "alice");
    assert_int_equal(check(auth, "POST", "/login/", "basic  Ym9iOnMzY3JldC1T", user, ch), 0);
    assert_string_equal(user, "bob");
    assert_int_equal(check(auth, "GET", "/login", "Basic YWxpY2U6d3Jvbmc=", user, ch), 401);
    assert_string_equal(user, "");
    assert_string_equal(ch, "Basic realm=\"Trac\", charset=\"UTF-8\"");
    assert_int_equal(check(auth, "GET", "/login", NULL, user, ch), 401);
    assert_string_equal(ch, "Basic realm=\"Trac\", charset=\"UTF-8\"");
    /* not a login path: never challenged, never a user, whatever the header */
    assert_int_equal(check(auth, "GET", "/wiki", "Basic YWxpY2U6czNjcmV0LU0=", user, ch), 0);
    assert_string_equal(user, "");
    static const char *const malformed[] = {
        "Basic", "Basic ", "Basic !!!!", "Basic YWxpY2U", "Basic YWxpY2U6czNjcmV0LU0=extra",
        "Basic Om5vdXNlcg==" /* ":nouser" */, "Basic YQBiOmM=" /* "a\0b:c" */,
        "Digest username=\"alice\"", "Bearer abc", "BasicYWxpY2U6czNjcmV0LU0=",
    };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        assert_int_equal(check(auth, "GET", "/login", malformed[i], user, ch), 401);
        assert_string_equal(user, "");
    }
    tf_auth_free(auth);
    tf_config_free(&cfg);
}

/* The Authorization value answering challenge ch for Mufasa. */
static void digest_answer(const char *ch, const char *password, const char *method,
                          const char *uri, const char *nc, char *out, size_t cap)
{
    char nonce[64] = "", a1[200], ha1[33], a2[300], ha2[33], all[400], response[33];
    const char *n = strstr(ch, "nonce=\"");
    assert_non_null(n);
    snprintf(nonce, sizeof(nonce), "%.*s", (int)strcspn(n + 7, "\""), n + 7);
    snprintf(a1, sizeof(a1), "Mufasa:testrealm@host.com:%s", password);
    tf_md5_hex(a1, strlen(a1), ha1);
    snprintf(a2, sizeof(a2), "%s:%s", method, uri);
    tf_md5_hex(a2, strlen(a2), ha2);
    snprintf(all, sizeof(all), "%s:%s:%s:0a4f113b:auth:%s", ha1, nonce, nc, ha2);
    tf_md5_hex(all, strlen(all), response);
    snprintf(out, cap, "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", "
             "nonce=\"%s\", uri=\"%s\", qop=auth, nc=%s, cnonce=\"0a4f113b\", "
             "response=\"%s\", algorithm=MD5", nonce, uri, nc, response);
}

static void test_digest(void **state)
{
    (void)state;
    struct tf_config cfg;
    char spec[400], user[64], ch[512], ans[1024];
    snprintf(spec, sizeof(spec), "proj,%s,testrealm@host.com", htdigest);
    struct tf_auth *auth = make_auth(&cfg, (char *[]){ "tf", "--trac-env-parent-dir", scratch_dir,
                                                       "--digest-auth", spec, NULL });
    assert_int_equal(check(auth, "GET", "/other/login", NULL, user, ch), 0); /* no auth there */
    assert_int_equal(check(auth, "GET", "/proj/login", NULL, user, ch), 401);
    assert_non_null(strstr(ch, "Digest realm=\"testrealm@host.com\", qop=\"auth\", "
                               "algorithm=MD5, nonce=\""));
    assert_non_null(strstr(ch, "stale=false"));
    digest_answer(ch, "Circle Of Life", "GET", "/proj/login?x=1", "00000001", ans, sizeof(ans));
    assert_int_equal(check(auth, "GET", "/proj/login?x=1", ans, user, ch), 0);
    assert_string_equal(user, "Mufasa");
    /* the same nc again is a replay: stale, so a real client retries with a new nonce */
    assert_int_equal(check(auth, "GET", "/proj/login?x=1", ans, user, ch), 401);
    assert_string_equal(user, "");
    assert_non_null(strstr(ch, "stale=true"));
    /* a later nc on the first nonce still works */
    char first[512];
    check(auth, "GET", "/proj/login", NULL, user, first);
    digest_answer(first, "Circle Of Life", "GET", "/proj/login", "00000002", ans, sizeof(ans));
    assert_int_equal(check(auth, "GET", "/proj/login", ans, user, ch), 0);
    digest_answer(first, "Circle Of Life", "GET", "/proj/login", "00000003", ans, sizeof(ans));
    assert_int_equal(check(auth, "GET", "/proj/login", ans, user, ch), 0);
    /* wrong password; an answer for another URI (400); a forged nonce */
    digest_answer(first, "Circle of life", "GET", "/proj/login", "00000004", ans, sizeof(ans));
    assert_int_equal(check(auth, "GET", "/proj/login", ans, user, ch), 401);
    assert_non_null(strstr(ch, "stale=false"));
    digest_answer(first, "Circle Of Life", "GET", "/proj/login/", "00000005", ans, sizeof(ans));
    assert_int_equal(check(auth, "GET", "/proj/login", ans, user, ch), 400);
    char forged[512];
    snprintf(forged, sizeof(forged), "%s", first);
    char *hex = strstr(forged, "nonce=\"") + 7;
    hex[0] = hex[0] == '0' ? '1' : '0'; /* another issue time, same MAC */
    digest_answer(forged, "Circle Of Life", "GET", "/proj/login", "00000001", ans, sizeof(ans));
    assert_int_equal(check(auth, "GET", "/proj/login", ans, user, ch), 401);
    assert_string_equal(user, "");
    tf_auth_free(auth);
    tf_config_free(&cfg);
}

static void test_digest_malformed(void **state)
{
    (void)state;
    struct tf_config cfg;
    char spec[400], user[64], ch[512], big[4000];
    snprintf(spec, sizeof(spec), "*,%s,testrealm@host.com", htdigest);
    struct tf_auth *auth = make_auth(&cfg, (char *[]){ "tf", "--app", "m:a", "--digest-auth",
                                                       spec, NULL });
    memset(big, 'a', sizeof(big) - 1);
    memcpy(big, "Digest username=\"", 17);
    big[sizeof(big) - 1] = 0;
    const char *const malformed[] = {
        "Digest", "Digest ", "Digest username", "Digest username=", "Digest username=\"Mufasa",
        "Digest username=\"a\", username=\"b\"", "Digest =x", "Digest a=b c=d",
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"x\", uri=\"/login\", "
        "qop=auth, nc=00000001, cnonce=\"c\", response=\"6629fae49393a05397450978507c4ef1\"",
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"x\", uri=\"/login\", "
        "response=\"6629fae49393a05397450978507c4ef1\"",
        "Digest username=\"Mufasa\", realm=\"other\", nonce=\"x\", uri=\"/login\", qop=auth, "
        "nc=1, cnonce=\"c\", response=\"zz\"",
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"x\", uri=\"/login\", "
        "qop=auth-int, nc=00000001, cnonce=\"c\", response=\"6629fae49393a05397450978507c4ef1\"",
        "Basic YWxpY2U6czNjcmV0LU0=", big,
    };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        if (check(auth, "GET", "/login", malformed[i], user, ch) != 401)
            fail_msg("not 401: %.80s", malformed[i]);
        assert_string_equal(user, "");
        assert_non_null(strstr(ch, "Digest realm="));
    }
    tf_auth_free(auth);
    tf_config_free(&cfg);
}

static void test_refusals_are_logged_without_passwords(void **state)
{
    (void)state;
    const char *log = scratch_log();
    assert_non_null(strstr(log, "auth: wrong password: user \"alice\" from 192.0.2.7 (Basic realm "
                                "\"Trac\", GET /login); answered 401"));
    assert_non_null(strstr(log, "auth: wrong password: user \"Mufasa\" from 192.0.2.7 (Digest"));
    assert_non_null(strstr(log, "auth: malformed Basic credentials"));
    assert_null(strstr(log, "wrong\n"));
    assert_null(strstr(log, "s3cret"));
    assert_null(strstr(log, "Circle"));
}

static int setup(void **state)
{
    if (scratch_setup(state) < 0)
        return -1;
    snprintf(htpasswd, sizeof(htpasswd), "%s", scratch_write("htpasswd", htpasswd_text));
    snprintf(htdigest, sizeof(htdigest), "%s", scratch_write("htdigest", htdigest_text));
    snprintf(trac_main, sizeof(trac_main), "%s/main/", scratch_dir);
    return mkdir(trac_main, 0755);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc2617_example), cmocka_unit_test(test_login_paths),
        cmocka_unit_test(test_config_errors_name_the_flag), cmocka_unit_test(test_config_accepts),
        cmocka_unit_test(test_basic), cmocka_unit_test(test_digest),
        cmocka_unit_test(test_digest_malformed),
        cmocka_unit_test(test_refusals_are_logged_without_passwords),
    };
    return cmocka_run_group_tests(tests, setup, scratch_teardown);
}
