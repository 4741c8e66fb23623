/* workers.h — --workers N and --reload: this process becomes the front. It
 * opens the listening socket and runs N worker processes (the same program
 * with --worker) that all accept on it and serve everything themselves —
 * routes, auth, the app in-process — so no request pays for a hop between
 * processes. The front keeps a control server on a loopback port: workers
 * pass it the profiler's pages, and it adds up every worker's profile.
 *
 * A reload (files changed, SIGHUP, a worker died) starts a new generation;
 * once every new worker is ready the old ones get SIGTERM: they stop
 * accepting (the socket stays open for the new ones, so no connection is
 * lost), finish what they have, and exit. If the new generation cannot
 * start, the old one keeps serving; if none of it is left, the front
 * answers 503 meanwhile (unavailable.h). A worker whose watchdog
 * interrupted a request is replaced alone the same way
 * (tf_workers_ask_replace).
 *
 * While a generation starts (a blocking wait, up to --worker-start-timeout)
 * SIGINT/SIGTERM kill it at once and stay pending, and other signals are
 * put back for the caller's tf_signals_wait once the wait is over.
 *
 * Threads: everything here runs on the main thread, except
 * tf_workers_origins(), tf_workers_measuring() and tf_workers_ask_replace(),
 * which the control server calls (under the lock), and
 * tf_workers_reopen_logs(NULL). */
#ifndef TF_WORKERS_H
#define TF_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/config.h"

struct tf_workers;

/* No workers yet. argv is this process's command line, listen_fd the public
 * listening socket the workers inherit (tf_workers_stop closes it). NULL on
 * out of memory. */
struct tf_workers *tf_workers_new(const struct tf_config *cfg, char **argv, int listen_fd);
/* Start the first generation and wait until it is ready. public_port is
 * the workers' SERVER_PORT, control_port the front's control server. 0;
 * 1 if SIGINT/SIGTERM came first (the starting workers are killed, and the
 * signal is pending again for tf_signals_wait); or -1 with err. */
int tf_workers_begin(struct tf_workers *w, unsigned public_port, unsigned control_port,
                     char *err, size_t errlen);
/* Main thread, about once a second and on SIGCHLD: reap workers, retire old
 * generations, and with --reload look for changed files. */
void tf_workers_tick(struct tf_workers *w);
/* Main thread: start a new generation now (SIGHUP, a worker died, a file
 * changed). asked: a reload someone asked for (SIGHUP, a --reload change),
 * which systemd is told of (RELOADING=1, then READY=1); a restart after a
 * crash only updates the service's STATUS=. */
void tf_workers_reload(struct tf_workers *w, const char *why, bool asked);
/* Any thread (the front's control server): the worker at origin ("http://
 * 127.0.0.1:PORT", its control port) had a request interrupted by its
 * watchdog (--request-timeout-action 504), which may have left the app half
 * done in it, and asks to be replaced; completed: the requests it had
 * completed without an interrupt. The main thread is woken (its tick on
 * SIGCHLD) and replaces that one worker as a reload replaces a generation:
 * a new worker starts, takes its place, and it stops accepting, finishes
 * its requests, hands its profile over and exits; one [warn] line names
 * both. Unless the 3 workers before it in its place were each replaced
 * before they completed a request, and it has completed none either: it is
 * kept then (one [error] line), until an interrupt after it has completed
 * one. false if origin is no worker of the current generation (a reload or
 * the stop replaces it already). */
bool tf_workers_ask_replace(struct tf_workers *w, const char *origin, uint64_t completed);
/* Main thread: send sig to every worker still running (all have their
 * signal handlers: a generation is listed once it is ready). */
void tf_workers_forward(struct tf_workers *w, int sig);
/* SIGUSR1 (logrotate), whatever the process is doing: reopen this
 * process's logs (saying so in the new error log once both are), then pass
 * the signal on to w's workers. w NULL: a process without workers (any
 * thread that reads the signals then). */
void tf_workers_reopen_logs(struct tf_workers *w);
/* Main thread, once the stop began: close listen_fd (and stop answering
 * 503 on it), and have every worker close its own copy (POST quiesce, as
 * a reload does: to all at once, waiting TF_FETCH_QUICK_MS at most), so
 * that new connections are refused from then on. A SIGINT/SIGTERM that
 * comes meanwhile ends the wait and stays pending. tf_workers_stop does it
 * if not done yet. */
void tf_workers_close_socket(struct tf_workers *w);
/* Stop every worker: tf_workers_close_socket (if not done), SIGTERM, wait
 * for them to exit (each hands its profile to the control server once its
 * requests are done: keep that serving meanwhile), and SIGKILL those left
 * after timeout seconds, or at once on a second SIGINT/SIGTERM to this
 * process (from tf_signals_wait). A worker that ends or is killed without
 * having handed its profile over is named in the log when profile files are
 * to be written (not after a second signal: then none is). Returns 0 (all
 * exited), -1 (some killed at the timeout) or that second signal. */
int tf_workers_stop(struct tf_workers *w, double timeout);
/* After tf_workers_stop, once the control server no longer reads w. */
void tf_workers_free(struct tf_workers *w);

/* Main thread, for each worker of a new generation (a reload) before it
 * accepts: fn(origin) tells it what the command line cannot (the profiler
 * Start/Stop state). Set once, before tf_workers_begin. */
void tf_workers_on_new_worker(struct tf_workers *w, void (*fn)(const char *origin));
/* Main thread, for a worker reaped by tf_workers_tick() without the front
 * holding its profile (it crashed, was killed, or stopped with requests
 * still running): fn(origin), without the lock. Not when a live worker has
 * the same origin (its port was reused). Set once, before tf_workers_begin. */
void tf_workers_on_lost_worker(struct tf_workers *w, void (*fn)(const char *origin));

/* The control origins ("http://127.0.0.1:PORT") of the workers that hold a
 * profile: the current ones, and old ones still finishing their requests
 * whose profile the front has not taken over yet. A malloc'd array of
 * malloc'd strings, or NULL. Any thread. */
char **tf_workers_origins(struct tf_workers *w, size_t *n);
void tf_workers_origins_free(char **origins, size_t n);
/* Whether origin is one of those workers; if so, and absorbed is true, it
 * is one no longer (the front holds its profile). Any thread. */
bool tf_workers_measuring(struct tf_workers *w, const char *origin, bool absorbed);

#endif
