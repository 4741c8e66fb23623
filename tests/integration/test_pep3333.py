"""PEP 3333 conformance of tracfront: the environ it builds, start_response
and exc_info handling, response bodies (write(), iterables and their close(),
wsgi.file_wrapper, HEAD), app errors, keep-alive and pipelining. The apps are
tests/apps/pep3333_apps.py, wrapped in wsgiref.validate; every test that runs
a validated app also checks that no validator assertion fired.
"""
import http.client
import json
import os
import socket
import struct
import time
import uuid

import pytest
import requests

import truncation_util

APP = "pep3333_apps:app"
MARK = "VALIDATOR-FAIL"


# --- helpers (also used by test_uploads.py) -----------------------------------

def base(srv):
    return srv.url.rstrip("/")


def read_response(f, head=False):
    """Read one response from a binary file object. Returns
    (status_code, headers as [(lower-name, value)], body, complete)."""
    status = f.readline().split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        return None, [], b"", False  # nothing, or not a status line
    code = int(status[1])
    headers = []
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.partition(b":")
        headers.append((k.strip().lower().decode("latin-1"),
                        v.strip().decode("latin-1")))
    h = dict(headers)
    if head or code in (204, 304) or code < 200:
        return code, headers, b"", True
    if "chunked" in h.get("transfer-encoding", "").lower():
        body = b""
        while True:
            line = f.readline()
            if not line.strip():
                return code, headers, body, False
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return code, headers, body, True
            data = f.read(size)
            body += data
            if len(data) < size or f.readline() != b"\r\n":
                return code, headers, body, False
    if "content-length" in h:
        n = int(h["content-length"])
        body = f.read(n)
        return code, headers, body, len(body) == n
    return code, headers, f.read(), True


def read_until_close(sock, limit=10):
    """All the server sends; closed=False if it went silent for `limit` s."""
    sock.settimeout(limit)
    chunks = []
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return b"".join(chunks), True
            chunks.append(b)
    except (socket.timeout, TimeoutError):
        return b"".join(chunks), False
    except ConnectionResetError:
        return b"".join(chunks), True


def exchange(srv, data, head=False):
    """Send raw request bytes, parse one response."""
    with srv.connect() as s:
        s.sendall(data)
        with s.makefile("rb") as f:
            return read_response(f, head)


def get(path):
    """A one-shot raw GET request."""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


def env_of(body):
    return json.loads(body)["values"]


