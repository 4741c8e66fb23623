/* platform.h — the POSIX-only pieces (clock, signals, temp files) behind one
 * small interface, so a Windows build swaps this file pair and nothing else.
 * Nothing here allocates or logs. */
#ifndef TF_PLATFORM_H
#define TF_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* Monotonic time in microseconds. */
uint64_t tf_now_us(void);

/* The time us microseconds from now on clock (CLOCK_MONOTONIC or
 * CLOCK_REALTIME), for pthread_cond_timedwait. */
struct timespec;
void tf_deadline_in(int clock, uint64_t us, struct timespec *deadline);

/* Catch SIGINT/SIGTERM/SIGHUP/SIGUSR1/SIGCHLD with a handler that only records them (to a
 * self-pipe), and ignore SIGPIPE and SIGXFSZ. No signal is blocked, so child processes the
 * app starts (Trac runs git) get the ordinary signal mask; a child forked
 * and not exec'd (os.fork()) gets the default actions back. platform.c also
 * defines system(), which leaves these alone (glibc's ignores SIGINT while
 * its command runs). Returns 0 or -1. */
int tf_signals_install(void);

/* While the app loads: SIGINT and SIGTERM end the process at once (their
 * default), so an import that hangs (a database that never answers) can be
 * interrupted; nothing is served yet. */
void tf_signals_default_while_starting(void);

/* After the app loaded: catch those signals again, as tf_signals_install.
 * An app may have set its own handler for one at import (Python's
 * signal.signal), which would have stopped shutdown and reload; taken(sig)
 * is called for each such signal before tracfront takes it back (as
 * mod_wsgi's WSGIRestrictSignal). Returns 0 or -1. */
int tf_signals_reclaim(void (*taken)(int sig));

/* Wait up to timeout_ms for a signal; returns it or 0. (The handler never
 * reaps children: the app's own subprocess calls keep working.) */
int tf_signals_wait(int timeout_ms);
/* The same, and also until fd (unless -1) is readable, or at its end of
 * file or error: then -1. A signal comes first when both are there. */
int tf_signals_wait_fd(int fd, int timeout_ms);
/* Put sig back, for the next tf_signals_wait to return (a wait that could
 * not act on it took it). */
void tf_signals_requeue(int sig);
/* The descriptor that is readable while a signal is pending, for a wait
 * that polls descriptors of its own (a curl multi handle); tf_signals_wait
 * then takes the signal. */
int tf_signals_fd(void);
/* Signals a wait took for its caller to act on after it: the first SIGINT
 * or SIGTERM, and the others once each (a bit per signal). */
struct tf_signals_held {
    int stop;
    unsigned others;
};
/* Note sig (0: none) in held; true if it is SIGINT or SIGTERM. */
bool tf_signals_hold(struct tf_signals_held *held, int sig);
/* Put held back for the next tf_signals_wait: the stop alone if one came
 * (the rest no longer matters), else each other signal once. */
void tf_signals_put_back(const struct tf_signals_held *held);

/* An anonymous, already-unlinked temporary file (O_TMPFILE where the system
 * has it). Returns an fd or -1 with errno set. */
int tf_tempfile(void);
/* The folder tf_tempfile makes them in: $TMPDIR, else /tmp. */
const char *tf_tempdir(void);

/* Number of online CPUs, at least 1. */
int tf_cpu_count(void);

/* The descriptors this process may open (RLIMIT_NOFILE's soft limit;
 * ULONG_MAX when unlimited). */
unsigned long tf_fd_limit(void);

/* One pause of a spin-wait loop (lets the other hyper-thread run). */
static inline void tf_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* calloc(1, n) for a request's own blocks: glibc's calloc never reuses a
 * block from the thread's cache of freed ones (tcache) as malloc does, and
 * cost 200-300 instructions a call here against malloc's 40. The empty asm
 * keeps the compiler from making the pair a calloc again (gcc and clang do
 * so for a malloc followed by a memset of its size). */
static inline void *tf_zalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        return NULL;
    __asm__ volatile("" : : "r"(p) : "memory");
    return memset(p, 0, n);
}

/* Fill buf with n bytes from the system's random source (getrandom).
 * Returns 0, or -1 with errno set. */
int tf_random_bytes(void *buf, size_t n);

/* How tf_spawn_self starts a child. */
struct tf_spawn {
    char *const *argv;                 /* this program's command line */
    const char *const *env;            /* "KEY=VALUE" added, NULL-terminated */
    bool (*left_out)(const char *var); /* true: an inherited "KEY=VALUE" not passed on */
    const char *ready_var, *go_var;    /* the names the pipes' descriptors are given in */
    int inherit_fds[2];                /* kept open across exec (each unless -1) */
};
/* Start this program again (how->argv) as a child whose environment is
 * this one's without what how->left_out says, then how->env, then two
 * pipes' numbers: ready_var=N it reports on (our end: *ready_fd) and
 * go_var=N it is told on (our end: *go_fd). The child gets SIGTERM if we
 * die. -1 on failure. */
pid_t tf_spawn_self(const struct tf_spawn *how, int *ready_fd, int *go_fd);
/* A child started so: name this process as ps, top and pgrep show it (exec
 * of /proc/self/exe named it "exe") after the last part of path (argv[0]),
 * as the kernel named the front. Before other threads start: each thread
 * takes its creator's name. */
void tf_spawned_name(const char *path);
/* A listening TCP socket (SO_REUSEADDR, backlog 1024, close-on-exec) bound
 * to addr; the bound port in *port. -1 with errno on failure. */
struct sockaddr;
int tf_listen_socket(const struct sockaddr *addr, unsigned addrlen, unsigned *port);
/* Read one line (without the newline) within timeout_ms. 0, or -1 on
 * timeout, end of file or error. */
int tf_read_line(int fd, char *buf, size_t cap, int timeout_ms);
/* A child that has ended (its pid, status in *status), 0 if none, -1 if no children. */
pid_t tf_reap(int *status);
/* SIGTERM (graceful) or SIGKILL. */
void tf_signal_process(pid_t pid, bool force);

#endif
