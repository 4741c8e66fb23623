/* route.c — route keys (see route.h). Only the path is looked at. A path
 * may be sent raw or percent-encoded (a browser encodes é, curl need not):
 * escapes of bytes that mean nothing in a path (unreserved and non-ASCII)
 * are decoded, so both are one route; other escapes stay, in upper case. */
#include "profiler/route.h"

#include <stdbool.h>
#include <stdint.h>
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

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Copy the segment s[0..n) into out[0..room), escapes decoded as the file
 * comment says. Returns its length there, or SIZE_MAX if it does not fit. */
static size_t copy_segment(const char *s, size_t n, char *out, size_t room)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char put[3] = { s[i] };
        size_t k = 1;
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hex_value(s[i + 1])) >= 0 &&
            (lo = hex_value(s[i + 2])) >= 0) {
            unsigned char b = (unsigned char)(hi * 16 + lo), letter = b | 0x20;
            if (b >= 0x80 || (b >= '0' && b <= '9') || (letter >= 'a' && letter <= 'z') ||
                (b && strchr("-._~", b)))
                put[0] = (char)b; /* unreserved or not ASCII: the byte itself */
            else
                put[0] = '%', put[1] = hex[hi], put[2] = hex[lo], k = 3;
            i += 2;
        }
        if (o + k > room)
            return SIZE_MAX;
        memcpy(out + o, put, k);
        o += k;
    }
    return o;
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
        size_t room = cap - 1 - o, n = copy_segment(target + start, i - start, out + o, room);
        if (n == SIZE_MAX)
            break;
        if (is_id(out + o, n)) {
            if (room < 3)
                break;
            memcpy(out + o, ":id", 3);
            n = 3;
        }
        o += n;
    }
    if (o == 0 && cap > 1)
        out[o++] = '/';
    out[o] = 0;
    return o;
}
