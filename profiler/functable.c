/* functable.c — see functable.h. Rows come from the flat view of the call
 * tree; names follow pstats (file:line(function), built-ins as {name}). */
#include "profiler/functable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "profiler/clock.h"
#include "profiler/export.h"
#include "profiler/query.h"
#include "profiler/text.h"

/* The page links the first SORT_LINKS; nfl and stdname are pstats' orders
 * by name, file, line and by the whole file:line(function). */
enum { SORT_LINKS = 7, SORT_KEYS = 9 };
static const char *const sort_keys[SORT_KEYS] = { "time", "cumulative", "calls", "pcalls", "name",
                                                  "file", "line", "nfl", "stdname" };
/* pstats.sort_stats' other names for them. */
static const char *const sort_aliases[][2] = { { "tottime", "time" }, { "cumtime", "cumulative" },
                                               { "ncalls", "calls" }, { "filename", "file" },
                                               { "module", "file" } };
#define SORT_KEYS_TEXT "time, cumulative, calls, pcalls, name, file, line, nfl or stdname " \
                       "(or pstats' tottime, cumtime, ncalls, filename, module)"
static const char *const modes[] = { "stats", "callers", "callees" };

static bool one_of(const char *v, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v, list[i]))
            return true;
    return false;
}

/* The sort key value names (an alias resolved), or NULL. */
static const char *sort_key_named(const char *value)
{
    for (size_t i = 0; i < SORT_KEYS; i++)
        if (!strcmp(value, sort_keys[i]))
            return sort_keys[i];
    for (size_t i = 0; i < sizeof(sort_aliases) / sizeof(sort_aliases[0]); i++)
        if (!strcmp(value, sort_aliases[i][0]))
            return sort_aliases[i][1];
    return NULL;
}

void prof_view_parse(struct prof_view *v, const char *query)
{
    memset(v, 0, sizeof(*v));
    strcpy(v->sort, "cumulative");
    strcpy(v->mode, "stats");
    v->limit = 50;
    struct prof_param p;
    for (const char *c = query; prof_query_next(&c, &p);) {
        if (!p.has_value)
            continue;
        char value[256];
        prof_param_value(&p, value, sizeof(value));
        /* sort_keys and one_of() vouch for the length: every listed value fits */
        if (prof_param_is(&p, "sort")) {
            const char *key = sort_key_named(value);
            if (key)
                memcpy(v->sort, key, strlen(key) + 1);
            else
                v->bad_sort = true;
        } else if (prof_param_is(&p, "mode") && one_of(value, modes, 3))
            memcpy(v->mode, value, strlen(value) + 1);
        else if (prof_param_is(&p, "limit")) {
            long l = strtol(value, NULL, 10);
            v->limit = l >= 1 && l <= 100000 ? (unsigned)l : v->limit;
        } else if (prof_param_is(&p, "filter") || prof_param_is(&p, "filename"))
            snprintf(v->filter, sizeof(v->filter), "%s", value);
        else if (prof_param_is(&p, "zoom"))
            v->zoom = strtoul(value, NULL, 10);
        else if (prof_param_is(&p, "fullpath") || prof_param_is(&p, "fulldirs"))
            v->fullpath = !strcmp(value, "1") || !strcmp(value, "on");
    }
    prof_routes_view_parse(&v->routes, query);
}

/* What a row shows: calls, recursive calls, own and cumulative time. */
struct figures {
    uint64_t calls, reccalls, inline_ns, total_ns;
};
#define FIGURES(x) ((struct figures){ (x)->calls, (x)->reccalls, (x)->inline_ns, (x)->total_ns })

/* A function's row, or a caller's or callee's. Distinct code objects can
 * share a name (eval and exec make a new <string>:1(<module>) per call):
 * they are one row, their figures added up as pstats adds them (a call of
 * one by another counts twice in cumulative time, as there). */
struct row {
    const struct prof_flat_entry *e; /* a function's entry, before merging */
    const struct prof_flat_entry *const *members; /* after: the entries it adds up */
    size_t n_members;
    struct figures fig;
    char *full;         /* file:line(function), for the filter and JSON */
    char *shown;        /* what the table shows (basename unless fullpath) */
    char *file, *func;
    long line;
};

