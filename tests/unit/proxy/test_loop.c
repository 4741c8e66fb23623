/* Unit tests for proxy/loop.c: posted calls run on the loop's thread in
 * order, tf_loop_call waits, watched descriptors and ticks are called there,
 * a wake from the loop itself does not let it sleep, what is posted after a
 * stop runs at tf_loop_free, and a call that steps away keeps the loop when
 * it is quick, hands the loop to another thread when it blocks, and what it
 * posts (its wake skipped) runs once the loop is back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "proxy/loop.h"

struct record {
    pthread_mutex_t lock;
    int order[16];
    int n;
    struct tf_loop *seen_loop; /* tf_loop_current() where the calls ran */
};

struct step {
    struct record *rec;
    int value;
};

static void note(void *arg)
{
    struct step *s = arg;
    pthread_mutex_lock(&s->rec->lock);
    s->rec->order[s->rec->n++] = s->value;
    s->rec->seen_loop = tf_loop_current();
    pthread_mutex_unlock(&s->rec->lock);
}

static int note_and_answer(void *arg) /* for tf_loop_call: its result comes back */
{
    note(arg);
    return 7;
}

static int count(struct record *rec)
{
    pthread_mutex_lock(&rec->lock);
    int n = rec->n;
    pthread_mutex_unlock(&rec->lock);
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void test_posted_calls_run_in_order_on_the_loop(void **state)
{
    (void)state;
    char err[128];
    struct tf_loop *loop = tf_loop_start(3, err, sizeof(err));
    assert_non_null(loop);
    assert_int_equal(tf_loop_index(loop), 3);
    assert_null(tf_loop_current());
    struct record rec = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct step steps[5];
    for (int i = 0; i < 5; i++) {
        steps[i] = (struct step){ &rec, i };
        assert_int_equal(tf_loop_post(loop, note, &steps[i]), 0);
    }
    struct step last = { &rec, 99 };
    assert_int_equal(tf_loop_call(loop, note_and_answer, &last), 7); /* returns once it ran */
    assert_int_equal(count(&rec), 6);
    for (int i = 0; i < 5; i++)
        assert_int_equal(rec.order[i], i);
    assert_int_equal(rec.order[5], 99);
    assert_ptr_equal(rec.seen_loop, loop);
    tf_loop_free(loop);
}

struct pipe_watch {
    struct tf_loop *loop;
    int fds[2];
    int reads;                   /* atomic */
    int wrong;                   /* atomic: calls with the wrong events, thread or data */
};

static void on_readable(void *ctx, int fd, uint32_t events)
{
    struct pipe_watch *w = ctx; /* no cmocka assertion off the test's thread */
    char c;
    if (!(events & EPOLLIN) || read(fd, &c, 1) != 1 || tf_loop_current() != w->loop)
        __atomic_add_fetch(&w->wrong, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&w->reads, 1, __ATOMIC_SEQ_CST);
}

static int watch_pipe(void *arg)
{
    struct pipe_watch *w = arg;
    return tf_loop_watch(w->loop, w->fds[0], EPOLLIN, on_readable, w);
}

static int unwatch_pipe(void *arg)
{
    struct pipe_watch *w = arg;
    tf_loop_unwatch(w->loop, w->fds[0]);
    return 0;
}

static void test_watched_descriptor_is_called_on_the_loop(void **state)
{
    (void)state;
    char err[128];
    struct pipe_watch w = { 0 };
    assert_int_equal(pipe(w.fds), 0);
    w.loop = tf_loop_start(0, err, sizeof(err));
    assert_non_null(w.loop);
    assert_int_equal(tf_loop_call(w.loop, watch_pipe, &w), 0);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(write(w.fds[1], "x", 1), 1);
        for (int t = 0; t < 500 && __atomic_load_n(&w.reads, __ATOMIC_SEQ_CST) < i; t++)
            sleep_ms(2);
        assert_int_equal(__atomic_load_n(&w.reads, __ATOMIC_SEQ_CST), i);
    }
    tf_loop_call(w.loop, unwatch_pipe, &w);
    assert_int_equal(write(w.fds[1], "y", 1), 1);
    sleep_ms(50);
    assert_int_equal(__atomic_load_n(&w.reads, __ATOMIC_SEQ_CST), 3); /* no longer called */
    assert_int_equal(w.wrong, 0);
    tf_loop_free(w.loop);
    close(w.fds[0]);
    close(w.fds[1]);
}

struct ticker {
    struct tf_loop *loop;
    int ticks;                   /* atomic */
    int wake_self_left;          /* loop thread: wakes still to make from the tick */
};

