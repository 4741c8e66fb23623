"""Inline runs (--inline-fast-calls, wsgi/fastpath.h): a request whose method
and target the app answered fast on its last calls runs inside the network
thread's read of it, with no suspend and resume of its connection.

Every way of answering stays whole when it runs inline; the profiler counts
inline runs per route (JSON, Prometheus, and through a front's workers);
false turns them off; a path that turns slow runs away from the loop again,
so a blocked call no longer holds up the other connections; and an answer
streamed without a Content-Length (an event stream, which may never end)
never holds the network thread: such a path never runs inline, and one that
turns into such a stream while inline is cut.
"""
import os
import pathlib
import socket
import threading
import time

import pytest
import requests

APP = ("--app", "inline_apps:app")
WARM = 20  # calls per path: more than the streak of fast calls that opens a path


def latency_routes(srv):
    r = requests.get(srv.url + "__profile__/api/latency", timeout=10)
    assert r.status_code == 200
    return {(x["route"], x["backend"]): x for x in r.json()["routes"]}


def inline_count(srv, route):
    entry = latency_routes(srv).get((route, "wsgi"))
    return entry["inline"] if entry else 0


def settled_inline_count(srv, route):
    """inline_count once the route's count of requests has stopped moving:
    a request is recorded as it completes, just after its client has the
    answer (a count read at once could miss the last one, under ASan)."""
    last = None
    for _ in range(100):
        entry = latency_routes(srv).get((route, "wsgi")) or {}
        now = (entry.get("count", 0), entry.get("inline", 0))
        if now == last:
            return now[1]
        last = now
        time.sleep(0.05)
    pytest.fail("the count of %s never settled" % route)


