/* filewrapper.c — wsgi.file_wrapper (see filewrapper.h). */
#include "wsgi/filewrapper.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

struct filewrapper {
    PyObject_HEAD
    PyObject *filelike;     /* owned */
    Py_ssize_t blksize;
};

static int fw_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = { "filelike", "block_size", NULL };
    struct filewrapper *fw = (struct filewrapper *)self;
    PyObject *filelike;
    Py_ssize_t blksize = 8192;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|n:file_wrapper", kwlist, &filelike, &blksize))
        return -1;
    if (blksize <= 0)
        blksize = 8192;
    Py_INCREF(filelike);
    Py_XSETREF(fw->filelike, filelike);
    fw->blksize = blksize;
    return 0;
}

static void fw_dealloc(PyObject *self)
{
    struct filewrapper *fw = (struct filewrapper *)self;
    Py_XDECREF(fw->filelike);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *fw_next(PyObject *self)
{
    struct filewrapper *fw = (struct filewrapper *)self;
    if (!fw->filelike)
        return NULL;
    PyObject *data = PyObject_CallMethod(fw->filelike, "read", "n", fw->blksize); /* new ref */
    if (!data)
        return NULL;
    if (PyObject_Length(data) > 0)
        return data;
    if (PyErr_Occurred())
        PyErr_Clear();
    Py_DECREF(data);
    return NULL;
}

static PyObject *fw_close(PyObject *self, PyObject *unused)
{
    (void)unused;
    struct filewrapper *fw = (struct filewrapper *)self;
    if (fw->filelike && PyObject_HasAttrString(fw->filelike, "close")) {
        PyObject *r = PyObject_CallMethod(fw->filelike, "close", NULL);
        if (!r)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyMethodDef fw_methods[] = {
    { "close", fw_close, METH_NOARGS, "Close the wrapped file-like object." },
    { NULL, NULL, 0, NULL },
};

PyTypeObject wsgi_filewrapper_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracfront.FileWrapper",
    .tp_basicsize = sizeof(struct filewrapper),
    .tp_dealloc = fw_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.file_wrapper(filelike, block_size=8192)",
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = fw_next,
    .tp_methods = fw_methods,
    .tp_init = fw_init,
    .tp_new = PyType_GenericNew,
};

/* Call filelike.NAME() expecting an int; -1 (error cleared) otherwise. */
static long long call_int(PyObject *filelike, const char *name)
{
    PyObject *r = PyObject_CallMethod(filelike, name, NULL); /* new ref */
    long long v = -1;
    if (r && PyLong_Check(r))
        v = PyLong_AsLongLong(r);
    Py_XDECREF(r);
    if (PyErr_Occurred())
        PyErr_Clear();
    return v;
}

int wsgi_filewrapper_file(PyObject *obj, int *fd, uint64_t *offset, uint64_t *size)
{
    if (Py_TYPE(obj) != &wsgi_filewrapper_type)
        return 0;
    PyObject *filelike = ((struct filewrapper *)obj)->filelike;
    if (!filelike || !PyObject_HasAttrString(filelike, "fileno"))
        return 0;
    long long raw = call_int(filelike, "fileno");
    if (raw < 0)
        return 0;
    struct stat st;
    if (fstat((int)raw, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    long long pos = PyObject_HasAttrString(filelike, "tell") ? call_int(filelike, "tell")
                                                             : (long long)lseek((int)raw, 0, SEEK_CUR);
    if (pos < 0 || pos > st.st_size)
        return 0;
    int copy = fcntl((int)raw, F_DUPFD_CLOEXEC, 3);
    if (copy < 0)
        return 0;
    *fd = copy;
    *offset = (uint64_t)pos;
    *size = (uint64_t)(st.st_size - pos);
    return 1;
}
