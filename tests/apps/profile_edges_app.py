"""What apps do that a function profiler must survive, for
tests/integration/test_profile_app_hooks.py: nested calls of distinct code
objects sharing one label, code compiled again for each request, recursion deeper than a thread's C stack allows
under the frame hook (a thread's small stack, a generator resumed at its
edge), a C stack overflow, and the app's own profile hooks (cProfile,
sys.setprofile, a save and restore of sys.getprofile(), given back in another
call, a profiler that passes events on to the one it replaced)."""
import cProfile
import dataclasses
import gc
import sys
import threading
import time
import weakref

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


COMPILED_EACH_TIME = """
def work():
    return sum(leaf(i) for i in range(3))
result = work()
"""


def leaf(i):
    return i


def compiledeach():
    # code compiled again on every call: new code objects with the labels of
    # the last call's (as repoze.profile's cProfile.runctx("...") compiles
    # its statement for each request)
    ns = {"leaf": leaf}
    exec(COMPILED_EACH_TIME, ns)
    return ns["result"]


UNIQUE_CODE = []  # weak references to the code compiled with a new label each time


def uniquecode():
    code = compile("leaf(1)\n", "<generated-%d>" % len(UNIQUE_CODE), "exec")
    UNIQUE_CODE.append(weakref.ref(code))
    exec(code, {"leaf": leaf})
    return "compiled"


def alivecode():
    gc.collect()
    return "%d of %d" % (sum(r() is not None for r in UNIQUE_CODE), len(UNIQUE_CODE))


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


def small_stack(query):
    """rec(depth) on a new thread with a stack of kib KiB."""
    kib, depth = map(int, query.split(","))
    out = []

    def run():
        try:
            out.append("%d" % rec(depth))
        except RecursionError as e:
            out.append("RecursionError: %s" % e)

    threading.stack_size(kib * 1024)
    try:
        t = threading.Thread(target=run)
        t.start()
    finally:
        threading.stack_size(0)
    t.join()
    return out[0]


def at_the_edge(action):
    """action() called as deep as the C stack lets a Python call start:
    recurse until refused, then on the way back up try action() until it
    starts itself (refused, it raises RecursionError and the level above
    tries)."""
    done = []

    def descend():
        try:
            descend()
        except RecursionError:
            if not done:
                done.append(action())

    try:
        descend()
    except RecursionError:
        pass
    return done[0]


def gen_edge():
    """Resume a suspended generator at the C stack's edge: through sorted()
    (whose C frame takes more stack than one Python call does) from a
    function that itself only just started, so the resumption is refused."""
    ran = []

    def gen():
        while True:
            try:
                yield
                ran.append("resumed")
            except RecursionError:
                ran.append("caught")
                yield "caught inside"

    g = gen()
    next(g)

    def resume():
        try:
            sorted([1], key=g.send)
            return "sent"
        except RecursionError as e:
            return "RecursionError: %s" % e

    said = at_the_edge(resume)
    return "%s; ran: %s; closed: %s" % (said, ",".join(ran) or "-", g.gi_frame is None)


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


def chain():
    """A profiler that passes each event on to the one it replaced, as
    profilers that stack do."""
    old = sys.getprofile()
    seen = []

    def f(frame, event, arg):
        seen.append(event)
        if old is not None:
            old(frame, event, arg)

    sys.setprofile(f)
    after()
    after()
    kept = sys.getprofile() is f
    sys.setprofile(old)
    after()
    return "events: %d; kept: %s" % (len(seen), kept)


TAKEN = []


def take():
    TAKEN.append(sys.getprofile())
    sys.setprofile(lambda frame, event, arg: None)


def give_back():
    sys.setprofile(TAKEN.pop())


def marker():
    after()


def given_back_above():  # taken one call down, given back here
    take()
    after()
    sys.setprofile(TAKEN.pop())
    marker()


def given_back_below():  # taken here, given back one call down
    TAKEN.append(sys.getprofile())
    sys.setprofile(lambda frame, event, arg: None)
    after()
    give_back()
    marker()


def given_back_aside():  # taken in one call, given back in the next at the same depth
    take()
    give_back()
    marker()


def saverestore():
    old = sys.getprofile()
    sys.setprofile(lambda frame, event, arg: None)
    spin(10)
    sys.setprofile(old)
    after()
    after()


ROUTES = {"nestedcomp": nestedcomp, "nestedexec": nestedexec, "nesteddc": nesteddc,
          "compiledeach": compiledeach, "uniquecode": uniquecode, "alivecode": alivecode,
          "overflow": overflow, "cprofile": own_cprofile, "setprofile": own_setprofile,
          "saverestore": saverestore, "after": after, "chain": chain, "genedge": gen_edge,
          "above": given_back_above, "below": given_back_below, "aside": given_back_aside}


def app(environ, start_response):
    path = environ["PATH_INFO"].strip("/")
    if path == "sleep":
        time.sleep(float(environ["QUERY_STRING"]))
        body = "slept"
    elif path == "deeprec":
        body = deeprec(int(environ["QUERY_STRING"]))
    elif path == "smallstack":
        body = small_stack(environ["QUERY_STRING"])
    else:
        body = str(ROUTES[path]())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
