"""Helpers for uploads a server should refuse from their head alone (a 405 on
a static route, a path no route serves, a profiler page that takes no such
method): the answer must come before the body is asked for (no 100 Continue)
or read (no spool file). Shared by test_static.py, test_profile_exports.py and
test_uploads.py. They only send HTTP and read /proc of the server they test.
"""
import os
import pathlib
import select
import time

BIG = 200_000_000  # announced, never sent whole: read, it would take seconds
SENT = 2 << 20     # sent without Expect: past the 256 KiB kept in memory, so it would be spooled


def tree(pid):
    """pid and its descendants (a front's workers)."""
    pids = [pid]
    for p in pids:
        for task in pathlib.Path("/proc/%d/task" % p).glob("*/children"):
            try:
                pids += [int(c) for c in task.read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                pass
    return pids


def deleted_files(pid):
    """Paths of the deleted (anonymous) files pid or its workers hold open: a
    spooled body."""
    out = []
    for p in tree(pid):
        fds = pathlib.Path("/proc/%d/fd" % p)
        try:
            names = os.listdir(fds)
        except FileNotFoundError:  # ended meanwhile
            continue
        for f in names:
            try:
                link = os.readlink(fds / f)
            except FileNotFoundError:  # closed meanwhile
                continue
            if "(deleted)" in link and not link.startswith("/memfd:"):  # not shared memory
                out.append(link)
    return out


def head_of(srv, method, target, headers=b"", expect=True):
    """Send the head of a BIG upload (with Expect: 100-continue, or without it
    followed by SENT bytes of its body) and wait for the server's answer or
    a spool file, whichever comes first; never for the whole body. Returns
    (the answer: a 100 Continue, a refusal read to its end, or None; the
    spool files seen; whether the server closed the connection)."""
    s = srv.connect(30)
    try:
        s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s%s\r\n"
                  % (method, target, BIG, b"Expect: 100-continue\r\n" if expect else b"",
                     headers))
        if not expect:
            s.sendall(b"x" * SENT)  # a server that answered drops it (lingering close)
        deadline = time.monotonic() + 20
        while not select.select([s], [], [], 0.05)[0]:
            spooled = deleted_files(srv.proc.pid)
            if spooled or time.monotonic() > deadline:
                return None, spooled, False
        answer = s.recv(65536)
        if answer.startswith(b"HTTP/1.1 100 "):
            return answer, [], False
        s.settimeout(10)
        while True:  # the server closes after its refusal
            more = s.recv(65536)
            if not more:
                return answer, [], True
            answer += more
    finally:
        s.close()


def assert_refused_early(srv, method, target, status, headers=b""):
    """The upload gets status (the answer returned) before its body is asked
    for or read, and the connection closes; the same without Expect."""
    for expect in (True, False):
        answer, spooled, closed = head_of(srv, method, target, headers, expect)
        assert answer is not None, "%s %s (Expect: %s): no answer; the body was spooled to %s" \
            % (method, target, expect, spooled)
        assert answer.startswith(b"HTTP/1.1 %d " % status), (method, target, expect, answer[:300])
        assert closed and b"Connection: close\r\n" in answer, (method, target, expect, answer[:300])
    return answer
