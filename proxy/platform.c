/* platform.c — POSIX implementation of platform.h: clock_gettime, sigtimedwait,
 * O_TMPFILE. It must stay free of tracfront logic: only system calls. */
#define _GNU_SOURCE
#include "proxy/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t tf_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int signal_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(signal_pipe[1], &b, 1) < 0) { /* full: a signal is pending anyway */ }
    errno = saved;
}

int tf_signals_install(void)
{
    if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 ||
        sigaction(SIGHUP, &sa, NULL) < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int tf_signals_wait(int timeout_ms)
{
    struct pollfd p = { .fd = signal_pipe[0], .events = POLLIN };
    uint64_t deadline = tf_now_us() + (uint64_t)timeout_ms * 1000u;
    for (;;) {
        uint64_t now = tf_now_us();
        if (now >= deadline)
            return 0;
        int rc = poll(&p, 1, (int)((deadline - now + 999) / 1000));
        if (rc < 0 && errno != EINTR)
            return 0;
        unsigned char b;
        while (rc > 0 && read(signal_pipe[0], &b, 1) == 1) {
            if (b != SIGHUP) /* reload arrives with the deployment issue */
                return b;
        }
    }
}

int tf_tempfile(void)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
#ifdef O_TMPFILE
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
#endif
    char path[4096];
    size_t n = strlen(dir);
    if (n > sizeof(path) - 32) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, dir, n);
    memcpy(path + n, "/tracfront-body-XXXXXX", 23);
    int tmp = mkostemp(path, O_CLOEXEC);
    if (tmp >= 0)
        unlink(path);
    return tmp;
}

int tf_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