static long tick(void *ctx)
{
    struct ticker *t = ctx;
    __atomic_add_fetch(&t->ticks, 1, __ATOMIC_SEQ_CST);
    if (t->wake_self_left > 0) {
        t->wake_self_left--;
        tf_loop_wake(t->loop); /* from the loop itself: another turn at once */
    }
    return -1; /* otherwise only when woken */
}

static int add_ticker(void *arg)
{
    struct ticker *t = arg;
    return tf_loop_add_tick(t->loop, tick, t);
}

static int remove_ticker(void *arg)
{
    struct ticker *t = arg;
    tf_loop_remove_tick(t->loop, tick, t);
    return 0;
}

static void test_ticks_and_wakes(void **state)
{
    (void)state;
    char err[128];
    struct ticker t = { .wake_self_left = 10 };
    t.loop = tf_loop_start(0, err, sizeof(err));
    assert_non_null(t.loop);
    assert_int_equal(tf_loop_call(t.loop, add_ticker, &t), 0);
    /* the ten wakes from the tick itself each bring one more turn */
    for (int i = 0; i < 500 && __atomic_load_n(&t.ticks, __ATOMIC_SEQ_CST) < 11; i++)
        sleep_ms(2);
    int settled = __atomic_load_n(&t.ticks, __ATOMIC_SEQ_CST);
    assert_true(settled >= 11);
    sleep_ms(50);
    assert_int_equal(__atomic_load_n(&t.ticks, __ATOMIC_SEQ_CST), settled); /* then it sleeps */
    tf_loop_wake(t.loop); /* from another thread */
    for (int i = 0; i < 500 && __atomic_load_n(&t.ticks, __ATOMIC_SEQ_CST) == settled; i++)
        sleep_ms(2);
    assert_true(__atomic_load_n(&t.ticks, __ATOMIC_SEQ_CST) > settled);
    tf_loop_call(t.loop, remove_ticker, &t);
    int after = __atomic_load_n(&t.ticks, __ATOMIC_SEQ_CST);
    tf_loop_wake(t.loop);
    sleep_ms(50);
    assert_int_equal(__atomic_load_n(&t.ticks, __ATOMIC_SEQ_CST), after);
    tf_loop_free(t.loop);
}

static void test_posted_after_stop_run_at_free(void **state)
{
    (void)state;
    char err[128];
    struct tf_loop **loops = tf_loops_start(2, err, sizeof(err));
    assert_non_null(loops);
    assert_int_equal(tf_loop_index(loops[1]), 1);
    tf_loops_stop(loops, 2);
    struct record rec = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct step a = { &rec, 1 }, b = { &rec, 2 };
    assert_int_equal(tf_loop_post(loops[0], note, &a), 0);
    assert_int_equal(tf_loop_post(loops[1], note, &b), 0);
    assert_int_equal(count(&rec), 0); /* nobody runs them yet */
    tf_loop_run_posted(loops[0]);
    assert_int_equal(count(&rec), 1);
    tf_loops_free(loops, 2);
    assert_int_equal(count(&rec), 2);
    assert_int_equal(rec.order[1], 2);
}

/* --- stepping away --- */

struct away {
    struct tf_loop *loop;
    int gate;                   /* atomic: the call returns once it is 1 */
    int entered, ran;           /* atomic */
    struct tf_loop *current_in_call;
    pthread_t call_thread;
};

static void away_call(void *arg)
{
    struct away *a = arg;
    a->current_in_call = tf_loop_current();
    a->call_thread = pthread_self();
    __atomic_store_n(&a->entered, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&a->gate, __ATOMIC_SEQ_CST))
        sleep_ms(1);
    __atomic_store_n(&a->ran, 1, __ATOMIC_SEQ_CST);
}

static void step_away_from_loop(void *arg) /* posted: runs as a loop callback */
{
    struct away *a = arg;
    assert_int_equal(tf_loop_step_away(a->loop, away_call, a), 0);
}

static int which_thread(void *arg)
{
    *(pthread_t *)arg = pthread_self();
    return 0;
}

static void wait_until_ran(struct away *a)
{
    for (int i = 0; i < 2000 && !__atomic_load_n(&a->ran, __ATOMIC_SEQ_CST); i++)
        sleep_ms(1);
    assert_int_equal(__atomic_load_n(&a->ran, __ATOMIC_SEQ_CST), 1);
}

static void wait_until_entered(struct away *a)
{
    for (int i = 0; i < 2000 && !__atomic_load_n(&a->entered, __ATOMIC_SEQ_CST); i++)
        sleep_ms(1);
    assert_int_equal(__atomic_load_n(&a->entered, __ATOMIC_SEQ_CST), 1);
}

