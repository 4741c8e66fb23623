"""For test_profile_app_hooks.py: an app shaped like repoze.profile under
Trac. Each request compiles its code again (exec of a string, as
cProfile.runctx does: a new code object per request, the last reference to
the one before), with 400 functions in it (a wide profile, so that an export
makes many Python objects, and so runs the garbage collector), and leaves
objects in reference cycles whose finalizer does a write (a connection or a
log handler the collector closes): a collection run by an export lets other
threads take the GIL, and a Clear among them frees the trees.

flat_app is for the exports that make no Python object of their own but the
(file, line, name) tuples they hash a function's name with (callgrind, the
function table and its page): a tuple comes from the free list, and only
when that is empty does making one count towards a collection. So the app,
before it waits on the network (a sleep: the GIL is let go), leaves the
collector due (automatic collection off while it makes its garbage) and the
3-tuple free list empty (it holds more 3-tuples than the list keeps): the
first tuple an export hashes with collects, and a finalizer waits (a socket's
close), so a Clear runs in the middle of the export's walk."""
import gc
import os
import time

DEVNULL = os.open(os.devnull, os.O_WRONLY)
SRC = "".join("def g%d(x):\n    return x + 1\n" % i for i in range(400))
SRC += ("s = 0\nfor f in list(globals().values()):\n"
        "    if callable(f) and getattr(f, '__name__', '').startswith('g'):\n"
        "        s = f(s)\n")
FREE_TUPLES_MAX = 2000  # CPython's PyTuple_MAXFREELIST
THRESHOLDS = gc.get_threshold()


class Conn:
    def __init__(self, wait=0.0):
        self.me = self  # a cycle: only the collector frees it
        self.wait = wait

    def __del__(self):
        os.write(DEVNULL, b"closed\n")  # lets the GIL go
        if self.wait:
            time.sleep(self.wait)  # long enough for a waiting thread to take it


def run(ns):
    exec(compile(SRC, "<string>", "exec"), ns)


def app(environ, start_response):
    ns = {}
    run(ns)
    for _ in range(20):
        Conn()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(ns["s"]).encode()]


def flat_app(environ, start_response):
    ns = {}
    run(ns)
    gc.disable()
    Conn(0.002)
    held = [(i, i, i) for i in range(FREE_TUPLES_MAX + 100)]
    gc.set_threshold(1)  # due: the next GC-tracked object made anywhere collects
    gc.enable()
    time.sleep(0.02)  # nothing GC-tracked made between enable() and here
    gc.set_threshold(*THRESHOLDS)
    del held
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(ns["s"]).encode()]
