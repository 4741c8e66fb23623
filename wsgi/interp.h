/* interp.h — the one Python interpreter: started once on the main thread,
 * the app loaded, then the GIL released for the app threads. Holds the WSGI
 * context that every request reads.
 *
 * struct wsgi_context: every field is written once by the main thread in
 * wsgi_interp_start() (GIL held) and only read afterwards, with the GIL held. */
#ifndef WSGI_INTERP_H
#define WSGI_INTERP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>

#include "proxy/config.h"

struct wsgi_context {
    PyObject *app;            /* the WSGI callable (new ref) */
    PyObject *base_environ;   /* dict copied into every environ (new ref) */
    PyObject *errors;         /* the shared wsgi.errors stream, also sys.stderr (new ref) */
    PyObject *output;         /* sys.stdout: print() to the error log too (new ref) */
    const struct tf_config *cfg;
    unsigned server_port;     /* SERVER_PORT, set once the socket is bound */
};

extern struct wsgi_context wsgi_ctx;

/* Initialise Python (Debian's, or --venv), set sys.path, load the app
 * and build the base environ; release the GIL. Returns 0, or -1 with a
 * message naming the flag in err (the traceback goes to the error log). */
int wsgi_interp_start(const struct tf_config *cfg, char *err, size_t errlen);

/* Set SERVER_PORT in the base environ once the port is known. */
void wsgi_interp_set_port(unsigned port);
/* True when SIGINT's Python handler is Python's own (KeyboardInterrupt),
 * which `import signal` sets: not a handler of the app's. */
bool wsgi_interp_sigint_is_pythons(void);

/* A thread that Python's end waits for (threading's non-daemon threads,
 * concurrent.futures' executor threads): plain C, so that it can be named
 * without the GIL. */
struct wsgi_thread {
    long native_id; /* its task: /proc/self/task/<native_id> while it runs */
    char name[48];  /* threading's name, cut to fit */
};
/* Up to cap of the threads Python's end will wait for, but this one, into
 * out, for naming those still running should that end not finish (the main
 * thread, app threads idle, before wsgi_interp_stop(true)). Returns how
 * many: 0 also when threading was never imported (errors are cleared). */
size_t wsgi_interp_threads_waited(struct wsgi_thread *out, size_t cap);

/* Take the GIL back on the main thread and finalize (atexit handlers run).
 * With app threads possibly still inside Python (graceful timeout passed),
 * run only the atexit handlers instead of finalizing, and flush the
 * streams, as finalizing would. */
void wsgi_interp_stop(bool threads_idle);

/* Write the current exception's traceback to the error log and clear it. */
void wsgi_log_exception(const char *context_fmt, ...);

#endif
