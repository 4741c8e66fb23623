/* errors.h — wsgi.errors: one text stream shared by every request that writes
 * to the error log; also installed as sys.stderr so tracebacks and print()
 * to stderr land in the same log, as under mod_wsgi. */
#ifndef WSGI_ERRORS_H
#define WSGI_ERRORS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern PyTypeObject wsgi_errors_type;

/* New ref, or NULL with an exception set. */
PyObject *wsgi_errors_new(void);

#endif
