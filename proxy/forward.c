/* forward.c — headers across the proxy (see forward.h). Whatever is only
 * about one connection stays on that connection; what a client sent is never
 * trusted for X-Forwarded-Proto/-Host; a response head that two parsers
 * could read differently is refused, never passed on. */
#include "proxy/forward.h"

#include <curl/curl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/http_check.h"
#include "proxy/route.h"

char *tf_forward_target(const struct tf_request *req, const struct tf_config *cfg)
{
    const char *target = req->target; /* origin-form: the server converts absolute-form */
    if (!cfg->upstream_path || !cfg->upstream_path[0])
        return strdup(target);
    const char *rest = req->route ? tf_route_rest(req->route, target) : target;
    bool slash = rest[0] == '%' && rest[1] == '2' && (rest[2] | 0x20) == 'f';
    if (slash) /* the prefix's boundary, encoded: a '/' under the upstream's path, as nginx */
        rest += 3;
    size_t n = strlen(cfg->upstream_path) + strlen(rest) + 2;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s%s%s", cfg->upstream_path, slash ? "/" : "", rest);
    return out;
}

/* Whether any of the client's Connection lines names the header. */
static bool client_connection_lists(const struct tf_request *req, const char *name, size_t len)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (!strcasecmp(req->headers[i].name, "Connection") &&
            tf_connection_lists(req->headers[i].value, name, len))
            return true;
    return false;
}

/* Headers we set ourselves, or that describe this hop only. */
static bool skip_request_header(const struct tf_request *req, const struct tf_header *h)
{
    static const char *const ours[] = { "host", "content-length", "expect", "proxy",
                                        "x-forwarded-for", "x-forwarded-proto",
                                        "x-forwarded-host", "forwarded", "via" };
    for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
        if (!strcasecmp(h->name, ours[i]))
            return true;
    return tf_is_hop_by_hop(h->name, h->name_len) ||
           client_connection_lists(req, h->name, h->name_len);
}


/* "Name: v1, v2, ..., extra" for a header the proxy appends to. */
static char *joined(const struct tf_request *req, const char *name, const char *extra)
{
    size_t n = strlen(name) + strlen(extra) + 4;
    for (size_t i = 0; i < req->n_headers; i++)
        if (!strcasecmp(req->headers[i].name, name))
            n += req->headers[i].value_len + 2;
    char *out = malloc(n), *p = out;
    if (!out)
        return NULL;
    p += sprintf(p, "%s: ", name);
    for (size_t i = 0; i < req->n_headers; i++)
        if (!strcasecmp(req->headers[i].name, name) && req->headers[i].value_len)
            p += sprintf(p, "%s, ", req->headers[i].value);
    strcpy(p, extra);
    return out;
}

static bool append(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = line ? curl_slist_append(*list, line) : NULL;
    if (l)
        *list = l;
    return l != NULL;
}

static bool append_owned(struct curl_slist **list, char *line)
{
    bool ok = append(list, line);
    free(line);
    return ok;
}

/* "Name: value" of any length, malloc'd (NULL on out of memory). */
static char *header_line(const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (line)
        snprintf(line, n, "%s: %s", name, value);
    return line;
}

static bool append_client_headers(struct curl_slist **list, const struct tf_request *req)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct tf_header *h = &req->headers[i];
        if (skip_request_header(req, h))
            continue;
        size_t n = h->name_len + h->value_len + 3;
        char *line = malloc(n);
        if (!line)
            return false;
        /* "Name;" is curl's way to send a header with an empty value */
        if (h->value_len)
            snprintf(line, n, "%s: %s", h->name, h->value);
        else
            snprintf(line, n, "%s;", h->name);
        if (!append_owned(list, line))
            return false;
    }
    return true;
}

struct curl_slist *tf_forward_request_headers(const struct tf_request *req,
                                              const struct tf_config *cfg)
{
    struct curl_slist *list = NULL;
    const char *client_host = tf_request_header(req, "Host");
    const char *host = cfg->upstream_host ? cfg->upstream_host : client_host;
    bool v6 = strchr(req->remote_addr, ':') != NULL;
    bool quote_host = host && !tf_is_token(host, strlen(host)); /* "h:81" is not a token */
    size_t flen = strlen(req->remote_addr) + (host ? strlen(host) : 0) + 32;
    char *forwarded = malloc(flen);
    if (!forwarded)
        return NULL;
    snprintf(forwarded, flen, "for=%s%s%s%s%s%s%s;proto=http", v6 ? "\"[" : "",
             req->remote_addr, v6 ? "]\"" : "", host ? ";host=" : "", quote_host ? "\"" : "",
             host ? host : "", quote_host ? "\"" : "");
    bool ok = append_client_headers(&list, req);
    if (ok && host)
        ok = append_owned(&list, header_line("Host", host));
    ok = ok && append_owned(&list, joined(req, "X-Forwarded-For", req->remote_addr));
    ok = ok && append(&list, "X-Forwarded-Proto: http");
    if (ok && client_host)
        ok = append_owned(&list, header_line("X-Forwarded-Host", client_host));
    ok = ok && append_owned(&list, joined(req, "Forwarded", forwarded));
    free(forwarded);
    char via[32]; /* the version received (RFC 9110 7.6.3): libmicrohttpd passes HTTP/1.x only */
    snprintf(via, sizeof(via), "%.8s tracfront", req->version ? req->version + 5 : "1.1");
    ok = ok && append_owned(&list, joined(req, "Via", via));
    /* Nothing curl would invent: no Expect, Accept or form Content-Type. */
    ok = ok && append(&list, "Expect:");
    if (ok && !tf_request_header(req, "Accept"))
        ok = append(&list, "Accept:");
    if (ok && !tf_request_header(req, "Content-Type"))
        ok = append(&list, "Content-Type:");
    if (!ok) {
        curl_slist_free_all(list);
        return NULL;
    }
    return list;
}

