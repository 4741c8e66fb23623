/* environ.c — building the WSGI environ (see environ.h). The constant part is
 * built once (wsgi_environ_base) and copied per request; keys are interned
 * once. Runs on app threads with the GIL held. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "wsgi/environ.h"
#include "proxy/http_check.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/request.h"
#include "wsgi/filewrapper.h"
#include "wsgi/interp.h"

enum wsgi_header_kind wsgi_cgi_name(const char *name, size_t len, char *out, size_t cap)
{
    if (len == 12 && !strncasecmp(name, "Content-Type", 12))
        return WSGI_HEADER_CONTENT_TYPE;
    if (len == 14 && !strncasecmp(name, "Content-Length", 14))
        return WSGI_HEADER_CONTENT_LENGTH;
    if (len == 0 || len + 6 > cap || memchr(name, '_', len))
        return WSGI_HEADER_DROP;
    memcpy(out, "HTTP_", 5);
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        out[5 + i] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    out[5 + len] = 0;
    return WSGI_HEADER_HTTP;
}

void wsgi_target_split(const char *target, const char **path, size_t *path_len,
                       const char **query)
{
    const char *p = target; /* origin-form: the server rewrote absolute URLs */
    const char *q = strchr(p, '?');
    *path = p;
    *path_len = q ? (size_t)(q - p) : strlen(p);
    *query = q ? q + 1 : NULL;
}

/* Interned keys, created once under the GIL by wsgi_environ_base(). */
static PyObject *k_method, *k_script, *k_path, *k_query, *k_uri, *k_protocol, *k_raddr,
    *k_rport, *k_ctype, *k_clen, *k_input, *empty_str;

/* Values and header keys most requests carry, made once (by
 * wsgi_environ_base) and shared by every environ: no string to build or hash
 * per request. */
static const char *const common_values[] = { "GET", "POST", "HEAD", "HTTP/1.1", "HTTP/1.0" };
#define METHODS 0, 3  /* common_value's range of them for REQUEST_METHOD */
#define VERSIONS 3, 2 /* and for SERVER_PROTOCOL */
static PyObject *common_value_objs[sizeof(common_values) / sizeof(*common_values)];
#define NAME(s) { s, sizeof(s) - 1, false }
#define SECRET(s) { s, sizeof(s) - 1, true }
static const struct {
    const char *name;
    size_t len;
    bool secret; /* its value is not kept for the next request (shared_str): a
                    credential, or what may carry a token or say who asked */
} common_headers[] = {
    NAME("Host"), NAME("User-Agent"), NAME("Accept"), NAME("Accept-Encoding"),
    NAME("Accept-Language"), NAME("Connection"), SECRET("Cookie"), SECRET("Referer"),
    NAME("Cache-Control"), NAME("Pragma"), SECRET("Origin"), SECRET("Authorization"),
    NAME("If-Modified-Since"), SECRET("If-None-Match"), NAME("X-Requested-With"),
    SECRET("X-Forwarded-For"), NAME("Upgrade-Insecure-Requests"),
};
#undef NAME
#undef SECRET
static PyObject *common_header_keys[sizeof(common_headers) / sizeof(*common_headers)];
/* The value each common header (but a secret one) had in the last request
 * that sent it, and REMOTE_ADDR's: a client sends the same Host, User-Agent,
 * Accept... each time. Owned; under the GIL. */
static PyObject *common_header_last[sizeof(common_headers) / sizeof(*common_headers)];
static PyObject *last_remote_addr;
/* REMOTE_PORT strings of recent client ports, by port: a connection's
 * requests share one. Owned; under the GIL. */
#define PORT_SLOTS 64
static struct port_str {
    unsigned port;
    PyObject *str;
} port_strs[PORT_SLOTS];
static PyObject *k_cookie; /* HTTP_COOKIE, one of those: its repeats join with "; " */
#define N_OF(a) (sizeof(a) / sizeof(*(a)))

static int set_str(PyObject *d, PyObject *key, const char *s, Py_ssize_t n)
{
    PyObject *v = PyUnicode_DecodeLatin1(s, n, NULL); /* new ref */
    if (!v)
        return -1;
    int rc = PyDict_SetItem(d, key, v);
    Py_DECREF(v);
    return rc;
}

