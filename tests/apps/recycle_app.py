"""WSGI app for the replacement of interrupted workers (test_recycle.py): a
first load that an interrupt leaves half done, as Trac's first request to a
project does (it attaches its log handler, then opens the environment; a
RequestTimeout in between leaves the handler attached and the project not
loaded, so the next request attaches a second one: every trac.log line twice).

Routes (every answer is JSON with the pid that served it):
/load?s=S      the first load, spinning S seconds in Python after the handler
               is attached (a RequestTimeout lands in the spin)
/gate?file=PATH  waits until file exists
/handlers      the first load without spinning (if not done yet), then how
               many handlers the app's logger has: 1 in a clean process
/work?n=N      calls busy(n) exactly once (exact call counts in the profile)
/pid           nothing else
Any route given mark=PATH writes its pid to that file first (the request runs).

With RECYCLE_FIRST_SPIN=S in the environment, every process's first request
(whatever its route) spins S seconds in Python first: an app whose cold start
always takes longer than --request-timeout.
"""
import json
import logging
import os
import threading
import time
from urllib.parse import parse_qs

log = logging.getLogger("recycle_app")
_lock = threading.Lock()
_loaded = False
_first_seen = False
_FIRST_SPIN = float(os.environ.get("RECYCLE_FIRST_SPIN", "0"))


def spin(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def first_load(seconds):
    """Attach the handler, then do the slow part; done once per process unless interrupted."""
    global _loaded
    if _loaded:
        return
    log.addHandler(logging.NullHandler())  # as trac.log's handler is attached first
    spin(seconds)
    _loaded = True


def busy(n):
    total = 0
    for i in range(n):
        total = (total * 31 + i) % 1000003
    return total


def _reply(start_response, doc, status="200 OK"):
    body = json.dumps(dict(doc, pid=os.getpid())).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    global _first_seen
    with _lock:
        first, _first_seen = not _first_seen, True
    if first and _FIRST_SPIN:
        spin(_FIRST_SPIN)
    path = environ.get("PATH_INFO", "")
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if "mark" in qs:
        with open(qs["mark"] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(qs["mark"] + ".tmp", qs["mark"])
    if path == "/load":
        first_load(float(qs.get("s", "0")))
        return _reply(start_response, {"loaded": True})
    if path == "/handlers":
        first_load(0)
        return _reply(start_response, {"handlers": len(log.handlers)})
    if path == "/work":
        return _reply(start_response, {"result": busy(int(qs.get("n", "1000")))})
    if path == "/gate":
        deadline = time.monotonic() + 60
        while not os.path.exists(qs["file"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        return _reply(start_response, {"released": True})
    if path == "/pid":
        return _reply(start_response, {})
    return _reply(start_response, {"error": "no such route"}, "404 Not Found")
