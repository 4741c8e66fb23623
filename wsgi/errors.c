/* errors.c — the wsgi.errors stream (see errors.h). write() encodes to UTF-8
 * and hands the bytes to the error log in one write(); nothing is buffered, so
 * nothing is lost if the process dies. */
#include "wsgi/errors.h"

#include "proxy/log.h"

static PyObject *errors_write(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "wsgi.errors.write() takes str, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    PyObject *bytes = PyUnicode_AsEncodedString(arg, "utf-8", "backslashreplace"); /* new ref */
    if (!bytes)
        return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(bytes);
    Py_BEGIN_ALLOW_THREADS
    tf_log_raw(PyBytes_AS_STRING(bytes), (size_t)n);
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
}

static PyObject *errors_writelines(PyObject *self, PyObject *lines)
{
    PyObject *it = PyObject_GetIter(lines); /* new ref */
    PyObject *line;
    if (!it)
        return NULL;
    while ((line = PyIter_Next(it))) { /* new ref */
        PyObject *r = errors_write(self, line);
        Py_DECREF(line);
        if (!r) {
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *errors_flush(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_NONE;
}

static PyObject *errors_false(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_FALSE;
}

static PyMethodDef errors_methods[] = {
    { "write", errors_write, METH_O, "Write a str to the error log." },
    { "writelines", errors_writelines, METH_O, "Write each str of an iterable." },
    { "flush", errors_flush, METH_NOARGS, "No-op: nothing is buffered." },
    { "isatty", errors_false, METH_NOARGS, NULL },
    { "readable", errors_false, METH_NOARGS, NULL },
    { NULL, NULL, 0, NULL },
};

static PyObject *errors_encoding(PyObject *self, void *closure)
{
    (void)self;
    (void)closure;
    return PyUnicode_FromString("utf-8");
}

static PyGetSetDef errors_getset[] = {
    { "encoding", errors_encoding, NULL, NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

PyTypeObject wsgi_errors_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracfront.ErrorStream",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.errors: writes to tracfront's error log",
    .tp_methods = errors_methods,
    .tp_getset = errors_getset,
    .tp_new = PyType_GenericNew,
};

PyObject *wsgi_errors_new(void)
{
    return PyObject_CallNoArgs((PyObject *)&wsgi_errors_type);
}
