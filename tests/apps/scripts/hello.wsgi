"""Plain (non-Trac) mod_wsgi-style script for test_gaps.py's --wsgi-file tests.

Answers JSON describing the module it runs in: __name__, __file__, the result of
a module-level helper and a per-module request counter (proving the script is
loaded once, as a module, and its globals persist between requests).
"""
import json
import threading

_lock = threading.Lock()
_hits = [0]


def helper():
    return "helper from %s" % __file__


def application(environ, start_response):
    with _lock:
        _hits[0] += 1
        hits = _hits[0]
    body = json.dumps({"name": __name__, "file": __file__, "helper": helper(),
                       "hits": hits, "path": environ.get("PATH_INFO")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
