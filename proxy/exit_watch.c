/* exit_watch.c — the bound on Python's end at a stop (see exit_watch.h). The
 * watch thread never takes the GIL and never calls into Python: it reads
 * /proc and the signal pipe, logs, and _exit()s. */
#include "proxy/exit_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proxy/log.h"
#include "proxy/platform.h"
#include "proxy/upstream.h"
#include "proxy/workers.h"

/* Bound Python's end by deadline unless an earlier bound is set. Returns
 * whether it did. */
static bool bound_by(struct tf_exit_watch *w, uint64_t deadline, bool graceful)
{
    pthread_mutex_lock(&w->lock);
    bool sooner = !w->deadline || deadline < w->deadline;
    if (sooner) {
        w->deadline = deadline;
        w->graceful = graceful;
    }
    pthread_mutex_unlock(&w->lock);
    return sooner;
}

/* "; still running: 'a', 'b'" for the threads of w->waited whose task is
 * still there (no GIL: the watch may fire while Python holds it), else "".
 * w->lock held. */
static void name_still_running(const struct tf_exit_watch *w, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < w->n_waited && used < cap; i++) {
        char task[64], name[64];
        snprintf(task, sizeof(task), "/proc/self/task/%ld", w->waited[i].native_id);
        if (access(task, F_OK) == 0)
            used += (size_t)snprintf(out + used, cap - used, "%s'%s'",
                                     used ? ", " : "; still running: ",
                                     tf_log_escape(w->waited[i].name, name, sizeof(name)));
    }
}

/* The bound passed: say what Python's end was still doing, and exit. */
static __attribute__((noreturn)) void exit_unfinished(struct tf_exit_watch *w)
{
    char still[TF_EXIT_WATCH_WAITED_MAX * 72] = "";
    pthread_mutex_lock(&w->lock); /* the main thread may be noting the threads */
    bool graceful = w->graceful;
    if (graceful)
        name_still_running(w, still, sizeof(still));
    pthread_mutex_unlock(&w->lock);
    if (graceful) {
        tf_log_error("Python's end did not finish within --graceful-timeout (at least %d s "
                     "after the requests for the profile's hand-over or files, the network "
                     "threads' ends and Python's: threading's shutdown waits for the app's "
                     "non-daemon threads, then the atexit handlers run)%s; exiting without it",
                     TF_FORCED_EXIT_S, still);
    } else {
        tf_log_error("Python did not finish within %d s (a non-daemon thread that never ends, "
                     "an atexit handler that blocks, or a request that never releases the "
                     "GIL): exiting without it", TF_FORCED_EXIT_S);
    }
    tf_upstream_say_unsaid(); /* the network's end may not have reached it */
    _exit(0);
}

static void *watch_exit(void *arg)
{
    struct tf_exit_watch *w = arg;
    for (;;) {
        uint64_t now = tf_now_us();
        pthread_mutex_lock(&w->lock);
        uint64_t deadline = w->deadline;
        pthread_mutex_unlock(&w->lock);
        if (deadline && now >= deadline)
            exit_unfinished(w);
        if (w->front && !w->front_gone && getppid() != w->front) { /* also under a longer bound */
            w->front_gone = true;
            if (bound_by(w, now + TF_FORCED_EXIT_S * 1000000u, false))
                tf_log_info("the front (pid %d) is gone: Python gets %d s more to finish",
                            (int)w->front, TF_FORCED_EXIT_S);
            continue;
        }
        /* at most a second: tf_exit_watch_arm's bound is read again by then */
        uint64_t left = deadline ? (deadline - now + 999) / 1000 : 1000;
        int sig = tf_signals_wait_fd(w->done[0], left < 1000 ? (int)left : 1000);
        if (sig < 0)
            return NULL; /* done */
        if ((sig == SIGINT || sig == SIGTERM) && !w->front &&
            bound_by(w, tf_now_us() + TF_FORCED_EXIT_S * 1000000u, false))
            tf_log_error("signal %d again: Python gets %d s more to finish", sig,
                         TF_FORCED_EXIT_S);
        else if (sig == SIGUSR1)
            tf_workers_reopen_logs(NULL);
    }
}

void tf_exit_watch_start(struct tf_exit_watch *w, pid_t front, bool bounded)
{
    *w = (struct tf_exit_watch){ .front = front, .done = { -1, -1 },
                                 .deadline = bounded ? tf_now_us() + TF_FORCED_EXIT_S * 1000000u
                                                     : 0 };
    pthread_mutex_init(&w->lock, NULL);
    int rc = pipe(w->done) < 0 ? errno : 0;
    for (int i = 0; i < 2 && rc == 0; i++)
        fcntl(w->done[i], F_SETFD, FD_CLOEXEC); /* not for the programs Python starts */
    if (rc == 0)
        rc = pthread_create(&w->thread, NULL, watch_exit, w);
    if (rc == 0)
        return;
    if (w->done[0] >= 0) {
        close(w->done[0]);
        close(w->done[1]);
    }
    w->done[0] = w->done[1] = -1;
    if (bounded || (front && getppid() != front)) {
        tf_log_error("cannot watch Python's end (%s): SIGALRM ends this process if Python has "
                     "not finished within %d s", strerror(rc), TF_FORCED_EXIT_S);
        signal(SIGALRM, SIG_DFL);
        alarm(TF_FORCED_EXIT_S);
    } else {
        tf_log_error("cannot watch Python's end (%s): a second SIGINT/SIGTERM ends this "
                     "process at once", strerror(rc));
        tf_signals_default_while_starting();
    }
}

void tf_exit_watch_arm(struct tf_exit_watch *w, uint64_t stop_began, double graceful_timeout)
{
    uint64_t now = tf_now_us(), least = now + TF_FORCED_EXIT_S * 1000000u;
    uint64_t deadline = stop_began + (uint64_t)(graceful_timeout * 1e6);
    deadline = deadline > least ? deadline : least;
    if (w->done[1] < 0) {
        signal(SIGALRM, SIG_DFL);
        alarm((unsigned)((deadline - now + 999999) / 1000000u));
        return;
    }
    bound_by(w, deadline, true);
}

void tf_exit_watch_note_threads(struct tf_exit_watch *w)
{
    if (w->done[1] < 0)
        return;
    struct wsgi_thread waited[TF_EXIT_WATCH_WAITED_MAX];
    size_t n = wsgi_interp_threads_waited(waited, TF_EXIT_WATCH_WAITED_MAX);
    pthread_mutex_lock(&w->lock);
    memcpy(w->waited, waited, n * sizeof(*waited));
    w->n_waited = n;
    pthread_mutex_unlock(&w->lock);
}

void tf_exit_watch_end(struct tf_exit_watch *w)
{
    if (w->done[1] < 0)
        return;
    /* a byte, not only the close: a child forked meanwhile (an atexit handler,
     * multiprocessing) holds the pipe's write end too */
    if (write(w->done[1], "x", 1) != 1) { /* an empty pipe: cannot fail */ }
    close(w->done[1]);
    pthread_join(w->thread, NULL);
    close(w->done[0]);
    pthread_mutex_destroy(&w->lock);
}

void tf_exit_without_finalizing(pid_t front)
{
    struct tf_exit_watch bounded;
    tf_exit_watch_start(&bounded, front, true);
    wsgi_interp_stop(false);
    _exit(0); /* the I/O threads may still be logging: no tf_log_close() under them */
}
