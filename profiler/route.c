/* route.c — route keys (see route.h). Only the path is looked at; percent
 * escapes are left as sent, since the key only groups requests. */
#include "profiler/route.h"

#include <stdbool.h>
#include <string.h>

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_id(const char *s, size_t n)
{
    if (n == 0)
        return false;
    size_t digits = 0, hex = 0, dashes = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9')
            digits++;
        else if (is_hex(s[i]))
            hex++;
        else if (s[i] == '-')
            dashes++;
        else
            return false;
    }
    if (digits == n)
        return true;                               /* 123 */
    if (dashes == 0)
        return n >= 8 && digits > 0;               /* a1b2c3d4..., changesets */
    return n == 36 && dashes == 4;                 /* UUID */
}

size_t prof_route_key(const char *target, size_t len, char *out, size_t cap)
{
    if (cap == 0)
        return 0;
    const char *q = memchr(target, '?', len);
    if (q)
        len = (size_t)(q - target);
    size_t o = 0, i = 0;
    while (i < len) {
        size_t start = i;
        if (target[i] == '/') {
            if (o + 1 >= cap)
                break;
            out[o++] = '/';
            i++;
            continue;
        }
        while (i < len && target[i] != '/')
            i++;
        const char *seg = target + start;
        size_t n = i - start;
        if (is_id(seg, n)) {
            seg = ":id";
            n = 3;
        }
        if (o + n >= cap)
            break;
        memcpy(out + o, seg, n);
        o += n;
    }
    if (o == 0 && cap > 1)
        out[o++] = '/';
    out[o] = 0;
    return o;
}
