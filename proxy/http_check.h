/* http_check.h — request checks that libmicrohttpd does not make (RFC 9112):
 * header syntax, message framing (Content-Length, Transfer-Encoding) and the
 * request target. Pure functions over bytes: no I/O, no allocation, so every
 * rule is unit-tested on its own. A non-zero result is the HTTP status to
 * answer with (400, 501); the connection is then closed. */
#ifndef TF_HTTP_CHECK_H
#define TF_HTTP_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tf_framing {
    int64_t content_length;   /* -1 when absent */
    bool chunked;             /* Transfer-Encoding: chunked */
    bool transfer_encoding;   /* any Transfer-Encoding header seen */
    bool unsupported_coding;  /* a coding other than chunked */
    bool bad_coding;          /* chunked not last, or repeated */
    unsigned host_count;
    bool response;            /* a response's head: its Host means nothing, unchecked */
};

void tf_framing_init(struct tf_framing *f);

/* Check one header line's name and value and fold it into the framing
 * state. Returns 0 or the status to answer with. */
int tf_check_header(struct tf_framing *f, const char *name, size_t name_len,
                    const char *value, size_t value_len);

/* After the last header: framing ambiguities (CL with TE, TE on HTTP/1.0,
 * a missing or repeated Host on HTTP/1.1). Returns 0 or a status. */
int tf_check_framing(const struct tf_framing *f, bool http11);

/* Request target: origin-form ("/..."), absolute-form ("http://h/...", with
 * a host and no userinfo), or "*" for OPTIONS. No controls or spaces.
 * Returns 0, 400, or 501 for CONNECT (no tunnel is made). */
int tf_check_target(const char *target, const char *method);

/* The length of an absolute-form target's "http://" or "https://" (any
 * case), else 0. */
size_t tf_absolute_scheme_len(const char *target);

/* The path of an origin-form target (up to '?') with its dot segments
 * removed (RFC 3986 5.2.4), reading %2e as '.' and %2f, '\\' and %5c as '/'
 * as a server behind might (IIS): malloc'd, or NULL when they climb above the
 * root (or out of memory: *above_root tells). Only the route choice uses it;
 * the target itself is passed on as received. */
char *tf_path_resolve(const char *target, bool *above_root);
/* Whether the target's path holds a dot segment ("." or "..", or %2e ones),
 * its segments split as tf_path_resolve splits them. */
bool tf_path_has_dots(const char *target);

bool tf_is_token(const char *s, size_t len);
/* A field value: no control characters but HTAB (so no CR, LF or NUL). */
bool tf_is_field_value(const char *v, size_t len);

/* The value of one hex digit, or -1. */
int tf_hex_value(char c);
/* s is exactly n hex digits. */
bool tf_is_hex(const char *s, size_t n);
/* Percent-decode len bytes of in into out (at least len bytes); malformed
 * escapes are kept as they are. Returns the decoded length. */
size_t tf_percent_decode(const char *in, size_t len, char *out);

/* Compare a secret in time independent of where the strings differ. */
bool tf_secret_equal(const char *a, const char *b);

/* Hop-by-hop header names (RFC 9110 7.6.1 plus the legacy ones): meaningful
 * for one connection only, never forwarded or taken from an app. */
bool tf_is_hop_by_hop(const char *name, size_t len);
/* Does a Connection header value ("close, X-Foo") list this header name? */
bool tf_connection_lists(const char *connection, const char *name, size_t len);

/* Can a path prefix (n bytes, starting with '/') ever match a decoded,
 * dot-resolved request path? Not with an escape, a query or fragment mark,
 * whitespace, a control character or a dot segment. */
bool tf_path_prefix_can_match(const char *value, size_t n);

/* Does target's path, percent-decoded, start with prefix (plen bytes) on a
 * segment boundary ("/a" for "/a", "/%61/x", "/a%2Fx", "/a?q"; not "/ab")?
 * *rest (if rest): where in the raw target the prefix ends. As --mount,
 * --route and --profile-path are matched (nginx matches its locations
 * decoded too). */
bool tf_path_under_prefix(const char *target, const char *prefix, size_t plen, const char **rest);

#endif
