/* query.c — see query.h. */
#include "profiler/query.h"

#include <string.h>

bool prof_query_next(const char **cursor, struct prof_param *p)
{
    const char *s = *cursor ? *cursor : "";
    while (*s == '&')
        s++;
    if (!*s) {
        *cursor = s;
        return false;
    }
    size_t n = strcspn(s, "&");
    const char *eq = memchr(s, '=', n);
    p->name = s;
    p->name_len = eq ? (size_t)(eq - s) : n;
    p->has_value = eq != NULL;
    p->value = eq ? eq + 1 : s + n;
    p->value_len = eq ? n - p->name_len - 1 : 0;
    *cursor = s + n + (s[n] == '&');
    return true;
}

bool prof_param_is(const struct prof_param *p, const char *name)
{
    return p->name_len == strlen(name) && !memcmp(p->name, name, p->name_len);
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

bool prof_param_value(const struct prof_param *p, char *dst, size_t cap)
{
    const char *v = p->value;
    size_t n = p->value_len, o = 0, i = 0;
    for (; i < n && o + 1 < cap; i++) {
        int hi, lo;
        if (v[i] == '+')
            dst[o++] = ' ';
        else if (v[i] == '%' && i + 2 < n && (hi = hex_digit(v[i + 1])) >= 0 && (lo = hex_digit(v[i + 2])) >= 0) {
            dst[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else
            dst[o++] = v[i];
    }
    dst[o] = 0;
    return i == n;
}

bool prof_query_get(const char *query, const char *name, char *dst, size_t cap)
{
    struct prof_param p, last;
    bool found = false;
    for (const char *c = query; prof_query_next(&c, &p);)
        if (p.has_value && prof_param_is(&p, name))
            last = p, found = true;
    if (!found)
        return false;
    prof_param_value(&last, dst, cap);
    return true;
}
