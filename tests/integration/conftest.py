"""Harness for integration tests: start the real build/tracfront on port 0 and
talk to it over real HTTP on loopback.

The contract with the binary: it prints one line to stderr containing
`listening on http://HOST:PORT/` once it accepts connections; --error-log and
--access-log send the logs to the files the test names.
"""
import contextlib
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"
BINARY = pathlib.Path(os.environ.get("TRACFRONT_BIN", ROOT / "build" / "tracfront"))
LISTEN_RE = re.compile(r"listening on (http://([0-9.]+):(\d+)/)")

# A Trac checkout in the git-ignored third_party_local/trac (README "Trying
# real Trac") is on PYTHONPATH for the real-Trac tests without being asked.
_TRAC_LOCAL = ROOT / "third_party_local" / "trac"
if (_TRAC_LOCAL / "trac" / "web" / "main.py").exists() and \
        str(_TRAC_LOCAL) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_TRAC_LOCAL), os.environ.get("PYTHONPATH")) if p)


# What the app writes (print, sys.stderr, wsgi.errors, tracebacks) is stamped in the
# error log "[date] [app] " ("[worker PID] " after it in a worker).
APP_STAMP_RE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[app\] (?:\[worker \d+\] )?")


def app_lines(log):
    """The lines of an error log's text, the app's with their stamp taken
    off (what the app wrote), tracfront's own as they are."""
    return [APP_STAMP_RE.sub("", line, count=1) for line in log.splitlines()]


class Server:
    def __init__(self, proc, url, port, workdir):
        self.proc = proc
        self.url = url
        self.port = port
        self.workdir = workdir

    @property
    def stderr(self):
        return (self.workdir / "stderr.txt").read_text(errors="replace")

    @property
    def error_log(self):
        return (self.workdir / "error.log").read_text(errors="replace")

    @property
    def access_log(self):
        return (self.workdir / "access.log").read_text(errors="replace")

    def connect(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return s

    def raw(self, data, timeout=10):
        """Send raw bytes, return everything the server answers until it closes
        or stays silent for `timeout` seconds."""
        s = self.connect(timeout)
        try:
            s.sendall(data)
            chunks = []
            while True:
                try:
                    b = s.recv(65536)
                except socket.timeout:
                    break
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks)
        finally:
            s.close()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def free_port():
    """A loopback port free now (bound, then released), to listen on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_RESERVED = []  # closed_port()'s sockets: bound for the session, never listening


def closed_port():
    """A loopback port nothing listens on: bound and kept so, not listening
    (a connect is refused), so that no server of the session is given it
    (one released again went to a tracfront's --listen 127.0.0.1:0 once, and
    its copies to that 'dead' upstream went to itself)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _RESERVED.append(s)
    return s.getsockname()[1]


@contextlib.contextmanager
def hanging_port():
    """A loopback port whose connects hang: it listens with a backlog of 0,
    and its accept queue is filled, so further SYNs are dropped."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fill = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fill.append(s)
    try:
        yield port
    finally:
        for s in fill + [lsock]:
            s.close()


def refused(port):
    """True if a new connection to port is refused (nothing listens). A
    connection the kernel had queued when the last copy of the socket closed
    is reset: that one is tried again."""
    for _ in range(10):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=3)
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            time.sleep(0.05)
            continue
        s.close()
        return False
    return False


def fake_trac(tmp_path):
    """A package named trac whose dispatch_request is tests/apps/auth_app.py's
    application (it answers JSON with the path and REMOTE_USER): what
    --trac-env and --trac-env-parent-dir do, without needing Trac itself.
    Returns the folder to give --pythonpath."""
    web = tmp_path / "fake" / "trac" / "web"
    web.mkdir(parents=True)
    (web.parent / "__init__.py").write_text("")
    (web / "__init__.py").write_text("")
    (web / "main.py").write_text("from auth_app import application as dispatch_request\n")
    return web.parent.parent


def start_server(workdir, *args, env=None, expect_fail=False, timeout=30, preexec_fn=None,
                 binary=None, apps=None):
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary or BINARY), "--listen", "127.0.0.1:0", "--pythonpath", str(apps or APPS),
           "--error-log", str(workdir / "error.log"),
           "--access-log", str(workdir / "access.log")] + [str(a) for a in args]
    full_env = dict(os.environ)
    full_env.pop("PYTHONPATH", None) if env is None else None
    if env:
        full_env.update(env)
    errf = open(workdir / "stderr.txt", "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf,
                            stdin=subprocess.DEVNULL, env=full_env, cwd=str(workdir),
                            preexec_fn=preexec_fn)
    errf.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = (workdir / "stderr.txt").read_text(errors="replace")
        m = LISTEN_RE.search(text)
        if m:
            return Server(proc, m.group(1), int(m.group(3)), workdir)
        if proc.poll() is not None:
            if expect_fail:
                srv = Server(proc, None, None, workdir)
                srv.expect_fail = True
                return srv
            raise AssertionError("tracfront exited with %s:\n%s" % (proc.returncode, text))
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("tracfront did not start:\n%s" % (workdir / "stderr.txt").read_text())


@pytest.fixture(scope="session")
def for_nobody():
    """Copies of the binary and of tests/apps that the `nobody` user can
    reach, for the tests that run tracfront as nobody: a checkout under
    /root (mode 0700, as root's home is) is out of its reach."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="tf-nobody-"))
    folder.chmod(0o755)
    binary, apps = folder / "tracfront", folder / "apps"
    shutil.copy2(BINARY, binary)
    shutil.copytree(APPS, apps, ignore=shutil.ignore_patterns("__pycache__"))
    yield types.SimpleNamespace(binary=binary, apps=apps)
    shutil.rmtree(folder)


@pytest.fixture
def tracfront(tmp_path):
    """Factory: tracfront(*args) starts a server; all are stopped at teardown."""
    started = []
    counter = [0]

    def factory(*args, **kw):
        counter[0] += 1
        srv = start_server(tmp_path / ("srv%d" % counter[0]), *args, **kw)
        started.append(srv)
        return srv

    yield factory
    for srv in started:  # every one stopped before any is judged
        srv.stop()
    for srv in started:
        # A crash is never acceptable, whatever the test did to the server.
        assert srv.proc.returncode in (0, None, -signal.SIGTERM, -signal.SIGKILL) or \
            getattr(srv, "expect_fail", False), \
            "tracfront exited with %s:\n%s" % (srv.proc.returncode, srv.stderr[-4000:])


# --- upstream: the test HTTP/1.1 server of tests/apps/upstream_server.py, for the proxy tests.
class Upstream:
    def __init__(self, proc, url, port):
        self.proc, self.url, self.port = proc, url, port

    def get_json(self, path):
        import http.client
        import json
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stats(self):
        return self.get_json("/__stats")

    def reset(self):
        return self.get_json("/__reset")


@pytest.fixture
def upstream():
    """Factory: up = upstream() starts tests/apps/upstream_server.py; `up.url`,
    `up.port`, `up.stats()`, `up.reset()`; all are stopped at teardown."""
    started = []

    def factory():
        proc = subprocess.Popen(["/usr/bin/python3", str(APPS / "upstream_server.py"), "--port", "0"],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:(\d+)/)", line)
        if not m:
            proc.kill()
            raise AssertionError("upstream did not start: %r" % line)
        up = Upstream(proc, m.group(1), int(m.group(2)))
        started.append(up)
        return up

    yield factory
    for up in started:
        up.proc.terminate()
        try:
            up.proc.wait(10)
        except subprocess.TimeoutExpired:
            up.proc.kill()
            up.proc.wait()
