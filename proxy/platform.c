/* platform.c — POSIX implementation of platform.h: clock_gettime, sigtimedwait,
 * O_TMPFILE. It must stay free of tracfront logic: only system calls. */
#define _GNU_SOURCE
#include "proxy/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

static void waited_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

void tf_signals_block(void)
{
    sigset_t set;
    waited_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int tf_signals_wait(int timeout_ms)
{
    sigset_t set;
    waited_set(&set);
    struct timespec ts = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L };
    for (;;) {
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGHUP)
            continue; /* reload arrives with the deployment issue */
        if (sig > 0)
            return sig;
        if (errno == EINTR)
            continue;
        return 0;
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
