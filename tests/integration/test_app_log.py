"""How what the app writes reaches the error log: a traceback in one piece
with its heading, an unfinished line past 8 KiB ended before another
thread's output, control bytes escaped, each line of the app's stamped
"[date] [app] " so that it cannot pass for one of tracfront's own, and a log
reader that stalls holds up only the threads that write to it.

The app is tests/apps/app_log_apps.py.
"""
import contextlib
import os
import re
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import APP_STAMP_RE, app_lines
from workers_util import wait_for

APP = ("--app", "app_log_apps:app", "--inline-fast-calls", "false")


def test_parallel_tracebacks_each_follow_their_heading_whole(tracfront):
    """8 requests raising at once: each heading is followed by its own
    traceback, none of another's lines among them (one write per line let
    them mix line by line)."""
    srv = tracfront(*APP, "--threads", "8")
    tags = "ABCDEFGH"

    def fetch(tag):
        return requests.get(srv.url + "raise", params={"t": tag}, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(fetch, tags)) == [500] * 8
    lines = app_lines(srv.error_log)
    sizes = set()
    for tag in tags:
        heading = "GET /raise?t=%s: the app raised; traceback follows" % tag
        starts = [i for i, line in enumerate(lines) if line.endswith(heading)]
        assert len(starts) == 1, srv.error_log[-6000:]
        block = lines[starts[0] + 1:]
        assert block[0] == "Traceback (most recent call last):", srv.error_log[-6000:]
        end = block.index("RuntimeError: boom-" + tag)
        assert not [line for line in block[1:end]
                    if line.startswith("RuntimeError: boom-") or "traceback follows" in line
                    or line.startswith("Traceback")], srv.error_log[-6000:]
        sizes.add(end)
    assert len(sizes) == 1, (sizes, srv.error_log[-6000:])  # none took in another's lines


def test_unfinished_line_past_8k_is_ended_before_other_output(tracfront):
    """A's unfinished line of 10,000 bytes goes out at once, ended with a
    newline, so B's line is not joined to it (it went out as it was)."""
    srv = tracfront(*APP, "--threads", "4")
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(requests.get, srv.url + "long?who=A", timeout=30)
        assert requests.get(srv.url + "long?who=B", timeout=30).status_code == 200
        assert a.result().status_code == 200
    lines = app_lines(srv.error_log)
    assert "P" * 10000 in lines, srv.error_log[-300:]
    assert "OTHER-LINE" in lines and "TAIL" in lines, srv.error_log[-300:]


def test_control_bytes_in_app_output_are_escaped(tracfront):
    """print(), sys.stderr, wsgi.errors and a traceback's message: control
    bytes but newline and tab are written \\xHH, as Apache writes them and
    tracfront's own lines do, and the C1 code points too (ESC would reach a
    terminal's `tail -f`)."""
    srv = tracfront(*APP)
    assert requests.get(srv.url + "ctl", timeout=10).status_code == 500
    raw = (srv.workdir / "error.log").read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]", raw), raw[-2000:]
    lines = app_lines(raw.decode())
    assert "PRINT\\x1b[31mRED\\x0dCR\\x00NUL\\x7fDEL\\x9bCSI\tTAB end" in lines, lines[-12:]
    assert "STDERR\\x1b[2J\\x08BS" in lines, lines[-12:]
    assert "ERRORS\\x07BEL" in lines, lines[-12:]
    assert "ValueError: RAISED\\x1b]0;title\\x07" in lines, lines[-12:]


def test_app_lines_cannot_pass_for_tracfronts_own(tracfront):
    """A line the app writes, or a client has it write (Trac logging a URL
    with %0a), is stamped [app]: it cannot pass for an [info] or [error]
    line of tracfront's, as mod_wsgi marks the app's lines [wsgi:error]."""
    srv = tracfront(*APP)
    forged = "[2001-01-01 00:00:00.000] [error] tracfront was hacked"
    r = requests.get(srv.url + "print", params={"text": "LOOK\n" + forged}, timeout=10)
    assert r.status_code == 200
    log = srv.error_log.splitlines()
    mine = [line for line in log if line.endswith("LOOK") or line.endswith(forged)]
    assert len(mine) == 2 and all(APP_STAMP_RE.match(line) for line in mine), log[-5:]
    assert not [line for line in log if line.startswith(forged[:26])], log[-5:]


