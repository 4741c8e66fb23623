"""The reverse proxy (--upstream, --route): routing and path mapping, the headers
sent upstream and back, methods and bodies, 100-continue, streaming with
back-pressure, 502/504 errors and invalid upstream responses, the keep-alive
pool with its retry rules, --upstream-pin, and the access log / profiler.
The upstream is tests/apps/upstream_server.py (fixture `upstream`)."""
import base64
import gzip
import hashlib
import http.client
import json
import os
import re
import socket
import time
import urllib.parse

import pytest
import requests

from conftest import closed_port, hanging_port

HELLO = ("--app", "hello:application")
HELLO_BODY = b"Hello, World!\n"
PATTERN = bytes(range(251))
MiB = 1 << 20


def pattern(n):
    return (PATTERN * (n // 251 + 1))[:n]


def pattern_sha256(n):
    block = PATTERN * 4096
    h = hashlib.sha256()
    while n >= len(block):
        h.update(block)
        n -= len(block)
    h.update(block[:n])
    return h.hexdigest()


def proxy(tracfront, upstream, *args, up_path=""):
    up = upstream()
    srv = tracfront("--upstream", up.url.rstrip("/") + up_path, *args)
    return srv, up


def assert_rss_grew_less(grown_kib, limit_kib):
    """RSS growth check; skipped under sanitizers (ASan keeps freed memory in
    quarantine, so RSS says nothing there; the normal pass checks it)."""
    if os.environ.get("TF_SANITIZER"):
        return
    assert grown_kib < limit_kib, "RSS grew by %d KiB" % grown_kib


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def request(srv, method, target, headers=(), body=b"", version="HTTP/1.1", host="example.test"):
    """One raw request on a new connection; returns (HTTPResponse, body)."""
    lines = ["%s %s %s" % (method, target, version)]
    if host is not None:
        lines.append("Host: " + host)
    lines += ["%s: %s" % hv for hv in headers]
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        lines.append("Content-Length: %d" % len(body))
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    try:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        return r, r.read()
    finally:
        s.close()


def echo(srv, target="/echo", headers=(), **kw):
    """What the upstream received for this request (the /echo JSON)."""
    r, body = request(srv, kw.pop("method", "GET"), target, headers, **kw)
    assert r.status == 200, (r.status, body)
    return json.loads(body)


def upstream_headers(view, name):
    return [v for k, v in view["headers"] if k.lower() == name.lower()]


def read_response(sock):
    """Read raw responses until a final one: (interim heads, final head, body)."""
    buf, interim = b"", []

    def more():
        b = sock.recv(65536)
        assert b, "connection closed early: %r" % buf
        return b
    while True:
        while b"\r\n\r\n" not in buf:
            buf += more()
        head, buf = buf.split(b"\r\n\r\n", 1)
        if head.split()[1].startswith(b"1"):
            interim.append(head)
            continue
        cl = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
        while len(buf) < cl:
            buf += more()
        return interim, head, buf[:cl]


def log_text(srv):
    try:
        return srv.error_log
    except FileNotFoundError:
        return ""


def wait_for(pred, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        if pred():  # evaluated once per round: a true result is not re-asked
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


# --- routing ---------------------------------------------------------------

def test_only_upstream_sends_everything_upstream(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    assert echo(srv, "/echo/x?y=1")["target"] == "/echo/x?y=1"
    r, body = request(srv, "GET", "/nothing-here")
    assert (r.status, body) == (404, b"not found\n")  # the upstream's own 404
    assert up.stats()["by_path"] == {"/echo/x": 1, "/nothing-here": 1}


def test_app_and_upstream_route(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *HELLO, "--route", "/echo=upstream")
    assert echo(srv, "/echo/a")["target"] == "/echo/a"
    r, body = request(srv, "GET", "/other")
    assert body == HELLO_BODY
    assert up.stats()["by_path"] == {"/echo/a": 1}


def test_longest_prefix_wins(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *HELLO, "--route", "/echo=upstream",
                    "--route", "/echo/app=app")
    assert request(srv, "GET", "/echo/app/x")[1] == HELLO_BODY
    assert request(srv, "GET", "/echo/app")[1] == HELLO_BODY
    assert echo(srv, "/echo/apple")["target"] == "/echo/apple"
    assert echo(srv, "/echo/x")["target"] == "/echo/x"


def test_prefix_matches_on_segment_boundary(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *HELLO, "--route", "/echo=upstream")
    for target in ("/echo", "/echo/", "/echo?q=1", "/echo/deep/er"):
        assert echo(srv, target)["target"] == target
    assert request(srv, "GET", "/echox")[1] == HELLO_BODY
    assert request(srv, "GET", "/echox/y")[1] == HELLO_BODY
    assert "/echox" not in up.stats()["by_path"]


def test_profile_path_stays_tracfronts(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    r, body = request(srv, "GET", "/__profile__/api/latency")
    assert r.status == 200
    assert "routes" in json.loads(body)
    assert not any(p.startswith("/__profile__") for p in up.stats()["by_path"])


def test_path_mapping_replaces_the_prefix(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *HELLO, "--route", "/old=upstream", up_path="/legacy")
    assert echo(srv, "/old/echo/a?b=%20")["target"] == "/legacy/echo/a?b=%20"
    # the prefix is matched decoded (as nginx's location); the rest goes on as sent
    assert echo(srv, "/%6Fld/echo/%61")["target"] == "/legacy/echo/%61"
    # an encoded slash ending the prefix is its boundary: a '/' under the upstream's path
    assert echo(srv, "/old%2Fecho/b")["target"] == "/legacy/echo/b"
    request(srv, "GET", "/old?q")
    assert "/legacy" in up.stats()["by_path"]
    assert request(srv, "GET", "/older")[1] == HELLO_BODY


def test_location_rewritten_to_the_route(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *HELLO, "--route", "/old=upstream", up_path="/legacy")
    base = "http://127.0.0.1:%d" % up.port
    cases = {base + "/legacy/x?y=1": "/old/x?y=1", "/legacy/y": "/old/y",
             "http://elsewhere.test/legacy/z": "http://elsewhere.test/legacy/z"}
    for given, expected in cases.items():
        r, _ = request(srv, "GET", "/old/status/302?location=" + urllib.parse.quote(given, safe=""))
        assert r.status == 302
        assert r.getheader("Location") == expected, given


def test_location_mapped_back_to_a_non_ascii_prefix_is_encoded(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *HELLO, "--route", "/caf\u00e9=upstream",
                    up_path="/legacy")
    r, _ = request(srv, "GET", "/caf%C3%A9/status/302?location=%2Flegacy%2Fy")
    assert r.status == 302
    assert r.getheader("Location") == "/caf%C3%A9/y"  # a header carries no raw UTF-8


def test_refresh_rewritten_like_location(tracfront, upstream):
    # nginx's proxy_redirect maps the URL of Refresh too; its forms as browsers read them
    srv, up = proxy(tracfront, upstream, *HELLO, "--route", "/old=upstream", up_path="/legacy")
    base = "http://127.0.0.1:%d" % up.port
    cases = {"0; url=%s/legacy/r" % base: "0; url=/old/r",
             "5;URL = '%s/legacy/r?a=1'" % base: "5;URL = '/old/r?a=1'",
             '1, Url="/legacy" ; x': '1, Url="/old" ; x',
             "2 %s/legacy/s" % base: "2 /old/s",
             "0; url=http://elsewhere.test/legacy/z": "0; url=http://elsewhere.test/legacy/z"}
    for given, expected in cases.items():
        r, _ = request(srv, "GET", "/old/headers?set=" + urllib.parse.quote("Refresh:" + given, safe=""))
        assert r.status == 200
        assert r.getheader("Refresh") == expected, given


# --- request headers ---------------------------------------------------------

def test_hop_by_hop_request_headers_removed(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    view = echo(srv, headers=[
        ("Connection", "keep-alive, X-Secret"), ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("Trailer", "X-T"),
        ("Upgrade", "example/1"), ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("Proxy", "http://evil.test/"), ("X-Secret", "s"), ("X-Kept", "k")])
    names = {k.lower() for k, _ in view["headers"]}
    gone = {"keep-alive", "proxy-connection", "te", "trailer", "upgrade",
            "proxy-authorization", "proxy", "x-secret"}
    assert not names & gone, view["headers"]
    assert upstream_headers(view, "X-Kept") == ["k"]
    assert not any("x-secret" in v.lower() for v in upstream_headers(view, "Connection"))


def test_x_forwarded_for_is_appended(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    assert upstream_headers(echo(srv), "X-Forwarded-For") == ["127.0.0.1"]
    view = echo(srv, headers=[("X-Forwarded-For", "10.0.0.1")])
    assert upstream_headers(view, "X-Forwarded-For") == ["10.0.0.1, 127.0.0.1"]


def test_forwarded_proto_host_and_forwarded(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    view = echo(srv, host="example.test")
    assert upstream_headers(view, "X-Forwarded-Proto") == ["http"]
    assert upstream_headers(view, "X-Forwarded-Host") == ["example.test"]
    assert upstream_headers(view, "Forwarded") == ["for=127.0.0.1;host=example.test;proto=http"]
    view = echo(srv, headers=[("Forwarded", "for=192.0.2.9")], host="example.test")
    assert upstream_headers(view, "Forwarded") == \
        ["for=192.0.2.9, for=127.0.0.1;host=example.test;proto=http"]


def test_via_is_appended(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    assert upstream_headers(echo(srv), "Via") == ["1.1 tracfront"]
    view = echo(srv, headers=[("Via", "1.0 other")])
    assert ", ".join(upstream_headers(view, "Via")) == "1.0 other, 1.1 tracfront"
    view = echo(srv, version="HTTP/1.0")
    assert upstream_headers(view, "Via") == ["1.0 tracfront"]
    view = echo(srv, version="HTTP/1.2")  # served as 1.1; Via names what was received
    assert upstream_headers(view, "Via") == ["1.2 tracfront"]


def test_an_upstreams_101_is_a_502_at_once(tracfront, upstream):
    """No upgrade is proxied (Upgrade is hop-by-hop): a 101 was taken for an
    interim answer, and one the upstream kept its connection open after (a
    WebSocket server waiting for frames) held the client until the read
    timeout's 504."""
    srv, up = proxy(tracfront, upstream, "--upstream-read-timeout", "5")
    r, body = request(srv, "GET", "/status/101")
    assert r.status == 502
    assert "101" in srv.error_log, srv.error_log


def test_a_host_field_in_an_upstreams_answer_is_passed_on(tracfront, upstream):
    """Host means nothing in a response; the request's Host grammar is not
    applied to it (nginx passes it on)."""
    srv, up = proxy(tracfront, upstream)
    r, body = request(srv, "GET", "/headers?set=" + urllib.parse.quote("Host:::1", safe=""))
    assert (r.status, r.getheader("Host")) == (200, "::1")


def test_host_is_kept(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    assert upstream_headers(echo(srv, host="Example.TEST:8000"), "Host") == ["Example.TEST:8000"]


def test_upstream_host_overrides_host(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, "--upstream-host", "backend.internal")
    view = echo(srv, host="example.test")
    assert upstream_headers(view, "Host") == ["backend.internal"]
    assert upstream_headers(view, "X-Forwarded-Host") == ["example.test"]


def test_no_headers_are_invented(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    view = echo(srv)
    names = {k.lower() for k, _ in view["headers"]}
    allowed = {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
               "via", "connection", "content-length"}
    assert names <= allowed, view["headers"]
    assert upstream_headers(view, "Content-Length") in ([], ["0"])
    view = echo(srv, method="POST", body=b"abc")
    assert not upstream_headers(view, "Content-Type")


def test_duplicate_and_unusual_headers_pass(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    view = echo(srv, headers=[("X-Dup", "a"), ("Cookie", "c=1"), ("X-Dup", "b"),
                              ("X-Empty", ""), ("X-Odd", "v with  spaces ;,=\"q\"")])
    assert ", ".join(upstream_headers(view, "X-Dup")) == "a, b"
    assert upstream_headers(view, "Cookie") == ["c=1"]
    assert upstream_headers(view, "X-Empty") == [""]
    assert upstream_headers(view, "X-Odd") == ["v with  spaces ;,=\"q\""]


@pytest.mark.parametrize("target", ["/echo/a/../b%2Fc//d?x=%20&y", "/echo/./%2e%2E/x;p?a=b?c%23",
                                    "/echo//?%zz"])
def test_target_forwarded_unnormalised(tracfront, upstream, target):
    srv, up = proxy(tracfront, upstream)
    assert echo(srv, target)["target"] == target


# --- response headers and bodies -------------------------------------------

def test_hop_by_hop_response_headers_removed(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    sets = ["Connection:X-Private", "X-Private:1", "Keep-Alive:timeout=5",
            "Proxy-Connection:keep-alive", "Trailer:X-T", "Upgrade:example/1", "X-Public:2",
            "Via:1.0 up"]
    r, body = request(srv, "GET", "/headers?" + "&".join(
        "set=" + urllib.parse.quote(s, safe="") for s in sets))
    assert (r.status, body) == (200, b"headers\n")
    names = {k.lower() for k, _ in r.getheaders()}
    assert not names & {"x-private", "keep-alive", "proxy-connection", "trailer", "upgrade"}
    assert r.getheader("X-Public") == "2"
    assert "x-private" not in (r.getheader("Connection") or "").lower()
    assert ", ".join(r.msg.get_all("Via")) == "1.0 up, 1.1 tracfront"


def test_via_added_to_response(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    r, _ = request(srv, "GET", "/echo")
    assert r.msg.get_all("Via") == ["1.1 tracfront"]


def test_gzip_body_passes_untouched(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    r, body = request(srv, "GET", "/bytes?n=300000&gzip=1", [("Accept-Encoding", "gzip")])
    assert r.getheader("Content-Encoding") == "gzip"
    assert body == gzip.compress(pattern(300000), mtime=0)


@pytest.mark.parametrize("query", ["n=300000&chunk=7777", "n=300000&chunk=7777&chunked=1",
                                   "n=0", "n=0&chunked=1"])
def test_bodies_reframed_byte_for_byte(tracfront, upstream, query):
    srv, up = proxy(tracfront, upstream)
    n = int(re.search(r"n=(\d+)", query).group(1))
    r, body = request(srv, "GET", "/bytes?" + query)
    assert r.status == 200
    assert body == pattern(n)


@pytest.mark.parametrize("code", [201, 204, 301, 304, 404, 418, 503])
def test_status_passes_through(tracfront, upstream, code):
    srv, up = proxy(tracfront, upstream)
    r, body = request(srv, "GET", "/status/%d?location=/next" % code)
    assert r.status == code
    assert body == (b"" if code in (204, 304) else b"status %d\n" % code)
    assert r.getheader("Location") == "/next"


def test_head_keeps_length_and_connection(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("HEAD", "/bytes?n=12345")
    r = conn.getresponse()
    assert (r.status, r.getheader("Content-Length"), r.read()) == (200, "12345", b"")
    conn.request("GET", "/bytes?n=10")
    assert conn.getresponse().read() == pattern(10)
    assert up.stats()["methods"]["/bytes"] == ["HEAD", "GET"]


# --- methods and request bodies ----------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "GET"])
def test_methods_with_bodies(tracfront, upstream, method):
    srv, up = proxy(tracfront, upstream)
    body = pattern(700000)  # more than the in-memory spool
    view = echo(srv, "/echo/m", method=method, body=body,
                headers=[("Content-Type", "application/x-test")])
    assert view["method"] == method
    assert (view["body_len"], view["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert upstream_headers(view, "Content-Type") == ["application/x-test"]
    assert upstream_headers(view, "Content-Length") == [str(len(body))]


def test_chunked_upload_is_dechunked(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    pieces = [b"a" * 10, b"b" * 70000, b"c"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    view = echo(srv, method="POST", body=chunked, headers=[("Transfer-Encoding", "chunked")])
    whole = b"".join(pieces)
    assert view["body_sha256"] == hashlib.sha256(whole).hexdigest()
    assert upstream_headers(view, "Content-Length") == [str(len(whole))]
    assert not upstream_headers(view, "Transfer-Encoding")


def test_expect_100_continue_answered_once(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    s = srv.connect(timeout=30)
    s.sendall(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
              b"Expect: 100-continue\r\n\r\n")
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 100"), first
    s.sendall(b"0123456789")
    interim, head, body = read_response(socket_with_prefix(s, first))
    s.close()
    assert len(interim) == 1
    assert head.startswith(b"HTTP/1.1 200")
    view = json.loads(body)
    assert view["body_len"] == 10
    assert not upstream_headers(view, "Expect")


class socket_with_prefix:
    """A socket whose first recv returns bytes already read."""
    def __init__(self, sock, prefix):
        self.sock, self.prefix = sock, prefix

    def recv(self, n):
        if self.prefix:
            b, self.prefix = self.prefix, b""
            return b
        return self.sock.recv(n)


# --- streaming ----------------------------------------------------------------

def test_100mib_download_streams_in_flat_memory(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    assert request(srv, "GET", "/bytes?n=1000000")[1] == pattern(1000000)  # warm up
    base = peak = rss_kib(srv.proc.pid)
    n = 100 * MiB
    h, got = hashlib.sha256(), 0
    with requests.get(srv.url + "bytes?n=%d" % n, stream=True, timeout=120) as r:
        assert r.status_code == 200
        for piece in r.iter_content(MiB):
            h.update(piece)
            got += len(piece)
            peak = max(peak, rss_kib(srv.proc.pid))
    assert got == n
    assert h.hexdigest() == pattern_sha256(n)
    assert_rss_grew_less(peak - base, 60 * 1024)


def test_100mib_upload_streams_in_flat_memory(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    echo(srv, method="POST", body=pattern(1000000))  # warm up
    base = peak = rss_kib(srv.proc.pid)
    n = 100 * MiB
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    conn.putrequest("POST", "/echo/upload")
    conn.putheader("Content-Length", str(n))
    conn.endheaders()
    block = PATTERN * 4096
    sent = 0
    while sent < n:
        piece = block[:n - sent]
        conn.send(piece)
        sent += len(piece)
        peak = max(peak, rss_kib(srv.proc.pid))
    r = conn.getresponse()
    view = json.loads(r.read())
    peak = max(peak, rss_kib(srv.proc.pid))
    assert (view["body_len"], view["body_sha256"]) == (n, pattern_sha256(n))
    assert_rss_grew_less(peak - base, 60 * 1024)


def test_first_bytes_arrive_before_the_upstream_finishes(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    # 4 writes of 1000 bytes, 1 s apart: the last is written >= 3 s after the first
    s = srv.connect(timeout=30)
    s.sendall(b"GET /bytes?n=4000&chunk=1000&delay=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    r = http.client.HTTPResponse(s, method="GET")
    r.begin()
    first = r.read1(1000) if hasattr(r, "read1") else r.read(1)
    t_first = time.monotonic()
    rest = r.read()
    t_last = time.monotonic()
    s.close()
    assert first + rest == pattern(4000)
    # a buffering proxy delivers everything at once; a streaming one >= ~3 s apart
    assert t_last - t_first > 1.5, "the response was buffered (%.2f s)" % (t_last - t_first)


def test_slow_reader_gets_back_pressure(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    request(srv, "GET", "/bytes?n=1000000")  # warm up
    base = rss_kib(srv.proc.pid)
    n = 64 * MiB
    s = srv.connect(timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
    data = s.recv(65536)
    peak = base
    for _ in range(30):  # stop reading for 3 s: the upstream could send it all by then
        time.sleep(0.1)
        peak = max(peak, rss_kib(srv.proc.pid))
    h = hashlib.sha256()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    h.update(body)
    got = len(body)
    while got < n:
        b = s.recv(1 << 20)
        assert b, "closed after %d bytes" % got
        h.update(b)
        got += len(b)
    s.close()
    assert h.hexdigest() == pattern_sha256(n)
    assert_rss_grew_less(peak - base, 40 * 1024)  # while the client paused


# --- errors -------------------------------------------------------------------

def assert_gateway_error(srv, r, body, code):
    assert r.status == code, body
    assert body.startswith({502: b"502 Bad Gateway", 504: b"504 Gateway Timeout"}[code])
    assert r.getheader("Content-Type", "").startswith("text/plain")
    assert wait_for(lambda: "upstream" in log_text(srv)), log_text(srv)
    assert srv.alive()


def test_upstream_refused_is_502(tracfront):
    srv = tracfront("--upstream", "http://127.0.0.1:%d" % closed_port())
    r, body = request(srv, "GET", "/x")
    assert_gateway_error(srv, r, body, 502)


def test_upstream_read_timeout_is_504(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, "--upstream-read-timeout", "0.5")
    t = time.monotonic()
    r, body = request(srv, "GET", "/slow?delay=8")
    assert time.monotonic() - t < 7, "waited for the slow upstream"
    assert_gateway_error(srv, r, body, 504)
    assert echo(srv)["method"] == "GET"


def test_upstream_connect_timeout_is_504(tracfront):
    with hanging_port() as port:
        srv = tracfront("--upstream", "http://127.0.0.1:%d" % port,
                        "--upstream-connect-timeout", "0.5")
        r, body = request(srv, "GET", "/x")
        assert_gateway_error(srv, r, body, 504)


def test_upstream_dies_mid_body_aborts_the_client(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    # the head and 5000 bytes, then a pause (so the head is relayed), then a close
    conn.request("GET", "/die?n=100000&sent=5000&delay=1")
    r = conn.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    assert wait_for(lambda: "upstream" in log_text(srv)), log_text(srv)
    assert echo(srv)["method"] == "GET"
    assert srv.alive()
    # one line says why (nginx: "upstream prematurely closed connection"), not
    # libmicrohttpd's "Closing connection (application reported error...)" too
    assert "Closing connection" not in log_text(srv), log_text(srv)


INVALID = {
    "cl_and_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\n",
    "two_lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "bare_lf": b"HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\nContent-Length: 2\r\n\r\nok",
    "bare_cr": b"HTTP/1.1 200 OK\r\nX-A: a\rX-B: b\r\nContent-Length: 2\r\n\r\nok",
    "gzip_coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nnot really gzip",
    "chunked_twice": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "huge_head": b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 17000 + b"\r\nContent-Length: 2\r\n\r\nok",
    "status_2000": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
    "nul": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "garbage": b"garbage\r\n\r\n",
    "nothing": b"",
    "truncated_head": b"HTTP/1.1 200 OK\r\nContent-Le",
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_upstream_response_is_502(tracfront, upstream, name):
    srv, up = proxy(tracfront, upstream)
    b64 = urllib.parse.quote(base64.b64encode(INVALID[name]).decode(), safe="")
    r, body = request(srv, "GET", "/raw?b64=" + b64)
    assert_gateway_error(srv, r, body, 502)
    assert echo(srv)["method"] == "GET"


def test_upstream_head_too_large_for_the_clients_connection_is_502(tracfront, upstream):
    """A head under the 16 KiB cap that does not fit what the request's own
    head left of the connection's 32 KiB pool: 502, said why (it was a
    connection closed with 0 bytes). The same head fits a small request."""
    srv, up = proxy(tracfront, upstream)
    r, body = request(srv, "GET", "/big-head?n=15000")
    assert r.status == 200 and len(r.getheader("X-Big")) == 15000
    r, body = request(srv, "GET", "/big-head?n=15000", headers=[("X-Pad", "p" * 20000)])
    assert_gateway_error(srv, r, body, 502)
    assert "upstream: GET /big-head?n=15000: invalid response: a response head too large " \
           "for the client's connection" in log_text(srv), log_text(srv)
    assert wait_for(lambda: '/big-head?n=15000 HTTP/1.1" 502 ' in srv.access_log)


# --- the connection pool --------------------------------------------------------
# One network thread, so one pool: what these tests count is that pool's
# connections (each network thread keeps its own pool).
ONE_POOL = ("--io-threads", "1")


def test_pool_reuses_upstream_connections(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *ONE_POOL)
    clients = [http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30) for _ in range(2)]
    for i in range(20):
        c = clients[i % 2]
        c.request("GET", "/echo/%d" % i)
        r = c.getresponse()
        assert r.status == 200
        r.read()
    st = up.stats()
    assert st["requests"] == 20
    assert st["connections"] <= 2 + 1, st  # (and the stats question's own)


def test_methods_in_turn_on_one_connection(tracfront, upstream):
    # One network thread and one keep-alive client: the transfers reuse
    # curl handles, and none may inherit the last request's method or body.
    srv, up = proxy(tracfront, upstream, *ONE_POOL)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    turns = [("POST", b"x" * 5000), ("HEAD", None), ("GET", None), ("PUT", b"put"),
             ("GET", None), ("DELETE", None), ("POST", b"p2"), ("OPTIONS", None), ("GET", None)]
    for i, (method, body) in enumerate(turns):
        conn.request(method, "/echo/%d" % i, body=body)
        r = conn.getresponse()
        data = r.read()
        assert r.status == 200, (method, data)
        if method == "HEAD":
            assert data == b""
            continue
        view = json.loads(data)
        assert (view["method"], view["target"]) == (method, "/echo/%d" % i)
        assert view["body_len"] == len(body or b""), (method, view)
        lengths = upstream_headers(view, "Content-Length")
        assert lengths == ([str(len(body))] if body else []), (method, lengths)
    assert up.stats()["methods"] == {"/echo/%d" % i: [m] for i, (m, _) in enumerate(turns)}


def test_a_client_connection_stays_on_its_network_thread(tracfront, upstream):
    # Each network thread forwards the requests it reads, through its own
    # pool: one keep-alive client means one upstream connection, reused,
    # however many threads there are.
    srv, up = proxy(tracfront, upstream, "--io-threads", "3")
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    for i in range(30):
        c.request("GET", "/echo/%d" % i)
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["target"] == "/echo/%d" % i
    st = up.stats()
    assert st["requests"] == 30
    assert st["connections"] == 1 + 1, st  # (and the stats question's own)


def test_each_network_thread_pools_its_upstream_connections(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, "--io-threads", "3")
    clients = [http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30) for _ in range(6)]
    for i in range(60):
        c = clients[i % 6]
        c.request("GET", "/echo/%d" % i)
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["target"] == "/echo/%d" % i
    st = up.stats()
    assert st["requests"] == 60
    # requests go one at a time: at most one pooled connection per thread,
    # each reused (and the stats question's own)
    assert st["connections"] <= 3 + 1, st


def drop_idle(up):
    """Make the upstream close its idle keep-alive connections (asked directly).
    A connection turns idle a moment after its answer went out (when its
    thread is back to reading): ask again while none was idle, up to 5 s."""
    deadline = time.monotonic() + 5
    while True:
        c = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
        c.request("GET", "/drop-idle")
        body = c.getresponse().read()
        c.close()
        if body != b"dropped 0\n" or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def test_stale_pooled_connection_is_retried_for_get(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *ONE_POOL)
    first = echo(srv)["conn"]
    assert drop_idle(up) == b"dropped 1\n"
    view = echo(srv)
    assert view["conn"] != first
    assert up.stats()["methods"]["/echo"] == ["GET", "GET"]


def test_post_after_stale_pool_is_sent_once(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *ONE_POOL)
    echo(srv)
    assert drop_idle(up) == b"dropped 1\n"
    view = echo(srv, method="POST", body=b"once")
    assert view["body_len"] == 4
    assert up.stats()["methods"]["/echo"] == ["GET", "POST"]


def test_post_uses_a_fresh_upstream_connection(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *ONE_POOL)
    conns = {echo(srv)["conn"]}
    for _ in range(3):
        view = echo(srv, method="POST", body=b"x")
        assert view["conn"] not in conns and view["conn_requests"] == 1
        conns.add(view["conn"])


def test_post_to_swallow_is_502_and_not_resent(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *ONE_POOL)
    echo(srv)  # a pooled connection exists
    r, body = request(srv, "POST", "/swallow", body=b"payload")
    assert_gateway_error(srv, r, body, 502)
    assert up.stats()["methods"]["/swallow"] == ["POST"]


def test_get_to_swallow_is_502_and_retried_at_most_once(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *ONE_POOL)
    echo(srv)
    r, body = request(srv, "GET", "/swallow")
    assert_gateway_error(srv, r, body, 502)
    assert 1 <= len(up.stats()["methods"]["/swallow"]) <= 2


# --- --upstream-pin -------------------------------------------------------------

def test_pin_keeps_one_upstream_connection_per_client(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, "--upstream-pin")
    a = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    b = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    seen = {"a": [], "b": []}
    for name, c in [("a", a), ("b", b), ("a", a), ("b", b), ("a", a)]:
        c.request("GET", "/echo")
        seen[name].append(json.loads(c.getresponse().read())["conn"])
    assert len(set(seen["a"])) == 1 and len(set(seen["b"])) == 1, seen
    assert seen["a"][0] != seen["b"][0]
    # a POST on a pinned connection stays pinned too
    a.request("POST", "/echo", body=b"x")
    assert json.loads(a.getresponse().read())["conn"] == seen["a"][0]
    a.close()
    b.close()
    # the upstream connections close with their client connections. Asked on
    # one kept-alive connection, so "open" counts it and nothing else.
    probe = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)

    def still_open():
        probe.request("GET", "/__stats")
        return json.loads(probe.getresponse().read())["open"]
    assert wait_for(lambda: still_open() == 1), still_open()
    probe.close()


def test_pinned_post_dropped_unanswered_is_502_and_not_resent(tracfront, upstream):
    # curl resends a request that a reused connection dropped unanswered; a
    # pinned POST reuses its connection, so it must refuse the second attempt
    srv, up = proxy(tracfront, upstream, "--upstream-pin")
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    c.request("GET", "/echo")
    assert json.loads(c.getresponse().read())["conn_requests"] == 1
    c.request("POST", "/swallow", body=b"abc")
    r = c.getresponse()
    assert_gateway_error(srv, r, r.read(), 502)
    c.close()
    assert up.stats()["methods"]["/swallow"] == ["POST"]
    assert "POST /swallow: the reused --upstream-pin connection closed without an answer" \
        in log_text(srv), log_text(srv)


def test_pinned_post_after_the_upstream_closed_idle_gets_a_new_connection(tracfront, upstream):
    # a connection that closed while idle is not a send: refusing a resend
    # must not turn IIS's idle timeout into a 502
    srv, up = proxy(tracfront, upstream, "--upstream-pin")
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    c.request("GET", "/echo")
    first = json.loads(c.getresponse().read())["conn"]
    assert drop_idle(up) == b"dropped 1\n"
    c.request("POST", "/echo", body=b"abc")
    r = c.getresponse()
    view = json.loads(r.read())
    assert (r.status, view["body_len"]) == (200, 3) and view["conn"] != first, view
    c.close()
    assert up.stats()["methods"]["/echo"] == ["GET", "POST"]


# --- logs and profiler ---------------------------------------------------------

def test_access_log_has_proxied_requests(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    request(srv, "GET", "/echo/logged?x=1")
    request(srv, "GET", "/status/404")
    assert wait_for(lambda: '"GET /status/404 HTTP/1.1" 404' in srv.access_log), srv.access_log
    assert '"GET /echo/logged?x=1 HTTP/1.1" 200' in srv.access_log


def test_latency_profile_records_upstream_backend(tracfront, upstream):
    srv, up = proxy(tracfront, upstream, *HELLO, "--route", "/echo=upstream")
    for i in range(3):
        echo(srv, "/echo/%d" % i)
    request(srv, "GET", "/hello")

    def counts():
        routes = requests.get(srv.url + "__profile__/api/latency", timeout=10).json()["routes"]
        by = {}
        for x in routes:
            by[x["backend"]] = by.get(x["backend"], 0) + x["count"]
        return by
    assert wait_for(lambda: counts().get("upstream") == 3), counts()
    assert counts().get("wsgi") == 1


# --- edge cases found in review -------------------------------------------------

def test_absolute_form_target_is_sent_as_origin_form(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    doc = echo(srv, "HTTP://evil.example/echo/abs?q=1")  # scheme in any case
    assert doc["target"] == "/echo/abs?q=1", doc["target"]
    assert upstream_headers(doc, "Host") == ["evil.example"]  # RFC 9112 3.2.2
    r, body = request(srv, "GET", "http://evil.example/__profile__/api/latency")
    assert r.status == 200 and b'"routes"' in body  # tracfront's own page, not the upstream's


def test_location_keeps_an_unmapped_prefix_once(tracfront, upstream):
    # the target is not mapped (no path in --upstream): the prefix is not added again
    srv, up = proxy(tracfront, upstream, *HELLO, "--route", "/status=upstream")
    loc = up.url.rstrip("/") + "/status/next"
    r, _ = request(srv, "GET", "/status/302?location=" + urllib.parse.quote(loc, safe=""))
    assert r.status == 302
    assert r.getheader("Location") == "/status/next"


def test_head_of_a_chunked_resource_claims_no_zero_length(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    r, body = request(srv, "HEAD", "/bytes?n=5000&chunked=1")
    assert r.status == 200 and body == b""
    assert r.getheader("Content-Length") != "0"


# --- what nginx users expect at the edges (found by comparing with nginx) -----

def raw_upstream_answer(srv, data, method="GET"):
    """The client's view of an upstream answering `data` verbatim (then closing)."""
    b64 = urllib.parse.quote(base64.b64encode(data).decode(), safe="")
    return request(srv, method, "/raw?b64=" + b64)


def test_every_connection_line_names_hop_by_hop_headers(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    view = echo(srv, headers=[("Connection", "keep-alive"), ("Connection", "X-Foo, close"),
                              ("X-Foo", "secret"), ("X-Kept", "k")])
    assert upstream_headers(view, "X-Foo") == [], view["headers"]
    assert upstream_headers(view, "X-Kept") == ["k"]
    r, body = raw_upstream_answer(srv, b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\n"
                                       b"Connection: close\r\nX-Secret: 1\r\nX-Public: 2\r\n"
                                       b"Content-Length: 2\r\n\r\nok")
    assert (r.status, body) == (200, b"ok")
    assert r.getheader("X-Secret") is None and r.getheader("X-Public") == "2"


def test_trailers_never_become_headers(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    r, body = raw_upstream_answer(
        srv, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
             b"Trailer: Server-Timing\r\n\r\n5\r\nhello\r\n0\r\nServer-Timing: db;dur=53\r\n"
             b"Set-Cookie: late=1\r\nContent-Type: text/html\r\n\r\n")
    assert (r.status, body) == (200, b"hello")
    assert r.msg.get_all("Content-Type") == ["text/plain"]
    assert r.getheader("Set-Cookie") is None and r.getheader("Server-Timing") is None


def test_head_of_an_unknown_length_keeps_the_connection_in_step(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        s.sendall(b"HEAD /bytes?n=10&chunked=1 HTTP/1.1\r\nHost: a\r\n\r\n"
                  b"GET /bytes?n=10 HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    # nothing after the HEAD's head but the next answer (or the close)
    assert rest == b"" or rest.startswith(b"HTTP/1.1 200"), data


def test_a_304_carries_the_upstreams_length(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    r, body = raw_upstream_answer(srv, b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n"
                                       b"Content-Length: 1234\r\n\r\n")
    assert (r.status, body) == (304, b"")
    assert r.getheader("Content-Length") == "1234" and r.getheader("ETag") == '"x"'


@pytest.mark.parametrize("framing", [b"", b"Transfer-Encoding: chunked\r\n"])
def test_a_304_without_the_upstreams_length_says_none(tracfront, upstream, framing):
    """RFC 9110 8.6: a 304 may say only the 200's length. One the upstream
    gave without a length went out with Content-Length: 0 (nginx sends
    none), which a cache in front could take for the stored page's length."""
    srv, up = proxy(tracfront, upstream)
    b64 = base64.b64encode(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n" + framing + b"\r\n")
    data = srv.raw(b"GET /raw?b64=%s HTTP/1.1\r\nHost: h\r\n\r\n" %
                   urllib.parse.quote(b64.decode(), safe="").encode(), timeout=5)
    head, sep, rest = data.partition(b"\r\n\r\n")
    headers = head.lower().split(b"\r\n")
    assert head.startswith(b"HTTP/1.1 304 ") and sep and b'etag: "x"' in headers, data
    # unframed, it ends by closing: chunked, libmicrohttpd 0.9.75 would send
    # a closing chunk after the head, read by the client as the next answer
    assert not [h for h in headers if h.startswith((b"content-length:", b"transfer-encoding:"))]
    assert b"connection: close" in headers and rest == b"", data


def test_empty_header_values_pass_both_ways(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    r, body = request(srv, "GET", "/headers?set=" + urllib.parse.quote("X-Empty:", safe=""))
    assert r.status == 200
    assert r.getheader("X-Empty") == "", r.getheaders()
    assert upstream_headers(echo(srv, headers=[("X-Blank", "")]), "X-Blank") == [""]


def test_long_host_reaches_the_upstream_whole(tracfront, upstream):
    srv, up = proxy(tracfront, upstream)
    host = "h" * 1490 + ".example"
    view = echo(srv, host=host)
    assert upstream_headers(view, "Host") == [host]
    assert upstream_headers(view, "X-Forwarded-Host") == [host]
    assert upstream_headers(view, "Forwarded")[0].endswith(";host=%s;proto=http" % host)


@pytest.mark.parametrize("target,where", [
    ("/old/../admin", "refused"), ("/old/%2e%2e/admin", "refused"), ("/old/..%2fadmin", "refused"),
    ("/up/../x", "refused"), ("/./up/x", "refused"), ("/..", "refused"),
    ("/x/../../etc/passwd", "refused"), ("/old/a/../b", "upstream"), ("/old/./b", "upstream"),
    ("/old/..b/c..", "upstream"), ("/x/./y/../z", "app"),
    # IIS reads '\\' and %5c as '/' before it resolves dot segments (KB 896287)
    ("/old/..%5c..%5cadmin/", "refused"), ("/old/x/..%5C..%5c..%5cadmin", "refused"),
    ("/old/..\\admin", "refused"), ("/old/a%5c..%5cb", "upstream"), ("/x\\..\\y", "app")])
def test_dot_segments_never_lead_out_of_the_route(tracfront, upstream, target, where):
    # /old is mapped onto the upstream's /legacy: an upstream that resolves
    # "/legacy/../admin" (IIS does) must never be asked for it
    up = upstream()
    srv = tracfront("--app", "hello:application", "--upstream", up.url.rstrip("/") + "/legacy",
                    "--route", "/old=upstream", "--route", "/up=upstream")
    r, body = request(srv, "GET", target)
    if where == "refused":
        assert r.status == 400 and b"dot segments" in body, (target, r.status, body)
    elif where == "app":
        assert (r.status, body) == (200, b"Hello, World!\n"), (target, r.status, body)
    assert up.stats()["requests"] == (1 if where == "upstream" else 0), target
