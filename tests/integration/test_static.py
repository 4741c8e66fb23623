"""--static PREFIX=DIR through the real binary: MIME types, validators and 304s,
byte ranges (206/416, multiple ranges, If-Range), HEAD, 405 for other methods,
a 5 MiB file byte for byte, and the containment rules (no "..", encoded dots or
slashes, NUL, symlinks out of DIR or directory listings), alone and next to an app.
Files the server's user may not read are 403s, logged as nginx does; a folder
that stops resolving is logged once. Static requests are timed in the profiler
under backend "static"."""
import email.utils
import hashlib
import os
import pwd
import grp
import re
import shutil
import tempfile
import time
import types

import pytest
import requests

import truncation_util
from upload_util import assert_refused_early
from conftest import start_server
from test_nginx_upstream import NGINX, Nginx

MTIME = 1600000000  # Sun, 13 Sep 2020 12:26:40 GMT
SECRET = b"SECRET-OUTSIDE-THE-STATIC-DIR\n"
CSS = b"body { color: red }\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


@pytest.fixture
def www(tmp_path):
    """DIR with one file of each kind; next to it, files it must never serve."""
    d = tmp_path / "www"
    (d / "sub").mkdir(parents=True)
    (d / "a").mkdir()
    files = {
        "style.css": CSS,
        "app.js": b"console.log('hi');\n",
        "img.png": PNG,
        "logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
        "page.html": b"<!doctype html><p>hi\n",
        "data.xyz": b"unknown extension\n",
        "README": b"no extension\n",
        "my file.txt": b"a space in the name\n",
        "x": b"plain x\n",
        "a/b": b"a slash b\n",
        "sub/inner.txt": b"inside a subdirectory\n",
        "big.bin": os.urandom(5 << 20),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
        os.utime(d / name, (MTIME, MTIME))
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)
    os.symlink(d / "style.css", d / "link_in.css")           # inside -> allowed
    os.symlink(tmp_path / "secret.txt", d / "link_out.txt")  # leads out
    os.symlink("../secret.txt", d / "rel_out.txt")          # relative, leads out
    os.symlink(tmp_path / "outside", d / "outdir")          # a directory outside
    return types.SimpleNamespace(path=d, files=files)


@pytest.fixture
def static(tracfront, www):
    return tracfront("--static", "/chrome=%s" % www.path)


def get(srv, path, **headers):
    return requests.get(srv.url + path.lstrip("/"), headers=headers, timeout=30)


