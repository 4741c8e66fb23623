"""--error-log as a writer: lines stay whole on a pipe whatever their length,
tracfront's own lines keep their reason however long the request's target,
and a log that cannot be written (a full disk) is said on stderr, with a line
it cut ended before the next one. The app is tests/apps/log_lines_app.py.
"""
import concurrent.futures
import contextlib
import os
import re
import resource
import subprocess

import pytest
import requests

from conftest import app_lines, closed_port
from workers_util import wait_for

APP = ("--app", "log_lines_app:app")


def expected_line(tag, n):
    return "<%s:%s:%s>" % (tag, tag[0] * n, tag)


def test_long_lines_from_concurrent_requests_stay_whole_on_a_pipe(tracfront, tmp_path):
    """A pipe takes a write over PIPE_BUF (4 KiB) in pieces, and another
    thread's write came between them: 100 KB lines were cut into each other
    (the default "-" under docker, `| logger`), and so were short lines
    written without waiting their turn."""
    fifo, piped = tmp_path / "log.fifo", tmp_path / "piped.log"
    os.mkfifo(fifo)
    with open(piped, "wb") as out:
        reader = subprocess.Popen(["cat", str(fifo)], stdout=out)
    srv = None
    try:
        srv = tracfront(*APP, "--error-log", fifo)
        tags = ["%s%02d" % (chr(ord("a") + i % 26), i) for i in range(48)]
        size = {t: 100_000 if i % 2 else 40 for i, t in enumerate(tags)}  # long and short mixed

        def one(tag):
            return requests.get(srv.url + "line", params={"tag": tag, "n": size[tag]},
                                timeout=30).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(one, tags)) == {200}
        ends = [":%s>" % t for t in tags]
        wait_for(lambda: (lambda text: all(e in text for e in ends))(piped.read_text()),
                 30, "every line through the pipe")
        lines = [l for l in app_lines(piped.read_text(errors="replace")) if "<" in l]
        wanted = {expected_line(t, size[t]) for t in tags}
        bad = [l[:60] + "..." + l[-20:] for l in lines if l not in wanted]
        assert not bad, "%d of %d lines cut or mixed: %s" % (len(bad), len(lines), bad[:5])
        assert len(lines) == len(tags)
    finally:
        if srv:
            srv.stop()  # closes the pipe: cat ends
        with contextlib.suppress(subprocess.TimeoutExpired):
            reader.wait(20)
        if reader.poll() is None:  # the server never opened the pipe
            reader.kill()
            reader.wait()


@pytest.mark.parametrize("path, reason", [
    ("/up/x", "Couldn't connect"),                    # the upstream refused
    ("/raise", "the app raised; traceback follows"),  # the app raised
    ("/sleep", "has run"),                            # the stuck-request report
], ids=["upstream-refused", "app-raised", "stuck-request"])
def test_a_long_target_leaves_the_reason_in_the_line(tracfront, path, reason):
    """8.4 KB of target (%25, escaped) filled the line's buffer and cut off
    the reason: "[error] upstream: GET /up/x?z=%25%25...%2" and nothing else."""
    srv = tracfront(*APP, "--upstream", "http://127.0.0.1:%d" % closed_port(),
                    "--route", "/up=upstream", "--request-timeout", "0.2")
    target = path + "?s=1&z=" + "%25" * 2800
    answer = srv.raw(("GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                      % target).encode())
    assert answer.split(b" ", 2)[1] in (b"200", b"500", b"502"), answer[:200]
    wait_for(lambda: reason in srv.error_log, 10, "the line with " + reason)
    (line,) = [l for l in srv.error_log.splitlines() if ("GET " + path + "?s=1&z=%25") in l]
    assert reason in line, line[-200:]
    assert re.search(r"\?s=1&z=(%25)+(%|%2)?…", line), line[-200:]  # cut, and says so
    assert len(line) < 2000, len(line)
    if path == "/up/x":
        assert line.endswith("(answered 502)"), line[-200:]


@contextlib.contextmanager
def small_tmpfs(where, size):
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", str(where)],
                      stderr=subprocess.DEVNULL).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)])


def fill(path):
    """Write to path until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"f" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_line_cut_by_a_full_disk_is_ended_and_reported(tracfront, tmp_path):
    """On a full disk a line was cut short where the space ended, the next
    line written once there was room again went on from it, and nothing
    said that lines were lost."""
    with small_tmpfs(tmp_path / "disk", 64 * 1024) as disk:
        log = disk / "error.log"
        srv = tracfront(*APP, "--error-log", log)
        get = lambda tag, n: requests.get(srv.url + "line", params={"tag": tag, "n": n},
                                          timeout=10).status_code
        assert get("before", 10) == 200
        wait_for(lambda: ":before>" in log.read_text(), 10, "the first line")
        if log.stat().st_size % 4096 == 0:  # no room left in its last page: make some
            assert get("pad", 10) == 200
            wait_for(lambda: ":pad>" in log.read_text(), 10, "the padding line")
        fill(disk / "filler")
        assert get("cut", 5000) == 200  # written in part: the space ends in its midst
        assert get("lost", 10) == 200
        wait_for(lambda: "--error-log" in srv.stderr, 10, "the failure on stderr")
        (disk / "filler").unlink()
        assert get("after", 10) == 200
        wait_for(lambda: ":after>" in log.read_text(), 10, "the line after")
        text = log.read_text()
        srv.stop()
    lines = app_lines(text)
    assert expected_line("after", 10) in lines, text[-300:]
    assert lines[-2] == expected_line("after", 10), text[-300:]
    assert [l for l in lines if l.startswith("<cut:c")] and expected_line("cut", 5000) not in lines
    assert "<lost:" not in text
    assert "[error] --error-log: writing again; 2 messages lost" in lines[-1], lines[-2:]
    said = [l for l in srv.stderr.splitlines() if "--error-log" in l]
    assert len(said) == 1 and "No space left on device" in said[0], said


def test_an_error_log_that_cannot_be_written_is_said_once_on_stderr(tracfront):
    srv = tracfront(*APP, "--error-log", "/dev/full")
    for i in range(3):
        assert requests.get(srv.url + "line", params={"tag": "t%d" % i, "n": 10},
                            timeout=10).status_code == 200
    wait_for(lambda: "--error-log" in srv.stderr, 10, "the failure on stderr")
    said = [l for l in srv.stderr.splitlines() if "--error-log" in l]
    assert len(said) == 1, said
    assert "cannot write to /dev/full: No space left on device" in said[0], said


def test_a_file_size_limit_stops_the_log_not_the_server(tracfront):
    """Past a file-size limit (systemd's LimitFSIZE=, ulimit -f) a write
    raises SIGXFSZ, which killed the server at its first log line over the
    limit; Apache ignores it. The write fails instead and that is said."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    srv = tracfront(*APP, preexec_fn=limit)
    for i in range(20):
        assert requests.get(srv.url + "line", params={"tag": "t%d" % i, "n": 5000},
                            timeout=10).status_code == 200
    wait_for(lambda: "--error-log" in srv.stderr, 10, "the failure on stderr")
    assert "File too large" in srv.stderr, srv.stderr
    assert srv.proc.poll() is None
