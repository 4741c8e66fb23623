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
/* Any thread, no GIL needed: text[0..len) as the error log takes the
 * app's lines (each stamped, control bytes but newline and tab escaped,
 * the last ended), for text that comes from the app (the stacks of a stuck
 * request's report). Malloc'd, its length in *out_len; NULL out of memory. */
char *wsgi_errors_lines(const char *text, size_t len, size_t *out_len);
/* Any thread: s escaped as app lines are, and its newlines too, so that it
 * stays inside the line it is put in (a thread's or a file's name).
 * Malloc'd, NULL out of memory. */
char *wsgi_errors_escape_inline(const char *s);

#endif
