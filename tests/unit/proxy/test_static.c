/* Unit tests for proxy/static.c against a temporary tree: MIME types and
 * validators, 304s, byte ranges and If-Range, HEAD, 405, and every way out of
 * the root we know of (dot segments, encoded dots and slashes, NUL, backslash,
 * symlinks leading out, directories, a FIFO) ending in a 4xx, never the file. */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <microhttpd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/request.h"
#include "proxy/static.h"

static char base[PATH_MAX]; /* resolved temp dir holding root/ and its neighbours */
static char root[PATH_MAX + 8];
static int fds_at_start;

/* Sun, 06 Nov 1994 08:49:37 GMT, with nanoseconds that the ETag must carry. */
#define MTIME_SEC 784111777
#define MTIME_NSEC 123456789
#define LAST_MODIFIED "Sun, 06 Nov 1994 08:49:37 GMT"
#define ALPHABET "abcdefghijklmnopqrstuvwxyz"

static void put_file(const char *rel, const char *content)
{
    char path[2 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", base, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    struct timespec ts[2] = { { MTIME_SEC, MTIME_NSEC }, { MTIME_SEC, MTIME_NSEC } };
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void put_link(const char *target, const char *rel)
{
    char path[2 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", base, rel);
    assert_int_equal(symlink(target, path), 0);
}

static void put_dir(const char *rel)
{
    char path[2 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", base, rel);
    assert_int_equal(mkdir(path, 0755), 0);
}

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static int setup(void **state)
{
    (void)state;
    fds_at_start = count_open_fds();
    char tmpl[] = "/tmp/tf_static_XXXXXX";
    if (!mkdtemp(tmpl) || !realpath(tmpl, base))
        return -1;
    snprintf(root, sizeof(root), "%s/root", base);
    put_dir("root");
    put_dir("root/sub");
    put_dir("outside");
    put_dir("rootevil");
    put_file("root/hello.txt", "hello world\n");
    put_file("root/data.bin", ALPHABET);
    put_file("root/Style.CSS", "body{}");
    put_file("root/app.js", "1;");
    put_file("root/logo.svg", "<svg/>");
    put_file("root/README", "plain");
    put_file("root/clip.MP4", "");
    put_file("root/pic.avif", "");
    put_file("root/a b.txt", "space");
    put_file("root/empty.txt", "");
    put_file("root/sub/index.html", "<p>hi</p>");
    put_file("outside/secret.txt", "secret");
    put_file("rootevil/secret.txt", "secret");
    put_link("../outside/secret.txt", "root/leak.txt");
    put_link("../outside", "root/leakdir");
    put_link("../rootevil/secret.txt", "root/evil.txt");
    put_link("hello.txt", "root/alias.txt");
    put_link("../hello.txt", "root/sub/up.txt");
    put_link("sub", "root/subdir");
    put_link("../outside/../root/./hello.txt", "root/around.txt");
    put_link("loop", "root/loop");
    put_link("nowhere", "root/dangling");
    put_link("hello.txt/", "root/slash.txt");
    char absolute[2 * PATH_MAX];
    snprintf(absolute, sizeof(absolute), "%s/root/sub/index.html", base);
    put_link(absolute, "root/abs.html");
    char fifo[2 * PATH_MAX];
    snprintf(fifo, sizeof(fifo), "%s/pipe", root);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    return nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A request as server.c would build it; hdrs is name, value, ..., NULL. */
static struct tf_request *make_req(const char *method, const char *const *hdrs)
{
    struct tf_request *req = tf_request_new(NULL, "/");
    assert_non_null(req);
    assert_int_equal(tf_request_set_line(req, method, "HTTP/1.1"), 0);
    req->is_head = !strcmp(method, "HEAD");
    size_t n = 0;
    while (hdrs && hdrs[2 * n])
        n++;
    assert_int_equal(tf_request_alloc_headers(req, n + 1, 0), 0);
    for (size_t i = 0; i < n; i++) {
        req->headers[i] = (struct tf_header){ .name = hdrs[2 * i], .value = hdrs[2 * i + 1],
                                              .name_len = strlen(hdrs[2 * i]),
                                              .value_len = strlen(hdrs[2 * i + 1]) };
    }
    req->n_headers = n;
    return req;
}

/* Answer method rel with headers; the response is returned in *out. */
static void ask(const char *method, const char *rel, const char *const *hdrs,
                struct tf_static_answer *out)
{
    struct tf_request *req = make_req(method, hdrs);
    assert_int_equal(tf_static_answer(root, rel, req, out), 0);
    assert_non_null(out->response);
    tf_request_unref(req);
}

static const char *header(const struct tf_static_answer *a, const char *name)
{
    return MHD_get_response_header(a->response, name);
}

static unsigned status_of(const char *method, const char *rel, const char *const *hdrs)
{
    struct tf_static_answer a;
    ask(method, rel, hdrs, &a);
    MHD_destroy_response(a.response);
    return a.status;
}

#define HDR1(n, v) ((const char *[]){ n, v, NULL })
#define HDR2(n1, v1, n2, v2) ((const char *[]){ n1, v1, n2, v2, NULL })

static unsigned data_status(const char *const *hdrs)
{
    return status_of("GET", "/data.bin", hdrs);
}

static void test_plain_get(void **state)
{
    (void)state;
    struct tf_static_answer a;
    ask("GET", "/data.bin", NULL, &a);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, 26);
    assert_string_equal(header(&a, "Content-Type"), "application/octet-stream");
    char etag[80];
    snprintf(etag, sizeof(etag), "\"%x-%x-%x\"", 26, MTIME_SEC, MTIME_NSEC);
    assert_string_equal(header(&a, "ETag"), etag);
    assert_string_equal(header(&a, "Last-Modified"), LAST_MODIFIED);
    assert_string_equal(header(&a, "Accept-Ranges"), "bytes");
    assert_null(header(&a, "Content-Length"));
    assert_null(header(&a, "Transfer-Encoding"));
    assert_null(header(&a, "Cache-Control"));
    assert_null(header(&a, "Content-Range"));
    MHD_destroy_response(a.response);
}

static void expect_type(const char *rel, const char *type)
{
    struct tf_static_answer a;
    ask("GET", rel, NULL, &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(header(&a, "Content-Type"), type);
    MHD_destroy_response(a.response);
}

static void test_mime_and_names(void **state)
{
    (void)state;
    expect_type("/hello.txt", "text/plain; charset=utf-8");
    expect_type("/Style.CSS", "text/css; charset=utf-8");
    expect_type("/app.js", "application/javascript; charset=utf-8");
    expect_type("/logo.svg", "image/svg+xml");
    expect_type("/README", "application/octet-stream");
    expect_type("/clip.MP4", "video/mp4");
    expect_type("/pic.avif", "image/avif");
    expect_type("/a%20b.txt", "text/plain; charset=utf-8");
    expect_type("/sub/index.html", "text/html; charset=utf-8");
    expect_type("/alias.txt", "text/plain; charset=utf-8"); /* symlink inside root */
    expect_type("//hello.txt", "text/plain; charset=utf-8");
    struct tf_static_answer a;
    ask("GET", "/empty.txt", NULL, &a);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, 0);
    MHD_destroy_response(a.response);
}

static void test_not_modified(void **state)
{
    (void)state;
    char etag[80], weak[90], list[200];
    snprintf(etag, sizeof(etag), "\"%x-%x-%x\"", 26, MTIME_SEC, MTIME_NSEC);
    snprintf(weak, sizeof(weak), "W/%s", etag);
    snprintf(list, sizeof(list), "\"nope\", W/\"x,y\" ,%s", etag);
    struct tf_static_answer a;
    ask("GET", "/data.bin", (const char *[]){ "If-None-Match", etag, NULL }, &a);
    assert_int_equal(a.status, 304);
    assert_int_equal(a.body_len, 0);
    assert_string_equal(header(&a, "ETag"), etag);
    assert_string_equal(header(&a, "Last-Modified"), LAST_MODIFIED);
    assert_null(header(&a, "Content-Length"));
    MHD_destroy_response(a.response);
    assert_int_equal(data_status(HDR1("If-None-Match", weak)), 304);
    assert_int_equal(data_status(HDR1("If-None-Match", list)), 304);
    assert_int_equal(data_status(HDR1("If-None-Match", "*")), 304);
    assert_int_equal(data_status(HDR1("If-None-Match", "\"nope\"")), 200);
    assert_int_equal(data_status(HDR1("If-Modified-Since", LAST_MODIFIED)), 304);
    assert_int_equal(data_status(HDR1("If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT")), 304);
    /* a date ahead of the clock is ignored, as Apache does */
    assert_int_equal(data_status(HDR1("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")), 200);
    assert_int_equal(data_status(HDR1("If-Modified-Since", "Sun, 06 Nov 1994 08:49:36 GMT")), 200);
    assert_int_equal(data_status(HDR1("If-Modified-Since", "yesterday")), 200);
    /* RFC 9110's obsolete forms: RFC 850 (two-digit year) and asctime */
    assert_int_equal(data_status(HDR1("If-Modified-Since", "Sunday, 06-Nov-94 08:49:37 GMT")), 304);
    assert_int_equal(data_status(HDR1("If-Modified-Since", "Sunday, 06-Nov-94 08:49:36 GMT")), 200);
    assert_int_equal(data_status(HDR1("If-Modified-Since", "Sun Nov  6 08:49:37 1994")), 304);
    assert_int_equal(data_status(HDR1("If-Modified-Since", "Sun Nov  6 08:49:36 1994")), 200);
    assert_int_equal(data_status(HDR1("If-Modified-Since", "Sun Nov  6 08:49:37 1994 GMT")), 200);
    assert_int_equal(data_status(HDR1("If-Unmodified-Since", "Sun Nov  6 08:49:36 1994")), 412);
    /* If-None-Match decides when present: a matching date does not help. */
    assert_int_equal(data_status(HDR2("If-None-Match", "\"nope\"",
                                      "If-Modified-Since", LAST_MODIFIED)), 200);
    /* Lines of one list header make one list (RFC 9110 5.3), read up to a
     * malformed member as the joined list would be. */
    assert_int_equal(data_status(HDR2("If-None-Match", "\"nope\"", "If-None-Match", etag)), 304);
    assert_int_equal(data_status(HDR2("If-None-Match", "nope", "If-None-Match", etag)), 200);
    assert_int_equal(data_status(HDR2("If-Match", "\"nope\"", "If-Match", etag)), 200);
    assert_int_equal(data_status(HDR2("If-Match", "\"nope\"", "If-Match", "\"no\"")), 412);
    /* A 304 wins over Range. */
    assert_int_equal(data_status(HDR2("If-None-Match", etag, "Range", "bytes=0-1")), 304);
}

/* Range r on data.bin: status, body length and Content-Range. */
static void expect_range(const char *const *hdrs, unsigned status, uint64_t len,
                         const char *content_range)
{
    struct tf_static_answer a;
    ask("GET", "/data.bin", hdrs, &a);
    assert_int_equal(a.status, status);
    if (status != 416)
        assert_int_equal(a.body_len, len);
    if (content_range)
        assert_string_equal(header(&a, "Content-Range"), content_range);
    else
        assert_null(header(&a, "Content-Range"));
    MHD_destroy_response(a.response);
}

#define RANGE(v) HDR1("Range", v)

static void test_ranges(void **state)
{
    (void)state;
    expect_range(RANGE("bytes=0-4"), 206, 5, "bytes 0-4/26");
    expect_range(RANGE("bytes=20-"), 206, 6, "bytes 20-25/26");
    expect_range(RANGE("bytes=-5"), 206, 5, "bytes 21-25/26");
    expect_range(RANGE("bytes=-100"), 206, 26, "bytes 0-25/26");
    expect_range(RANGE("bytes=10-1000"), 206, 16, "bytes 10-25/26");
    expect_range(RANGE("bytes=25-25"), 206, 1, "bytes 25-25/26");
    expect_range(RANGE("bytes=0-99999999999999999999999"), 206, 26, "bytes 0-25/26");
    expect_range(RANGE("bytes=26-"), 416, 0, "bytes */26");
    expect_range(RANGE("bytes=99999999999999999999999-"), 416, 0, "bytes */26");
    expect_range(RANGE("bytes=-0"), 416, 0, "bytes */26");
    expect_range(RANGE("bytes=0-1,3-4"), 200, 26, NULL);
    expect_range(RANGE("bytes=abc"), 200, 26, NULL);
    expect_range(RANGE("bytes=5-2"), 200, 26, NULL);
    expect_range(RANGE("bytes=-"), 200, 26, NULL);
    expect_range(RANGE("items=0-4"), 200, 26, NULL);
    /* An empty file, as nginx: a range from 0 is the whole file (200), one
     * from further on a 416 (RFC 9110 14.2 lets a server ignore Range). */
    const char *whole[] = { "bytes=0-", "bytes=0-0", "bytes=-5", "bytes=-0", "bytes=0-9" };
    struct tf_static_answer a;
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
        ask("GET", "/empty.txt", RANGE(whole[i]), &a);
        if (a.status != 200)
            fail_msg("%s: status %u", whole[i], a.status);
        assert_int_equal(a.body_len, 0);
        assert_null(header(&a, "Content-Range"));
        MHD_destroy_response(a.response);
    }
    ask("GET", "/empty.txt", RANGE("bytes=1-"), &a);
    assert_int_equal(a.status, 416);
    assert_string_equal(header(&a, "Content-Range"), "bytes */0");
    MHD_destroy_response(a.response);
}

static void test_if_range(void **state)
{
    (void)state;
    char etag[80], weak[90];
    snprintf(etag, sizeof(etag), "\"%x-%x-%x\"", 26, MTIME_SEC, MTIME_NSEC);
    snprintf(weak, sizeof(weak), "W/%s", etag);
    expect_range((const char *[]){ "Range", "bytes=0-4", "If-Range", etag, NULL }, 206, 5,
                 "bytes 0-4/26");
    expect_range((const char *[]){ "Range", "bytes=0-4", "If-Range", LAST_MODIFIED, NULL },
                 206, 5, "bytes 0-4/26");
    expect_range((const char *[]){ "Range", "bytes=0-4", "If-Range", "\"other\"", NULL }, 200,
                 26, NULL);
    expect_range((const char *[]){ "Range", "bytes=0-4", "If-Range", weak, NULL }, 200, 26,
                 NULL);
    expect_range((const char *[]){ "Range", "bytes=0-4", "If-Range",
                                   "Sun, 06 Nov 1994 08:49:38 GMT", NULL }, 200, 26, NULL);
    expect_range((const char *[]){ "Range", "bytes=99-", "If-Range", "\"other\"", NULL }, 200,
                 26, NULL);
}

static void test_head(void **state)
{
    (void)state;
    struct tf_static_answer a;
    ask("HEAD", "/data.bin", NULL, &a);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, 0);
    assert_string_equal(header(&a, "Content-Type"), "application/octet-stream");
    assert_string_equal(header(&a, "Last-Modified"), LAST_MODIFIED);
    assert_non_null(header(&a, "ETag"));
    MHD_destroy_response(a.response);
    ask("HEAD", "/data.bin", RANGE("bytes=1-2"), &a);
    assert_int_equal(a.status, 206);
    assert_int_equal(a.body_len, 0);
    assert_string_equal(header(&a, "Content-Range"), "bytes 1-2/26");
    MHD_destroy_response(a.response);
    ask("HEAD", "/missing", NULL, &a);
    assert_int_equal(a.status, 404);
    assert_int_equal(a.body_len, 0);
    MHD_destroy_response(a.response);
}

static void test_methods(void **state)
{
    (void)state;
    const char *methods[] = { "POST", "PUT", "DELETE", "OPTIONS", "get" };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        struct tf_static_answer a;
        ask(methods[i], "/hello.txt", NULL, &a);
        assert_int_equal(a.status, 405);
        assert_string_equal(header(&a, "Allow"), "GET, HEAD");
        assert_true(a.body_len > 0);
        MHD_destroy_response(a.response);
    }
    /* what the server asks at an upload's head, before any file is looked at */
    const char *all[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get" };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        struct tf_request *req = make_req(all[i], NULL);
        assert_int_equal(tf_static_takes_method(req), i < 2);
        tf_request_unref(req);
    }
}

/* Every way out of root or into something that is not a file: a 4xx with
 * a text/plain error body, never the file's validators. */
static void test_never_outside(void **state)
{
    (void)state;
    const char *bad[] = {
        "/../outside/secret.txt", "/%2e%2e/outside/secret.txt", "/%2E%2e/outside/secret.txt",
        "/sub/../../outside/secret.txt", "/sub/%2e%2e/hello.txt", "/./hello.txt",
        "/sub/.", "/%2e/hello.txt", "/sub%2findex.html", "/sub%2Findex.html",
        "/hello.txt%00", "/hello.txt%00.png", "/sub\\index.html", "/sub%5cindex.html",
        "/leak.txt", "/leakdir/secret.txt", "/evil.txt", "/sub", "/sub/", "", "/",
        "/pipe", "/missing", "/hello.txt/", "/%zz", "/hello.txt%", "/hello.txt%4",
        "../root/hello.txt", "hello.txt", "/loop", "/loop/x", "/dangling", "/slash.txt",
        "/subdir", "/subdir/", "/subdir/up.txt/", "/abs.html/x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tf_static_answer a;
        ask("GET", bad[i], NULL, &a);
        if (a.status < 400 || a.status > 499)
            fail_msg("%s: status %u", bad[i], a.status);
        assert_null(header(&a, "ETag"));
        assert_string_equal(header(&a, "Content-Type"), "text/plain; charset=utf-8");
        MHD_destroy_response(a.response);
    }
    assert_int_equal(status_of("GET", "/sub/index.html", NULL), 200); /* the index exists */
}

/* Symlinks that stay under root, however they get there, are served. */
static void test_symlinks_inside(void **state)
{
    (void)state;
    const char *ok[] = { "/alias.txt", "/sub/up.txt", "/subdir/index.html", "/subdir/up.txt",
                         "/around.txt", "/abs.html", "/subdir//index.html" };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        unsigned status = status_of("GET", ok[i], NULL);
        if (status != 200)
            fail_msg("%s: status %u", ok[i], status);
    }
}

