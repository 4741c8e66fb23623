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
/exitpartial      a thread writes an unfinished line and ends (its end writes it);
/firstpartial     a new thread writes its first unfinished line, then ends;
/daemon           starts a daemon thread that writes an unfinished line and
                  sleeps, once it has written it;
/threadname?s=S   starts a thread named with a newline, a forged line and ESC
                  that lives 3 s, and sleeps S seconds (a stuck request);
/forkprint?fifo=F a thread holds glibc's time-zone lock (tzset() reading TZ=F,
                  a FIFO nobody writes) while the app forks a child that
                  print()s CHILD-LINE; answers "exited" or "hung" (no exit in 20 s);
/forkdate         forks a child that print()s CHILD-DATE and exits, waits for
                  it, then print()s PARENT-DATE; answers "done".
/hello            answers hello.
"""
import ctypes
import os
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


FORGED_NAME = "x\n[2001-01-01 00:00:00.000] [error] forged by a thread name \x1b[31m"


def _fork_under_tz_lock(fifo):
    """Fork while another thread holds glibc's time-zone lock: its tzset()
    (through ctypes, without the GIL) waits in open() for a FIFO's writer."""
    os.environ["TZ"] = fifo
    holder = threading.Thread(target=ctypes.CDLL(None).tzset, daemon=True)
    holder.start()
    wchan = "/proc/self/task/%d/wchan" % holder.native_id
    while open(wchan).read() != "wait_for_partner":
        time.sleep(0.01)
    pid = os.fork()
    if pid == 0:
        print("CHILD-LINE")
        os._exit(0)
    deadline = time.monotonic() + 20
    while not os.waitpid(pid, os.WNOHANG)[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    exited = time.monotonic() < deadline
    if not exited:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # its open() returns, it reads nothing
    holder.join()
    del os.environ["TZ"]
    ctypes.CDLL(None).tzset()
    return "exited" if exited else "hung"


def _daemon(written):
    sys.stderr.write("DAEMON-PARTIAL-LINE")
    written.set()
    time.sleep(1000)


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
    if path == "/exitpartial":
        t = threading.Thread(target=lambda: sys.stderr.write("EXITING-THREAD-PARTIAL"))
        t.start()
        t.join()
        return _answer(start_response, "exited")
    if path == "/firstpartial":
        t = threading.Thread(target=lambda: sys.stderr.write("FRESH-PARTIAL"))
        t.start()
        t.join()
        return _answer(start_response, "fresh")
    if path == "/daemon":
        written = threading.Event()
        threading.Thread(target=_daemon, args=(written,), daemon=True).start()
        written.wait(10)
        return _answer(start_response, "daemon")
    if path == "/threadname":
        threading.Thread(target=time.sleep, args=(3,), name=FORGED_NAME).start()
        time.sleep(float(qs.get("s", "1")))
        return _answer(start_response, "named")
    if path == "/forkprint":
        return _answer(start_response, _fork_under_tz_lock(qs["fifo"]))
    if path == "/forkdate":
        pid = os.fork()
        if pid == 0:
            try:
                print("CHILD-DATE", flush=True)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        print("PARENT-DATE", flush=True)
        return _answer(start_response, "done")
    return _answer(start_response, "hello")