def wait_for(check, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def check_list(r):
    assert (r.status_code, r.content, r.headers["Content-Length"]) == (200, b"list", "4")


def check_gen(r):
    assert (r.status_code, r.content) == (200, b"gen")
    assert r.headers.get("Transfer-Encoding") == "chunked"


def check_sized_gen(r):
    assert (r.status_code, r.content, r.headers["Content-Length"]) == (200, b"gen", "3")


def check_write(r):
    assert (r.status_code, r.content) == (200, b"write!")


def check_file(r):
    assert (r.status_code, r.content) == (200, bytes(range(256)) * 64)


def check_big(r):  # twice the channel's high mark: the answer waits for its reader
    assert r.status_code == 200 and len(r.content) == 1 << 20
    assert r.content.count(b"x") == 1 << 20


def check_error(r):
    assert r.status_code == 500 and b"Traceback" not in r.content


ANSWERS = [  # (method, path, body, check)
    ("GET", "/list", None, check_list),
    ("GET", "/gen?sized=1", None, check_sized_gen),  # unsized streams never run inline
    ("GET", "/write?sized=1", None, check_write),
    ("GET", "/file", None, check_file),
    ("POST", "/echo", b"posted body", lambda r: (r.status_code, r.content) == (200, b"posted body")
     or pytest.fail("echo: %r" % r.content)),
    ("GET", "/raise", None, check_error),
    ("GET", "/str", None, check_error),
    ("HEAD", "/list", None, lambda r: (r.status_code, r.content, r.headers["Content-Length"]) ==
     (200, b"", "4") or pytest.fail("HEAD: %r %r" % (r.status_code, r.headers))),
]


def call_until_inline(srv, session, method, path, body, check, most=200):
    """Call until the path has run inline once more (each answer checked),
    then a few more times; returns the number of calls. The first calls
    never run inline, and on a loaded machine one slow call starts the
    streak again. Under ThreadSanitizer, /big's first part (512 KiB through
    the instrumented channel) takes 4 ms: there it only has to answer."""
    route = path.split("?")[0]
    before = inline_count(srv, route)
    calls = 0
    while inline_count(srv, route) == before:
        if route == "/big" and os.environ.get("TF_SANITIZER") == "tsan" and calls == 20:
            break
        assert calls < most, "%s %s never ran inline in %d calls" % (method, path, most)
        check(session.request(method, srv.url + path[1:], data=body, timeout=30))
        calls += 1
    for _ in range(3):
        check(session.request(method, srv.url + path[1:], data=body, timeout=30))
    return calls + 3


def test_a_body_past_the_memory_mark_never_runs_inline(tracfront):
    """A call whose body waited for its client (past the 512 KiB memory mark)
    is not a fast one, however quick: inline, with no client to wait for, its
    body would go through the spill file (a client that keeps up costs no
    disk otherwise)."""
    srv = tracfront(*APP)
    with requests.Session() as s:
        for _ in range(30):
            check_big(s.get(srv.url + "big?n=%d" % (1 << 20), timeout=30))
    assert inline_count(srv, "/big") == 0


def test_a_large_upload_never_runs_inline(tracfront):
    """A route that answered small posts fast runs inline; a large body to it
    does not: the app reads it from the spool on an app thread, and the other
    clients of the network thread are not held up meanwhile. Its size is
    known before the call, unlike a large answer's."""
    srv = tracfront(*APP)
    with requests.Session() as s:
        call_until_inline(srv, s, "POST", "/echo", b"small", lambda r: r.status_code == 200)
        before = settled_inline_count(srv, "/echo")
        big = b"u" * (1 << 20)
        for _ in range(3):
            r = s.post(srv.url + "echo", data=big, timeout=30)
            assert (r.status_code, r.content) == (200, big)
        assert settled_inline_count(srv, "/echo") == before, "a 1 MiB upload ran inline"
        call_until_inline(srv, s, "POST", "/echo", b"small", lambda r: r.status_code == 200)


def test_a_wrong_guess_past_max_spill_is_cut_once(tracfront):
    """A target that answered small and fast runs inline; when it suddenly
    streams more than --max-spill, the inline call cannot wait for its
    client: the answer is cut (an error, logged, not a hang) and the target
    runs away from the network thread from then on (its answers whole)."""
    srv = tracfront(*APP, "--max-spill", "1M", "--io-threads", "1")
    n = 3 << 20
    target = "grow?after=40&n=%d" % n
    with requests.Session() as s:
        for _ in range(40):
            assert s.get(srv.url + target, timeout=30).content == b"small answer\n\n"
    assert inline_count(srv, "/grow") > 0, "the small answers never ran inline"
    cut = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
    try:  # not a ReadTimeout: a hang was the bug
        r = requests.get(srv.url + target, timeout=30)
        assert len(r.content) < n, "the inline call past --max-spill was not cut"
    except cut:  # the connection closed short of the Content-Length
        pass
    wait_for(lambda: "an inline call's answer passed --max-spill" in srv.error_log,
             "the cut logged")
    for _ in range(3):  # off the network thread now: whole
        r = requests.get(srv.url + target, timeout=30)
        assert (r.status_code, len(r.content)) == (200, n)


@pytest.mark.parametrize("net", [(), ("--io-threads", "1")], ids=["default", "one-network-thread"])
def test_every_kind_of_answer_is_whole_when_run_inline(tracfront, net):
    srv = tracfront(*APP, *net)
    with requests.Session() as s:  # keep-alive: one connection, so one network thread
        calls = {path: call_until_inline(srv, s, *answer)
                 for answer in ANSWERS for path in [answer[1]]}
        closed = s.get(srv.url + "closed", timeout=10)
    assert closed.text == str(calls["/write?sized=1"]), "write()'s iterable was not closed once per call"
    assert "inline_apps: raised on purpose" in srv.error_log
    assert "GET /str: the app's response contains str (the body must be bytes)" in srv.error_log
    metrics = requests.get(srv.url + "__profile__/metrics", timeout=10).text
    line = 'tracfront_requests_inline_total{route="/list",backend="wsgi"} '
    assert line in metrics and int(metrics.split(line)[1].split()[0]) > 0
    page = requests.get(srv.url + "__profile__", timeout=10).text
    row = page.split("<code>/list</code>")[1].split("<tr>")[0]
    assert "<th>inline" in page and "<td>%d<td>" % inline_count(srv, "/list") in row


def test_pipelined_requests_run_inline_answer_in_order(tracfront):
    srv = tracfront(*APP, "--io-threads", "1")
    with requests.Session() as s:
        call_until_inline(srv, s, "GET", "/list", None, check_list)
    for _ in range(10):  # until a batch ran inline (a slow call starts the streak again)
        before = inline_count(srv, "/list")  # (/gen, streamed without a length, never does)
        got = srv.raw(b"GET /list HTTP/1.1\r\nHost: x\r\n\r\n" * 5 +
                      b"GET /gen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert got.count(b"HTTP/1.1 200 OK") == 6
        assert got.count(b"\r\n\r\nlist") == 5 and got.endswith(b"0\r\n\r\n")
        if inline_count(srv, "/list") > before:
            break
    else:
        pytest.fail("no pipelined /list ran inline")


def test_expect_without_a_body_then_a_pipelined_request_runs_inline_whole(tracfront):
    """A POST with Expect: 100-continue, no body, and the next request in the
    same packet: libmicrohttpd 0.9.75 sent 100 Continue, then called with an
    empty piece of body, taken for the request's end; the inline run's answer
    queued there was refused and the connection closed. The app had run (its
    side effects done, a 200 in the access log) and the client got only the
    100. Both answers come now."""
    srv = tracfront(*APP, "--io-threads", "1")
    with requests.Session() as s:
        call_until_inline(srv, s, "POST", "/list", b"", check_list)
    for _ in range(5):
        before = inline_count(srv, "/list")
        got = srv.raw(b"POST /list HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                      b"Expect: 100-continue\r\n\r\n"
                      b"GET /list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert got.count(b"HTTP/1.1 200 OK") == 2 and got.endswith(b"\r\n\r\nlist"), got[-300:]
        if settled_inline_count(srv, "/list") > before:
            break
    else:
        pytest.fail("no POST /list with Expect ran inline")


def test_workers_count_inline_runs_on_the_front(tracfront):
    srv = tracfront(*APP, "--workers", "1")
    with requests.Session() as s:
        call_until_inline(srv, s, "GET", "/list", None, check_list)
    assert inline_count(srv, "/list") > 0


def test_false_never_runs_inline(tracfront):
    srv = tracfront(*APP, "--inline-fast-calls", "false")
    with requests.Session() as s:
        for method, path, body, check in ANSWERS[:4]:
            for _ in range(WARM):
                check(s.request(method, srv.url + path[1:], data=body, timeout=30))
    routes = latency_routes(srv)
    assert routes[("/list", "wsgi")]["count"] == WARM
    assert all(entry["inline"] == 0 for entry in routes.values())


def test_a_fast_path_that_blocks_runs_away_from_the_loop_next_time(tracfront, tmp_path):
    # One network thread. /gate answers fast until a call of the same target
    # waits for a gate file (named in its X-Gate header). That call may run
    # inline and hold up the loop while it waits (the documented cost of a
    # wrong guess); the next call of the target must not: another connection
    # is served while it waits.
    srv = tracfront(*APP, "--io-threads", "1", "--threads", "4")
    with requests.Session() as s:
        for _ in range(10 * WARM):
            assert s.get(srv.url + "gate", timeout=10).text == "gate"
            if inline_count(srv, "/gate") > 0:
                break
    assert inline_count(srv, "/gate") > 0, "/gate never ran inline"

    def blocked_call(gate):
        """Start a /gate call that waits for gate; return once the app runs
        it (it leaves gate.entered: seen even while the loop is held up)."""
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=requests.get(srv.url + "gate", headers={"X-Gate": str(gate)}, timeout=60)),
            daemon=True)
        t.start()
        entered = pathlib.Path(str(gate) + ".entered")
        wait_for(entered.exists, "the app never started the call waiting for %s" % gate)
        return t, result

    first_gate, second_gate = tmp_path / "first", tmp_path / "second"
    t1, res1 = blocked_call(first_gate)
    time.sleep(0.05)  # far over the 1 ms that makes a call slow, whichever way it ran
    first_gate.touch()
    t1.join(30)
    assert res1["r"].text == "gate"
    inline_after_first = settled_inline_count(srv, "/gate")

    t2, res2 = blocked_call(second_gate)
    try:
        with requests.Session() as s:  # another connection, on the same network thread
            for _ in range(3):
                try:
                    check_list(s.get(srv.url + "list", timeout=10))
                except requests.exceptions.Timeout:
                    pytest.fail("another connection waited for the blocked call: it ran inline")
        assert t2.is_alive(), "the blocked call finished before its gate opened"
    finally:
        second_gate.touch()
    t2.join(30)
    assert res2["r"].text == "gate"
    assert settled_inline_count(srv, "/gate") == inline_after_first, "the slow call ran inline again"


def read_events(sock, want, timeout=10):
    """Read from sock until it has sent want (bytes), or closed; returns
    (what it sent, True if it closed). A timeout fails: the bug was a
    network thread held by an endless answer, whose client got nothing."""
    sock.settimeout(timeout)
    got = b""
    while want not in got:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            pytest.fail("no %r after %d s; got %r" % (want, timeout, got[:300]))
        except ConnectionResetError:
            b = b""
        if not b:
            return got, True
        got += b
    return got, False


def ended(srv):
    return int(requests.get(srv.url + "feeds_ended", timeout=10).text)


def test_an_event_stream_fast_at_first_never_runs_inline(tracfront):
    """An SSE path whose first calls send one event and end (fast), and whose
    later ones stream for ever: such a stream on the network thread held it
    for good (its client got nothing, not even the head; every other
    connection of the thread waited; the generator outlived its client). An
    answer streamed without a Content-Length is never a fast call: its
    events go out as they come, the other connections are served meanwhile,
    and the generator is closed once its client has gone."""
    srv = tracfront(*APP, "--io-threads", "1", "--threads", "4")
    target = "feed?after=%d" % WARM
    with requests.Session() as s:
        for _ in range(WARM):
            r = s.get(srv.url + target, timeout=10)
            assert (r.status_code, r.content) == (200, b"data: event 0\n\n")
    with srv.connect() as sock:
        sock.sendall(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
        got, closed = read_events(sock, b"data: event 1\n\n")
        assert not closed and got.startswith(b"HTTP/1.1 200 OK\r\n"), got[:300]
        assert b"Content-Type: text/event-stream" in got and b"data: event 0\n\n" in got
        with requests.Session() as other:  # the same network thread, meanwhile
            check_list(other.get(srv.url + "list", timeout=10))
        got, closed = read_events(sock, b"data: event 3\n\n")
        assert not closed, "the stream ended: %r" % got[-300:]
        assert ended(srv) == 0
    wait_for(lambda: ended(srv) == 1, "the endless generator outlived its client")
    assert inline_count(srv, "/feed") == 0


def test_a_stream_without_length_never_runs_inline(tracfront):
    srv = tracfront(*APP)
    with requests.Session() as s:
        for _ in range(2 * WARM):
            check_gen(s.get(srv.url + "gen", timeout=10))
            check_write(s.get(srv.url + "write", timeout=10))
    assert inline_count(srv, "/gen") == 0 and inline_count(srv, "/write") == 0


def dechunk(body):
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return out
        out, body = out + rest[:n], rest[n + 2:]


def test_a_finite_page_streamed_by_an_inline_call_is_whole(tracfront):
    """A target answered whole and fast runs inline; then one call renders a
    page in 20 pieces over a few ms, without a Content-Length (as Trac
    writes its pages). The cut for endless streams took it at 1 ms: 16 KiB of
    80 went out, which on HTTP/1.0 looked complete. Its budget is a second."""
    srv = tracfront(*APP, "--io-threads", "1", "--threads", "4")
    with requests.Session() as s:
        call_until_inline(srv, s, "GET", "/turn", None,
                          lambda r: r.content == b"turn" or pytest.fail(repr(r.content)))
    whole = b"".join(b"%04d" % i + b"p" * 4092 for i in range(20))
    for version in (b"HTTP/1.1", b"HTTP/1.0"):
        before = settled_inline_count(srv, "/turn")
        with srv.connect() as sock:
            sock.sendall(b"GET /turn " + version + b"\r\nHost: x\r\nX-Page: 1\r\n"
                         b"Connection: close\r\n\r\n")
            got, _ = read_events(sock, b"never sent")
        head, _, body = got.partition(b"\r\n\r\n")
        if version == b"HTTP/1.1":
            assert b"Transfer-Encoding: chunked" in head and body.endswith(b"0\r\n\r\n"), head
            body = dechunk(body)
        assert body == whole, (version, len(body))
        assert settled_inline_count(srv, "/turn") == before + 1, "the page did not run inline"
        with requests.Session() as s:  # its streak again: the page counted as long
            call_until_inline(srv, s, "GET", "/turn", None,
                              lambda r: r.content == b"turn" or pytest.fail(repr(r.content)))
    assert "an inline call's answer" not in srv.error_log


def test_an_answer_written_by_a_thread_of_the_app_is_no_fast_call(tracfront):
    """The mark that keeps unsized answers from counting as fast calls was
    the writing thread's: written by a thread the app started, the answer
    left no mark on the thread that ran the app, and the target ran inline
    (42 times in 60 calls)."""
    srv = tracfront(*APP, "--io-threads", "1")
    with requests.Session() as s:
        for _ in range(60):
            assert s.get(srv.url + "threadwrite", timeout=10).content == b"data: event 0\n\n"
    assert inline_count(srv, "/threadwrite") == 0


def test_an_inline_call_that_turns_into_an_endless_stream_is_cut(tracfront):
    """A target answered whole and fast runs inline; the same target then
    answers with an endless stream (its first event at once). An inline call
    cannot be handed over: its answer is cut (headers and what came so far,
    then the connection closes, logged) instead of holding the network
    thread for ever, the generator is closed, and the next such call runs
    away from the loop and streams."""
    srv = tracfront(*APP, "--io-threads", "1", "--threads", "4")
    with requests.Session() as s:
        call_until_inline(srv, s, "GET", "/turn", None,
                          lambda r: r.content == b"turn" or pytest.fail(repr(r.content)))
    endless = b"GET /turn HTTP/1.1\r\nHost: x\r\nX-Endless: 1\r\n\r\n"
    with srv.connect() as sock:
        sock.sendall(endless)
        got, closed = read_events(sock, b"never sent")
        assert closed and got.startswith(b"HTTP/1.1 200 OK\r\n"), got[:300]
        assert b"data: event 0\n\n" in got and not got.endswith(b"0\r\n\r\n"), got[-100:]
    wait_for(lambda: "an inline call's answer of unknown length" in srv.error_log, "logged")
    assert ended(srv) == 1
    inlined = settled_inline_count(srv, "/turn")
    with requests.Session() as other:
        check_list(other.get(srv.url + "list", timeout=10))
    with srv.connect() as sock:  # away from the loop now: it streams
        sock.sendall(endless)
        got, closed = read_events(sock, b"data: event 3\n\n")
        assert not closed
        with requests.Session() as other:
            check_list(other.get(srv.url + "list", timeout=10))
    wait_for(lambda: ended(srv) == 2, "the endless generator outlived its client")
    assert settled_inline_count(srv, "/turn") == inlined
