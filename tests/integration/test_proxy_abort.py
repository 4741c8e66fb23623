"""The reverse proxy when its client leaves or its upstream cannot be reached:
a client that closes its connection while its proxied request waits for the
upstream (for the head, or for more of a streamed body) ends the upstream
request at once, as nginx does (proxy_ignore_client_abort off: the upstream
connection is closed, the request logged 499 when no answer had started); a
pipelining client's next request is not mistaken for a close; and an upstream
whose connect hangs is timed by --upstream-connect-timeout, never by
--upstream-read-timeout. The upstream is tests/apps/upstream_server.py."""
import http.client
import time

from conftest import hanging_port
from workers_util import wait_for


def send(srv, target, extra=b""):
    s = srv.connect(timeout=30)
    s.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n" + extra)
    return s


def test_client_leaving_before_the_head_ends_the_upstream_request(tracfront, upstream):
    up = upstream()
    srv = tracfront("--upstream", up.url)
    socks = [send(srv, "/slow?delay=60") for _ in range(5)]
    wait_for(lambda: up.stats()["by_path"].get("/slow") == 5, 10, "the upstream got the requests")
    for s in socks:
        s.close()
    # the upstream sees its connections closed, long before its 60 s are up
    wait_for(lambda: up.stats()["gone"].get("/slow") == 5, 10,
             "the upstream connections to be closed")
    wait_for(lambda: srv.access_log.count('"GET /slow?delay=60 HTTP/1.1" 499 - ') == 5, 10,
             "five access log lines with 499 (nginx's client closed request)")
    log = srv.error_log
    assert log.count("the client closed its connection before the answer") == 5, log
    assert "answered 50" not in log, log
    # the server goes on, on a fresh upstream connection
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    c.request("GET", "/slow?delay=0")
    assert c.getresponse().read() == b"slow\n"


def test_client_leaving_a_streamed_answer_ends_the_upstream_request(tracfront, upstream):
    """An event stream: the head and a first event are relayed, the next one
    is minutes away; the client leaves meanwhile."""
    up = upstream()
    srv = tracfront("--upstream", up.url)
    target = "/bytes?n=100&chunk=10&delay=60&chunked=1"
    s = send(srv, target)
    got = b""
    while not got.endswith(b"\r\n\r\nA\r\n" + bytes(range(10)) + b"\r\n"):  # the first chunk
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got
    s.close()
    wait_for(lambda: up.stats()["gone"].get("/bytes") == 1, 10,
             "the upstream connection to be closed")
    # the answer had begun: its status stays, with the bytes sent (as nginx logs it)
    wait_for(lambda: '"GET %s HTTP/1.1" 200 10 ' % target in srv.access_log, 10,
             "the access log line")
    log = srv.error_log
    assert "the client closed its connection during the answer" in log, log
    assert "answered with the connection cut" not in log, log


def test_pipelined_request_is_not_a_client_leaving(tracfront, upstream):
    """The next request's bytes arrive while the first waits, its socket
    watched (past 0.1 s): data, not a close."""
    up = upstream()
    srv = tracfront("--upstream", up.url)
    s = send(srv, "/slow?delay=2")
    wait_for(lambda: up.stats()["by_path"].get("/slow") == 1, 10, "the upstream got the request")
    time.sleep(0.5)  # the watch is armed by now (0.1 s waited, checked every 0.1 s)
    s.sendall(b"GET /status/204 HTTP/1.1\r\nHost: h\r\n\r\n")
    got = b""
    while got.count(b"HTTP/1.1 ") < 2 or not got.endswith(b"\r\n\r\n"):
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    s.close()
    first, second = got.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and first.endswith(b"\r\n\r\nslow\n"), got
    assert second.startswith(b"204 "), got
    assert up.stats()["gone"] == {}
    assert "client closed" not in srv.error_log


def test_connect_is_timed_by_the_connect_timeout_only(tracfront):
    """A connect that hangs (the upstream's accept queue is full: its SYNs
    are dropped) ends at --upstream-connect-timeout, not at the shorter
    --upstream-read-timeout, which counts from the connection on."""
    with hanging_port() as port:
        srv = tracfront("--upstream", "http://127.0.0.1:%d" % port,
                        "--upstream-connect-timeout", "2", "--upstream-read-timeout", "0.2")
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        c.request("GET", "/x")
        r = c.getresponse()
        assert r.status == 504, r.read()
    log = wait_for(lambda: "upstream" in srv.error_log and srv.error_log, 10, "the log line")
    assert "--upstream-connect-timeout" in log, log
    assert "--upstream-read-timeout" not in log, log