/* --- the response head ---------------------------------------------------- */

void tf_response_head_init(struct tf_response_head *h)
{
    memset(h, 0, sizeof(*h));
    tf_framing_init(&h->framing);
    h->framing.response = true;
}

void tf_response_head_free(struct tf_response_head *h)
{
    free(h->lines);
    tf_response_head_init(h);
}

static int refuse(struct tf_response_head *h, const char *why)
{
    h->invalid = why;
    return -1;
}

static int status_line(struct tf_response_head *h, const char *line, size_t len)
{
    /* "HTTP/1.1 200" then the end or " reason" */
    bool digits = len >= 12 && line[6] == '.' && line[8] == ' ';
    for (int i = 9; digits && i < 12; i++)
        digits = line[i] >= '0' && line[i] <= '9';
    if (!digits || line[5] < '0' || line[5] > '9' || line[7] < '0' || line[7] > '9' ||
        (len > 12 && line[12] != ' ') || line[9] == '0')
        return refuse(h, "a malformed status line");
    unsigned status = (unsigned)((line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0'));
    if (status == 101) /* no interim answer: the connection would be the upgraded protocol's */
        return refuse(h, "a 101 Switching Protocols (no upgrade is proxied)");
    h->len = 0;
    h->status = status;
    tf_framing_init(&h->framing);
    h->framing.response = true;
    h->in_interim = status < 200;
    return 0;
}

static int keep_line(struct tf_response_head *h, const char *name, size_t nlen,
                     const char *value, size_t vlen)
{
    if (h->len + nlen + vlen + 3 > TF_RESPONSE_HEAD_MAX)
        return refuse(h, "a response head larger than 16 KiB");
    if (h->len + nlen + vlen + 3 > h->cap) {
        size_t cap = (h->cap ? h->cap * 2 : 1024) + nlen + vlen + 3;
        char *grown = realloc(h->lines, cap);
        if (!grown)
            return refuse(h, "out of memory");
        h->lines = grown;
        h->cap = cap;
    }
    char *p = h->lines + h->len;
    memcpy(p, name, nlen);
    p[nlen] = 0;
    memcpy(p + nlen + 1, value, vlen);
    p[nlen + 1 + vlen] = 0;
    h->len += nlen + vlen + 2;
    return 0;
}

int tf_response_head_feed(struct tf_response_head *h, const char *line, size_t len)
{
    if (h->done) /* trailer fields after a chunked body: never merged into the head */
        return 0;
    if (len < 2 || line[len - 1] != '\n' || line[len - 2] != '\r')
        return refuse(h, "a header line not ended by CRLF");
    len -= 2;
    if (len == 0) { /* end of a head */
        if (h->status == 0)
            return refuse(h, "no status line");
        if (h->in_interim)
            return h->in_interim = false, h->status = 0, 0; /* 100 Continue and friends */
        if (h->framing.content_length >= 0 && h->framing.transfer_encoding)
            return refuse(h, "both Content-Length and Transfer-Encoding");
        h->done = true;
        return 1;
    }
    if (!strncmp(line, "HTTP/", 5))
        return status_line(h, line, len);
    if (h->status == 0)
        return refuse(h, "a header before the status line");
    if (line[0] == ' ' || line[0] == '\t')
        return refuse(h, "an obs-fold header continuation");
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return refuse(h, "a header line without ':'");
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    /* the framing is folded over the whole head: "chunked" twice on two
     * lines is as ambiguous as on one */
    if (tf_check_header(&h->framing, line, nlen, v, vlen) != 0)
        return refuse(h, "a header with a bad name, a control character (CR, LF, NUL) or a "
                         "bad or second, different Content-Length");
    if (h->framing.unsupported_coding || h->framing.bad_coding)
        return refuse(h, "a transfer coding other than chunked, or chunked twice");
    return h->in_interim ? 0 : keep_line(h, line, nlen, v, vlen);
}

/* Records are "name\0value\0". */
static const char *record_value(const struct tf_response_head *h, size_t off)
{
    return h->lines + off + strlen(h->lines + off) + 1;
}

static size_t next_record(const struct tf_response_head *h, size_t off)
{
    const char *value = record_value(h, off);
    return (size_t)(value - h->lines) + strlen(value) + 1;
}

/* Length of the upstream base that value starts with (its origin and path,
 * or the path alone), ending on a boundary; 0 when it does not. */
static size_t upstream_base_len(const char *value, const struct tf_config *cfg)
{
    const char *path = cfg->upstream_path ? cfg->upstream_path : "";
    size_t olen = strlen(cfg->upstream_origin), plen = strlen(path), n = 0;
    if (!strncasecmp(value, cfg->upstream_origin, olen) && !strncmp(value + olen, path, plen))
        n = olen + plen;
    else if (plen && !strncmp(value, path, plen))
        n = plen;
    else
        return 0;
    char next = value[n];
    return next == '\0' || next == '/' || next == '?' ? n : 0;
}

/* url mapped back to the client's prefix when it starts with the upstream's
 * base, else as it is: malloc'd, NULL on out of memory. */
static char *mapped_back(const char *url, const struct tf_request *req,
                         const struct tf_config *cfg)
{
    size_t base = upstream_base_len(url, cfg);
    if (!base)
        return strdup(url);
    /* the route's prefix comes back only where it was replaced going out */
    bool mapped_prefix = cfg->upstream_path && cfg->upstream_path[0];
    const char *prefix = mapped_prefix && req->route ? req->route->prefix : "";
    const char *rest = url + base;
    size_t n = 3 * strlen(prefix) + strlen(rest) + 2;
    char *mapped = malloc(n), *o = mapped;
    if (!mapped)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)prefix; *p; p++) /* no raw UTF-8 */
        o += *p < 0x80 ? sprintf(o, "%c", *p) : sprintf(o, "%%%02X", *p);
    snprintf(o, n - (size_t)(o - mapped), "%s%s", *prefix || *rest == '/' ? "" : "/", rest);
    return mapped;
}

