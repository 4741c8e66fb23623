/* hook_export.c — the profile the hook collects (hook.h), out and in: the
 * accumulated tree in each export format, the function table page with its
 * flame graph, a slow request's own flame graph, and a worker's tree added
 * in. Called from any thread without the GIL: each takes it around its use
 * of the trees (hook_internal.h).
 * An export or a page reads its own copy of the tree (prof_tree_copy, which
 * runs no Python), never a shared tree: making it runs Python (pstats builds
 * a dict and tuples per function), so the collector runs, a finalizer that
 * lets the GIL go (a socket's close, a log write) lets other threads in, and
 * a Clear then frees the shared trees and drops the code objects they held,
 * keep_if_slow replaces a kept tree, a request ending drains into the
 * accumulated tree and reorders its children. One copy exists at a time
 * (copy_lock). A front (--workers) reads its trees in place: no thread
 * changes them there while one is read (prof_hook_read_in_place). */
#include "profiler/hook.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profiler/calltree.h"
#include "profiler/clock.h"
#include "profiler/export.h"
#include "profiler/export_pstats.h"
#include "profiler/flame.h"
#include "profiler/frame_hook.h"
#include "profiler/functable.h"
#include "profiler/hook_internal.h"
#include "profiler/text.h"
#include "profiler/treeio.h"

/* One copy of a tree at a time in this process: a copy takes 72 bytes a
 * node (720 MB at the 10-million node cap), and exports on several network
 * threads, each letting Python run (so the GIL go) while it reads its copy,
 * held one each. Lock order: copy_lock, then the GIL. It is tried before
 * the GIL and let go after it, never waited for (reading_begin): the
 * readers run on network threads. Only reading_begin and reading_end take
 * and drop it. */
static pthread_mutex_t copy_lock = PTHREAD_MUTEX_INITIALIZER;
/* prof_hook_read_in_place: the trees are read as they are, not copied.
 * Written once before serving. */
static bool in_place;

/* A page or an export reading the trees: copy_lock and the GIL, and the
 * copy it reads (if any). */
struct reading {
    PyGILState_STATE gil;
    struct prof_tree copy;
    bool copied;
};

/* false with errno EBUSY while another page or export reads: the callers
 * are network threads, which must not wait (every connection on their loop
 * would), so the client is told to try again (profile_pages.c: 503). */
static bool reading_begin(struct reading *r)
{
    if (pthread_mutex_trylock(&copy_lock) != 0) {
        errno = EBUSY;
        return false;
    }
    r->gil = PyGILState_Ensure();
    r->copied = false;
    return true;
}

/* What to read for the shared tree: a copy of it, or (in place) shared
 * itself; NULL if shared is, or without memory. Once per reading. */
static const struct prof_tree *reading_tree(struct reading *r, const struct prof_tree *shared)
{
    if (!shared || __atomic_load_n(&in_place, __ATOMIC_RELAXED))
        return shared;
    r->copied = prof_tree_copy(&r->copy, shared) == 0;
    return r->copied ? &r->copy : NULL;
}

/* Frees the copy (which can run Python: its labels' release) under both. */
static void reading_end(struct reading *r)
{
    if (r->copied)
        prof_tree_free(&r->copy);
    PyGILState_Release(r->gil);
    pthread_mutex_unlock(&copy_lock);
}

void prof_hook_read_in_place(void)
{
    __atomic_store_n(&in_place, true, __ATOMIC_RELAXED);
}

char *prof_hook_export(const char *format, size_t *len)
{
    static const struct {
        const char *name;
        char *(*fn)(const struct prof_tree *t, size_t *len);
    } formats[] = {
        { "pstats", prof_export_pstats },
        { "collapsed", prof_export_collapsed },
        { "speedscope", prof_export_speedscope },
        { "callgrind", prof_export_callgrind },
        { "tree", prof_tree_dump },
    };
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        if (strcmp(format, formats[i].name) != 0)
            continue;
        struct reading r;
        if (!reading_begin(&r))
            return NULL;
        const struct prof_tree *t = prof_hook_accumulated();
        bool empty = !t->root.child && strcmp(format, "tree") != 0;
        char *out = NULL;
        if (empty)
            out = calloc(1, 1);
        else if ((t = reading_tree(&r, t)))
            out = formats[i].fn(t, len);
        int why = errno; /* EFBIG: too large (export.h) */
        if (empty && out)
            *len = 0;
        reading_end(&r);
        errno = why;
        return out;
    }
    return NULL;
}

