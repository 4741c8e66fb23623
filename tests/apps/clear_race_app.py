"""For test_profile_app_hooks.py: a code object whose last reference is the
accumulated tree's (past the label map's cap, so the map holds none) has a
weak reference whose callback sleeps; a Clear frees the tree and drops it
half way; a profiled request (/race) ends meanwhile and drains into the
shared trees. /fill fills the map, /seed makes that code, /alive says which
seeded code lives."""
import time
import weakref

STATE = {"sleeping": False, "slept": False}
KEEP = []
FUNCS = []
for _i in range(110):
    exec("def f%d(): pass" % _i)
    FUNCS.append(globals()["f%d" % _i])


def cb(_ref):
    STATE["sleeping"] = True
    time.sleep(0.5)
    STATE["sleeping"] = False
    STATE["slept"] = True


def fill():
    for f in FUNCS:
        f()
    return "filled"


def seed():
    for f in FUNCS[:40]:
        f()
    code = compile("def g():\n    return 1\ng()\n", "<x%d>" % len(KEEP), "exec")
    exec(code, {})
    KEEP.append(weakref.ref(code, cb))
    return "seeded"


def base():
    return 2


def small():
    return base()


def race(marker):
    small()
    open(marker, "w").close()
    deadline = time.time() + 10
    while not STATE["sleeping"] and time.time() < deadline:
        time.sleep(0.001)
    return "race %s" % STATE["sleeping"]


def app(environ, start_response):
    path = environ["PATH_INFO"].strip("/")
    if path == "fill":
        body = fill()
    elif path == "seed":
        body = seed()
    elif path == "small":
        body = str(small())
    elif path == "alive":
        body = " ".join(str(r() is not None) for r in KEEP) + " " + str(STATE)
    else:
        body = race(environ["QUERY_STRING"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