def raw_get(srv, target, method="GET"):
    """(status, headers, body) for a target sent exactly as written."""
    data = srv.raw(b"%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                   % (method.encode(), target))
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert re.match(r"HTTP/1\.[01] \d{3}", lines[0]), data[:200]
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


def mime(r):
    return r.headers["Content-Type"].split(";")[0].strip().lower()


@pytest.mark.parametrize("name,expected", [
    ("style.css", "text/css"),
    ("app.js", "application/javascript"),
    ("img.png", "image/png"),
    ("logo.svg", "image/svg+xml"),
    ("page.html", "text/html"),
    ("data.xyz", "application/octet-stream"),
    ("README", "application/octet-stream"),
])
def test_mime_types_and_bodies(static, www, name, expected):
    r = get(static, "/chrome/" + name)
    assert r.status_code == 200
    assert mime(r) == expected
    assert r.content == www.files[name]
    assert r.headers["Content-Length"] == str(len(www.files[name]))
    assert r.headers["Accept-Ranges"] == "bytes"


def test_path_is_percent_decoded_and_query_ignored(static, www):
    assert get(static, "/chrome/my%20file.txt").content == www.files["my file.txt"]
    assert get(static, "/chrome/style.css?v=123").content == CSS
    assert get(static, "/chrome/sub/inner.txt").content == www.files["sub/inner.txt"]
    assert get(static, "/chrome/link_in.css").content == CSS  # symlink inside DIR
    assert get(static, "/chrome/missing.css").status_code == 404


def test_prefix_matches_the_decoded_path(tracfront, www):
    # browsers send /caf%C3%A9 for /café; nginx's location and --mount compare decoded
    srv = tracfront("--static", "/caf\u00e9=%s" % www.path, "--app", "hello:application")
    for target in (b"/caf%C3%A9/x", b"/caf%c3%a9/x", b"/caf\xc3\xa9/x", b"/%63af%C3%A9/x"):
        status, _, body = raw_get(srv, target)
        assert (status, body) == (200, b"plain x\n"), target
    assert raw_get(srv, b"/caf%C3%A9x")[2] == b"Hello, World!\n"  # not on a boundary: the app
    # %2F is a '/' to the route, as to --mount; the folder serves no encoded slash
    assert raw_get(srv, b"/caf%C3%A9%2Fx")[:1] == (404,)


def test_a_prefix_that_can_never_match_is_refused(tracfront, www):
    for prefix in ("/s%20", "/s?x", "/a/../b"):
        srv = tracfront("--static", "%s=%s" % (prefix, www.path), expect_fail=True)
        assert srv.proc.wait(10) == 2 and "can never match" in srv.stderr, srv.stderr


def test_big_file_is_byte_identical(static, www):
    r = requests.get(static.url + "chrome/big.bin", stream=True, timeout=60)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(5 << 20)
    h, n = hashlib.sha256(), 0
    for chunk in r.iter_content(65536):
        h.update(chunk)
        n += len(chunk)
    assert n == 5 << 20
    assert h.hexdigest() == hashlib.sha256(www.files["big.bin"]).hexdigest()


def test_validators(static, www):
    r = get(static, "/chrome/style.css")
    etag = r.headers["ETag"]
    assert re.fullmatch(r'(W/)?"[^"]+"', etag), etag
    assert r.headers["Last-Modified"] == email.utils.formatdate(MTIME, usegmt=True)
    assert get(static, "/chrome/style.css").headers["ETag"] == etag  # stable
    assert get(static, "/chrome/img.png").headers["ETag"] != etag    # other size
    # a change of size and mtime changes both validators
    (www.path / "style.css").write_bytes(CSS + b"/* more */\n")
    os.utime(www.path / "style.css", (MTIME + 60, MTIME + 60))
    r2 = get(static, "/chrome/style.css")
    assert r2.headers["ETag"] != etag
    assert r2.headers["Last-Modified"] == email.utils.formatdate(MTIME + 60, usegmt=True)


def test_conditional_get_304(static):
    etag = get(static, "/chrome/style.css").headers["ETag"]
    lm = email.utils.formatdate(MTIME, usegmt=True)
    r = get(static, "/chrome/style.css", **{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert r.headers.get("ETag") == etag
    assert get(static, "/chrome/style.css", **{"If-None-Match": '"nope"'}).status_code == 200
    assert get(static, "/chrome/style.css", **{"If-Modified-Since": lm}).status_code == 304
    later = email.utils.formatdate(MTIME + 3600, usegmt=True)
    assert get(static, "/chrome/style.css", **{"If-Modified-Since": later}).status_code == 304
    earlier = email.utils.formatdate(MTIME - 3600, usegmt=True)
    r = get(static, "/chrome/style.css", **{"If-Modified-Since": earlier})
    assert r.status_code == 200 and r.content == CSS
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
    r = get(static, "/chrome/style.css", **{"If-None-Match": '"nope"', "If-Modified-Since": lm})
    assert r.status_code == 200 and r.content == CSS


def test_if_modified_since_ahead_of_the_clock_is_ignored(static):
    """A client whose clock runs fast (curl -z, wget -N) sent a date after the
    file's next change: it got 304s for the changed file until that date
    passed. Apache ignores a date later than its clock; so does tracfront."""
    future = email.utils.formatdate(time.time() + 86400, usegmt=True)
    r = get(static, "/chrome/style.css", **{"If-Modified-Since": future})
    assert r.status_code == 200 and r.content == CSS


def test_validators_with_trailing_whitespace(static):
    # RFC 9110 5.5: the whitespace after a value is not part of it (nginx
    # answers 304/412/206 here); the date did not parse and was ignored
    lm = email.utils.formatdate(MTIME, usegmt=True).encode()
    early = email.utils.formatdate(MTIME - 3600, usegmt=True).encode()
    for header, want in ((b"If-Modified-Since: " + lm + b" \t", 304),
                         (b"If-Unmodified-Since: " + early + b" ", 412),
                         (b"Range: bytes=0-1\r\nIf-Range: " + lm + b" ", 206)):
        data = static.raw(b"GET /chrome/style.css HTTP/1.1\r\nHost: t\r\n" + header +
                          b"\r\nConnection: close\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 %d " % want), (header, data[:100])


def test_304_length_is_the_files_or_none(static):
    # RFC 9110 8.6: a 304 may carry Content-Length only if it equals the 200's
    etag = get(static, "/chrome/style.css").headers["ETag"]
    for method in ("GET", "HEAD"):
        r = requests.request(method, static.url + "chrome/style.css",
                             headers={"If-None-Match": etag}, timeout=10)
        assert r.status_code == 304 and r.content == b"", method
        assert r.headers.get("Content-Length", str(len(CSS))) == str(len(CSS)), r.headers


def test_if_match_and_if_unmodified_since_412(static):
    etag = get(static, "/chrome/style.css").headers["ETag"]
    lm = email.utils.formatdate(MTIME, usegmt=True)
    earlier = email.utils.formatdate(MTIME - 3600, usegmt=True)
    for headers, status in (({"If-Match": etag}, 200), ({"If-Match": '"zzz", ' + etag}, 200),
                            ({"If-Match": "*"}, 200), ({"If-Match": '"zzz"'}, 412),
                            ({"If-Match": "W/" + etag}, 412),  # If-Match compares strongly
                            ({"If-Unmodified-Since": lm}, 200),
                            ({"If-Unmodified-Since": earlier}, 412),
                            ({"If-Unmodified-Since": "not a date"}, 200),
                            # If-Match decides when present (RFC 9110 13.2.2)
                            ({"If-Match": etag, "If-Unmodified-Since": earlier}, 200),
                            ({"If-Unmodified-Since": earlier, "Range": "bytes=0-0"}, 412)):
        r = get(static, "/chrome/style.css", **headers)
        assert r.status_code == status, (headers, r.status_code)
        if status == 412:
            assert CSS not in r.content and r.headers["ETag"] == etag, headers
        else:
            assert r.content == CSS, headers


def test_ranges(static, www):
    data = www.files["img.png"]
    size = len(data)
    for spec, lo, hi in (("0-9", 0, 9), ("10-", 10, size - 1), ("-5", size - 5, size - 1),
                         ("7-7", 7, 7), ("%d-999999" % (size - 3), size - 3, size - 1)):
        r = get(static, "/chrome/img.png", Range="bytes=" + spec)
        assert r.status_code == 206, spec
        assert r.headers["Content-Range"] == "bytes %d-%d/%d" % (lo, hi, size), spec
        assert r.content == data[lo:hi + 1], spec
        assert r.headers["Content-Length"] == str(hi - lo + 1)
    big = www.files["big.bin"]
    r = get(static, "/chrome/big.bin", Range="bytes=4194304-4194313")
    assert r.status_code == 206 and r.content == big[4194304:4194314]


def test_unsatisfiable_and_multiple_ranges(static, www):
    data = www.files["img.png"]
    r = get(static, "/chrome/img.png", Range="bytes=%d-" % len(data))
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */%d" % len(data)
    r = get(static, "/chrome/img.png", Range="bytes=0-0,5-6")
    assert r.status_code == 200 and r.content == data


EMPTY_FILE_RANGES = {  # Range on an empty file: nginx 1.22's status (Content-Range */0 on a 416)
    "bytes=-5": 200, "bytes=0-": 200, "bytes=0-0": 200, "bytes=-0": 200, "bytes=0-5": 200,
    "bytes=1-": 416, "bytes=5-9": 416,
}


def range_answers(url):
    """{Range: (status, Content-Range, Content-Length of a 200)} for
    EMPTY_FILE_RANGES against url."""
    out = {}
    for spec in EMPTY_FILE_RANGES:
        r = requests.get(url, headers={"Range": spec}, timeout=10)
        length = r.headers.get("Content-Length") if r.status_code == 200 else None
        out[spec] = (r.status_code, r.headers.get("Content-Range"), length)
    return out


def test_ranges_on_an_empty_file_as_nginx(tracfront, tmp_path):
    """nginx answers the whole (empty) file, a 200, to a range that starts at
    0 (ngx_http_range_parse declines it) and 416 to one that starts past it;
    RFC 9110 14.2 lets a server ignore Range. Compared with a real nginx."""
    d = tmp_path / "e"
    d.mkdir()
    (d / "empty.txt").write_bytes(b"")
    srv = tracfront("--static", "/e=%s" % d)
    want = {spec: (416, "bytes */0", None) if status == 416 else (200, None, "0")
            for spec, status in EMPTY_FILE_RANGES.items()}
    assert range_answers(srv.url + "e/empty.txt") == want
    if NGINX is None:
        pytest.skip("nginx not installed: compared with the expectations only")
    nginx = Nginx(tmp_path / "nginx", d).start()
    try:
        assert range_answers(nginx.url + "/files/empty.txt") == want
    finally:
        nginx.stop()


def test_validator_lists_on_several_lines(static):
    """RFC 9110 5.3: If-None-Match: "a" and If-None-Match: "b" on two lines
    are the list "a", "b" (as the app sees them, joined); so is If-Match."""
    etag = get(static, "/chrome/style.css").headers["ETag"].encode()

    def status(*lines):
        head = b"".join(b"%s: %s\r\n" % line for line in lines)
        data = static.raw(b"GET /chrome/style.css HTTP/1.1\r\nHost: t\r\n%s"
                          b"Connection: close\r\n\r\n" % head)
        return int(data.split(b" ", 2)[1])

    assert status((b"If-None-Match", b'"a"'), (b"If-None-Match", etag)) == 304
    assert status((b"If-None-Match", b'"a"'), (b"If-None-Match", b'"b"')) == 200
    assert status((b"If-Match", b'"a"'), (b"If-Match", etag)) == 200
    assert status((b"If-Match", b'"a"'), (b"If-Match", b'"b"')) == 412


def test_if_range(static, www):
    data = www.files["img.png"]
    etag = get(static, "/chrome/img.png").headers["ETag"]
    r = get(static, "/chrome/img.png", Range="bytes=0-3", **{"If-Range": etag})
    assert r.status_code == 206 and r.content == data[:4]
    r = get(static, "/chrome/img.png", Range="bytes=0-3", **{"If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == data
    old = email.utils.formatdate(MTIME - 3600, usegmt=True)
    r = get(static, "/chrome/img.png", Range="bytes=0-3", **{"If-Range": old})
    assert r.status_code == 200 and r.content == data


def test_head_has_headers_and_no_body(static, www):
    status, headers, body = raw_get(static, b"/chrome/style.css", "HEAD")
    assert status == 200
    assert body == b""
    assert headers["content-length"] == str(len(CSS))
    assert headers["content-type"].startswith("text/css")
    assert headers["etag"] == get(static, "/chrome/style.css").headers["ETag"]
    assert "last-modified" in headers and headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_405(static, method):
    r = requests.request(method, static.url + "chrome/style.css", data=b"x", timeout=10)
    assert r.status_code == 405
    allow = {m.strip() for m in r.headers["Allow"].split(",")}
    assert allow == {"GET", "HEAD"}
    assert CSS not in r.content


@pytest.mark.parametrize("method", [b"POST", b"PUT"])
def test_upload_to_a_static_route_is_405_before_its_body(static, method):
    """The 405 follows from the method and route alone (RFC 9110 10.1.1): it
    comes instead of 100 Continue, and without Expect before the body is
    read (it was spooled whole to a temporary file first), as nginx does."""
    head = assert_refused_early(static, method, b"/chrome/style.css", 405)
    assert b"Allow: GET, HEAD\r\n" in head, head
    assert get(static, "/chrome/style.css").content == CSS


@pytest.mark.parametrize("method", [b"POST", b"GET"])
def test_expect_without_a_body_then_a_pipelined_request(static, method):
    """Expect: 100-continue with no body and the next request in the same
    packet: libmicrohttpd 0.9.75 sent 100 Continue, then called tracfront
    with an empty piece of body, taken for the request's end; the answer
    queued there (405, a static GET's 200) was refused and the connection
    closed with nothing more. Both answers come, on the kept connection."""
    data = static.raw(method + b" /chrome/style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
                      b"Expect: 100-continue\r\n\r\nGET /chrome/style.css HTTP/1.1\r\nHost: t\r\n"
                      b"Connection: close\r\n\r\n")
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    want = [b"405" if method == b"POST" else b"200", b"200"]
    assert [s for s in statuses if s != b"100"] == want, data[:400]
    assert data.endswith(CSS), data[-200:]


def test_an_upload_whose_head_leaves_no_room_is_431_at_its_head(static):
    """A head that leaves too little of the connection's 32 KiB for the
    answer's gets 431 as a GET does, at its head: an upload's body is not
    read for it (an app route's was read whole first)."""
    data = static.raw(b"POST /chrome/style.css HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"p" * 32300 +
                      b"\r\nContent-Length: 5\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]


def test_upload_no_route_serves_is_404_before_its_body(static):
    """--static only: a path outside its routes is nobody's, whatever the
    body; the 404 comes before it is asked for or read."""
    for target in (b"/other", b"/chromex/style.css"):
        assert_refused_early(static, b"POST", target, 404)
    assert raw_get(static, b"/other", "POST")[0] == 404  # no body: as before


@pytest.mark.parametrize("target", [
    b"/chrome/../secret.txt",
    b"/chrome/sub/../../secret.txt",
    b"/chrome/%2e%2e/secret.txt",
    b"/chrome/%2E%2E/secret.txt",
    b"/chrome/..%2fsecret.txt",
    b"/chrome/%2e%2e%2fsecret.txt",
    b"/chrome/../../../../../../../../etc/passwd",
    b"/chrome/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/chrome/a%2fb",
    b"/chrome/sub%2finner.txt",
    b"/chrome/x%00",
    b"/chrome/style.css%00.png",
    b"/chrome/link_out.txt",
    b"/chrome/rel_out.txt",
    b"/chrome/outdir/secret.txt",
    b"/chrome/outdir/",
    b"/chrome/sub/%2e%2e/%2e%2e/secret.txt",
])
def test_never_outside_dir(static, target):
    status, _, body = raw_get(static, target)
    assert 400 <= status < 500, (target, status)
    assert SECRET not in body and b"root:" not in body
    assert b"a slash b" not in body and b"plain x" not in body
    assert static.alive()


def test_dot_segments_out_of_the_route_are_400_others_404(static):
    """As the README says: the request checks refuse dot segments that climb
    out of the route (400) before static files see them; static files refuse
    the others, and encoded slashes, with 404."""
    for target in (b"/chrome/%2e%2e/x", b"/chrome/..%2fx", b"/chrome/..%5cx", b"/chrome/../x"):
        assert raw_get(static, target)[0] == 400, target
    for target in (b"/chrome/sub/%2e%2e/x", b"/chrome/sub/..%2fx", b"/chrome/sub%2finner.txt",
                   b"/chrome/./x"):
        assert raw_get(static, target)[0] == 404, target


@pytest.mark.parametrize("target", [b"/chrome", b"/chrome/", b"/chrome/sub", b"/chrome/sub/"])
def test_directories_are_404(static, target):
    status, _, body = raw_get(static, target)
    assert status == 404, target
    assert b"inner.txt" not in body and b"style.css" not in body


def test_prefix_matches_on_segment_boundary_only(static):
    for target in (b"/chromex/style.css", b"/chromestyle.css", b"/style.css", b"/"):
        status, _, body = raw_get(static, target)
        assert status == 404, target  # no app, no upstream: nothing else to serve
        assert CSS not in body


def latency(srv, route, backend, count):
    """Poll the latency table until (route, backend) has `count` requests
    (a request is recorded just after its response completes)."""
    deadline = time.monotonic() + 5
    while True:
        r = requests.get(srv.url + "__profile__/api/latency", timeout=10)
        assert r.status_code == 200
        routes = {(x["route"], x["backend"]): x for x in r.json()["routes"]}
        if routes.get((route, backend), {}).get("count") == count or time.monotonic() > deadline:
            return routes
        time.sleep(0.05)


def test_static_latency_recorded(static):
    for _ in range(3):
        assert get(static, "/chrome/style.css").status_code == 200
    assert get(static, "/chrome/missing.css").status_code == 404
    latency(static, "/chrome/style.css", "static", 3)
    # each is recorded on its own; a 404 of a route not seen before goes
    # under (not found), as a scan's would
    routes = latency(static, "(not found)", "static", 1)
    row = routes[("/chrome/style.css", "static")]
    assert row["count"] == 3
    assert row["status"].get("2xx") == 3
    assert routes[("(not found)", "static")]["status"].get("4xx") == 1
    assert ("/chrome/missing.css", "static") not in routes
    assert not any(b == "wsgi" for _, b in routes)


def test_static_next_to_app(tracfront, www):
    srv = tracfront("--app", "hello:application", "--static", "/chrome=%s" % www.path)
    r = get(srv, "/chrome/style.css")
    assert r.status_code == 200 and r.content == CSS and mime(r) == "text/css"
    assert get(srv, "/chrome/missing.css").status_code == 404  # the route is static's
    assert raw_get(srv, b"/chrome/../secret.txt")[0] in range(400, 500)
    for path in ("/chromex/style.css", "/", "/other", "/chrome.css"):
        r = get(srv, path)
        assert r.status_code == 200 and r.content == b"Hello, World!\n", path
    routes = latency(srv, "/chrome/style.css", "static", 1)
    assert routes[("/chrome/style.css", "static")]["count"] == 1
    assert ("/other", "wsgi") in routes
    assert ("/chrome/style.css", "wsgi") not in routes


def test_file_truncated_while_sent_closes_and_logs(tracfront, tmp_path):
    """As nginx: the connection closes at once and the error log says why,
    instead of waiting for more bytes until --idle-timeout."""
    d = tmp_path / "grow"
    d.mkdir()
    truncation_util.write_big_file(d / "big.bin")
    srv = tracfront("--static", "/files=%s" % d, "--idle-timeout", "60")
    received, closed = truncation_util.download_while_truncating(
        srv, "/files/big.bin", d / "big.bin")
    assert closed, "the connection stayed open after the file shrank"
    assert received < truncation_util.BIG
    assert poll_log(srv, "big.bin"), srv.error_log
    assert "changed while being sent" in srv.error_log
    assert get(srv, "/files/big.bin").content == (d / "big.bin").read_bytes()  # still serving


def test_deploy_swapping_a_symlink_is_served_at_once(tracfront, tmp_path):
    """--static /s=/srv/app/current/static, then `current` is pointed at the
    next release (the usual atomic deploy): nginx serves the new files on the
    next request, without a restart, and so must tracfront."""
    for release, text in (("r1", b"release one\n"), ("r2", b"release two\n")):
        (tmp_path / release / "static").mkdir(parents=True)
        (tmp_path / release / "static" / "app.css").write_bytes(text)
    (tmp_path / "r2" / "static" / "new.css").write_bytes(b"only in two\n")
    os.symlink("r1", tmp_path / "current")
    srv = tracfront("--static", "/s=%s" % (tmp_path / "current" / "static"))
    assert get(srv, "/s/app.css").content == b"release one\n"
    assert get(srv, "/s/new.css").status_code == 404
    os.symlink("r2", tmp_path / "current.next")
    os.replace(tmp_path / "current.next", tmp_path / "current")
    assert get(srv, "/s/app.css").content == b"release two\n"
    assert get(srv, "/s/new.css").content == b"only in two\n"
    os.unlink(tmp_path / "current")
    assert get(srv, "/s/app.css").status_code == 404
    assert srv.alive()


def test_static_folder_that_stops_resolving_is_logged_once(tracfront, tmp_path):
    """The folder deleted, or `current` left dangling: 404s as before, and one
    [error] line naming the folder until it resolves again (not one a request)."""
    (tmp_path / "r1" / "static").mkdir(parents=True)
    (tmp_path / "r1" / "static" / "app.css").write_bytes(b"one\n")
    os.symlink("r1", tmp_path / "current")
    folder = str(tmp_path / "current" / "static")
    srv = tracfront("--static", "/s=%s" % folder)
    assert get(srv, "/s/missing.css").status_code == 404
    assert folder not in srv.error_log  # a missing file is a silent 404
    os.unlink(tmp_path / "current")
    os.symlink("r0", tmp_path / "current")  # dangling
    for _ in range(3):
        assert get(srv, "/s/app.css").status_code == 404
    lines = [l for l in srv.error_log.splitlines() if folder in l]
    assert len(lines) == 1 and "[error]" in lines[0], srv.error_log
    assert "No such file or directory" in lines[0]
    os.replace(tmp_path / "r1", tmp_path / "r0")  # resolves again
    assert get(srv, "/s/app.css").content == b"one\n"
    shutil.rmtree(tmp_path / "r0")  # and not again
    for _ in range(2):
        assert get(srv, "/s/app.css").status_code == 404
    assert sum("[error]" in l for l in srv.error_log.splitlines() if folder in l) == 2


@pytest.fixture
def as_nobody(for_nobody):
    """A tree under a fresh /tmp folder that `nobody` may read, and start(*args)
    to run tracfront as nobody:nogroup with no other groups (as
    `setpriv --reuid=nobody --regid=nogroup --clear-groups` does)."""
    if os.geteuid() != 0:
        pytest.skip("switching to the nobody user needs root")
    try:
        uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no nobody user or nogroup group here")
    base = tempfile.mkdtemp(prefix="tf_static_")
    os.chmod(base, 0o755)
    servers = []

    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    def start(*args):
        workdir = os.path.join(base, "srv%d" % len(servers))
        os.mkdir(workdir)
        os.chown(workdir, uid, gid)
        servers.append(start_server(workdir, *args, preexec_fn=drop, binary=for_nobody.binary,
                                    apps=for_nobody.apps))
        return servers[-1]

    yield types.SimpleNamespace(path=base, start=start)
    for srv in servers:
        assert srv.stop() in (0, -15), srv.stderr[-2000:]
    shutil.rmtree(base)


def new_log(srv, since):
    return srv.error_log[since:]


def test_unreadable_files_are_403_and_logged(as_nobody):
    """As nginx: a file or a folder on the way that the server's user may not
    read is a 403 with `open() "PATH" failed (13: Permission denied)`'s
    content in the error log, not a silent 404. A missing file stays silent."""
    top = os.path.join(as_nobody.path, "top")
    www = os.path.join(top, "www")
    os.makedirs(os.path.join(www, "private"))
    for name, mode in (("ok.txt", 0o644), ("secret.txt", 0o600),
                       ("private/inner.txt", 0o644)):
        with open(os.path.join(www, name), "wb") as f:
            f.write(name.encode())
        os.chmod(os.path.join(www, name), mode)
    os.chmod(top, 0o755)
    os.chmod(www, 0o755)
    os.chmod(os.path.join(www, "private"), 0o700)
    srv = as_nobody.start("--static", "/s=%s" % www)
    assert get(srv, "/s/ok.txt").content == b"ok.txt"
    for rel in ("secret.txt", "private/inner.txt", "private/missing.txt"):
        since = len(srv.error_log)
        assert get(srv, "/s/" + rel).status_code == 403, rel
        lines = new_log(srv, since).splitlines()
        assert len(lines) == 1, lines
        assert "[error]" in lines[0] and os.path.join(www, rel) in lines[0], lines
        assert "Permission denied" in lines[0], lines
    for rel in ("missing.txt", "private", "private/"):  # folders are never served
        since = len(srv.error_log)
        assert get(srv, "/s/" + rel).status_code == 404, rel
        assert new_log(srv, since) == "", rel
    os.chmod(top, 0o700)  # a folder above the --static one
    since = len(srv.error_log)
    assert get(srv, "/s/ok.txt").status_code == 403
    line = new_log(srv, since)
    assert www in line and "Permission denied" in line and "[error]" in line, line
    os.chmod(top, 0o755)
    assert get(srv, "/s/ok.txt").content == b"ok.txt"


def test_symlinks_out_are_404_whatever_lies_outside(as_nobody):
    """A symlink leading out of DIR is a silent 404, as the README says, even
    when the folder it leads into refuses the server's user: that folder is
    not the admin's to open up for DIR. A folder under DIR that refuses stays
    a 403, logged, through a symlink as well."""
    base = as_nobody.path
    www, opened, locked = (os.path.join(base, n) for n in ("www", "open", "locked"))
    os.makedirs(os.path.join(www, "private"))
    for folder, mode in ((www, 0o755), (opened, 0o755), (locked, 0o700)):
        os.makedirs(folder, exist_ok=True)
        os.chmod(folder, mode)
    for path in (os.path.join(opened, "readable.txt"), os.path.join(locked, "secret.txt"),
                 os.path.join(www, "private", "inner.txt")):
        with open(path, "wb") as f:
            f.write(SECRET)
        os.chmod(path, 0o644)
    os.chmod(os.path.join(www, "private"), 0o700)
    links = {"out_readable": os.path.join(opened, "readable.txt"),
             "out_locked": os.path.join(locked, "secret.txt"),
             "out_locked_missing": os.path.join(locked, "missing.txt"),
             "out_locked_dir": locked,
             "in_private": "private/inner.txt"}
    for name, target in links.items():
        os.symlink(target, os.path.join(www, name))
    srv = as_nobody.start("--static", "/s=%s" % www)
    for rel in ("out_readable", "out_locked", "out_locked_missing", "out_locked_dir/secret.txt"):
        since = len(srv.error_log)
        r = get(srv, "/s/" + rel)
        assert r.status_code == 404 and SECRET not in r.content, (rel, r.status_code)
        assert new_log(srv, since) == "", rel
    since = len(srv.error_log)
    assert get(srv, "/s/in_private").status_code == 403
    line = new_log(srv, since)
    assert "[error]" in line and "Permission denied" in line, line


def test_403_log_line_escapes_the_target(as_nobody):
    """The request target is the client's: its quotes and its bytes that are
    not ASCII (\\x9b is a terminal's CSI) are escaped in the error log, as the
    path is, never written raw (the request checks already refuse controls)."""
    www = os.path.join(as_nobody.path, "www")
    os.makedirs(www)
    os.chmod(www, 0o755)
    with open(os.path.join(www, "secret.txt"), "wb") as f:
        f.write(SECRET)
    os.chmod(os.path.join(www, "secret.txt"), 0o600)
    srv = as_nobody.start("--static", "/s=%s" % www)
    status, _, _ = raw_get(srv, b'/s/secret.txt?a="\x9b[2J\xff')
    assert status == 403
    with open(os.path.join(srv.workdir, "error.log"), "rb") as f:
        line = f.read()
    assert b"Permission denied" in line, line
    assert b"\x9b" not in line and b"\xff" not in line, line
    assert b'GET /s/secret.txt?a=\\"\\x9b[2J\\xff: cannot open' in line, line


def test_obsolete_date_forms_in_if_modified_since(static):
    """RFC 9110 5.6.7: a recipient must accept all three date forms."""
    for ims in ("Sunday, 13-Sep-20 12:26:40 GMT", "Sun Sep 13 12:26:40 2020"):
        assert get(static, "/chrome/style.css", **{"If-Modified-Since": ims}).status_code == 304
    assert get(static, "/chrome/style.css", **{
        "If-Modified-Since": "Sun Sep 13 12:26:39 2020"}).status_code == 200


def poll_log(srv, text, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in srv.error_log:
            return True
        time.sleep(0.05)
    return False