/* "123" for n, without printf; returns the length. */
static int format_uint(unsigned long long n, char out[24])
{
    char tmp[24];
    int len = 0;
    do
        tmp[len++] = (char)('0' + n % 10);
    while ((n /= 10));
    for (int i = 0; i < len; i++)
        out[i] = tmp[len - 1 - i];
    out[len] = 0;
    return len;
}

/* A str of the n latin-1 bytes at value: *last (new ref) when it holds
 * them (strings are immutable: every environ may share one), else a new one
 * that *last keeps from now on. NULL with an exception. */
static PyObject *shared_str(PyObject **last, const char *value, size_t n)
{
    PyObject *v = *last; /* made by PyUnicode_DecodeLatin1: one byte a character */
    if (v && (size_t)PyUnicode_GET_LENGTH(v) == n && !memcmp(PyUnicode_1BYTE_DATA(v), value, n)) {
        Py_INCREF(v);
        return v;
    }
    if (!(v = PyUnicode_DecodeLatin1(value, (Py_ssize_t)n, NULL))) /* new ref */
        return NULL;
    Py_INCREF(v);
    Py_XSETREF(*last, v);
    return v;
}

static int set_port(PyObject *d, unsigned port)
{
    struct port_str *slot = &port_strs[port % PORT_SLOTS];
    if (!slot->str || slot->port != port) {
        char num[24];
        PyObject *v = PyUnicode_DecodeLatin1(num, format_uint(port, num), NULL); /* new ref */
        if (!v)
            return -1;
        Py_XSETREF(slot->str, v);
        slot->port = port;
    }
    return PyDict_SetItem(d, k_rport, slot->str);
}

static int set_cstr(PyObject *d, const char *key, const char *value)
{
    PyObject *v = PyUnicode_DecodeLatin1(value, (Py_ssize_t)strlen(value), NULL);
    if (!v)
        return -1;
    int rc = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return rc;
}

/* The index of a common header in common_headers, or -1. Every common
 * name maps to HTTP_<NAME> (no '_', short, neither Content-Type nor
 * Content-Length), so a match needs no wsgi_cgi_name. */
static int common_header(const struct tf_header *h)
{
    for (size_t i = 0; i < N_OF(common_headers); i++)
        if (common_headers[i].len == h->name_len &&
            !strncasecmp(h->name, common_headers[i].name, h->name_len))
            return (int)i;
    return -1;
}

/* Add one HTTP_* header under key (borrowed), joining a repeated one with
 * ", " ("; " for Cookie); its value shared through *last (shared_str) unless
 * last is NULL. One dict lookup for a header seen first: the environ grows
 * iff the key was not there (the base has no HTTP_* key and --env can set
 * none: only an earlier header of the same name is joined). */
static int add_header(PyObject *env, PyObject *key, const struct tf_header *h, PyObject **last)
{
    PyObject *v = last ? shared_str(last, h->value, h->value_len)
                       : PyUnicode_DecodeLatin1(h->value, (Py_ssize_t)h->value_len, NULL);
    if (!v) /* (new ref) */
        return -1;
    Py_ssize_t size = PyDict_GET_SIZE(env);
    PyObject *old = PyDict_SetDefault(env, key, v); /* borrowed */
    int rc = old ? 0 : -1;
    if (old && PyDict_GET_SIZE(env) == size) { /* there already: v was not stored */
        const char *sep = key == k_cookie ? "; " : ", ";
        PyObject *joined = PyUnicode_FromFormat("%U%s%U", old, sep, v); /* new ref */
        rc = joined ? PyDict_SetItem(env, key, joined) : -1;
        Py_XDECREF(joined);
    }
    Py_DECREF(v);
    return rc;
}

