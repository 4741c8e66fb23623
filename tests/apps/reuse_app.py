"""An app that tries to reach another request's objects: tracfront keeps an
ended request's StartResponse (with its write()) and wsgi.input for the next
requests when nothing holds them, and REQUEST_METHOD, SERVER_PROTOCOL and
REMOTE_ADDR in its base environ while they repeat. None of that may let one
request's answer or environ show through another's.

/plain           a body that says the request's method, protocol and address,
                 after a short sleep (its write() is in the collector's
                 sight meanwhile)
/snoop           keeps every write() of a StartResponse that gc.get_objects()
                 shows, but its own; then as /plain
/poke            calls each kept write() with b"INJECTED" (each must raise);
                 answers what they raised; "busy" (nothing called) while
                 another request runs: a write() of a request still running
                 is that request's to call, as it always was
/keep            keeps its write(), its start_response and its wsgi.input;
                 then as /plain
/keep_weak       keeps a weak reference to its write() alone; then as /plain
/use_kept        calls what /keep kept; answers what each did, then its own
                 body read through its own wsgi.input
/churn           as /plain, leaving garbage cycles whose __del__ lets go of the
                 GIL, and keeping its environ and a hundred new dicts: no
                 dict left in CPython's free list, the next environ's
                 PyDict_Copy allocates one, and a collection there runs
                 those __del__ (another thread changes the base environ)
"""
import gc
import threading
import time
import weakref

gc.set_threshold(1)  # a collection at nearly every allocation: in PyDict_Copy too
kept = {}
snooped = {}
lock = threading.Lock()
hoard = []
live = [0]  # requests in the app or its body: their tasks have not ended


class Body:
    """The answer; its close() is the request's last Python code: tracfront
    ends the task (its write() raises from then on) before any other thread
    runs Python code."""
    __slots__ = ("chunks",)

    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        with lock:
            live[0] -= 1


class Cycle:
    __slots__ = ("me",)  # no dict to free: CPython's free list of dicts stays empty

    def __init__(self):
        self.me = self

    def __del__(self):
        time.sleep(0)  # lets go of the GIL: another thread runs


def own_line(environ):
    return "%s %s %s" % (environ["REQUEST_METHOD"], environ["SERVER_PROTOCOL"],
                         environ["REMOTE_ADDR"])


def writes_of_others(own):
    found = []
    for o in gc.get_objects():
        if type(o).__name__ == "builtin_function_or_method" and \
                getattr(o, "__name__", "") == "write" and \
                type(getattr(o, "__self__", None)).__name__ == "StartResponse" and o is not own:
            found.append(o)
    return found


def attempt(f, *args):
    try:
        f(*args)
        return "did"
    except Exception as e:  # noqa: BLE001 (what it raised is the answer)
        return repr(e)


def app(environ, start_response):
    with lock:
        live[0] += 1
    try:
        return Body(answer(environ, start_response))
    except BaseException:
        with lock:
            live[0] -= 1
        raise


def answer(environ, start_response):
    path = environ["PATH_INFO"]
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/snoop":
        with lock:
            for w in writes_of_others(write):
                snooped[id(w)] = w
    elif path == "/poke":
        with lock:
            if live[0] > 1:
                return [b"busy"]
            found = list(snooped.values())
            snooped.clear()
        outcomes = sorted(set(attempt(w, b"INJECTED") for w in found))
        return [("poked %d: %s" % (len(found), "; ".join(outcomes))).encode()]
    elif path == "/keep":
        kept.update(write=write, start_response=start_response, input=environ["wsgi.input"])
    elif path == "/keep_weak":
        kept["weak_write"] = weakref.ref(write)
    elif path == "/use_kept":
        said = [attempt(kept["write"], b"INJECTED"),
                attempt(kept["start_response"], "500 Oops", []),
                attempt(kept["input"].read)]
        if "weak_write" in kept:
            weak = kept["weak_write"]()
            said.append("weak: dead" if weak is None else "weak: " + attempt(weak, b"INJECTED"))
        return [("\n".join(said) + "\n").encode(), environ["wsgi.input"].read()]
    elif path == "/plain":
        time.sleep(0.002)
    elif path == "/churn":
        for _ in range(3):
            Cycle()
        with lock:
            hoard.append(environ)
            hoard.extend({} for _ in range(100))
    return [own_line(environ).encode()]
