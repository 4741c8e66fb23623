/* text.h — a growing text buffer for the profiler's reports and exports,
 * with the escapes they need (Prometheus label values, JSON strings, HTML).
 * An allocation failure is remembered and reported by prof_text_finish(). */
#ifndef PROF_TEXT_H
#define PROF_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct prof_text {
    char *p;
    size_t len, cap;
    bool failed;
};

enum prof_escape {
    PROF_ESC_PROM,  /* a Prometheus label value */
    PROF_ESC_JSON,  /* a JSON string */
    PROF_ESC_HTML,  /* HTML text or an attribute value */
    PROF_ESC_LINE,  /* a field of a line-based format (callgrind, the tree dump): control
                       characters (newline, tab) become spaces, nothing else changes */
    PROF_ESC_STACK, /* a frame of a collapsed stack: as a line, and ';' becomes ':' */
};

/* How every page of the profiler begins. Its icon is none (an empty data:
 * URL): else a browser asks the app for /favicon.ico at each look at the
 * page, and those requests join the profile. */
#define PROF_HTML_START "<!doctype html><html lang=en><meta charset=utf-8>" \
                        "<link rel=icon href=\"data:,\">"

void prof_text_add(struct prof_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* n bytes of s as they are. */
void prof_text_put(struct prof_text *t, const char *s, size_t n);
/* The length (1 to 4) of the well-formed UTF-8 sequence at s, or 0 when the
 * byte there starts none: a stray continuation byte, an overlong form, a
 * surrogate, a code point past U+10FFFF, a sequence cut short (the NUL that
 * ends s is not a continuation byte, so nothing past it is read). */
size_t prof_utf8_sequence(const unsigned char *s);

/* s escaped for how. The result is always valid UTF-8, whatever s holds
 * (function names, raw request paths): well-formed UTF-8 passes through and
 * each byte of anything else becomes U+FFFD (%XX in a Prometheus label, so
 * two routes that differ only there stay two series). Control characters are escaped
 * (JSON's \u00XX, else \n and \xXX) or replaced (the line formats). */
void prof_text_escaped(struct prof_text *t, const char *s, enum prof_escape how);
/* The text (malloc'd, NUL-terminated; *len set if len), or NULL if any
 * allocation failed (the buffer is freed). */
char *prof_text_finish(struct prof_text *t);
char *prof_text_finish_len(struct prof_text *t, size_t *len);

#endif