/* Every answer above, error paths included, closed its descriptor once its
 * response was destroyed. Runs last. */
/* The folder's symlinks are resolved per request: a deploy that swaps one
 * is served at once, and the file must still lie under the new target. */
static void test_symlinked_folder_swapped(void **state)
{
    (void)state;
    char current[PATH_MAX + 16], swap[PATH_MAX + 16];
    snprintf(current, sizeof(current), "%s/current", base);
    snprintf(swap, sizeof(swap), "%s/current.new", base);
    put_link("root", "current");
    struct tf_request *req = make_req("GET", NULL);
    struct tf_static_answer a;
    assert_int_equal(tf_static_answer(current, "/hello.txt", req, &a), 0);
    assert_int_equal(a.status, 200);
    MHD_destroy_response(a.response);
    put_link("outside", "current.new");
    assert_int_equal(rename(swap, current), 0);
    assert_int_equal(tf_static_answer(current, "/hello.txt", req, &a), 0);
    assert_int_equal(a.status, 404);
    MHD_destroy_response(a.response);
    assert_int_equal(tf_static_answer(current, "/secret.txt", req, &a), 0);
    assert_int_equal(a.status, 200);
    MHD_destroy_response(a.response);
    assert_int_equal(unlink(current), 0);
    assert_int_equal(tf_static_answer(current, "/secret.txt", req, &a), 0);
    assert_int_equal(a.status, 404);
    MHD_destroy_response(a.response);
    tf_request_unref(req);
}

static void test_no_descriptor_left_open(void **state)
{
    (void)state;
    assert_int_equal(count_open_fds(), fds_at_start);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_get),   cmocka_unit_test(test_mime_and_names),
        cmocka_unit_test(test_not_modified), cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_if_range),    cmocka_unit_test(test_head),
        cmocka_unit_test(test_methods),     cmocka_unit_test(test_never_outside),
        cmocka_unit_test(test_symlinks_inside),
        cmocka_unit_test(test_symlinked_folder_swapped),
        cmocka_unit_test(test_no_descriptor_left_open),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