static void free_row_names(struct row *r)
{
    free(r->full);
    free(r->shown);
    free(r->file);
    free(r->func);
    r->full = r->shown = r->file = r->func = NULL;
}

/* Fill a row's names from its label (code object or built-in name); -1 on
 * out of memory, with none kept. */
static int name_row(struct row *r, PyObject *label, bool fullpath)
{
    struct prof_label_text lt;
    prof_label_text(label, &lt);
    const char *f = lt.file, *n = lt.name;
    int rc = -1;
    r->file = strdup(f);
    r->func = strdup(n);
    r->line = lt.line;
    size_t cap = strlen(f) + strlen(n) + 32;
    r->full = malloc(cap);
    r->shown = malloc(cap);
    if (r->file && r->func && r->full && r->shown) {
        if (!strcmp(f, "~")) { /* pstats: {built-in method ...} */
            size_t len = strlen(n);
            bool angled = len >= 2 && n[0] == '<' && n[len - 1] == '>';
            snprintf(r->full, cap, angled ? "{%.*s}" : "%.*s",
                     (int)(angled ? len - 2 : len), angled ? n + 1 : n);
            strcpy(r->shown, r->full);
        } else {
            const char *base = strrchr(f, '/');
            snprintf(r->full, cap, "%s:%ld(%s)", f, lt.line, n);
            snprintf(r->shown, cap, "%s:%ld(%s)", fullpath || !base ? f : base + 1, lt.line, n);
        }
        rc = 0;
    } else {
        free_row_names(r);
    }
    prof_label_text_free(&lt);
    return rc;
}

static void free_rows(struct row *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++)
        free_row_names(&rows[i]);
    free(rows);
}

static const char *sort_key; /* for the comparator; the GIL serialises callers */
static bool sort_full;       /* and whether the table shows full paths */

/* The file as the table shows it: without its directories unless full
 * paths are asked for (pstats' strip_dirs()). */
static const char *file_shown(const struct row *r)
{
    const char *base = sort_full ? NULL : strrchr(r->file, '/');
    return base ? base + 1 : r->file;
}

static int cmp_u64_desc(uint64_t a, uint64_t b)
{
    return a < b ? 1 : a > b ? -1 : 0;
}

static int compare_rows(const void *pa, const void *pb)
{
    const struct row *a = pa, *b = pb;
    int c = 0;
    if (!strcmp(sort_key, "time"))
        c = cmp_u64_desc(a->fig.inline_ns, b->fig.inline_ns);
    else if (!strcmp(sort_key, "cumulative"))
        c = cmp_u64_desc(a->fig.total_ns, b->fig.total_ns);
    else if (!strcmp(sort_key, "calls"))
        c = cmp_u64_desc(a->fig.calls, b->fig.calls);
    else if (!strcmp(sort_key, "pcalls"))
        c = cmp_u64_desc(a->fig.calls - a->fig.reccalls, b->fig.calls - b->fig.reccalls);
    else if (!strcmp(sort_key, "name"))
        c = strcmp(a->func, b->func);
    else if (!strcmp(sort_key, "file"))
        c = strcmp(file_shown(a), file_shown(b));
    else if (!strcmp(sort_key, "line"))
        c = a->line < b->line ? -1 : a->line > b->line;
    else if (!strcmp(sort_key, "nfl")) {
        c = strcmp(a->func, b->func);
        c = c ? c : strcmp(file_shown(a), file_shown(b));
        c = c ? c : a->line < b->line ? -1 : a->line > b->line;
    } /* stdname: file:line(function) as shown, as every key's tie-break */
    c = c ? c : strcmp(a->shown, b->shown);
    return c ? c : strcmp(a->full, b->full);
}

static int compare_names(const void *pa, const void *pb)
{
    const struct row *a = pa, *b = pb;
    int c = strcmp(a->full, b->full);
    c = c ? c : strcmp(a->file, b->file);
    c = c ? c : strcmp(a->func, b->func);
    return c ? c : (a->line > b->line) - (a->line < b->line);
}

/* Sort rows by name and make each run of one name a row, its figures added
 * up. With slots (room for n), a merged row's members are its run's entries
 * there. Returns how many rows are left. */
