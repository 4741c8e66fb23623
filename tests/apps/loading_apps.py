"""WSGI apps for test_python_loading.py, served as `loading_apps:app`.

At import it prints a line (print() goes to the error log, as under mod_wsgi);
faulthandler_app.py serves it with faulthandler switched on at import.

Routes: /print?text=T prints T through print(), with print(a, b) splitting a
line into several writes; /hang?marker=PATH prints a whole line and an
unfinished one, creates PATH and then sleeps (a request still in flight at
shutdown); /streams answers the file-object attributes of sys.stdout and
sys.stderr as JSON; /dump has faulthandler write this thread's stack;
/environ answers the environ's JSON-able entries with their type names;
/osenviron answers os.environ; /syspath answers sys.path.
"""
import faulthandler
import json
import os
import sys
import time
from urllib.parse import parse_qsl

print("PRINT-AT-IMPORT")


def _json(start_response, value):
    body = json.dumps(value).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _stream_attributes(stream):
    out = {}
    for name in ("encoding", "errors", "closed", "name", "line_buffering"):
        out[name] = getattr(stream, name, "MISSING")
    for name in ("isatty", "writable", "readable", "seekable", "flush"):
        method = getattr(stream, name, None)
        out[name + "()"] = method() if method else "MISSING"
    fd = stream.fileno()
    out["fileno_target"] = os.readlink("/proc/self/fd/%d" % fd)
    return out


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/print":
        text = qs.get("text", "")
        print(text)
        print("SPLIT", text, sep="-")    # four writes: "SPLIT", "-", text, "\n"
        return _json(start_response, "printed")
    if path == "/hang":
        print("WHOLE-LINE-BEFORE-HANG")
        print("UNFINISHED-LINE", end="")
        with open(qs["marker"], "w") as f:
            f.write("printed")
        time.sleep(120)
        return _json(start_response, "woke")
    if path == "/streams":
        sys.stderr.writelines(["WRITELINES-", "ONE\n"])
        return _json(start_response, {"stdout": _stream_attributes(sys.stdout),
                                      "stderr": _stream_attributes(sys.stderr),
                                      "errors_is_stderr": environ["wsgi.errors"] is sys.stderr})
    if path == "/dump":
        faulthandler.dump_traceback(all_threads=False)
        return _json(start_response, "dumped")
    if path == "/environ":
        return _json(start_response, {k: [repr(v), type(v).__name__] for k, v in environ.items()})
    if path == "/osenviron":
        return _json(start_response, dict(os.environ))
    if path == "/syspath":
        return _json(start_response, sys.path)
    return _json(start_response, "loading_apps")



def _partial_app(environ, start_response):
    """/partial?who=A|B|C: A starts a line, waits for B's whole line, ends
    it; C leaves a line unfinished at the end of its request."""
    who = dict(parse_qsl(environ.get("QUERY_STRING", ""))).get("who")
    if who == "A":
        sys.stderr.write("A-STARTS-A-LINE ")
        _a_started.set()
        _b_done.wait(30)
        sys.stderr.write("A-ENDS-IT\n")
    elif who == "B":
        _a_started.wait(30)
        sys.stderr.write("B-WHOLE-LINE\n")
        _b_done.set()
    else:
        environ["wsgi.errors"].write("C-UNFINISHED")
    return _json(start_response, who)


import threading  # noqa: E402
_a_started, _b_done = threading.Event(), threading.Event()
_plain_app = app


def app(environ, start_response):  # noqa: F811
    if environ["PATH_INFO"] == "/partial":
        return _partial_app(environ, start_response)
    return _plain_app(environ, start_response)
