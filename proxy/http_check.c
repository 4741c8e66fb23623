/* http_check.c — the RFC 9112 checks of http_check.h. Everything here answers
 * "is this unambiguous?"; when in doubt the answer is no, because a request
 * that two parsers could read differently is how smuggling starts. */
#include "proxy/http_check.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void tf_framing_init(struct tf_framing *f)
{
    memset(f, 0, sizeof(*f));
    f->content_length = -1;
}

int tf_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool tf_is_hex(const char *s, size_t n)
{
    return strlen(s) == n && strspn(s, "0123456789abcdefABCDEF") == n;
}

size_t tf_percent_decode(const char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < len &&
            (hi = tf_hex_value(in[i + 1])) >= 0 && (lo = tf_hex_value(in[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

bool tf_secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

bool tf_is_hop_by_hop(const char *name, size_t len)
{
#define HOP(s) { s, sizeof(s) - 1 }
    static const struct {
        const char *name;
        size_t len;
    } hop[] = { HOP("connection"), HOP("keep-alive"), HOP("proxy-connection"),
                HOP("transfer-encoding"), HOP("te"), HOP("trailer"), HOP("upgrade"),
                HOP("proxy-authenticate"), HOP("proxy-authorization") };
#undef HOP
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (hop[i].len == len && !strncasecmp(hop[i].name, name, len))
            return true;
    return false;
}

bool tf_connection_lists(const char *connection, const char *name, size_t len)
{
    const char *p = connection;
    while (p && *p) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t,");
        if (n == len && !strncasecmp(p, name, len))
            return true;
        p += n;
    }
    return false;
}

/* Character classes, one table lookup per byte (a strchr per punctuation
 * character was a fifth of checking a request's headers). */
enum { TCHAR = 1, HOSTCHAR = 2, BRACKET = 4 };
#define ALNUM(bits) ['0' ... '9'] = (bits), ['a' ... 'z'] = (bits), ['A' ... 'Z'] = (bits)
static const unsigned char char_class[256] = {
    ALNUM(TCHAR | HOSTCHAR),
    /* tchar (RFC 9110 5.6.2) */
    ['!'] = TCHAR | HOSTCHAR, ['#'] = TCHAR, ['$'] = TCHAR | HOSTCHAR, ['%'] = TCHAR | HOSTCHAR,
    ['&'] = TCHAR | HOSTCHAR, ['\''] = TCHAR | HOSTCHAR, ['*'] = TCHAR | HOSTCHAR,
    ['+'] = TCHAR | HOSTCHAR, ['-'] = TCHAR | HOSTCHAR, ['.'] = TCHAR | HOSTCHAR, ['^'] = TCHAR,
    ['_'] = TCHAR | HOSTCHAR, ['`'] = TCHAR, ['|'] = TCHAR, ['~'] = TCHAR | HOSTCHAR,
    /* the rest of uri-host [ ":" port ]: sub-delims, pct-encoded, IP-literal */
    ['('] = HOSTCHAR, [')'] = HOSTCHAR, [','] = HOSTCHAR, [';'] = HOSTCHAR, ['='] = HOSTCHAR,
    [':'] = HOSTCHAR, ['['] = HOSTCHAR | BRACKET, [']'] = HOSTCHAR | BRACKET,
};
#undef ALNUM

/* cls is one bit: the AND of several bytes' classes has it iff each has
 * it, so a branch per four bytes (about 4 instructions a byte, not 6). */
static bool all_of_class(const char *s, size_t len, unsigned char cls)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    for (; i + 4 <= len; i += 4)
        if (!(char_class[p[i]] & char_class[p[i + 1]] & char_class[p[i + 2]] &
              char_class[p[i + 3]] & cls))
            return false;
    for (; i < len; i++)
        if (!(char_class[p[i]] & cls))
            return false;
    return true;
}

bool tf_is_token(const char *s, size_t len)
{
    return len > 0 && all_of_class(s, len, TCHAR);
}

/* A word of 8 bytes none of which is below 0x20 or 0x7f (bit tricks:
 * "hasless" and "haszero" of Bit Twiddling Hacks, exact for whether any byte
 * matches; either byte order). */
#define BYTES(b) (0x0101010101010101ull * (b))
static bool word_has_no_control(uint64_t x)
{
    uint64_t del = x ^ BYTES(0x7f);
    return !(((x - BYTES(0x20)) & ~x & BYTES(0x80)) | ((del - BYTES(1)) & ~del & BYTES(0x80)));
}
#undef BYTES

bool tf_is_field_value(const char *v, size_t len)
{
    size_t i = 0;
    uint64_t x;
    for (; i + 8 <= len; i += 8) { /* a byte at a time was ~12 instructions */
        memcpy(&x, v + i, 8);
        if (!word_has_no_control(x))
            break; /* (a tab, most likely) */
    }
    if (i < len && i + 8 > len) { /* a tail after clean words, or a short value: as one
                                     word too, from bytes read twice where they overlap */
        uint32_t lo, hi;
        if (len >= 8) {
            memcpy(&x, v + len - 8, 8);
        } else if (len >= 4) {
            memcpy(&lo, v, 4);
            memcpy(&hi, v + len - 4, 4);
            x = (uint64_t)hi << 32 | lo;
        } else {
            x = 0; /* a byte at a time below */
        }
        if (len >= 4 && word_has_no_control(x))
            return true;
    }
    for (; i < len; i++) { /* exact, a tab allowed */
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2): a reg-name or IPv4 address
 * (no ':'), or an IP-literal in brackets, then perhaps ':' and digits; empty
 * is allowed (RFC 9112 3.2), a port alone is not. Characters by class, not
 * each form's grammar: an odd but harmless name passes, as with nginx. */
static bool host_ok(const char *v, size_t len)
{
    size_t host = 0;
    if (len && v[0] == '[') {
        const char *end = memchr(v, ']', len);
        host = end ? (size_t)(end - v) + 1 : 0;
        if (host < 3 || !all_of_class(v + 1, host - 2, HOSTCHAR) || memchr(v + 1, '[', host - 2))
            return false;
    } else { /* up to a ':', host characters but brackets, in one pass */
        for (; host < len && v[host] != ':'; host++)
            if ((char_class[(unsigned char)v[host]] & (HOSTCHAR | BRACKET)) != HOSTCHAR)
                return false;
        if (host == 0 && len)
            return false;
    }
    if (host == len)
        return true;
    if (v[host] != ':')
        return false;
    for (size_t i = host + 1; i < len; i++)
        if (v[i] < '0' || v[i] > '9')
            return false;
    return true;
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* Content-Length: 1*DIGIT; "5, 5" lists of one value are accepted as RFC 9110
 * allows, anything else is a 400. */
static int parse_content_length(const char *v, size_t len, int64_t *out)
{
    int64_t value = -1;
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i == len || v[i] < '0' || v[i] > '9')
            return -1;
        int64_t n = 0;
        while (i < len && v[i] >= '0' && v[i] <= '9') {
            if (n > (INT64_MAX - 9) / 10)
                return -1;
            n = n * 10 + (v[i++] - '0');
        }
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (value >= 0 && n != value)
            return -1;
        value = n;
        if (i < len && v[i] != ',')
            return -1;
        if (i < len)
            i++;
    }
    if (value < 0)
        return -1;
    *out = value;
    return 0;
}

static void fold_transfer_encoding(struct tf_framing *f, const char *v, size_t len)
{
    f->transfer_encoding = true;
    size_t i = 0;
    while (i <= len) {
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t a = start, b = i;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (b > a) {
            if (f->chunked)
                f->bad_coding = true; /* something after chunked, or chunked twice */
            if (b - a == 7 && strncasecmp(v + a, "chunked", 7) == 0)
                f->chunked = true;
            else
                f->unsupported_coding = true;
        }
        i++;
    }
}

int tf_check_header(struct tf_framing *f, const char *name, size_t name_len,
                    const char *value, size_t value_len)
{
    if (!tf_is_token(name, name_len) || !tf_is_field_value(value, value_len))
        return 400;
    if (name_is(name, name_len, "Content-Length")) {
        int64_t n;
        if (parse_content_length(value, value_len, &n) < 0)
            return 400;
        if (f->content_length >= 0 && f->content_length != n)
            return 400;
        f->content_length = n;
    } else if (name_is(name, name_len, "Transfer-Encoding")) {
        fold_transfer_encoding(f, value, value_len);
    } else if (!f->response && name_is(name, name_len, "Host")) {
        f->host_count++;
        if (!host_ok(value, value_len))
            return 400;
    }
    return 0;
}

int tf_check_framing(const struct tf_framing *f, bool http11)
{
    if (f->transfer_encoding) {
        if (f->content_length >= 0 || !http11 || f->bad_coding)
            return 400;
        if (f->unsupported_coding)
            return 501;
        if (!f->chunked)
            return 400;
    }
    if (f->host_count > 1 || (http11 && f->host_count == 0))
        return 400;
    return 0;
}

int tf_check_target(const char *target, const char *method)
{
    if (!target || !*target)
        return 400;
    /* no fragment either (RFC 9112 3.2): nginx cuts it off, but a route
     * and a backend that read "/a#/b" differently must never disagree */
    for (const unsigned char *p = (const unsigned char *)target; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == '#')
            return 400;
    if (!strcmp(method, "CONNECT")) /* a tunnel: not made, as nginx does not */
        return 501;
    if (target[0] == '/')
        return 0;
    if (!strcmp(target, "*"))
        return strcmp(method, "OPTIONS") == 0 ? 0 : 400;
    size_t skip = tf_absolute_scheme_len(target);
    if (!skip)
        return 400;
    /* the authority: a host (RFC 9110 4.2.1), no userinfo (4.2.4: an error) */
    const char *host = target + skip;
    size_t len = strcspn(host, "/?");
    return len && host[0] != ':' && host_ok(host, len) ? 0 : 400;
}

size_t tf_absolute_scheme_len(const char *target)
{
    if ((target[0] | 0x20) != 'h') /* origin-form, nearly always: no strncasecmp call */
        return 0;
    return !strncasecmp(target, "http://", 7) ? 7 : !strncasecmp(target, "https://", 8) ? 8 : 0;
}

/* One path byte at p (of the path ending at end), %2e read as '.', and %2f,
 * '\\' and %5c as '/' (IIS turns a backslash, raw or decoded, into a slash
 * before it resolves dot segments: KB 896287); *step is how many bytes it
 * took. For the dot-segment checks only: PATH_INFO is decoded elsewhere
 * (tf_percent_decode) and keeps its backslashes. */
static char path_byte(const char *p, const char *end, size_t *step)
{
    if (p[0] == '\\')
        return *step = 1, '/';
    if (p[0] != '%' || end - p < 3)
        return *step = 1, p[0];
    char lower = (char)(p[2] | 0x20);
    if (p[1] == '2' && lower == 'e')
        return *step = 3, '.';
    if ((p[1] == '2' && lower == 'f') || (p[1] == '5' && lower == 'c'))
        return *step = 3, '/';
    return *step = 1, p[0];
}

/* The segments of the path, decoded as path_byte reads them, into out
 * ("/"-separated, without the leading '/'); returns their length. */
static size_t path_segments(const char *target, char *out)
{
    const char *p = target, *end = target + strcspn(target, "?");
    size_t n = 0, step;
    if (p < end && *p == '/')
        p++;
    for (; p < end; p += step)
        out[n++] = path_byte(p, end, &step);
    return n;
}

bool tf_path_has_dots(const char *target)
{
    const char *stop = target + strcspn(target, ".%?");
    if (*stop != '.' && *stop != '%') /* the common case: no dot, no escape in the path */
        return false;
    size_t len = strlen(target);
    char *seg = malloc(len + 1);
    if (!seg)
        return true; /* out of memory: the caller resolves, and fails safe */
    size_t n = path_segments(target, seg);
    bool dots = false;
    for (size_t i = 0; i < n && !dots;) {
        size_t j = i;
        while (j < n && seg[j] != '/')
            j++;
        dots = (j - i == 1 && seg[i] == '.') || (j - i == 2 && seg[i] == '.' && seg[i + 1] == '.');
        i = j + 1;
    }
    free(seg);
    return dots;
}

char *tf_path_resolve(const char *target, bool *above_root)
{
    size_t len = strlen(target);
    char *seg = malloc(len + 1), *out = malloc(len + 2);
    *above_root = false;
    if (!seg || !out) {
        free(seg);
        free(out);
        return NULL;
    }
    size_t n = path_segments(target, seg), o = 0;
    for (size_t i = 0; i <= n;) {
        size_t j = i;
        while (j < n && seg[j] != '/')
            j++;
        size_t sl = j - i;
        bool last = j >= n;
        if (sl == 2 && seg[i] == '.' && seg[i + 1] == '.') {
            if (o == 0) { /* nothing left to go up from */
                *above_root = true;
                free(seg);
                free(out);
                return NULL;
            }
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the '/' before the removed segment */
            if (last)
                out[o++] = '/';
        } else if (sl == 1 && seg[i] == '.') {
            if (last)
                out[o++] = '/';
        } else {
            out[o++] = '/';
            memcpy(out + o, seg + i, sl);
            o += sl;
        }
        i = j + 1;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = 0;
    free(seg);
    return out;
}

/* A path prefix (--mount, --profile-path, --route) is compared with the decoded,
 * dot-resolved path: one holding an escape, a query or fragment mark,
 * whitespace or a dot segment would never match it. */
bool tf_path_prefix_can_match(const char *value, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c <= ' ' || c == 0x7f || c == '%' || c == '?' || c == '#')
            return false;
        if (c == '.' && value[i - 1] == '/') { /* i > 0: value starts with '/' */
            size_t dots = i + 1 < n && value[i + 1] == '.' ? 2 : 1;
            if (i + dots == n || value[i + dots] == '/')
                return false;
        }
    }
    return true;
}

/* The path byte at *p, an escape decoded; *p moves past it. -1 at the
 * path's end (the target's, or its query). */
static int next_path_byte(const char **p)
{
    const char *s = *p;
    int hi, lo;
    if (*s == '\0' || *s == '?')
        return -1;
    if (*s == '%' && (hi = tf_hex_value(s[1])) >= 0 && (lo = tf_hex_value(s[2])) >= 0) {
        *p = s + 3;
        return hi * 16 + lo;
    }
    *p = s + 1;
    return (unsigned char)*s;
}

bool tf_path_under_prefix(const char *target, const char *prefix, size_t plen, const char **rest)
{
    const char *p = target;
    for (size_t i = 0; i < plen; i++)
        if (next_path_byte(&p) != (unsigned char)prefix[i])
            return false;
    const char *after = p;
    int next = next_path_byte(&p);
    if (next != -1 && next != '/')
        return false;
    if (rest)
        *rest = after;
    return true;
}
