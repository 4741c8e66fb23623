/* Unit tests for proxy/reload_watch.c: the app's files are the union of the
 * workers' lists, each path once; and what of a Trac project folder counts
 * as a change (driven through tf_reload_watch_mark/changed on a scratch
 * folder, the settle wait skipped by moving its start back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/reload_watch.h"
#include "scratch.h"

static void add(struct tf_reload_files *files, const char *list)
{
    assert_int_equal(tf_reload_files_add(files, list, strlen(list)), 0);
}

static void test_files_are_the_union_of_the_lists(void **state)
{
    (void)state;
    struct tf_reload_files files = { NULL, 0 };
    add(&files, "/app/b.py\n/app/a.py\n");
    add(&files, "/app/c.py\n/app/a.py\n\n/app/d.py"); /* another worker's; no last newline */
    add(&files, "");
    assert_int_equal(files.n, 4);
    const char *want[] = { "/app/a.py", "/app/b.py", "/app/c.py", "/app/d.py" };
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(files.paths[i], want[i]);
    add(&files, "/app/a.py\n/app/d.py\n"); /* nothing new */
    assert_int_equal(files.n, 4);
    tf_reload_files_free(&files);
    assert_int_equal(files.n, 0);
    assert_null(files.paths);
}

/* --- the Trac projects of a parent folder ---------------------------------- */

static char parent[300];
static struct tf_config cfg;
static char why[4200];

/* A fresh parent folder (NAME in the scratch folder) served as
 * --trac-env-parent-dir, with the project "demo" (conf/trac.ini, plugins/). */
static void serve_parent(const char *name)
{
    char path[400];
    snprintf(parent, sizeof(parent), "%s/%s", scratch_dir, name);
    assert_int_equal(mkdir(parent, 0700), 0);
    snprintf(path, sizeof(path), "%s/demo", parent);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/demo/conf", parent);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/demo/plugins", parent);
    assert_int_equal(mkdir(path, 0700), 0);
    memset(&cfg, 0, sizeof(cfg));
    cfg.trac_env_parent_dir = parent;
}

/* Write text to the parent folder's REL (a new file, or one rewritten in
 * place: its folder's time stays). */
static void put(const char *rel, const char *text)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", parent, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void make_dir(const char *rel)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", parent, rel);
    assert_int_equal(mkdir(path, 0700), 0);
}

/* The next reload counts changes from now. The mark reads the coarse clock,
 * which file times can be a few ms ahead of: a pause on each side, so that
 * files written before are stamped before it and the next ones after. */
static void mark(struct tf_reload_watch *rw)
{
    usleep(20000);
    tf_reload_watch_mark(rw, &cfg, NULL);
    usleep(20000);
}

/* Would a check find a change, once settled (why says what)? */
static bool changed(struct tf_reload_watch *rw)
{
    why[0] = 0;
    if (tf_reload_watch_changed(rw, &cfg, NULL, why, sizeof(why)))
        return true; /* (it waited long enough: only after a long wait) */
    rw->settling_since -= 2000000; /* as if the check before were 2 s ago */
    return tf_reload_watch_changed(rw, &cfg, NULL, why, sizeof(why));
}

static void test_plugins_trac_loads_are_watched(void **state)
{
    (void)state;
    serve_parent("loads");
    struct tf_reload_watch rw;
    /* what pkg_resources.Environment([plugins_dir]) and Trac's *.py glob take */
    const char *plugins[] = { "demo/plugins/a.py", "demo/plugins/b.egg", "demo/plugins/C.EGG",
                              "demo/plugins/d.egg-link", "demo/plugins/E.Egg-Link",
                              "demo/plugins/f.egg-info", "demo/plugins/.g.egg" };
    for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++) {
        mark(&rw);
        assert_false(changed(&rw));
        put(plugins[i], "x\n");
        assert_true(changed(&rw));
        assert_non_null(strstr(why, plugins[i]));
    }
    const char *folders[] = { "demo/plugins/h.egg-info", "demo/plugins/i.dist-info",
                              "demo/plugins/J.DIST-INFO" };
    for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
        mark(&rw);
        make_dir(folders[i]);
        assert_true(changed(&rw));
    }
}

static void test_other_files_in_plugins_are_not(void **state)
{
    (void)state;
    serve_parent("others");
    struct tf_reload_watch rw;
    mark(&rw);
    put("demo/plugins/hello.py.orig", "x\n");
    put("demo/plugins/README", "x\n");
    put("demo/plugins/.hidden.py", "x\n"); /* glob('*.py') passes dot names over */
    put("demo/plugins/upper.PY", "x\n");   /* and is case-sensitive here */
    put("demo/plugins/x.egg-linked", "x\n");
    put("demo/notes.txt", "x\n");
    assert_false(changed(&rw));
}

/* An unpacked egg's metadata (which names its entry points) and a
 * .dist-info/.egg-info folder's: a change there, not in the folder itself. */
