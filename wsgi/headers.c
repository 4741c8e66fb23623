/* headers.c — status and header rules for app responses (see headers.h). */
#include "wsgi/headers.h"

#include <string.h>
#include <strings.h>

#include "proxy/http_check.h"

unsigned wsgi_status_parse(const char *s, size_t len)
{
    if (len < 4 || s[3] != ' ')
        return 0;
    unsigned code = 0;
    for (int i = 0; i < 3; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        code = code * 10 + (unsigned)(s[i] - '0');
    }
    if (code < 100)
        return 0;
    for (size_t i = 4; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return code;
}

bool wsgi_header_name_valid(const char *name, size_t len)
{
    return tf_is_token(name, len);
}

bool wsgi_header_value_valid(const char *v, size_t len)
{
    return tf_is_field_value(v, len);
}

bool wsgi_header_is_hop_by_hop(const char *name, size_t len)
{
    return tf_is_hop_by_hop(name, len);
}
