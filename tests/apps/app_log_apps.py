"""WSGI app for test_app_log.py, served as `app_log_apps:app`: how what the
app writes (print, sys.stderr, wsgi.errors, tracebacks) reaches the error log.

Routes:
/raise?t=T        waits (up to 10 s) until 8 requests are here, then raises
                  RuntimeError("boom-T") from 12 frames down;
/long?who=A|B     A writes an unfinished line of 10,000 'P', lets B write
                  the whole line OTHER-LINE, then ends its own with TAIL;
/ctl              writes control bytes through print(), sys.stderr and
                  wsgi.errors, then raises with them in the message;
/print?text=T     print(T);
/fail             raises at once;
/unfinished       writes an unfinished line of 2 KB and returns (its end
                  writes it);
/spam?s=S         prints short lines for S seconds;
/sleep?s=S        sleeps S seconds (a stuck request);
/hello            answers hello.
"""
import sys
import threading
import time
from urllib.parse import parse_qsl

_together = threading.Barrier(8)
_a_started, _b_done = threading.Event(), threading.Event()


def _nest(tag, depth):
    if depth:
        return _nest(tag, depth - 1)
    raise RuntimeError("boom-" + tag)


def _answer(start_response, text):
    body = text.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/raise":
        try:
            _together.wait(10)
        except threading.BrokenBarrierError:
            pass
        _nest(qs["t"], 10)
    if path == "/long":
        if qs["who"] == "A":
            sys.stderr.write("P" * 10000)
            _a_started.set()
            _b_done.wait(30)
            sys.stderr.write("TAIL\n")
        else:
            _a_started.wait(30)
            sys.stderr.write("OTHER-LINE\n")
            _b_done.set()
        return _answer(start_response, qs["who"])
    if path == "/ctl":
        print("PRINT\x1b[31mRED\rCR\x00NUL\x7fDEL\x9bCSI\tTAB end")
        sys.stderr.write("STDERR\x1b[2J\x08BS\n")
        environ["wsgi.errors"].write("ERRORS\x07BEL\n")
        raise ValueError("RAISED\x1b]0;title\x07")
    if path == "/fail":
        raise RuntimeError("FAILED-AT-ONCE")
    if path == "/unfinished":
        sys.stderr.write("UNFINISHED-" + "u" * 2000)
        return _answer(start_response, "unfinished")
    if path == "/print":
        print(qs.get("text", ""))
        return _answer(start_response, "printed")
    if path == "/spam":
        end = time.monotonic() + float(qs.get("s", "1"))
        while time.monotonic() < end:
            print("SPAM-LINE")
        return _answer(start_response, "spammed")
    if path == "/sleep":
        time.sleep(float(qs.get("s", "1")))
        return _answer(start_response, "slept")
    return _answer(start_response, "hello")
