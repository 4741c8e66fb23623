/* Unit tests for proxy/config.c: flags, the INI file, precedence and the
 * error messages that name the flag or key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/config.h"

static int load(struct tf_config *cfg, char *err, int argc, char **argv)
{
    return tf_config_load(cfg, argc, argv, err, 1024);
}

static void test_defaults_and_flags(void **state)
{
    (void)state;
    struct tf_config cfg;
    char err[1024];
    char *argv[] = { "tracfront", "--app", "m:app", "--listen", "0.0.0.0:0", "--threads=4",
                     "--pythonpath", "/a", "--pythonpath", "/b", "--env", "K=V=W",
                     "--mount", "/trac/", "--max-body", "10M", "--max-spill", "3M" };
    assert_int_equal(load(&cfg, err, 18, argv), 0);
    assert_string_equal(cfg.app, "m:app");
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 0);
    assert_int_equal(cfg.threads, 4);
    assert_int_equal(cfg.n_pythonpath, 2);
    assert_string_equal(cfg.pythonpath[1], "/b");
    assert_string_equal(cfg.env[0], "K=V=W");
    assert_string_equal(cfg.mount, "/trac");
    assert_int_equal(cfg.max_body, 10u << 20);
    assert_int_equal(cfg.max_spill, 3u << 20);
    assert_int_equal(cfg.queue_size, 1024);
    assert_true(cfg.header_timeout == 60); /* nginx's client_header_timeout */
    assert_in_range(cfg.max_connections, 16, 65536); /* from RLIMIT_NOFILE */
    tf_config_free(&cfg);
}

static void expect_config_error(int argc, char **argv, const char *needle)
{
    struct tf_config cfg;
    char err[1024] = "";
    if (load(&cfg, err, argc, argv) != -1)
        fail_msg("accepted (argc %d, looking for %s)", argc, needle);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
    tf_config_free(&cfg);
}

static void test_errors_name_the_flag(void **state)
{
    (void)state;
    expect_config_error(4, (char *[]){ "t", "--app", "m:a", "--bogus" }, "--bogus");
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--threads", "0" }, "threads");
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--listen", "nope" }, "listen");
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--max-body", "lots" }, "max-body");
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--max-spill", "1T" }, "max-spill");
    expect_config_error(2, (char *[]){ "t", "--threads" }, "needs a value");
    expect_config_error(1, (char *[]){ "t" }, "nothing to serve");
    expect_config_error(3, (char *[]){ "t", "--upstream", "ftp://x" }, "--upstream");
    expect_config_error(3, (char *[]){ "t", "--route", "/x=upstream" }, "no --upstream");
    expect_config_error(3, (char *[]){ "t", "--static", "/x=/no/such/dir" }, "does not exist");
    expect_config_error(5, (char *[]){ "t", "--upstream", "http://h", "--route", "/x=app" },
                        "no application");
    expect_config_error(5, (char *[]){ "t", "--upstream", "http://h", "--route", "/x=nope" },
                        "app, upstream or static");
    expect_config_error(4, (char *[]){ "t", "--upstream", "http://h", "--mirror" }, "--mirror");
    expect_config_error(7, (char *[]){ "t", "--app", "m:a", "--upstream", "http://h",
                                       "--mirror-primary", "both" }, "mirror-primary");
    expect_config_error(7, (char *[]){ "t", "--app", "m:a", "--upstream", "http://h",
                                       "--mirror-primary", "upstream" }, "--mirror-primary");
    expect_config_error(7, (char *[]){ "t", "--app", "m:a", "--upstream", "http://h",
                                       "--mirror-queue", "4" }, "--mirror-queue");
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--wsgi-file", "x" }, "exclude");
    expect_config_error(4, (char *[]){ "t", "--app", "m:a", "stray" }, "stray");
}

