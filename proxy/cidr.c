/* cidr.c — address ranges (see cidr.h). */
#include "proxy/cidr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int parse_addr(const char *text, int *family, unsigned char *addr)
{
    if (inet_pton(AF_INET, text, addr) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, addr) == 1) {
        *family = AF_INET6;
        return 0;
    }
    return -1;
}

int tf_cidr_parse(const char *text, struct tf_cidr *out)
{
    char buf[64];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, text, n);
    buf[n] = 0;
    memset(out, 0, sizeof(*out));
    if (parse_addr(buf, &out->family, out->addr) < 0)
        return -1;
    unsigned max = out->family == AF_INET ? 32 : 128;
    out->prefix = max;
    if (slash) {
        char *end;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (!slash[1] || *end || p > max)
            return -1;
        out->prefix = (unsigned)p;
    }
    return 0;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool tf_cidr_match(const struct tf_cidr *range, const char *address)
{
    int family;
    unsigned char addr[16];
    if (parse_addr(address, &family, addr) < 0)
        return false;
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (family == AF_INET6 && range->family == AF_INET && !memcmp(addr, mapped, 12)) {
        memmove(addr, addr + 12, 4);
        family = AF_INET;
    }
    return family == range->family && prefix_equal(addr, range->addr, range->prefix);
}
