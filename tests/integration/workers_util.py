"""Helpers shared by test_workers.py and test_reload.py: the process tree of
a front and a process's memory (read from /proc), waiting for a condition, and client load that
records every answer. They only observe and send HTTP; they never signal a
process the test did not start.
"""
import os
import threading
import time

import requests

APP = ("--app", "worker_app:app")


def proc_stat(pid):
    """(state, ppid, starttime) of a process, or None if there is none."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return fields[0], int(fields[1]), int(fields[19])


def children(pid):
    """{pid: starttime} of the live (non-zombie) children of pid."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st[1] == pid and st[0] != "Z":
                out[int(name)] = st[2]
    return out


def descendants(pid):
    """{pid: starttime} of every live process below pid."""
    found, todo = {}, [pid]
    while todo:
        kids = children(todo.pop())
        found.update(kids)
        todo.extend(kids)
    return found


def memory_kib(pid, field):
    """A field of a process's /proc status (VmRSS; VmHWM, its peak), in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def peak_from_now(pid):
    """Reset a process's peak (VmHWM) to its VmRSS now; returns that."""
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")
    return memory_kib(pid, "VmRSS")


def running(pid, starttime):
    """True if that very process (not a reuse of its pid) still runs."""
    st = proc_stat(pid)
    return bool(st) and st[2] == starttime and st[0] != "Z"


def wait_for(cond, timeout, what):
    """Poll cond() until it returns something true; return it, or fail naming what."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.05)


def fetch(session, url, timeout=30):
    """(status, json-or-text) of one GET, or ("error", repr) if it failed."""
    try:
        r = session.get(url, timeout=timeout)
    except requests.RequestException as e:
        return "error", repr(e)
    if r.status_code != 200:
        return r.status_code, r.text[:300]
    return 200, r.json()


def concurrently(url, threads, per_thread):
    """GET url per_thread times from each of `threads` threads (keep-alive
    sessions); return every (status, body)."""
    results, lock = [], threading.Lock()

    def run():
        with requests.Session() as s:
            for _ in range(per_thread):
                res = fetch(s, url)
                with lock:
                    results.append(res)
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    return results


class Load:
    """Background client load: each thread GETs its paths in turn until
    stop() (or max_seconds), with a keep-alive session or a new connection
    per request, and keeps every (path, status, body) in order per thread."""

    def __init__(self, base, paths, threads=2, keepalive=(True, False), max_seconds=60):
        self.base, self.paths, self.max_seconds = base.rstrip("/"), paths, max_seconds
        self.done = threading.Event()
        self.log = [[] for _ in range(threads)]
        self.threads = [threading.Thread(target=self._run, args=(i, keepalive[i % len(keepalive)]),
                                         daemon=True) for i in range(threads)]

    def _run(self, i, keepalive):
        deadline = time.monotonic() + self.max_seconds
        session = requests.Session()
        n = 0
        while not self.done.is_set() and time.monotonic() < deadline:
            path = self.paths[n % len(self.paths)]
            n += 1
            if not keepalive:
                session.close()
                session = requests.Session()
            status, body = fetch(session, self.base + path)
            self.log[i].append((path, status, body))
        session.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(60)

    def failures(self):
        return [(path, status, body) for log in self.log for path, status, body in log
                if status != 200]

    def count(self):
        return sum(len(log) for log in self.log)


def settle(fn, expected, timeout=5):
    """fn() once it equals expected (profiles arrive when requests complete), else its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def busy_calls(srv):
    """Calls of the test apps' busy() in the profile the front shows."""
    doc = requests.get(srv.url + "__profile__/api/functions",
                       params={"filter": r"\(busy\)$"}, timeout=30).json()
    return sum(f["ncalls"] for f in doc["functions"] if f["name"] == "busy")
