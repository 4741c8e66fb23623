"""What a sysadmin running tracfront as a service sees: a warning when it runs
as root, the start in the error log, and a saved profile file that keeps the
mode and owner of the one it replaces (README "Running as a service")."""
import os
import pathlib
import shutil
import stat
import tempfile

import pytest
import requests

from conftest import start_server

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to run as root, "
                                "or to switch to nobody)")
ROOT_WARNING = "running as root"


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.fixture
def nobodys_folder():
    """A folder under /tmp that nobody owns (pytest's are root's alone)."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="tf-service-"))
    folder.chmod(0o755)
    os.chown(folder, NOBODY, NOBODY)
    yield folder
    shutil.rmtree(folder)


@needs_root
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["single", "workers"])
def test_running_as_root_is_warned_once_naming_the_fix(tmp_path, workers):
    srv = start_server(tmp_path, "--app", "hello:application", *workers)
    assert srv.stop() == 0, srv.stderr
    for text in (srv.stderr, srv.error_log):
        lines = [l for l in text.splitlines() if ROOT_WARNING in l]
        assert len(lines) == 1, text  # the front's, not each worker's
        assert "User=" in lines[0] and "CAP_NET_BIND_SERVICE" in lines[0], lines
        assert "setpriv" in lines[0], lines
    assert "[warn] running as root" in srv.error_log, srv.error_log
    assert "[error]" not in srv.error_log, srv.error_log  # nothing failed


@needs_root
def test_running_as_root_is_warned_once_when_the_error_log_is_stderr(tmp_path):
    srv = start_server(tmp_path, "--app", "hello:application", "--error-log", "-")
    assert srv.stop() == 0, srv.stderr
    assert srv.stderr.count(ROOT_WARNING) == 1, srv.stderr


@needs_root
def test_running_as_nobody_is_not_warned(nobodys_folder, for_nobody):
    workdir = nobodys_folder / "srv"
    workdir.mkdir()
    os.chown(workdir, NOBODY, NOBODY)
    srv = start_server(workdir, "--app", "hello:application", preexec_fn=as_nobody,
                       binary=for_nobody.binary, apps=for_nobody.apps)
    assert srv.stop() == 0, srv.stderr
    assert ROOT_WARNING not in srv.stderr and ROOT_WARNING not in srv.error_log, srv.stderr
    assert "listening on" in srv.error_log, srv.error_log  # the log was written


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["single", "workers"])
def test_the_error_log_says_where_it_listens_with_the_pid(tmp_path, workers):
    srv = start_server(tmp_path, "--app", "hello:application", *workers)
    assert srv.stop() == 0, srv.stderr
    lines = [l for l in srv.error_log.splitlines() if "listening on" in l]
    assert len(lines) == 1, srv.error_log
    assert "[info]" in lines[0] and "http://127.0.0.1:%d/" % srv.port in lines[0], lines
    assert "pid %d" % srv.proc.pid in lines[0], lines


def test_the_listening_line_shows_once_when_the_error_log_is_stderr(tmp_path):
    srv = start_server(tmp_path, "--app", "hello:application", "--error-log", "-")
    assert srv.stop() == 0, srv.stderr
    assert srv.stderr.count("listening on") == 1, srv.stderr


def save_profile(workdir, log, **kw):
    srv = start_server(workdir, "--app", "profiled_app:app", "--profile",
                       "--profile-discard-first", "false", "--profile-log", log, **kw)
    try:
        assert requests.get(srv.url, timeout=10).status_code == 200
    finally:
        assert srv.stop() == 0, srv.stderr
    assert "wrote %s" % log in srv.error_log, srv.error_log


def test_a_new_profile_file_is_0644_under_umask_000(tmp_path):
    log = tmp_path / "p.pstats"
    save_profile(tmp_path / "srv", log, preexec_fn=lambda: os.umask(0))
    assert stat.S_IMODE(log.stat().st_mode) == 0o644


def test_a_replaced_profile_file_keeps_its_mode(tmp_path):
    log = tmp_path / "p.pstats"
    log.write_text("old")
    log.chmod(0o600)
    save_profile(tmp_path / "srv", log, preexec_fn=lambda: os.umask(0))
    assert log.read_bytes() != b"old"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


@needs_root
def test_root_replacing_a_profile_file_keeps_its_owner(tmp_path):
    log = tmp_path / "p.pstats"
    log.write_text("old")
    log.chmod(0o640)
    os.chown(log, NOBODY, NOBODY)
    save_profile(tmp_path / "srv", log)
    st = log.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o640)
