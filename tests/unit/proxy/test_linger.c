/* Unit tests for proxy/linger.c, on socket pairs: a lingering socket is shut
 * for writing (its peer reads the end) yet still takes what the peer sends;
 * it closes at the peer's end, past max_bytes, past quiet_us without a byte
 * (a byte read starts it again) and past total_us; past max_sockets a socket
 * is closed at once, so the count never grows past it; the oldest can be
 * closed at once. The lingerer's clock is the test's (fake_now). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy/linger.h"
#include "proxy/loop.h"

static const struct tf_linger_limits limits = {
    .max_sockets = 2, .max_bytes = 100000, .total_us = 60000000, .quiet_us = 30000000,
};

struct fixture {
    struct tf_loop *loop;
    struct tf_lingerer *l;
    int fd;          /* for add */
    long result;
};

/* The lingerer's clock: the time only moves when a test moves it (the loop's
 * thread reads it while a read is taken). */
static uint64_t fake_now;

static uint64_t fake_clock(void)
{
    return __atomic_load_n(&fake_now, __ATOMIC_SEQ_CST);
}

static void set_now(uint64_t us)
{
    __atomic_store_n(&fake_now, us, __ATOMIC_SEQ_CST);
}

static int make(void *arg)
{
    struct fixture *f = arg;
    f->l = tf_linger_new(f->loop, &limits, fake_clock);
    return f->l ? 0 : -1;
}

static int add(void *arg)
{
    struct fixture *f = arg;
    return tf_linger_add(f->l, f->fd);
}

static int sweep(void *arg)
{
    struct fixture *f = arg;
    f->result = tf_linger_sweep(f->l);
    return 0;
}

static int close_oldest(void *arg)
{
    struct fixture *f = arg;
    return tf_linger_close_oldest(f->l);
}

static int count(void *arg)
{
    struct fixture *f = arg;
    return (int)tf_linger_count(f->l);
}

static int destroy(void *arg)
{
    struct fixture *f = arg;
    tf_linger_free(f->l);
    return 0;
}

static int setup(void **state)
{
    static struct fixture f;
    char err[128];
    memset(&f, 0, sizeof(f));
    set_now(1000000000u);
    if (!(f.loop = tf_loop_start(0, err, sizeof(err))) || tf_loop_call(f.loop, make, &f) < 0)
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tf_loop_call(f->loop, destroy, f);
    tf_loop_stop(f->loop);
    tf_loop_free(f->loop);
    return 0;
}

/* Hand one end of a new socket pair to the lingerer; returns the other
 * (non-blocking), and add's result in *added. */
static int linger_pair(struct fixture *f, int *added)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    f->fd = sv[0];
    *added = tf_loop_call(f->loop, add, f);
    return sv[1];
}

