"""tracfront --upstream in front of a real nginx (the stand-in for the IIS
box a legacy Trac lives behind), started by the test from a generated config:
basic GET, the headers and request target nginx sees, a 10 MiB static file,
keep-alive reuse of upstream connections, HEAD, 404 passthrough, path mapping
with Location rewriting, and 502 once nginx is gone."""
import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests

NGINX = shutil.which("nginx") or (
    "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx not installed (apt-get install nginx)")

HELLO = b"hello from nginx\n"
BIG = 10 * 1024 * 1024
# Fields of /echo, "|"-separated: what nginx received.
ECHO = ("xff", "via", "host", "uri", "conn", "conn_requests", "xfproto", "xfhost", "forwarded")

# The start of every generated config: nginx's files all under the test's folder.
HTTP_PREAMBLE = """\
user root;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log info;
events { worker_connections 256; }
http {
    access_log %(dir)s/access.log;
    client_body_temp_path %(dir)s/client_body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
"""
CONF = HTTP_PREAMBLE + """\
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:%(port)d default_server;
        server_name _;
        location = /hello { default_type text/plain; return 200 "hello from nginx\\n"; }
        location /echo {
            default_type text/plain;
            return 200 "$http_x_forwarded_for|$http_via|$http_host|$request_uri|$connection|$connection_requests|$http_x_forwarded_proto|$http_x_forwarded_host|$http_forwarded";
        }
        location = /legacy/go { return 302 http://127.0.0.1:%(port)d/legacy/target; }
        location /legacy/ { default_type text/plain; return 200 "legacy $request_uri"; }
        location /files/ { alias %(static)s/; }
    }
}
"""


class Nginx:
    """nginx in the foreground on a free loopback port, its prefix in `dir`."""

    def __init__(self, dir, static):
        self.dir, self.static = str(dir), str(static)
        os.makedirs(self.dir, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(CONF % {"dir": self.dir, "port": self.port, "static": self.static})
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir, "-e", os.path.join(self.dir, "error.log"),
             "-c", self.conf, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "stderr.txt"), "wb"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "nginx exited: " + self.log()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not start: " + self.log())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self):
        out = []
        for name in ("stderr.txt", "error.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out.append(f.read()[-2000:])
            except OSError:
                pass
        return "\n".join(out)


def make_static(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "big.bin").write_bytes(os.urandom(BIG))
    (path / "small.txt").write_bytes(b"small file\n")
    return path


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    root = tmp_path_factory.mktemp("nginx")
    n = Nginx(root / "prefix", make_static(root / "static")).start()
    yield n
    n.stop()


def echo(srv, target="/echo", headers=None, session=None):
    """GET target through srv; return nginx's view as a dict of ECHO fields."""
    r = (session or requests).get(srv.url.rstrip("/") + target, headers=headers, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:200])
    return dict(zip(ECHO, r.text.split("|")))


def test_basic_get(tracfront, nginx):
    srv = tracfront("--upstream", nginx.url)
    r = requests.get(srv.url + "hello", timeout=10)
    assert r.status_code == 200
    assert r.content == HELLO
    assert r.headers["Content-Type"] == "text/plain"
    assert "tracfront" in r.headers.get("Via", "")
    assert r.headers.get("Server", "").startswith("nginx")  # upstream's headers pass through


def test_headers_seen_by_nginx(tracfront, nginx):
    srv = tracfront("--upstream", nginx.url)
    seen = echo(srv, headers={"Host": "intranet.example", "X-Forwarded-For": "10.1.2.3"})
    assert seen["host"] == "intranet.example"
    assert seen["xff"] == "10.1.2.3, 127.0.0.1"
    assert seen["via"] == "1.1 tracfront"
    assert seen["xfproto"] == "http"
    assert seen["xfhost"] == "intranet.example"
    assert seen["forwarded"] == "for=127.0.0.1;host=intranet.example;proto=http"


def test_request_target_not_normalised(tracfront, nginx):
    srv = tracfront("--upstream", nginx.url)
    target = "/x/../echo//a%2Fb/./c?q=%41&r=a/../b"
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        c.request("GET", target, headers={"Host": "intranet.example"})
        r = c.getresponse()
        body = r.read().decode()
    finally:
        c.close()
    assert r.status == 200, body
    assert dict(zip(ECHO, body.split("|")))["uri"] == target


def test_big_static_file_byte_identical(tracfront, nginx):
    srv = tracfront("--upstream", nginx.url)
    with open(nginx.static + "/big.bin", "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    r = requests.get(srv.url + "files/big.bin", timeout=60)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == BIG
    assert len(r.content) == BIG
    assert hashlib.sha256(r.content).hexdigest() == digest


def test_upstream_keepalive_reused(tracfront, nginx):
    srv = tracfront("--upstream", nginx.url)
    with requests.Session() as s:
        seen = [echo(srv, session=s) for _ in range(10)]
    conns = {v["conn"] for v in seen}
    # 10 sequential requests: one upstream connection (two if one went stale).
    assert len(conns) <= 2, [(v["conn"], v["conn_requests"]) for v in seen]
    assert max(int(v["conn_requests"]) for v in seen) >= 5


def test_head(tracfront, nginx):
    srv = tracfront("--upstream", nginx.url)
    raw = srv.raw(b"HEAD /files/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw[:300]
    assert b"\r\ncontent-length: %d" % BIG in head.lower()
    assert rest == b""


def test_404_passthrough(tracfront, nginx):
    srv = tracfront("--upstream", nginx.url)
    r = requests.get(srv.url + "files/nope.txt", timeout=10)
    assert r.status_code == 404
    assert b"nginx" in r.content  # nginx's own 404 page, not tracfront's
    r = requests.get(srv.url + "files/small.txt", timeout=10)
    assert r.status_code == 200 and r.content == b"small file\n"


def test_path_mapping_and_location_rewrite(tracfront, nginx):
    srv = tracfront("--upstream", nginx.url + "/legacy", "--route", "/old=upstream")
    r = requests.get(srv.url + "old/page?a=1", timeout=10)
    assert r.status_code == 200
    assert r.text == "legacy /legacy/page?a=1"
    r = requests.get(srv.url + "old/go", timeout=10, allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "/old/target"


def test_nginx_stopped_gives_502(tracfront, tmp_path):
    n = Nginx(tmp_path / "prefix", make_static(tmp_path / "static")).start()
    try:
        srv = tracfront("--upstream", n.url)
        with requests.Session() as s:
            assert s.get(srv.url + "hello", timeout=10).content == HELLO
            n.stop()
            r = s.get(srv.url + "hello", timeout=30)
            assert r.status_code == 502
            assert r.text.startswith("502 Bad Gateway")
            assert srv.alive()
            n.start()  # same port again: tracfront recovers
            r = s.get(srv.url + "hello", timeout=30)
            assert r.status_code == 200 and r.content == HELLO
    finally:
        n.stop()
    deadline = time.monotonic() + 10
    while "upstream" not in srv.error_log and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "upstream" in srv.error_log
