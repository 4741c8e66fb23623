"""Serve tests/apps/tracshaped, a WSGI app shaped like Trac: pages pushed through
start_response's write() in chunks without Content-Length, sqlite with one
connection per request, static files through wsgi.file_wrapper, non-ASCII paths.
Checks pages arrive complete (chunked on HTTP/1.1), form POST + 303 round trips,
static bytes, URL decoding, --mount, keep-alive and a few concurrent clients.
"""
import concurrent.futures
import http.client
import sys

import requests

from conftest import APPS

STATIC = APPS / "tracshaped" / "static"
APP = ("--app", "tracshaped:application")


def expected_page(path, tmp_path):
    """What the app itself produces for GET `path` (no server involved)."""
    sys.path.insert(0, str(APPS))
    try:
        import tracshaped
    finally:
        sys.path.remove(str(APPS))
    out = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": "",
               "SERVER_NAME": "x", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
               "tracshaped.db": str(tmp_path / "expected.db")}
    tracshaped.application(environ, lambda status, headers: out.append)
    return b"".join(out)


def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], headers, body


def dechunk(body):
    """Decode a chunked body; return (payload, number of chunks, trailer part)."""
    out, n = [], 0
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return b"".join(out), n, body
        out.append(body[:size])
        assert body[size:size + 2] == b"\r\n", "chunk not followed by CRLF"
        body = body[size + 2:]
        n += 1


def server(tracfront, tmp_path, *extra):
    return tracfront(*APP, "--env", "tracshaped.db=%s" % (tmp_path / "t.db"), *extra)


