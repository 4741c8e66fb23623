"""Small WSGI apps for the robustness tests (bad requests, concurrency, lifecycle).

`app` records every request it receives in SEEN (readable as JSON at /seen), so
a test can prove that a rejected request never reached Python. Routes: /hello,
/seen, /echo (returns the request body), /slow?s=N (sleeps; with &tid=1 answers
the app thread's id), /gate?file=PATH
(blocks until PATH exists), /big?n=BYTES (large download). `other` answers
"other" (used to check which app a config selected). If the process environment
has ROBUST_ATEXIT_FILE, an atexit handler writes that file at interpreter exit.
"""
import atexit
import json
import os
import threading
import time
from urllib.parse import parse_qs

SEEN = []
_lock = threading.Lock()

_atexit_file = os.environ.get("ROBUST_ATEXIT_FILE")
if _atexit_file:
    def _write_atexit_file(path=_atexit_file):
        with open(path, "w") as f:
            f.write("finalized\n")
    atexit.register(_write_atexit_file)


def _reply(start_response, body, status="200 OK", ctype="text/plain"):
    start_response(status, [("Content-Type", ctype),
                            ("Content-Length", str(len(body)))])
    return [body]


def _big(n):
    chunk = b"x" * 65536
    while n > 0:
        part = chunk[:n]
        n -= len(part)
        yield part


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    qs = {k: v[0] for k, v in parse_qs(query).items()}
    if path != "/seen":
        record = {"method": environ.get("REQUEST_METHOD"), "path": path,
                  "query": query,
                  "headers": {k: v for k, v in environ.items()
                              if k.startswith("HTTP_") or k.startswith("CONTENT_")}}
        with _lock:
            SEEN.append(record)

    if path == "/seen":
        with _lock:
            body = json.dumps(SEEN).encode()
        return _reply(start_response, body, ctype="application/json")
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        return _reply(start_response, body, ctype="application/octet-stream")
    if path == "/slow":
        time.sleep(float(qs.get("s", "2")))
        if qs.get("tid"):
            return _reply(start_response, b"%d" % threading.get_native_id())
        return _reply(start_response, b"slept")
    if path == "/gate":
        deadline = time.monotonic() + float(qs.get("timeout", "30"))
        while not os.path.exists(qs["file"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        return _reply(start_response, b"released")
    if path == "/big":
        n = int(qs.get("n", str(16 << 20)))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n))])
        return _big(n)
    if path == "/count":
        return _reply(start_response, ("count %s" % qs.get("i", "")).encode())
    return _reply(start_response, b"hello")


def other(environ, start_response):
    return _reply(start_response, b"other")
