"""What an app does to its process, in a single process (no --workers): closes
the standard descriptors, leaves a thread running that never ends, crashes.

The logs go where they were set at start whatever the app closes (a client's
connection that takes descriptor 2 never receives log text); a stop still ends
within --graceful-timeout (then the 5 s the atexit handlers get) when a
non-daemon thread never ends, naming it; a fatal signal leaves the Python
stacks in the error log, as faulthandler writes them.
"""
import os
import re

import requests


APP = """
import ctypes
import os
import sys
import threading
import time


def forever():
    while True:
        time.sleep(0.05)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    body = b"ok"
    if path == "/close-stdio":
        os.close(1)
        os.close(2)
    elif path == "/raise":
        raise RuntimeError("internals of the app")
    elif path == "/write":
        environ["wsgi.errors"].write("a wsgi.errors line\\n")
        sys.stderr.write("a sys.stderr line\\n")
        print("a print() line")
    elif path == "/thread":
        threading.Thread(target=forever, name="never-ends", daemon=False).start()
    elif path == "/segv":
        ctypes.string_at(0)
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""


def app_server(tracfront, tmp_path, *extra):
    script = tmp_path / "process_app.wsgi"
    script.write_text(APP)
    return tracfront("--wsgi-file", script, *extra)


def fd_target(pid, fd):
    try:
        return os.readlink("/proc/%d/fd/%d" % (pid, fd))
    except OSError:  # closed
        return None


def ask(sock, path):
    """One keep-alive request on sock; everything received until its answer
    ("ok") ended, which must be that answer alone (text after it shows at the
    start of the next)."""
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    data = b""
    while b"\r\n\r\nok" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed after %r" % data
        data += chunk
    return data


ANSWER = re.compile(rb"HTTP/1\.1 200 OK\r\n(?:[!-9;-~]+: [^\r\n]*\r\n)+\r\nok\Z")


def test_an_app_closing_stdio_sends_no_log_text_to_clients(tracfront, tmp_path):
    # the default --error-log - (and --access-log -): once the app closed 1
    # and 2, the next connections take those numbers; the logs must go on to
    # the stderr tracfront was started with, not into those connections
    srv = app_server(tracfront, tmp_path, "--error-log", "-", "--access-log", "-")
    assert requests.get(srv.url + "close-stdio", timeout=10).text == "ok"
    clients = [srv.connect(), srv.connect()]
    try:
        for c in clients:
            assert ANSWER.match(ask(c, "/")), "not an answer alone"
        taken = [fd_target(srv.proc.pid, fd) for fd in (1, 2)]
        assert all(t and t.startswith("socket:") for t in taken), \
            "the clients did not take descriptors 1 and 2 (%s): the test shows nothing" % taken
        assert requests.get(srv.url + "raise", timeout=10).status_code == 500
        assert requests.get(srv.url + "write", timeout=10).text == "ok"
        for c in clients * 2:
            got = ask(c, "/")
            assert ANSWER.match(got), "a client received more than its answer:\n%r" % got
    finally:
        for c in clients:
            c.close()
    log = srv.stderr
    for line in ("RuntimeError: internals of the app", "a wsgi.errors line",
                 "a sys.stderr line", "a print() line", '"GET /raise HTTP/1.1" 500'):
        assert line in log, "%r is not in the log:\n%s" % (line, log)