char *prof_hook_table(const char *query, bool json, const char *profile_href, size_t *len,
                      bool *bad_view)
{
    struct prof_view view;
    prof_view_parse(&view, query);
    *bad_view = view.bad_sort;
    struct reading r;
    if (!reading_begin(&r))
        return NULL;
    const struct prof_tree *t = reading_tree(&r, prof_hook_accumulated());
    char *out = NULL;
    if (!t) {
        /* out of memory: NULL */
    } else if (json) {
        out = prof_functable_json(t, &view, len, bad_view);
    } else { /* the page: flame graph, then the table */
        size_t flen = 0, tlen = 0;
        /* the zoom links keep the page's view (both tables'), all but its zoom:
         * the query with "zoom=" last, which each link's own zoom=N replaces */
        char *view_query = prof_query_with(query, "zoom", "");
        size_t cap = strlen(profile_href) + (view_query ? strlen(view_query) : 0) + 2;
        char *base = view_query ? malloc(cap) : NULL;
        if (base)
            snprintf(base, cap, "%s?%.*s", profile_href,
                     (int)(strlen(view_query) - strlen("zoom=")), view_query);
        free(view_query);
        static const char python_only[] =
            "<p><i>Python functions only (--profile-builtins=false): time spent in built-in "
            "calls is their callers' own time.</i></p>";
        static const char python_only_subscr[] =
            "<p><i>Python functions only (--profile-builtins=false): time spent in built-in "
            "calls is their callers' own time. This Python (before 3.11.4) also runs "
            "<code>obj[key]</code> into a Python <code>__getitem__</code> without the hook "
            "(CPython gh-104405): those calls are not counted either. --profile-builtins=true "
            "counts them.</i></p>";
        const char *mode = prof_hook_profiles_builtins()   ? ""
                           : prof_frame_hook_misses_subscr() ? python_only_subscr
                                                             : python_only;
        struct prof_text page = { 0 };
        prof_text_put(&page, mode, strlen(mode));
        prof_clock_note(&page, t, false);
        char *flame = base ? prof_flame_html(t, view.zoom, base, &flen) : NULL;
        char *table = prof_functable_html(t, &view, profile_href, &tlen);
        free(base);
        if (flame && table) {
            prof_text_put(&page, flame, flen);
            prof_text_put(&page, table, tlen);
        } else {
            page.failed = true;
        }
        out = prof_text_finish_len(&page, len);
        free(flame);
        free(table);
    }
    reading_end(&r);
    return out;
}

char *prof_hook_request_html(uint64_t id, const char *query, const char *profile_href,
                             size_t *len)
{
    struct prof_view view;
    prof_view_parse(&view, query);
    char *out = NULL;
    struct reading r;
    if (!reading_begin(&r))
        return NULL;
    uint64_t app_ns;
    const struct prof_tree *kept = reading_tree(&r, prof_hook_kept_tree(id, &app_ns));
    if (kept) {
        size_t cap = strlen(profile_href) + sizeof("/request?id=&") + 20, flen = 0;
        char *base = malloc(cap); /* the href is the client's spelling: any length */
        if (base)
            snprintf(base, cap, "%s/request?id=%llu&", profile_href, (unsigned long long)id);
        char *flame = base ? prof_flame_html(kept, view.zoom, base, &flen) : NULL;
        free(base);
        struct prof_text t = { 0 };
        prof_text_add(&t, PROF_HTML_START "<title>tracfront: request %llu"
                          "</title><style>body{font:14px sans-serif}</style><h1>Request %llu: "
                          "%.3f ms in the profiled code</h1><p><a href=\"",
                      (unsigned long long)id, (unsigned long long)id, (double)app_ns / 1e6);
        prof_text_escaped(&t, profile_href, PROF_ESC_HTML);
        prof_text_add(&t, "\">back to the profile</a></p>");
        prof_dropped_note(&t, kept);
        prof_text_add(&t, "%s", flame ? flame : "");
        if (!flame)
            t.failed = true;
        free(flame);
        out = prof_text_finish_len(&t, len);
    }
    reading_end(&r);
    return out;
}

int prof_hook_import(const char *text, size_t len)
{
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = prof_tree_load(prof_hook_accumulated(), text, len);
    PyGILState_Release(g);
    return rc;
}