static int add_headers(PyObject *env, const struct tf_request *req)
{
    char cgi[512];
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct tf_header *h = &req->headers[i];
        int common = common_header(h);
        if (common >= 0) {
            if (add_header(env, common_header_keys[common], h,
                           common_headers[common].secret ? NULL : &common_header_last[common]) < 0)
                return -1;
            continue;
        }
        switch (wsgi_cgi_name(h->name, h->name_len, cgi, sizeof(cgi))) {
        case WSGI_HEADER_HTTP: {
            PyObject *key = PyUnicode_FromString(cgi); /* new ref */
            int rc = key ? add_header(env, key, h, NULL) : -1;
            Py_XDECREF(key);
            if (rc < 0)
                return -1;
            break;
        }
        case WSGI_HEADER_CONTENT_TYPE:
            if (set_str(env, k_ctype, h->value, (Py_ssize_t)h->value_len) < 0)
                return -1;
            break;
        case WSGI_HEADER_CONTENT_LENGTH:
        case WSGI_HEADER_DROP:
            break;
        }
    }
    return 0;
}

/* REMOTE_USER and AUTH_TYPE, only for a user tracfront verified (proxy/auth.c,
 * or a worker's front): never from anything the client sent. The name is
 * decoded as UTF-8 as tracd does (Trac takes it as it is), else as Latin-1. */
static int add_user(PyObject *env, const struct tf_request *req)
{
    if (!req->remote_user)
        return 0;
    Py_ssize_t n = (Py_ssize_t)strlen(req->remote_user);
    PyObject *user = PyUnicode_DecodeUTF8(req->remote_user, n, NULL); /* new ref */
    if (!user && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        user = PyUnicode_DecodeLatin1(req->remote_user, n, NULL);
    }
    if (!user)
        return -1;
    int rc = PyDict_SetItemString(env, "REMOTE_USER", user);
    Py_DECREF(user);
    if (rc < 0)
        return -1;
    return set_cstr(env, "AUTH_TYPE", req->auth_type ? req->auth_type : "Basic");
}

/* PATH_INFO and SCRIPT_NAME from the decoded path and --mount. */
static int add_path(PyObject *env, const struct tf_request *req, bool *outside_mount)
{
    const char *path, *query;
    size_t plen;
    wsgi_target_split(req->target, &path, &plen, &query);
    char stackbuf[2048];
    char *decoded = plen <= sizeof(stackbuf) ? stackbuf : malloc(plen);
    if (!decoded) {
        PyErr_NoMemory();
        return -1;
    }
    size_t dlen = tf_percent_decode(path, plen, decoded);
    const char *mount = wsgi_ctx.cfg->mount;
    size_t mlen = strlen(mount);
    const char *info = decoded;
    size_t ilen = dlen;
    *outside_mount = false;
    if (mlen) {
        if (dlen >= mlen && !memcmp(decoded, mount, mlen) &&
            (dlen == mlen || decoded[mlen] == '/')) {
            info += mlen;
            ilen -= mlen;
        } else {
            *outside_mount = true;
        }
    }
    int rc = set_str(env, k_path, info, (Py_ssize_t)ilen);
    if (decoded != stackbuf)
        free(decoded);
    if (rc < 0)
        return -1;
    if (query)
        return set_str(env, k_query, query, (Py_ssize_t)strlen(query));
    return 0;
}

/* REQUEST_METHOD, SERVER_PROTOCOL and REMOTE_ADDR, kept in the base environ
 * while they repeat (a client sends GET HTTP/1.1 from one address request
 * after request): a request whose values are the base's sets none of them.
 * steady[] holds the base's values (borrowed: the base owns them) and
 * steady_tag the base's ma_version_tag right after environ.c set them; any
 * change to the base since (another thread's update, SERVER_PORT at start,
 * anything that reached the base) gives it another tag, and then each
 * request sets all three in its own copy. The tag is read again after
 * PyDict_Copy: a garbage collection there may run Python code and
 * let go of the GIL, and another thread may change the base meanwhile; the
 * copy is taken as holding steady[] only when the base kept its tag from
 * before the copy to after it. Under the GIL. CPython 3.12 deprecates the tag
 * (dict watchers replace it): there every request sets the three. */
#define STEADY 3
static PyObject *const *const steady_keys[STEADY] = { &k_method, &k_protocol, &k_raddr };
static PyObject *steady[STEADY];
#if PY_VERSION_HEX < 0x030C0000
static uint64_t steady_tag; /* 0: not known yet (a dict's tag is never 0 once set) */

