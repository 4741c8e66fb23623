/* fetch.c — see fetch.h. Fresh curl handles per call: these requests are
 * rare (profile pages, reload checks, a stop), so no pool is worth its
 * locking. It never logs: the caller says which worker did not answer. */
#include "proxy/fetch.h"
#include "proxy/platform.h"

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
        { "Retry-After:", offsetof(struct tf_fetched, retry_after) },
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

/* A handle for method + path at origin, its answer into f (zeroed first,
 * also on failure); NULL on failure. */
static CURL *make_handle(const char *origin, const char *method, const char *path,
                         long limit_ms, struct tf_fetched *f)
{
    memset(f, 0, sizeof(*f));
    size_t cap = strlen(origin) + strlen(path) + 1;
    char *url = malloc(cap);
    CURL *e = url ? curl_easy_init() : NULL;
    CURLcode rc = e ? CURLE_OK : CURLE_OUT_OF_MEMORY;
    if (url)
        snprintf(url, cap, "%s%s", origin, path);
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, url); /* copied */
    SET(CURLOPT_CUSTOMREQUEST, method);
    SET(CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, f);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, f);
    SET(CURLOPT_PRIVATE, f);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, ""); /* loopback only, whatever http_proxy says */
    SET(CURLOPT_TIMEOUT_MS, limit_ms);
#undef SET
    free(url);
    if (rc != CURLE_OK && e) {
        curl_easy_cleanup(e);
        e = NULL;
    }
    return e;
}

int tf_fetch(const char *origin, const char *method, const char *path, long limit_ms,
             struct tf_fetched *f)
{
    long status = 0;
    CURL *e = make_handle(origin, method, path, limit_ms, f);
    if (e && curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (e)
        curl_easy_cleanup(e);
    f->status = (unsigned)status;
    return status ? 0 : -1;
}

/* The status of each transfer that ended with an answer. */
static size_t take_answers(CURLM *m)
{
    size_t answered = 0;
    int left;
    for (CURLMsg *msg; (msg = curl_multi_info_read(m, &left));) {
        char *f = NULL;
        long status = 0;
        if (msg->msg == CURLMSG_DONE && msg->data.result == CURLE_COULDNT_CONNECT &&
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &f) == CURLE_OK && f)
            ((struct tf_fetched *)(void *)f)->refused = true;
        if (msg->msg != CURLMSG_DONE || msg->data.result != CURLE_OK ||
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &f) != CURLE_OK || !f ||
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
            continue;
        ((struct tf_fetched *)(void *)f)->status = (unsigned)status;
        answered += status != 0;
    }
    return answered;
}

size_t tf_fetch_all(const char *const *origins, size_t n, const char *method, const char *path,
                    long limit_ms, struct tf_fetched *f, int watch_fd,
                    bool (*give_up)(void *arg), void *arg)
{
    CURLM *m = curl_multi_init();
    CURL **e = m ? calloc(n ? n : 1, sizeof(*e)) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (!e) {
            memset(&f[i], 0, sizeof(f[i]));
            continue;
        }
        e[i] = make_handle(origins[i], method, path, limit_ms, &f[i]);
        if (e[i] && curl_multi_add_handle(m, e[i]) != CURLM_OK) {
            curl_easy_cleanup(e[i]);
            e[i] = NULL;
        }
    }
    int running = e != NULL;
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK || !running)
            break;
        struct curl_waitfd watch = { .fd = watch_fd, .events = CURL_WAIT_POLLIN };
        if (curl_multi_poll(m, &watch, watch_fd >= 0 ? 1u : 0u, 1000, NULL) != CURLM_OK)
            break;
        if (watch.revents && give_up && give_up(arg))
            break;
    }
    size_t answered = e ? take_answers(m) : 0;
    for (size_t i = 0; e && i < n; i++) {
        if (e[i]) {
            curl_multi_remove_handle(m, e[i]);
            curl_easy_cleanup(e[i]);
        }
        if (!f[i].status) { /* what came of an answer cut short */
            bool refused = f[i].refused;
            tf_fetched_free(&f[i]);
            f[i].refused = refused;
        }
    }
    free(e);
    if (m)
        curl_multi_cleanup(m);
    return answered;
}

/* tf_fetch_all's give_up on the signal pipe: it is readable, the signal is there. */
static bool take_signal(void *held)
{
    return tf_signals_hold(held, tf_signals_wait(1));
}

int tf_fetch_all_or_signal(const char *const *origins, size_t n, const char *method,
                           const char *path, long limit_ms, struct tf_fetched *f)
{
    struct tf_signals_held held = { 0, 0 };
    tf_fetch_all(origins, n, method, path, limit_ms, f, tf_signals_fd(), take_signal, &held);
    tf_signals_put_back(&held);
    return held.stop;
}

void tf_fetched_free(struct tf_fetched *f)
{
    free(f->body);
    free(f->content_type);
    free(f->location);
    free(f->content_disposition);
    free(f->allow);
    free(f->retry_after);
    memset(f, 0, sizeof(*f));
}
