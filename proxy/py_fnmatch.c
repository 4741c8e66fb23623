/* py_fnmatch.c — Python's fnmatch (see py_fnmatch.h): a pattern becomes
 * the tokens fnmatch.translate's regular expression is made of (a
 * character, any character, a class, never, a star), matched against the
 * name's characters. Each token but the star takes one character, so one
 * star to go back to is enough (as translate's atomic groups). The class
 * rules below follow translate's code step by step, odd cases included. */
#include "proxy/py_fnmatch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum kind { CHAR, ANY, CLASS, NEVER, STAR };

struct range {
    uint32_t lo, hi;
};

struct token {
    enum kind kind;
    uint32_t c;                 /* CHAR */
    bool negated;               /* CLASS: "[!...]" */
    size_t first, n;            /* CLASS: its ranges in ranges[] */
};

struct tf_py_pattern {
    struct token *tokens;
    size_t n;
    struct range *ranges;
    size_t n_ranges;
};

/* s as characters (UTF-8; a byte that is not: U+DC00 + it, as Python's
 * surrogateescape), into out (strlen(s) + 1 of them); how many. */
static size_t decode(const char *s, uint32_t *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (*p) {
        unsigned len = *p < 0x80 ? 1 : *p >= 0xc2 && *p < 0xe0 ? 2 : *p >= 0xe0 && *p < 0xf0 ? 3
                     : *p >= 0xf0 && *p < 0xf5 ? 4 : 0;
        uint32_t c = len == 1 ? *p : len == 2 ? *p & 0x1fu : len == 3 ? *p & 0x0fu : *p & 0x07u;
        for (unsigned k = 1; k < len; k++) {
            if ((p[k] & 0xc0) != 0x80) { /* the end (0) too */
                len = 0;
                break;
            }
            c = c << 6 | (p[k] & 0x3fu);
        }
        if (len && ((len == 3 && (c < 0x800 || (c >= 0xd800 && c < 0xe000))) ||
                    (len == 4 && (c < 0x10000 || c > 0x10ffff))))
            len = 0; /* overlong, a surrogate, past Unicode */
        out[n++] = len ? c : 0xdc00u + *p;
        p += len ? len : 1;
    }
    return n;
}

enum place { MEMBER, JOINER, DROPPED };

/* In [from, to) (to excluded), the nearest position from `at` going by
 * step that is a MEMBER, passing DROPPED ones; -1 at a JOINER or the end. */
static long nearest_member(const enum place *place, long at, long from, long to, int step)
{
    for (; at >= from && at < to && place[at] != JOINER; at += step)
        if (place[at] == MEMBER)
            return at;
    return -1;
}

/* The class c[i, j) (between '[' and its ']') as translate makes it: with a
 * '-' in it, the '-' found from i+1 (i+2 after '!'), then from 3 further on,
 * join ranges (a last one with nothing after is a character); a range going
 * down is removed with its two ends, from the last one back; then a first
 * '!' negates. Other characters stand for themselves. place: j scratch. */
static void compile_class(struct tf_py_pattern *p, struct token *t, const uint32_t *c, long i,
                          long j, enum place *place)
{
    bool dash = false;
    for (long k = i; k < j; k++) {
        place[k] = MEMBER;
        dash = dash || c[k] == '-';
    }
    long last = -1;
    for (long k = c[i] == '!' ? i + 2 : i + 1; dash && k < j; k++)
        if (c[k] == '-') {
            place[k] = JOINER;
            last = k;
            k += 2;
        }
    if (last == j - 1)
        place[last] = MEMBER; /* "chunks[-1] += '-'" */
    for (long q = j - 1; q >= i; q--) {
        long lo = place[q] == JOINER ? nearest_member(place, q - 1, i, j, -1) : -1;
        long hi = lo >= 0 ? nearest_member(place, q + 1, i, j, 1) : -1;
        if (hi >= 0 && c[lo] > c[hi])
            place[lo] = place[q] = place[hi] = DROPPED;
    }
    size_t left = 0;
    long first = -1;
    for (long k = i; k < j; k++)
        if (place[k] != DROPPED && left++ == 0)
            first = k;
    t->kind = !left ? NEVER : left == 1 && c[first] == '!' ? ANY : CLASS;
    t->negated = t->kind == CLASS && c[first] == '!';
    if (t->negated)
        place[first] = DROPPED;
    t->first = p->n_ranges;
    for (long k = i; t->kind == CLASS && k < j; k++) {
        long lo = place[k] == JOINER ? nearest_member(place, k - 1, i, j, -1) : k;
        long hi = place[k] == JOINER ? nearest_member(place, k + 1, i, j, 1) : k;
        if (place[k] == DROPPED)
            continue;
        if (lo < 0 || hi < 0) /* a '-' with no end on one side: itself */
            lo = hi = k;
        p->ranges[p->n_ranges++] = (struct range){ c[lo], c[hi] };
    }
    t->n = p->n_ranges - t->first;
}

