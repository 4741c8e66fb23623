"""What an app does to its process, in a single process (no --workers): closes
the standard descriptors, leaves a thread running that never ends, crashes.

The logs go where they were set at start whatever the app closes (a client's
connection that takes descriptor 2 never receives log text); a stop still ends
within --graceful-timeout (at least 5 s after the requests) when Python's
end waits for a thread that never ends, naming it, and finalizes Python when
the threads end; a fatal signal leaves the Python
stacks in the error log, as faulthandler writes them.
"""
import concurrent.futures
import os
import re
import signal
import subprocess
import time

import pytest
import requests

from conftest import start_server
from workers_util import wait_for

APP = """
import atexit
import concurrent.futures
import ctypes
import multiprocessing
import os
import re
import signal
import sys
import threading
import time

POOLS = []
EXECUTOR = concurrent.futures.ThreadPoolExecutor(1)  # made at import, as apps do


def start_pool():
    # its idle workers (not daemon threads, as this one) end when threading's
    # shutdown tells them to; kept, so not collected, which would end them
    POOLS.append(concurrent.futures.ThreadPoolExecutor(2))
    POOLS[-1].submit(time.sleep, 0).result()


def forever():
    while True:
        time.sleep(0.05)


def backtrack():
    time.sleep(0.2)  # after the answer went
    re.match(r"(a+)+$", "a" * 40 + "b")  # never ends, never releases the GIL


def join_main():
    threading.main_thread().join()
    print("main-thread joiner ended")


def poll_main():
    while threading.main_thread().is_alive():
        time.sleep(0.02)
    print("main-thread poller ended")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    body = b"ok"
    if path == "/close-stdio":
        os.close(1)
        os.close(2)
    elif path == "/close-fileno":
        for fd in {sys.stderr.fileno(), sys.stdout.fileno()}:
            os.close(fd)
    elif path == "/dup2-devnull":  # as python-daemon's redirect_stream does
        devnull = os.open(os.devnull, os.O_RDWR)
        for stream in (sys.stdout, sys.stderr):
            os.dup2(devnull, stream.fileno())
        os.close(devnull)
    elif path == "/raise":
        raise RuntimeError("internals of the app")
    elif path == "/write":
        environ["wsgi.errors"].write("a wsgi.errors line\\n")
        sys.stderr.write("a sys.stderr line\\n")
        print("a print() line")
    elif path == "/thread":
        threading.Thread(target=forever, name="never-ends", daemon=False).start()
    elif path == "/pool":
        starter = threading.Thread(target=start_pool, daemon=False)
        starter.start()
        starter.join()
        atexit.register(lambda: open(environ["QUERY_STRING"], "w").close())
    elif path == "/write-fileno":
        os.write(sys.stderr.fileno(), b"a fileno line\\n")
    elif path == "/executor-forever":
        EXECUTOR.submit(forever)
    elif path == "/inline-then-hang":  # fast (run inline) until the file in the query exists
        while os.path.exists(environ["QUERY_STRING"]):
            time.sleep(0.05)
    elif path == "/hold-gil":
        threading.Thread(target=backtrack, daemon=True).start()
    elif path == "/wait-main":
        for waiter in (join_main, poll_main):
            threading.Thread(target=waiter, daemon=False).start()
        atexit.register(lambda: open(environ["QUERY_STRING"], "w").close())
    elif path == "/segv":
        ctypes.string_at(0)
    elif path == "/fork-term":  # a child the app forks, ended as Pool.terminate() ends them
        pid = os.fork()
        if pid == 0:
            time.sleep(10)
            os._exit(0)
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        body = str(os.waitpid(pid, 0)[1]).encode()
    elif path == "/os-system":  # glibc's system() ignores SIGINT in the whole process meanwhile
        body = str(os.system("touch '%s'; sleep 2" % environ["QUERY_STRING"])).encode()
    elif path == "/mp-pool":
        with multiprocessing.get_context("fork").Pool(2) as pool:
            body = repr(pool.map(abs, [-1, -2, -3])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""


def app_server(tracfront, tmp_path, *extra, **kw):
    script = tmp_path / "process_app.wsgi"
    script.write_text(APP)
    return tracfront("--wsgi-file", script, *extra, **kw)


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


# what an app does to the standard streams: closes descriptors 1 and 2, or
# the ones sys.stderr.fileno() and sys.stdout.fileno() give, or puts
# /dev/null there (python-daemon)
STDIO_CLOSED = ["close-stdio", "close-fileno", "dup2-devnull"]


@pytest.mark.parametrize("log", ["-", "file"])
@pytest.mark.parametrize("how", STDIO_CLOSED)
def test_an_app_closing_stdio_sends_no_log_text_to_clients(tracfront, tmp_path, how, log):
    # once the app closed them, the next connections take those numbers; the
    # logs must go on where they were set at start, not into those
    # connections (nor into /dev/null)
    srv = app_server(tracfront, tmp_path, *(["--error-log", "-", "--access-log", "-"]
                                            if log == "-" else []))
    assert requests.get(srv.url + how, timeout=10).text == "ok"
    clients = [srv.connect(), srv.connect()]
    try:
        for c in clients:
            assert ANSWER.match(ask(c, "/")), "not an answer alone"
        if how == "close-stdio":
            def taken():
                return [fd_target(srv.proc.pid, fd) for fd in (1, 2)]
            # a descriptor the server holds for a moment (the last request's
            # connection, closing) may take number 2 first: more clients then
            while len(clients) < 6 and not all(t and t.startswith("socket:") for t in taken()):
                clients.append(srv.connect())
                assert ANSWER.match(ask(clients[-1], "/")), "not an answer alone"
            taken = taken()
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
    text = srv.stderr if log == "-" else srv.error_log + srv.access_log
    for line in ("RuntimeError: internals of the app", "a wsgi.errors line",
                 "a sys.stderr line", "a print() line", '"GET /raise HTTP/1.1" 500'):
        assert line in text, "%r is not in the log:\n%s" % (line, text)


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]])
def test_a_signal_to_a_child_the_app_forked_is_the_childs(tracfront, tmp_path, workers):
    """A forked child kept tracfront's signal handlers, which write to the
    server's signal pipe: a SIGTERM to the child (multiprocessing's
    Pool.terminate() at the end of a `with`) was taken for the server's own,
    and the server stopped while the child lived on, holding the port. The
    child has the default handlers back, as after uWSGI's fork."""
    srv = app_server(tracfront, tmp_path, *workers)
    status = int(requests.get(srv.url + "fork-term", timeout=30).text)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
    assert requests.get(srv.url + "mp-pool", timeout=30).text == "[1, 2, 3]"
    assert requests.get(srv.url + "write", timeout=10).text == "ok"
    assert srv.proc.poll() is None
    assert "stopping" not in srv.error_log and "exited" not in srv.error_log, srv.error_log


