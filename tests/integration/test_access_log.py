"""--access-log: one line per request in Apache Combined Log Format followed by
the response time in microseconds, with quotes and non-printable bytes in the
logged fields escaped so a client cannot forge a line. Logging is off unless
the flag is given, and `-` sends it to stderr (as the README documents).
"""
import calendar
import os
import re
import signal
import subprocess
import time

import pytest
import requests

from conftest import APPS, BINARY, LISTEN_RE
from workers_util import wait_for

APP = ("--app", "gap_apps:app")
FIELD = r'"((?:[^"\\]|\\.)*)"'   # a quoted field, with backslash escapes
LINE_RE = re.compile(
    r'^(\S+) (\S+) (\S+) \[([^\]]+)\] ' + FIELD + r' (\d{3}) (\d+|-) ' + FIELD + ' '
    + FIELD + r' (\d+)$')


def parse(line):
    m = LINE_RE.match(line)
    assert m, "not a Combined Log Format + duration line: %r" % line
    host, ident, user, stamp, request, status, size, referer, agent, usec = m.groups()
    return {"host": host, "ident": ident, "user": user, "stamp": stamp,
            "request": request, "status": int(status), "size": size,
            "referer": referer, "agent": agent, "usec": int(usec)}


def wait_lines(srv, n, timeout=10):
    """The first n access-log lines, once they have all been written."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            lines = srv.access_log.splitlines()
        except FileNotFoundError:
            lines = []
        if len(lines) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) >= n, "expected %d access-log lines, got:\n%s" % (n, "\n".join(lines))
    return lines


def test_combined_format_fields(tracfront):
    srv = tracfront(*APP)
    r = requests.get(srv.url + "list?q=1&x=%20y", timeout=10,
                     headers={"Referer": "http://ref/", "User-Agent": "agent/1.0"})
    assert r.status_code == 200
    (line,) = wait_lines(srv, 1)
    f = parse(line)
    assert (f["host"], f["ident"], f["user"]) == ("127.0.0.1", "-", "-")
    assert f["request"] == "GET /list?q=1&x=%20y HTTP/1.1"
    assert (f["status"], f["size"]) == (200, str(len(r.content)))
    assert (f["referer"], f["agent"]) == ("http://ref/", "agent/1.0")
    assert 0 <= f["usec"] < 60_000_000
    stamp = time.strptime(f["stamp"], "%d/%b/%Y:%H:%M:%S %z")
    logged = calendar.timegm(stamp) - stamp.tm_gmtoff
    assert abs(logged - time.time()) < 3600, "timestamp %r is not now" % f["stamp"]


def test_missing_headers_logged_as_dash_and_one_line_per_request(tracfront):
    srv = tracfront(*APP)
    srv.raw(b"GET /list HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /gen HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\nhello")
    lines = [parse(l) for l in wait_lines(srv, 3)]
    assert [f["request"] for f in lines] == [
        "GET /list HTTP/1.1", "GET /gen HTTP/1.1", "POST /post HTTP/1.1"]
    assert all((f["referer"], f["agent"]) == ("-", "-") for f in lines), lines
    assert [f["size"] for f in lines] == ["100", "30", "5"]


def test_error_responses_log_status_and_size(tracfront):
    srv = tracfront(*APP)
    missing = requests.get(srv.url + "no-such-route", timeout=10)
    failed = requests.get(srv.url + "error", timeout=10)
    assert (missing.status_code, failed.status_code) == (404, 500)
    # lines come in completion order, which need not be the order sent
    by_path = {e["request"].split()[1]: e for e in (parse(l) for l in wait_lines(srv, 2))}
    a, b = by_path["/no-such-route"], by_path["/error"]
    assert (a["status"], a["size"]) == (404, str(len(missing.content)))
    # The server's own 500 page has a body too; %b must count it.
    assert (b["status"], b["size"]) == (500, str(len(failed.content))), b


def test_user_agent_cannot_forge_a_line(tracfront):
    srv = tracfront(*APP)
    evil = b'x" 200 1 "-" "y\tz\x80\xff\\'
    srv.raw(b"GET /list HTTP/1.1\r\nHost: x\r\nUser-Agent: " + evil +
            b"\r\nReferer: http://r/\"q\r\nConnection: close\r\n\r\n")
    (line,) = wait_lines(srv, 1)
    f = parse(line)
    assert (f["request"], f["status"], f["size"]) == ("GET /list HTTP/1.1", 200, "100")
    assert f["referer"] == 'http://r/\\"q'
    assert f["agent"] in ('x\\" 200 1 \\"-\\" \\"y\\x09z\\x80\\xff\\\\',
                          'x\\" 200 1 \\"-\\" \\"y\\tz\\x80\\xff\\\\'), f["agent"]
    assert all(0x20 <= ord(c) < 0x7f for c in line), "raw control/8-bit byte in %r" % line


def _serve_without_harness(tmp_path, *extra):
    """Start tracfront directly (the harness always passes --access-log)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([str(BINARY), "--listen", "127.0.0.1:0", "--pythonpath",
                                 str(APPS), *APP, *extra], cwd=str(tmp_path), env=env,
                                stdin=subprocess.DEVNULL, stdout=o, stderr=e)
    try:
        deadline = time.monotonic() + 30
        while not (m := LISTEN_RE.search(err.read_text(errors="replace"))):
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.02)
        r = requests.get(m.group(1) + "list?probe=1", timeout=10)
        assert r.status_code == 200
    finally:
        proc.terminate()
        rc = proc.wait(20)
    assert rc == 0, err.read_text()
    return out.read_text(errors="replace"), err.read_text(errors="replace")