def stuck_blocks(lines):
    """Each stuck-request heading with the line after it."""
    return [(line, lines[i + 1] if i + 1 < len(lines) else "")
            for i, line in enumerate(lines) if "stuck request" in line]


def test_stuck_report_is_one_piece_while_the_app_prints(tracfront):
    """The stuck-request line and its stack are one write (and so are
    --dump-all's line and its stacks): app threads printing meanwhile
    cannot come between them. 100 reports while 6 threads print."""
    srv = tracfront(*APP, "--threads", "16", "--request-timeout", "0.1", "--dump-all")

    def lane(_):
        return [requests.get(srv.url + "sleep?s=0.25", timeout=60).status_code
                for _ in range(10)]

    with ThreadPoolExecutor(16) as pool:
        spam = [pool.submit(requests.get, srv.url + "spam?s=3", timeout=60) for _ in range(6)]
        assert list(pool.map(lane, range(10))) == [[200] * 10] * 10
        assert all(f.result().status_code == 200 for f in spam)
    lines = app_lines(srv.error_log)
    blocks = stuck_blocks(lines)
    assert len(blocks) >= 20, srv.error_log[-3000:]  # up to 106: the printing ones too
    # (a thread caught before its app's first frame, waiting for the GIL on a
    # loaded machine, has none: that report's own line says so)
    no_frame = "  (no Python frame: the thread is in a C call, or waits for the GIL to start the app)"
    for heading, after in blocks:  # a stack's first line, not a printing thread's
        assert (after.startswith('  File "') and ", in app" in after) or after == no_frame, \
            (heading, after)
    assert [b for b in blocks if b[1].startswith('  File "')], blocks[:3]
    dumps = [i for i, line in enumerate(lines) if "every Python thread's stack follows" in line]
    assert dumps, srv.error_log[-3000:]
    for i in dumps:
        assert lines[i + 1].startswith("Thread "), lines[i + 1]


def test_stuck_stacks_are_stamped_and_escaped(tracfront):
    """The stuck-request report's stack and --dump-all's stacks are written
    as the app's lines are, stamped [app] with control bytes escaped: a
    thread named "x\\n[2001-...] [error] forged \\x1b[31m" forges no line of
    tracfront's, its newline starts no line and no ESC reaches the log."""
    srv = tracfront(*APP, "--threads", "2", "--request-timeout", "0.3", "--dump-all")
    assert requests.get(srv.url + "threadname?s=1", timeout=30).text == "named"
    srv.stop()
    raw = (srv.workdir / "error.log").read_bytes()
    assert b"\x1b" not in raw and b"forged" in raw, raw[-3000:]
    log = raw.decode().splitlines()
    assert not [line for line in log if line.startswith("[2001")], log[-20:]
    named = [line for line in log if "forged" in line]
    assert named and all(APP_STAMP_RE.match(line) for line in named), named
    assert all(line.endswith("x\\x0a[2001-01-01 00:00:00.000] [error] forged by a thread "
                             "name \\x1b[31m):") for line in named), named
    start = next(i for i, line in enumerate(log) if "stuck request" in line)
    assert APP_STAMP_RE.match(log[start + 1]) and '  File "' in log[start + 1], log[start:start + 3]


def threads_writing_a_pipe(pid):
    """How many of pid's threads wait in a write to a full pipe."""
    count = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/wchan" % (pid, tid)) as f:
                count += "pipe_write" in f.read()
        except OSError:
            pass
    return count


