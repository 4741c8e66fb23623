/* route.c — route keys (see route.h). Only the path is looked at. A path
 * may be sent raw or percent-encoded (a browser encodes é, curl need not):
 * escapes of bytes that mean nothing in a path (unreserved and non-ASCII)
 * are decoded, so both are one route; other escapes stay, in upper case. */
#include "profiler/route.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "profiler/text.h"

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The byte of the escape at s[i] ("%XX", within n), or -1 when none is. */
static int escaped_byte(const char *s, size_t n, size_t i)
{
    int hi, lo;
    if (i + 2 >= n || s[i] != '%' || (hi = hex_value(s[i + 1])) < 0 ||
        (lo = hex_value(s[i + 2])) < 0)
        return -1;
    return hi * 16 + lo;
}

/* Is the raw segment s[0..n), its escapes decoded as it is read, an id:
 * all digits (123), 8+ hex digits with a digit (changesets, hashes), or a
 * UUID? Any length: a long hash still folds. */
static bool is_id(const char *s, size_t n)
{
    size_t len = 0, digits = 0, hex = 0, dashes = 0;
    for (size_t i = 0; i < n; i++, len++) {
        int b = escaped_byte(s, n, i);
        char c = b >= 0 ? (char)b : s[i];
        if (b >= 0)
            i += 2;
        if (c >= '0' && c <= '9')
            digits++;
        else if (is_hex(c))
            hex++;
        else if (c == '-')
            dashes++;
        else
            return false;
    }
    if (len == 0)
        return false;
    if (digits == len)
        return true;                               /* 123 */
    if (dashes == 0)
        return len >= 8 && digits > 0;             /* a1b2c3d4..., changesets */
    return len == 36 && dashes == 4;               /* UUID */
}

/* The run of bytes >= 0x80 at s[i..n), each raw or escaped (%XX), up to 4:
 * their values in seq (0-ended), each one's width in s in width[]. */
static void high_bytes(const char *s, size_t n, size_t i, unsigned char seq[5], size_t width[4])
{
    size_t m = 0;
    for (int b; m < 4 && i < n; m++) {
        if ((b = escaped_byte(s, n, i)) >= 0x80)
            seq[m] = (unsigned char)b, width[m] = 3;
        else if (b < 0 && (unsigned char)s[i] >= 0x80)
            seq[m] = (unsigned char)s[i], width[m] = 1;
        else
            break;
        i += width[m];
    }
    seq[m] = 0;
}

/* Copy the segment s[0..n) into out[0..room), escapes decoded as the file
 * comment says: non-ASCII ones only when they spell well-formed UTF-8 (else
 * /raw%FF and /raw%FE would read alike once shown as text); a raw byte that
 * is not part of well-formed UTF-8 is written as its escape, so a raw /x\xff
 * and /x%FF are one route (two keys would be one series in a Prometheus
 * label, which spells such a byte so), and a sequence spelled partly raw,
 * partly escaped is decoded as either. Returns its length there, or
 * SIZE_MAX if it does not fit. */
static size_t copy_segment(const char *s, size_t n, char *out, size_t room)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char put[4] = { s[i] };
        size_t k = 1, used = 1;
        int b = escaped_byte(s, n, i);
        if (b >= 0x80 || (b < 0 && (unsigned char)s[i] >= 0x80)) {
            unsigned char seq[5]; /* the run of non-ASCII bytes: one UTF-8 sequence? */
            size_t width[4];
            high_bytes(s, n, i, seq, width);
            k = prof_utf8_sequence(seq);
            used = width[0];
            if (k > 1) {
                memcpy(put, seq, k);
                for (size_t j = 1; j < k; j++)
                    used += width[j];
            } else {
                put[0] = '%', put[1] = hex[seq[0] >> 4], put[2] = hex[seq[0] & 15], k = 3;
            }
        } else if (b >= 0) {
            unsigned char letter = (unsigned char)(b | 0x20);
            if ((b >= '0' && b <= '9') || (letter >= 'a' && letter <= 'z') ||
                (b && strchr("-._~", b)))
                put[0] = (char)b; /* unreserved: the character itself */
            else
                put[0] = '%', put[1] = hex[b >> 4], put[2] = hex[b & 15], k = 3;
            used = 3;
        }
        if (o + k > room)
            return SIZE_MAX;
        memcpy(out + o, put, k);
        o += k;
        i += used - 1;
    }
    return o;
}

/* What ends a key cut to fit, after a segment boundary: "/wiki/…" for a
 * page name too long to keep, never "/wiki/", the route of the page list
 * (only a path whose last segment is "…" itself has such a key). */
static const char cut_mark[] = "\xe2\x80\xa6";

/* out[0..o) was cut short in cap bytes: back to a segment boundary that
 * leaves room for the mark, then the mark. Returns the new length. */
static size_t mark_cut(char *out, size_t o, size_t cap)
{
    size_t mark = sizeof(cut_mark) - 1;
    if (cap < mark + 2)
        return o;
    while (o > 0 && (out[o - 1] != '/' || o + mark > cap - 1))
        o--; /* a segment's bytes never include a raw '/' (copy_segment keeps %2F) */
    if (o == 0)
        out[o++] = '/';
    memcpy(out + o, cut_mark, mark);
    return o + mark;
}

static unsigned kept_leading; /* prof_route_keep_leading's; read-only once threads run */

void prof_route_keep_leading(unsigned n)
{
    kept_leading = n;
}

size_t prof_route_key(const char *target, size_t len, bool by_default, char *out, size_t cap)
{
    if (cap == 0)
        return 0;
    const char *q = memchr(target, '?', len);
    if (q)
        len = (size_t)(q - target);
    size_t o = 0, i = 0;
    unsigned segment = 0, keep = by_default ? kept_leading : 0;
    bool cut = false;
    while (i < len && !cut) {
        size_t start = i;
        if (target[i] == '/') {
            if (!(cut = o + 1 >= cap))
                out[o++] = '/';
            i++;
            continue;
        }
        while (i < len && target[i] != '/')
            i++;
        size_t room = cap - 1 - o, n;
        if (segment++ >= keep && is_id(target + start, i - start)) {
            n = room < 3 ? SIZE_MAX : 3;
            if (n == 3)
                memcpy(out + o, ":id", 3);
        } else {
            n = copy_segment(target + start, i - start, out + o, room);
        }
        if (!(cut = n == SIZE_MAX))
            o += n;
    }
    if (cut)
        o = mark_cut(out, o, cap);
    if (o == 0 && cap > 1)
        out[o++] = '/';
    out[o] = 0;
    return o;
}
