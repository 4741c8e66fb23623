/* input.h — wsgi.input: a read-only stream over the request body spool
 * (memory or temp file), with read(), readline(), readlines() and iteration.
 * The object holds a reference to its request, so an app that keeps environ
 * past the response still reads valid memory. */
#ifndef WSGI_INPUT_H
#define WSGI_INPUT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

struct tf_request;

extern PyTypeObject wsgi_input_type;

/* New ref (takes its own request reference), or NULL with an exception. */
PyObject *wsgi_input_new(struct tf_request *req);

#endif
