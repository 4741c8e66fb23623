/* Unit tests for proxy/forward.c: the target and headers sent upstream, and
 * the upstream's response head checked and filtered on its way back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/config.h"
#include "proxy/forward.h"
#include "proxy/request.h"

/* A request with the given headers ("Name", "value", ... NULL). */
static struct tf_request *make_request(const char *target, const char *const *kv)
{
    struct tf_request *req = tf_request_new(NULL, target);
    tf_request_set_line(req, "GET", "HTTP/1.1");
    req->http11 = true;
    strcpy(req->remote_addr, "10.0.0.7");
    size_t n = 0;
    while (kv[2 * n])
        n++;
    tf_request_alloc_headers(req, n + 1, 0);
    for (size_t i = 0; i < n; i++) {
        struct tf_header *h = &req->headers[req->n_headers++];
        h->name = kv[2 * i];
        h->value = kv[2 * i + 1];
        h->name_len = strlen(h->name);
        h->value_len = strlen(h->value);
    }
    return req;
}

static struct tf_config config(const char *origin, const char *path)
{
    struct tf_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.upstream_origin = (char *)origin;
    cfg.upstream_path = (char *)path;
    return cfg;
}

/* The header lines as one string, "\n"-separated. */
static char *lines(struct curl_slist *list)
{
    size_t n = 1;
    for (struct curl_slist *l = list; l; l = l->next)
        n += strlen(l->data) + 1;
    char *out = calloc(1, n);
    for (struct curl_slist *l = list; l; l = l->next)
        strcat(strcat(out, l->data), "\n");
    return out;
}

static void test_target_mapping(void **state)
{
    (void)state;
    struct tf_route route = { .prefix = "/old", .prefix_len = 4, .kind = TF_ROUTE_UPSTREAM };
    struct tf_config plain = config("http://u:1", ""), mapped = config("http://u:1", "/legacy");
    struct tf_request *req = make_request("/old/a/../b%2F?x=%20", (const char *[]){ NULL });
    req->route = &route;
    char *t = tf_forward_target(req, &plain);
    assert_string_equal(t, "/old/a/../b%2F?x=%20"); /* never normalised */
    free(t);
    t = tf_forward_target(req, &mapped);
    assert_string_equal(t, "/legacy/a/../b%2F?x=%20");
    free(t);
    tf_request_unref(req);
    req = make_request("/old?q", (const char *[]){ NULL });
    req->route = &route;
    t = tf_forward_target(req, &mapped);
    assert_string_equal(t, "/legacy?q");
    free(t);
    tf_request_unref(req);
}

static void test_request_headers(void **state)
{
    (void)state;
    struct tf_config cfg = config("http://u:1", "");
    struct tf_request *req = make_request("/", (const char *[]){
        "Host", "example.test:81", "Connection", "keep-alive, X-Hop", "X-Hop", "1",
        "Keep-Alive", "300", "Proxy", "http://evil", "X-Forwarded-For", "1.2.3.4",
        "X-Forwarded-Proto", "https", "X-Tracfront-Client", "6.6.6.6 1 1", "Cookie", "a=b",
        "TE", "trailers", "Expect", "100-continue", "X-Empty", "", NULL });
    /* X-Tracfront-* is an ordinary header now: workers share the socket, no hop between */
    struct curl_slist *list = tf_forward_request_headers(req, &cfg);
    char *all = lines(list);
    assert_non_null(strstr(all, "Host: example.test:81\n"));
    assert_non_null(strstr(all, "Cookie: a=b\n"));
    assert_non_null(strstr(all, "X-Forwarded-For: 1.2.3.4, 10.0.0.7\n"));
    assert_non_null(strstr(all, "X-Forwarded-Proto: http\n"));
    assert_non_null(strstr(all, "X-Forwarded-Host: example.test:81\n"));
    assert_non_null(strstr(all, "Forwarded: for=10.0.0.7;host=\"example.test:81\";proto=http\n"));
    assert_non_null(strstr(all, "Via: 1.1 tracfront\n"));
    assert_non_null(strstr(all, "X-Empty;\n"));           /* curl's form of an empty value */
    assert_non_null(strstr(all, "Expect:\n"));            /* curl adds none of its own */
    assert_non_null(strstr(all, "Accept:\n"));
    assert_non_null(strstr(all, "Content-Type:\n"));
    assert_null(strstr(all, "X-Hop"));
    assert_null(strstr(all, "Keep-Alive"));
    assert_null(strstr(all, "Proxy:"));
    assert_null(strstr(all, "https"));
    assert_non_null(strstr(all, "X-Tracfront-Client: 6.6.6.6 1 1\n"));
    assert_null(strstr(all, "TE:"));
    assert_null(strstr(all, "100-continue"));
    free(all);
    curl_slist_free_all(list);
    tf_request_unref(req);
}

