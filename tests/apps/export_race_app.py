"""For test_profile_app_hooks.py: an app shaped like repoze.profile under
Trac. Each request compiles its code again (exec of a string, as
cProfile.runctx does: a new code object per request, the last reference to
the one before), with 400 functions in it (a wide profile, so that an export
makes many Python objects, and so runs the garbage collector), and leaves
objects in reference cycles whose finalizer does a write (a connection or a
log handler the collector closes): a collection run by an export lets other
threads take the GIL, and a Clear among them frees the trees."""
import os

DEVNULL = os.open(os.devnull, os.O_WRONLY)
SRC = "".join("def g%d(x):\n    return x + 1\n" % i for i in range(400))
SRC += ("s = 0\nfor f in list(globals().values()):\n"
        "    if callable(f) and getattr(f, '__name__', '').startswith('g'):\n"
        "        s = f(s)\n")


class Conn:
    def __init__(self):
        self.me = self  # a cycle: only the collector frees it

    def __del__(self):
        os.write(DEVNULL, b"closed\n")  # lets the GIL go


def app(environ, start_response):
    ns = {}
    exec(compile(SRC, "<string>", "exec"), ns)
    for _ in range(20):
        Conn()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(ns["s"]).encode()]
