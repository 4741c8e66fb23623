/* headers.h — what start_response checks about an app's status and headers
 * (PEP 3333, RFC 9110), as pure functions over bytes so each rule is
 * unit-tested without Python. */
#ifndef WSGI_HEADERS_H
#define WSGI_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

/* "200 OK": three digits (100-999), a space, then a reason of visible
 * characters, spaces and tabs (may be empty). Returns the code, or 0. */
unsigned wsgi_status_parse(const char *status, size_t len);

/* Header name is an RFC 9110 token. */
bool wsgi_header_name_valid(const char *name, size_t len);
/* Header value has no CR, LF, NUL or other control but tab. */
bool wsgi_header_value_valid(const char *value, size_t len);

/* Headers the server owns: hop-by-hop (Connection, Keep-Alive, Transfer-Encoding,
 * TE, Trailer, Upgrade, Proxy-Authenticate, Proxy-Authorization) — an app must
 * not send them (PEP 3333); they are dropped from its response. */
bool wsgi_header_is_hop_by_hop(const char *name, size_t len);

#endif