def stopped(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def fill_pipe(fd):
    """Write to a FIFO (fd non-blocking) until it takes no more byte."""
    for size in (65536, 4096, 1):
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(fd, b"x" * size)


def test_a_stalled_log_reader_holds_up_only_the_writers(tracfront, tmp_path):
    """--error-log on a FIFO whose reader stopped, the pipe full: the thread
    writing the end of an unfinished line, or a traceback with its heading,
    waits without the GIL, so other requests and the profile page are still
    answered (the GIL held around that write froze them all)."""
    fifo = tmp_path / "error.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.DEVNULL)
    results, filler = {}, None
    try:
        srv = tracfront(*APP, "--threads", "4", "--error-log", fifo)
        filler = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # the reader has it open now
        for path in ("unfinished", "fail"):
            reader.send_signal(signal.SIGSTOP)
            wait_for(lambda: stopped(reader.pid), 30, "the reader stopped")
            fill_pipe(filler)

            def run(path=path):
                results[path] = requests.get(srv.url + path, timeout=120).status_code
            t = threading.Thread(target=run, daemon=True)
            t.start()
            wait_for(lambda: threads_writing_a_pipe(srv.proc.pid), 30,
                     "the %s thread waiting for the pipe" % path)
            assert requests.get(srv.url + "hello", timeout=20).text == "hello"
            assert requests.get(srv.url + "__profile__", timeout=20).status_code == 200
            reader.send_signal(signal.SIGCONT)
            t.join(60)
            wait_for(lambda: not threads_writing_a_pipe(srv.proc.pid), 30, "the pipe drained")
    finally:
        reader.send_signal(signal.SIGCONT)
        if filler is not None:
            os.close(filler)
    assert results == {"unfinished": 200, "fail": 500}, results
    srv.stop()
    reader.wait(30)


def test_a_stalled_log_reader_holds_up_no_new_threads_first_line(tracfront, tmp_path):
    """--error-log on a FIFO whose reader stopped, the pipe full: a thread
    that ends with an unfinished line waits in its write, but not holding
    the lock that a new thread's first unfinished line takes with the GIL
    (that froze every request, the profile page too)."""
    fifo = tmp_path / "error.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.DEVNULL)
    filler = None
    try:
        srv = tracfront(*APP, "--threads", "4", "--error-log", fifo)
        filler = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # the reader has it open now
        reader.send_signal(signal.SIGSTOP)
        wait_for(lambda: stopped(reader.pid), 30, "the reader stopped")
        fill_pipe(filler)
        assert requests.get(srv.url + "exitpartial", timeout=20).text == "exited"
        wait_for(lambda: threads_writing_a_pipe(srv.proc.pid), 30,
                 "the ended thread waiting for the pipe")
        assert requests.get(srv.url + "firstpartial", timeout=20).text == "fresh"
        assert requests.get(srv.url + "hello", timeout=20).text == "hello"
        assert requests.get(srv.url + "__profile__", timeout=20).status_code == 200
    finally:
        reader.send_signal(signal.SIGCONT)
        if filler is not None:
            os.close(filler)
    wait_for(lambda: not threads_writing_a_pipe(srv.proc.pid), 30, "the pipe drained")
    srv.stop()
    reader.wait(30)


def test_idle_stop_writes_daemon_threads_unfinished_lines(tracfront):
    """A stop with no request running finalizes Python: a daemon thread's
    unfinished line is written first, ended (it was lost; a stop that
    does not wait for its requests wrote it)."""
    srv = tracfront(*APP, "--threads", "2")
    assert requests.get(srv.url + "daemon", timeout=20).text == "daemon"
    assert srv.stop() == 0
    assert "DAEMON-PARTIAL-LINE" in app_lines(srv.error_log), srv.error_log[-2000:]


def test_a_forked_childs_lines_are_in_local_time_too(tracfront):
    """A worker's child forked before the worker wrote any stamp of its own:
    its lines took the UTC offset 0 (09:31 beside the parent's 18:31 in
    Tokyo). The offset is known from the start."""
    srv = tracfront(*APP, "--workers", "1", env={"TZ": "Asia/Tokyo"})
    assert requests.get(srv.url + "forkdate", timeout=30).text == "done"
    stamps = {}
    wait_for(lambda: "PARENT-DATE" in srv.error_log, 10, "the parent's line")
    for line in srv.error_log.splitlines():
        for tag in ("CHILD-DATE", "PARENT-DATE"):
            if line.endswith(tag):
                stamps[tag] = line[1:17]  # "YYYY-mm-dd HH:MM"
    assert len(stamps) == 2, srv.error_log[-1500:]
    assert stamps["CHILD-DATE"][:13] == stamps["PARENT-DATE"][:13], stamps  # the same hour


def test_forked_child_prints_while_a_thread_holds_the_time_zone_lock(tracfront, tmp_path):
    """The app forks while another thread holds glibc's time-zone lock (in
    tzset()); the child's print() is stamped without localtime_r, which
    would wait for that lock for good in the child, and the child exits."""
    fifo = tmp_path / "tz.fifo"
    os.mkfifo(fifo)
    srv = tracfront(*APP, "--threads", "2")
    r = requests.get(srv.url + "forkprint", params={"fifo": str(fifo)}, timeout=60)
    assert r.text == "exited", srv.error_log[-2000:]
    assert "CHILD-LINE" in app_lines(srv.error_log), srv.error_log[-2000:]