def test_index_page(tracfront, tmp_path):
    srv = server(tracfront, tmp_path)
    r = requests.get(srv.url, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html;charset=utf-8"
    assert "<h1>Welcome to Tracshaped</h1>" in r.text
    assert '<p id="count">0 tickets</p>' in r.text
    assert r.text.rstrip().endswith("</html>")


def test_write_stream_is_chunked_and_complete_http11(tracfront, tmp_path):
    srv = server(tracfront, tmp_path)
    raw = srv.raw(b"GET /wiki/StreamMe HTTP/1.1\r\nHost: localhost\r\n"
                  b"Connection: close\r\n\r\n", timeout=30)
    status, headers, body = split_response(raw)
    assert status.startswith("HTTP/1.1 200")
    assert "content-length" not in headers
    assert headers.get("transfer-encoding", "").lower() == "chunked"
    payload, nchunks, rest = dechunk(body)
    assert nchunks >= 1
    assert rest == b"\r\n"
    assert payload == expected_page("/wiki/StreamMe", tmp_path)


def test_write_stream_http10_delimited_by_close(tracfront, tmp_path):
    srv = server(tracfront, tmp_path)
    raw = srv.raw(b"GET /wiki/StreamMe HTTP/1.0\r\nHost: localhost\r\n\r\n", timeout=30)
    status, headers, body = split_response(raw)
    assert status.startswith("HTTP/1.") and " 200 " in status
    assert "chunked" not in headers.get("transfer-encoding", "").lower()
    assert body == expected_page("/wiki/StreamMe", tmp_path)


def test_keepalive_several_streamed_pages(tracfront, tmp_path):
    srv = server(tracfront, tmp_path)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        want = expected_page("/wiki/Again", tmp_path)
        for _ in range(3):
            conn.request("GET", "/wiki/Again")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == want
        conn.request("GET", "/chrome/trac.css")
        resp = conn.getresponse()
        assert resp.read() == (STATIC / "trac.css").read_bytes()
    finally:
        conn.close()


def test_ticket_create_and_view_round_trip(tracfront, tmp_path):
    srv = server(tracfront, tmp_path)
    r = requests.post(srv.url + "newticket", allow_redirects=False, timeout=30,
                      data={"summary": "Crash in Zoë's <module>", "description": "a & b"})
    assert r.status_code == 303
    assert r.headers["Location"] == "http://127.0.0.1:%d/ticket/1" % srv.port
    page = requests.get(r.headers["Location"], timeout=30)
    assert page.status_code == 200
    assert "Ticket #1" in page.text
    assert "Crash in Zoë&#39;s &lt;module&gt;" in page.text
    assert "a &amp; b" in page.text
    assert '<p id="count">1 tickets</p>' in requests.get(srv.url, timeout=30).text


def test_missing_ticket_is_app_error_page(tracfront, tmp_path):
    srv = server(tracfront, tmp_path)
    r = requests.get(srv.url + "ticket/42", timeout=30)
    assert r.status_code == 404
    assert "Ticket 42 does not exist." in r.text
    assert requests.get(srv.url + "ticket/abc", timeout=30).status_code == 400
    assert srv.alive()


def test_static_files_via_file_wrapper(tracfront, tmp_path):
    srv = server(tracfront, tmp_path)
    for name, ctype in (("trac.css", "text/css"), ("blob.bin", "application/octet-stream")):
        want = (STATIC / name).read_bytes()
        r = requests.get(srv.url + "chrome/" + name, timeout=30)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == ctype
        assert r.headers["Content-Length"] == str(len(want))
        assert r.content == want
    r2 = requests.get(srv.url + "chrome/blob.bin", timeout=30,
                      headers={"If-Modified-Since": r.headers["Last-Modified"]})
    assert r2.status_code == 304
    assert r2.content == b""


def test_static_head_has_length_but_no_body(tracfront, tmp_path):
    srv = server(tracfront, tmp_path)
    raw = srv.raw(b"HEAD /chrome/blob.bin HTTP/1.0\r\nHost: x\r\n\r\n", timeout=30)
    status, headers, body = split_response(raw)
    assert " 200 " in status
    assert headers["content-length"] == str((STATIC / "blob.bin").stat().st_size)
    assert body == b""


def test_static_path_traversal_not_served(tracfront, tmp_path):
    srv = server(tracfront, tmp_path)
    raw = srv.raw(b"GET /chrome/../__init__.py HTTP/1.0\r\nHost: x\r\n\r\n", timeout=30)
    assert b"import jinja2" not in raw
    assert raw.startswith(b"HTTP/1.")


def test_non_ascii_wiki_names(tracfront, tmp_path):
    srv = server(tracfront, tmp_path)
    for quoted, name in (("Caf%C3%A9", "Café"), ("%E6%97%A5%E6%9C%AC%E8%AA%9E", "日本語"),
                         ("Space%20Page", "Space Page")):
        r = requests.get(srv.url + "wiki/" + quoted, timeout=30)
        assert r.status_code == 200, quoted
        assert '<h1 id="wikipage">%s</h1>' % name in r.text
    # Not UTF-8 once percent-decoded: the app answers 404, the server must not fail.
    r = requests.get(srv.url + "wiki/%FF", timeout=30)
    assert r.status_code == 404
    assert "Invalid URL encoding" in r.text


def test_mount_prefix_used_in_links_and_redirects(tracfront, tmp_path):
    srv = server(tracfront, tmp_path, "--mount", "/trac")
    r = requests.get(srv.url + "trac/wiki/Start", timeout=30)
    assert r.status_code == 200
    assert 'href="/trac/chrome/trac.css"' in r.text
    env = requests.get(srv.url + "trac/environ", timeout=30).json()
    assert env["SCRIPT_NAME"] == "/trac" and env["PATH_INFO"] == "/environ"
    r = requests.post(srv.url + "trac/newticket", data={"summary": "s"},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 303
    assert r.headers["Location"] == "http://127.0.0.1:%d/trac/ticket/1" % srv.port
    assert requests.get(r.headers["Location"], timeout=30).status_code == 200


def test_concurrent_clients(tracfront, tmp_path):
    srv = server(tracfront, tmp_path, "--threads", "4")
    css = (STATIC / "trac.css").read_bytes()
    wiki = expected_page("/wiki/Busy", tmp_path)

    def client(n):
        s = requests.Session()
        for i in range(5):
            r = s.post(srv.url + "newticket", data={"summary": "t%d-%d" % (n, i)},
                       timeout=60)
            assert r.status_code == 200 and "t%d-%d" % (n, i) in r.text
            assert s.get(srv.url + "wiki/Busy", timeout=60).content == wiki
            assert s.get(srv.url + "chrome/trac.css", timeout=60).content == css
        return n

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(client, range(4))) == [0, 1, 2, 3]
    assert '<p id="count">20 tickets</p>' in requests.get(srv.url, timeout=30).text
    env = requests.get(srv.url + "environ", timeout=30).json()
    assert env["wsgi.multithread"] is True