static char *write_ini_bytes(const char *text, size_t len)
{
    static char path[] = "/tmp/tf_test_config_XXXXXX";
    strcpy(path, "/tmp/tf_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static char *write_ini(const char *text)
{
    return write_ini_bytes(text, strlen(text));
}

static void test_ini_and_precedence(void **state)
{
    (void)state;
    char *path = write_ini("[tracfront]\napp = m:app\nthreads = 3\nmax_body = 2K\n"
                           "pythonpath = /from/file\nheader-timeout = 2.5\n"
                           "max_connections = 300\n");
    struct tf_config cfg;
    char err[1024];
    char *argv[] = { "t", "--config", path, "--threads", "5", "--pythonpath", "/flag" };
    assert_int_equal(load(&cfg, err, 7, argv), 0);
    assert_string_equal(cfg.app, "m:app");
    assert_int_equal(cfg.threads, 5); /* the flag wins */
    assert_int_equal(cfg.max_body, 2048);
    assert_int_equal(cfg.max_spill, 1u << 30); /* the default, as nginx's */
    assert_true(cfg.header_timeout == 2.5);
    assert_int_equal(cfg.max_connections, 300);
    assert_int_equal(cfg.n_pythonpath, 2); /* lists accumulate: file first */
    assert_string_equal(cfg.pythonpath[0], "/from/file");
    tf_config_free(&cfg);
    unlink(path);
}

/* A repeatable key's flags replace the file's entries (pythonpath and env
 * add up); --auth and --digest-auth are one key (and --basic-auth), as
 * --route and --static are. */
static void test_ini_lists_and_flags(void **state)
{
    (void)state;
    char *path = write_ini("[tracfront]\nstatic = /s=/a\nstatic = /t=/b\nroute = /r=app\n"
                           "profile-allow = 127.0.0.0/8\nenv = A=1\ndigest-auth = *,f,R\n"
                           "pythonpath = /p\n");
    struct tf_config cfg;
    char err[1024];
    char *argv[] = { "t", "--config", path, "--static", "/s=/c", "--profile-allow", "10.0.0.1",
                     "--profile-allow", "10.0.0.2", "--env", "B=2", "--auth", "x,g,S",
                     "--digest-auth", "y,h,T", "--pythonpath", "/q" };
    /* refused by the checks after (no app, no folder /c): the lists are gathered before */
    assert_int_equal(load(&cfg, err, 17, argv), -1);
    assert_int_equal(cfg.n_static_specs, 1);
    assert_string_equal(cfg.static_specs[0], "/s=/c");
    assert_int_equal(cfg.n_route_specs, 0); /* one key with --static */
    assert_int_equal(cfg.n_profile_allow, 2);
    assert_string_equal(cfg.profile_allow[0], "10.0.0.1");
    assert_int_equal(cfg.n_env, 2);
    assert_string_equal(cfg.env[0], "A=1");
    assert_int_equal(cfg.n_digest_auth, 2);
    assert_string_equal(cfg.digest_auth[0], "x,g,S");
    assert_string_equal(cfg.digest_auth[1], "y,h,T");
    assert_int_equal(cfg.n_pythonpath, 2);
    tf_config_free(&cfg);
    unlink(path);
}

static void test_ini_errors(void **state)
{
    (void)state;
    char *path = write_ini("[tracfront]\napp = m:app\nthreads = many\n");
    expect_config_error(3, (char *[]){ "t", "--config", path }, "line 3");
    unlink(path);
    path = write_ini("[tracfront]\nnot_a_key = 1\n");
    expect_config_error(3, (char *[]){ "t", "--config", path }, "not_a_key");
    unlink(path);
    expect_config_error(3, (char *[]){ "t", "--config", "/nonexistent/x.ini" }, "cannot open");
    /* a folder opens, and its read fails: that is no empty file */
    expect_config_error(5, (char *[]){ "t", "--config", "/tmp", "--app", "m:a" },
                        "--config /tmp: cannot read: Is a directory");
    static const char nul[] = "[tracfront]\napp = m:app\nthreads = 3\0junk\n";
    path = write_ini_bytes(nul, sizeof(nul) - 1);
    expect_config_error(3, (char *[]){ "t", "--config", path }, "line 3: holds a NUL or 0x1f byte");
    unlink(path);
    path = write_ini("[tracfront]\napp = m:app\n[other]\nthreads = 3\n");
    expect_config_error(3, (char *[]){ "t", "--config", path }, "line 4: unknown section [other]");
    unlink(path);
    path = write_ini("[tracfront\napp = m:app\n");
    expect_config_error(3, (char *[]){ "t", "--config", path }, "line 1: not KEY = VALUE");
    unlink(path);
    /* a one-value key twice, however spelt: which one is meant? */
    path = write_ini("[tracfront]\napp = m:app\nmax_body = 1M\nenv = A=1\nenv = B=2\n"
                     "Max-Body = 2M\n");
    expect_config_error(3, (char *[]){ "t", "--config", path },
                        "line 6: max-body: given twice (first on line 3): keep one");
    unlink(path);
}

/* cfg loaded from an INI file holding text (the test fails with the
 * message if it is refused); the file's path, to unlink. */
static char *load_ini(struct tf_config *cfg, const char *text)
{
    char *path = write_ini(text);
    char err[1024] = "";
    char *argv[] = { "t", "--config", path };
    if (load(cfg, err, 3, argv) < 0)
        fail_msg("%s", err);
    return path;
}

/* Keys in any case, as configparser's (its sections are not: nor ours). */
static void test_ini_keys_in_any_case(void **state)
{
    (void)state;
    struct tf_config cfg;
    char *path = load_ini(&cfg, "[tracfront]\nAPP = m:app\nThreads = 3\nEnv = K=V\n");
    assert_string_equal(cfg.app, "m:app");
    assert_int_equal(cfg.threads, 3);
    assert_string_equal(cfg.env[0], "K=V"); /* the value keeps its case */
    tf_config_free(&cfg);
    unlink(path);
    path = write_ini("[TracFront]\napp = m:app\n");
    expect_config_error(3, (char *[]){ "t", "--config", path }, "unknown section [TracFront]");
    unlink(path);
}

/* As uWSGI and Python's configparser: a comment is a whole line; `;` and
 * `#` inside a value are the value's. Keys may be indented, `:` may stand
 * for `=`, a UTF-8 BOM and CRLF line ends are skipped; a line may be up to
 * 199 characters long (libinih's limit). */
static void test_ini_lines(void **state)
{
    (void)state;
    char long_value[170];
    memset(long_value, 'v', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = 0;
    char text[4096];
    snprintf(text, sizeof(text), "\xEF\xBB\xBF; comment\r\n[tracfront]\r\n  # comment\n"
             "app = m:app\nenv = A=a ;b\nenv = B=x #y\n\tthreads: 3 \nenv=C=\n"
             "pythonpath = %s\n", long_value);
    struct tf_config cfg;
    char *path = load_ini(&cfg, text);
    assert_string_equal(cfg.app, "m:app");
    assert_int_equal(cfg.n_env, 3);
    assert_string_equal(cfg.env[0], "A=a ;b");
    assert_string_equal(cfg.env[1], "B=x #y");
    assert_string_equal(cfg.env[2], "C=");
    assert_int_equal(cfg.threads, 3);
    assert_int_equal(cfg.n_pythonpath, 1);
    assert_string_equal(cfg.pythonpath[0], long_value);
    tf_config_free(&cfg);
    unlink(path);
}

static void test_empty_upstream_host(void **state)
{
    (void)state;
    expect_config_error(5, (char *[]){ "t", "--upstream", "http://h", "--upstream-host", "" },
                        "--upstream-host: empty");
    char *path = write_ini("[tracfront]\nupstream = http://h\nupstream-host =\n");
    expect_config_error(3, (char *[]){ "t", "--config", path }, "--upstream-host: empty");
    unlink(path);
}

static void test_bool_flags(void **state)
{
    (void)state;
    struct tf_config cfg;
    char err[1024];
    char *argv[] = { "t", "--app", "m:a", "--profile", "--profile-discard-first", "false",
                     "--profile-unwind=yes", "--profile-builtins=no", "--gc-freeze",
                     "--inline-fast-calls", "false" };
    assert_int_equal(load(&cfg, err, 11, argv), 0);
    assert_false(cfg.inline_fast_calls);
    assert_true(cfg.gc_freeze);
    assert_true(cfg.profile);
    assert_false(cfg.profile_discard_first);
    assert_true(cfg.profile_unwind);
    assert_int_equal(cfg.profile_builtins, 0);
    tf_config_free(&cfg);
    assert_int_equal(load(&cfg, err, 3, argv), 0);
    assert_int_equal(cfg.profile_builtins, -1); /* not given: main.c picks */
    assert_false(cfg.gc_freeze);
    assert_true(cfg.inline_fast_calls); /* the default */
    tf_config_free(&cfg);
    expect_config_error(4, (char *[]){ "t", "--app", "m:a", "--profile=maybe" }, "profile");
}

static void test_request_timeout(void **state)
{
    (void)state;
    struct tf_config cfg;
    char err[1024];
    char *argv[] = { "t", "--app", "m:a", "--request-timeout", "0.25",
                     "--request-timeout-action", "504", "--dump-all" };
    assert_int_equal(load(&cfg, err, 8, argv), 0);
    assert_true(cfg.request_timeout > 0.249 && cfg.request_timeout < 0.251);
    assert_string_equal(cfg.request_timeout_action, "504");
    assert_true(cfg.dump_all);
    tf_config_free(&cfg);
    assert_int_equal(load(&cfg, err, 3, argv), 0); /* defaults: off, log */
    assert_true(cfg.request_timeout == 0);
    assert_null(cfg.request_timeout_action);
    assert_false(cfg.dump_all);
    tf_config_free(&cfg);
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--request-timeout", "soon" },
                        "request-timeout");
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--request-timeout", "-1" },
                        "request-timeout");
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--request-timeout-action", "kill" },
                        "--request-timeout-action: 'kill' is not log or 504");
}

