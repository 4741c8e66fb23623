/* functable.h — the function table of the profile page, as repoze.profile
 * and pstats show it: ncalls (total/primitive), tottime, percall, cumtime,
 * percall, file:line(function); sorted, limited, filtered by a regular
 * expression as Python's re reads it (re.search, as pstats' print_stats;
 * matched by PCRE2, bounded), with callers or
 * callees per function. The view comes from the query string (GET links). GIL held: labels are Python objects. */
#ifndef PROF_FUNCTABLE_H
#define PROF_FUNCTABLE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stddef.h>

#include "profiler/calltree.h"
#include "profiler/latency_view.h"
#include "profiler/text.h"

struct prof_view {
    char sort[16];      /* time, cumulative, calls, pcalls, name, file, line, nfl, stdname */
    bool bad_sort;      /* the query named a sort key that is none of those (nor an alias) */
    unsigned limit;     /* rows, default 50 */
    char filter[256];   /* Python re, searched in file:line(function) as shown, "" = all */
    bool fullpath;
    char mode[8];       /* stats, callers, callees */
    unsigned long zoom; /* flame graph: preorder node number, 0 = all */
    struct prof_routes_view routes; /* the latency table's, which the links keep */
};

/* Read a view from a raw query string. pstats' names for the sort keys
 * (tottime, cumtime, ncalls, filename, module) become ours; an unknown sort
 * key sets bad_sort; other unknown or bad values fall back to the defaults.
 * repoze.profile's names filename (the filter) and fulldirs (fullpath) are
 * taken too. The latency table's view (routes_sort, routes_limit) is
 * read too: the table's links and filter form keep it. */
void prof_view_parse(struct prof_view *v, const char *query);

/* The table as an HTML fragment, or as JSON; malloc'd, NULL on error. An
 * invalid filter or sort key gives a fragment that says so, or JSON
 * {"error": ...} with *bad_view set. profile_href: the profile path relative
 * to the page (hook.h), the links' and filter form's start. */
char *prof_functable_html(const struct prof_tree *t, const struct prof_view *v,
                          const char *profile_href, size_t *len);
char *prof_functable_json(const struct prof_tree *t, const struct prof_view *v, size_t *len,
                          bool *bad_view);

/* What the clock means for t: with the wall clock and profiled requests
 * that ran at once (t->most_at_once > 1), a warning that times include
 * waiting for the GIL; with the CPU clock, that waiting is left out. HTML:
 * a paragraph (none when there is nothing to say); JSON: the members
 * "clock", "most_at_once" and maybe "warning", each followed by a comma. */
void prof_clock_note(struct prof_text *out, const struct prof_tree *t, bool json);

/* A paragraph saying how many calls t did not record for its node cap
 * (their time stays in their callers' cumulative time), and one saying how
 * many requests were left out because their app took the profile hook (and
 * kept it, or gave it back in another call); nothing for none. */
void prof_dropped_note(struct prof_text *out, const struct prof_tree *t);

#endif