static void test_metadata_inside_a_plugin_folder_is_watched(void **state)
{
    (void)state;
    serve_parent("metadata");
    make_dir("demo/plugins/X.egg");
    make_dir("demo/plugins/X.egg/EGG-INFO");
    put("demo/plugins/X.egg/EGG-INFO/PKG-INFO", "Name: X\n");
    put("demo/plugins/X.egg/EGG-INFO/entry_points.txt", "[trac.plugins]\nx = x\n");
    make_dir("demo/plugins/y.dist-info");
    put("demo/plugins/y.dist-info/METADATA", "Name: y\n");
    put("demo/plugins/y.dist-info/entry_points.txt", "[trac.plugins]\ny = y\n");
    make_dir("demo/plugins/z.egg-info");
    put("demo/plugins/z.egg-info/PKG-INFO", "Name: z\n");
    struct tf_reload_watch rw;
    const char *files[] = { "demo/plugins/X.egg/EGG-INFO/entry_points.txt",
                            "demo/plugins/X.egg/EGG-INFO/PKG-INFO",
                            "demo/plugins/y.dist-info/entry_points.txt",
                            "demo/plugins/y.dist-info/METADATA",
                            "demo/plugins/z.egg-info/PKG-INFO" };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        mark(&rw);
        assert_false(changed(&rw));
        put(files[i], "[trac.plugins]\nx = x\nmore = x\n");
        assert_true(changed(&rw));
        assert_non_null(strstr(why, files[i]));
    }
    mark(&rw);
    put("demo/plugins/X.egg/EGG-INFO/notes.txt", "x\n"); /* not metadata pkg_resources reads */
    assert_false(changed(&rw));
}

/* A name a user chose goes into the log line escaped: one with a newline
 * must not start a forged line. */
static void test_names_are_escaped_in_why(void **state)
{
    (void)state;
    serve_parent("escaped");
    struct tf_reload_watch rw;
    mark(&rw);
    put("demo/plugins/x\n[Thu Jan 01 00:00:00 2025] [error] forged.py", "x\n");
    assert_true(changed(&rw));
    assert_null(strchr(why, '\n'));
    assert_non_null(strstr(why, "x\\x0a[Thu Jan 01"));
    mark(&rw);
    make_dir("new\nproject");
    assert_true(changed(&rw));
    assert_null(strchr(why, '\n'));
}

/* Is NAME a project of the parent folder whose .tracignore is IGNORE (NULL:
 * none), as Trac's get_environments takes it? Made after a mark: a project
 * added reloads, another folder does not. */
static bool is_project(const char *ignore, const char *name)
{
    static int n;
    char folder[64];
    snprintf(folder, sizeof(folder), "ignore-%d", n++);
    serve_parent(folder);
    if (ignore)
        put(".tracignore", ignore);
    struct tf_reload_watch rw;
    mark(&rw);
    make_dir(name);
    return changed(&rw);
}

static void test_tracignore_is_read_as_trac_reads_it(void **state)
{
    (void)state;
    assert_false(is_project(NULL, ".hidden"));    /* no file: ".*" */
    assert_true(is_project(NULL, "visible"));
    assert_true(is_project("", ".hidden"));       /* an empty file: nothing ignored */
    assert_false(is_project("  old-*  \r\n# c\n\n", "old-1"));
    assert_true(is_project("# old-*\n", "old-1"));
    /* Python's fnmatch, not fnmatch(3): [^x] is a class of '^' and 'x' */
    assert_true(is_project("[^x]*\n", "abc"));
    assert_false(is_project("[^x]*\n", "xyz"));
    assert_false(is_project("[!x]*\n", "abc"));
    assert_true(is_project("[[:alpha:]]*\n", "abc"));
    assert_false(is_project("*\\*\n", "a\\b"));  /* no escapes: '\' is a character */
    /* every pattern counts, however long the file */
    char many[8192] = "";
    for (int i = 0; i < 100; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "pattern-%03d\n", i);
    assert_false(is_project(many, "pattern-099"));
    char big[6000];
    memset(big, '#', 4090);
    big[4090] = '\n';
    strcpy(big + 4091, "straddling-the-4k-mark\n");
    assert_false(is_project(big, "straddling-the-4k-mark"));
    assert_true(is_project(big, "straddling"));
}

static void test_tracignore_not_a_file_is_absent(void **state)
{
    (void)state;
    serve_parent("ignore-dir");
    make_dir(".tracignore"); /* Trac's open() fails: ".*" */
    struct tf_reload_watch rw;
    mark(&rw);
    make_dir(".hidden");
    assert_false(changed(&rw));
    make_dir("shown");
    assert_true(changed(&rw));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_are_the_union_of_the_lists),
        cmocka_unit_test(test_plugins_trac_loads_are_watched),
        cmocka_unit_test(test_other_files_in_plugins_are_not),
        cmocka_unit_test(test_metadata_inside_a_plugin_folder_is_watched),
        cmocka_unit_test(test_names_are_escaped_in_why),
        cmocka_unit_test(test_tracignore_is_read_as_trac_reads_it),
        cmocka_unit_test(test_tracignore_not_a_file_is_absent),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
