/* environ.h — the WSGI environ of one request (PEP 3333): CGI names, HTTP_*
 * headers, the percent-decoded PATH_INFO as latin-1, the raw QUERY_STRING.
 * The pure name and path helpers need no Python and are unit-tested alone.
 * Nothing the client sends can set a server-owned key such as REMOTE_USER,
 * CONTENT_LENGTH or CONTENT_TYPE. */
#ifndef WSGI_ENVIRON_H
#define WSGI_ENVIRON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stddef.h>

struct tf_request;

enum wsgi_header_kind {
    WSGI_HEADER_HTTP,           /* becomes HTTP_<NAME> */
    WSGI_HEADER_CONTENT_TYPE,   /* the real Content-Type → CONTENT_TYPE */
    WSGI_HEADER_CONTENT_LENGTH, /* framing: CONTENT_LENGTH comes from the body */
    WSGI_HEADER_DROP,           /* names with '_' (could pose as another header), or too long */
};

/* Map a header name; for WSGI_HEADER_HTTP writes "HTTP_USER_AGENT" (NUL
 * terminated) into out, which holds cap bytes. */
enum wsgi_header_kind wsgi_cgi_name(const char *name, size_t len, char *out, size_t cap);

/* Split an origin-form request target into the path and the raw query
 * (after the first '?', or NULL). */
void wsgi_target_split(const char *target, const char **path, size_t *path_len,
                       const char **query);

/* Build the environ dict. input is wsgi.input (borrowed). Returns a new ref,
 * or NULL with an exception set. *outside_mount is set when the path is not
 * under --mount. */
PyObject *wsgi_environ_build(struct tf_request *req, PyObject *input, bool *outside_mount);
/* Build the base environ shared by all requests. New ref or NULL. */
PyObject *wsgi_environ_base(void);

#endif