static size_t merge_same_names(struct row *rows, size_t n, const struct prof_flat_entry **slots)
{
    qsort(rows, n, sizeof(*rows), compare_names);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (slots)
            slots[i] = rows[i].e;
        if (kept && compare_names(&rows[kept - 1], &rows[i]) == 0) {
            struct row *into = &rows[kept - 1];
            into->fig.calls += rows[i].fig.calls;
            into->fig.reccalls += rows[i].fig.reccalls;
            into->fig.inline_ns += rows[i].fig.inline_ns;
            into->fig.total_ns += rows[i].fig.total_ns;
            into->n_members++;
            free_row_names(&rows[i]);
            continue;
        }
        rows[kept] = rows[i];
        rows[kept].members = slots ? &slots[i] : NULL;
        rows[kept++].n_members = 1;
    }
    return kept;
}

static void add_link(struct prof_text *t, const char *profile_href, const struct prof_view *v,
                     const char *key, const char *value, const char *label)
{
    struct prof_view w = *v;
    if (!strcmp(key, "sort"))
        memcpy(w.sort, value, strlen(value) + 1); /* from sort_keys */
    else if (!strcmp(key, "mode"))
        memcpy(w.mode, value, strlen(value) + 1); /* from modes */
    else if (!strcmp(key, "limit"))
        w.limit = (unsigned)strtoul(value, NULL, 10);
    else if (!strcmp(key, "fullpath"))
        w.fullpath = !strcmp(value, "1");
    bool current = !strcmp(key, "sort") ? !strcmp(v->sort, value)
                   : !strcmp(key, "mode") ? !strcmp(v->mode, value)
                   : !strcmp(key, "limit") ? v->limit == w.limit
                                           : v->fullpath == w.fullpath;
    prof_text_add(t, current ? "<b>" : "<a href=\"");
    if (!current) {
        prof_text_escaped(t, profile_href, PROF_ESC_HTML);
        prof_text_add(t, "?sort=%s&amp;mode=%s&amp;limit=%u&amp;fullpath=%d&amp;filter=", w.sort,
                      w.mode, w.limit, w.fullpath);
        for (const unsigned char *c = (const unsigned char *)w.filter; *c; c++)
            prof_text_add(t, (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                                     (*c >= '0' && *c <= '9') || strchr("-_.~", *c)
                                 ? "%c" : "%%%02X", *c);
        char routes[64];
        prof_routes_view_query(&v->routes, routes, sizeof(routes));
        prof_text_add(t, "%s", routes[0] ? "&amp;" : "");
        prof_text_escaped(t, routes, PROF_ESC_HTML);
        prof_text_add(t, "#functions\">");
    }
    prof_text_escaped(t, label, PROF_ESC_HTML);
    prof_text_add(t, current ? "</b> " : "</a> ");
}

static void add_numbers(struct prof_text *t, uint64_t calls, uint64_t reccalls,
                        uint64_t inline_ns, uint64_t total_ns)
{
    uint64_t prim = calls - reccalls;
    if (reccalls)
        prof_text_add(t, "<td>%llu/%llu", (unsigned long long)calls, (unsigned long long)prim);
    else
        prof_text_add(t, "<td>%llu", (unsigned long long)calls);
    prof_text_add(t, "<td>%.6f<td>%.6f<td>%.6f<td>%.6f", (double)inline_ns / 1e9,
                  calls ? (double)inline_ns / 1e9 / (double)calls : 0.0, (double)total_ns / 1e9,
                  prim ? (double)total_ns / 1e9 / (double)prim : 0.0);
}

/* How many callers (or callees) e has, and the k-th: that edge's figures,
 * with the other function's label in *label (borrowed). */
static size_t n_relations(const struct prof_flat_entry *e, bool callers)
{
    return callers ? e->n_callers : e->n_callees;
}

static const struct prof_flat_caller *relation(const struct prof_flat *flat,
                                               const struct prof_flat_entry *e, bool callers,
                                               size_t k, PyObject **label)
{
    if (callers) {
        *label = e->callers[k].caller_label;
        return &e->callers[k];
    }
    *label = flat->entries[e->callees[k].entry].label;
    return e->callees[k].edge;
}

/* The callers (or callees) of row r's functions, a row per name with the
 * edges' figures added up, in name order; *n of them. NULL on out of
 * memory (or with none). */
static struct row *relation_rows(const struct prof_flat *flat, const struct row *r, bool callers,
                                 const struct prof_view *v, size_t *n)
{
    size_t cap = 0;
    for (size_t m = 0; m < r->n_members; m++)
        cap += n_relations(r->members[m], callers);
    struct row *rel = calloc(cap + 1, sizeof(*rel));
    *n = 0;
    for (size_t m = 0; rel && m < r->n_members; m++)
        for (size_t k = 0; k < n_relations(r->members[m], callers); k++) {
            PyObject *label;
            const struct prof_flat_caller *c = relation(flat, r->members[m], callers, k, &label);
            if (name_row(&rel[*n], label, v->fullpath) < 0) {
                free_rows(rel, *n);
                *n = 0;
                return NULL;
            }
            rel[(*n)++].fig = FIGURES(c);
        }
    if (rel)
        *n = merge_same_names(rel, *n, NULL);
    return rel;
}

/* Callers (or callees) of row r, as indented rows. */
static void add_relations(struct prof_text *t, const struct prof_flat *flat, const struct row *r,
                          bool callers, const struct prof_view *v)
{
    size_t n;
    struct row *rel = relation_rows(flat, r, callers, v, &n);
    if (!rel)
        t->failed = true;
    for (size_t i = 0; i < n; i++) {
        prof_text_add(t, "<tr class=rel>");
        add_numbers(t, rel[i].fig.calls, rel[i].fig.reccalls, rel[i].fig.inline_ns,
                    rel[i].fig.total_ns);
        prof_text_add(t, "<td>%s <code>", callers ? "&larr;" : "&rarr;");
        prof_text_escaped(t, rel[i].shown, PROF_ESC_HTML);
        prof_text_add(t, "</code>\n");
    }
    free_rows(rel, n);
}

/* The flat view and the rows a view selects from it, filtered, one per
 * name, sorted; release with selection_free(). ok is false on out of
 * memory. */
struct selection {
    struct prof_flat *flat;
    struct row *rows;                      /* matched of them, the first shown shown */
    const struct prof_flat_entry **members; /* the rows' members */
    size_t shown, matched, total; /* total: before the filter */
    bool bad_filter, ok;
    char why[240];                         /* with bad_filter: what PCRE2 said */
};

/* The view's filter: a Perl-compatible pattern, as Python's re reads it in
 * pstats and repoze.profile (\d, (?i), lookarounds, lazy quantifiers), run
 * by PCRE2 without Python: no other thread can run (and Clear the profile)
 * while the rows borrow its labels, and a match is bounded (match and depth
 * limits), so a pattern that backtracks without end cannot hold the GIL. */
struct filter {
    pcre2_code *code;
    pcre2_match_data *match;
    pcre2_match_context *limits;
};

#define FILTER_MATCH_LIMIT 50000      /* backtracking steps per name (about 1.5 ms) */
#define FILTER_BUDGET_NS 200000000ull /* and for all the names of a page */

static void filter_free(struct filter *f)
{
    pcre2_match_context_free(f->limits);
    pcre2_match_data_free(f->match);
    pcre2_code_free(f->code);
}

/* 0, or -1 with sel->why saying why. */
static int filter_compile(struct selection *sel, const char *pattern, struct filter *f)
{
    int err;
    PCRE2_SIZE at;
    f->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                            PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, NULL);
    if (!f->code) {
        PCRE2_UCHAR text[100];
        pcre2_get_error_message(err, text, sizeof(text));
        snprintf(sel->why, sizeof(sel->why), "not a valid regular expression: %s at offset %zu",
                 (const char *)text, (size_t)at);
        return -1;
    }
    f->match = pcre2_match_data_create(1, NULL);
    f->limits = pcre2_match_context_create(NULL);
    if (!f->match || !f->limits) {
        snprintf(sel->why, sizeof(sel->why), "out of memory");
        return -1;
    }
    pcre2_set_match_limit(f->limits, FILTER_MATCH_LIMIT);
    pcre2_set_depth_limit(f->limits, FILTER_MATCH_LIMIT);
    return 0;
}

