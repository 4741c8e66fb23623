/* platform.h — the POSIX-only pieces (clock, signals, temp files) behind one
 * small interface, so a Windows build swaps this file pair and nothing else.
 * Nothing here allocates or logs. */
#ifndef TF_PLATFORM_H
#define TF_PLATFORM_H

#include <stdint.h>

/* Monotonic time in microseconds. */
uint64_t tf_now_us(void);

/* Catch SIGINT/SIGTERM/SIGHUP with a handler that only records them (to a
 * self-pipe), and ignore SIGPIPE. No signal is blocked, so child processes the
 * app starts (Trac runs git) get the ordinary signal mask. Returns 0 or -1. */
int tf_signals_install(void);

/* Wait up to timeout_ms for SIGINT/SIGTERM; returns the signal or 0. */
int tf_signals_wait(int timeout_ms);

/* An anonymous, already-unlinked temporary file (O_TMPFILE where the system
 * has it). Returns an fd or -1 with errno set. */
int tf_tempfile(void);

/* Number of online CPUs, at least 1. */
int tf_cpu_count(void);

#endif
