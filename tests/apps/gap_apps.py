"""WSGI apps for test_gaps.py, served as `gap_apps:app`.

Routes: /stream?marker=PATH writes 64 KiB chunks through the write() callable
and records in PATH how that ended ("OSError ..." or "completed ...");
/list, /gen, /write, /file, /environ, /post, /error exercise every response
kind for the leak hunt; /objcount reports live-object counts after a full
gc.collect(); /echoenv returns the string-valued environ entries as JSON.
"""
import gc
import json
import sys
import threading
from urllib.parse import parse_qsl

CHUNK = b"z" * 65536
_lock = threading.Lock()
GEN_CLOSED = [0]


def _reply(start_response, body, status="200 OK", ctype="text/plain"):
    start_response(status, [("Content-Type", ctype),
                            ("Content-Length", str(len(body)))])
    return [body]


def _stream(environ, start_response, marker):
    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
    sent = 0
    try:
        for _ in range(512):            # 32 MiB at most: far beyond socket buffers
            write(CHUNK)
            sent += len(CHUNK)
    except OSError as e:
        outcome = "OSError %s after %d" % (type(e).__name__, sent)
    except BaseException as e:          # record the wrong exception type too
        outcome = "other %s: %s after %d" % (type(e).__name__, e, sent)
        with open(marker, "w") as f:
            f.write(outcome)
        raise
    else:
        outcome = "completed %d" % sent
    with open(marker, "w") as f:
        f.write(outcome)
    return []


def _gen(n):
    try:
        for i in range(n):
            yield b"part%d;" % i
    finally:
        with _lock:
            GEN_CLOSED[0] += 1


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/stream":
        return _stream(environ, start_response, qs["marker"])
    if path == "/list":
        return _reply(start_response, b"list body " * 10)
    if path == "/big":
        return _reply(start_response, b"b" * int(qs.get("n", "5000000")))
    if path == "/gen":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _gen(5)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"x" * 3000)
        return [b" and returned"]
    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](f, 8192)
    if path in ("/environ", "/echoenv"):
        body = json.dumps({k: v for k, v in environ.items() if isinstance(v, str)})
        return _reply(start_response, body.encode(), ctype="application/json")
    if path == "/post":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(n)
        return _reply(start_response, b"got %d" % len(data))
    if path == "/error":
        raise RuntimeError("deliberate failure for the leak hunt")
    if path == "/objcount":
        gc.collect()
        gc.collect()
        counts = {"objects": len(gc.get_objects()),
                  "blocks": sys.getallocatedblocks(),
                  "gen_closed": GEN_CLOSED[0]}
        if hasattr(sys, "gettotalrefcount"):
            counts["refs"] = sys.gettotalrefcount()
        return _reply(start_response, json.dumps(counts).encode(), ctype="application/json")
    return _reply(start_response, b"gap_apps", status="404 Not Found")
