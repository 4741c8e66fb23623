/* worker_env.h — the handshake between a front (--workers) and its workers.
 * The front starts each worker with the variables named here and two pipes;
 * the worker takes them out of its environment before the app is imported
 * (os.environ and the programs the app runs have no use for them, and a
 * descriptor they name is not for those programs), says "READY <control
 * port>" once it can serve, and accepts on the shared socket once told
 * "GO". The names and lines are defined here for both sides; the rest of
 * this file pair is the worker's side (workers.c is the front's). */
#ifndef TF_WORKER_ENV_H
#define TF_WORKER_ENV_H

#include <stdbool.h>

#define TF_WORKER_VAR_LISTEN_FD "TF_LISTEN_FD"         /* the shared listening socket */
#define TF_WORKER_VAR_FRONT_PORT "TF_FRONT_PORT"       /* the front's public port (SERVER_PORT) */
#define TF_WORKER_VAR_FRONT_CONTROL "TF_FRONT_CONTROL" /* the front's loopback control port */
#define TF_WORKER_VAR_READY_FD "TF_WORKER_READY_FD"    /* the pipe the worker says READY on */
#define TF_WORKER_VAR_GO_FD "TF_WORKER_GO_FD"          /* the pipe the front says GO on */
#define TF_WORKER_VAR_AUTH_SECRET "TF_AUTH_SECRET"     /* the Digest nonces' key (auth.h) */
#define TF_WORKER_VAR_NONCES_FD "TF_AUTH_NONCES_FD"    /* the nonces' shared table (nonces.h) */

#define TF_WORKER_READY "READY %u" /* a line: the worker's control port */
#define TF_WORKER_GO "GO"          /* a line: accept on the shared socket from now on */

/* Is var ("KEY=VALUE") one a front gives its workers (the names above, and
 * any of their families: TF_WORKER_*, TF_FRONT_*, TF_AUTH_*)? One the front
 * inherited (started from a worker's subprocess, or by hand) must not reach
 * them: getenv would find it before the front's own, and a descriptor's
 * number in it may name any of theirs. */
bool tf_worker_env_inherited(const char *var);

/* A worker, on the main thread before other threads start and before the
 * app is imported: take the front's variables out of the environment, mark
 * the descriptors they name close-on-exec, share the front's Digest key and
 * nonces' table (digest_auth: this worker uses the table), and keep the
 * rest for the calls below. */
void tf_worker_env_take(bool digest_auth);
/* A number the front passed (a port, or a descriptor's): name is one of
 * the TF_WORKER_VAR_ above but the auth ones; 0 if the front did not. */
unsigned tf_worker_env_number(const char *name);
/* Tell the front this worker is ready, its control port control_port, and
 * close the pipe. Logs an error if the front cannot be told. */
void tf_worker_env_report_ready(unsigned control_port);
/* Wait up to timeout_ms for the front's GO, and close the pipe. false: the
 * front gave up on this worker's generation, or is gone. */
bool tf_worker_env_wait_go(int timeout_ms);

#endif