static uint64_t base_tag(PyObject *base)
{
    return ((PyDictObject *)base)->ma_version_tag;
}
#endif

/* The base's tag as it is (0 when the base is not known to hold steady[]). */
static uint64_t steady_now(PyObject *base)
{
#if PY_VERSION_HEX < 0x030C0000
    return base_tag(base) == steady_tag ? steady_tag : 0;
#else
    (void)base;
    return 0;
#endif
}

/* Set the three values want[] (borrowed) in env, but those the copy holds
 * already: those of steady[] when tag (read before the copy) still holds. */
static int set_steady(PyObject *env, PyObject *base, uint64_t tag, PyObject *const want[STEADY])
{
    bool same = tag && steady_now(base) == tag;
    for (int i = 0; i < STEADY; i++)
        if ((!same || want[i] != steady[i]) && PyDict_SetItem(env, *steady_keys[i], want[i]) < 0)
            return -1;
    return 0;
}

/* Keep want[] (borrowed; shared[i]: a str every request with that value
 * gets, worth keeping) in the base for the next requests. A base changed by
 * anything else gets all three again. No Python code may run between a
 * change to the base and the tag that vouches for it: the tag is cleared
 * before the first change (a request that copies the base meanwhile sets
 * all three), and the values replaced are let go only once the new tag is
 * recorded (one an app put in the base may have a __del__ that lets go of
 * the GIL; another thread's request would then change the base under a
 * steady[] this one is still writing). The base is out of the collector's
 * sight (wsgi_environ_base), so an app finds no way to it; were it reached
 * anyway, the tag holds against any value put in it, not against a key
 * whose __eq__ lets go of the GIL (our lookups would run it between two of
 * the changes). */
static void keep_steady(PyObject *base, PyObject *const want[STEADY], const bool shared[STEADY])
{
#if PY_VERSION_HEX < 0x030C0000
    PyObject *old[STEADY] = { NULL, NULL, NULL }; /* new refs: the values replaced */
    bool known = steady_now(base) != 0;
    bool changed = false;
    for (int i = 0; i < STEADY; i++) {
        if (known && (want[i] == steady[i] || !shared[i]))
            continue;
        steady_tag = 0; /* the base may be half changed from here on */
        changed = true;
        old[i] = Py_XNewRef(PyDict_GetItemWithError(base, *steady_keys[i]));
        if ((!old[i] && PyErr_Occurred()) ||
            PyDict_SetItem(base, *steady_keys[i], want[i]) < 0) { /* (no room to grow) */
            PyErr_Clear();
            goto out; /* steady_tag stays 0 */
        }
        steady[i] = want[i];
    }
    if (changed || !known)
        steady_tag = base_tag(base);
out:
    for (int i = 0; i < STEADY; i++) /* may run Python code: the tag is recorded */
        Py_XDECREF(old[i]);
#else
    (void)base, (void)want, (void)shared;
#endif
}

/* The value of REQUEST_METHOD or SERVER_PROTOCOL (new ref): one of the
 * common ones (*shared) of common_values[first] on, n of them, or a new str. */
static PyObject *common_value(const char *s, size_t first, size_t n, bool *shared)
{
    for (size_t i = first; i < first + n; i++)
        if (!strcmp(s, common_values[i])) {
            *shared = true;
            return Py_NewRef(common_value_objs[i]);
        }
    *shared = false;
    return PyUnicode_DecodeLatin1(s, (Py_ssize_t)strlen(s), NULL);
}

