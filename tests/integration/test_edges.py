"""Edges found in review: HEAD with a declared length, a client that stops
reading a page written through write(), a bogus exc_info, an app that
changes its header list after start_response, a body (streamed, listed or a
file) shorter than its Content-Length, the signal mask of processes the app
starts, response headers too large for the connection, an app that forks
and lets its child return, and a response whose __iter__ raises."""
import http.client
import os
import pathlib
import socket
import time

import pytest
import requests

APP = ("--app", "edge_apps:app")


def test_head_keeps_the_declared_length(tracfront):
    srv = tracfront(*APP)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("HEAD", "/head-declared")
    r = conn.getresponse()
    assert r.status == 200
    assert r.getheader("Content-Length") == "12345"
    assert r.read() == b""
    # the connection is still usable: no stray body bytes
    conn.request("GET", "/hello")
    assert conn.getresponse().read() == b"hello"


def spill_files(pid):
    """Anonymous temporary files the server holds open (the response spill)."""
    fds = pathlib.Path("/proc/%d/fd" % pid)
    return [l for l in (os.readlink(fds / f) for f in os.listdir(fds)) if "(deleted)" in l]


def test_client_that_stops_reading_holds_no_app_thread(tracfront):
    srv = tracfront(*APP, "--threads", "1")
    stalled = []
    for _ in range(3):  # more stalled readers than app threads
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"GET /big-write HTTP/1.1\r\nHost: x\r\n\r\n")
        stalled.append(s)
    deadline = time.monotonic() + 20
    while len(spill_files(srv.proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(spill_files(srv.proc.pid)) >= 3, "the pages were not buffered to disk"
    r = requests.get(srv.url + "hello", timeout=10)
    assert (r.status_code, r.text) == (200, "hello")
    # the stalled downloads are intact once they read
    s = stalled[0]
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        b = s.recv(1 << 20)
        assert b, "connection closed before the page was complete"
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"200 OK" in head
    assert body.count(b"w") == 512 * 65536
    for s in stalled:
        s.close()


@pytest.mark.parametrize("args", [(), ("--threads", "1", "--inline-fast-calls", "false"),
                                  ("--max-spill", "1M")])  # then the thread waits too
def test_a_streamed_body_stays_on_its_thread(tracfront, args):
    """A body to slow clients is iterated on the thread of its app call, with
    its thread-locals and its contextvars context, and closed there: under
    gunicorn and mod_wsgi, Flask's stream_with_context and Django's i18n and
    database connections rely on it. tracfront used to park it when the
    client fell behind and resume it on whichever thread was free."""
    srv = tracfront(*APP, *args)
    slow = []
    for tag in ("a", "b", "c"):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        s.sendall(b"GET /affinity?tag=%s&n=200&size=20000 HTTP/1.1\r\nHost: x\r\n\r\n"
                  % tag.encode())
        slow.append(s)
    time.sleep(0.5)  # the readers fall behind (not a timing assertion)
    for s in slow:
        data = b""
        while not data.endswith(b"\r\n0\r\n\r\n"):
            got = s.recv(1 << 16)
            assert got, "connection closed before the body was complete"
            data += got
            time.sleep(0.001)  # a reader slower than the app
        assert data.count(b"a") >= 200 * 20000
        s.close()
    for tag in ("a", "b", "c"):
        seen = requests.get(srv.url + "affinity-result?" + tag, timeout=10).text
        assert seen == "{'moved': 0, 'closed_here': True}", (tag, seen)


def written_bytes(pid):
    """What the process passed to write() and the like: the spill file's
    writes (a socket's sends are not counted)."""
    for line in pathlib.Path("/proc/%d/io" % pid).read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])


def test_a_fast_client_costs_no_spill_file(tracfront):
    """A large streamed body to a client that keeps up waits at the memory
    mark instead of going through the spill file (which doubled the time
    and CPU of a big download): the file is for a reader that stalls."""
    srv = tracfront(*APP, "--inline-fast-calls", "false")
    before = written_bytes(srv.proc.pid)
    with requests.get(srv.url + "affinity?tag=fast&n=3200&size=20000", stream=True,
                      timeout=60) as r:
        n = sum(len(c) for c in r.iter_content(1 << 20))
    assert n == 3200 * 20000
    spilled = written_bytes(srv.proc.pid) - before
    assert spilled < n // 2, "%d of %d bytes went through the spill file" % (spilled, n)