/* Where the URL of a Refresh value ("5; url='/x'") starts and ends, read as
 * browsers do (HTML's declarative refresh): the delay, then ';' or ',', then
 * "url =" (any case, spaces around '=', or left out), then the URL, up to its
 * closing quote if it opens with one. false when there is none. */
static bool refresh_url(const char *v, size_t *start, size_t *end)
{
    size_t i = strspn(v, " \t\n\f\r");
    size_t digits = strspn(v + i, "0123456789.");
    if (!digits || !strchr(" \t\n\f\r;,", v[i + digits]))
        return false; /* no delay: browsers ignore the header */
    i += digits;
    i += strspn(v + i, " \t\n\f\r");
    if (v[i] == ';' || v[i] == ',')
        i++;
    i += strspn(v + i, " \t\n\f\r");
    if (!strncasecmp(v + i, "url", 3)) {
        size_t eq = i + 3 + strspn(v + i + 3, " \t\n\f\r");
        if (v[eq] == '=')
            i = eq + 1 + strspn(v + eq + 1, " \t\n\f\r");
    }
    char quote[2] = { v[i] == '\'' || v[i] == '"' ? v[i] : 0, 0 };
    *start = i + (quote[0] != 0);
    *end = *start + strcspn(v + *start, quote); /* "": to the end */
    return *end > *start;
}

/* Location, or Refresh's URL, mapped back as nginx's proxy_redirect does. */
static void add_redirect(struct MHD_Response *r, const char *name, const char *value,
                         const struct tf_request *req, const struct tf_config *cfg)
{
    size_t start = 0, end = strlen(value);
    if (!strcasecmp(name, "Refresh") && !refresh_url(value, &start, &end)) {
        tf_response_add_header(r, name, value);
        return;
    }
    char *url = strndup(value + start, end - start);
    char *mapped = url ? mapped_back(url, req, cfg) : NULL;
    size_t n = mapped ? start + strlen(mapped) + strlen(value + end) + 1 : 0;
    char *line = mapped ? malloc(n) : NULL;
    if (line) { /* out of memory: the header is left out */
        snprintf(line, n, "%.*s%s%s", (int)start, value, mapped, value + end);
        tf_response_add_header(r, name, line);
    }
    free(line);
    free(mapped);
    free(url);
}

/* Whether any of the upstream's Connection lines names the header. */
static bool upstream_connection_lists(const struct tf_response_head *h, const char *name,
                                      size_t len)
{
    for (size_t off = 0; off < h->len; off = next_record(h, off))
        if (!strcasecmp(h->lines + off, "Connection") &&
            tf_connection_lists(record_value(h, off), name, len))
            return true;
    return false;
}

void tf_response_head_apply(const struct tf_response_head *h, struct MHD_Response *r,
                            const struct tf_request *req, const struct tf_config *cfg)
{
    for (size_t off = 0; off < h->len; off = next_record(h, off)) {
        const char *name = h->lines + off, *value = record_value(h, off);
        size_t nlen = strlen(name);
        if (tf_is_hop_by_hop(name, nlen) || !strcasecmp(name, "Content-Length") ||
            upstream_connection_lists(h, name, nlen))
            continue;
        if (!strcasecmp(name, "Location") || !strcasecmp(name, "Refresh"))
            add_redirect(r, name, value, req, cfg);
        else
            tf_response_add_header(r, name, value);
    }
    MHD_add_response_header(r, "Via", "1.1 tracfront");
}
