/* Unit tests for proxy/fetch.c's tf_fetch_all: the requests run at once (a
 * silent origin does not keep another's answer), each is bounded, a
 * refused connection is told from a silent origin, and a readable watch
 * descriptor whose give_up says so ends them all. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/fetch.h"

/* A loopback listening socket nobody accepts on (the kernel still
 * completes connections: a request to it is never answered); its origin. */
static int silent_origin(char *origin, size_t cap)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    snprintf(origin, cap, "http://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    return fd;
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

struct answering {
    int fd;               /* listening */
    uint64_t accepted_ms; /* now_ms() when its connection came */
};

/* Accept one connection on the listening socket of arg (struct answering),
 * read the request and answer 303. */
static void *answer_once(void *arg)
{
    struct answering *a = arg;
    int c = accept(a->fd, NULL, NULL);
    a->accepted_ms = now_ms();
    char buf[4096];
    if (c >= 0 && read(c, buf, sizeof(buf)) > 0) {
        static const char reply[] = "HTTP/1.1 303 See Other\r\nLocation: /x\r\n"
                                    "Content-Length: 0\r\nConnection: close\r\n\r\n";
        if (write(c, reply, sizeof(reply) - 1) < 0) { /* the test sees no answer */ }
    }
    if (c >= 0)
        close(c);
    return NULL;
}

static void test_a_silent_origin_does_not_keep_anothers_answer(void **state)
{
    (void)state;
    char silent[48], answering[48];
    struct answering a = { 0, 0 };
    int s = silent_origin(silent, sizeof(silent));
    a.fd = silent_origin(answering, sizeof(answering));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, answer_once, &a), 0);
    const char *origins[] = { silent, answering }; /* the silent one first */
    struct tf_fetched f[2];
    uint64_t limit_ms = 1000, started_ms = now_ms();
    assert_int_equal(tf_fetch_all(origins, 2, "POST", "/q", (long)limit_ms, f, -1, NULL, NULL),
                     1);
    pthread_join(t, NULL);
    /* asked while the silent one was still waited for, not after its limit */
    assert_true(a.accepted_ms < started_ms + limit_ms);
    assert_int_equal(f[0].status, 0); /* ended by its limit */
    assert_false(f[0].refused);       /* something listens there */
    assert_int_equal(f[1].status, 303);
    assert_false(f[1].refused);
    assert_string_equal(f[1].location, "/x");
    tf_fetched_free(&f[0]);
    tf_fetched_free(&f[1]);
    close(s);
    close(a.fd);
}

/* A port nothing listens on (a worker that died, not reaped yet) is told
 * from one that does not answer: the front leaves the first out. */
static void test_a_refused_connection_says_so(void **state)
{
    (void)state;
    char gone[48], silent[48];
    int g = silent_origin(gone, sizeof(gone)), s = silent_origin(silent, sizeof(silent));
    close(g); /* its port now refuses */
    const char *origins[] = { gone, silent };
    struct tf_fetched f[2];
    assert_int_equal(tf_fetch_all(origins, 2, "GET", "/", 300, f, -1, NULL, NULL), 0);
    assert_int_equal(f[0].status, 0);
    assert_true(f[0].refused);
    assert_int_equal(f[1].status, 0);
    assert_false(f[1].refused);
    close(s);
}

static bool count_and_give_up(void *calls)
{
    ++*(int *)calls;
    return true;
}

static void test_a_readable_watch_fd_gives_up_on_all(void **state)
{
    (void)state;
    char o1[48], o2[48];
    int s1 = silent_origin(o1, sizeof(o1)), s2 = silent_origin(o2, sizeof(o2)), p[2], calls = 0;
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    const char *origins[] = { o1, o2 };
    struct tf_fetched f[2];
    /* limit: the ctest timeout (120 s) would fail a wait for it */
    assert_int_equal(tf_fetch_all(origins, 2, "GET", "/", 600000, f, p[0], count_and_give_up,
                                  &calls), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(f[0].status, 0);
    assert_int_equal(f[1].status, 0);
    assert_null(f[0].body);
    close(p[0]);
    close(p[1]);
    close(s1);
    close(s2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_silent_origin_does_not_keep_anothers_answer),
        cmocka_unit_test(test_a_readable_watch_fd_gives_up_on_all),
        cmocka_unit_test(test_a_refused_connection_says_so),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
