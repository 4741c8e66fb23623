"""For test_profile_app_hooks.py: a weak reference's callback on a code
object the profiler's sweep lets go (at a Clear) sleeps, so the GIL goes to
another profiled request meanwhile, which makes code objects of one label
(aliases) while the sweep is half done. /seed makes the alias the callback
is on; /race calls aliases while the callback sleeps, then again after
(?PATH: a file it makes when it starts waiting for the callback)."""
import time
import types
import weakref

STATE = {"sleeping": False, "slept": False}
KEEP = []
SRC = "def g():\n    return 1\ng()\n"
DUMMIES = []
for _i in range(40):
    exec("def d%d(): pass" % _i)
    DUMMIES.append(globals()["d%d" % _i])


def cb(_ref):
    STATE["sleeping"] = True
    time.sleep(0.3)  # lets the GIL go inside the sweep
    STATE["sleeping"] = False
    STATE["slept"] = True


def seed():
    for d in DUMMIES:  # a tree too big to be kept spare: one sweep only, at the Clear
        d()
    for _ in range(2):  # the first code of the label is the map's; the second an alias
        code = compile(SRC, "<x>", "exec")
        exec(code, {})
    KEEP.append(weakref.ref(code, cb))  # the alias slot holds its last reference
    return "seeded"


def base():
    return 2


def race(marker):
    base()
    made = []
    open(marker, "w").close()  # the test's Clear comes now
    deadline = time.time() + 10
    while not STATE["sleeping"] and time.time() < deadline:
        time.sleep(0.001)
    while STATE["sleeping"]:
        fn = types.FunctionType(base.__code__.replace(), globals())  # a new code, one label
        fn()
        made.append(fn)
    for fn in reversed(made):  # again after the sweep: each slot's last writer first
        fn()
    return "%d %s" % (len(made), STATE["slept"])


def app(environ, start_response):
    path = environ["PATH_INFO"].strip("/")
    body = (seed() if path == "seed" else race(environ["QUERY_STRING"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