def test_ctrl_c_stops_a_server_whose_request_runs_os_system(tracfront, tmp_path):
    """glibc's system() sets SIGINT to ignored in the whole process while its
    command runs (POSIX: for an interactive caller): a Ctrl-C then was lost
    and the server went on serving. tracfront's system() leaves the server's
    SIGINT alone; the request is let finish, as at any stop."""
    srv = app_server(tracfront, tmp_path)
    started = tmp_path / "started"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(requests.get, srv.url + "os-system?%s" % started, timeout=30)
        wait_for(started.exists, 10, "the command os.system runs")
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(20) == 0, srv.error_log
        answer = running.result()
    assert answer.status_code == 200 and answer.text == "0"
    assert "signal 2: stopping" in srv.error_log, srv.error_log


def test_sys_stderr_fileno_follows_a_log_rotation(tracfront, tmp_path):
    # fileno() is a duplicate of the error log's descriptor: SIGUSR1 puts the
    # new file there too
    srv = app_server(tracfront, tmp_path)
    os.rename(srv.workdir / "error.log", srv.workdir / "error.log.1")
    srv.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: (srv.workdir / "error.log").exists() and
             "SIGUSR1: log files reopened" in srv.error_log, 10, "the reopen")
    assert requests.get(srv.url + "write-fileno", timeout=10).text == "ok"
    assert "a fileno line" in srv.error_log, srv.error_log


GAVE_UP = "Python's end did not finish within --graceful-timeout"


def stop_within(srv, deadline=60):
    """SIGTERM, and the process's exit status: it must end far sooner than
    deadline (the bound is 5 s past the requests with --graceful-timeout 1)."""
    srv.proc.send_signal(signal.SIGTERM)
    try:
        return srv.proc.wait(deadline)
    except subprocess.TimeoutExpired:
        raise AssertionError("still running %d s after SIGTERM:\n%s" % (deadline, srv.error_log))


def in_order(log, *lines):
    at = [log.find(line) for line in lines]
    assert -1 not in at and at == sorted(at), "%s not in this order:\n%s" % (lines, log)


def test_a_thread_that_never_ends_does_not_hold_a_stop(tracfront, tmp_path):
    # Py_FinalizeEx waits for every non-daemon thread (threading's shutdown):
    # bounded by --graceful-timeout counted from the stop, as with --workers
    srv = app_server(tracfront, tmp_path, "--graceful-timeout", "1")
    assert requests.get(srv.url + "thread", timeout=10).text == "ok"
    assert stop_within(srv) == 0
    in_order(srv.error_log, "signal 15: stopping", GAVE_UP, "still running: 'never-ends'")
    assert "stopped" not in srv.error_log.split(GAVE_UP)[1], srv.error_log