PyObject *wsgi_environ_build(struct tf_request *req, PyObject *input, bool *outside_mount)
{
    PyObject *base = wsgi_ctx.base_environ;
    PyObject *env = NULL, *want[STEADY] = { NULL, NULL, NULL }; /* new refs */
    bool shared[STEADY] = { false, false, true };
    char num[24];
    if (!(want[0] = common_value(req->method, METHODS, &shared[0])) ||
        !(want[1] = common_value(req->version, VERSIONS, &shared[1])) ||
        !(want[2] = shared_str(&last_remote_addr, req->remote_addr, strlen(req->remote_addr))))
        goto error;
    uint64_t tag = steady_now(base);
    if (!(env = PyDict_Copy(base))) /* new ref; may run Python code (a collection) */
        goto error;
    if (set_steady(env, base, tag, want) < 0 ||
        set_str(env, k_uri, req->target, (Py_ssize_t)strlen(req->target)) < 0 ||
        set_port(env, req->remote_port) < 0 ||
        add_path(env, req, outside_mount) < 0 || /* QUERY_STRING: the base's "" if none */
        add_headers(env, req) < 0 || add_user(env, req) < 0 ||
        PyDict_SetItem(env, k_input, input) < 0)
        goto error;
    if (req->has_body && set_str(env, k_clen, num, format_uint(req->body.size, num)) < 0)
        goto error;
    keep_steady(base, want, shared);
    for (int i = 0; i < STEADY; i++)
        Py_DECREF(want[i]);
    return env;
error:
    for (int i = 0; i < STEADY; i++)
        Py_XDECREF(want[i]);
    Py_XDECREF(env);
    return NULL;
}

static PyObject *intern(const char *s)
{
    return PyUnicode_InternFromString(s); /* new ref, kept for the process */
}

/* Give the base environ's key table room for a request's own entries, so a
 * request's environ never grows (a resize was a sixth of building a hello
 * request's environ). PyDict_Copy clones the table at its size when at most
 * a third of it is removed keys. So the base holds every key each request
 * sets (placeholders, replaced per request: replacing costs less than
 * adding; QUERY_STRING's "" stands for a request without a query, and
 * --env cannot set it), and CPython 3.11, which grows a 32-entry table at its 22nd key to
 * 64 entries, gets placeholder keys up to 22, taken out again. On another
 * Python only the speed differs. */
static int make_room(PyObject *env)
{
    PyObject *const every_request[] = { k_method, k_uri, k_protocol, k_raddr, k_rport,
                                        k_query, k_path, k_input };
    for (size_t i = 0; i < N_OF(every_request); i++)
        if (PyDict_SetItem(env, every_request[i], empty_str) < 0)
            return -1;
    PyObject *added = PyList_New(0); /* new ref: the placeholder keys, never an --env one */
    int rc = added ? 0 : -1;
    for (Py_ssize_t i = 0; rc == 0 && PyDict_GET_SIZE(env) < 22; i++) {
        PyObject *key = PyUnicode_FromFormat("tracfront.room%zd", i); /* new ref */
        int taken = key ? PyDict_Contains(env, key) : -1;
        if (taken < 0 || (!taken && (PyDict_SetItem(env, key, Py_None) < 0 ||
                                     PyList_Append(added, key) < 0)))
            rc = -1;
        Py_XDECREF(key);
    }
    for (Py_ssize_t i = 0; added && i < PyList_GET_SIZE(added); i++)
        if (PyDict_DelItem(env, PyList_GET_ITEM(added, i)) < 0)
            rc = -1;
    Py_XDECREF(added);
    return rc;
}

