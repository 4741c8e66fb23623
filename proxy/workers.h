/* workers.h — --workers N and --reload: this process becomes the front
 * (HTTP, routing, auth, latency) and runs the app in N worker processes, the
 * same program started with --worker on private loopback ports; app requests
 * are forwarded to the least busy worker through the upstream engine.
 *
 * A reload (files changed, SIGHUP, a worker died) starts a new generation;
 * traffic moves to it once every new worker is ready, and the old workers
 * get SIGTERM only when nothing is in flight to them, so no request is lost.
 * If the new generation cannot start, the old one keeps serving.
 *
 * Threads: dispatch runs on I/O threads; everything else on the main thread.
 * The current generation is swapped under a mutex; a generation is freed
 * only when no request refers to it. */
#ifndef TF_WORKERS_H
#define TF_WORKERS_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/config.h"
#include "proxy/request.h"

struct tf_upstream;
struct tf_workers;

/* No workers yet (requests get 503 until tf_workers_begin). argv is this
 * process's command line. NULL on out of memory. */
struct tf_workers *tf_workers_new(const struct tf_config *cfg, char **argv,
                                  struct tf_upstream *up);
/* The secret the workers trust X-Tracfront-* headers with (the front's
 * cfg->worker_token must be set to it). */
const char *tf_workers_token(const struct tf_workers *w);
/* Start the first generation and wait until it is ready; front_port is
 * the port the front listens on (the workers' SERVER_PORT). 0, or -1 with
 * err. */
int tf_workers_begin(struct tf_workers *w, unsigned front_port, char *err, size_t errlen);
/* A tf_dispatch_fn: forward req to a worker. -1 when no worker is alive. */
int tf_workers_submit(void *workers, struct tf_request *req);
/* Main thread, about once a second: reap workers, retire drained
 * generations, and with --reload look for changed files. */
void tf_workers_tick(struct tf_workers *w);
/* Main thread: start a new generation now (SIGHUP). */
void tf_workers_reload(struct tf_workers *w, const char *why);
/* Stop every worker (SIGTERM, then SIGKILL after timeout seconds), free. */
void tf_workers_stop(struct tf_workers *w, double timeout);

/* The current workers' origins ("http://127.0.0.1:PORT"), for the front's
 * profile pages: a malloc'd array of malloc'd strings, or NULL. */
char **tf_workers_origins(struct tf_workers *w, size_t *n);
void tf_workers_origins_free(char **origins, size_t n);

/* A blocking request to one worker (the front's profile pages): returns the
 * status (0 when unreachable) and the body, malloc'd, in *body. */
unsigned tf_workers_fetch(const char *origin, const char *method, const char *path,
                          char **body, size_t *len);

#endif
