"""--user and --group: started as root, tracfront binds its port as root,
then opens its logs, runs the app, its workers and what it writes (profile
files) as the user. Trac run as root made root-owned files (its log,
attachments) that the environment's owner could then not write."""
import os
import pathlib
import pwd
import socket
import subprocess
import tempfile

import pytest
import requests

from conftest import start_server
from test_lifecycle import run_cli

NOBODY = pwd.getpwnam("nobody")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY.pw_gid)
    os.setuid(NOBODY.pw_uid)


@pytest.fixture
def nobodys_folder():
    """A folder under /tmp that nobody owns (pytest's are root's alone)."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="tf-user-"))
    os.chown(folder, NOBODY.pw_uid, NOBODY.pw_gid)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=True)


def start_as(folder, for_nobody, *args, preexec_fn=None):
    """The server's folder (its logs) is nobody's: the logs are opened as the user."""
    (folder / "srv").mkdir(exist_ok=True)
    os.chown(folder / "srv", NOBODY.pw_uid, NOBODY.pw_gid)
    return start_server(folder / "srv", "--app", "identity_app:app", *args,
                        binary=for_nobody.binary, apps=for_nobody.apps, preexec_fn=preexec_fn)


def ids(pid):
    """The Uid and Gid lines of /proc/PID/status: real, effective, saved, fs."""
    lines = pathlib.Path("/proc/%d/status" % pid).read_text().splitlines()
    return {l.split()[0]: l.split()[1:] for l in lines if l.startswith(("Uid:", "Gid:"))}


def nobodys_ids():
    return {"Uid:": [str(NOBODY.pw_uid)] * 4, "Gid:": [str(NOBODY.pw_gid)] * 4}


def test_the_app_runs_as_the_user_with_its_groups(nobodys_folder, for_nobody):
    srv = start_as(nobodys_folder, for_nobody, "--user", "nobody")
    try:
        seen = requests.get(srv.url, timeout=10).json()
        assert (seen["uid"], seen["euid"]) == (NOBODY.pw_uid,) * 2, seen
        assert (seen["gid"], seen["egid"]) == (NOBODY.pw_gid,) * 2, seen
        assert seen["groups"] == sorted(os.getgrouplist("nobody", NOBODY.pw_gid)), seen
        assert ids(srv.proc.pid) == nobodys_ids()
    finally:
        assert srv.stop() == 0, srv.stderr
    assert "running as root" not in srv.stderr + srv.error_log  # it does not: no warning


def free_low_port():
    for port in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 900-999")


def test_a_port_below_1024_is_bound_before_the_switch(nobodys_folder, for_nobody):
    port = free_low_port()
    srv = start_as(nobodys_folder, for_nobody, "--user", "nobody", "--listen",
                   "127.0.0.1:%d" % port)
    try:
        assert srv.port == port
        assert requests.get(srv.url, timeout=10).json()["uid"] == NOBODY.pw_uid
    finally:
        assert srv.stop() == 0, srv.stderr


def children(pid):
    return [int(p) for p in pathlib.Path("/proc/%d/task/%d/children" % (pid, pid)).read_text()
            .split()]


def test_the_front_and_its_workers_run_as_the_user(nobodys_folder, for_nobody):
    """The logs are made by nobody, after the switch: its workers open them too."""
    srv = start_as(nobodys_folder, for_nobody, "--user", "nobody", "--workers", "2")
    try:
        pids = {requests.get(srv.url, timeout=10).json()["pid"] for _ in range(50)}
        workers = children(srv.proc.pid)
        assert len(workers) == 2 and pids <= set(workers), (workers, pids)
        for pid in [srv.proc.pid] + workers:
            assert ids(pid) == nobodys_ids(), pid
        assert (srv.workdir / "error.log").stat().st_uid == NOBODY.pw_uid
    finally:
        assert srv.stop() == 0, srv.stderr


def test_a_profile_file_written_at_stop_is_the_users(nobodys_folder, for_nobody):
    log = nobodys_folder / "p.pstats"
    srv = start_as(nobodys_folder, for_nobody, "--user", "nobody", "--profile",
                   "--profile-discard-first", "false", "--profile-log", log)
    assert requests.get(srv.url, timeout=10).status_code == 200
    assert srv.stop() == 0, srv.stderr
    assert (log.stat().st_uid, log.stat().st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)


def test_a_profile_file_the_user_cannot_write_is_refused_at_start(tmp_path, for_nobody):
    """root could write into pytest's folder (root's, mode 0700); nobody,
    who writes the file at the stop, cannot: said at start, not lost then."""
    rc, out, err = run_cli(tmp_path, "--listen", "127.0.0.1:0", "--pythonpath",
                           for_nobody.apps, "--app", "identity_app:app", "--user", "nobody",
                           "--profile-log", tmp_path / "p.pstats", timeout=10)
    assert rc == 2 and "--profile-log" in err and "Permission denied" in err, (rc, err)


def test_a_link_the_user_puts_where_a_log_goes_reaches_nothing_of_roots(nobodys_folder):
    """The logs were opened as root, then given to the user: a link the user
    put in its log folder pointing at a root-only file had root append to
    it and give it away (nginx's CVE-2016-1247). They are opened as the user."""
    secret = nobodys_folder / "root-only"
    secret.write_text("secret\n")
    secret.chmod(0o600)
    logs = nobodys_folder / "logs"
    logs.mkdir()
    os.chown(logs, NOBODY.pw_uid, NOBODY.pw_gid)
    os.symlink(secret, logs / "error.log")
    os.lchown(logs / "error.log", NOBODY.pw_uid, NOBODY.pw_gid)
    rc, out, err = run_cli(nobodys_folder, "--listen", "127.0.0.1:0", "--upstream",
                           "http://127.0.0.1:9", "--user", "nobody", "--error-log",
                           logs / "error.log", timeout=10)
    assert rc == 2 and "--error-log" in err and "Permission denied" in err, (rc, err)
    st = secret.stat()
    assert (st.st_uid, st.st_mode & 0o777, secret.read_text()) == (0, 0o600, "secret\n")


@pytest.mark.parametrize("what", ["basic-auth", "config"])
def test_a_file_the_user_cannot_read_is_refused_at_start(nobodys_folder, for_nobody, what):
    """Checked as root at start, used as the user later (the auth file when
    the server starts, the --config file by each worker): exit status 1 and
    a worker that never started. Checked as the user: a bad setting, 2."""
    private = nobodys_folder / "private"
    private.write_text("alice:{SHA}x\n" if what == "basic-auth" else "workers = 2\n")
    private.chmod(0o600)
    args = (["--basic-auth", "*,%s,Realm" % private] if what == "basic-auth"
            else ["--config", private])
    rc, out, err = run_cli(nobodys_folder, "--listen", "127.0.0.1:0", "--pythonpath",
                           for_nobody.apps, "--app", "identity_app:app", "--user", "nobody",
                           "--error-log", "-", *args, timeout=15)
    assert rc == 2 and "Permission denied" in err, (rc, err)
    assert ("--" + what) in err and "nobody" in err, err  # which file, and as whom


@pytest.mark.parametrize("args, says", [
    (["--user", "nosuchuser"], "--user: no user 'nosuchuser'"),
    (["--user", "nobody", "--group", "nosuchgroup"], "--group: no group 'nosuchgroup'"),
    (["--group", "nogroup"], "--group: only with --user"),
    (["--user", "root"], "--user: 'root' is root"),
])
def test_a_bad_user_or_group_is_refused(tmp_path, args, says):
    rc, out, err = run_cli(tmp_path, "--listen", "127.0.0.1:0", "--upstream",
                           "http://127.0.0.1:9", *args, timeout=10)
    assert rc == 2 and says in err, (rc, err)


def test_a_numeric_user_and_group_are_taken(nobodys_folder, for_nobody):
    srv = start_as(nobodys_folder, for_nobody, "--user", str(NOBODY.pw_uid), "--group",
                   str(NOBODY.pw_gid))
    try:
        seen = requests.get(srv.url, timeout=10).json()
        assert (seen["uid"], seen["gid"]) == (NOBODY.pw_uid, NOBODY.pw_gid), seen
    finally:
        assert srv.stop() == 0, srv.stderr


def test_not_root_the_user_it_runs_as_is_accepted(nobodys_folder, for_nobody):
    """As gunicorn: --user naming the user it already runs as changes nothing."""
    (nobodys_folder / "srv").mkdir()
    os.chown(nobodys_folder / "srv", NOBODY.pw_uid, NOBODY.pw_gid)
    srv = start_as(nobodys_folder, for_nobody, "--user", "nobody", preexec_fn=as_nobody)
    try:
        assert requests.get(srv.url, timeout=10).json()["uid"] == NOBODY.pw_uid
    finally:
        assert srv.stop() == 0, srv.stderr


def test_not_root_another_user_is_refused(nobodys_folder, for_nobody):
    proc = subprocess.run([str(for_nobody.binary), "--listen", "127.0.0.1:0", "--upstream",
                           "http://127.0.0.1:9", "--user", "daemon"],
                          cwd=str(nobodys_folder), preexec_fn=as_nobody,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2, proc.stderr
    assert "--user daemon needs root" in proc.stderr, proc.stderr
