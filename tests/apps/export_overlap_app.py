"""For test_profile_app_hooks.py and test_workers.py: exports at once, each
while it lets Python run (a collection's gc.callbacks, as a memory monitor
installs). GET /?width=W makes a call tree of W + W**2 + W**3 nodes (737,190
for the 90 functions there are; each calls every one, three deep: many
nodes, few functions and call pairs, so that a copy of the tree is most of
what an export takes) and answers its size. GET /arm?dir=D arms the
callback: from then on, a collection while no request is in the app (one
that a pstats export runs: it makes a tuple per call pair, thousands here)
writes a file in D and waits until D/release exists."""
import gc
import os
import threading
import time
import urllib.parse

WIDTH, DEPTH = 90, 3
SRC = "".join("def f%d(d, fs):\n    if d:\n        for g in fs:\n            g(d - 1, fs)\n"
              % i for i in range(WIDTH))
SRC += "F = [%s]\n" % ", ".join("f%d" % i for i in range(WIDTH))
NS = {}
exec(compile(SRC, "overlap_funcs", "exec"), NS)

lock = threading.Lock()
armed_dir = None
in_flight = 0  # requests between the app's call and its answer's close()
stalled = 0


def on_collect(phase, info):
    global stalled
    if phase != "start" or not armed_dir or in_flight:
        return
    release = os.path.join(armed_dir, "release")
    if os.path.exists(release):
        return
    with lock:
        stalled += 1
        n = stalled
    open(os.path.join(armed_dir, "stalled-%d" % n), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)  # the GIL is let go


gc.callbacks.append(on_collect)


class Answer:
    def __init__(self, body):
        self.body = body

    def __iter__(self):
        return iter([self.body])

    def close(self):
        global in_flight
        with lock:
            in_flight -= 1


def app(environ, start_response):
    global armed_dir, in_flight
    with lock:
        in_flight += 1
    query = urllib.parse.parse_qs(environ["QUERY_STRING"])
    nodes = 0
    if environ["PATH_INFO"] == "/arm":
        armed_dir = query["dir"][0]
    else:
        fs = NS["F"][:int(query.get("width", [WIDTH])[0])]
        for f in fs:
            f(DEPTH - 1, fs)
        nodes = sum(len(fs) ** d for d in range(1, DEPTH + 1))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Answer(b"%d" % nodes)
