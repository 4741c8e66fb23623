"""What apps do that a function profiler must survive, for
tests/integration/test_profile_app_hooks.py: nested calls of distinct code
objects sharing one label, recursion deeper than a thread's C stack allows
under the frame hook, a C stack overflow, and the app's own profile hooks
(cProfile, sys.setprofile, a save and restore of sys.getprofile())."""
import cProfile
import dataclasses
import sys
import time

sys.setrecursionlimit(20000)


def spin(n):
    t = time.perf_counter() + n / 1e6
    while time.perf_counter() < t:
        pass


def nestedcomp():
    # the inner list comprehension is its own code object, labelled as the outer
    return [[spin(500) for _ in range(4)] for _ in range(4)]


def nestedexec():
    exec("exec('spin(5000)')", {"spin": spin})  # two <string>:1(<module>), one in the other


@dataclasses.dataclass
class Inner:
    n: int = 0

    def __post_init__(self):
        spin(5000)


@dataclasses.dataclass
class Outer:  # its generated __init__ runs Inner's: both <string>:2(__init__)
    inner: Inner = dataclasses.field(default_factory=Inner)


def nesteddc():
    Outer()


def rec(n):
    return 0 if n == 0 else 1 + rec(n - 1)


def thread_name():
    with open("/proc/thread-self/comm") as f:
        return f.read().strip()


def deeprec(depth):
    try:
        return "%s %d" % (thread_name(), rec(depth))
    except RecursionError as e:
        return "%s RecursionError: %s" % (thread_name(), e)


def overflow():
    """A C stack overflow: repr recurses in C once per level of nesting, and
    the recursion limit is far above what a thread's stack holds."""
    print("overflowing on", thread_name(), file=sys.stderr, flush=True)
    sys.setrecursionlimit(10 ** 7)
    nested = []
    for _ in range(10 ** 6):
        nested = [nested]
    return repr(nested)


def after():
    spin(200)


def own_cprofile():
    p = cProfile.Profile()
    p.enable()
    after()
    p.disable()
    after()


def own_setprofile():
    sys.setprofile(lambda frame, event, arg: None)
    after()
    sys.setprofile(None)
    after()


def saverestore():
    old = sys.getprofile()
    sys.setprofile(lambda frame, event, arg: None)
    spin(10)
    sys.setprofile(old)
    after()
    after()


ROUTES = {"nestedcomp": nestedcomp, "nestedexec": nestedexec, "nesteddc": nesteddc,
          "overflow": overflow, "cprofile": own_cprofile, "setprofile": own_setprofile,
          "saverestore": saverestore, "after": after}


def app(environ, start_response):
    path = environ["PATH_INFO"].strip("/")
    if path == "sleep":
        time.sleep(float(environ["QUERY_STRING"]))
        body = "slept"
    elif path == "deeprec":
        body = deeprec(int(environ["QUERY_STRING"]))
    else:
        body = str(ROUTES[path]())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