static int feed(struct tf_response_head *h, const char *text)
{
    int rc = 0;
    const char *p = text;
    while (*p && rc == 0) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
        rc = tf_response_head_feed(h, p, len);
        p += len;
    }
    return rc;
}

static void test_response_head_checks(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "garbage\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 099 OK\r\n\r\n",
        /* the framing spans the head: chunked twice, on two lines */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: a\r\nContent-Length: 5\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tf_response_head h;
        tf_response_head_init(&h);
        if (feed(&h, bad[i]) != -1 || !h.invalid)
            fail_msg("accepted bad head #%zu", i);
        tf_response_head_free(&h);
    }
    struct tf_response_head h;
    tf_response_head_init(&h);
    assert_int_equal(feed(&h, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
                              "Content-Length: 5\r\nContent-Length: 5\r\nX-A:  a b \r\n\r\n"), 1);
    assert_int_equal(h.status, 201);
    assert_int_equal(h.framing.content_length, 5);
    tf_response_head_free(&h);
}

static void test_response_headers_back(void **state)
{
    (void)state;
    struct tf_route route = { .prefix = "/old", .prefix_len = 4, .kind = TF_ROUTE_UPSTREAM };
    struct tf_config cfg = config("http://u:1", "/legacy");
    struct tf_request *req = make_request("/old/x", (const char *[]){ NULL });
    req->route = &route;
    struct tf_response_head h;
    tf_response_head_init(&h);
    assert_int_equal(feed(&h, "HTTP/1.1 302 Found\r\nLocation: http://u:1/legacy/next?a=1\r\n"
                              "Connection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n"
                              "Content-Length: 0\r\nSet-Cookie: s=1\r\n"
                              "Refresh: 0; URL = 'http://u:1/legacy?b' x\r\n\r\n"), 1);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    tf_response_head_apply(&h, r, req, &cfg);
    assert_string_equal(MHD_get_response_header(r, "Location"), "/old/next?a=1");
    assert_string_equal(MHD_get_response_header(r, "Refresh"), "0; URL = '/old?b' x");
    assert_string_equal(MHD_get_response_header(r, "Set-Cookie"), "s=1");
    assert_string_equal(MHD_get_response_header(r, "Via"), "1.1 tracfront");
    assert_null(MHD_get_response_header(r, "X-Secret"));
    assert_null(MHD_get_response_header(r, "Keep-Alive"));
    assert_null(MHD_get_response_header(r, "Connection"));
    MHD_destroy_response(r);
    tf_response_head_free(&h);
    tf_request_unref(req);
}

/* Refresh's URL as browsers find it; anything else passes as it is. */
static void test_refresh_back(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        { "0; url=http://u:1/legacy/r", "0; url=/old/r" },
        { "0;URL=\"/legacy?x\";", "0;URL=\"/old?x\";" },
        { "3 , uRl= /legacy/a", "3 , uRl= /old/a" },
        { "1.5 http://u:1/legacy", "1.5 /old" },
        { "2; urlx=/legacy/a", "2; urlx=/legacy/a" },  /* "urlx=/legacy/a" is the URL */
        { "2; /legacyx", "2; /legacyx" },              /* not on a boundary */
        { "soon; url=/legacy/a", "soon; url=/legacy/a" }, /* no delay: ignored by browsers */
        { "5", "5" }, { "0; url=", "0; url=" }, { "0; url=''", "0; url=''" },
    };
    struct tf_route route = { .prefix = "/old", .prefix_len = 4, .kind = TF_ROUTE_UPSTREAM };
    struct tf_config cfg = config("http://u:1", "/legacy");
    struct tf_request *req = make_request("/old/x", (const char *[]){ NULL });
    req->route = &route;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[200];
        snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nRefresh: %s\r\n\r\n", cases[i][0]);
        struct tf_response_head h;
        tf_response_head_init(&h);
        assert_int_equal(feed(&h, text), 1);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        tf_response_head_apply(&h, r, req, &cfg);
        const char *got = MHD_get_response_header(r, "Refresh");
        if (!got || strcmp(got, cases[i][1]))
            fail_msg("Refresh: %s: got %s, want %s", cases[i][0], got ? got : "NULL", cases[i][1]);
        MHD_destroy_response(r);
        tf_response_head_free(&h);
    }
    tf_request_unref(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_mapping),
        cmocka_unit_test(test_request_headers),
        cmocka_unit_test(test_response_head_checks),
        cmocka_unit_test(test_response_headers_back),
        cmocka_unit_test(test_refresh_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
