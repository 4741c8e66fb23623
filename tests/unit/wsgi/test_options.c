/* Unit tests for wsgi/options.c: the checks of --venv made before Python
 * starts, each failure naming the flag. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_venv_of_the_embedded_python),
        cmocka_unit_test(test_venv_of_another_python),
        cmocka_unit_test(test_venv_without_its_python),
    };
    return cmocka_run_group_tests(tests, make_venv, remove_venv);
}
