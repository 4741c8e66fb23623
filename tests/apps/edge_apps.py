"""Apps that behave badly or unusually at the edges of PEP 3333, for
tests/integration/test_edges.py: each path is one case."""
import contextvars
import os
import subprocess
import sys
import threading
import time

_local = threading.local()  # per-thread request state, as Django keeps it
_context = contextvars.ContextVar("request_tag")  # as Flask keeps it
AFFINITY = {}  # tag -> what the body and its close() saw


class AffinityBody:
    """A streamed body that checks, for each chunk and in close(), that it
    runs on the thread, with the thread-local and the context, of its app
    call (gunicorn and mod_wsgi keep a request on one thread; Flask's
    stream_with_context and Django's per-thread state rely on it)."""

    def __init__(self, tag, n, size):
        self.tag, self.n, self.chunk = tag, n, b"a" * size
        self.thread = threading.get_ident()
        _local.tag = tag
        _context.set(tag)
        AFFINITY[tag] = {"moved": 0, "closed_here": None}

    def same(self):
        return (threading.get_ident() == self.thread and getattr(_local, "tag", None) == self.tag
                and _context.get(None) == self.tag)

    def __iter__(self):
        for _ in range(self.n):
            if not self.same():
                AFFINITY[self.tag]["moved"] += 1
            yield self.chunk

    def close(self):
        AFFINITY[self.tag]["closed_here"] = self.same()


class IterRaises:
    """A response whose __iter__ raises (not one that is not iterable)."""

    def __iter__(self):
        raise SystemExit("from __iter__")


def bogus_exc_info(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"started"
    # Not inside an except block: sys.exc_info() is (None, None, None).
    start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
    yield b"never"


def endless(tag):
    """A body that never ends (a live feed): only close() stops it."""
    try:
        while True:
            yield b"e" * 1024
    finally:
        print("%s: closed" % tag, flush=True)  # to the error log


def replaced_after_dropped_chunks(start_response):
    """A 204's body is dropped but counted; the app then fails and replaces
    its answer (exc_info) with one of 100 bytes."""
    start_response("204 No Content", [])
    yield b"x" * 10
    try:
        raise RuntimeError("late failure")
    except RuntimeError:
        start_response("500 Oops", [("Content-Type", "text/plain"), ("Content-Length", "100")],
                       sys.exc_info())
    yield b"y" * 100


def abort_midstream(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(20):
        time.sleep(0.0005)  # let the reader drain and wait between chunks
        yield b"chunk %d\n" % i
    raise RuntimeError("abort-midstream")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]
    if path == "/replaced-after-dropped-chunks":
        return replaced_after_dropped_chunks(start_response)
    if path == "/noted":  # says in the error log that the app ran
        print("noted: the app ran", flush=True)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"noted"]
    if path == "/empty-header":  # a header with an empty value is still a header
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Empty", "")])
        return [b"ok"]
    if path == "/head-declared":
        # Trac's send_file for HEAD: the real length declared, an empty body.
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", "12345")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"x" * 12345]
    if path == "/affinity":
        q = dict(p.split("=") for p in environ["QUERY_STRING"].split("&"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return AffinityBody(q["tag"], int(q["n"]), int(q["size"]))
    if path == "/affinity-result":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(AFFINITY.get(environ["QUERY_STRING"])).encode()]
    if path == "/big-write":
        # A large page through write(), as Trac writes: must not need the
        # client to keep up.
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        chunk = b"w" * 65536
        for _ in range(512):  # 32 MiB: far more than the kernel's socket buffers
            write(chunk)
        return []
    if path == "/abort-midstream":
        return abort_midstream(start_response)
    if path == "/bogus-exc-info":
        return bogus_exc_info(start_response)
    if path == "/mutate-headers":
        headers = [("Content-Type", "text/plain"), ("X-Kept", "yes")]
        start_response("200 OK", headers)
        headers.append(("X-Broken",))       # a 1-tuple: must not be read as a header
        headers.append(["X-List", "no"])
        headers[0] = 42
        return iter([b"mutated"])
    if path == "/short-body":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return iter([b"only ", b"ten b"])
    if path == "/big-headers":  # ?bytes=N in one header, or ?count=N small ones
        q = dict(p.split("=") for p in environ["QUERY_STRING"].split("&"))
        if "count" in q:
            headers = [("X-H%d" % i, "v") for i in range(int(q["count"]))]
        else:
            headers = [("X-Big", "a" * int(q["bytes"]))]
        if q.get("empty") == "1":  # sent as "X-Empty:  ": 12 bytes
            headers.append(("X-Empty", ""))
        write = start_response("200 OK", [("Content-Type", "text/plain")] + headers)
        if q.get("body") == "write":
            write(b"written")
            return []
        if q.get("body") == "empty":
            return []
        if q.get("body") == "endless":
            return endless("big-headers endless")
        if q.get("body") == "endless-write":
            while True:
                write(b"e" * 1024)
        return iter([b"streamed"]) if q.get("body") == "gen" else [b"listed"]
    if path == "/short-list":  # fewer bytes than the Content-Length says
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"short"]
    if path == "/short-file":
        f = open(environ["QUERY_STRING"], "rb")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return environ["wsgi.file_wrapper"](f)
    if path == "/fork":  # the child returns into the server, as the parent does
        pid = os.fork()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"child" if pid == 0 else b"parent %d %d" % (os.getpid(), pid)]
    if path == "/iter-raises":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return IterRaises()
    if path == "/child-sigmask":
        out = subprocess.run(["grep", "^SigBlk", "/proc/self/status"],
                             capture_output=True, check=True).stdout
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [out]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]
