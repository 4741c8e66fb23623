/* platform.c — POSIX implementation of platform.h: clock_gettime, sigtimedwait,
 * O_TMPFILE. It must stay free of tracfront logic: only system calls. */
#define _GNU_SOURCE
#include "proxy/platform.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/wait.h>

uint64_t tf_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void tf_deadline_in(int clock, uint64_t us, struct timespec *deadline)
{
    clock_gettime(clock, deadline);
    uint64_t ns = (uint64_t)deadline->tv_nsec + us * 1000u;
    deadline->tv_sec += (time_t)(ns / 1000000000u);
    deadline->tv_nsec = (long)(ns % 1000000000u);
}

static int signal_pipe[2] = { -1, -1 };
static const int handled[] = { SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGCHLD };
#define N_HANDLED (sizeof(handled) / sizeof(handled[0]))

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(signal_pipe[1], &b, 1) < 0) { /* full: a signal is pending anyway */ }
    errno = saved;
}

void tf_signals_default_while_starting(void)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}

int tf_signals_reclaim(void (*taken)(int sig))
{
    for (size_t i = 0; i < N_HANDLED; i++) {
        struct sigaction now;
        if (sigaction(handled[i], NULL, &now) < 0)
            return -1;
        bool left_default = (handled[i] == SIGINT || handled[i] == SIGTERM) &&
                            now.sa_handler == SIG_DFL;
        if (now.sa_handler != on_signal && !left_default && taken)
            taken(handled[i]);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 ||
        sigaction(SIGHUP, &sa, NULL) < 0 || sigaction(SIGUSR1, &sa, NULL) < 0)
        return -1;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP; /* a worker died: the front reacts at once */
    return sigaction(SIGCHLD, &sa, NULL);
}

/* In a fork()'s child (the app's os.fork(), multiprocessing's "fork"): the
 * handlers would write the child's signals into the server's pipe, where a
 * SIGTERM to the child (Pool.terminate()) stopped the server and left the
 * child running. The child gets the default actions back, as after exec. */
static void signals_default_after_fork(void)
{
    for (size_t i = 0; i < N_HANDLED; i++) {
        struct sigaction now;
        if (sigaction(handled[i], NULL, &now) == 0 && now.sa_handler == on_signal)
            signal(handled[i], SIG_DFL);
    }
}

int tf_signals_install(void)
{
    if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0 || tf_signals_reclaim(NULL) < 0)
        return -1;
    static bool watching;
    if (!watching && pthread_atfork(NULL, NULL, signals_default_after_fork) != 0)
        return -1;
    watching = true;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a log past a file-size limit: the write fails, said once */
    return 0;
}

int tf_signals_wait(int timeout_ms)
{
    return tf_signals_wait_fd(-1, timeout_ms);
}

int tf_signals_wait_fd(int fd, int timeout_ms)
{
    struct pollfd p[2] = { { .fd = signal_pipe[0], .events = POLLIN },
                           { .fd = fd, .events = POLLIN } }; /* poll skips fd -1 */
    uint64_t deadline = tf_now_us() + (uint64_t)timeout_ms * 1000u;
    for (;;) {
        uint64_t now = tf_now_us();
        if (now >= deadline)
            return 0;
        int rc = poll(p, 2, (int)((deadline - now + 999) / 1000));
        if (rc < 0 && errno != EINTR)
            return 0;
        unsigned char b;
        if (rc > 0 && p[0].revents && read(signal_pipe[0], &b, 1) == 1)
            return b;
        if (rc > 0 && p[1].revents)
            return -1;
    }
}

void tf_signals_requeue(int sig)
{
    on_signal(sig);
}

int tf_signals_fd(void)
{
    return signal_pipe[0];
}

bool tf_signals_hold(struct tf_signals_held *held, int sig)
{
    if (sig == SIGINT || sig == SIGTERM) {
        if (!held->stop)
            held->stop = sig;
        return true;
    }
    if (sig > 0 && sig < 32)
        held->others |= 1u << sig;
    return false;
}

void tf_signals_put_back(const struct tf_signals_held *held)
{
    for (int sig = 1; sig < 32 && !held->stop; sig++)
        if (held->others & (1u << sig))
            on_signal(sig);
    if (held->stop)
        on_signal(held->stop);
}

/* The C library's system(), for the app's os.system(): glibc's ignores
 * SIGINT and SIGQUIT in the whole process while the command runs (POSIX, for
 * an interactive caller), so a Ctrl-C to the server was lost meanwhile. This
 * one leaves the caller's signals alone; the command gets SIGINT and SIGQUIT
 * at their defaults unless the process ignores them, and the caller's signal
 * mask, as glibc gives them. The executable exports it (CMakeLists.txt), so
 * libpython calls it. */
