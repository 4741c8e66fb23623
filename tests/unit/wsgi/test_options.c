/* Unit tests for wsgi/options.c: the checks of --app, --venv and --env made
 * before Python starts, each failure naming the flag. */
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

#define PY_SSIZE_T_CLEAN
#include <Python.h> /* PY_VERSION */

#include "wsgi/options.h"

static char venv[] = "/tmp/tf-test-venv-XXXXXX";

static int make_venv(void **state)
{
    (void)state;
    char bin[64], python[80];
    if (!mkdtemp(venv))
        return -1;
    snprintf(bin, sizeof(bin), "%s/bin", venv);
    snprintf(python, sizeof(python), "%s/python3", bin);
    return mkdir(bin, 0755) == 0 && symlink(TF_PY_EXECUTABLE, python) == 0 ? 0 : -1;
}

static int remove_venv(void **state)
{
    (void)state;
    char cmd[100];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", venv);
    return system(cmd) == 0 ? 0 : -1;
}

/* pyvenv.cfg with these home and version lines (NULL: no file). */
static void write_cfg(const char *text)
{
    char path[80];
    snprintf(path, sizeof(path), "%s/pyvenv.cfg", venv);
    unlink(path);
    if (!text)
        return;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* The folder of the embedded Python's executable, spelled with a trailing
 * "/." so that only its real path is the same. */
static const char *python_home(void)
{
    static char home[512];
    snprintf(home, sizeof(home), "%s", TF_PY_EXECUTABLE);
    strcpy(strrchr(home, '/'), "/.");
    return home;
}

static void expect_accepted(const char *cfg)
{
    char err[1024] = "";
    write_cfg(cfg);
    if (wsgi_venv_check(venv, TF_PY_EXECUTABLE, err, sizeof(err)) != 0)
        fail_msg("refused '%s': %s", cfg, err);
}

static void expect_refused(const char *dir, const char *cfg, const char *needle)
{
    char err[1024] = "";
    write_cfg(cfg);
    if (wsgi_venv_check(dir, TF_PY_EXECUTABLE, err, sizeof(err)) != -1)
        fail_msg("accepted '%s'", cfg ? cfg : "(no pyvenv.cfg)");
    if (strncmp(err, "--venv: ", 8) != 0 || !strstr(err, needle))
        fail_msg("error '%s' does not name --venv and '%s'", err, needle);
}

static void test_venv_of_the_embedded_python(void **state)
{
    (void)state;
    char cfg[1024];
    snprintf(cfg, sizeof(cfg), "home = %s\ninclude-system-site-packages = false\n"
             "version = %d.%d.99\n", python_home(), PY_MAJOR_VERSION, PY_MINOR_VERSION);
    expect_accepted(cfg);
    /* virtualenv and uv: version_info; spaces as they come */
    snprintf(cfg, sizeof(cfg), "home=%s\nversion_info =  %d.%d.0.final.0  \n", python_home(),
             PY_MAJOR_VERSION, PY_MINOR_VERSION);
    expect_accepted(cfg);
}

static void test_venv_of_another_python(void **state)
{
    (void)state;
    char cfg[1024];
    snprintf(cfg, sizeof(cfg), "home = %s\nversion = %d.%d.1\n", python_home(),
             PY_MAJOR_VERSION, PY_MINOR_VERSION + 1);
    expect_refused(venv, cfg, PY_VERSION);
    snprintf(cfg, sizeof(cfg), "home = /opt/pyenv/versions/x/bin\nversion = %d.%d.7\n",
             PY_MAJOR_VERSION, PY_MINOR_VERSION);
    expect_refused(venv, cfg, "/opt/pyenv/versions/x/bin");
    expect_refused(venv, "home = /usr/bin\n", "version");
    expect_refused(venv, "version = three\n", "version");
    expect_refused(venv, NULL, "pyvenv.cfg");
    expect_refused("", NULL, "empty");
}

static void test_venv_without_its_python(void **state)
{
    (void)state;
    char cfg[1024], python[80];
    snprintf(cfg, sizeof(cfg), "home = %s\nversion = %s\n", python_home(), PY_VERSION);
    snprintf(python, sizeof(python), "%s/bin/python3", venv);
    assert_int_equal(unlink(python), 0);
    expect_refused(venv, cfg, "bin/python3");
    assert_int_equal(symlink(TF_PY_EXECUTABLE, python), 0);
}

/* wsgi_options_check(cfg) is expected (0 or -1); on -1, err names flag
 * ("--env") and needle. */
static void expect_verdict(const struct tf_config *cfg, int expected, const char *flag,
                         const char *needle)
{
    char err[1024] = "", prefix[16];
    snprintf(prefix, sizeof(prefix), "%s: ", flag);
    if (wsgi_options_check(cfg, err, sizeof(err)) != expected)
        fail_msg("%s '%s': expected %d (%s)", flag, needle, expected, err);
    if (expected && (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, needle)))
        fail_msg("error '%s' does not name %s and '%s'", err, flag, needle);
}

