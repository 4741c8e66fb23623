"""A page written through write() to a client that reads slowly or not at
all: past the 512 KiB in memory it goes to a temporary file of at most
--max-spill bytes, and then write() waits for the client (GIL released),
until it has read enough or has gone (--idle-timeout closes one that never
reads). A spill that fails for a disk reason is named to the app."""
import http.client
import os
import pathlib
import socket
import subprocess

import sys

import pytest
import requests

from conftest import APPS
from test_inline import call_until_inline, inline_count
from workers_util import wait_for

sys.path.insert(0, str(APPS))
from spill_apps import CHUNK, chunk, stream  # noqa: E402  the app's own body, to compare with

APP = ("--app", "spill_apps:app")
MIB = 1024 * 1024


def spill_sizes(pid):
    """Sizes of the deleted (anonymous) files the server holds open: the
    response spill files. A file's size is the furthest it was ever written."""
    fds = pathlib.Path("/proc/%d/fd" % pid)
    sizes = []
    for f in os.listdir(fds):
        try:
            if "(deleted)" in os.readlink(fds / f):
                sizes.append(os.stat(fds / f).st_size)
        except FileNotFoundError:  # closed meanwhile
            pass
    return sizes


def expected(mb):
    return b"".join(chunk(i) for i in range(mb * MIB // CHUNK))


def waiting_or_done(srv):
    log = srv.error_log
    return "the response waits for the client" in log or "wrote all of" in log


def test_write_waits_at_max_spill_and_the_page_arrives_whole(tracfront):
    srv = tracfront(*APP, "--max-spill", "1M", "--threads", "2")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("GET", "/write?mb=32&n=1")  # the response is not read yet
    wait_for(lambda: waiting_or_done(srv), 60, "write() to wait or end")
    assert "wrote all of" not in srv.error_log, "write() never waited for the client"
    assert ("the response waits for the client: 1048576 bytes in a file (--max-spill)"
            in srv.error_log)
    sizes = spill_sizes(srv.proc.pid)
    assert sizes and max(sizes) <= MIB, sizes
    # the waiting write() holds neither the GIL nor the other app thread
    written = int(requests.get(srv.url + "progress?mb=32&n=1", timeout=10).text)
    assert 0 < written < 32 * MIB
    r = conn.getresponse()
    assert r.status == 200
    body = r.read(16 * MIB)
    sizes = spill_sizes(srv.proc.pid)
    assert max(sizes, default=0) <= MIB, sizes
    body += r.read()
    assert len(body) == 32 * MIB
    assert body == expected(32)
    wait_for(lambda: "wrote all of mb=32&n=1" in srv.error_log, 60, "the app to finish")
    conn.close()


def test_max_spill_0_waits_at_the_memory_mark(tracfront):
    srv = tracfront(*APP, "--max-spill", "0")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("GET", "/write?mb=16&n=2")
    wait_for(lambda: waiting_or_done(srv), 60, "write() to wait or end")
    assert "wrote all of" not in srv.error_log
    assert "the response waits for the client: 512 KiB in memory (--max-spill 0)" in srv.error_log
    assert spill_sizes(srv.proc.pid) == []
    body = conn.getresponse().read()
    assert body == expected(16)
    conn.close()


def test_waiting_write_ends_when_idle_timeout_closes_a_client_that_never_reads(tracfront):
    srv = tracfront(*APP, "--max-spill", "1M", "--threads", "1", "--idle-timeout", "1")
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(b"GET /write?mb=64&n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
    raised = lambda: "OSError('client disconnected')" in srv.error_log  # noqa: E731
    wait_for(lambda: raised() or "wrote all of" in srv.error_log, 60, "write() to raise or end")
    assert raised(), "write() did not wait for the client:\n" + srv.error_log
    # its only app thread is free again
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"
    s.close()


def test_an_inline_write_past_the_cap_is_not_held(tracfront):
    """An inline run's answer starts only once it returns: its write() must
    not wait for a client that has nothing yet (it would wait forever)."""
    srv = tracfront(*APP, "--max-spill", "0", "--io-threads", "1")
    with requests.Session() as s:
        call_until_inline(srv, s, "GET", "/inline", None,
                          lambda r: r.content == b"end" or pytest.fail(repr(r.content[:100])))
        for _ in range(20):  # until a big one ran inline (a slow call ends the streak)
            before = inline_count(srv, "/inline")
            r = s.get(srv.url + "inline", headers={"X-Big": "1"}, timeout=30)
            assert r.content == expected(2) + b"end"
            if inline_count(srv, "/inline") > before:
                break
            call_until_inline(srv, s, "GET", "/inline", None, lambda r: None)
        else:
            pytest.fail("no big /inline ran inline")


@pytest.fixture
def tiny_tmpdir(tmp_path):
    """TMPDIR on a 4 MiB tmpfs, mounted for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk_is_named_to_the_app_and_ends_the_page(tracfront, tiny_tmpdir):
    srv = tracfront(*APP, "--max-spill", "64M", env={"TMPDIR": str(tiny_tmpdir)})
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.sendall(b"GET /write?mb=32&n=4 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: "write() of chunk" in srv.error_log or "wrote all" in srv.error_log, 60,
             "write() to raise or end")
    log = srv.error_log
    assert ("OSError(28, 'cannot buffer the response: No space left on device')" in log), log
    assert "client disconnected" not in log
    assert "cannot buffer the response for a slow client: No space left on device" in log
    data = b""
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"200 OK" in head
    assert not body.endswith(b"\r\n0\r\n\r\n"), "a cut page must not end as a whole one"
    s.close()
    srv.stop()


def stalled_client(srv, target, http10=False):
    """A client that sends its request and does not read yet (a small receive
    buffer, so the server's socket fills soon)."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(b"GET %s HTTP/1.0\r\n\r\n" % target.encode() if http10
              else b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
    return s


def read_to_close(s):
    data = bytearray()
    while True:
        b = s.recv(1 << 20)
        if not b:
            return bytes(data)
        data += b


@pytest.mark.parametrize("cap,mb", [("8M", 4), ("1M", 8)])
def test_write_then_a_returned_iterable_keeps_the_body_in_order(tracfront, cap, mb):
    """The iterable's items come after what write() put in the file, not
    before it (they went to memory, which is read first)."""
    srv = tracfront(*APP, "--max-spill", cap, "--threads", "2")
    query = "mb=%d&tail=3" % mb
    s = stalled_client(srv, "/mixed?" + query, http10=True)
    if cap == "8M":  # all of write()'s bytes fit: the app returns its list before any is read
        wait_for(lambda: "wrote all of " + query in srv.error_log, 60, "write() to end")
    else:
        wait_for(lambda: waiting_or_done(srv), 60, "write() to wait")
    head, _, body = read_to_close(s).partition(b"\r\n\r\n")
    s.close()
    assert b" 200 " in head.split(b"\r\n")[0]
    n = mb * MIB // CHUNK
    want = expected(mb) + b"".join(chunk(i) for i in range(n, n + 3))
    assert len(body) == len(want)
    if body != want:
        at = next(i for i in range(len(want)) if body[i] != want[i])
        pytest.fail("the body differs from byte %d on: %r instead of %r"
                    % (at, body[at:at + 16], want[at:at + 16]))


def test_one_large_write_goes_to_the_file_past_the_memory_mark(tracfront):
    srv = tracfront(*APP, "--max-spill", "64M")
    s = stalled_client(srv, "/big?mb=32&count=1")
    wait_for(lambda: "wrote all of mb=32&count=1" in srv.error_log, 60, "write() to end")
    # at most 512 KiB in memory, and what the sockets hold (a few MiB): the rest is in the file
    sizes = spill_sizes(srv.proc.pid)
    assert max(sizes, default=0) >= 24 * MIB, sizes
    s.close()


def rss(pid):
    for line in pathlib.Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_max_spill_0_holds_a_large_write_to_the_memory_mark(tracfront):
    """A write() larger than the memory mark is not copied whole into memory:
    with no file it waits there (the app's own 128 MiB object is all the
    growth)."""
    srv = tracfront(*APP, "--max-spill", "0")
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"
    before = rss(srv.proc.pid)
    s = stalled_client(srv, "/big?mb=128&count=2", http10=True)
    wait_for(lambda: waiting_or_done(srv), 60, "write() to wait or end")
    assert "the response waits for the client: 512 KiB in memory (--max-spill 0)" in srv.error_log
    grown = rss(srv.proc.pid) - before
    if not os.environ.get("TF_SANITIZER"):  # a sanitizer's shadow memory grows too
        assert grown < 128 * MIB + 64 * MIB, "RSS grew by %d MiB" % (grown // MIB)
    assert spill_sizes(srv.proc.pid) == []
    head, _, body = read_to_close(s).partition(b"\r\n\r\n")
    s.close()
    assert len(body) == 256 * MIB and body.count(b"x") == 256 * MIB


def test_request_timeout_504_interrupts_a_write_that_waits(tracfront):
    """A write() waiting for a client that stopped reading is interrupted by
    --request-timeout-action 504: it raises RequestTimeout, the connection is
    aborted, and the app thread is free again."""
    srv = tracfront(*APP, "--max-spill", "1M", "--threads", "1", "--request-timeout", "1",
                    "--request-timeout-action", "504", "--idle-timeout", "0")
    s = stalled_client(srv, "/write?mb=64&n=5")
    wait_for(lambda: "raised RequestTimeout()" in srv.error_log, 60, "write() to be interrupted")
    assert "the response waits for the client" in srv.error_log
    wait_for(lambda: "interrupted after --request-timeout; connection aborted" in srv.error_log,
             10, "the 504 handling")
    # the connection ends although the client has read nothing yet
    wait_for(lambda: "/write?mb=64&n=5" in srv.access_log, 10, "the connection to end")
    data = read_to_close(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert not data.endswith(b"0\r\n\r\n")  # the chunked body never ended cleanly
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"


def test_two_threads_writing_at_once_never_send_unwritten_file_bytes(tracfront):
    """One write()'s bytes went out as ready while another thread's, reserved
    before them in the file, were still being written: the reader sent what
    the file held there before."""
    srv = tracfront(*APP, "--max-spill", "1M")
    r = requests.get(srv.url + "two?mb=32", timeout=60)
    assert len(r.content) == 64 * MIB
    for k in (0, 1):  # each writer's bytes, in the order it wrote them
        mine = r.content.translate(None, bytes(range(128, 256)) if k == 0 else bytes(range(128)))
        assert mine == stream(k, 32 * MIB), "writer %d's bytes differ" % k