/* Does the filter (NULL code: none) find a match in name? 1, 0, or -1 when
 * matching went past the limits. */
static int filter_matches(const struct filter *f, const char *name)
{
    if (!f->code)
        return 1;
    int rc = pcre2_match(f->code, (PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, 0, f->match,
                         f->limits);
    if (rc >= 0)
        return 1;
    return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}

/* With the GIL held, a filter gets FILTER_BUDGET_NS for a page: has it
 * been spent since t0? */
static bool budget_spent(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    uint64_t ns = (uint64_t)(t.tv_sec - t0->tv_sec) * 1000000000u + (uint64_t)t.tv_nsec -
                  (uint64_t)t0->tv_nsec;
    return ns > FILTER_BUDGET_NS;
}

/* Keep the rows whose name as the table shows it (the short one unless
 * fullpath: pstats' strip_dirs() then print_stats(pattern)) the filter
 * matches; the others' names are freed. Returns how many are left; past
 * the filter's limits sel->bad_filter is set (the rest are freed). */
static size_t filter_rows(struct selection *sel, struct row *rows, size_t n,
                          const struct filter *f, bool fullpath)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        int match = sel->bad_filter ? 0 : filter_matches(f, fullpath ? rows[i].full : rows[i].shown);
        if (match >= 0 && f->code && (i & 15) == 15 && budget_spent(&t0))
            match = -1;
        if (match < 0) {
            snprintf(sel->why, sizeof(sel->why), "matching it took too long (it backtracks: "
                     "past %d steps on a name, or %llu ms for the page)", FILTER_MATCH_LIMIT,
                     FILTER_BUDGET_NS / 1000000);
            sel->bad_filter = true;
        }
        if (match > 0)
            rows[kept++] = rows[i];
        else
            free_row_names(&rows[i]);
    }
    return kept;
}

