/* input.h — wsgi.input: a read-only stream over the request body spool
 * (memory or temp file), with read(), readline(), readlines() and iteration.
 * The object holds a reference to its request until the request's task ends
 * (wsgi_input_detach), never longer: an app that keeps environ (Trac does,
 * in reference cycles that only the collector frees) must not keep the
 * request's temporary files open. The task ends with the response, after the
 * iterable is used up and closed: PEP 3333 lets a generator read the body as
 * it yields, close() read the rest, wsgi.file_wrapper wrap wsgi.input. Reads
 * after that raise RuntimeError, as mod_wsgi's do, never touching the
 * request. */
#ifndef WSGI_INPUT_H
#define WSGI_INPUT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

struct tf_request;

extern PyTypeObject wsgi_input_type;

/* New ref (takes its own request reference), or NULL with an exception. */
PyObject *wsgi_input_new(struct tf_request *req);
/* GIL held, the task is over: drop the request (a read that released the
 * GIL holds its own reference until it is back). Later reads raise. */
void wsgi_input_detach(PyObject *input);
/* Detach input and drop the task's reference to it (steals it): kept for
 * another task when nothing else holds it (input.c). GIL held. */
void wsgi_input_release(PyObject *input);
/* Drop the kept ones (before finalizing; GIL held, no task running). */
void wsgi_input_pool_clear(void);

#endif