def test_bogus_exc_info_is_an_error_not_a_crash(tracfront):
    srv = tracfront(*APP)
    try:
        requests.get(srv.url + "bogus-exc-info", timeout=10).content
    except requests.exceptions.RequestException:
        pass  # headers were out: the connection is aborted
    assert "exc_info must be sys.exc_info()" in srv.error_log
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"
    assert srv.alive()


def test_headers_changed_after_start_response_are_ignored(tracfront):
    srv = tracfront(*APP)
    r = requests.get(srv.url + "mutate-headers", timeout=10)
    assert r.status_code == 200
    assert r.text == "mutated"
    assert r.headers["X-Kept"] == "yes"
    assert "X-List" not in r.headers
    assert srv.alive()


def test_body_shorter_than_content_length_aborts(tracfront):
    srv = tracfront(*APP)
    raw = srv.raw(b"GET /short-body HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 100" in head
    assert len(body) < 100  # cut short: the client can tell it is incomplete
    assert "Content-Length announced" in srv.error_log
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"


def test_processes_started_by_the_app_have_no_blocked_signals(tracfront):
    srv = tracfront(*APP)
    r = requests.get(srv.url + "child-sigmask", timeout=10)
    assert r.status_code == 200
    blocked = int(r.text.split()[1], 16)
    assert blocked == 0, "child starts with signals blocked: %s" % r.text


def test_body_error_after_headers_closes_the_connection_every_time(tracfront):
    # libmicrohttpd 0.9.75 left about half of these open until the idle timeout.
    srv = tracfront(*APP, "--idle-timeout", "60")
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"GET /abort-midstream HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError("connection left open after the body failed: %r" % data[-80:])
            if not b:
                break
            data += b
        s.close()
        assert data.startswith(b"HTTP/1.1 200")
        assert not data.endswith(b"0\r\n\r\n"), "a failed body was ended as if complete"
    assert srv.error_log.count("abort-midstream") >= 20
    assert "Closing connection" not in srv.error_log  # the traceback said why, once


def test_header_with_an_empty_value_is_sent(tracfront):
    srv = tracfront(*APP)
    r = requests.get(srv.url + "empty-header", timeout=10)
    assert r.status_code == 200 and r.text == "ok"
    assert r.headers.get("X-Empty") == "", r.headers
    assert "was not sent" not in srv.error_log


def answer_to(srv, target, pad=0):
    """The raw answer to GET target; pad: bytes of one more request header."""
    extra = b"X-Pad: %s\r\n" % (b"p" * pad) if pad else b""
    return srv.raw(b"GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n"
                   % (target.encode(), extra), timeout=10)


def access_line(srv, target):
    for _ in range(100):
        lines = [x for x in srv.access_log.splitlines() if '"GET %s ' % target in x]
        if lines:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError("no access-log line for %s:\n%s" % (target, srv.access_log))


# libmicrohttpd builds the answer's head in what is left of the connection's
# 32 KiB pool after the request's head: one that does not fit was a closed
# connection with 0 bytes (logged 200). mod_wsgi answers 500 and logs it.
@pytest.mark.parametrize("query, pad", [
    ("bytes=60000", 0), ("count=100000", 0), ("bytes=24576", 8000),
    ("bytes=60000&body=gen", 0), ("bytes=60000&body=write", 0), ("bytes=40000&body=empty", 0)])
def test_response_headers_too_large_for_the_connection_are_a_500(tracfront, query, pad):
    srv = tracfront(*APP)
    target = "/big-headers?" + query
    raw = answer_to(srv, target, pad)
    assert raw.startswith(b"HTTP/1.1 500 "), raw[:200]
    assert "GET %s: response headers too large (" % target in srv.error_log
    assert '" 500 ' in access_line(srv, target)
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"


@pytest.mark.parametrize("query, pad", [("bytes=24000", 0), ("bytes=32000", 0),
                                        ("bytes=16000", 8000), ("count=2000", 0)])
def test_response_headers_that_fit_are_sent(tracfront, query, pad):
    srv = tracfront(*APP)
    raw = answer_to(srv, "/big-headers?" + query, pad)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
    assert raw.endswith(b"listed")
    assert "too large" not in srv.error_log


@pytest.mark.parametrize("body", ["endless", "endless-write"])
def test_too_large_head_with_an_endless_body_is_a_500_at_once(tracfront, body):
    """The 500 goes at the first chunk or write(), and the iteration stops
    (close() called): it was sent after the body ended, so never for a body
    that does not end (mod_wsgi answers at the head)."""
    srv = tracfront(*APP)
    target = "/big-headers?bytes=60000&body=" + body
    raw = answer_to(srv, target)
    assert raw.startswith(b"HTTP/1.1 500 "), raw[:200]
    assert "GET %s: response headers too large (" % target in srv.error_log
    assert '" 500 ' in access_line(srv, target)
    # the generator was closed; write() raised, and the app did not catch it
    said = "big-headers endless: closed" if body == "endless" else \
        "OSError: response headers too large for the connection (answered 500)"
    deadline = time.monotonic() + 10
    while said not in srv.error_log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert said in srv.error_log
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"


def test_a_replaced_answer_is_whole_after_a_dropped_body(tracfront):
    """A 204's dropped body counted against the Content-Length of the answer
    that replaced it (exc_info): 90 of its 100 bytes went out, logged clean."""
    srv = tracfront(*APP)
    raw = answer_to(srv, "/replaced-after-dropped-chunks")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ") and b"Content-Length: 100" in head, head
    assert body == b"y" * 100
    assert '" 500 100 ' in access_line(srv, "/replaced-after-dropped-chunks")


def test_an_empty_header_value_counts_the_byte_it_is_sent_with(tracfront):
    """libmicrohttpd 0.9.75 refuses "": it goes out as "X-Empty:  " (12
    bytes), so the largest X-Big that fits beside it is 12 bytes smaller
    than without it, not 11."""
    srv = tracfront(*APP)

    def fits(n, empty):
        raw = answer_to(srv, "/big-headers?bytes=%d&empty=%d" % (n, empty))
        assert raw.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 500 ")), raw[:100]
        return raw.startswith(b"HTTP/1.1 200 ")
    lo, hi = 30000, 33000  # fits, does not
    assert fits(lo, 0) and not fits(hi, 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid, 0) else (lo, mid)
    assert fits(lo - 12, 1)
    assert not fits(lo - 11, 1)


@pytest.mark.parametrize("pad, status", [(32300, 431), (32000, 200)])
def test_a_request_head_that_leaves_no_room_for_an_answer_is_a_431(tracfront, pad, status):
    """A head that leaves less of the connection's pool than 256 bytes: the
    app ran and its answer was logged but never sent (0 bytes). It is
    refused before the app runs, as nginx refuses heads too large."""
    srv = tracfront(*APP)
    raw = answer_to(srv, "/noted", pad)
    assert raw.startswith(b"HTTP/1.1 %d " % status), raw[:200]
    assert ('" %d ' % status) in access_line(srv, "/noted")
    assert ("noted: the app ran" in srv.error_log) == (status == 200)
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"


def test_an_answer_whose_head_cannot_be_built_is_logged_as_not_sent(tracfront):
    """Bytes read with the request (a pipelined one) take the pool too and
    are not counted: a head that fits the request alone then cannot be
    built, and the connection closes with nothing sent. It was logged 200
    with the body's bytes; now 500 and '-' (none), with the reason."""
    srv = tracfront(*APP)
    target = "/big-headers?bytes=30000"
    raw = srv.raw(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n"
                  b"X-Pad: %s\r\n\r\n" % (target.encode(), b"p" * 2500), timeout=10)
    assert raw == b""
    assert '" 500 - ' in access_line(srv, target)
    assert "GET %s: the answer's head (200) did not fit what the request left" % target \
        in srv.error_log
    assert "failed to create response header" not in srv.error_log
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"


@pytest.mark.parametrize("pad", [32400, 32500])
def test_a_request_head_that_leaves_room_for_no_answer_at_all(tracfront, pad):
    """112 bytes left, or fewer: libmicrohttpd cannot build even the 431's
    head, and the connection closed with nothing sent. The 431 is written
    to the socket itself; the app does not run."""
    srv = tracfront(*APP)
    raw = answer_to(srv, "/noted", pad)
    assert raw.startswith(b"HTTP/1.1 431 ") and raw.endswith(b"\n") and \
        b"Connection: close\r\n" in raw, raw[:300]
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert b"Content-Length: %d\r\n" % len(body) in raw, raw[:300]
    assert '" 431 %d ' % len(body) in access_line(srv, "/noted")
    assert "noted: the app ran" not in srv.error_log
    assert "did not fit" not in srv.error_log
    assert "internal error" not in srv.error_log, srv.error_log[-2000:]  # the client's mistake
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"


def test_an_upload_whose_head_leaves_no_room_gets_its_431(tracfront):
    """The same for an upload, at its head: the 431 before the body is asked
    for (no 100 Continue) or read; without Expect the body sent meanwhile
    is drained (lingering close), so the client reads the 431."""
    srv = tracfront(*APP)
    for expect in (b"Expect: 100-continue\r\n", b""):
        s = srv.connect(10)
        try:
            s.sendall(b"POST /noted HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n%s"
                      b"X-Pad: %s\r\n\r\n" % (expect, b"p" * 32400))
            if not expect:
                s.sendall(b"x" * 1000000)
            s.settimeout(10)
            raw = b""
            while True:
                more = s.recv(65536)
                if not more:
                    break
                raw += more
        finally:
            s.close()
        assert raw.startswith(b"HTTP/1.1 431 "), (expect, raw[:300])
    assert "noted: the app ran" not in srv.error_log
    assert "internal error" not in srv.error_log, srv.error_log[-2000:]


@pytest.mark.parametrize("path", ["/short-list", "/short-file"])
def test_list_or_file_shorter_than_content_length_aborts(tracfront, tmp_path, path):
    """As a generator's short body does (and mod_wsgi, gunicorn, uWSGI): the
    announced length goes out, then what there is, then the connection is
    cut, so the client can tell. It was a clean answer of the real size."""
    f = tmp_path / "eleven"
    f.write_bytes(b"eleven byte")
    srv = tracfront(*APP)
    target = path + ("?%s" % f if path == "/short-file" else "")
    raw = srv.raw(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode(), timeout=10)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 100\r\n" in head + b"\r\n", head
    assert body == (b"eleven byte" if path == "/short-file" else b"short")
    assert "the app sent %d bytes of the 100 its Content-Length announced; connection " \
           "aborted" % len(body) in srv.error_log
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"


def process_ended(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_a_child_the_app_forks_exits_when_it_returns_to_tracfront(tracfront):
    """os.fork() in a request: the child returns from the app into tracfront,
    a copy of its thread (a network thread, when the request ran inline). It
    exits there, logged, instead of serving on with the server's sockets."""
    srv = tracfront(*APP)
    children = []
    with requests.Session() as s:
        for _ in range(30):  # past the streak of fast calls that runs a path inline
            r = s.get(srv.url + "fork", timeout=10)
            assert r.text.startswith("parent %d " % srv.proc.pid), r.text
            children.append(int(r.text.split()[2]))
    deadline = time.monotonic() + 15
    while not all(process_ended(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [c for c in children if not process_ended(c)]
    assert not alive, "forked children still running: %s" % alive
    for c in children:
        assert "the app forked and its child returned to tracfront (pid %d); exiting" % c \
            in srv.error_log
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"


def test_a_response_whose_iter_raises_is_logged_as_such(tracfront):
    srv = tracfront(*APP)
    assert requests.get(srv.url + "iter-raises", timeout=10).status_code == 500
    log = srv.error_log
    assert "GET /iter-raises: the response's __iter__ raised" in log
    assert "not iterable" not in log
    assert "SystemExit: from __iter__" in log and "Traceback" in log
    assert srv.alive()


@pytest.mark.parametrize("query", ["raise", ""])
def test_start_response_from_a_thread_whose_request_ended_meanwhile(tracfront, query):
    """start_response called on a second thread of the app; the collector runs while it copies
    the headers and lets go of the GIL, and the request ends on its own thread meanwhile. It
    wrote the status and headers into the ended request's memory after that (ASan: a
    heap-use-after-free in sr_start; the next request on the connection got the other thread's
    X-From header). Now that start_response raises, and the next answer is its own."""
    srv = tracfront("--app", "start_response_race_app:app", "--threads", "4")
    sock = srv.connect()
    sock.sendall(b"GET /race?%s HTTP/1.1\r\nHost: x\r\n\r\nGET /victim HTTP/1.1\r\nHost: x\r\n\r\n"
                 % query.encode())
    sock.settimeout(10)
    answer = b""
    try:
        while b"victim body" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    except socket.timeout:
        pass
    sock.close()
    victim = answer[answer.find(b"X-From: victim") - 400:] if b"X-From: victim" in answer else b""
    assert b"victim body" in answer, answer
    assert b"thread2" not in victim and b"INJECTED" not in victim, answer
    time.sleep(0.6)  # the second thread's call returns after its 0.5 s
    said = requests.get(srv.url + "said", timeout=10).text
    assert "its write() wrote" not in said, said  # it raised: the request had ended
    assert srv.alive(), srv.stderr[-3000:]