/* Is the lingering end of peer closed: writing fails with EPIPE? */
static bool closed(int peer)
{
    return send(peer, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE;
}

/* Wait until the lingerer has read all peer sent (a unix socket's SIOCOUTQ:
 * the bytes its other end has not read yet), and has finished that read: it
 * reads the clock after it, so a call through the loop is the barrier. */
static void wait_drained(struct fixture *f, int peer)
{
    int queued = -1;
    for (int i = 0; i < 500 && (ioctl(peer, SIOCOUTQ, &queued) < 0 || queued); i++) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(queued, 0);
    tf_loop_call(f->loop, count, f);
}

static void wait_count(struct fixture *f, int want)
{
    for (int i = 0; i < 500 && tf_loop_call(f->loop, count, f) != want; i++) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(tf_loop_call(f->loop, count, f), want);
}

static void test_shut_for_writing_and_still_read(void **state)
{
    struct fixture *f = *state;
    int added, peer = linger_pair(f, &added);
    assert_int_equal(added, 0);
    char c;
    for (int i = 0; i < 200 && recv(peer, &c, 1, 0) < 0; i++) { /* the end comes at once */
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(recv(peer, &c, 1, 0), 0);
    char block[8192] = { 0 };
    for (int i = 0; i < 5; i++) /* 40 KB: taken and dropped */
        assert_int_equal(send(peer, block, sizeof(block), MSG_NOSIGNAL), sizeof(block));
    assert_false(closed(peer));
    assert_int_equal(tf_loop_call(f->loop, count, f), 1);
    close(peer); /* the client's end: the socket closes */
    wait_count(f, 0);
}

static void test_closed_past_max_bytes(void **state)
{
    struct fixture *f = *state;
    int added, peer = linger_pair(f, &added);
    assert_int_equal(added, 0);
    char block[8192] = { 0 };
    size_t sent = 0;
    for (int i = 0; i < 2000 && sent <= limits.max_bytes + sizeof(block); i++) {
        ssize_t n = send(peer, block, sizeof(block), MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        else if (errno == EPIPE || errno == ECONNRESET)
            break;
        else {
            struct timespec ts = { 0, 2000000 };
            nanosleep(&ts, NULL);
        }
    }
    wait_count(f, 0);
    assert_true(closed(peer));
    close(peer);
}

static void test_closed_past_quiet_and_total_time(void **state)
{
    struct fixture *f = *state;
    uint64_t start = fake_clock();
    int added, quiet = linger_pair(f, &added), busy;
    assert_int_equal(added, 0);
    busy = linger_pair(f, &added); /* at the same time as quiet */
    assert_int_equal(added, 0);
    set_now(start + 1000000);
    tf_loop_call(f->loop, sweep, f);
    assert_int_equal(f->result, (limits.quiet_us - 1000000) / 1000 + 1); /* to both's end */
    set_now(start + 20000000); /* busy sends at 20 s: its quiet time starts again */
    assert_int_equal(send(busy, "more", 4, MSG_NOSIGNAL), 4);
    wait_drained(f, busy);
    set_now(start + limits.quiet_us); /* quiet's time is up, busy's not */
    tf_loop_call(f->loop, sweep, f);
    assert_int_equal(tf_loop_call(f->loop, count, f), 1);
    assert_int_equal(f->result, 20000 + 1); /* busy's quiet time ends at 50 s */
    assert_true(closed(quiet));
    assert_false(closed(busy));
    set_now(start + 45000000); /* still sending, but its 60 s in all are up */
    assert_int_equal(send(busy, "more", 4, MSG_NOSIGNAL), 4);
    wait_drained(f, busy);
    set_now(start + limits.total_us);
    tf_loop_call(f->loop, sweep, f);
    assert_int_equal(f->result, -1);
    assert_true(closed(busy));
    close(quiet);
    close(busy);
}

static void test_past_max_sockets_closed_at_once(void **state)
{
    struct fixture *f = *state;
    int peers[3], added[3];
    for (int i = 0; i < 3; i++)
        peers[i] = linger_pair(f, &added[i]);
    assert_int_equal(added[0], 0);
    assert_int_equal(added[1], 0);
    assert_int_equal(added[2], -1);
    assert_int_equal(tf_loop_call(f->loop, count, f), 2);
    assert_false(closed(peers[0]));
    assert_true(closed(peers[2]));
    for (int i = 0; i < 3; i++)
        close(peers[i]);
    wait_count(f, 0);
}

static void test_oldest_closed_at_once(void **state)
{
    struct fixture *f = *state;
    int added, first = linger_pair(f, &added), second = linger_pair(f, &added);
    assert_int_equal(added, 0);
    assert_int_equal(tf_loop_call(f->loop, close_oldest, f), 1);
    assert_int_equal(tf_loop_call(f->loop, count, f), 1);
    assert_true(closed(first));
    assert_false(closed(second));
    assert_int_equal(tf_loop_call(f->loop, close_oldest, f), 1);
    assert_true(closed(second));
    assert_int_equal(tf_loop_call(f->loop, close_oldest, f), 0); /* none left */
    close(first);
    close(second);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shut_for_writing_and_still_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_past_max_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_past_quiet_and_total_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_past_max_sockets_closed_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oldest_closed_at_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
