"""A WSGI app that gets stuck on purpose, for the --request-timeout tests.

/spin?s=N       a busy loop in Python for N seconds, run while the body is
                produced (start_response was called; nothing is sent yet)
/slices?s=N     sleeps N seconds in 0.05 s slices (an async exception lands
                between two slices; one time.sleep(N) would hold it off)
/stream_spin?s=N  sends one chunk, then spins: the head is already out
/fast           answers at once
/exception      describes tracfront.RequestTimeout
/closed         JSON list of the tags whose body's close() was called
/swallow?s=N    spins, catching Exception (not BaseException) on the way
/sleep?s=N      one time.sleep(N): a single C call, which no async exception
                can interrupt until it returns
/c_block?s=N    a body that is a raw pipe file read by C code only: the app
                runs no Python bytecode while it waits N seconds for the data

A daemon thread named stuck-app-background runs `background_loop`, so a
--dump-all report has a non-app Python thread to show.
"""
import json
import os
import threading
import time
from urllib.parse import parse_qs

CLOSED = []
_lock = threading.Lock()


def background_loop():
    while True:
        time.sleep(0.05)


threading.Thread(target=background_loop, name="stuck-app-background", daemon=True).start()


def busy_spin(seconds):
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n


def sleep_in_slices(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


class Body:
    """An iterable that does its slow work in __next__ and records close()."""

    def __init__(self, tag, work, first=None):
        self.tag, self.work, self.first = tag, work, first
        self.done = False

    def __iter__(self):
        return self

    def __next__(self):
        if self.first is not None:
            chunk, self.first = self.first, None
            return chunk
        if self.done:
            raise StopIteration
        self.done = True
        self.work()
        return b"finished\n"

    def close(self):
        with _lock:
            CLOSED.append(self.tag)


def swallowing(seconds):
    try:
        busy_spin(seconds)
    except Exception:  # RequestTimeout is a BaseException: not caught here
        return b"swallowed\n"
    return b"finished\n"


def finally_return(seconds):
    """trac.web.main.dispatch_request's shape: `finally: return` drops any
    exception, RequestTimeout too, and the app returns normally."""
    try:
        busy_spin(seconds)
    finally:
        return [b"returned anyway\n"]  # noqa: B012 - the point of the test


def written_then_swallowed(seconds, start_response):
    """Trac's streamed pages: write() sends the page's start, then slow work
    whose RequestTimeout a `finally: return` drops."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"first part\n")
    try:
        busy_spin(seconds)
        write(b"END OF PAGE\n")
    finally:
        return []  # noqa: B012


def generator_swallowing(seconds, first):
    """A generator body whose RequestTimeout a `finally: return` drops, before
    its first chunk or after it (first)."""
    if first:
        yield b"first part\n"
    try:
        busy_spin(seconds)
        yield b"END OF PAGE\n"
    finally:
        return  # noqa: B012


def answers_the_timeout(seconds, start_response):
    """An app that answers its own RequestTimeout (start_response with the
    exc_info): its answer stands."""
    import sys
    import tracfront
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        busy_spin(seconds)
    except tracfront.RequestTimeout:
        start_response("503 Busy", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"too slow, try later\n"]
    return [b"finished\n"]


def c_block(seconds, start_response):
    """Iterating a FileIO on a pipe runs C only (readline -> read)."""
    r, w = os.pipe()

    def writer():
        time.sleep(seconds)
        os.write(w, b"late\n")
        os.close(w)

    threading.Thread(target=writer, daemon=True).start()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return os.fdopen(r, "rb", buffering=0)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    seconds = float(qs.get("s", ["0"])[0])
    tag = qs.get("tag", [path])[0]
    if path == "/fast":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fast\n"]
    if path == "/closed":
        with _lock:
            body = json.dumps(CLOSED).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/spin":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body(tag, lambda: busy_spin(seconds))
    if path == "/slices":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body(tag, lambda: sleep_in_slices(seconds))
    if path == "/stream_spin":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body(tag, lambda: busy_spin(seconds), first=b"first chunk\n")
    if path == "/swallow":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [swallowing(seconds)]
    if path == "/finally_return":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return finally_return(seconds)
    if path == "/written_then_swallowed":
        return written_then_swallowed(seconds, start_response)
    if path in ("/generator_swallowing", "/generator_swallowing_after_the_head"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return generator_swallowing(seconds, first=path.endswith("head"))
    if path == "/answers_the_timeout":
        return answers_the_timeout(seconds, start_response)
    if path == "/sleep":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body(tag, lambda: time.sleep(seconds))
    if path == "/exception":
        import tracfront
        exc = tracfront.RequestTimeout
        body = "%s.%s base=%s exception=%s" % (exc.__module__, exc.__name__,
                                               issubclass(exc, BaseException),
                                               issubclass(exc, Exception))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]
    if path == "/c_block":
        return c_block(seconds, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
