"""What a systemd service gets (README "Running as a service"). Readiness
(Type=notify): with NOTIFY_SOCKET set, tracfront sends READY=1 once it
serves, RELOADING=1 and READY=1 around a --workers reload, STOPPING=1 when it
stops, each from the main process. Socket activation: the listening socket
a .socket unit passes (LISTEN_PID, LISTEN_FDS, fd 3) is served instead of
--listen. Neither variable reaches the app or the workers. The sockets here
are the test's own, passed as sd_notify(3) and sd_listen_fds(3) describe."""
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import APPS, BINARY, LISTEN_RE, start_server
from workers_util import children, wait_for


def receive(sock, timeout=30):
    """The next notification, as {field: value} (the last of a repeated one)."""
    sock.settimeout(timeout)
    data, creds = sock.recvmsg(4096, socket.CMSG_SPACE(12))[:2]
    fields = dict(line.split("=", 1) for line in data.decode().splitlines())
    return fields, creds


def sender_pid(creds):
    """The pid the kernel vouches for (SO_PASSCRED), as systemd checks it."""
    for level, kind, payload in creds:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return int.from_bytes(payload[:4], "little")
    raise AssertionError("no credentials: %r" % (creds,))


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path):
    """A datagram socket as systemd's, and the NOTIFY_SOCKET value naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    else:
        name = "@tf-notify-%d-%s" % (os.getpid(), tmp_path.name)
        sock.bind("\0" + name[1:])
    yield sock, name
    sock.close()


def test_ready_and_stopping_are_sent_by_the_server(tmp_path, notify_socket):
    sock, name = notify_socket
    srv = start_server(tmp_path / "srv", "--app", "loading_apps:app",
                       env={"NOTIFY_SOCKET": name})
    fields, creds = receive(sock)
    assert fields.get("READY") == "1", fields
    assert int(fields["MAINPID"]) == srv.proc.pid == sender_pid(creds), fields
    assert srv.url in fields.get("STATUS", ""), fields
    seen = requests.get(srv.url + "osenviron", timeout=10).json()
    assert "NOTIFY_SOCKET" not in seen, seen  # the app's own programs must not notify
    srv.proc.send_signal(signal.SIGTERM)
    fields, creds = receive(sock)
    assert fields.get("STOPPING") == "1", fields
    assert sender_pid(creds) == srv.proc.pid
    assert srv.proc.wait(timeout=20) == 0, srv.stderr  # the one signal
    assert "[error]" not in srv.error_log, srv.error_log


def test_a_front_says_ready_once_its_workers_serve_and_around_each_reload(tmp_path,
                                                                        notify_socket):
    sock, name = notify_socket
    srv = start_server(tmp_path / "srv", "--app", "loading_apps:app", "--workers", "2",
                       env={"NOTIFY_SOCKET": name})
    fields, creds = receive(sock)
    assert fields.get("READY") == "1" and sender_pid(creds) == srv.proc.pid, fields
    assert requests.get(srv.url, timeout=10).status_code == 200  # served when READY came
    seen = requests.get(srv.url + "osenviron", timeout=10).json()
    assert "NOTIFY_SOCKET" not in seen, seen  # a worker's app
    srv.proc.send_signal(signal.SIGHUP)
    fields, creds = receive(sock)
    assert fields.get("RELOADING") == "1" and sender_pid(creds) == srv.proc.pid, fields
    assert int(fields["MONOTONIC_USEC"]) > 0, fields  # Type=notify-reload needs it
    fields, creds = receive(sock)
    assert fields.get("READY") == "1" and sender_pid(creds) == srv.proc.pid, fields
    assert "new workers are serving" in srv.error_log, srv.error_log
    # a worker's crash restarts the workers: no reload for systemd, a STATUS=
    wait_for(lambda: len(children(srv.proc.pid)) == 2, 20, "the old workers gone")
    os.kill(next(iter(children(srv.proc.pid))), signal.SIGKILL)
    fields, creds = receive(sock)
    assert "STATUS" in fields and "RELOADING" not in fields and "READY" not in fields, fields
    srv.proc.send_signal(signal.SIGTERM)
    fields, creds = receive(sock)
    assert fields.get("STOPPING") == "1" and sender_pid(creds) == srv.proc.pid, fields
    assert srv.proc.wait(timeout=20) == 0, srv.stderr


def test_a_notify_socket_that_cannot_be_reached_is_logged_and_the_server_serves(tmp_path):
    srv = start_server(tmp_path / "srv", "--app", "loading_apps:app",
                       env={"NOTIFY_SOCKET": str(tmp_path / "nothing-here.sock")})
    assert requests.get(srv.url, timeout=10).status_code == 200
    assert srv.stop() == 0, srv.stderr
    lines = [l for l in srv.error_log.splitlines() if "NOTIFY_SOCKET" in l]
    assert len(lines) == 1 and "nothing-here.sock" in lines[0], srv.error_log
    assert "[warn]" in lines[0], lines


def start_activated(workdir, listener, *args, listen_pid="$$", listen_fds="1"):
    """tracfront with listener at fd 3, LISTEN_PID (by default its own pid:
    bash's, which exec keeps) and LISTEN_FDS, as systemd starts a service of a
    .socket unit. Returns (proc, the listening line's match or None)."""
    workdir.mkdir(parents=True, exist_ok=True)
    fd = listener.fileno()
    script = ('exec 3<&%d %d<&-; LISTEN_PID=%s LISTEN_FDS=%s exec "$@"'
              % (fd, fd, listen_pid, listen_fds))
    cmd = ["bash", "-c", script, "bash", str(BINARY), "--pythonpath", str(APPS),
           "--error-log", str(workdir / "error.log"), "--access-log", str(workdir / "access.log"),
           *args]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(workdir / "stderr.txt", "wb") as errf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=errf, pass_fds=(fd,), env=env, cwd=str(workdir))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = LISTEN_RE.search((workdir / "stderr.txt").read_text(errors="replace"))
        if m or proc.poll() is not None:
            return proc, m
        time.sleep(0.02)
    proc.kill()
    raise AssertionError((workdir / "stderr.txt").read_text())


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["single", "workers"])
def test_the_socket_systemd_passes_is_served_instead_of_listen(tmp_path, listener, workers):
    port = listener.getsockname()[1]
    proc, m = start_activated(tmp_path, listener, "--app", "loading_apps:app", *workers)
    try:
        assert m, (tmp_path / "stderr.txt").read_text()
        assert int(m.group(3)) == port  # the line names the socket's address, not --listen's
        listener.close()  # only tracfront's copy is left: it must be the one answering
        url = "http://127.0.0.1:%d/" % port
        for _ in range(4):
            assert requests.get(url, timeout=10).status_code == 200
        seen = requests.get(url + "osenviron", timeout=10).json()
        assert not {"LISTEN_PID", "LISTEN_FDS"} & set(seen), seen
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert "[error]" not in (tmp_path / "error.log").read_text()


def test_a_socket_for_another_process_is_not_taken(tmp_path, listener):
    """LISTEN_PID names another process (the variables leaked from a parent):
    tracfront binds --listen as usual and leaves descriptor 3 alone."""
    proc, m = start_activated(tmp_path, listener, "--app", "loading_apps:app",
                              "--listen", "127.0.0.1:0", listen_pid="1")
    try:
        assert m and int(m.group(3)) != listener.getsockname()[1]
        seen = requests.get(m.group(1) + "osenviron", timeout=10).json()
        assert "LISTEN_PID" not in seen, seen
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize("passed", ["two", "file", "not listening"])
def test_what_systemd_passes_that_cannot_be_served_stops_the_start(tmp_path, listener, passed):
    if passed == "file":
        listener = open(tmp_path / "plain", "w")
    elif passed == "not listening":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
    try:
        proc, m = start_activated(tmp_path / "srv", listener, "--app", "loading_apps:app",
                                  listen_fds="2" if passed == "two" else "1")
        assert m is None
        assert proc.wait(timeout=20) == 2
    finally:
        listener.close()
    said = (tmp_path / "srv" / "stderr.txt").read_text()
    assert "LISTEN_FDS" in said, said
    assert ("serves one" in said) == (passed == "two"), said