struct tf_py_pattern *tf_py_pattern_new(const char *pattern)
{
    size_t len = strlen(pattern) + 1;
    struct tf_py_pattern *p = calloc(1, sizeof(*p));
    uint32_t *c = malloc(len * sizeof(*c));
    enum place *place = malloc(len * sizeof(*place));
    if (!p || !c || !place || !(p->tokens = malloc(len * sizeof(*p->tokens))) ||
        !(p->ranges = malloc(len * sizeof(*p->ranges)))) {
        tf_py_pattern_free(p);
        p = NULL;
        goto done;
    }
    long n = (long)decode(pattern, c);
    for (long i = 0; i < n;) {
        struct token *t = &p->tokens[p->n];
        long j = i + 1;
        if (c[i] == '[') {
            j += j < n && c[j] == '!';
            j += j < n && c[j] == ']';
            while (j < n && c[j] != ']')
                j++;
        }
        if (c[i] == '*' && !(p->n && t[-1].kind == STAR))
            t->kind = STAR;
        else if (c[i] == '?')
            t->kind = ANY;
        else if (c[i] == '[' && j < n)
            compile_class(p, t, c, i + 1, j, place);
        else if (c[i] != '*')
            *t = (struct token){ .kind = CHAR, .c = c[i] };
        else
            t = NULL; /* a star after a star */
        p->n += t != NULL;
        i = c[i] == '[' && j < n ? j + 1 : i + 1; /* an unclosed '[' is itself */
    }
done:
    free(c);
    free(place);
    return p;
}

static bool takes(const struct tf_py_pattern *p, const struct token *t, uint32_t ch)
{
    if (t->kind != CLASS)
        return t->kind == ANY || (t->kind == CHAR && t->c == ch);
    bool in = false;
    for (size_t k = t->first; !in && k < t->first + t->n; k++)
        in = p->ranges[k].lo <= ch && ch <= p->ranges[k].hi;
    return in != t->negated;
}

bool tf_py_pattern_match(const struct tf_py_pattern *p, const char *name)
{
    uint32_t *s = malloc((strlen(name) + 1) * sizeof(*s));
    if (!s)
        return false;
    size_t ns = decode(name, s), ti = 0, si = 0, star = SIZE_MAX, star_si = 0;
    while (si < ns) {
        if (ti < p->n && p->tokens[ti].kind == STAR) {
            star = ++ti; /* the star takes nothing, for now */
            star_si = si;
        } else if (ti < p->n && takes(p, &p->tokens[ti], s[si])) {
            ti++;
            si++;
        } else if (star != SIZE_MAX) { /* the last star takes one more */
            ti = star;
            si = ++star_si;
        } else {
            break;
        }
    }
    while (ti < p->n && p->tokens[ti].kind == STAR)
        ti++;
    free(s);
    return si == ns && ti == p->n;
}

void tf_py_pattern_free(struct tf_py_pattern *p)
{
    if (!p)
        return;
    free(p->tokens);
    free(p->ranges);
    free(p);
}