/* Name every entry into sel->rows, merge the names (sel->total), keep those
 * the filter matches and sort them for the view. -1 on out of memory or a
 * bad filter. */
static int select_rows(struct selection *sel, const struct prof_view *v)
{
    struct filter filter = { 0 };
    sel->bad_filter = v->filter[0] && filter_compile(sel, v->filter, &filter) < 0;
    if (sel->bad_filter) {
        filter_free(&filter);
        return -1;
    }
    size_t n_entries = sel->flat->n_entries, n = 0;
    sel->rows = calloc(n_entries + 1, sizeof(*sel->rows));
    sel->members = calloc(n_entries + 1, sizeof(*sel->members));
    bool ok = sel->rows && sel->members;
    for (size_t i = 0; ok && i < n_entries; i++) {
        struct row r = { .e = &sel->flat->entries[i], .fig = FIGURES(&sel->flat->entries[i]) };
        if ((ok = name_row(&r, r.e->label, v->fullpath) == 0))
            sel->rows[n++] = r;
    }
    if (ok) {
        sel->total = n = merge_same_names(sel->rows, n, sel->members);
        n = filter_rows(sel, sel->rows, n, &filter, v->fullpath);
        ok = !sel->bad_filter;
    }
    filter_free(&filter);
    sel->matched = n; /* what selection_free frees, also on failure */
    if (!ok)
        return -1;
    sort_key = v->sort;
    sort_full = v->fullpath;
    qsort(sel->rows, n, sizeof(*sel->rows), compare_rows);
    sel->shown = n < v->limit ? n : v->limit;
    return 0;
}

static struct selection selection_make(const struct prof_tree *t, const struct prof_view *v)
{
    struct selection sel = { .flat = prof_tree_flatten(t) };
    sel.ok = sel.flat && (select_rows(&sel, v) == 0 || sel.bad_filter);
    return sel;
}

static void selection_free(struct selection *sel)
{
    free_rows(sel->rows, sel->matched);
    free(sel->members);
    prof_flat_free(sel->flat);
}

void prof_clock_note(struct prof_text *out, const struct prof_tree *t, bool json)
{
    static const char overlap[] =
        "with the wall clock, a call's time includes waiting for other threads (the GIL): "
        "while another request's Python code ran, a call that had let the GIL go (a database "
        "query, a file read, time.sleep) waited for it, and that wait is billed to the call. "
        "For each function's own work use --profile-clock cpu, or profile one request at a "
        "time per process (--workers N --threads 1)";
    bool cpu = prof_clock_cpu, warn = !cpu && t->most_at_once > 1;
    if (json) {
        prof_text_add(out, "\"clock\":\"%s\",\"most_at_once\":%u,", cpu ? "cpu" : "wall",
                      t->most_at_once);
        if (warn)
            prof_text_add(out, "\"warning\":\"Up to %u profiled requests ran at once: %s.\",",
                          t->most_at_once, overlap);
    } else if (warn) {
        prof_text_add(out, "<p><b>Up to %u profiled requests ran at once: %s.</b></p>\n",
                      t->most_at_once, overlap);
    } else if (cpu) {
        prof_text_add(out, "<p><i>Times are each thread's CPU time (--profile-clock cpu): time "
                           "spent waiting (I/O, sleep, the GIL) is not counted.</i></p>\n");
    }
}

