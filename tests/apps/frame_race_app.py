"""For test_stuck.py: a request whose innermost frame returns while another
thread reads its stack. sys._current_frames() and PyFrame_GetBack() make a
frame object for a frame of the request's thread (CPython 3.11): that is a
GC-tracked allocation, so it can collect, and a finalizer that lets the GIL
go lets the request's thread run on. Here the finalizer waits until the
frame being made into an object has returned (its code object, compiled for
this request, freed with it): the reader then held a frame object pointing
at a popped frame (ASan: heap-use-after-free of the code object in
watchdog.c's describe_frame).

The request arms the collector (cyclic garbage with that finalizer, the
threshold at 1, so the next GC-tracked object made anywhere collects), then
blocks in `inner`, in a C call (select on a pipe) that makes no object
before it blocks. The finalizer writes to the pipe (inner returns) and
waits until the request says inner has returned. Its answer: where the
finalizer ran ("app" on its own thread, or "other": while another thread
held the GIL), and whether inner returned before its 2 s timeout.
GET /arm; the test polls /__profile__/api/inflight meanwhile."""
import gc
import os
import select
import threading
import time

INNER = "def inner(ready, none):\n    select.select(ready, none, none, 2.0)\n"


class Trap:
    def __init__(self, state):
        self.me = self  # a cycle: only the collector frees it
        self.state = state

    def __del__(self):
        s = self.state
        s["ran_on"] = "app" if threading.get_ident() == s["app"] else "other"
        os.write(s["go_w"], b"x")  # inner returns
        if s["ran_on"] == "other":  # the app thread pops inner's frame meanwhile
            select.select([s["popped_r"]], [], [], 2.0)


def app(environ, start_response):
    go_r, go_w = os.pipe()
    popped_r, popped_w = os.pipe()
    state = {"app": threading.get_ident(), "go_w": go_w, "popped_r": popped_r,
             "ran_on": "nowhere"}
    ns = {"select": select}
    exec(compile(INNER, "<frame_race %d>" % id(state), "exec"), ns)
    inner = ns.pop("inner")  # its code dies with it, when the call below returns
    ready, none = [go_r], []
    thresholds = gc.get_threshold()
    gc.disable()
    Trap(state)
    for _ in range(10):  # the collection is due: made while disabled
        [[]]
    gc.set_threshold(1)
    gc.enable()
    started = time.monotonic()
    inner(ready, none)  # nothing GC-tracked made from enable() until it blocks
    waited = time.monotonic() - started
    del inner
    os.write(popped_w, b"x")
    time.sleep(0.3)  # in a C call: no frame pushed where inner's was
    gc.set_threshold(*thresholds)
    gc.collect()  # the trap, if nothing collected meanwhile
    for fd in (go_r, go_w, popped_r, popped_w):
        os.close(fd)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s %s" % (state["ran_on"], "woken" if waited < 1.9 else "timed-out")).encode()]
