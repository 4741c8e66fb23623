/* text.c — see text.h. */
#include "profiler/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

void prof_text_escaped(struct prof_text *t, const char *s, enum prof_escape how)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (how == PROF_ESC_HTML && strchr("<>&\"'", c))
            prof_text_add(t, "&#%d;", c);
        else if (how != PROF_ESC_HTML && (c == '"' || c == '\\'))
            prof_text_add(t, "\\%c", c);
        else if (c == '\n')
            prof_text_add(t, "\\n");
        else if (c < 0x20 || (how == PROF_ESC_JSON && c >= 0x7f)) /* always valid JSON */
            prof_text_add(t, how == PROF_ESC_JSON ? "\\u%04x" : "\\x%02x", c);
        else
            prof_text_add(t, "%c", c);
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
