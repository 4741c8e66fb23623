/* Unit tests for wsgi/environ.c's base environ with Python running:
 * REQUEST_METHOD, SERVER_PROTOCOL and REMOTE_ADDR kept in the base while
 * they repeat (keep_steady), and the base out of the collector's sight.
 * The integration test (test_reuse.py) cannot reach the base any more; here
 * the test reaches it as a hostile app would have, and puts in it a str
 * whose __del__ builds another request's environ (what another thread does
 * when such a __del__ lets go of the GIL), at the worst moment, every time. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/config.h"
#include "proxy/request.h"
#include "wsgi/environ.h"
#include "wsgi/filewrapper.h"
#include "wsgi/interp.h"

static struct tf_config cfg;
static struct tf_request get_req, other_req;
static char other_seen[128]; /* what the environ built inside __del__ said */
static int reentered;

static void request(struct tf_request *req, char *method, char *version, const char *addr)
{
    memset(req, 0, sizeof(*req));
    req->method = method;
    req->version = version;
    req->target = "/x";
    strcpy(req->remote_addr, addr);
    req->remote_port = 40000;
}

/* "METHOD PROTOCOL ADDR" of an environ for req (a fresh one each call). */
static void says(struct tf_request *req, char *out, size_t cap)
{
    bool outside;
    PyObject *env = wsgi_environ_build(req, Py_None, &outside); /* new ref */
    assert_non_null(env);
    PyObject *m = PyDict_GetItemString(env, "REQUEST_METHOD"); /* borrowed */
    PyObject *p = PyDict_GetItemString(env, "SERVER_PROTOCOL");
    PyObject *a = PyDict_GetItemString(env, "REMOTE_ADDR");
    assert_true(m && p && a && PyUnicode_Check(m) && PyUnicode_Check(p) && PyUnicode_Check(a));
    snprintf(out, cap, "%s %s %s", PyUnicode_AsUTF8(m), PyUnicode_AsUTF8(p), PyUnicode_AsUTF8(a));
    Py_DECREF(env);
}

/* Called by the planted value's __del__: another request, in the middle of
 * this one's keep_steady. */
static PyObject *reenter(PyObject *self, PyObject *arg)
{
    (void)self, (void)arg;
    reentered++;
    says(&other_req, other_seen, sizeof(other_seen));
    Py_RETURN_NONE;
}

static PyMethodDef reenter_def = { "reenter", reenter, METH_NOARGS, NULL };
static PyObject *evil_type; /* class Evil(str) whose __del__ calls reenter() */

static int setup(void **state)
{
    (void)state;
    Py_InitializeEx(0);
    cfg.listen_host = "127.0.0.1";
    cfg.mount = "";
    wsgi_ctx.cfg = &cfg;
    wsgi_ctx.errors = Py_NewRef(Py_None);
    if (PyType_Ready(&wsgi_filewrapper_type) < 0 || !(wsgi_ctx.base_environ = wsgi_environ_base()))
        return -1;
    PyObject *globals = PyDict_New(), *fn = PyCFunction_New(&reenter_def, NULL);
    if (!globals || !fn || PyDict_SetItemString(globals, "reenter", fn) < 0 ||
        PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) < 0)
        return -1;
    PyObject *r = PyRun_String("class Evil(str):\n"
                               "    def __del__(self):\n"
                               "        reenter()\n",
                               Py_file_input, globals, globals);
    if (!r)
        return -1;
    Py_DECREF(r);
    evil_type = Py_NewRef(PyDict_GetItemString(globals, "Evil"));
    Py_DECREF(fn);
    Py_DECREF(globals);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    Py_CLEAR(evil_type);
    Py_CLEAR(wsgi_ctx.base_environ);
    Py_CLEAR(wsgi_ctx.errors);
    return Py_FinalizeEx();
}

/* What an embedded CPython leaves allocated at its end (the ASan build's
 * leak check, scripts/test): its own, not this test's. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libpython3\n";
}

static void test_the_base_is_out_of_the_collectors_sight(void **state)
{
    (void)state;
    PyObject *base = wsgi_ctx.base_environ;
    char seen[128];
    request(&get_req, "GET", "HTTP/1.1", "127.0.0.1");
    request(&other_req, "PUT", "HTTP/1.0", "127.0.0.9");
    for (int i = 0; i < 3; i++) { /* keep_steady changes the base each time */
        says(&get_req, seen, sizeof(seen));
        says(&other_req, seen, sizeof(seen));
    }
    PyObject *port = PyUnicode_FromString("8080"); /* as wsgi_interp_set_port does */
    assert_int_equal(PyDict_SetItemString(base, "SERVER_PORT", port), 0);
    Py_DECREF(port);
    assert_false(PyObject_GC_IsTracked(base));
    PyObject *gc = PyImport_ImportModule("gc");
    PyObject *all = gc ? PyObject_CallMethod(gc, "get_objects", NULL) : NULL;
    assert_non_null(all);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all); i++)
        assert_ptr_not_equal(PyList_GET_ITEM(all, i), base);
    Py_DECREF(all);
    Py_DECREF(gc);
}

/* The base's value of key replaced by a str subclass whose __del__ builds
 * the other request's environ; then the GET request replaces it (its
 * __del__ runs there), and the GET requests after it must say GET. */
static void poison_then_ask(const char *key)
{
    char seen[128];
    request(&get_req, "GET", "HTTP/1.1", "127.0.0.1");
    request(&other_req, "POST", "HTTP/1.0", "127.0.0.2");
    says(&get_req, seen, sizeof(seen));
    assert_string_equal(seen, "GET HTTP/1.1 127.0.0.1");
    PyObject *base = wsgi_ctx.base_environ;
    PyObject *value = PyObject_CallOneArg(evil_type, PyDict_GetItemString(base, key)); /* new ref */
    assert_non_null(value);
    assert_int_equal(PyDict_SetItemString(base, key, value), 0);
    Py_DECREF(value); /* the base holds it alone now */
    reentered = 0;
    other_seen[0] = 0;
    says(&get_req, seen, sizeof(seen)); /* replaces the planted value: its __del__ runs */
    assert_string_equal(seen, "GET HTTP/1.1 127.0.0.1");
    assert_int_equal(reentered, 1);
    assert_string_equal(other_seen, "POST HTTP/1.0 127.0.0.2");
    for (int i = 0; i < 3; i++) {
        says(&get_req, seen, sizeof(seen));
        assert_string_equal(seen, "GET HTTP/1.1 127.0.0.1");
    }
    says(&other_req, seen, sizeof(seen));
    assert_string_equal(seen, "POST HTTP/1.0 127.0.0.2");
    says(&get_req, seen, sizeof(seen));
    assert_string_equal(seen, "GET HTTP/1.1 127.0.0.1");
}

static void test_a_value_let_go_by_keep_steady_runs_no_code_under_it(void **state)
{
    (void)state;
    poison_then_ask("REQUEST_METHOD");
    poison_then_ask("SERVER_PROTOCOL");
    poison_then_ask("REMOTE_ADDR");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_base_is_out_of_the_collectors_sight),
        cmocka_unit_test(test_a_value_let_go_by_keep_steady_runs_no_code_under_it),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