def test_an_executor_task_that_never_ends_does_not_hold_a_stop(tracfront, tmp_path):
    # a ThreadPoolExecutor made at import: threading's registered call
    # (concurrent.futures' _python_exit) joins its threads with no limit
    srv = app_server(tracfront, tmp_path, "--graceful-timeout", "1")
    assert requests.get(srv.url + "executor-forever", timeout=10).text == "ok"
    assert stop_within(srv) == 0
    in_order(srv.error_log, "signal 15: stopping", GAVE_UP, "still running: 'ThreadPoolExecutor-")


def test_a_request_hanging_inline_does_not_hold_a_stop(tracfront, tmp_path):
    # a fast route runs on its network thread (inline); once it hangs there,
    # the stop must still reach --graceful-timeout (closing the listening
    # socket on that thread's loop had waited for it, and no signal was read)
    srv = app_server(tracfront, tmp_path, "--graceful-timeout", "1")
    gate = tmp_path / "hang"
    with requests.Session() as warm:
        for _ in range(40):
            assert warm.get(srv.url + "inline-then-hang?%s" % gate, timeout=10).text == "ok"
    gate.touch()
    hung = srv.connect(timeout=30)
    hung.sendall(b"GET /inline-then-hang?%s HTTP/1.1\r\nHost: h\r\n\r\n" % str(gate).encode())
    time.sleep(0.5)
    try:
        assert stop_within(srv, 30) == 0
    finally:
        gate.unlink()
        hung.close()
    in_order(srv.error_log, "signal 15: stopping", "requests still running after --graceful-timeout")


def test_a_thread_holding_the_gil_does_not_hold_a_stop(tracfront, tmp_path):
    # a regular expression that backtracks for ever never releases the GIL:
    # the network threads' ends (they drop their Python thread states) and
    # Python's end wait for it; the bound covers them from the requests' end.
    # The exit it forces leaves crew threads unjoined, among them spares that
    # had ended: ThreadSanitizer calls those leaked and exits 66, no race.
    env = None
    if os.environ.get("TF_SANITIZER") == "tsan":
        env = {"TSAN_OPTIONS": os.environ.get("TSAN_OPTIONS", "") + " report_thread_leaks=0"}
    srv = app_server(tracfront, tmp_path, "--graceful-timeout", "1", env=env)
    assert requests.get(srv.url + "hold-gil", timeout=10).text == "ok"
    time.sleep(0.5)  # the thread holds the GIL by now
    assert stop_within(srv) == 0
    in_order(srv.error_log, "signal 15: stopping", GAVE_UP)


# threads that end once threading's shutdown tells them to: a ThreadPoolExecutor's
# idle workers (threading._register_atexit); threads that join or poll the main
# thread, which it marks ended first. The stop ends at once, as python3 does.
ENDED_BY_SHUTDOWN = {"pool": [], "wait-main": ["main-thread joiner ended",
                                               "main-thread poller ended"]}


@pytest.mark.parametrize("threads", sorted(ENDED_BY_SHUTDOWN))
def test_a_stop_still_finalizes_python_when_the_threads_end_at_its_call(tracfront, tmp_path,
                                                                        threads):
    srv = app_server(tracfront, tmp_path, "--graceful-timeout", "20")
    mark = tmp_path / "atexit-ran"
    assert requests.get(srv.url + "%s?%s" % (threads, mark), timeout=10).text == "ok"
    assert stop_within(srv, 15) == 0
    log = srv.error_log
    assert mark.exists(), log
    assert all(line in log for line in ENDED_BY_SHUTDOWN[threads]), log
    assert GAVE_UP not in log and log.rstrip().endswith("stopped"), log


CRASH = "Fatal Python error: Segmentation fault"
# under ASan its own handler reports the signal after faulthandler's, and aborts
FATAL = (signal.SIGSEGV, signal.SIGABRT) if os.environ.get("TF_SANITIZER") else (signal.SIGSEGV,)


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]], ids=["in-process", "workers"])
def test_a_crash_leaves_the_python_stacks_in_the_error_log(tmp_path, workers):
    if os.environ.get("TF_SANITIZER") == "tsan":
        pytest.skip("ThreadSanitizer takes the SIGSEGV and exits 66 itself")
    script = tmp_path / "process_app.wsgi"
    script.write_text(APP)
    srv = start_server(tmp_path / "srv", "--wsgi-file", script, *workers)
    try:
        with pytest.raises(requests.ConnectionError):
            requests.get(srv.url + "segv", timeout=30)
        if workers:  # the front says the worker's signal, and starts another
            ended = wait_for(lambda: re.search(r"worker \d+ exited \(signal (\d+)[,)]",
                                               srv.error_log), 30, "the front's line")
            assert int(ended.group(1)) in FATAL, srv.error_log
        else:
            assert -srv.proc.wait(30) in FATAL, srv.error_log
        log = srv.error_log
        assert CRASH in log, log
        assert re.search(r'File "[^"]*process_app\.wsgi", line \d+ in application', log), log
    finally:
        srv.stop()
