/* compare.h — --mirror's comparison: for each route, the latency of the app
 * and of the upstream answering the same GET/HEAD requests, side by side,
 * and the pairs whose answers differ (status, body size, body hash). Pairs
 * whose client left early are counted apart ("abandoned"), not compared;
 * those whose primary waited for a slow client ("held back") are compared
 * but give no latency sample: the two sides were not timed alike. A side
 * that gave no whole answer makes a failed pair, kept with its error.
 * Recording takes one mutex; reports copy under it. No Python here. */
#ifndef PROF_COMPARE_H
#define PROF_COMPARE_H

#include <stdbool.h>
#include <stdint.h>

struct prof_compare_side {
    unsigned status;
    char encoding[32];        /* Content-Encoding, "" for none */
    uint64_t bytes, hash;
    uint64_t latency_us;      /* dispatched → last body byte produced */
    bool error;               /* no whole answer (refused, reset, timed out, ...) */
    char why[128];            /* with error: what went wrong, if known ("" if not) */
    bool abandoned;           /* its client left before the answer was complete: the pair
                                 is counted, not compared */
    bool held_back;           /* it waited for a slow client: the answers are compared, the
                                 times are not */
};

/* Capacity: routes (later ones count under "(other)") and mismatches kept. */
void prof_compare_init(unsigned max_routes);
/* A pair whose two answers have ended: counted as mirrored, and compared. */
void prof_compare_record(const char *method, const char *target,
                         const struct prof_compare_side *app,
                         const struct prof_compare_side *upstream);
void prof_compare_count_dropped(void);
void prof_compare_reset(void);

/* Reports, malloc'd NUL-terminated (NULL on out of memory). primary is
 * "app" or "upstream"; profile_href: the profile path relative to the page's
 * own URL (hook.h), its links' start. */
char *prof_compare_json(const char *primary);
char *prof_compare_html(const char *primary, const char *profile_href);

#endif
