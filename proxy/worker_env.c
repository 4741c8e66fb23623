/* worker_env.c — a worker's side of the front's handshake (see
 * worker_env.h). Main thread only; nothing here runs once the app's threads
 * have started but the READY/GO lines, still on the main thread. */
#include "proxy/worker_env.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/auth.h"
#include "proxy/log.h"
#include "proxy/nonces.h"
#include "proxy/platform.h"

bool tf_worker_env_inherited(const char *var)
{
    static const char *const prefixes[] = { "TF_WORKER_", "TF_FRONT_", "TF_AUTH_",
                                            TF_WORKER_VAR_LISTEN_FD "=" };
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(*prefixes); i++)
        if (!strncmp(var, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

/* The handshake's variables (the auth ones are taken at once, see below). */
static const char *const worker_vars[] = { TF_WORKER_VAR_LISTEN_FD, TF_WORKER_VAR_FRONT_PORT,
                                           TF_WORKER_VAR_FRONT_CONTROL, TF_WORKER_VAR_READY_FD,
                                           TF_WORKER_VAR_GO_FD };
#define N_WORKER_VARS (sizeof(worker_vars) / sizeof(*worker_vars))
static char worker_values[N_WORKER_VARS][24]; /* "" = not set */

/* A descriptor the front passed (its number in value) is not for the
 * programs the app starts, at import too: a shell left in the background
 * would hold the listening socket open after a stop (new connections
 * waiting in its backlog, not refused), or the ready pipe the front reads. */
static void close_on_exec(const char *value)
{
    char *end;
    long fd = value && *value ? strtol(value, &end, 10) : -1;
    if (fd > STDERR_FILENO && fd <= INT_MAX && !*end)
        fcntl((int)fd, F_SETFD, FD_CLOEXEC);
}

/* The Digest key and nonces' table, as TF_AUTH_SECRET is: not for the app
 * or the programs it runs. */
static void take_auth(bool digest_auth)
{
    const char *secret = getenv(TF_WORKER_VAR_AUTH_SECRET);
    if (secret)
        tf_auth_share_key(secret);
    unsetenv(TF_WORKER_VAR_AUTH_SECRET);
    const char *nonces = getenv(TF_WORKER_VAR_NONCES_FD); /* unset: the front has none */
    close_on_exec(nonces); /* kept open when it is not the table */
    if (nonces && tf_nonces_table_share(nonces, digest_auth) < 0)
        tf_log_error(TF_WORKER_VAR_NONCES_FD "=%s is not the front's table of Digest nonces "
                     "(%m): left alone; this worker answers stale to the others' nonces", nonces);
    unsetenv(TF_WORKER_VAR_NONCES_FD);
}

void tf_worker_env_take(bool digest_auth)
{
    take_auth(digest_auth);
    for (size_t i = 0; i < N_WORKER_VARS; i++) {
        const char *value = getenv(worker_vars[i]);
        snprintf(worker_values[i], sizeof(worker_values[i]), "%s", value ? value : "");
        if (strstr(worker_vars[i], "_FD"))
            close_on_exec(value);
        unsetenv(worker_vars[i]);
    }
}

/* What tf_worker_env_take found in name, or NULL. */
static const char *taken(const char *name)
{
    for (size_t i = 0; i < N_WORKER_VARS; i++)
        if (!strcmp(name, worker_vars[i]))
            return worker_values[i][0] ? worker_values[i] : NULL;
    return NULL;
}

unsigned tf_worker_env_number(const char *name)
{
    const char *value = taken(name);
    return value ? (unsigned)strtoul(value, NULL, 10) : 0;
}

void tf_worker_env_report_ready(unsigned control_port)
{
    const char *fd = taken(TF_WORKER_VAR_READY_FD);
    char line[32];
    int n = snprintf(line, sizeof(line), TF_WORKER_READY "\n", control_port);
    if (!fd || write(atoi(fd), line, (size_t)n) != n)
        tf_log_error("worker: cannot tell the front it is ready");
    if (fd)
        close(atoi(fd));
}

bool tf_worker_env_wait_go(int timeout_ms)
{
    char line[16];
    int go = (int)tf_worker_env_number(TF_WORKER_VAR_GO_FD);
    bool told = tf_read_line(go, line, sizeof(line), timeout_ms) == 0 &&
                !strcmp(line, TF_WORKER_GO);
    close(go);
    return told;
}
