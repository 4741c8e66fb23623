"""The reverse proxy when its upstream cannot be reached: an upstream whose
connect hangs is timed by --upstream-connect-timeout, never by
--upstream-read-timeout."""
import http.client

from conftest import hanging_port
from workers_util import wait_for


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
