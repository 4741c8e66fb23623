"""systemd's readiness protocol (README "Running as a service", Type=notify):
with NOTIFY_SOCKET set, tracfront sends READY=1 once it serves, RELOADING=1
and READY=1 around a --workers reload, STOPPING=1 when it stops, each from
the main process; the variable is not passed on to the app or the workers.
The socket here is the test's own, as sd_notify(3) describes it."""
import os
import signal
import socket

import pytest
import requests

from conftest import start_server


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
    fields, creds = receive(sock)
    assert fields.get("READY") == "1" and sender_pid(creds) == srv.proc.pid, fields
    assert "new workers are serving" in srv.error_log, srv.error_log
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