def poll_int(srv, path, want, timeout=30):
    """GET path until its integer body reaches `want`; return the last value."""
    deadline = time.monotonic() + timeout
    while True:
        n = int(requests.get(base(srv) + path, timeout=10).text)
        if n >= want or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def poll_text(srv, path, want, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        t = requests.get(base(srv) + path, timeout=10).text
        if t == want or time.monotonic() > deadline:
            return t
        time.sleep(0.1)


def wait_log(srv, needle, timeout=10):
    deadline = time.monotonic() + timeout
    while needle not in srv.error_log and time.monotonic() < deadline:
        time.sleep(0.05)
    return srv.error_log


def assert_serving(srv):
    assert srv.alive(), srv.stderr[-3000:]
    r = requests.get(base(srv) + "/env/still-serving", timeout=10)
    assert r.status_code == 200
    assert r.json()["values"]["PATH_INFO"] == "/env/still-serving"


def assert_valid(srv, prefix=""):
    """No validator assertion fired, whether it reached wsgi.errors or not."""
    r = requests.get(base(srv) + prefix + "/failures", timeout=10)
    assert r.status_code == 200
    assert r.json() == []
    assert MARK not in srv.error_log


def tag():
    return uuid.uuid4().hex[:12]


# --- environ ---------------------------------------------------------------------

def test_environ_required_keys_and_types(tracfront):
    srv = tracfront("--app", APP)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/env/x?a=%20b&c", headers={"X-Custom-Header": "v1"})
    client_port = conn.sock.getsockname()[1]
    resp = conn.getresponse()
    assert resp.status == 200
    doc = json.loads(resp.read())
    conn.close()
    v, t = doc["values"], doc["types"]
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
                "REMOTE_ADDR", "REMOTE_PORT", "HTTP_X_CUSTOM_HEADER"):
        assert t.get(key) == "str", (key, t.get(key))
    assert v["REQUEST_METHOD"] == "GET"
    assert v["SCRIPT_NAME"] == ""
    assert v["PATH_INFO"] == "/env/x"
    assert v["QUERY_STRING"] == "a=%20b&c"
    assert v["SERVER_NAME"]
    assert v["SERVER_PORT"] == str(srv.port)
    assert v["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert v["REMOTE_ADDR"] == "127.0.0.1"
    assert v["REMOTE_PORT"] == str(client_port)
    assert v["HTTP_X_CUSTOM_HEADER"] == "v1"
    assert t["wsgi.version"] == "tuple" and v["wsgi.version"] == [1, 0]
    assert v["wsgi.url_scheme"] == "http"
    assert v["wsgi.multithread"] is True
    assert v["wsgi.multiprocess"] is False
    # Only what PEP 3333 and CGI name (and the apps' own "pep3333." keys):
    # nothing tracfront uses to size the dict is left in it.
    cgi = {"REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_URI",
           "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE",
           "GATEWAY_INTERFACE", "REMOTE_ADDR", "REMOTE_PORT",
           "trac.web.frontend", "trac.web.version"}
    assert {k for k in t if not k.startswith(("HTTP_", "wsgi.", "pep3333."))} == cgi
    assert v["wsgi.run_once"] is False
    assert v["wsgi.input_terminated"] is True
    assert doc["input_attrs"] == ["read", "readline", "readlines", "__iter__"]
    assert doc["errors_attrs"] == ["write", "writelines", "flush"]
    assert doc["file_wrapper_callable"] is True
    assert "HTTP_CONTENT_TYPE" not in v and "HTTP_CONTENT_LENGTH" not in v
    assert_valid(srv)


def test_environ_http10_protocol(tracfront):
    srv = tracfront("--app", APP)
    code, _, body, _ = exchange(srv, b"GET /env HTTP/1.0\r\nHost: h\r\n\r\n")
    assert code == 200
    assert env_of(body)["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert_valid(srv)


def test_path_info_is_latin1_decoded(tracfront):
    srv = tracfront("--app", APP)
    code, _, body, _ = exchange(
        srv, b"GET /caf%C3%A9/a%20b?q=caf%C3%A9 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert code == 200
    v = env_of(body)
    assert v["PATH_INFO"] == "/caf\u00c3\u00a9/a b"  # UTF-8 bytes, each as a latin-1 char
    assert v["QUERY_STRING"] == "q=caf%C3%A9"
    assert_valid(srv)


def test_mount_sets_script_name(tracfront):
    srv = tracfront("--app", APP, "--mount", "/app")
    r = requests.get(base(srv) + "/app/foo/bar?x=1", timeout=10)
    assert r.status_code == 200
    v = r.json()["values"]
    assert (v["SCRIPT_NAME"], v["PATH_INFO"], v["QUERY_STRING"]) == ("/app", "/foo/bar", "x=1")
    v = requests.get(base(srv) + "/app/caf%C3%A9", timeout=10).json()["values"]
    assert (v["SCRIPT_NAME"], v["PATH_INFO"]) == ("/app", "/caf\u00c3\u00a9")
    v = requests.get(base(srv) + "/app/", timeout=10).json()["values"]
    assert (v["SCRIPT_NAME"], v["PATH_INFO"]) == ("/app", "/")
    # A path that merely starts with the same letters is not under the mount.
    r = requests.get(base(srv) + "/application", timeout=10)
    if r.status_code == 200:
        v = r.json()["values"]
        assert v["PATH_INFO"].startswith("/") and v["SCRIPT_NAME"] != "/app"
    assert_valid(srv, "/app")


def test_content_type_and_length(tracfront):
    srv = tracfront("--app", APP)
    r = requests.post(base(srv) + "/env", data=b"hello",
                      headers={"Content-Type": "text/plain; charset=utf-8"}, timeout=10)
    assert r.status_code == 200
    v = r.json()["values"]
    assert v["REQUEST_METHOD"] == "POST"
    assert v["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert v["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in v and "HTTP_CONTENT_LENGTH" not in v
    assert_valid(srv)


def test_duplicate_headers_joined(tracfront):
    # Common header names have their HTTP_* key made once: any case maps to
    # it, and a repeat still joins (Cookie with "; ").
    srv = tracfront("--app", APP)
    code, _, body, _ = exchange(
        srv, b"GET /env HTTP/1.1\r\nhOST: h\r\nX-Dup: one\r\nX-Other: o\r\naccept: a/b\r\n"
             b"COOKIE: x=1\r\nX-Dup: two\r\nACCEPT: c/d\r\ncookie: y=2\r\n"
             b"User-agent: ua\r\nConnection: close\r\n\r\n")
    assert code == 200
    v = env_of(body)
    assert v["HTTP_X_DUP"] == "one, two"
    assert v["HTTP_X_OTHER"] == "o"
    assert v["HTTP_HOST"] == "h"
    assert v["HTTP_ACCEPT"] == "a/b, c/d"
    assert v["HTTP_COOKIE"] == "x=1; y=2"
    assert v["HTTP_USER_AGENT"] == "ua"
    assert v["HTTP_CONNECTION"] == "close"
    assert_valid(srv)


@pytest.mark.parametrize("source", ["127.100.20.3", "127.0.0.10", "127.255.1.200"])
def test_remote_addr_of_each_loopback_source(tracfront, source):
    srv = tracfront("--app", APP)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10,
                                  source_address=(source, 0)) as s:
        port = s.getsockname()[1]
        s.sendall(get("/env"))
        with s.makefile("rb") as f:
            code, _, body, _ = read_response(f)
    assert code == 200
    v = env_of(body)
    assert (v["REMOTE_ADDR"], v["REMOTE_PORT"]) == (source, str(port))


def test_extra_env_entries(tracfront):
    srv = tracfront("--app", APP, "--env", "TRACFRONT_EXTRA=hello world",
                    "--env", "myapp.option=a=b")
    v = requests.get(base(srv) + "/env", timeout=10).json()["values"]
    assert v["TRACFRONT_EXTRA"] == "hello world"
    assert v["myapp.option"] == "a=b"
    assert_valid(srv)


def test_trac_web_frontend_names_tracfront(tracfront):
    # Trac's /about shows trac.web.frontend and trac.web.version as its "web
    # front-end" row (trac/web/main.py), as tracd and mod_wsgi set them
    srv = tracfront("--app", APP)
    v = requests.get(base(srv) + "/env", timeout=10).json()["values"]
    assert v["trac.web.frontend"] == "tracfront"
    assert v["trac.web.version"] == v["SERVER_SOFTWARE"].split("/", 1)[1]
    assert_valid(srv)
    own = tracfront("--app", APP, "--env", "trac.web.frontend=nginx + tracfront",
                    "--env", "trac.web.version=1.24")
    v = requests.get(base(own) + "/env", timeout=10).json()["values"]
    assert (v["trac.web.frontend"], v["trac.web.version"]) == ("nginx + tracfront", "1.24")


def test_extra_env_entry_named_like_a_placeholder(tracfront):
    # tracfront adds placeholder keys named tracfront.room<N> to size the
    # environ when the base has few entries (one --env here), and removes
    # them: a user's entry of that name must survive.
    srv = tracfront("--app", APP, "--env", "tracfront.room0=mine")
    v = requests.get(base(srv) + "/env", timeout=10).json()["values"]
    assert v["tracfront.room0"] == "mine"
    assert_valid(srv)


@pytest.mark.parametrize("header", [b"Remote-User", b"Remote_User", b"REMOTE_USER"])
def test_client_cannot_set_remote_user(tracfront, header):
    srv = tracfront("--app", APP)
    code, _, body, _ = exchange(
        srv, b"GET /env HTTP/1.1\r\nHost: h\r\n" + header + b": admin\r\nConnection: close\r\n\r\n")
    # Rejecting such a request is acceptable; passing it on as REMOTE_USER is not.
    if code == 200:
        assert "REMOTE_USER" not in env_of(body)
    assert_valid(srv)


def test_underscore_lookalikes_do_not_shadow_cgi_keys(tracfront):
    srv = tracfront("--app", APP)
    code, _, body, _ = exchange(
        srv, b"POST /env HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 5\r\nContent_Length: 999\r\nContent_Type: evil\r\n"
             b"Connection: close\r\n\r\nhello")
    assert code == 200
    v = env_of(body)
    assert v["CONTENT_LENGTH"] == "5"
    assert v["CONTENT_TYPE"] == "text/plain"
    assert "HTTP_CONTENT_LENGTH" not in v and "HTTP_CONTENT_TYPE" not in v
    # Look-alikes alone must not invent a body or a content type either.
    code, _, body, _ = exchange(
        srv, b"GET /env HTTP/1.1\r\nHost: h\r\nContent_Length: 7\r\n"
             b"Content_Type: evil\r\nConnection: close\r\n\r\n")
    assert code == 200
    v = env_of(body)
    assert v.get("CONTENT_LENGTH") in (None, "", "0")
    assert v.get("CONTENT_TYPE") in (None, "")
    assert "HTTP_CONTENT_LENGTH" not in v and "HTTP_CONTENT_TYPE" not in v
    assert_valid(srv)


def test_wsgi_errors_reaches_error_log(tracfront):
    srv = tracfront("--app", APP)
    token = tag()
    assert requests.get(base(srv) + "/log?msg=" + token, timeout=10).status_code == 200
    assert "app-log: " + token in wait_log(srv, token)
    assert_valid(srv)


# --- start_response validation and exc_info ----------------------------------------

@pytest.mark.parametrize("kind", ["short", "alpha", "bytes", "crlf"])
def test_bad_status_gives_500(tracfront, kind):
    srv = tracfront("--app", APP)
    code, headers, body, _ = exchange(srv, get("/bad-status?kind=" + kind))
    assert code == 500
    assert "x-injected" not in dict(headers)
    assert b"should-not-appear" not in body
    assert "status" in wait_log(srv, "tatus").lower()
    assert_serving(srv)


@pytest.mark.parametrize("kind", ["keywords", "mixed"])
def test_start_response_by_keyword(tracfront, kind):
    srv = tracfront("--app", APP)
    code, _, body, _ = exchange(srv, get("/sr-call?kind=" + kind))
    assert (code, body) == (200, b"called")


@pytest.mark.parametrize("kind, says", [
    ("too-many", "at most 3 arguments"), ("missing", "missing required argument"),
    ("unknown-keyword", "unexpected keyword argument 'colour'"),
    ("twice", "multiple values for argument 'status'")])
def test_start_response_called_wrongly_gives_500(tracfront, kind, says):
    srv = tracfront("--app", APP)
    code, _, body, _ = exchange(srv, get("/sr-call?kind=" + kind))
    assert code == 500 and b"called" not in body
    assert says in wait_log(srv, says)
    assert_serving(srv)


@pytest.mark.parametrize("kind", ["value-crlf", "name-newline", "name-colon", "value-int"])
def test_bad_header_gives_500(tracfront, kind):
    srv = tracfront("--app", APP)
    code, headers, body, _ = exchange(srv, get("/bad-header?kind=" + kind))
    assert code == 500
    assert "x-injected" not in dict(headers)
    assert b"should-not-appear" not in body
    assert "header" in wait_log(srv, "eader").lower()
    assert_serving(srv)


def test_exc_info_before_headers_sent_replaces_response(tracfront):
    srv = tracfront("--app", APP)
    r = requests.get(base(srv) + "/exc-before", timeout=10)
    assert r.status_code == 503
    assert r.headers["X-Stage"] == "error"
    assert r.content == b"custom error page"
    assert_valid(srv)
    assert_serving(srv)


@pytest.mark.parametrize("path", ["/exc-after-write", "/exc-after-yield"])
def test_exc_info_after_headers_sent_reraises_and_aborts(tracfront, path):
    srv = tracfront("--app", APP)
    with srv.connect() as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        data, closed = read_until_close(s, limit=15)
    assert closed, "connection left open after an aborted response"
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"partial-body" in data
    assert b"should-not-appear" not in data
    assert not data.endswith(b"0\r\n\r\n"), "aborted response was terminated cleanly"
    log = wait_log(srv, "exc-after-headers")
    assert "exc-after-headers" in log
    assert "EXC-NOT-RERAISED" not in log
    assert_valid(srv)
    assert_serving(srv)


# --- response bodies -----------------------------------------------------------------

WRITE_BODY = b"".join(b"chunk-%d\n" % i for i in range(5)) + b"tail\n"


def test_write_streams_chunked_on_http11(tracfront):
    srv = tracfront("--app", APP)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/write")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Length") is None
    assert resp.read() == WRITE_BODY
    # The connection stays usable after the chunked response.
    conn.request("GET", "/env/again")
    assert env_of(conn.getresponse().read())["PATH_INFO"] == "/env/again"
    conn.close()
    assert_valid(srv)


def test_write_on_http10_closes_without_chunking(tracfront):
    srv = tracfront("--app", APP)
    with srv.connect() as s:
        s.sendall(b"GET /write HTTP/1.0\r\nHost: h\r\n\r\n")
        data, closed = read_until_close(s)
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert b"transfer-encoding" not in head.lower()
    assert body == WRITE_BODY
    assert_valid(srv)


def test_generator_close_on_normal_end(tracfront):
    srv = tracfront("--app", APP)
    t = tag()
    r = requests.get(base(srv) + "/gen?mode=normal&tag=" + t, timeout=10)
    assert r.status_code == 200
    assert r.content == b"".join(b"part-%d\n" % i for i in range(5))
    assert poll_int(srv, "/closed-count?tag=" + t, 1) == 1
    assert_valid(srv)


def test_generator_close_on_error_mid_iteration(tracfront):
    srv = tracfront("--app", APP)
    t = tag()
    data = srv.raw(b"GET /gen?mode=error&tag=" + t.encode() +
                   b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.")
    assert b"part-1" not in data
    assert poll_int(srv, "/closed-count?tag=" + t, 1) == 1
    assert "gen-boom" in wait_log(srv, "gen-boom")
    assert_valid(srv)
    assert_serving(srv)


def test_generator_close_on_client_disconnect(tracfront):
    srv = tracfront("--app", APP, "--threads", "4")
    t = tag()
    s = srv.connect()
    s.sendall(b"GET /gen?mode=slow&tag=" + t.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    got = b""
    while len(got) < 300000:
        b = s.recv(65536)
        assert b, "server closed a response that should still be streaming"
        got += b
    assert got.startswith(b"HTTP/1.1 200")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # reset: the generator would otherwise run for 90 s
    assert poll_int(srv, "/closed-count?tag=" + t, 1, timeout=30) == 1, \
        "close() not called within 30 s of the client going away"
    assert_valid(srv)
    assert_serving(srv)


def test_single_item_list_gets_content_length(tracfront):
    srv = tracfront("--app", APP)
    code, headers, body, complete = exchange(
        srv, b"GET /single HTTP/1.1\r\nHost: h\r\n\r\n")
    h = dict(headers)
    assert code == 200 and complete
    assert body == b"hello, single chunk"
    assert h.get("content-length") == str(len(body))
    assert "transfer-encoding" not in h


@pytest.mark.parametrize("path", ["/single", "/write", "/gen?mode=normal&tag=head"])
def test_head_sends_headers_without_body(tracfront, path):
    srv = tracfront("--app", APP)
    with srv.connect() as s:
        s.sendall(b"HEAD " + path.encode() + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        data, closed = read_until_close(s)
    assert closed
    head, sep, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and sep
    assert body == b"", "HEAD response carried a body"
    if path == "/single":
        assert b"content-length: 19" in head.lower() or b"content-length" not in head.lower()
    assert_valid(srv)


@pytest.mark.parametrize("route", ["file", "file-raw"])
@pytest.mark.parametrize("offset", [0, 1000])
def test_file_wrapper_on_real_file(tracfront, tmp_path, route, offset):
    srv = tracfront("--app", APP)
    data = os.urandom(300_000)
    p = tmp_path / "payload.bin"
    p.write_bytes(data)
    t = tag()
    r = requests.get(base(srv) + "/" + route,
                     params={"path": str(p), "offset": offset, "tag": t}, timeout=20)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data) - offset)
    assert r.content == data[offset:]
    assert poll_text(srv, "/file-closed?tag=" + t, "True") == "True", \
        "file_wrapper did not close the file"
    assert_valid(srv)


@pytest.mark.parametrize("route", ["filelike", "filelike-raw"])
@pytest.mark.parametrize("kind", ["bytesio", "readonly"])
def test_file_wrapper_on_non_file(tracfront, route, kind):
    srv = tracfront("--app", APP)
    t = tag()
    r = requests.get(base(srv) + "/%s?kind=%s&size=100000&tag=%s" % (route, kind, t),
                     timeout=20)
    assert r.status_code == 200
    assert r.content == (bytes(range(256)) * 400)[:100000]
    if "Content-Length" in r.headers:
        assert r.headers["Content-Length"] == "100000"
    assert poll_text(srv, "/file-closed?tag=" + t, "True") == "True", \
        "file_wrapper did not close the file-like object"
    assert_valid(srv)


def test_app_exception_gives_500_without_traceback(tracfront):
    srv = tracfront("--app", APP)
    token = tag()
    r = requests.get(base(srv) + "/raise?token=" + token, timeout=10)
    assert r.status_code == 500
    assert "Traceback" not in r.text
    assert "pep3333_apps.py" not in r.text
    log = wait_log(srv, "boom-" + token)
    assert "Traceback" in log
    assert "boom-" + token in log
    assert_valid(srv)
    assert_serving(srv)


@pytest.mark.parametrize("path", ["/return-str", "/return-str-list"])
def test_app_returning_str_gives_500(tracfront, path):
    srv = tracfront("--app", APP)
    code, _, body, _ = exchange(srv, get(path))
    assert code == 500
    assert b"str is not" not in body and b"is not bytes" not in body
    log = wait_log(srv, "str")
    assert "str" in log.replace("tracfront", ""), log[-2000:]
    assert_serving(srv)


# --- connections ----------------------------------------------------------------------

def test_keep_alive_reuses_connection(tracfront):
    srv = tracfront("--app", APP)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    ports = set()
    for i in range(5):
        conn.request("GET", "/env/ka?i=%d" % i)
        resp = conn.getresponse()
        assert resp.status == 200
        assert not resp.will_close, "server closed a keep-alive connection"
        v = env_of(resp.read())
        assert v["QUERY_STRING"] == "i=%d" % i
        ports.add(v["REMOTE_PORT"])
    assert len(ports) == 1, "requests were not served on one connection"
    # A body the app never reads must not be parsed as the next request
    # (the server may drain it or close the connection; http.client reconnects).
    conn.request("POST", "/ignore-body", body=b"GET /evil HTTP/1.1\r\n\r\n" * 400)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"ignored"
    conn.request("GET", "/env/ka-last")
    resp = conn.getresponse()
    assert resp.status == 200
    assert env_of(resp.read())["PATH_INFO"] == "/env/ka-last"
    conn.close()
    assert_valid(srv)


def test_pipelined_requests_answered_in_order(tracfront):
    srv = tracfront("--app", APP)
    reqs = (b"GET /env/p?n=1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /echo?n=2 HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n"
            b"Content-Type: text/plain\r\n\r\nhello world"
            b"GET /env/p?n=3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    with srv.connect() as s:
        s.sendall(reqs)
        with s.makefile("rb") as f:
            r1 = read_response(f)
            r2 = read_response(f)
            r3 = read_response(f)
    assert [r[0] for r in (r1, r2, r3)] == [200, 200, 200]
    assert env_of(r1[2])["QUERY_STRING"] == "n=1"
    assert json.loads(r2[2])["body"] == "hello world"
    assert env_of(r3[2])["QUERY_STRING"] == "n=3"
    assert_valid(srv)


def test_file_wrapper_file_truncated_while_sent_closes_and_logs(tracfront, tmp_path):
    """The sendfile path of wsgi.file_wrapper, as static files: a file that
    shrinks under it ends the connection at once, with the reason logged."""
    srv = tracfront("--app", APP, "--idle-timeout", "60")
    p = tmp_path / "big.bin"
    truncation_util.write_big_file(p)
    received, closed = truncation_util.download_while_truncating(
        srv, "/file-raw?path=%s&tag=%s" % (p, tag()), p)
    assert closed, "the connection stayed open after the file shrank"
    assert received < truncation_util.BIG
    deadline = time.monotonic() + 5
    while "changed while being sent" not in srv.error_log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "changed while being sent" in srv.error_log
    assert requests.get(base(srv) + "/", timeout=10).status_code == 200


# --- bodyless statuses and the app's own framing headers ------------------------

@pytest.mark.parametrize("status", ["304", "204"])
@pytest.mark.parametrize("body", ["gen", "list", "write", "empty"])
def test_bodyless_status_sends_no_body_and_keeps_framing(tracfront, status, body):
    """A 304 or 204 ends at its headers whatever body the app produced: a
    streamed one used to go out chunked, its closing chunk left for the
    client to read as the next response on the connection."""
    srv = tracfront("--app", APP)
    with srv.connect() as s:
        s.sendall(b"GET /shaped?status=%s&body=%s HTTP/1.1\r\nHost: h\r\n\r\n"
                  b"GET /env/next HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                  % (status.encode(), body.encode()))
        with s.makefile("rb") as f:
            code, headers, _, _ = read_response(f)
            h = dict(headers)
            assert code == int(status) and h.get("x-shaped") == "1"
            assert "transfer-encoding" not in h
            # never the length of the body the app produced; a 304 without
            # the app's length says none (RFC 9110 8.6), and without one
            # libmicrohttpd 0.9.75 can only end it by closing the connection
            assert "content-length" not in h
            if status == "304":
                assert h.get("connection") == "close" and f.read() == b""
                return
            code2, _, body2, complete = read_response(f)
    assert code2 == 200 and complete, "the first response left bytes on the connection"
    assert env_of(body2)["PATH_INFO"] == "/env/next"


def test_304_keeps_the_apps_content_length(tracfront):
    srv = tracfront("--app", APP)
    code, headers, body, _ = exchange(
        srv, b"GET /shaped?status=304&body=gen&cl=1234 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert code == 304 and dict(headers).get("content-length") == "1234"


def test_app_connection_close_is_honoured(tracfront):
    """mod_wsgi and uWSGI close the connection after an answer whose app
    sent Connection: close; it was dropped and the connection kept."""
    srv = tracfront("--app", APP)
    with srv.connect() as s:
        s.sendall(b"GET /shaped?conn=close HTTP/1.1\r\nHost: h\r\n\r\n")
        data, closed = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 200")
    assert b"\r\nconnection: close\r\n" in data.lower()
    assert data.endswith(b"abc")
    assert closed


def test_app_hop_by_hop_header_is_dropped_and_logged(tracfront):
    srv = tracfront("--app", APP)
    for _ in range(2):
        with srv.connect() as s:
            s.sendall(b"GET /shaped?conn=keep-alive HTTP/1.1\r\nHost: h\r\n\r\n"
                      b"GET /env/next HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            with s.makefile("rb") as f:
                code, headers, body, _ = read_response(f)
                assert code == 200 and body == b"abc"
                assert dict(headers).get("connection") != "keep-alive"
                assert read_response(f)[0] == 200  # the connection was kept
    log = wait_log(srv, "hop-by-hop")
    assert "header 'Connection' from the app is hop-by-hop" in log
    assert log.count("hop-by-hop") == 1, "logged once, not on every request"


@pytest.mark.parametrize("value", [" 3", "3 ", "\t3\t"])
def test_content_length_with_surrounding_whitespace(tracfront, value):
    """mod_wsgi and gunicorn strip it (RFC 9110 field values exclude
    surrounding whitespace); start_response used to raise ValueError."""
    srv = tracfront("--app", APP)
    from urllib.parse import quote
    code, headers, body, complete = exchange(
        srv, b"GET /shaped?cl=%s HTTP/1.1\r\nHost: h\r\n\r\n" % quote(value).encode())
    assert code == 200 and complete and body == b"abc"
    assert dict(headers)["content-length"] == "3"


def test_head_of_a_page_the_app_does_not_produce_claims_no_length(tracfront):
    """Trac writes nothing for a HEAD of a streamed page: the answer said
    Content-Length: 0 where a GET gets the page (RFC 9110 8.6; Apache drops
    such a 0 too). With no length known, none is sent and the connection
    closes after the headers."""
    srv = tracfront("--app", APP)
    assert requests.get(base(srv) + "/shaped?body=trac", timeout=10).content == b"abc"
    with srv.connect() as s:
        s.sendall(b"HEAD /shaped?body=trac HTTP/1.1\r\nHost: h\r\n\r\n")
        data, closed = read_until_close(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"" and closed
    assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower()
    # an app that says its length keeps it, on a connection that stays open
    code, headers, _, _ = exchange(
        srv, b"HEAD /shaped?body=trac&cl=3 HTTP/1.1\r\nHost: h\r\n\r\n", head=True)
    assert code == 200 and dict(headers)["content-length"] == "3"


# --- streamed bodies that end early: HEAD, a client that leaves ------------------

def stream_target(method, mode, **q):
    query = "&".join(["mode=" + mode] + ["%s=%s" % kv for kv in q.items()])
    return b"%s /stream?%s HTTP/1.1\r\nHost: h\r\n\r\n" % (method.encode(), query.encode())


def stream_done(path, timeout=30):
    """The /stream app's state once its body ended (its finally wrote it)."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), "the app's body did not end: its finally never ran"
    return json.loads(path.read_text())


def head_fields(head):
    """[(lower-name, value)] of a raw head (status line excluded)."""
    fields = []
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        fields.append((k.strip().lower().decode("latin-1"), v.strip().decode("latin-1")))
    return fields


def stream_lines(srv):
    return [line for line in srv.error_log.splitlines() if "/stream" in line]


@pytest.mark.parametrize("mode", ["gen", "write"])
def test_head_of_an_endless_stream_is_answered_and_its_body_ends(tracfront, tmp_path, mode):
    """A HEAD of a server-sent-events page: its body was counted to its end
    for a Content-Length, so no answer ever came and the app thread was held
    for good. A GET streams it with no length; the HEAD is answered so at the
    body's second chunk, and the body stops there (close(), or write()
    raises), as it does when the client leaves."""
    srv = tracfront("--app", APP, "--threads", "1")
    done = tmp_path / "done"
    with srv.connect() as s:
        s.sendall(stream_target("HEAD", mode, done=done))
        data, closed = read_until_close(s, limit=10)
    head, sep, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and sep, data[:300]
    assert body == b"" and closed
    fields = dict(head_fields(head))
    assert fields["content-type"] == "text/event-stream"
    assert "content-length" not in fields
    state = stream_done(done)
    assert state["events"] == 2
    assert ("GeneratorExit" if mode == "gen" else "OSError") in state["exc"]
    assert_serving(srv)  # its one app thread is free again
    assert not any("[error]" in line for line in stream_lines(srv)), srv.error_log
    assert_valid(srv)


@pytest.mark.parametrize("status", ["204", "304"])
def test_an_endless_body_of_an_answer_without_one_ends_at_its_second_chunk(tracfront, tmp_path,
                                                                          status):
    """A 204 or 304 whose app makes an endless body: its head went out only
    at the body's end, never (GET too), holding the app thread for good."""
    srv = tracfront("--app", APP, "--threads", "1")
    done = tmp_path / "done"
    r = requests.get(base(srv) + "/bodyless-stream", params={"status": status, "done": done},
                     timeout=10)
    assert r.status_code == int(status) and r.content == b""
    deadline = time.monotonic() + 10
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert done.read_text() == "closed"
    assert_serving(srv)  # its one app thread is free again


def test_head_of_an_endless_stream_with_a_length_ends_at_its_first_chunk(tracfront, tmp_path):
    """With the app's Content-Length the head is known at the first chunk."""
    srv = tracfront("--app", APP, "--threads", "1")
    done = tmp_path / "done"
    code, fields, _, _ = exchange(srv, stream_target("HEAD", "gen", cl=1000, done=done),
                                  head=True)
    assert code == 200 and dict(fields)["content-length"] == "1000"
    assert stream_done(done)["events"] == 1
    assert_serving(srv)


@pytest.mark.parametrize("mode", ["gen", "write"])
def test_head_of_a_stream_has_the_headers_of_its_get(tracfront, mode):
    """RFC 9110 9.3.2: the fields a GET would get. A GET of a body of two
    chunks streams it with no Content-Length (chunked): a HEAD said the
    length it counted. One chunk keeps its length (RFC 9110 8.6: the GET's
    size, which is known)."""
    srv = tracfront("--app", APP)
    code, get_fields, body, complete = exchange(srv, stream_target("GET", mode, n=2))
    assert code == 200 and complete and body == b"data: event 1\n\ndata: event 2\n\n"
    assert dict(get_fields).get("transfer-encoding") == "chunked"
    with srv.connect() as s:
        s.sendall(stream_target("HEAD", mode, n=2))
        data, closed = read_until_close(s)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and rest == b""
    # no Transfer-Encoding: libmicrohttpd 0.9.75 would send a closing chunk
    # after the head; with no framing the connection closes
    framing = {"date", "connection", "transfer-encoding"}
    assert [f for f in head_fields(head) if f[0] not in framing] == \
        [f for f in get_fields if f[0] not in framing]
    assert closed
    code, one_fields, _, _ = exchange(srv, stream_target("HEAD", mode, n=1), head=True)
    assert code == 200 and dict(one_fields)["content-length"] == str(len(b"data: event 1\n\n"))
    assert_valid(srv)


def read_first_event(s):
    got = b""
    while b"event 1" not in got:
        b = s.recv(4096)
        assert b, "the stream ended before its first event"
        got += b
    assert got.startswith(b"HTTP/1.1 200"), got[:200]


def test_client_gone_error_the_app_lets_propagate_is_one_info_line(tracfront, tmp_path):
    """An SSE app's write() raises OSError('client disconnected') once its
    client has left; one the app does not catch was an [error] with a
    traceback, where a client that went away is [info]."""
    srv = tracfront("--app", APP)
    go, done = tmp_path / "go", tmp_path / "done"
    s = srv.connect()
    s.sendall(stream_target("GET", "write", go=go, done=done))
    read_first_event(s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # a reset: gone at the next send, without the hang-up watch
    go.touch()
    assert "client disconnected" in stream_done(done)["exc"]
    log = wait_log(srv, "did not catch")
    lines = stream_lines(srv)
    assert sum("[info]" in line and "did not catch" in line for line in lines) == 1, log
    assert not any("[error]" in line for line in lines), log
    assert "Traceback" not in log
    assert_serving(srv)


@pytest.mark.parametrize("mode", ["gen", "write"])
def test_the_first_event_after_the_client_left_fails(tracfront, tmp_path, mode):
    """A client that closed its connection while its SSE page waited for
    the next event was noticed only when a send to it failed (hundreds of
    events later; gunicorn: the second after the close, a 30 s heartbeat
    holding the thread 60 s). Its socket is watched for the hang-up while the
    answer waits: the next event fails."""
    srv = tracfront("--app", APP)
    go, done = tmp_path / "go", tmp_path / "done"
    s = srv.connect()
    s.sendall(stream_target("GET", mode, go=go, done=done))
    read_first_event(s)
    s.close()  # an orderly close (FIN), as a browser closing its tab
    deadline = time.monotonic() + 10  # the connection's end is logged: the server saw it
    while "/stream" not in srv.access_log and time.monotonic() < deadline:
        time.sleep(0.02)
    go.touch()
    state = stream_done(done)
    assert state["after_go"] == 1, state
    assert ("GeneratorExit" if mode == "gen" else "client disconnected") in state["exc"]
    assert_serving(srv)
    assert_valid(srv)


@pytest.mark.parametrize("mode", ["gen", "write"])
def test_a_client_that_half_closed_after_its_request_gets_the_whole_stream(tracfront, tmp_path,
                                                                         mode):
    """shutdown(SHUT_WR) after the request (nc -q, some HTTP/1.0 tools): the
    end of stream the watch finds is that one, not a hang-up; the answer's
    events after a wait of more than a second all arrive (gunicorn: the
    same). The first version of the watch cut it at its first look."""
    srv = tracfront("--app", APP)
    go, done = tmp_path / "go", tmp_path / "done"
    s = srv.connect(timeout=30)
    s.sendall(stream_target("GET", mode, n=3, go=go, done=done))
    s.shutdown(socket.SHUT_WR)
    read_first_event(s)
    time.sleep(1.6)  # the watch looks once a second, at an answer that waited half a second
    go.touch()
    got, closed = read_until_close(s, limit=30)
    s.close()
    assert closed and b"event 3" in got, got[-300:]
    assert stream_done(done)["exc"] is None
    assert "closed its connection" not in srv.error_log


def test_a_write_from_another_thread_outliving_its_request_fails_cleanly(tracfront, tmp_path):
    """write() from a thread of the app, waiting for room while the request
    ended (the app returned) and then its client left: the failed write
    recorded its error on the task the request had freed (ASan: a
    heap-use-after-free, the server aborted). It raises OSError now."""
    srv = tracfront("--app", APP, "--max-spill", "64K")
    done = tmp_path / "done"
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.port))
    s.sendall(b"GET /thread-write?done=%s HTTP/1.1\r\nHost: h\r\n\r\n" % str(done).encode())
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10  # the request has ended: its access-log line
    while "/thread-write" not in srv.access_log and time.monotonic() < deadline:
        time.sleep(0.02)
    s.close()
    deadline = time.monotonic() + 30
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done.read_text().startswith("OSError"), done.read_text()
    assert_serving(srv)


@pytest.mark.parametrize("host_line", [b"Host: other.example\r\n", b""])
def test_absolute_form_authority_is_the_host(tracfront, host_line):
    # RFC 9112 3.2.2: the server MUST ignore the Host header of an
    # absolute-form request and use the target's authority (mod_wsgi and
    # nginx do): Trac builds its links from HTTP_HOST.
    srv = tracfront("--app", APP)
    version = b"HTTP/1.1" if host_line else b"HTTP/1.0"
    code, _, body, _ = exchange(
        srv, b"GET HTTP://Proxy.Example:8080/env?q=1 " + version + b"\r\n" + host_line +
             b"Connection: close\r\n\r\n")
    assert code == 200
    v = env_of(body)
    assert v["HTTP_HOST"] == "Proxy.Example:8080"
    assert v["PATH_INFO"] == "/env" and v["QUERY_STRING"] == "q=1"
    assert_valid(srv)


@pytest.mark.parametrize("target", [b"http:///env", b"http://user@h/env", b"http://:80/env"])
def test_absolute_form_without_a_usable_authority_is_400(tracfront, target):
    # an http URI must have a host (RFC 9110 4.2.1); userinfo in a received
    # http URI is to be treated as an error (4.2.4)
    srv = tracfront("--app", APP)
    code, _, _, _ = exchange(srv, b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert code == 400
    assert_serving(srv)


def test_header_values_lose_trailing_whitespace(tracfront):
    # RFC 9112 5: OWS around a field value is not part of it (Apache, nginx
    # and gunicorn strip it); libmicrohttpd keeps the trailing one
    srv = tracfront("--app", APP)
    code, _, body, _ = exchange(
        srv, b"GET /env HTTP/1.1\r\nHost: h \r\nX-Trail: v \t \r\nX-Inner: a  b\t\r\n"
             b"X-Blank:   \r\nConnection: close\r\n\r\n")
    assert code == 200
    v = env_of(body)
    assert (v["HTTP_HOST"], v["HTTP_X_TRAIL"], v["HTTP_X_INNER"], v["HTTP_X_BLANK"]) == \
        ("h", "v", "a  b", "")
    assert_valid(srv)
    # libmicrohttpd frames the body by the raw value: "chunked " was taken for
    # a body read until the close (the request hung); a 400 instead
    for framing in (b"Transfer-Encoding: chunked \r\n", b"Content-Length: 5 \r\n"):
        code, _, _, _ = exchange(srv, b"POST /env HTTP/1.1\r\nHost: h\r\n" + framing +
                                 b"\r\n5\r\nhello\r\n0\r\n\r\n")
        assert code == 400, framing
