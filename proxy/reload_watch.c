/* reload_watch.c — the changes --reload reacts to (see reload_watch.h):
 * the app's files (the union of the workers' lists) stamped after a mark,
 * and a signature of what Trac reads of the projects served: the project
 * folders' names, each conf/trac.ini, and the plugins (names, sizes, times;
 * a plugin folder's metadata too). Nothing else in those folders counts:
 * notes, backups and editors' copies reload nothing. Names go into the log
 * line escaped: whoever can write there chose them. */
#include "proxy/reload_watch.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/log.h"
#include "proxy/platform.h"
#include "proxy/py_fnmatch.h"
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

/* --- the Trac projects: what Trac reads of them, no more ------------------ */

enum watched { PROJECT, TRAC_INI, PLUGINS, PLUGIN };
/* Called for each thing watched; path and st are its. */
typedef void visit_fn(void *arg, enum watched kind, const char *path, const struct stat *st);

/* What Trac loads from plugins/ (trac/loader.py): the *.py its glob takes
 * (not dot names; the suffix as written), and what
 * pkg_resources.Environment([plugins_dir]) takes, its suffix in any case:
 * *.egg (a zip, or a folder with EGG-INFO/), *.egg-link (a path to one),
 * *.egg-info and *.dist-info (a file or folder of metadata beside the
 * code). Nothing else there. */
static bool is_plugin(const char *name)
{
    static const char *const dists[] = { ".egg", ".egg-link", ".egg-info", ".dist-info" };
    size_t n = strlen(name);
    if (name[0] != '.' && n > 3 && !strcmp(name + n - 3, ".py"))
        return true;
    for (size_t i = 0; i < sizeof(dists) / sizeof(dists[0]); i++)
        if (n >= strlen(dists[i]) && !strcasecmp(name + n - strlen(dists[i]), dists[i]))
            return true;
    return false;
}

/* The metadata pkg_resources reads in a plugin that is a folder (an
 * unpacked egg's EGG-INFO/, an .egg-info or .dist-info folder): the entry
 * points name the components Trac loads; its time does not change with
 * them. */
static const char *const plugin_metadata[] = {
    "EGG-INFO/PKG-INFO", "EGG-INFO/entry_points.txt", "PKG-INFO", "METADATA", "entry_points.txt",
};

/* A plugin, and its metadata when it is a folder. */
static void visit_plugin(const char *path, const struct stat *st, visit_fn *fn, void *arg)
{
    char file[4500];
    struct stat meta;
    fn(arg, PLUGIN, path, st);
    for (size_t i = 0; S_ISDIR(st->st_mode) && i < sizeof(plugin_metadata) / sizeof(*plugin_metadata);
         i++) {
        snprintf(file, sizeof(file), "%s/%s", path, plugin_metadata[i]);
        if (stat(file, &meta) == 0)
            fn(arg, PLUGIN, file, &meta);
    }
}

/* One environment: conf/trac.ini, the plugins/ folder itself (only to name
 * a change: an entry Trac does not load changes its time too), and each
 * plugin in it. */
