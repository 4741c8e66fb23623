/* cidr.h — address ranges ("192.168.0.0/16", "::1/128", "10.1.2.3") for
 * access rules such as --profile-allow. Pure functions, no allocation. */
#ifndef TF_CIDR_H
#define TF_CIDR_H

#include <stdbool.h>

struct tf_cidr {
    int family;                 /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix;            /* bits */
};

/* Parse; a bare address is a /32 or /128. Returns 0 or -1. */
int tf_cidr_parse(const char *text, struct tf_cidr *out);
/* Does the textual address (as inet_ntop wrote it) fall in the range? An
 * IPv4-mapped IPv6 address matches IPv4 ranges. */
bool tf_cidr_match(const struct tf_cidr *range, const char *address);

#endif