static void test_a_quick_call_away_keeps_the_loop_on_its_thread(void **state)
{
    (void)state;
    char err[128];
    struct tf_loop *loop = tf_loop_start(0, err, sizeof(err));
    assert_non_null(loop);
    int kept = 0; /* a round can lose its loop if this machine stalls the thread 1 ms */
    for (int round = 0; round < 10; round++) {
        struct away a = { .loop = loop, .gate = 1 };
        pthread_t before, after;
        tf_loop_call(loop, which_thread, &before);
        assert_int_equal(tf_loop_post(loop, step_away_from_loop, &a), 0);
        wait_until_ran(&a);
        assert_null(a.current_in_call); /* away: not the loop's thread meanwhile */
        assert_true(pthread_equal(a.call_thread, before));
        tf_loop_call(loop, which_thread, &after);
        kept += pthread_equal(after, before); /* it took its loop back */
    }
    assert_true(kept >= 5);
    tf_loop_free(loop);
}

static void test_a_blocked_call_away_hands_the_loop_to_another_thread(void **state)
{
    (void)state;
    char err[128];
    struct away a = { .gate = 0 };
    a.loop = tf_loop_start(0, err, sizeof(err));
    assert_non_null(a.loop);
    assert_int_equal(tf_loop_post(a.loop, step_away_from_loop, &a), 0);
    wait_until_entered(&a);
    struct record rec = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct step s = { &rec, 1 };
    /* the call is blocked, yet the loop runs this: another thread has it */
    assert_int_equal(tf_loop_call(a.loop, note_and_answer, &s), 7);
    assert_ptr_equal(rec.seen_loop, a.loop);
    pthread_t runner;
    tf_loop_call(a.loop, which_thread, &runner);
    assert_false(pthread_equal(runner, a.call_thread));
    assert_int_equal(__atomic_load_n(&a.ran, __ATOMIC_SEQ_CST), 0);
    __atomic_store_n(&a.gate, 1, __ATOMIC_SEQ_CST);
    wait_until_ran(&a);
    /* the loop stays with its new thread; a blocked call from there moves
     * it again (to a spare) */
    struct away b = { .loop = a.loop, .gate = 0 };
    assert_int_equal(tf_loop_post(b.loop, step_away_from_loop, &b), 0);
    struct step s2 = { &rec, 2 };
    assert_int_equal(tf_loop_call(b.loop, note_and_answer, &s2), 7);
    __atomic_store_n(&b.gate, 1, __ATOMIC_SEQ_CST);
    wait_until_ran(&b);
    assert_true(pthread_equal(b.call_thread, runner));
    assert_int_equal(count(&rec), 2);
    tf_loop_free(a.loop); /* every thread of the crew ends */
}

struct post_while_away {
    struct tf_loop *loop;
    struct step step;
};

static void post_and_return(void *arg)
{
    struct post_while_away *p = arg;
    assert_int_equal(tf_loop_post(p->loop, note, &p->step), 0); /* the loop is away */
}

static void step_away_to_post(void *arg)
{
    struct post_while_away *p = arg;
    assert_int_equal(tf_loop_step_away(p->loop, post_and_return, p), 0);
}

static void test_a_call_posted_while_away_runs_when_the_loop_is_back(void **state)
{
    (void)state;
    char err[128];
    struct record rec = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct post_while_away p = { .step = { &rec, 5 } };
    p.loop = tf_loop_start(0, err, sizeof(err));
    assert_non_null(p.loop);
    assert_int_equal(tf_loop_post(p.loop, step_away_to_post, &p), 0);
    /* the thread back on its loop runs posted calls before it sleeps */
    for (int i = 0; i < 500 && count(&rec) == 0; i++)
        sleep_ms(1);
    assert_int_equal(count(&rec), 1);
    assert_ptr_equal(rec.seen_loop, p.loop);
    tf_loop_free(p.loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_posted_calls_run_in_order_on_the_loop),
        cmocka_unit_test(test_watched_descriptor_is_called_on_the_loop),
        cmocka_unit_test(test_ticks_and_wakes),
        cmocka_unit_test(test_posted_after_stop_run_at_free),
        cmocka_unit_test(test_a_quick_call_away_keeps_the_loop_on_its_thread),
        cmocka_unit_test(test_a_blocked_call_away_hands_the_loop_to_another_thread),
        cmocka_unit_test(test_a_call_posted_while_away_runs_when_the_loop_is_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
