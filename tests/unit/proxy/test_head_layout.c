/* Unit tests for proxy/head_layout.c: heads laid out in a buffer as
 * libmicrohttpd 0.9.75 leaves them (connection.c: get_next_header_line,
 * parse_initial_message_line, process_header_line), whole or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/head_layout.h"

#define MAX_HEADERS 8

/* A head parsed as libmicrohttpd does, in place in buf. */
struct parsed {
    char buf[512];
    const char *method, *target, *version;
    size_t target_len, head_size;
    const char *names[MAX_HEADERS], *values[MAX_HEADERS];
    size_t n;
};

/* The next line of p->buf from *pos: its end (CR LF or bare LF) made NULs,
 * as get_next_header_line does; its length in *n. NULL when no line end is
 * left. */
static char *next_line(struct parsed *p, size_t *pos, size_t len, size_t *n)
{
    char *line = p->buf + *pos;
    for (size_t i = *pos; i < len; i++) {
        if (p->buf[i] == '\r' && i + 1 < len && p->buf[i + 1] == '\n') {
            p->buf[i] = p->buf[i + 1] = 0;
            *n = i - *pos;
            *pos = i + 2;
            return line;
        }
        if (p->buf[i] == '\n') {
            p->buf[i] = 0;
            *n = i - *pos;
            *pos = i + 1;
            return line;
        }
    }
    return NULL;
}

/* Parses raw (len bytes: NULs allowed) into p; a folded line glues its text
 * onto a copy of the previous name elsewhere, as process_broken_line does;
 * an empty line, or one made empty by its colon, ends the head. */
static void parse(struct parsed *p, const char *raw, size_t len)
{
    memset(p, 0, sizeof(*p));
    memcpy(p->buf, raw, len);
    size_t pos = 0, n;
    char *line = next_line(p, &pos, len, &n);
    assert_non_null(line);
    char *sp = memchr(line, ' ', n); /* parse_initial_message_line, by the line's length */
    assert_non_null(sp);
    *sp = 0;
    p->method = line;
    char *uri = sp + 1;
    while (*uri == ' ')
        uri++;
    char *v = line + n - 1;
    while (v > uri && *v != ' ')
        v--;
    *v = 0;
    p->target = uri;
    p->target_len = strlen(uri); /* what the URI callback sees */
    p->version = v + 1;
    static char glued[MAX_HEADERS][64];
    while ((line = next_line(p, &pos, len, &n)) && line[0]) {
        if ((line[0] == ' ' || line[0] == '\t') && p->n) {
            char *g = glued[p->n - 1];
            snprintf(g, sizeof(glued[0]), "%s%s", p->names[p->n - 1], line + 1);
            p->names[p->n - 1] = g;
            continue;
        }
        char *colon = strchr(line, ':');
        assert_non_null(colon);
        *colon = 0;
        if (!line[0])
            break; /* ": v": the head ends here */
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        p->names[p->n] = line;
        p->values[p->n++] = value;
    }
    p->head_size = pos; /* MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE */
}

static bool whole(const char *raw, size_t len)
{
    struct parsed p;
    parse(&p, raw, len);
    struct tf_head_layout l;
    tf_head_layout_start(&l, p.method, p.target, p.target_len, p.version, p.head_size);
    for (size_t i = 0; i < p.n; i++)
        tf_head_layout_header(&l, p.names[i], strlen(p.names[i]), p.values[i],
                              strlen(p.values[i]));
    return tf_head_layout_whole(&l);
}

#define WHOLE(lit) whole(lit, sizeof(lit) - 1)

static void test_whole_heads(void **state)
{
    (void)state;
    assert_true(WHOLE("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_true(WHOLE("GET /a?b=c HTTP/1.0\r\n\r\n"));
    assert_true(WHOLE("GET  /a HTTP/1.1\r\nHost: x\r\n\r\nbody"));
    assert_true(WHOLE("POST /u HTTP/1.1\r\nHost:x\r\nX-Empty:\r\nX-Tab:\t\tv \r\n"
                      "Content-Length: 2\r\n\r\nab"));
}

static void test_nul_anywhere_is_seen(void **state)
{
    (void)state;
    assert_false(WHOLE("GET / HTTP/1.1\r\nContent-Length: 2\0" "38\r\n\r\n"));
    assert_false(WHOLE("GET / HTTP/1.1\r\nHost: a\0.evil\r\n\r\n"));
    assert_false(WHOLE("GET / HTTP/1.1\r\nX: \0a\r\nHost: a\r\n\r\n"));
    assert_false(WHOLE("GE\0T / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_false(WHOLE("GET /a\0/b HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_false(WHOLE("GET / HTTP/1.1\0x\r\nHost: a\r\n\r\n"));
    /* a line that starts with NUL ends libmicrohttpd's head */
    assert_false(WHOLE("GET / HTTP/1.1\r\nHost: a\r\n\0X: y\r\n\r\n"));
}

static void test_fold_empty_name_and_bare_lf_are_seen(void **state)
{
    (void)state;
    assert_false(WHOLE("GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n"));
    assert_false(WHOLE("GET / HTTP/1.1\r\nHost: a\r\n: x\r\nGET /two HTTP/1.1\r\n\r\n"));
    assert_false(WHOLE("GET / HTTP/1.1\nHost: a\n\n"));
    assert_false(WHOLE("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"));
}

/* NULs next to a line end: the count of NULs is off, or the head does not
 * end where libmicrohttpd says it does. */
static void test_nuls_next_to_line_ends_are_seen(void **state)
{
    (void)state;
    assert_false(WHOLE("GET / HTTP/1.1\r\nHost: a\0\r\n\r\n"));
    assert_false(WHOLE("GET / HTTP/1.1\r\nX: a\0\r\nHost: a\r\n\r\n"));
    assert_false(WHOLE("GET / HTTP/1.1\r\nHost: a\0\0\r\n\r\nb"));
    assert_false(WHOLE("GET / HTTP/1.1\r\nHost: a\r\n\0\0\r\n\r\nGET /b HTTP/1.1\r\n\r\n"));
    assert_false(WHOLE("GET / HTTP/1.1\r\nHost: a\r\n\n\0"));
    assert_false(WHOLE("GET / HTTP/1.1\r\nHost: a\r\n\nb"));
}

static void test_missing_pieces_are_not_whole(void **state)
{
    (void)state;
    struct tf_head_layout l;
    tf_head_layout_start(&l, NULL, NULL, 0, NULL, 0);
    assert_false(tf_head_layout_whole(&l));
    char line[] = "GET\0/\0HTTP/1.1\0\0\0\0";
    size_t size = sizeof(line) - 1;
    tf_head_layout_start(&l, line, line + 4, 1, "HTTP/1.1", size); /* a version elsewhere */
    assert_false(tf_head_layout_whole(&l));
    tf_head_layout_start(&l, line, line + 4, 1, line + 6, 0); /* no size known */
    assert_false(tf_head_layout_whole(&l));
    tf_head_layout_start(&l, line, line + 4, 1, line + 6, size - 1); /* ends sooner */
    assert_false(tf_head_layout_whole(&l));
    tf_head_layout_start(&l, line, line + 4, 1, line + 6, size);
    assert_true(tf_head_layout_whole(&l));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_heads),
        cmocka_unit_test(test_nul_anywhere_is_seen),
        cmocka_unit_test(test_fold_empty_name_and_bare_lf_are_seen),
        cmocka_unit_test(test_nuls_next_to_line_ends_are_seen),
        cmocka_unit_test(test_missing_pieces_are_not_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
