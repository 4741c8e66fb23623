/* Unit tests for proxy/platform.c: waiting for a signal or a readable
 * descriptor, putting signals back, and a spawned process's name. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/platform.h"

static int setup(void **state)
{
    (void)state;
    return tf_signals_install();
}

static void test_signal_comes_before_a_readable_fd(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(tf_signals_wait_fd(p[0], 10), 0); /* neither: a timeout */
    assert_int_equal(write(p[1], "x", 1), 1);
    raise(SIGHUP);
    assert_int_equal(tf_signals_wait_fd(p[0], 1000), SIGHUP);
    assert_int_equal(tf_signals_wait_fd(p[0], 1000), -1); /* then the descriptor */
    close(p[1]);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(tf_signals_wait_fd(p[0], 1000), -1); /* its end of file too */
    close(p[0]);
}

static void test_requeued_signal_is_returned_again(void **state)
{
    (void)state;
    raise(SIGUSR1);
    assert_int_equal(tf_signals_wait_fd(-1, 1000), SIGUSR1);
    tf_signals_requeue(SIGUSR1);
    tf_signals_requeue(SIGTERM);
    assert_int_equal(tf_signals_wait(1000), SIGUSR1); /* in order */
    assert_int_equal(tf_signals_wait(1000), SIGTERM);
    assert_int_equal(tf_signals_wait(10), 0);
}

static void test_held_signals_are_put_back_a_stop_alone_or_each_once(void **state)
{
    (void)state;
    struct tf_signals_held held = { 0, 0 };
    assert_false(tf_signals_hold(&held, 0));
    assert_false(tf_signals_hold(&held, SIGCHLD));
    assert_false(tf_signals_hold(&held, SIGUSR1));
    assert_false(tf_signals_hold(&held, SIGCHLD));
    tf_signals_put_back(&held);
    int a = tf_signals_wait(1000), b = tf_signals_wait(1000);
    assert_true((a == SIGCHLD && b == SIGUSR1) || (a == SIGUSR1 && b == SIGCHLD));
    assert_int_equal(tf_signals_wait(10), 0); /* SIGCHLD once */
    assert_true(tf_signals_hold(&held, SIGTERM));
    assert_true(tf_signals_hold(&held, SIGINT));
    assert_int_equal(held.stop, SIGTERM); /* the first */
    tf_signals_put_back(&held);
    assert_int_equal(tf_signals_wait(1000), SIGTERM);
    assert_int_equal(tf_signals_wait(10), 0); /* the others no longer matter */
}

static void test_spawned_name_is_the_last_part_of_the_path(void **state)
{
    (void)state;
    char name[16] = "";
    tf_spawned_name("/usr/local/bin/tracfront");
    assert_int_equal(prctl(PR_GET_NAME, name), 0);
    assert_string_equal(name, "tracfront");
    tf_spawned_name("a-very-long-program-name");
    assert_int_equal(prctl(PR_GET_NAME, name), 0);
    assert_string_equal(name, "a-very-long-pro"); /* the kernel keeps 15 bytes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_comes_before_a_readable_fd),
        cmocka_unit_test(test_requeued_signal_is_returned_again),
        cmocka_unit_test(test_held_signals_are_put_back_a_stop_alone_or_each_once),
        cmocka_unit_test(test_spawned_name_is_the_last_part_of_the_path),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
