"""--access-log: one line per request in Apache Combined Log Format followed by
the response time in microseconds, with quotes and non-printable bytes in the
logged fields escaped so a client cannot forge a line. Logging is off unless
the flag is given, and `-` sends it to stderr (as the README documents).
"""
import calendar
import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest
import requests

from conftest import APPS, BINARY, LISTEN_RE, closed_port
from workers_util import children, wait_for

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


@pytest.mark.parametrize("query, logged", [
    (b"\x9b31mX\xc2\x9b2J", b"\\x9b31mX\\xc2\\x9b2J"),  # bytes a terminal reads as controls
    (b'\\x9b"', b'\\\\x9b\\"'),                       # text that would pass for an escape
], ids=["8-bit", "backslash-and-quote"])
@pytest.mark.parametrize("path, needle", [
    ("/error", b"RuntimeError: deliberate failure"),   # the app raised: its traceback's line
    ("/up/x", b"Couldn't connect"),                     # the upstream refused: 502
], ids=["app-raised", "upstream-refused"])
def test_error_log_lines_escape_the_target(tracfront, path, needle, query, logged):
    """Bytes >= 0x80 pass the target check (UTF-8, and C1 controls such as
    0x9b, a terminal's CSI), and so do a quote and a backslash: an error-log
    line naming the request shows them escaped, as the access log does,
    whichever line it is (the text \\x9b as \\\\x9b, not as an escaped byte)."""
    srv = tracfront(*APP, "--upstream", "http://127.0.0.1:%d" % closed_port(),
                    "--route", "/up=upstream")
    target = path.encode() + b"?" + query
    answer = srv.raw(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert answer.split(b" ", 2)[1] in (b"500", b"502"), answer[:200]
    deadline = time.time() + 10
    while needle not in (srv.workdir / "error.log").read_bytes() and time.time() < deadline:
        time.sleep(0.05)
    log = (srv.workdir / "error.log").read_bytes()
    assert needle in log, log
    assert b"\x9b" not in log, log
    assert b"GET " + path.encode() + b"?" + logged + b":" in log, log


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


@pytest.mark.parametrize("logs, said", [
    ((), "SIGUSR1: log files reopened (--error-log and --access-log)"),
    (("--access-log", "off"), "SIGUSR1: log file reopened (--error-log; --access-log is off)"),
    (("--error-log", "-"), "SIGUSR1: log file reopened (--access-log; --error-log is stderr)"),
    (("--error-log", "-", "--access-log", "-"),
     "SIGUSR1: no log file to reopen (--error-log is stderr, --access-log is stderr)"),
    (("--error-log", "off", "--access-log", "off"), None),
])
def test_sigusr1_says_which_logs_it_reopened(tracfront, logs, said):
    """It said "log files reopened" also when both logs were stderr or off."""
    srv = tracfront(*APP, *logs)
    srv.proc.send_signal(signal.SIGUSR1)
    if said is None:  # nowhere to say it: it still answers
        assert requests.get(srv.url + "list", timeout=10).status_code == 200
        return
    where = (lambda: srv.stderr) if "--error-log" in logs else (lambda: srv.error_log)
    wait_for(lambda: "SIGUSR1" in where(), 10, "the SIGUSR1 line")
    assert said in where(), where()


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
    # the front, then each worker it passes the signal on to
    wait_for(lambda: srv.error_log.count("SIGUSR1: log files reopened") >= 1 + workers, 10,
             "the reopen line of every process")
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


def test_workers_log_client_requests_only(tracfront):
    # A front talks to its workers over HTTP on loopback control ports (the
    # files --reload watches, profile pages, a reload's quiesce and hand-over):
    # none of that is a client's request, and none of it is logged.
    srv = tracfront("--app", "worker_app:app", "--reload", "--workers", 2)
    sent = ["/pid?first", "/__profile__/metrics", "/__profile__", "/__profile__/api/latency"]
    for target in sent:
        assert requests.get(srv.url + target.lstrip("/"), timeout=30).status_code == 200, target
    before = children(srv.proc.pid)
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload: new workers are serving" in srv.error_log, 30, "the reload")
    wait_for(lambda: not set(children(srv.proc.pid)) & set(before), 20, "the old workers to exit")
    time.sleep(1.5)  # at least one more check of the app's files (once a second)
    sent.append("/pid?last")
    assert requests.get(srv.url + "pid?last", timeout=10).status_code == 200
    wait_for(lambda: "/pid?last" in srv.access_log, 10, "the last client request's line")
    logged = [parse(line)["request"].split(" ")[1] for line in srv.access_log.splitlines()]
    assert sorted(logged) == sorted(sent), logged


# --- what a comparison with Apache's mod_log_config and nginx found --------------

LOCALE_APP = """
import locale

def application(environ, start_response):
    # Trac's dispatch_request does this on every request (trac.locale: '')
    locale.setlocale(locale.LC_ALL, "")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [locale.setlocale(locale.LC_TIME).encode()]
"""


def test_month_is_english_whatever_the_apps_locale(tracfront, tmp_path):
    """strftime's %b followed the locale the app set (Trac sets the
    system's on each request): `25/nov./2026` broke every log parser."""
    locales = tmp_path / "locales"
    locales.mkdir()
    made = subprocess.run(["localedef", "-i", "fr_FR", "-f", "UTF-8",
                           str(locales / "fr_FR.UTF-8")], capture_output=True)
    if not (locales / "fr_FR.UTF-8").exists():
        pytest.skip("localedef cannot build fr_FR here (apt-get install locales): %r"
                    % made.stderr[-300:])
    (tmp_path / "locale_app.py").write_text(LOCALE_APP)
    srv = tracfront("--app", "locale_app:application", "--pythonpath", tmp_path,
                    env={"LOCPATH": str(locales), "LC_ALL": "fr_FR.UTF-8"})
    r = requests.get(srv.url + "x", timeout=10)
    assert r.text == "fr_FR.UTF-8", "the app did not switch locale: %r" % r.text
    (line,) = wait_lines(srv, 1)
    stamp = parse(line)["stamp"]
    assert re.match(r"\d\d/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:", stamp), stamp


def test_long_target_keeps_the_other_fields(tracfront):
    """A target whose escaped form fills the line buffer used to cut the
    line there: version, Referer and User-Agent came out empty."""
    srv = tracfront(*APP)
    target = "/list?" + "%22x" * 1500 + '"' * 1500  # 6000 bytes, ~9000 escaped
    srv.raw(b'GET ' + target.encode() + b' HTTP/1.1\r\nHost: x\r\nUser-Agent: UA\r\n'
            b'Referer: http://r/\r\nConnection: close\r\n\r\n')
    (line,) = wait_lines(srv, 1)
    f = parse(line)
    assert f["request"] == "GET " + target.replace('"', '\\"') + " HTTP/1.1"
    assert (f["status"], f["referer"], f["agent"]) == (200, "http://r/", "UA")


def test_absolute_form_target_is_logged_as_sent(tracfront):
    srv = tracfront(*APP)
    srv.raw(b"GET http://other.example/list?x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    (line,) = wait_lines(srv, 1)
    f = parse(line)
    assert (f["request"], f["status"]) == ("GET http://other.example/list?x HTTP/1.1", 200)


def test_request_refused_by_the_http_layer_logs_its_client_and_status(tracfront):
    """An oversized header block gets libmicrohttpd's 431: the line had no
    address and said 400."""
    srv = tracfront(*APP)
    with srv.connect() as s:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 60000 + b"\r\n\r\n")
        answer = s.recv(100)
    assert answer.startswith(b"HTTP/1.1 431"), answer
    (line,) = wait_lines(srv, 1)
    f = parse(line)
    assert (f["host"], f["status"]) == ("127.0.0.1", 431), line
    assert f["request"].split()[1] == "/big", line


def test_body_that_never_comes_is_logged_408(tracfront):
    """As Apache: a request whose body stops until --idle-timeout is 408."""
    srv = tracfront(*APP, "--idle-timeout", "1")
    with srv.connect() as s:
        s.sendall(b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        s.settimeout(15)
        try:
            while s.recv(1000):
                pass
        except (ConnectionResetError, TimeoutError):
            pass
    (line,) = wait_lines(srv, 1, timeout=15)
    f = parse(line)
    assert (f["host"], f["request"], f["status"]) == ("127.0.0.1", "POST /post HTTP/1.1", 408)


def test_client_leaving_mid_request_is_not_an_error(tracfront):
    """nginx logs a client that closes with an unfinished request at info;
    libmicrohttpd's line about it was an [error]. The request is logged 400,
    with its client, as nginx does, once its request line was read (when
    libmicrohttpd reads the end of the stream before it has looked at the
    line, it drops the connection without a word: nothing to log then)."""
    srv = tracfront(*APP)
    with srv.connect() as s:
        s.sendall(b"GET /half HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)  # lets the request line be read first (not a timing assertion)
        s.sendall(b"X-Half")
    deadline = time.monotonic() + 5
    while not srv.access_log and time.monotonic() < deadline:
        time.sleep(0.05)
    for line in srv.access_log.splitlines():  # written after libmicrohttpd's own line
        f = parse(line)
        assert (f["host"], f["status"]) == ("127.0.0.1", 400), line
        assert f["request"].split()[1] == "/half", line
    http_lines = [l for l in srv.error_log.splitlines() if "] http: " in l]
    assert all("[info]" in l for l in http_lines), http_lines


def test_client_resetting_mid_answer_is_not_an_error(tracfront, tmp_path):
    """A browser that stops a download resets the connection: libmicrohttpd's
    line about the failed send ("no longer available for sending", "forcibly
    closed by remote peer") was an [error]; nginx says it at info. Whether a
    send fails before the reset is seen depends on timing: reset until
    libmicrohttpd has said something."""
    # the name has a newline: libmicrohttpd quotes the decoded URL in its line,
    # which must not become a line of its own (a forged "[error]")
    (tmp_path / "big\n[error] forged.bin").write_bytes(b"b" * 5000000)
    srv = tracfront(*APP, "--static", "/s=%s" % tmp_path)
    for _ in range(50):
        with srv.connect() as s:
            s.sendall(b"GET /s/big%0a%5berror%5d%20forged.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        time.sleep(0.2)  # libmicrohttpd's line, if any (not a timing assertion)
        if "] http: " in srv.error_log:
            break
    http_lines = [l for l in srv.error_log.splitlines() if "] http: " in l]
    assert http_lines, "libmicrohttpd said nothing about 50 failed sends"
    assert all("[info]" in l for l in http_lines), http_lines
    assert "\\x0a[error] forged.bin" in srv.error_log
    assert not [l for l in srv.error_log.splitlines() if l.startswith("[error] forged")]
    assert requests.get(srv.url + "list", timeout=10).status_code == 200


def test_access_log_that_cannot_be_written_is_reported(tracfront):
    """/dev/full: every write fails with ENOSPC, as on a full disk. Apache
    and nginx say so in the error log; tracfront lost the lines silently."""
    srv = tracfront(*APP, "--access-log", "/dev/full")
    for i in range(3):
        assert requests.get(srv.url + "list?n=%d" % i, timeout=10).status_code == 200
    wait_for(lambda: "--access-log" in srv.error_log, 10, "a line about the lost access lines")
    assert "No space left on device" in srv.error_log
    lines = [l for l in srv.error_log.splitlines() if "--access-log" in l]
    assert len(lines) == 1, "reported once while it lasts, not per request: %s" % lines


def test_failed_reopen_is_not_reported_as_done(tracfront, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    srv = tracfront(*APP, "--access-log", logs / "access.log")
    assert requests.get(srv.url + "list", timeout=10).status_code == 200
    wait_for(lambda: (logs / "access.log").exists(), 10, "the access log")
    (logs / "access.log").unlink()
    logs.rmdir()  # nowhere to open it again
    srv.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "cannot reopen" in srv.error_log, 10, "the failed reopen")
    assert requests.get(srv.url + "list", timeout=10).status_code == 200
    assert "log files reopened" not in srv.error_log, srv.error_log
