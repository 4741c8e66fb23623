"""Request bodies through wsgi.input (PEP 3333): Content-Length and chunked
bodies read with read(), read(n), readline(), readline(n), readlines() and
iteration; a 50 MiB upload that must be spooled rather than held in memory;
threads sharing one spooled wsgi.input, and a spool file cut short; and
--max-body rejecting oversized bodies with 413 before the app runs.
"""
import errno
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import struct
import time

import pytest
import requests

from test_bad_requests import read_to_end
from test_concurrency import server_in_flight, wait_for
from test_pep3333 import APP, assert_valid, base, exchange, read_response, tag
from upload_util import assert_refused_early, head_of

BODY = (b"line1\nline2\r\n\n" + b"x" * 10000 + b"\n" +
        bytes(range(256)) + b"\nlast line without newline")
MODES = ["read", "readn", "readline", "readline-n", "readlines", "iter"]


def expected_pieces(mode, n=7):
    if mode in ("read",):
        return [BODY]
    if mode == "readn":
        return [BODY[i:i + n] for i in range(0, len(BODY), n)]
    lines = [ln + b"\n" for ln in BODY.split(b"\n")]
    lines[-1] = lines[-1][:-1]  # the body does not end with a newline
    if mode == "readline-n":
        return [ln[i:i + n] for ln in lines for i in range(0, len(ln), n)]
    return lines


def check_echo(doc, mode):
    assert doc["len"] == len(BODY)
    assert doc["body"] == BODY.decode("latin-1")
    assert doc["too_long"] == 0, "read(n)/readline(n) returned more than n bytes"
    if mode == "readn":  # short reads are allowed, so only the total counts
        return
    assert doc["pieces"] == [p.decode("latin-1") for p in expected_pieces(mode)]