/* --env entry alone; needle is what a refusal must say (or the entry). */
static void expect_env_mounted(int expected, const char *entry, const char *needle,
                               const char *mount)
{
    char *env[] = { (char *)entry };
    struct tf_config cfg = { .env = env, .n_env = 1, .mount = (char *)mount };
    expect_verdict(&cfg, expected, "--env", needle ? needle : entry);
}

static void expect_env(int expected, const char *entry, const char *needle)
{
    expect_env_mounted(expected, entry, needle, "");
}

static void test_env_keys(void **state)
{
    (void)state;
    expect_env(0, "trac.base_url=https://example.org/trac", NULL);
    expect_env(0, "wsgi.url_scheme=https", NULL);
    expect_env(0, "HTTPS=on", NULL);
    expect_env(0, "HTTP=1", NULL);          /* not HTTP_* */
    expect_env(0, "SERVER_SOFTWARE=x", NULL);
    expect_env(0, "K=V=W", NULL);           /* the value may hold '=' */
    expect_env(-1, "HTTP_X_FORWARDED_PROTO=https", "'HTTP_X_FORWARDED_PROTO'");
    expect_env(-1, "SERVER_PORT=443", "trac.base_url");
    expect_env(0, "SCRIPT_NAME=/x", NULL); /* behind a proxy that strips the prefix */
    expect_env(0, "SERVER_NAME=example.org", NULL);
    expect_env_mounted(-1, "SCRIPT_NAME=/x", "--mount", "/x");
    expect_env(-1, "AUTH_TYPE=Basic", "--basic-auth");
    expect_env(-1, "REMOTE_ADDR=", "'REMOTE_ADDR'");
    expect_env(-1, "wsgi.multithread=false", "PEP 3333");
    expect_env(-1, "wsgi.url_schemes=x", "PEP 3333");
    expect_env(-1, "NOEQUALS", "KEY=VALUE");
    expect_env(-1, "=value", "KEY=VALUE");
}

static void expect_app(int expected, const char *spec)
{
    struct tf_config cfg = { .app = (char *)spec };
    expect_verdict(&cfg, expected, "--app", spec);
}

static void test_app_spec(void **state)
{
    (void)state;
    size_t module_len;
    assert_string_equal(wsgi_app_spec_split("pkg.mod:obj.app", &module_len), "obj.app");
    assert_int_equal(module_len, 7);
    assert_string_equal(wsgi_app_spec_split("pkg.mod", &module_len), "application");
    assert_int_equal(module_len, 7);
    expect_app(0, "myapp");
    expect_app(0, "pkg.mod:obj.app");
    expect_app(0, "m:a");
    const char *bad[] = { "pkg:application.", "pkg:.application", "pkg:a..b", "pkg:", ":app",
                          ".pkg:app", "pkg.:app", "pkg..mod", "pkg:a:b", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        expect_app(-1, bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_venv_of_the_embedded_python),
        cmocka_unit_test(test_venv_of_another_python),
        cmocka_unit_test(test_venv_without_its_python),
        cmocka_unit_test(test_env_keys),
        cmocka_unit_test(test_app_spec),
    };
    return cmocka_run_group_tests(tests, make_venv, remove_venv);
}