static void visit_env(const char *env, visit_fn *fn, void *arg)
{
    char path[4096], file[4400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/conf/trac.ini", env);
    if (stat(path, &st) == 0)
        fn(arg, TRAC_INI, path, &st);
    snprintf(path, sizeof(path), "%s/plugins", env);
    DIR *d = opendir(path);
    if (d && fstat(dirfd(d), &st) == 0)
        fn(arg, PLUGINS, path, &st);
    for (struct dirent *e; d && (e = readdir(d));) { /* readdir order is stable enough here */
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        if (is_plugin(e->d_name) && stat(file, &st) == 0)
            visit_plugin(file, &st, fn, arg);
    }
    if (d)
        closedir(d);
}

/* The patterns of a parent folder's .tracignore, compiled. */
struct ignored {
    struct tf_py_pattern **patterns;
    size_t n;
};

static void add_pattern(struct ignored *ig, const char *text)
{
    struct tf_py_pattern **grown = realloc(ig->patterns, (ig->n + 1) * sizeof(*grown));
    if (grown) /* out of memory: a pattern less, a folder more watched */
        ig->patterns = grown;
    if (grown && (grown[ig->n] = tf_py_pattern_new(text)))
        ig->n++;
}

/* The patterns of one line of the file, as get_tracignore_patterns takes
 * them: its str.splitlines() parts (ASCII's line breaks) stripped, none
 * empty or starting with '#'. */
static void add_line(struct ignored *ig, char *line)
{
    static const char breaks[] = "\r\n\v\f\x1c\x1d\x1e";
    for (char *part = line, *end; *part; part = end + (*end != 0)) {
        end = part + strcspn(part, breaks);
        char *last = end;
        while (part < last && (isspace((unsigned char)*part) || (*part >= 0x1c && *part <= 0x1f)))
            part++;
        while (last > part && (isspace((unsigned char)last[-1]) ||
                               (last[-1] >= 0x1c && last[-1] <= 0x1f)))
            last--;
        char keep = *last;
        *last = 0;
        if (*part && *part != '#')
            add_pattern(ig, part);
        *last = keep;
    }
}

/* DIR/.tracignore's patterns as trac.web.main's get_tracignore_patterns
 * reads them, the whole file; ".*" when there is none, or it is no regular
 * file (Trac's open() fails on a folder; a FIFO would block). */
static void read_tracignore(const char *dir, struct ignored *ig)
{
    char path[4200], *line = NULL;
    size_t cap = 0;
    struct stat st;
    snprintf(path, sizeof(path), "%s/.tracignore", dir);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    FILE *f = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? fdopen(fd, "r") : NULL;
    ig->patterns = NULL;
    ig->n = 0;
    if (!f) {
        if (fd >= 0)
            close(fd);
        add_pattern(ig, ".*");
        return;
    }
    while (getline(&line, &cap, f) >= 0)
        add_line(ig, line);
    free(line);
    fclose(f);
}

static void free_ignored(struct ignored *ig)
{
    for (size_t i = 0; i < ig->n; i++)
        tf_py_pattern_free(ig->patterns[i]);
    free(ig->patterns);
}

/* A project of the parent folder, as Trac's project index lists them
 * (get_environments): a folder (a link to one too) that no pattern of
 * .tracignore matches (Python's fnmatch: py_fnmatch.h). */
static bool is_project(const struct ignored *ig, const char *name, const char *path,
                       struct stat *st)
{
    if (!strcmp(name, ".") || !strcmp(name, "..") || stat(path, st) != 0 || !S_ISDIR(st->st_mode))
        return false;
    for (size_t i = 0; i < ig->n; i++)
        if (tf_py_pattern_match(ig->patterns[i], name))
            return false;
    return true;
}

/* The projects served (tf_trac_projects: --trac-env, --trac-env-parent-dir,
 * or the same given to a .wsgi script by --env trac.env_path=...). */
static void visit_tree(const struct tf_config *cfg, visit_fn *fn, void *arg)
{
    struct tf_trac_projects served = tf_trac_projects(cfg);
    if (served.env_path)
        visit_env(served.env_path, fn, arg);
    DIR *d = served.parent_dir ? opendir(served.parent_dir) : NULL;
    struct ignored ig = { NULL, 0 };
    if (d)
        read_tracignore(served.parent_dir, &ig);
    for (struct dirent *e; d && (e = readdir(d));) {
        char env[4096];
        struct stat st;
        snprintf(env, sizeof(env), "%s/%s", served.parent_dir, e->d_name);
        if (is_project(&ig, e->d_name, env, &st)) {
            fn(arg, PROJECT, env, &st);
            visit_env(env, fn, arg);
        }
    }
    if (d)
        closedir(d);
    free_ignored(&ig);
}

/* The names of the projects, and those with each trac.ini's and plugin's
 * time and size. */
static void add_to_signature(void *arg, enum watched kind, const char *path,
                             const struct stat *st)
{
    struct tf_reload_tree *sig = arg;
    if (kind == PROJECT)
        sig->projects = mix(sig->projects, path, strlen(path));
    if (kind != PLUGINS)
        sig->all = mix(sig->all, path, strlen(path));
    if (kind == TRAC_INI || kind == PLUGIN)
        sig->all = mix(mix(sig->all, &st->st_mtim, sizeof(st->st_mtim)), &st->st_size,
                       sizeof(st->st_size));
}

static struct tf_reload_tree tree_signature(const struct tf_config *cfg)
{
    struct tf_reload_tree sig = { 0xcbf29ce484222325ull, 0xcbf29ce484222325ull };
    visit_tree(cfg, add_to_signature, &sig);
    return sig;
}

struct stamped {
    const struct timespec *since;
    char file[4600], plugins[4600]; /* the first stamped after since, or "" */
};

static void find_stamped(void *arg, enum watched kind, const char *path, const struct stat *st)
{
    struct stamped *s = arg;
    char *into = kind == PLUGINS ? s->plugins : kind == PROJECT ? NULL : s->file;
    if (into && !into[0] && newer(st, s->since))
        snprintf(into, sizeof(s->file), "%s", path);
}

/* What of the tree changed since the mark, for the log. */
static void describe_tree(const struct tf_reload_watch *rw, const struct tf_config *cfg,
                          const struct tf_reload_tree *now, char *why, size_t cap)
{
    struct stamped s = { .since = &rw->checked_since, .file = "", .plugins = "" };
    char shown[4200];
    visit_tree(cfg, find_stamped, &s);
    if (now->projects != rw->tree.projects)
        snprintf(why, cap, "a project folder was added to, removed from or renamed in %s",
                 tf_log_escape(tf_trac_projects(cfg).parent_dir, shown, sizeof(shown)));
    else if (s.file[0])
        snprintf(why, cap, "%s changed", tf_log_escape(s.file, shown, sizeof(shown)));
    else if (s.plugins[0])
        snprintf(why, cap, "a plugin was added to or removed from %s",
                 tf_log_escape(s.plugins, shown, sizeof(shown)));
    else
        snprintf(why, cap, "a Trac environment's plugins/ or conf/trac.ini changed");
}

/* --- the app's files, and the checks ---------------------------------------- */

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

/* Whether anything changed since the mark; what, as one number in *h (the
 * Trac tree's signature, and the paths, times and sizes of the files
 * changed), the first changed file in *first (or NULL), the tree's
 * signatures in *tree. */
static bool change_signature(const struct tf_reload_watch *rw, const struct tf_config *cfg,
                             const struct tf_reload_files *files, uint64_t *h,
                             const char **first, struct tf_reload_tree *tree)
{
    struct stat st;
    size_t n = files ? files->n : 0, i = file_newer(files, 0, &rw->checked_since, NULL, &st);
    *first = i < n ? files->paths[i] : NULL;
    *tree = tree_signature(cfg);
    *h = tree->all;
    bool changed = tree->all != rw->tree.all || *first;
    for (; i < n; i = file_newer(files, i + 1, &rw->checked_since, NULL, &st)) {
        *h = mix(*h, files->paths[i], strlen(files->paths[i]));
        *h = mix(mix(*h, &st.st_mtim, sizeof(st.st_mtim)), &st.st_size, sizeof(st.st_size));
    }
    return changed;
}

/* A change counts once it has stayed the same for a check: trac-admin
 * initenv, a copy or an unpacked plugin write for a second or more, and a
 * reload in the middle would start workers on half of it. Checks come
 * about every second; one sooner (a SIGCHLD brings it) must not count.
 * Changes that go on (a file written to more often than that) reload once
 * they have gone on for CHANGING_MAX_S. */
#define SETTLE_US 900000u
#define CHANGING_MAX_S 10u
bool tf_reload_watch_changed(struct tf_reload_watch *rw, const struct tf_config *cfg,
                             const struct tf_reload_files *files, char *why, size_t cap)
{
    uint64_t h, now = tf_now_us();
    const char *file;
    struct tf_reload_tree tree;
    bool changed = change_signature(rw, cfg, files, &h, &file, &tree);
    bool same = changed && rw->settling && h == rw->settling_signature;
    if (changed && !rw->settling)
        rw->changing_since = now;
    if (!same) { /* a new change (or none): wait for it to settle */
        rw->settling = changed;
        rw->settling_signature = h;
        rw->settling_since = now;
    }
    bool settled = same && now - rw->settling_since >= SETTLE_US;
    if (!settled && !(changed && now - rw->changing_since >= CHANGING_MAX_S * 1000000ull))
        return false;
    char shown[4200];
    if (file)
        snprintf(why, cap, "%s changed", tf_log_escape(file, shown, sizeof(shown)));
    else
        describe_tree(rw, cfg, &tree, why, cap);
    size_t n = strlen(why);
    if (!settled && n < cap)
        snprintf(why + n, cap - n, " (still changing after %u s: not waiting longer for it to "
                 "settle)", CHANGING_MAX_S);
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
    rw->tree = tree_signature(cfg);
    rw->settling = false;
}