void prof_dropped_note(struct prof_text *out, const struct prof_tree *t)
{
    if (t->dropped_calls)
        prof_text_add(out, "<p><b>%llu calls past --profile-max-nodes (%zu) were not recorded; "
                           "their time is in their callers' cumulative time.</b></p>\n",
                      (unsigned long long)t->dropped_calls, t->max_nodes);
    if (t->requests_left_out)
        prof_text_add(out, "<p><b>%llu requests are left out: the app replaced the profile hook "
                           "(cProfile's enable() or sys.setprofile()) and did not give it back, "
                           "so the rest of each went unseen, or gave it back in another call "
                           "than took it, so what followed was misplaced.</b></p>\n",
                      (unsigned long long)t->requests_left_out);
}

char *prof_functable_html(const struct prof_tree *t, const struct prof_view *v,
                          const char *profile_href, size_t *len)
{
    struct prof_text out = { 0 };
    struct selection sel = selection_make(t, v);
    if (!sel.ok) {
        selection_free(&sel);
        return NULL;
    }
    prof_text_add(&out, "<h2 id=functions>Functions</h2><p>Sort: ");
    for (size_t i = 0; i < SORT_LINKS; i++)
        add_link(&out, profile_href, v, "sort", sort_keys[i], sort_keys[i]);
    prof_text_add(&out, "&nbsp; Show: ");
    for (size_t i = 0; i < 3; i++)
        add_link(&out, profile_href, v, "mode", modes[i], modes[i]);
    prof_text_add(&out, "&nbsp; Limit: ");
    add_link(&out, profile_href, v, "limit", "20", "20");
    add_link(&out, profile_href, v, "limit", "50", "50");
    add_link(&out, profile_href, v, "limit", "200", "200");
    add_link(&out, profile_href, v, "limit", "100000", "all");
    prof_text_add(&out, "&nbsp; Paths: ");
    add_link(&out, profile_href, v, "fullpath", "0", "short");
    add_link(&out, profile_href, v, "fullpath", "1", "full");
    prof_text_add(&out, "</p><form method=get action=\"");
    prof_text_escaped(&out, profile_href, PROF_ESC_HTML);
    prof_text_add(&out, "#functions\"><input type=hidden name=sort value=\"%s\"><input type=hidden "
                        "name=mode value=\"%s\"><input type=hidden name=limit value=\"%u\">"
                        "<input type=hidden name=fullpath value=\"%d\">", v->sort, v->mode,
                  v->limit, v->fullpath);
    char routes_inputs[160];
    prof_routes_view_hidden(&v->routes, routes_inputs, sizeof(routes_inputs));
    prof_text_add(&out, "%s<label>Filter (regular expression, as Python's re, on "
                        "file:line(function)): <input name=filter size=40 value=\"", routes_inputs);
    prof_text_escaped(&out, v->filter, PROF_ESC_HTML);
    prof_text_add(&out, "\"></label> <button>Apply</button></form>\n");
    if (sel.bad_filter) {
        prof_text_add(&out, "<p><b>The filter cannot be used: ");
        prof_text_escaped(&out, sel.why, PROF_ESC_HTML);
        prof_text_add(&out, ".</b></p>\n");
    } else if (v->bad_sort) {
        prof_text_add(&out, "<p><b>Unknown sort key: use " SORT_KEYS_TEXT ".</b></p>\n");
    } else {
        const struct row *rows = sel.rows;
        prof_dropped_note(&out, t);
        if (v->filter[0]) /* as pstats: "List reduced from 1024 to 14 due to restriction" */
            prof_text_add(&out, "<p>%zu of %zu functions match, %zu shown.", sel.matched,
                          sel.total, sel.shown);
        else
            prof_text_add(&out, "<p>%zu of %zu functions.", sel.shown, sel.total);
        prof_text_add(&out, " Times in seconds.</p><table><tr><th>ncalls<th>tottime<th>percall"
                            "<th>cumtime<th>percall<th>function\n");
        for (size_t i = 0; i < sel.shown; i++) {
            prof_text_add(&out, "<tr>");
            add_numbers(&out, rows[i].fig.calls, rows[i].fig.reccalls, rows[i].fig.inline_ns,
                        rows[i].fig.total_ns);
            prof_text_add(&out, "<td><code>");
            prof_text_escaped(&out, rows[i].shown, PROF_ESC_HTML);
            prof_text_add(&out, "</code>\n");
            if (strcmp(v->mode, "stats") != 0)
                add_relations(&out, sel.flat, &rows[i], !strcmp(v->mode, "callers"), v);
        }
        prof_text_add(&out, "</table>\n");
    }
    selection_free(&sel);
    return prof_text_finish_len(&out, len);
}

