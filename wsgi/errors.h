/* errors.h — the streams that write to the error log: wsgi.errors, shared by
 * every request and also installed as sys.stderr, and sys.stdout, so that
 * tracebacks, print() and logging land in the same log, as under mod_wsgi
 * (nothing goes to the process's own stdout, which nobody reads and which
 * C stdio would hold back until exit). Each line the app writes is stamped
 * "[date] [app] " and its control bytes but newline and tab are escaped. */
#ifndef WSGI_ERRORS_H
#define WSGI_ERRORS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern PyTypeObject wsgi_errors_type;

/* A new stream; name is what its `name` attribute says ("<stderr>"), a
 * string that outlives it. New ref, or NULL with an exception set. */
PyObject *wsgi_errors_new(const char *name);

/* GIL held: end and write out the unfinished line this thread holds for
 * the stream, if any (its flush()). */
void wsgi_errors_flush(PyObject *stream);
/* GIL held: the same for both streams, when a thread's part of a request
 * ends, so no later output of the thread's joins a request's last line. */
void wsgi_errors_end_part(void);
/* GIL held, at the interpreter's end: the same for every thread's. */
void wsgi_errors_flush_all(void);
/* GIL held: heading as an [error] line of tracfront's and right under it
 * text (a str, borrowed; NULL: none), its lines stamped and escaped as the
 * streams' are, in one write made without the GIL (a traceback and what it
 * belongs to). Returns 0, or -1 with an exception set when text could not
 * be written (the heading was). */
int wsgi_errors_log_block(const char *heading, PyObject *text);

#endif
