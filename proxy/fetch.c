/* fetch.c — see fetch.h. A fresh curl handle per call: these requests are
 * rare (profile pages, reload checks), so no pool is worth its locking. */
#include "proxy/fetch.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    struct tf_fetched *f = userp;
    char *grown = realloc(f->body, f->len + size * n + 1);
    if (!grown)
        return 0;
    memcpy(grown + f->len, data, size * n);
    f->body = grown;
    f->len += size * n;
    f->body[f->len] = 0;
    return size * n;
}

/* Keep the headers a relayed answer needs (the value without its CRLF). */
static size_t on_header(char *line, size_t size, size_t n, void *userp)
{
    struct tf_fetched *f = userp;
    size_t len = size * n;
    static const struct { const char *name; size_t off; } kept[] = {
        { "Content-Type:", offsetof(struct tf_fetched, content_type) },
        { "Location:", offsetof(struct tf_fetched, location) },
        { "Content-Disposition:", offsetof(struct tf_fetched, content_disposition) },
        { "Allow:", offsetof(struct tf_fetched, allow) },
    };
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        size_t k = strlen(kept[i].name);
        if (len <= k || strncasecmp(line, kept[i].name, k) != 0)
            continue;
        const char *v = line + k;
        size_t vlen = len - k;
        while (vlen && (*v == ' ' || *v == '\t'))
            v++, vlen--;
        while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
            vlen--;
        char **field = (char **)((char *)f + kept[i].off);
        free(*field);
        *field = strndup(v, vlen);
    }
    return len;
}

int tf_fetch(const char *origin, const char *method, const char *path, struct tf_fetched *f)
{
    memset(f, 0, sizeof(*f));
    long status = 0;
    size_t cap = strlen(origin) + strlen(path) + 1;
    char *url = malloc(cap);
    if (!url)
        return -1;
    snprintf(url, cap, "%s%s", origin, path);
    CURL *e = curl_easy_init();
    CURLcode rc = e ? CURLE_OK : CURLE_OUT_OF_MEMORY;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_CUSTOMREQUEST, method);
    SET(CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, f);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, f);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, ""); /* loopback only, whatever http_proxy says */
    SET(CURLOPT_TIMEOUT_MS, 10000L);
#undef SET
    if (rc == CURLE_OK && curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (e)
        curl_easy_cleanup(e);
    free(url);
    f->status = (unsigned)status;
    return status ? 0 : -1;
}

void tf_fetched_free(struct tf_fetched *f)
{
    free(f->body);
    free(f->content_type);
    free(f->location);
    free(f->content_disposition);
    free(f->allow);
    memset(f, 0, sizeof(*f));
}
