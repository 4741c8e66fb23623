/* filewrapper.h — wsgi.file_wrapper (PEP 3333 "optional platform-specific
 * file handling"). Iterating it reads blocks from the file-like object; the
 * response code asks wsgi_filewrapper_file() whether it wraps a real regular
 * file, and then sends it with sendfile instead of iterating. */
#ifndef WSGI_FILEWRAPPER_H
#define WSGI_FILEWRAPPER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

extern PyTypeObject wsgi_filewrapper_type;

/* If obj is a file_wrapper around a regular file: a dup()ed fd (caller owns
 * it), the current offset and the bytes from there to the end; returns 1.
 * Returns 0 when it is not (iterate instead); never raises. */
int wsgi_filewrapper_file(PyObject *obj, int *fd, uint64_t *offset, uint64_t *size);

#endif
