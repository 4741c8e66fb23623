/* text.c — see text.h. */
#include "profiler/text.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL; false (and t->failed) when out of memory. */
static bool reserve(struct prof_text *t, size_t n)
{
    if (t->failed)
        return false;
    if (t->p && t->len + n < t->cap)
        return true;
    size_t cap = t->cap ? t->cap * 2 : 4096;
    while (cap < t->len + n + 1)
        cap *= 2;
    char *p = realloc(t->p, cap);
    if (!p) {
        t->failed = true;
        return false;
    }
    t->p = p;
    t->cap = cap;
    return true;
}

void prof_text_add(struct prof_text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = t->failed ? -1 : vsnprintf(t->p ? t->p + t->len : NULL,
                                           t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        if (!reserve(t, (size_t)n))
            return;
    }
}

void prof_text_put(struct prof_text *t, const char *s, size_t n)
{
    if (!reserve(t, n))
        return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

size_t prof_utf8_sequence(const unsigned char *s)
{
    static const uint32_t smallest[] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
                               : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n <= 1)
        return n;
    uint32_t cp = s[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < smallest[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Does this ASCII character need an escape in this format? */
static bool special(unsigned char c, enum prof_escape how)
{
    if (c < 0x20)
        return true;
    if (how == PROF_ESC_HTML)
        return strchr("<>&\"'", c) != NULL;
    if (how == PROF_ESC_LINE)
        return false;
    if (how == PROF_ESC_STACK)
        return c == ';';
    return c == '"' || c == '\\';
}

static void escape_ascii(struct prof_text *t, unsigned char c, enum prof_escape how)
{
    if (how == PROF_ESC_LINE || how == PROF_ESC_STACK) /* no escapes there: replaced */
        prof_text_put(t, c == ';' ? ":" : " ", 1);
    else if (how == PROF_ESC_HTML && strchr("<>&\"'", c))
        prof_text_add(t, "&#%d;", c);
    else if (c == '"' || c == '\\')
        prof_text_add(t, "\\%c", c);
    else if (c == '\n')
        prof_text_add(t, "\\n");
    else /* a control character: JSON's escape, or one anyone can read */
        prof_text_add(t, how == PROF_ESC_JSON ? "\\u%04x" : "\\x%02x", c);
}

void prof_text_escaped(struct prof_text *t, const char *s, enum prof_escape how)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p && !t->failed) {
        const unsigned char *run = p; /* copied as it is: valid UTF-8, nothing to escape */
        size_t n;
        while (*p && (n = prof_utf8_sequence(p)) && (n > 1 || !special(*p, how)))
            p += n;
        prof_text_put(t, (const char *)run, (size_t)(p - run));
        if (!*p)
            break;
        if (prof_utf8_sequence(p))
            escape_ascii(t, *p, how);
        else if (how == PROF_ESC_PROM) /* a label value must be UTF-8 and tell routes */
            prof_text_add(t, "%%%02X", *p);  /* apart: "/raw\xff" and "/raw\xfe" differ */
        else /* not UTF-8 (a Latin-1 path, a cut sequence): readers expect UTF-8 */
            prof_text_put(t, "\xef\xbf\xbd", 3); /* U+FFFD, byte by byte */
        p++;
    }
}

char *prof_text_finish_len(struct prof_text *t, size_t *len)
{
    if (t->failed || !t->p) {
        free(t->p);
        t->p = NULL;
        return NULL;
    }
    if (len)
        *len = t->len;
    return t->p;
}

char *prof_text_finish(struct prof_text *t)
{
    return prof_text_finish_len(t, NULL);
}
