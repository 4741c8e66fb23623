"""Functions whose names the profiler's exports must carry intact, one group
per path, for tests/integration/test_profile_exports.py:

/cafe        a non-ASCII function name (café)
/legacy      a file name that is not UTF-8: os.fsdecode leaves a surrogate
             in co_filename, as importing caf\\xe9_legacy.py from disk does
/same-names  functions sharing a name in one file: two classes' run, two
             lambdas
/eval        eval and exec make a new code object per call, all labelled
             <string>:1(<module>), each calling g
/control     a newline and a tab in a function name, a newline in a file name
/wide        many tiny functions, each well under a microsecond
/many?N      N distinct functions (made once per N), each called once
/mine?N      as /many, in a file named after this process: each worker of a
             front has functions of its own (answers with its pid)
/deep?N      one call chain N frames deep (the recursion limit raised for it)
"""
import os
import sys
import threading


def café():
    n = 0
    for i in range(200):  # long enough for a whole microsecond of its own
        n += i
    return n


def _compiled(filename, name="f"):
    """A function defined in a file of that name, renamed to name, that runs
    for a few microseconds of its own."""
    ns = {}
    source = "def f():\n    n = 0\n    for i in range(200):\n        n += i\n    return n\n"
    exec(compile(source, filename, "exec"), ns)
    f = ns["f"]
    f.__code__ = f.__code__.replace(co_name=name)
    return f


legacy = _compiled(os.fsdecode(b"/nowhere/caf\xe9_legacy.py"), "legacy")
newline_name = _compiled("names.py", "new\nline")
tab_name = _compiled("names.py", "tab\there")
newline_file = _compiled("file\nwith newline.py", "in_odd_file")


class A:
    def run(self):
        return 1


class B:
    def run(self):
        return 2


first = lambda: 1  # noqa: E731  (two lambdas: the point of the test)
second = lambda: 2  # noqa: E731


def g():
    return 1


def tiny0():
    return 0


def tiny1():
    return 1


def tiny2():
    return 2


def wide():
    for f in (tiny0, tiny1, tiny2):
        f()


_many = {}
_many_lock = threading.Lock()  # compiled once: two sets of code objects are two sets of nodes


def many(n, file="many_%d.py"):
    with _many_lock:
        if (n, file) not in _many:
            source = "".join("def f%d():\n    return %d\n" % (i, i) for i in range(n))
            ns = {}
            exec(compile(source, file % n, "exec"), ns)
            _many[n, file] = [ns["f%d" % i] for i in range(n)]
    for f in _many[n, file]:
        f()


def deep(n):
    return deep(n - 1) + 1 if n else 0


def app(environ, start_response):
    path, body = environ["PATH_INFO"], b"ok\n"
    if path == "/cafe":
        café()
    elif path == "/legacy":
        legacy()
    elif path == "/same-names":
        A().run()
        B().run()
        first()
        second()
    elif path == "/eval":
        eval("g()")
        exec("g()")
    elif path == "/control":
        newline_name()
        tab_name()
        newline_file()
    elif path == "/wide":
        wide()
    elif path == "/many":
        many(int(environ["QUERY_STRING"]))
    elif path == "/mine":
        many(int(environ["QUERY_STRING"]), "mine_%%d_pid%d.py" % os.getpid())
        body = b"%d\n" % os.getpid()
    elif path == "/deep":
        sys.setrecursionlimit(200000)
        deep(int(environ["QUERY_STRING"]))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