extern char **environ;
int system(const char *command)
{
    if (!command)
        return 1; /* a shell is there */
    posix_spawnattr_t attr;
    sigset_t defaults, mask;
    sigemptyset(&defaults);
    static const int interactive[] = { SIGINT, SIGQUIT };
    for (size_t i = 0; i < 2; i++) {
        struct sigaction now;
        if (sigaction(interactive[i], NULL, &now) == 0 && now.sa_handler != SIG_IGN)
            sigaddset(&defaults, interactive[i]);
    }
    pthread_sigmask(SIG_SETMASK, NULL, &mask);
    if (posix_spawnattr_init(&attr) != 0)
        return -1;
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &mask);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    char *argv[] = { "sh", "-c", "--", (char *)command, NULL }; /* as glibc calls it */
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", NULL, &attr, argv, environ), status;
    posix_spawnattr_destroy(&attr);
    if (rc != 0) { /* POSIX: as if the shell had exited with 127 */
        errno = rc;
        return 127 << 8;
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

const char *tf_tempdir(void)
{
    const char *dir = getenv("TMPDIR");
    return dir && *dir ? dir : "/tmp";
}

int tf_tempfile(void)
{
    const char *dir = tf_tempdir();
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

unsigned long tf_fd_limit(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) < 0 || r.rlim_cur == RLIM_INFINITY)
        return ULONG_MAX;
    return (unsigned long)r.rlim_cur;
}

/* In a forked child: close every descriptor from 3 up but the ones kept
 * (close_range is a plain system call: async-signal-safe). */
static void close_others(int a, int b, int c, int d)
{
    int keep[4] = { a, b, c, d };
    for (int i = 0; i < 4; i++) /* sort the four */
        for (int j = i + 1; j < 4; j++)
            if (keep[j] < keep[i]) {
                int t = keep[i];
                keep[i] = keep[j];
                keep[j] = t;
            }
    unsigned lo = 3;
    for (int i = 0; i < 4; i++) {
        if (keep[i] < (int)lo)
            continue;
        if ((unsigned)keep[i] > lo)
            close_range(lo, (unsigned)keep[i] - 1, 0);
        lo = (unsigned)keep[i] + 1;
    }
    close_range(lo, ~0U, 0);
}

/* environ without what how->left_out says, then how->env, then the pipes'
 * numbers (in fdvar and govar, of fdcap and gocap bytes). */
static char **child_environment(const struct tf_spawn *how, int fd, char *fdvar, size_t fdcap,
                                int go, char *govar, size_t gocap)
{
    extern char **environ;
    size_t n = 0, extra = 0;
    while (environ[n])
        n++;
    while (how->env[extra])
        extra++;
    char **out = calloc(n + extra + 3, sizeof(*out));
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!how->left_out || !how->left_out(environ[i]))
            out[k++] = environ[i];
    for (size_t i = 0; i < extra; i++)
        out[k++] = (char *)how->env[i];
    snprintf(fdvar, fdcap, "%s=%d", how->ready_var, fd);
    snprintf(govar, gocap, "%s=%d", how->go_var, go);
    out[k++] = fdvar;
    out[k] = govar;
    return out;
}

pid_t tf_spawn_self(const struct tf_spawn *how, int *ready_fd, int *go_fd)
{
    const int *inherit_fds = how->inherit_fds;
    int pipefd[2], gofd[2];
    char fdvar[64], govar[64];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(gofd, O_CLOEXEC) < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    char **envp = child_environment(how, pipefd[1], fdvar, sizeof(fdvar), gofd[0], govar,
                                    sizeof(govar));
    pid_t parent = getpid();
    pid_t pid = envp ? fork() : -1;
    if (pid == 0) { /* child: async-signal-safe calls only, until exec */
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the front */
        if (getppid() != parent)
            _exit(1);
        fcntl(pipefd[1], F_SETFD, 0); /* the pipes survive exec */
        fcntl(gofd[0], F_SETFD, 0);
        for (int i = 0; i < 2; i++)
            if (inherit_fds[i] >= 0)
                fcntl(inherit_fds[i], F_SETFD, 0);
        /* e.g. libcurl's, without CLOEXEC */
        close_others(pipefd[1], gofd[0], inherit_fds[0], inherit_fds[1]);
        execve("/proc/self/exe", how->argv, envp);
        _exit(127);
    }
    free(envp);
    close(pipefd[1]);
    close(gofd[0]);
    if (pid < 0) {
        close(pipefd[0]);
        close(gofd[1]);
        return -1;
    }
    *ready_fd = pipefd[0];
    *go_fd = gofd[1];
    return pid;
}

void tf_spawned_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    prctl(PR_SET_NAME, slash ? slash + 1 : path); /* the kernel cuts it to 15 bytes */
}

int tf_read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    uint64_t deadline = tf_now_us() + (uint64_t)timeout_ms * 1000u;
    while (n + 1 < cap) {
        uint64_t now = tf_now_us();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (now >= deadline)
            return -1;
        int rc = poll(&p, 1, (int)((deadline - now + 999) / 1000));
        if (rc < 0 && errno == EINTR) /* SIGCHLD from another worker, say */
            continue;
        if (rc <= 0)
            return -1;
        ssize_t got = read(fd, buf + n, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = 0;
    return 0;
}

pid_t tf_reap(int *status)
{
    return waitpid(-1, status, WNOHANG);
}

void tf_signal_process(pid_t pid, bool force)
{
    if (pid > 0)
        kill(pid, force ? SIGKILL : SIGTERM);
}

int tf_random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int tf_listen_socket(const struct sockaddr *addr, unsigned addrlen, unsigned *port)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int on = 1;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
        bind(fd, addr, (socklen_t)addrlen) < 0 || listen(fd, 1024) < 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &blen) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    *port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                              : ((struct sockaddr_in *)&bound)->sin_port);
    return fd;
}
