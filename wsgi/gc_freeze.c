/* gc_freeze.c — see gc_freeze.h. */
#include "wsgi/gc_freeze.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "proxy/log.h"
#include "wsgi/interp.h"

static uint64_t requests_done, next_freeze = 1; /* guarded by the GIL */

void wsgi_gc_request_done(void)
{
    if (!wsgi_ctx.cfg->gc_freeze || ++requests_done < next_freeze)
        return;
    next_freeze = next_freeze >= 10000 ? UINT64_MAX : next_freeze * 10;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* never disturb one that is pending */
    PyObject *gc = PyImport_ImportModule("gc");
    PyObject *collected = gc ? PyObject_CallMethod(gc, "collect", NULL) : NULL;
    PyObject *frozen = collected ? PyObject_CallMethod(gc, "freeze", NULL) : NULL;
    PyObject *count = frozen ? PyObject_CallMethod(gc, "get_freeze_count", NULL) : NULL;
    if (count)
        tf_log_info("--gc-freeze: after %llu request%s, %ld objects are frozen (the collector "
                    "skips them)", (unsigned long long)requests_done,
                    requests_done > 1 ? "s" : "", PyLong_AsLong(count));
    else
        wsgi_log_exception("--gc-freeze: freezing failed");
    PyErr_Clear();
    Py_XDECREF(count);
    Py_XDECREF(frozen);
    Py_XDECREF(collected);
    Py_XDECREF(gc);
    PyErr_Restore(type, value, tb);
}
