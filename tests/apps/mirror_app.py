"""WSGI app for the --mirror tests: run twice, as the app of one tracfront and
behind another tracfront used as its --upstream, told apart by the environ
entry "mirror.side" (--env mirror.side=a|b).

/same and any unknown path answer identically on both sides; /differ-size,
/differ-hash (same length, other bytes) and /differ-status (200 on a, 404 on
b, same body) differ on purpose; /sleep?s=N sleeps on side b only (on=a: on
side a only); /big?n=N streams N bytes in 64 KiB pieces; /file?path=P answers
the file P through wsgi.file_wrapper; /block and .../block (side a only) hold its
thread until a request for a path ending in /release (its answer: how many
were held) lets every held one go, or 60 s have passed; /bytes?n=&chunk=&delay=
streams n bytes (i % 251) in pieces of chunk (at most 64 KiB) bytes, delay seconds apart, as
tests/apps/upstream_server.py's /bytes does (a stream that outlives a test). Every request except
/count and /bodies is counted per method and path; /count?path=P answers the
counts for P as JSON, e.g. {"GET": 2, "HEAD": 1}; /bodies?path=P the
requests with a body for P, as [method, length, sha256] lists.
"""
import hashlib
import json
import os
import threading
import time
from urllib.parse import parse_qs

COUNTS = {}
BODIES = {}
_lock = threading.Lock()
_release = threading.Event()
_held = [0]  # /block calls holding their thread now; guarded by _lock


PATTERN = bytes(range(251)) * 263  # 251 offsets + 64 KiB

def _reply(start_response, body, status="200 OK"):
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    side = environ.get("mirror.side", "a")
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "")
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/count":
        with _lock:
            body = json.dumps(COUNTS.get(qs.get("path", ""), {})).encode()
        return _reply(start_response, body)
    if path == "/bodies":
        with _lock:
            body = json.dumps(BODIES.get(qs.get("path", ""), [])).encode()
        return _reply(start_response, body)
    with _lock:
        per_method = COUNTS.setdefault(path, {})
        per_method[method] = per_method.get(method, 0) + 1
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        data = environ["wsgi.input"].read(length)
        with _lock:
            BODIES.setdefault(path, []).append([method, len(data),
                                                hashlib.sha256(data).hexdigest()])
    if path == "/differ-size":
        return _reply(start_response, b"a" * 10 if side == "a" else b"b" * 20)
    if path == "/differ-hash":
        return _reply(start_response, b"side-" + side.encode() + b"\n")
    if path == "/differ-status":
        return _reply(start_response, b"same body\n", "200 OK" if side == "a" else "404 Not Found")
    if path == "/big":
        n = int(qs.get("n", "0"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        # each byte tells its place (i % 251): a chunk lost, repeated or out
        # of order changes the body's hash, not only its length
        return (PATTERN[i % 251:i % 251 + min(65536, n - i)] for i in range(0, n, 65536))
    if path == "/bytes":
        n, chunk = int(qs.get("n", "0")), int(qs.get("chunk", "65536"))
        delay = float(qs.get("delay", "0"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def stream():
            for off in range(0, n, chunk):
                if off and delay:
                    time.sleep(delay)
                yield PATTERN[off % 251:off % 251 + min(chunk, n - off)]
        return stream()
    if path == "/file":
        f = open(qs["path"], "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(os.fstat(f.fileno()).st_size))])
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/raise" and side == qs.get("on", "a"):
        raise RuntimeError("mirror_app: /raise on side " + side)
    if path.endswith("/release"):
        with _lock:
            held = _held[0]
        _release.set()
        return _reply(start_response, b"%d\n" % held)
    if path.endswith("/block") and side == "a":
        with _lock:
            _held[0] += 1
        try:
            _release.wait(60)
        finally:
            with _lock:
                _held[0] -= 1
        return _reply(start_response, b"same body\n")
    if path == "/sleep":
        if side == qs.get("on", "b"):
            time.sleep(float(qs.get("s", "1")))
        return _reply(start_response, b"slept\n")
    return _reply(start_response, b"same body\n")