def post(srv, path, body, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    conn.request("POST", path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


@pytest.mark.parametrize("mode", MODES)
def test_content_length_body(tracfront, mode):
    srv = tracfront("--app", APP)
    status, data = post(srv, "/echo?mode=" + mode, BODY,
                        {"Content-Type": "application/octet-stream"})
    assert status == 200, data
    doc = json.loads(data)
    check_echo(doc, mode)
    assert doc["CONTENT_LENGTH"] == str(len(BODY))
    assert_valid(srv)


@pytest.mark.parametrize("mode", MODES)
def test_chunked_body(tracfront, mode):
    srv = tracfront("--app", APP)
    # Chunk boundaries deliberately cut through lines.
    cuts = [0, 3, 4, 9, 5000, 10005, len(BODY) - 5, len(BODY)]
    parts = [BODY[a:b] for a, b in zip(cuts, cuts[1:])]
    status, data = post(srv, "/echo?mode=" + mode, iter(parts),
                        {"Content-Type": "application/octet-stream"})
    assert status == 200, data
    doc = json.loads(data)
    check_echo(doc, mode)
    assert doc["CONTENT_LENGTH"] in (None, "", str(len(BODY)))
    assert_valid(srv)


@pytest.mark.parametrize("mode", MODES)
def test_empty_body_reads_eof(tracfront, mode):
    """Every read of an empty body, or of a GET's absent one, is at EOF at once
    (under the sanitizer build: without touching the body's missing buffer)."""
    srv = tracfront("--app", APP)
    pieces = [""] if mode == "read" else []  # the app's one read() returns b""
    status, data = post(srv, "/echo?mode=" + mode, b"", {"Content-Length": "0"})
    assert status == 200, data
    doc = json.loads(data)
    assert doc["len"] == 0 and doc["pieces"] == pieces
    r = requests.get(srv.url + "echo?mode=" + mode, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["len"] == 0 and r.json()["pieces"] == pieces
    assert r.json()["CONTENT_LENGTH"] is None
    assert srv.alive()
    assert_valid(srv)


def vm(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])  # kB
    return out


def test_50mib_upload_is_spooled(tracfront):
    srv = tracfront("--app", APP)
    # Warm up the interpreter and the request path first.
    status, _ = post(srv, "/echo?mode=readn&n=65536", os.urandom(2 << 20))
    assert status == 200
    before = vm(srv.proc.pid)
    block = os.urandom(1 << 20)
    size = 50 * len(block)
    want = hashlib.sha256(block * 50).hexdigest()
    status, data = post(srv, "/echo?mode=readn&n=65536", (block for _ in range(50)),
                        {"Content-Length": str(size),
                         "Content-Type": "application/octet-stream"}, timeout=120)
    after = vm(srv.proc.pid)
    assert status == 200, data[:500]
    doc = json.loads(data)
    assert doc["len"] == size
    assert doc["sha256"] == want
    grown = max(after["VmHWM"] - before["VmHWM"], after["VmRSS"] - before["VmRSS"])
    if os.environ.get("TF_SANITIZER"):
        # ASan keeps freed memory in quarantine, so RSS says nothing there;
        # the normal pass of scripts/test checks it.
        return
    assert grown < 20 * 1024, "RSS grew by %d kB for a 50 MiB body" % grown
    assert_valid(srv)


def test_threads_reading_one_spooled_body_get_each_byte_once(tracfront):
    """Reads of a spooled body release the GIL around pread: threads reading
    one wsgi.input at once each get their own bytes, never the same ones,
    never an error past the end."""
    srv = tracfront("--app", APP)
    body = b"".join(b"%015d%s\n" % (off, b"." * 48) for off in range(0, 2 << 20, 64))
    modes = "read-4096,read-192,readline,iter,readlines"
    for _ in range(3):
        status, data = post(srv, "/readers?modes=" + modes, body)
        assert status == 200, data
        assert json.loads(data) == {"errors": [], "len": len(body),
                                    "sha256": hashlib.sha256(body).hexdigest()}
    assert_valid(srv)


@pytest.mark.parametrize("mode", ["read-65536", "readline"])
def test_a_spool_cut_short_reads_as_an_io_error(tracfront, mode):
    """A spool file shorter than the body it holds (cut from outside) is an
    EIO at its end, not an errno some earlier call left behind."""
    srv = tracfront("--app", APP)
    size = 1 << 20
    status, data = post(srv, "/cut-spool?mode=" + mode, (b"c" * 63 + b"\n") * (size // 64))
    assert status == 200, data
    doc = json.loads(data)
    assert (doc["cut"], doc["raised"]) == (1, [errno.EIO, "[Errno 5] Input/output error"])
    assert size // 2 - 8192 < doc["read"] <= size // 2  # readline looks ahead 8 KiB
    assert srv.alive()
    assert_valid(srv)


def test_max_body_rejects_with_413_before_app(tracfront):
    srv = tracfront("--app", APP, "--max-body", "1000")
    t = tag()
    code, _, _, _ = exchange(
        srv, b"POST /echo?tag=" + t.encode() + b" HTTP/1.1\r\nHost: h\r\n"
             b"Content-Type: application/octet-stream\r\nContent-Length: 5000\r\n"
             b"Connection: close\r\n\r\n" + b"a" * 5000)
    assert code == 413
    assert requests.get(base(srv) + "/calls?tag=" + t, timeout=10).text == "0"
    # A body under the limit is fine.
    status, data = post(srv, "/echo?mode=readn&tag=" + t, b"b" * 900)
    assert status == 200 and json.loads(data)["len"] == 900
    assert requests.get(base(srv) + "/calls?tag=" + t, timeout=10).text == "1"
    assert_valid(srv)


def test_upload_outside_the_mount_is_404_before_its_body(tracfront):
    """The app under --mount answers nothing else: an upload to another path
    gets its 404 instead of 100 Continue, and without Expect before the body
    is read (it was spooled whole first). Under the mount the app still gets
    the body it asks for."""
    srv = tracfront("--app", APP, "--mount", "/app")
    t = tag().encode()
    for target in (b"/other?tag=" + t, b"/application?tag=" + t, b"/?tag=" + t):
        head = assert_refused_early(srv, b"POST", target, 404)
        assert b"--mount" in head, head
    head, _, closed = head_of(srv, b"POST", b"/app/echo?tag=" + t)
    assert head == b"HTTP/1.1 100 Continue\r\n\r\n" and not closed, head
    assert requests.get(base(srv) + "/other", timeout=10).status_code == 404  # no body: as before
    # timed as the app's 404s are, the early ones too
    deadline = time.monotonic() + 5
    while True:
        rows = requests.get(base(srv) + "/__profile__/api/latency", timeout=10).json()["routes"]
        found = {(x["route"], x["backend"]): x["count"] for x in rows}
        if found.get(("(not found)", "wsgi")) == 7 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found.get(("(not found)", "wsgi")) == 7, found  # 3 targets, with and without Expect; the GET
    assert_valid(srv, "/app")


def test_max_body_applies_to_chunked_bodies(tracfront):
    srv = tracfront("--app", APP, "--max-body", "1000")
    t = tag()
    chunked = b"".join(b"%x\r\n%s\r\n" % (500, b"c" * 500) for _ in range(10)) + b"0\r\n\r\n"
    code, _, _, _ = exchange(
        srv, b"POST /echo?tag=" + t.encode() + b" HTTP/1.1\r\nHost: h\r\n"
             b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
    assert code == 413
    assert requests.get(base(srv) + "/calls?tag=" + t, timeout=10).text == "0"
    assert_valid(srv)


BODY_CUT = {  # a body cut short: never complete
    "content-length": (b"Content-Length: 100\r\n", b"only part of it"),
    "chunked": (b"Transfer-Encoding: chunked\r\n", b"3\r\nab"),
}
BODY_WHOLE = {  # the same framings complete
    "content-length": (b"Content-Length: 5\r\n", b"whole"),
    "chunked": (b"Transfer-Encoding: chunked\r\n", b"3\r\nwho\r\n2\r\nle\r\n0\r\n\r\n"),
}


def send_then_half_close(srv, framing, body):
    """Headers, a pause (the server reads them and waits for the body), then
    the body and the client's FIN in one go. Returns the open socket."""
    s = srv.connect()
    s.sendall(b"POST /echo?mode=read HTTP/1.1\r\nHost: h\r\n" + framing + b"\r\n")
    time.sleep(0.1)
    s.sendall(body)
    s.shutdown(socket.SHUT_WR)
    return s


@pytest.mark.parametrize("framing", sorted(BODY_CUT))
def test_client_closing_mid_body_is_dropped_at_once(tracfront, upstream, framing):
    """A client that sends part of a body and closes its side can never finish
    the request: the server drops it at once, on app and upstream routes alike,
    rather than keeping it in flight until --idle-timeout (60 s) and holding up
    a graceful stop. libmicrohttpd 0.9.75 misses a FIN that arrives with data."""
    up = upstream()
    srv = tracfront("--app", APP, "--upstream", up.url, "--route", "/up=upstream")
    socks = [send_then_half_close(srv, *BODY_CUT[framing]) for _ in range(3)]
    head, cut = BODY_CUT[framing]
    s = srv.connect()
    s.sendall(b"POST /up/post HTTP/1.1\r\nHost: h\r\n" + head + b"\r\n")
    time.sleep(0.1)
    s.sendall(cut)
    s.shutdown(socket.SHUT_WR)
    socks.append(s)
    wait_for(lambda: server_in_flight(srv) == 1, "requests cut short are still in flight", timeout=5)
    for s in socks:
        assert s.recv(100) == b""  # closed without an answer: there is no request to answer
        s.close()
    assert "closed by remote side with incomplete request" in srv.error_log
    assert up.stats()["by_path"].get("/up/post", 0) == 0
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 10
    assert "requests still running" not in srv.error_log


def test_client_closing_mid_body_past_max_body_is_dropped_at_once(tracfront):
    """The same for a chunked body already past --max-body (read and dropped)."""
    srv = tracfront("--app", APP, "--max-body", "10")
    s = send_then_half_close(srv, b"Transfer-Encoding: chunked\r\n", b"14\r\n" + b"x" * 15)
    wait_for(lambda: server_in_flight(srv) == 1, "the request cut short is still in flight", timeout=5)
    assert s.recv(100) == b""
    s.close()


@pytest.mark.parametrize("framing", sorted(BODY_WHOLE))
def test_half_closed_client_with_whole_body_is_answered(tracfront, framing):
    """A client may close its side once its request is sent: the answer
    still comes."""
    srv = tracfront("--app", APP)
    for _ in range(3):
        s = send_then_half_close(srv, *BODY_WHOLE[framing])
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        assert data.startswith(b"HTTP/1.1 200"), data
        assert json.loads(data.split(b"\r\n\r\n", 1)[1])["body"] == "whole"


# --- refusals that leave a body unread, and a stop while a body arrives -----------------------

def post_whole_body_first(srv, body, headers=None):
    """As http.client (and requests) do: send the whole body, then read the
    answer. Returns (status, Connection header, body), or the exception."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        conn.request("POST", "/echo?mode=read", body=body, headers=headers or {},
                     encode_chunked=not isinstance(body, bytes))
        resp = conn.getresponse()
        return resp.status, resp.getheader("Connection"), resp.read()
    except OSError as e:  # the reset the answer was lost to
        return e
    finally:
        conn.close()


@pytest.mark.parametrize("size", [1_100_000, 5_000_000])
def test_413_reaches_a_client_that_sends_its_whole_body_first(tracfront, size):
    """--max-body refuses a Content-Length body before reading it. Closing the
    socket with the body still arriving made the kernel reset the connection,
    and the client lost the 413 (BrokenPipe / ConnectionReset): the socket now
    lingers (shut for writing, the rest read and dropped), as nginx's does."""
    srv = tracfront("--app", APP, "--max-body", "1M")
    for _ in range(3):
        got = post_whole_body_first(srv, b"x" * size)
        assert not isinstance(got, Exception), "the 413 was lost: %r" % got
        status, connection, text = got
        assert (status, connection) == (413, "close") and b"--max-body" in text, got
    # the client may read its answer before the server has logged it
    wait_for(lambda: srv.access_log.count('" 413 ') == 3, "three 413s logged")


def test_chunked_body_far_past_max_body_gets_413(tracfront):
    """A chunked body cannot be refused before it arrives; past TF_DISCARD_MAX
    (16 MiB) of dropped bytes the request is given up. That used to be a reset
    for the client, logged 400 with libmicrohttpd's 'internal error': it is a
    413, and the log says why."""
    srv = tracfront("--app", APP, "--max-body", "1K")
    block = b"c" * 65536
    got = post_whole_body_first(srv, (block for _ in range(20 * 16)))  # 20 MiB
    assert not isinstance(got, Exception), "the 413 was lost: %r" % got
    status, connection, text = got
    assert (status, connection) == (413, "close") and b"--max-body" in text, got
    wait_for(lambda: '" 413 ' in srv.access_log, "the 413 logged")  # after the answer
    log = srv.error_log
    assert "internal error" not in log, log
    assert re.search(r"\[info\] POST /echo\?mode=read: the chunked body went on past --max-body",
                     log), log


def send_chunked_far_past(s, head, mib=20):
    """Send head and a chunked body of mib MiB (TF_DISCARD_MAX is 16), then
    read until the server's end. Returns what was read."""
    s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"c" * 65536 + b"\r\n"
    try:
        for _ in range(mib * 16):
            s.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # asserted below, by what was read
    return read_to_end(s)


@pytest.mark.parametrize("method", ["POST", "HEAD"])
def test_chunked_413_has_a_date_and_no_body_for_head(tracfront, method):
    """The 413 written past TF_DISCARD_MAX (tf_connection_refuse) had no Date
    header, and a body even for HEAD."""
    srv = tracfront("--app", APP, "--max-body", "1K")
    s = srv.connect(timeout=60)
    try:
        data = send_chunked_far_past(s, b"%s /echo HTTP/1.1\r\nHost: h\r\n" % method.encode())
    finally:
        s.close()
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413 "), data
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT(\r\n|$)", head), head
    length = int(re.search(rb"\r\nContent-Length: (\d+)", head).group(1))
    assert length > 0 and len(body) == (0 if method == "HEAD" else length), data
    wait_for(lambda: '"%s /echo HTTP/1.1" 413 %s ' % (method, "-" if method == "HEAD" else length)
             in srv.access_log, "the 413 logged with its body's bytes:\n" + srv.access_log)


def test_chunked_413_is_not_written_behind_an_answer_still_unsent(tracfront, tmp_path):
    """A client that has not taken its last answer yet (pipelined, not
    reading) leaves the socket's send queue full or nearly: the 413 written
    there could be cut short, a truncated answer on the wire. It is written
    only into an empty send queue; else the connection closes (lingering,
    as the client still sends), the answer before it whole."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "big.bin").write_bytes(b"b" * 10000)
    srv = tracfront("--app", APP, "--max-body", "1K", "--static", "/s=%s" % (tmp_path / "www"))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the answer stays on the server
    s.settimeout(60)
    s.connect(("127.0.0.1", srv.port))
    try:
        data = send_chunked_far_past(s, b"GET /s/big.bin HTTP/1.1\r\nHost: h\r\n\r\n"
                                        b"POST /echo HTTP/1.1\r\nHost: h\r\n")
    finally:
        s.close()
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ") and body[:10000] == b"b" * 10000, data[:300]
    wait_for(lambda: "the chunked body went on past --max-body" in srv.error_log, "the log line")
    after = body[10000:]
    if after:  # the client's kernel had taken the whole answer by then: the 413, whole
        head413, body413 = after.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"Content-Length: (\d+)", head413).group(1))
        assert head413.startswith(b"HTTP/1.1 413 ") and len(body413) == length, after
    else:
        assert "connection closed" in srv.error_log, srv.error_log


def slow_upload(srv, path, size, first):
    """Start a POST of `size` bytes and send only `first` of them. Returns the socket."""
    s = srv.connect(timeout=30)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % (path.encode(), size)
              + b"u" * first)
    return s


def read_answer(s):
    with s.makefile("rb") as f:
        return read_response(f)


def test_client_resetting_mid_upload_is_an_info_line(tracfront):
    """nginx: "[info] recv() failed (104: Connection reset by peer)"; libmicrohttpd
    says "Socket has been disconnected when reading request": a client that
    went away, not the server's error."""
    srv = tracfront("--app", APP)
    s = srv.connect()
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + b"u" * 5000)
    time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # a reset
    wait_for(lambda: "disconnected when reading request" in srv.error_log, "the line")
    line = [l for l in srv.error_log.splitlines() if "disconnected when reading" in l][0]
    assert "[info]" in line, line


def test_client_resetting_with_body_unread_is_an_info_line(tracfront):
    """A reset while much of the body is still unread: libmicrohttpd 0.9.75
    then mostly says "Connection socket is closed when reading request due to
    the error: detected connection closure" (the soak saw it once in 1,300
    aborted uploads), also a client that went away: [info], never [error]."""
    srv = tracfront("--app", APP)
    for _ in range(8):
        s = srv.connect()
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n")
        time.sleep(0.05)
        s.sendall(b"u" * 200000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # a reset, with the body's rest never sent
    wait_for(lambda: srv.error_log.count("when reading request") >= 8, "a line for each")
    lines = [l for l in srv.error_log.splitlines() if "when reading request" in l]
    assert all("[info]" in l for l in lines), lines


def test_urgent_data_mid_body_is_an_info_line(tracfront):
    """TCP urgent data (MSG_OOB) mid-body makes libmicrohttpd 0.9.75 close the
    connection "due to the error: The operation would block, retry later":
    the client's doing, so an [info] line, not an [error] any client could
    write at will."""
    srv = tracfront("--app", APP)
    s = srv.connect()
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + b"u" * 5000)
    time.sleep(0.1)
    s.send(b"!", socket.MSG_OOB)
    wait_for(lambda: "when reading request" in srv.error_log, "the line")
    s.close()
    lines = [l for l in srv.error_log.splitlines() if "when reading request" in l]
    assert all("[info]" in l for l in lines), lines


def test_stop_lets_a_body_that_is_arriving_finish(tracfront):
    """SIGTERM while a body arrives: the request is in flight, so it goes on to
    the app once its body is whole (it used to get 503 after the whole body
    was read). A request whose head comes after the stop began gets the 503."""
    srv = tracfront("--app", APP)
    keep = srv.connect(timeout=30)  # a keep-alive connection, idle when the stop begins
    keep.sendall(b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
    kf = keep.makefile("rb")
    assert read_response(kf)[0] == 200
    s = slow_upload(srv, "/echo?mode=read", 300_000, 100_000)
    wait_for(lambda: server_in_flight(srv) == 2, "the upload is not in flight")
    srv.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping; waiting" in srv.error_log, "the stop did not begin")
    keep.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
    code, headers, text, _ = read_response(kf)
    assert (code, dict(headers).get("connection")) == (503, "close"), (code, headers, text)
    s.sendall(b"u" * 200_000)
    code, _, text, _ = read_answer(s)
    assert code == 200, text[:300]
    assert json.loads(text)["len"] == 300_000
    assert srv.proc.wait(20) == 0


def test_unwritable_tmpdir_is_refused_at_start(tracfront, tmp_path):
    """Bodies over 256 KiB (and answers a slow client cannot keep up with) go
    to a temporary file in $TMPDIR: a folder where none can be made used to
    fail every such request with a bare 'No such file or directory'."""
    srv = tracfront("--app", APP, env={"TMPDIR": str(tmp_path / "nonexistent")},
                    expect_fail=True)
    assert srv.proc.returncode == 2, srv.stderr
    assert "TMPDIR" in srv.stderr and str(tmp_path / "nonexistent") in srv.stderr, srv.stderr
    log = srv.workdir / "error.log"  # --error-log: start errors are written there too
    assert log.exists() and str(tmp_path / "nonexistent") in log.read_text(), srv.stderr


def test_body_that_cannot_be_stored_names_the_folder(tracfront, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    srv = tracfront("--app", APP, env={"TMPDIR": str(spool)})
    spool.rmdir()  # gone after the start
    status, data = post(srv, "/echo?mode=read", b"s" * 300_000)
    assert status == 500, data
    assert "cannot store the request body in a temporary file in %s" % spool in srv.error_log, \
        srv.error_log