static void test_parsers(void **state)
{
    (void)state;
    uint64_t n;
    assert_int_equal(tf_parse_size("1G", &n), 0);
    assert_int_equal(n, 1ull << 30);
    assert_int_equal(tf_parse_size("512k", &n), 0);
    assert_int_equal(n, 512u * 1024);
    assert_int_equal(tf_parse_size("1x", &n), -1);
    assert_int_equal(tf_parse_size("", &n), -1);
    char *host;
    unsigned port;
    assert_int_equal(tf_parse_listen("[::1]:8080", &host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8080);
    free(host);
    assert_int_equal(tf_parse_listen("9000", &host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    free(host);
    assert_int_equal(tf_parse_listen("h:70000", &host, &port), -1);
    assert_int_equal(tf_parse_listen("::1:80", &host, &port), -1);
}

/* Values that could only fail later (every request, or at shutdown) and
 * options that would do nothing are refused at start, naming the flag. */
static void test_refused_at_start(void **state)
{
    (void)state;
    static const char *const bad_upstreams[] = {
        "http://127.0.0.1:99999", "http://127.0.0.1:abc", "http://[::1", "http://h:0",
        "http://ho^st", "http://user:secret@h", "http://@h",
    };
    for (size_t i = 0; i < sizeof(bad_upstreams) / sizeof(*bad_upstreams); i++)
        expect_config_error(3, (char *[]){ "t", "--upstream", (char *)bad_upstreams[i] },
                            "--upstream: ");
    static const char *const with_password[] = { /* refused, never quoted with it */
        "http://u:secret@127.0.0.1:99999", "http://u:secret@h/?x", "HTTP://u:secret@h",
        "u:secret@h:80", "http://u:secret/x@h:80",
    };
    for (size_t i = 0; i < sizeof(with_password) / sizeof(*with_password); i++) {
        struct tf_config cfg;
        char err[1024] = "";
        assert_int_equal(load(&cfg, err, 3, (char *[]){ "t", "--upstream",
                                                         (char *)with_password[i] }), -1);
        if (!strstr(err, "--upstream") || strstr(err, "secret"))
            fail_msg("'%s' refused with '%s'", with_password[i], err);
        tf_config_free(&cfg);
    }
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--profile-log", "/tmp" },
                        "--profile-log: '/tmp' is a folder");
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--profile-callgrind", "" },
                        "--profile-callgrind: empty");
    expect_config_error(7, (char *[]){ "t", "--app", "m:a", "--workers", "1",
                                       "--worker-start-timeout", "0.9" },
                        "worker-start-timeout: '0.9' is too short (at least 1 s)");
    expect_config_error(7, (char *[]){ "t", "--upstream", "http://h", "--route", "/x=upstream",
                                       "--upstream-connect-timeout", "0.0009" },
                        "upstream-connect-timeout: '0.0009' is too short (at least 0.001 s)");
    /* under a microsecond it was 0 µs in upstream.c: no limit */
    expect_config_error(5, (char *[]){ "t", "--upstream", "http://h", "--upstream-read-timeout",
                                       "0.0000001" },
                        "upstream-read-timeout: '0.0000001' is too short (at least 0.001 s, "
                        "or 0: no limit)");
    expect_config_error(5, (char *[]){ "t", "--app", "m:a", "--inline-fast-calls", "maybe" },
                        "--inline-fast-calls: 'maybe' is not true or false");
    static const char *const alone[][3] = { /* flag, value (NULL: a yes/no flag), needs */
        { "--upstream-host", "backend", "--upstream" }, { "--upstream-pin", NULL, "--upstream" },
        { "--upstream-read-timeout", "5", "--upstream" },
        { "--upstream-connect-timeout", "5", "--upstream" },
        { "--request-timeout-action", "504", "--request-timeout" },
        { "--dump-all", NULL, "--request-timeout" },
        { "--profile-flush-at-shutdown", NULL, "--profile-log or --profile-callgrind" },
    };
    for (size_t i = 0; i < sizeof(alone) / sizeof(*alone); i++) {
        char want[200];
        snprintf(want, sizeof(want), "%s: only with %s", alone[i][0], alone[i][2]);
        expect_config_error(alone[i][1] ? 5 : 4, (char *[]){ "t", "--app", "m:a",
                            (char *)alone[i][0], (char *)alone[i][1] }, want);
    }
}

/* The least values that are taken, and --wsgi_file (the INI key's spelling)
 * replacing the file's app as --wsgi-file does. */
static void test_least_values_and_underscored_app_flag(void **state)
{
    (void)state;
    struct tf_config cfg;
    char err[1024] = "";
    char *argv[] = { "t", "--upstream", "http://h:65535/p/", "--worker-start-timeout", "1",
                     "--upstream-connect-timeout", "0.001", "--upstream-read-timeout", "0",
                     "--app", "m:app", "--workers", "1" };
    if (load(&cfg, err, 13, argv) < 0)
        fail_msg("%s", err);
    assert_string_equal(cfg.upstream_origin, "http://h:65535");
    assert_string_equal(cfg.upstream_path, "/p");
    assert_true(cfg.worker_start_timeout == 1 && cfg.upstream_connect_timeout == 0.001);
    assert_true(cfg.upstream_read_timeout == 0); /* no limit */
    tf_config_free(&cfg);
    argv[8] = "0.001";
    if (load(&cfg, err, 13, argv) < 0)
        fail_msg("%s", err);
    assert_true(cfg.upstream_read_timeout == 0.001);
    tf_config_free(&cfg);
    assert_int_equal(load(&cfg, err, 3, argv), 0);
    assert_true(cfg.upstream_read_timeout == 60 && cfg.upstream_connect_timeout == 5);
    tf_config_free(&cfg);
    char *path = write_ini("[tracfront]\napp = m:app\n");
    char *flags[] = { "t", "--config", path, "--wsgi_file", path };
    if (load(&cfg, err, 5, flags) < 0)
        fail_msg("%s", err);
    assert_null(cfg.app);
    assert_string_equal(cfg.wsgi_file, path);
    tf_config_free(&cfg);
    unlink(path);
}

/* A one-value key's value as a flag gives it: loading it back gives the same value. */
static void test_values_as_flags_give_them(void **state)
{
    (void)state;
    struct tf_config cfg, again;
    char err[1024], v[5][64];
    char *argv[] = { "tracfront", "--app", "m:app", "--listen", "[::1]:0", "--graceful-timeout",
                     "0.00005", "--profile-path", "/p/q", "--reload", "--max-body", "3M" };
    assert_int_equal(load(&cfg, err, 12, argv), 0);
    static const char *const keys[] = { "listen", "graceful-timeout", "profile-path", "reload",
                                        "max-body" };
    /* seconds never in an exponent, which a flag does not take */
    static const char *const want[] = { "[::1]:0", "0.00005", "/p/q", "true", "3145728" };
    for (int i = 0; i < 5; i++) {
        assert_true(tf_config_value(&cfg, keys[i], v[i], sizeof(v[i])));
        assert_string_equal(v[i], want[i]);
    }
    char flags[5][sizeof(v) + 32]; /* as long as gcc at -O1 thinks a value can be: all of v */
    char *argv2[7] = { "tracfront", "--app=m:app" };
    for (int i = 0; i < 5; i++) {
        snprintf(flags[i], sizeof(flags[i]), "--%s=%s", keys[i], v[i]);
        argv2[i + 2] = flags[i];
    }
    assert_int_equal(load(&again, err, 7, argv2), 0);
    assert_true(again.graceful_timeout == cfg.graceful_timeout);
    assert_string_equal(again.listen_host, "::1");
    assert_true(again.reload && again.max_body == 3u << 20);
    assert_true(tf_config_value(&cfg, "error-log", v[0], sizeof(v[0])));
    assert_string_equal(v[0], ""); /* not set */
    assert_true(tf_config_value(&cfg, "profile-builtins", v[0], sizeof(v[0])));
    assert_string_equal(v[0], ""); /* not set: main.c picks */
    assert_true(tf_config_value(&cfg, "idle-timeout", v[0], sizeof(v[0])));
    assert_string_equal(v[0], "60");
    assert_false(tf_config_value(&cfg, "env", v[0], sizeof(v[0])));      /* a list */
    assert_false(tf_config_value(&cfg, "no-such-key", v[0], sizeof(v[0])));
    tf_config_free(&again);
    tf_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_flags), cmocka_unit_test(test_errors_name_the_flag),
        cmocka_unit_test(test_ini_and_precedence), cmocka_unit_test(test_ini_lists_and_flags),
        cmocka_unit_test(test_ini_errors),
        cmocka_unit_test(test_ini_lines), cmocka_unit_test(test_empty_upstream_host),
        cmocka_unit_test(test_bool_flags),
        cmocka_unit_test(test_request_timeout),
        cmocka_unit_test(test_parsers), cmocka_unit_test(test_refused_at_start),
        cmocka_unit_test(test_least_values_and_underscored_app_flag),
        cmocka_unit_test(test_values_as_flags_give_them),
        cmocka_unit_test(test_ini_keys_in_any_case),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
