/* scratch.h — for unit tests that work on files: a scratch folder made in
 * the group setup (the error log goes to a file in it, so tests can read
 * what was logged) and removed in the group teardown. Header-only: each test
 * executable includes it once. */
#ifndef TF_TEST_SCRATCH_H
#define TF_TEST_SCRATCH_H

#include <stdio.h>
#include <stdlib.h>

#include "proxy/log.h"

static char scratch_dir[] = "/tmp/tf-test-XXXXXX";

/* Write text to NAME in the folder (through a rename: a new inode, so a
 * change even within one mtime tick); its path, valid until the next call. */
static inline const char *scratch_write(const char *name, const char *text)
{
    static char path[256];
    char tmp[300];
    snprintf(path, sizeof(path), "%s/%s", scratch_dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
    return path;
}

/* Everything the error log holds so far (the first 8 KB). */
static inline const char *scratch_log(void)
{
    static char buf[8192];
    char path[300];
    snprintf(path, sizeof(path), "%s/error.log", scratch_dir);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
    return buf;
}

static inline int scratch_setup(void **state)
{
    (void)state;
    char err[256], log[300];
    if (!mkdtemp(scratch_dir))
        return -1;
    snprintf(log, sizeof(log), "%s/error.log", scratch_dir);
    return tf_log_open(log, "", err, sizeof(err));
}

static inline int scratch_teardown(void **state)
{
    (void)state;
    char cmd[300];
    tf_log_close();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch_dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