/* A function (or a caller, a callee) as JSON members. */
static void json_members(struct prof_text *out, const struct row *r)
{
    uint64_t calls = r->fig.calls, reccalls = r->fig.reccalls;
    prof_text_add(out, "\"function\":\"");
    prof_text_escaped(out, r->full, PROF_ESC_JSON);
    prof_text_add(out, "\",\"file\":\"");
    prof_text_escaped(out, r->file, PROF_ESC_JSON);
    prof_text_add(out, "\",\"line\":%ld,\"name\":\"", r->line);
    prof_text_escaped(out, r->func, PROF_ESC_JSON);
    prof_text_add(out, "\",\"ncalls\":%llu,\"pcalls\":%llu,\"tottime\":%.9f,\"cumtime\":%.9f",
                  (unsigned long long)calls, (unsigned long long)(calls - reccalls),
                  (double)r->fig.inline_ns / 1e9, (double)r->fig.total_ns / 1e9);
}

/* ,"callers":[...] (or callees) of row r, each with that edge's figures. */
static void json_relations(struct prof_text *out, const struct prof_flat *flat, const struct row *r,
                           bool callers, const struct prof_view *v)
{
    size_t n;
    struct row *rel = relation_rows(flat, r, callers, v, &n);
    if (!rel)
        out->failed = true;
    prof_text_add(out, ",\"%s\":[", callers ? "callers" : "callees");
    for (size_t i = 0; i < n; i++) {
        prof_text_add(out, "%s{", i ? "," : "");
        json_members(out, &rel[i]);
        prof_text_add(out, "}");
    }
    prof_text_add(out, "]");
    free_rows(rel, n);
}

char *prof_functable_json(const struct prof_tree *t, const struct prof_view *v, size_t *len,
                          bool *bad_view)
{
    struct prof_text out = { 0 };
    struct selection sel = selection_make(t, v);
    if (!sel.ok) {
        selection_free(&sel);
        return NULL;
    }
    const struct row *rows = sel.rows;
    *bad_view = sel.bad_filter || v->bad_sort;
    if (sel.bad_filter) {
        prof_text_add(&out, "{\"error\":\"the filter cannot be used: ");
        prof_text_escaped(&out, sel.why, PROF_ESC_JSON);
        prof_text_add(&out, "\"}\n");
    } else if (v->bad_sort) {
        prof_text_add(&out, "{\"error\":\"unknown sort key: use " SORT_KEYS_TEXT "\"}\n");
    } else {
        prof_text_add(&out, "{\"matched\":%zu,\"total\":%zu,\"dropped_calls\":%llu,"
                            "\"hook_replaced_requests\":%llu,", sel.matched, sel.total,
                      (unsigned long long)t->dropped_calls,
                      (unsigned long long)t->requests_left_out);
        prof_clock_note(&out, t, true);
        prof_text_add(&out, "\"functions\":[");
        for (size_t i = 0; i < sel.shown; i++) {
            prof_text_add(&out, "%s{", i ? "," : "");
            json_members(&out, &rows[i]);
            if (strcmp(v->mode, "stats") != 0)
                json_relations(&out, sel.flat, &rows[i], !strcmp(v->mode, "callers"), v);
            prof_text_add(&out, "}");
        }
        prof_text_add(&out, "]}\n");
    }
    selection_free(&sel);
    return prof_text_finish_len(&out, len);
}
