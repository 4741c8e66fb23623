/* reload_watch.c — the changes --reload reacts to (see reload_watch.h):
 * the app's files (the union of the workers' lists) stamped after a mark,
 * and a signature of the Trac environments' plugins/ folders (names, sizes,
 * times) and conf/trac.ini files. */
#include "proxy/reload_watch.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proxy/platform.h"
#include "proxy/trac_projects.h"

static int compare_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int tf_reload_files_add(struct tf_reload_files *files, const char *list, size_t len)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += list[i] == '\n';
    char **paths = realloc(files->paths, (files->n + lines) * sizeof(*paths));
    if (!paths)
        return -1;
    files->paths = paths;
    size_t n = files->n;
    int rc = 0;
    for (const char *line = list, *end = list + len; rc == 0 && line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t k = nl ? (size_t)(nl - line) : (size_t)(end - line);
        if (k && !(paths[n++] = strndup(line, k))) {
            n--;
            rc = -1;
        }
        line += k + 1;
    }
    qsort(paths, n, sizeof(*paths), compare_paths);
    files->n = 0; /* keep each once */
    for (size_t i = 0; i < n; i++)
        if (files->n && !strcmp(paths[files->n - 1], paths[i]))
            free(paths[i]);
        else
            paths[files->n++] = paths[i];
    return rc;
}

void tf_reload_files_free(struct tf_reload_files *files)
{
    for (size_t i = 0; i < files->n; i++)
        free(files->paths[i]);
    free(files->paths);
    files->paths = NULL;
    files->n = 0;
}

static bool newer(const struct stat *st, const struct timespec *since)
{
    return st->st_mtim.tv_sec > since->tv_sec ||
           (st->st_mtim.tv_sec == since->tv_sec && st->st_mtim.tv_nsec > since->tv_nsec);
}

static uint64_t mix(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* One Trac environment: its plugins/ folder (names, sizes, times) and
 * conf/trac.ini. */
static uint64_t env_signature(uint64_t h, const char *env)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/conf/trac.ini", env);
    if (stat(path, &st) == 0)
        h = mix(mix(h, &st.st_mtim, sizeof(st.st_mtim)), &st.st_size, sizeof(st.st_size));
    snprintf(path, sizeof(path), "%s/plugins", env);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        char file[4400];
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        if (e->d_name[0] == '.' || stat(file, &st) != 0)
            continue;
        h = mix(h, e->d_name, strlen(e->d_name)); /* readdir order is stable enough here */
        h = mix(mix(h, &st.st_mtim, sizeof(st.st_mtim)), &st.st_size, sizeof(st.st_size));
    }
    if (d)
        closedir(d);
    return h;
}

/* The projects served (tf_trac_projects: --trac-env, --trac-env-parent-dir,
 * or the same given to a .wsgi script by --env trac.env_path=...). */
static uint64_t tree_signature(const struct tf_config *cfg)
{
    uint64_t h = 0xcbf29ce484222325ull;
    struct tf_trac_projects served = tf_trac_projects(cfg);
    if (served.env_path)
        h = env_signature(h, served.env_path);
    DIR *d = served.parent_dir ? opendir(served.parent_dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        char env[4096];
        snprintf(env, sizeof(env), "%s/%s", served.parent_dir, e->d_name);
        if (e->d_name[0] != '.')
            h = env_signature(mix(h, e->d_name, strlen(e->d_name)), env);
    }
    if (d)
        closedir(d);
    return h;
}

/* The index of the first of files from i on stamped after since (and not
 * past until), its stat in *st; files->n if none. */
static size_t file_newer(const struct tf_reload_files *files, size_t i,
                         const struct timespec *since, const struct timespec *until,
                         struct stat *st)
{
    for (; files && i < files->n; i++)
        if (stat(files->paths[i], st) == 0 && newer(st, since) && !(until && newer(st, until)))
            return i;
    return files ? files->n : 0;
}

/* What changed since the mark, as one number (paths, times and sizes of
 * the files changed, and the Trac tree's signature), the first changed file
 * in *first; false if nothing did. */
static bool change_signature(const struct tf_reload_watch *rw, const struct tf_config *cfg,
                             const struct tf_reload_files *files, uint64_t *h,
                             const char **first)
{
    struct stat st;
    size_t n = files ? files->n : 0, i = file_newer(files, 0, &rw->checked_since, NULL, &st);
    *first = i < n ? files->paths[i] : NULL;
    *h = tree_signature(cfg);
    bool changed = *h != rw->tree_signature || *first;
    for (; i < n; i = file_newer(files, i + 1, &rw->checked_since, NULL, &st)) {
        *h = mix(*h, files->paths[i], strlen(files->paths[i]));
        *h = mix(mix(*h, &st.st_mtim, sizeof(st.st_mtim)), &st.st_size, sizeof(st.st_size));
    }
    return changed;
}

/* A change counts once it has stayed the same for a check: trac-admin
 * initenv, a copy or an unpacked plugin write for a second or more, and a
 * reload in the middle would start workers on half of it. Checks come
 * about every second; one sooner (a SIGCHLD brings it) must not count. */
#define SETTLE_US 900000u
bool tf_reload_watch_changed(struct tf_reload_watch *rw, const struct tf_config *cfg,
                             const struct tf_reload_files *files, char *why, size_t cap)
{
    uint64_t h, now = tf_now_us();
    const char *file;
    bool changed = change_signature(rw, cfg, files, &h, &file);
    if (!changed || !rw->settling || h != rw->settling_signature) {
        rw->settling = changed; /* a new change (or none): wait for it to settle */
        rw->settling_signature = h;
        rw->settling_since = now;
        return false;
    }
    if (now - rw->settling_since < SETTLE_US)
        return false;
    if (file)
        snprintf(why, cap, "%s changed", file);
    else
        snprintf(why, cap, "the Trac environment's plugins/ or conf/trac.ini changed");
    return true;
}

/* A file can be stamped a little ahead of the coarse clock (by a few ms
 * with the fine-grained file times of recent kernels, by seconds with a
 * network file system's clock): what is on disk now counts as seen, as the
 * generation started next loads it. Not a file stamped far in the future:
 * edits after it would go unseen. */
#define AHEAD_MAX_S 5
void tf_reload_watch_mark(struct tf_reload_watch *rw, const struct tf_config *cfg,
                          const struct tf_reload_files *files)
{
    clock_gettime(CLOCK_REALTIME_COARSE, &rw->checked_since); /* the clock file times come from */
    struct timespec until = rw->checked_since;
    struct stat st;
    until.tv_sec += AHEAD_MAX_S;
    while (file_newer(files, 0, &rw->checked_since, &until, &st) < (files ? files->n : 0))
        rw->checked_since = st.st_mtim;
    rw->tree_signature = tree_signature(cfg);
    rw->settling = false;
}
