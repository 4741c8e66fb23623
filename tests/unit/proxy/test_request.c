/* Unit tests for the channel (proxy/body_channel.c): what a producer pushes is
 * queued in order, and tf_request_whole_response takes the whole queue as
 * one buffer response only when it holds exactly the body's size; a stream
 * of unknown length marks its call as not fast, and is cut when it runs
 * inline past its budget; and its header look-ups. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <microhttpd.h>

#include "proxy/platform.h"
#include "proxy/request.h"

static struct tf_request *request_with_body(const char *const *parts)
{
    struct tf_request *req = tf_request_new(NULL, "/");
    assert_non_null(req);
    req->connection = (struct MHD_Connection *)req; /* not detached; never resumed here */
    for (size_t i = 0; parts[i]; i++) {
        bool over_high;
        assert_int_equal(tf_request_push(req, parts[i], strlen(parts[i]), &over_high), 0);
        assert_false(over_high);
    }
    return req;
}

static void test_whole_response_takes_the_queue(void **state)
{
    (void)state;
    struct tf_request *req = request_with_body((const char *[]){ "Hello, ", "", "World", "!\n", NULL });
    assert_int_equal(req->queued, 14);
    struct MHD_Response *r = tf_request_whole_response(req, 14);
    assert_non_null(r);
    assert_int_equal(req->queued, 0);
    assert_null(req->head);
    assert_int_equal(req->bytes_out, 14);
    MHD_destroy_response(r);
    req->connection = NULL;
    tf_request_unref(req);
}

static void test_whole_response_needs_exactly_the_body(void **state)
{
    (void)state;
    struct tf_request *req = request_with_body((const char *[]){ "abc", "def", NULL });
    assert_null(tf_request_whole_response(req, 7)); /* a byte still to come */
    assert_null(tf_request_whole_response(req, 5)); /* more queued than the body */
    assert_int_equal(req->queued, 6); /* left as it was, for the streamed answer */
    assert_non_null(req->head);
    assert_int_equal(req->bytes_out, 0);
    req->connection = NULL;
    tf_request_unref(req);
}

/* Only a stream of unknown length marks the thread that made it, once. */
static void test_an_unsized_stream_marks_its_thread(void **state)
{
    (void)state;
    struct tf_request *req = request_with_body((const char *[]){ NULL });
    tf_request_thread_streamed(); /* from now */
    MHD_destroy_response(tf_request_stream_response(req, 4));
    tf_request_note_streamed(req);
    assert_false(tf_request_thread_streamed());
    MHD_destroy_response(tf_request_stream_response(req, UINT64_MAX));
    assert_false(tf_request_thread_streamed()); /* the runner's, at the end: not the writer's */
    tf_request_note_streamed(req);
    assert_true(tf_request_thread_streamed());
    assert_false(tf_request_thread_streamed()); /* the mark restarted */
    req->connection = NULL;
    tf_request_unref(req);
}

/* Write to an inline run's stream (sized or not) after its budget: the
 * unsized one is cut (ETIMEDOUT, and every later write too), the sized one
 * is not. The budget is passed by moving the stream's start back. */
static ssize_t write_late(bool unsized, int *err)
{
    struct tf_request *req = request_with_body((const char *[]){ NULL });
    struct MHD_Response *r = tf_request_stream_response(req, unsized ? UINT64_MAX : 10);
    req->answering_inline = true;
    assert_int_equal(tf_request_write(req, "data", 4, UINT64_MAX, err), 4); /* in time */
    req->last_read_us = tf_now_us() - TF_INLINE_STREAM_US;
    ssize_t took = tf_request_write(req, "data", 4, UINT64_MAX, err);
    if (unsized) {
        int again;
        assert_int_equal(tf_request_write(req, "x", 1, UINT64_MAX, &again), -1);
        assert_int_equal(again, ETIMEDOUT);
    }
    req->answering_inline = false;
    MHD_destroy_response(r);
    req->connection = NULL;
    tf_request_unref(req);
    return took;
}

static void test_an_inline_unsized_stream_is_cut_past_its_budget(void **state)
{
    (void)state;
    int err;
    assert_int_equal(write_late(true, &err), -1);
    assert_int_equal(err, ETIMEDOUT);
    assert_int_equal(write_late(false, &err), 4);
    assert_int_equal(err, 0);
}

/* The request line and the headers each live in one allocation, freed with
 * the request (ASan's leak check holds the tests to that). */
static void test_line_and_header_blocks(void **state)
{
    (void)state;
    struct tf_request *req = tf_request_new(NULL, "/");
    assert_non_null(req);
    assert_int_equal(tf_request_set_line(req, "PROPFIND", "HTTP/1.0"), 0);
    assert_int_equal(tf_request_set_line(req, "GET", "HTTP/1.1"), 0); /* replaces */
    assert_string_equal(req->method, "GET");
    assert_string_equal(req->version, "HTTP/1.1");
    assert_int_equal(tf_request_alloc_headers(req, 3, 40), 0);
    assert_int_equal(req->n_headers, 0);
    assert_ptr_equal(req->header_store, (char *)(req->headers + 3));
    for (int i = 0; i < 3; i++) /* zeroed entries, and the whole store writable */
        assert_null(req->headers[i].name);
    memset(req->header_store, 'x', 40);
    assert_int_equal(tf_request_alloc_headers(req, 0, 0), 0); /* replaces */
    tf_request_unref(req);
}

/* A header's lines in turn, names compared without case; the first alone
 * for tf_request_header. */
static void test_header_lines(void **state)
{
    (void)state;
    struct tf_request *req = tf_request_new(NULL, "/");
    assert_non_null(req);
    assert_int_equal(tf_request_alloc_headers(req, 3, 0), 0);
    req->headers[0] = (struct tf_header){ .name = "If-None-Match", .value = "\"a\"" };
    req->headers[1] = (struct tf_header){ .name = "Host", .value = "h" };
    req->headers[2] = (struct tf_header){ .name = "if-none-match", .value = "\"b\"" };
    req->n_headers = 3;
    size_t pos = 0;
    assert_string_equal(tf_request_header_next(req, "IF-NONE-MATCH", &pos), "\"a\"");
    assert_string_equal(tf_request_header_next(req, "IF-NONE-MATCH", &pos), "\"b\"");
    assert_null(tf_request_header_next(req, "IF-NONE-MATCH", &pos));
    assert_null(tf_request_header_next(req, "IF-NONE-MATCH", &pos));
    assert_string_equal(tf_request_header(req, "if-none-match"), "\"a\"");
    assert_null(tf_request_header(req, "If-Match"));
    tf_request_unref(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_response_takes_the_queue),
        cmocka_unit_test(test_whole_response_needs_exactly_the_body),
        cmocka_unit_test(test_an_unsized_stream_marks_its_thread),
        cmocka_unit_test(test_an_inline_unsized_stream_is_cut_past_its_budget),
        cmocka_unit_test(test_line_and_header_blocks),
        cmocka_unit_test(test_header_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
