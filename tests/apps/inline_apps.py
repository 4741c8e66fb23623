"""A WSGI app with one path per way of answering, for the inline-run tests
(tests/integration/test_inline.py): each path answers fast, so after a few
calls tracfront runs it inside the network thread's read of it.

/list (one-item list, Content-Length), /gen (generator, no Content-Length:
chunked; ?sized=1 with one), /write (write() then a generator, with close();
?sized=1 with a Content-Length), /file (wsgi.file_wrapper on a real file),
/big?n=BYTES (a long generator: the response waits while the client reads),
/grow?after=N&n=BYTES (a 14-byte list for its first N calls, then an n-byte
generator with its Content-Length: a wrong guess of the fast path), /echo
(POST body back), /raise (an exception), /str (a str body: an app error),
/gate (with an X-Gate: PATH header, creates PATH.entered and blocks until
PATH exists: the same target, slow), /closed (how many iterables were
closed), /feed?after=N (an event stream, no Content-Length: one event for
its first N calls, then an event every 50 ms for ever), /turn (a one-item
list; with an X-Endless header, the same target, that endless stream),
/feeds_ended (how many of those endless generators have been closed).
"""
import atexit
import os
import tempfile
import threading
import time
from urllib.parse import parse_qs

from robust_apps import _big  # the same large body

FILE_BODY = bytes(range(256)) * 64
_file = tempfile.NamedTemporaryFile(prefix="inline_apps-", delete=False)
_file.write(FILE_BODY)
_file.close()
atexit.register(os.unlink, _file.name)  # tracfront finalizes Python at exit: runs it

_closed = [0]
_lock = threading.Lock()


class Closing:
    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        return iter(self.parts)

    def close(self):
        with _lock:
            _closed[0] += 1


_grown = [0]  # /grow calls
_feeds = [0]  # /feed calls
_feeds_ended = [0]  # endless /feed generators closed


def _event(n):
    return b"data: event %d\n\n" % n


def _pieces():
    for i in range(20):
        time.sleep(0.0003)
        yield b"%04d" % i + b"p" * 4092


def _endless():
    try:
        n = 0
        while True:
            yield _event(n)
            n += 1
            time.sleep(0.05)
    finally:
        with _lock:
            _feeds_ended[0] += 1


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    text = [("Content-Type", "text/plain")]
    if path == "/list":
        start_response("200 OK", text + [("Content-Length", "4")])
        return [b"list"]
    sized = [("Content-Length", "3" if path == "/gen" else "6")] if "sized" in qs else []
    if path == "/gen":
        start_response("200 OK", text + sized)
        return (part for part in (b"g", b"e", b"n"))
    if path == "/write":
        write = start_response("200 OK", text + sized)
        write(b"wr")
        write(b"it")
        return Closing([b"e", b"!"])
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(_file.name, "rb"), 8192)
    if path == "/big":
        n = int(qs.get("n", str(4 << 20)))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n))])
        return _big(n)
    if path == "/grow":
        with _lock:
            _grown[0] += 1
            small = _grown[0] <= int(qs["after"])
        if small:
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return [b"small answer\n\n"]
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", qs["n"])])
        return _big(int(qs["n"]))
    if path == "/feed":  # as an SSE endpoint that has little to say at first
        with _lock:
            _feeds[0] += 1
            first = _feeds[0] <= int(qs["after"])
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return iter([_event(0)]) if first else _endless()
    if path == "/threadwrite":  # an unsized answer written by a thread of the app
        write = start_response("200 OK", [("Content-Type", "text/event-stream")])
        t = threading.Thread(target=write, args=(_event(0),))
        t.start()
        t.join()
        return []
    if path == "/turn":
        if environ.get("HTTP_X_PAGE"):  # a finite page rendered in pieces, as Trac's
            start_response("200 OK", [("Content-Type", "text/html")])
            return _pieces()
        if environ.get("HTTP_X_ENDLESS"):
            start_response("200 OK", [("Content-Type", "text/event-stream")])
            return _endless()
        start_response("200 OK", text + [("Content-Length", "4")])
        return [b"turn"]
    if path == "/echo":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/raise":
        raise RuntimeError("inline_apps: raised on purpose")
    if path == "/str":
        start_response("200 OK", text)
        return ["not bytes"]
    if path == "/gate":
        gate = environ.get("HTTP_X_GATE")
        if gate:
            open(gate + ".entered", "w").close()  # the test sees the call started
        deadline = time.monotonic() + 30
        while gate and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
        start_response("200 OK", text + [("Content-Length", "4")])
        return [b"gate"]
    if path in ("/closed", "/feeds_ended"):
        with _lock:
            body = str((_closed if path == "/closed" else _feeds_ended)[0]).encode()
        start_response("200 OK", text + [("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", text + [("Content-Length", "9")])
    return [b"not found"]