PyObject *wsgi_environ_base(void)
{
    const struct tf_config *cfg = wsgi_ctx.cfg;
    if (!(k_method = intern("REQUEST_METHOD")) || !(k_script = intern("SCRIPT_NAME")) ||
        !(k_path = intern("PATH_INFO")) || !(k_query = intern("QUERY_STRING")) ||
        !(k_uri = intern("REQUEST_URI")) || !(k_protocol = intern("SERVER_PROTOCOL")) ||
        !(k_raddr = intern("REMOTE_ADDR")) || !(k_rport = intern("REMOTE_PORT")) ||
        !(k_ctype = intern("CONTENT_TYPE")) || !(k_clen = intern("CONTENT_LENGTH")) ||
        !(k_input = intern("wsgi.input")) || !(empty_str = intern("")))
        return NULL;
    for (size_t i = 0; i < N_OF(common_values); i++)
        if (!(common_value_objs[i] = intern(common_values[i])))
            return NULL;
    for (size_t i = 0; i < N_OF(common_headers); i++) {
        char cgi[64];
        wsgi_cgi_name(common_headers[i].name, common_headers[i].len, cgi, sizeof(cgi));
        if (!(common_header_keys[i] = intern(cgi)))
            return NULL;
        if (!strcmp(cgi, "HTTP_COOKIE"))
            k_cookie = common_header_keys[i];
    }
    /* No collection while it is built: one would run the app's gc callbacks
     * while the dict is in gc.get_objects() (the tuple below tracks it until
     * the UnTrack at the end) */
    int collecting = PyGC_Disable();
    PyObject *env = PyDict_New(); /* new ref */
    PyObject *version = NULL;
    if (!env) {
        if (collecting)
            PyGC_Enable();
        return NULL;
    }
    if (!(version = Py_BuildValue("(ii)", 1, 0)) ||
        PyDict_SetItemString(env, "wsgi.version", version) < 0 ||
        set_cstr(env, "wsgi.url_scheme", "http") < 0 ||
        PyDict_SetItemString(env, "wsgi.errors", wsgi_ctx.errors) < 0 ||
        PyDict_SetItemString(env, "wsgi.multithread", Py_True) < 0 ||
        PyDict_SetItemString(env, "wsgi.multiprocess", cfg->worker ? Py_True : Py_False) < 0 ||
        PyDict_SetItemString(env, "wsgi.run_once", Py_False) < 0 ||
        PyDict_SetItemString(env, "wsgi.input_terminated", Py_True) < 0 ||
        PyDict_SetItemString(env, "wsgi.file_wrapper", (PyObject *)&wsgi_filewrapper_type) < 0 ||
        set_cstr(env, "SERVER_NAME", cfg->listen_host) < 0 ||
        set_cstr(env, "SERVER_SOFTWARE", "tracfront/" TF_VERSION) < 0 ||
        set_cstr(env, "GATEWAY_INTERFACE", "CGI/1.1") < 0 ||
        /* Trac's /about names its web front-end from these, as tracd and
         * mod_wsgi set them; an --env entry below replaces them */
        set_cstr(env, "trac.web.frontend", "tracfront") < 0 ||
        set_cstr(env, "trac.web.version", TF_VERSION) < 0 ||
        set_str(env, k_script, cfg->mount, (Py_ssize_t)strlen(cfg->mount)) < 0)
        goto error;
    if (cfg->trac_env && set_cstr(env, "trac.env_path", cfg->trac_env) < 0)
        goto error;
    /* trac.web.main takes the TRAC_ENV variable for a trac.env_path the
     * environ lacks, which would serve that one environment for every
     * project: None, as tracd sets it (standalone.py) */
    if (cfg->trac_env_parent_dir &&
        (set_cstr(env, "trac.env_parent_dir", cfg->trac_env_parent_dir) < 0 ||
         PyDict_SetItemString(env, "trac.env_path", Py_None) < 0))
        goto error;
    for (size_t i = 0; i < cfg->n_env; i++) {
        const char *eq = strchr(cfg->env[i], '=');
        PyObject *key = PyUnicode_DecodeLatin1(cfg->env[i], eq - cfg->env[i], NULL);
        if (!key)
            goto error;
        int rc = set_str(env, key, eq + 1, (Py_ssize_t)strlen(eq + 1));
        Py_DECREF(key);
        if (rc < 0)
            goto error;
    }
    Py_CLEAR(version);
    if (make_room(env) < 0)
        goto error;
    /* Out of the collector's sight, so that no app finds it (gc.get_objects(),
     * gc.get_referrers()) to change it under keep_steady. It holds str values
     * and a few long-lived objects that hold nothing back (True, the errors
     * stream, the file_wrapper type, a tuple of two ints): no cycle goes
     * through it, and a str put in it later does not track it again. Its
     * copies start untracked too, and are tracked as soon as a value that
     * may be in a cycle goes in (CPython's rule for dicts). */
    PyObject_GC_UnTrack(env);
    if (collecting)
        PyGC_Enable();
    return env;
error:
    Py_XDECREF(version);
    Py_DECREF(env);
    if (collecting)
        PyGC_Enable();
    return NULL;
}
