"""Stuck requests: --request-timeout reports the Python stack of a WSGI request
running too long (every thread's with --dump-all), /__profile__ and
/__profile__/api/inflight show it while it runs, and --request-timeout-action
504 interrupts it (tracfront.RequestTimeout) while the server goes on serving.

The app is tests/apps/stuck_app.py. No assertion is about durations: slow
things are polled for with generous deadlines, and a request that should have
been interrupted but was not shows up as a read timeout.
"""
import http.client
import json
import os
import threading
import time

import pytest

APP = "stuck_app:app"


def get(srv, path, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def in_background(srv, path, timeout=60):
    """GET path on another thread; returns (thread, result dict)."""
    result = {}

    def run():
        try:
            result["status"], result["body"] = get(srv, path, timeout)
        except Exception as e:  # noqa: BLE001 - reported by the test
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def poll(what, check, timeout=20, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


def stuck_lines(srv):
    return [l for l in srv.error_log.splitlines() if "stuck request" in l]


def test_stuck_request_stack_is_logged_once(tracfront):
    srv = tracfront("--app", APP, "--threads", "2", "--request-timeout", "0.3")
    t, result = in_background(srv, "/spin?s=2")
    poll("the stuck line", lambda: stuck_lines(srv))
    log = srv.error_log
    assert "GET /spin?s=2" in stuck_lines(srv)[0]
    assert "in busy_spin" in log          # the app function's frame
    assert "stuck_app.py" in log
    assert "background_loop" not in log   # only its own thread without --dump-all
    t.join(30)
    assert result.get("status") == 200 and result["body"] == b"finished\n"  # log only
    assert len(stuck_lines(srv)) == 1     # once, not every 0.1 s
    assert "traceback" not in srv.error_log.lower()


def test_dump_all_shows_other_threads(tracfront):
    srv = tracfront("--app", APP, "--threads", "2", "--request-timeout", "0.3", "--dump-all")
    t, result = in_background(srv, "/slices?s=2")
    poll("the --dump-all report", lambda: "background_loop" in srv.error_log)
    log = srv.error_log
    assert "every Python thread's stack" in log
    assert "stuck-app-background" in log  # a thread of the threading module, by name
    assert "app thread, request" in log and "GET /slices?s=2" in log
    assert "in sleep_in_slices" in log
    t.join(30)
    assert result.get("status") == 200


def test_profile_page_and_api_show_the_running_request(tracfront):
    srv = tracfront("--app", APP, "--threads", "2", "--request-timeout", "0.5")
    t, result = in_background(srv, "/spin?s=4&tag=api")

    def running():
        status, body = get(srv, "/__profile__/api/inflight")
        assert status == 200
        doc = json.loads(body)
        mine = [r for r in doc["requests"] if r["target"] == "/spin?s=4&tag=api"]
        return mine and mine[0]["stuck"] and mine[0]

    entry = poll("the request in /api/inflight, past the timeout", running)
    assert entry["method"] == "GET"
    assert entry["running_s"] >= 0.5 and isinstance(entry["id"], int)
    assert "in busy_spin" in entry["stack"]
    status, page = get(srv, "/__profile__")
    assert status == 200
    html = page.decode()
    assert "<h2 id=inflight>In flight</h2>" in html
    section = html[html.index("id=inflight"):]
    assert "/spin?s=4&#38;tag=api" in section and "busy_spin" in section
    assert "<b>stuck</b>" in section
    t.join(30)
    assert result.get("status") == 200

    def gone():  # the answer may reach the client just before the thread lets go
        doc = json.loads(get(srv, "/__profile__/api/inflight")[1])
        return all(r["target"] != "/spin?s=4&tag=api" for r in doc["requests"])

    poll("the finished request to leave /api/inflight", gone)


def test_inflight_without_timeout_lists_requests(tracfront):
    srv = tracfront("--app", APP, "--threads", "2")
    t, result = in_background(srv, "/slices?s=1.5")

    def running():
        doc = json.loads(get(srv, "/__profile__/api/inflight")[1])
        return [r for r in doc["requests"] if r["target"] == "/slices?s=1.5"]

    entry = poll("the request in /api/inflight", running)[0]
    assert entry["stuck"] is False   # --request-timeout is off: nothing is stuck
    doc = json.loads(get(srv, "/__profile__/api/inflight")[1])
    assert doc["request_timeout"] == 0 and doc["action"] == "log"
    t.join(30)
    assert result.get("status") == 200
    assert not stuck_lines(srv)


READERS = {"api": (), "watchdog": ("--request-timeout", "0.3")}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_stack_read_lets_no_frame_return_under_it(tracfront, reader):
    """Reading a request's stack makes frame objects for its thread's frames
    (sys._current_frames, PyFrame_GetBack), GC-tracked allocations: one
    collected, a finalizer let the GIL go, and the request's thread returned
    from the very frame being made into an object, whose code object went
    with it (tests/apps/frame_race_app.py). The reader then formatted the
    popped frame (ASan: heap-use-after-free in describe_frame; release:
    heap corruption, "corrupted size vs. prev_size"). The collector is off
    while stacks are read: the finalizer runs on the app's own thread."""
    asan = os.environ.get("TF_SANITIZER") == "asan"  # code objects from malloc: ASan sees them
    srv = tracfront("--app", "frame_race_app:app", "--threads", "1", *READERS[reader],
                    env={"PYTHONMALLOC": "malloc"} if asan else None)
    t, result = in_background(srv, "/")

    def in_inner():
        status, body = get(srv, "/__profile__/api/inflight")
        assert status == 200, body
        return any("in inner" in (r["stack"] or "") for r in json.loads(body)["requests"])

    if reader == "api":
        poll("the request's stack in inner", in_inner)
    t.join(30)
    assert srv.alive(), srv.stderr[-3000:]
    assert result.get("status") == 200, result
    assert result["body"] == b"app timed-out", result
    if reader == "watchdog":
        stuck = srv.error_log[srv.error_log.index("stuck request"):]
        assert "in inner" in stuck, stuck


def test_action_504_interrupts_and_server_keeps_serving(tracfront):
    srv = tracfront("--app", APP, "--threads", "2", "--request-timeout", "0.5",
                    "--request-timeout-action", "504")
    t, result = in_background(srv, "/spin?s=120&tag=spin504", timeout=60)
    # Other requests are answered while it spins ...
    for _ in range(5):
        assert get(srv, "/fast") == (200, b"fast\n")
    t.join(60)
    assert "error" not in result, result.get("error")
    assert result["status"] == 504
    assert result["body"] == (b"504 Gateway Timeout\n"
                              b"The application did not answer within --request-timeout.\n")
    # ... and after.
    assert get(srv, "/fast") == (200, b"fast\n")
    # the iterable's close() was called (just after the 504 went out: poll)
    poll("close() of the interrupted body",
         lambda: "spin504" in json.loads(get(srv, "/closed")[1]))
    log = srv.error_log
    assert "interrupting it (--request-timeout-action 504)" in log
    assert "GET /spin?s=120&tag=spin504: interrupted after --request-timeout; answered 504" in log


def test_interrupted_thread_is_reused(tracfront):
    srv = tracfront("--app", APP, "--threads", "1", "--request-timeout", "0.3",
                    "--request-timeout-action", "504")
    for tag in ("one", "two"):
        status, _ = get(srv, "/slices?s=120&tag=" + tag, timeout=60)
        assert status == 504
        # the single app thread runs the next request normally
        assert get(srv, "/fast") == (200, b"fast\n")
    assert json.loads(get(srv, "/closed")[1]) == ["one", "two"]
    assert srv.alive()


def test_except_exception_does_not_swallow_the_timeout(tracfront):
    srv = tracfront("--app", APP, "--threads", "1", "--request-timeout", "0.3",
                    "--request-timeout-action", "504")
    status, body = get(srv, "/swallow?s=120", timeout=60)
    assert status == 504 and b"swallowed" not in body


def test_a_timeout_the_app_swallowed_is_still_a_504(tracfront):
    """Trac's dispatch_request ends in `finally: return resp`: the
    RequestTimeout is dropped and the app returns normally. It was answered
    500 ("returned a body without calling start_response()", as start_response
    was called before), or 200 with what the app returned."""
    srv = tracfront("--app", APP, "--threads", "1", "--request-timeout", "0.3",
                    "--request-timeout-action", "504")
    status, body = get(srv, "/finally_return?s=120", timeout=60)
    assert status == 504 and b"returned anyway" not in body, (status, body)
    assert "GET /finally_return?s=120: interrupted after --request-timeout; answered 504" in \
        srv.error_log
    assert get(srv, "/fast") == (200, b"fast\n")


def test_a_generator_that_swallows_the_timeout_is_still_a_504(tracfront):
    srv = tracfront("--app", APP, "--threads", "1", "--request-timeout", "0.3",
                    "--request-timeout-action", "504")
    status, body = get(srv, "/generator_swallowing?s=120", timeout=60)
    assert status == 504, (status, body)
    data = raw_get_until_close(srv, "/generator_swallowing_after_the_head?s=120")
    assert data.startswith(b"HTTP/1.1 200 OK") and b"first part" in data, data
    assert not data.endswith(b"0\r\n\r\n"), data  # never ended cleanly
    assert get(srv, "/fast") == (200, b"fast\n")


def test_an_app_that_answers_its_timeout_itself_keeps_its_answer(tracfront):
    srv = tracfront("--app", APP, "--threads", "1", "--request-timeout", "0.3",
                    "--request-timeout-action", "504")
    assert get(srv, "/answers_the_timeout?s=120", timeout=60) == (503, b"too slow, try later\n")
    assert get(srv, "/fast") == (200, b"fast\n")  # nothing pending for the next request


def raw_get_until_close(srv, path):
    """GET path on a keep-alive request, read to the server's close: the
    bytes as sent (a chunked body's end, or its lack, shows)."""
    s = srv.connect(timeout=60)
    try:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


def test_a_timeout_swallowed_after_the_head_aborts_the_connection(tracfront):
    """A page streamed through write() whose RequestTimeout the app dropped
    ended as a clean chunked 200 without its end: a cut page that looked
    whole to browsers and caches."""
    srv = tracfront("--app", APP, "--threads", "1", "--request-timeout", "0.3",
                    "--request-timeout-action", "504")
    data = raw_get_until_close(srv, "/written_then_swallowed?s=120")
    assert data.startswith(b"HTTP/1.1 200 OK") and b"first part" in data, data
    assert not data.endswith(b"0\r\n\r\n"), data  # never ended cleanly
    assert "written_then_swallowed?s=120: interrupted after --request-timeout; connection " \
        "aborted" in srv.error_log
    assert get(srv, "/fast") == (200, b"fast\n")


def test_timeout_after_the_head_aborts_the_connection(tracfront):
    srv = tracfront("--app", APP, "--threads", "1", "--request-timeout", "0.3",
                    "--request-timeout-action", "504")
    data = raw_get_until_close(srv, "/stream_spin?s=120&tag=streamed")
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b"first chunk" in data
    assert not data.endswith(b"0\r\n\r\n")  # the chunked body never ended cleanly
    assert "connection aborted" in srv.error_log
    assert get(srv, "/fast") == (200, b"fast\n")
    assert "streamed" in json.loads(get(srv, "/closed")[1])


def test_single_c_call_is_interrupted_only_when_it_returns(tracfront):
    # The documented limit: time.sleep(1) cannot be interrupted; the
    # exception lands when it returns, and then the answer is still a 504.
    srv = tracfront("--app", APP, "--threads", "1", "--request-timeout", "0.2",
                    "--request-timeout-action", "504")
    status, _ = get(srv, "/sleep?s=1", timeout=60)
    assert status == 504
    assert "stuck request" in srv.error_log


def test_timeout_pending_in_c_never_hits_the_next_request(tracfront):
    # The body is a pipe read by C code only: the RequestTimeout raised while
    # it waits cannot be delivered there; it is once the first item comes
    # (nothing was sent yet: a 504), and it must not surface in the thread's
    # next request.
    srv = tracfront("--app", APP, "--threads", "1", "--request-timeout", "0.2",
                    "--request-timeout-action", "504")
    status, body = get(srv, "/c_block?s=1", timeout=60)
    assert status == 504
    assert "interrupting it" in srv.error_log
    assert "GET /c_block?s=1: interrupted after --request-timeout; answered 504" in srv.error_log
    for _ in range(3):
        assert get(srv, "/fast") == (200, b"fast\n")
    assert "RequestTimeout" not in srv.error_log


def test_bad_action_is_refused_at_start(tracfront):
    srv = tracfront("--app", APP, "--request-timeout", "1", "--request-timeout-action", "kill",
                    expect_fail=True)
    assert srv.proc.wait(10) == 2
    assert "--request-timeout-action: 'kill' is not log or 504" in srv.stderr


TOP_LEVEL_IMPORT_APP = """
import time
import tracfront
from tracfront import RequestTimeout


def app(environ, start_response):
    try:
        time.sleep(0.01)
        while True:
            pass
    except RequestTimeout:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                       __import__("sys").exc_info())
        return [b"caught " + tracfront.__name__.encode()]
"""


@pytest.mark.parametrize("workers", [(), ("--workers", "1")])
def test_request_timeout_importable_when_the_app_module_loads(tracfront, tmp_path, workers):
    """uWSGI's `import uwsgi` and mod_wsgi's `import mod_wsgi` work at the top
    of the app's module: so does `import tracfront`, which is there before
    the app is imported."""
    (tmp_path / "top_import_app.py").write_text(TOP_LEVEL_IMPORT_APP)
    srv = tracfront("--app", "top_import_app:app", "--pythonpath", tmp_path,
                    "--request-timeout", "0.5", "--request-timeout-action", "504", *workers)
    status, body = get(srv, "/")
    assert (status, body) == (503, b"caught tracfront")


def test_request_timeout_exception_is_importable(tracfront):
    srv = tracfront("--app", APP, "--threads", "1")
    status, body = get(srv, "/exception")
    assert status == 200
    assert body == b"tracfront.RequestTimeout base=True exception=False"