def test_access_log_off_by_default(tmp_path):
    out, err = _serve_without_harness(tmp_path)
    assert "probe=1" not in out + err, "a request was logged without --access-log"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stderr.txt", "stdout.txt"]


def test_access_log_dash_is_stderr(tmp_path):
    out, err = _serve_without_harness(tmp_path, "--access-log", "-")
    lines = [l for l in err.splitlines() if "probe=1" in l]
    assert len(lines) == 1, err
    assert parse(lines[0])["request"] == "GET /list?probe=1 HTTP/1.1"
    assert "probe=1" not in out


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "workers"])
def test_sigusr1_reopens_the_logs_after_a_rotation(tracfront, workers):
    # logrotate's way (as for nginx): move the files away, then SIGUSR1
    srv = tracfront("--app", "worker_app:app", "--workers", workers)
    assert requests.get(srv.url + "pid?before", timeout=10).status_code == 200
    wait_for(lambda: "/pid?before" in srv.access_log, 10, "the first access-log line")
    log_dir = srv.workdir
    for name in ("access.log", "error.log"):
        os.rename(log_dir / name, log_dir / (name + ".1"))
    srv.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: (log_dir / "error.log").exists() and (log_dir / "access.log").exists(), 10,
             "the logs opened again under their names")
    wait_for(lambda: "SIGUSR1: log files reopened" in srv.error_log, 10, "the reopen line")
    # every process writes to the new files: requests until each worker ran some
    pids, i = set(), 0
    while len(pids) < max(workers, 1) or i < 5:
        assert i < 200, "the requests never reached every worker: %s" % pids
        assert requests.get(srv.url + "pid?after%d" % i, timeout=10).status_code == 200
        r = requests.get(srv.url + "log", params={"msg": "after%d" % i}, timeout=10)
        pids.add(r.json()["pid"])
        i += 1
    last = i - 1
    wait_for(lambda: "/pid?after%d" % last in srv.access_log and
             "says after%d" % last in srv.error_log, 10, "the lines after the rotation")
    for pid in pids if workers else ():  # each worker reopened its own, into the new file
        assert "[worker %d] SIGUSR1: log files reopened" % pid in srv.error_log, srv.error_log
    old_access = (log_dir / "access.log.1").read_text()
    old_error = (log_dir / "error.log.1").read_text()
    assert "/pid?before" in old_access and "after" not in old_access, old_access
    assert "says after" not in old_error, old_error[-2000:]
    assert "/pid?before" not in srv.access_log
    assert srv.proc.poll() is None, srv.stderr[-2000:]
