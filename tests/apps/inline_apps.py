"""A WSGI app with one path per way of answering, for the inline-run tests
(tests/integration/test_inline.py): each path answers fast, so after a few
calls tracfront runs it inside the network thread's read of it.

/list (one-item list, Content-Length), /gen (generator, no Content-Length:
chunked), /write (write() then a generator, with close()), /file
(wsgi.file_wrapper on a real file), /big?n=BYTES (a long generator: the
response waits while the client reads), /grow?after=N&n=BYTES (14 bytes for
its first N calls, then an n-byte generator: a wrong guess of the fast
path), /echo (POST body back), /raise (an
exception), /str (a str body: an app error), /gate (with an X-Gate: PATH
header, creates PATH.entered and blocks until PATH exists: the same target,
slow), /closed (how many iterables were closed).
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

def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    text = [("Content-Type", "text/plain")]
    if path == "/list":
        start_response("200 OK", text + [("Content-Length", "4")])
        return [b"list"]
    if path == "/gen":
        start_response("200 OK", text)
        return (part for part in (b"g", b"e", b"n"))
    if path == "/write":
        write = start_response("200 OK", text)
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
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return iter([b"small answer\n\n"]) if small else _big(int(qs["n"]))
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
    if path == "/closed":
        with _lock:
            body = str(_closed[0]).encode()
        start_response("200 OK", text + [("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", text + [("Content-Length", "9")])
    return [b"not found"]
