"""--request-timeout-action 504 with --workers: a worker in which the watchdog
interrupted a request is replaced the way a reload replaces workers (a new
one starts and takes over, the old one finishes what it has, hands its
profile over and exits), because what the interrupt broke stays broken in
that process (tests/apps/recycle_app.py: a first load interrupted after it
attached its log handler leaves two handlers, as Trac did). A worker whose
place already had 3 workers in a row interrupted before they completed a
request is kept instead (an app whose start-up outlasts the timeout would be
replaced for ever). Without --workers nothing can replace the process: it
keeps serving as it is.
"""
import pathlib
import re
import threading
import time

import requests

from workers_util import Load, busy_calls, children, fetch, running, settle, wait_for

APPS = pathlib.Path(__file__).resolve().parents[2] / "tests" / "apps"
APP = ("--app", "recycle_app:app")
TIMEOUT = ("--request-timeout", "0.5", "--request-timeout-action", "504")
REPLACED = re.compile(r"worker (\d+) was replaced by worker (\d+): the watchdog interrupted")
HELD = re.compile(r"worker (\d+) is not replaced")


def start(tracfront, n, *extra, **kw):
    return tracfront(*APP, "--workers", n, *TIMEOUT, *extra, **kw)


def get(srv, path, timeout=60):
    """(status, JSON or text) of GET path, on a connection of its own."""
    return fetch(requests, srv.url + path.lstrip("/"), timeout)


def replacements(srv):
    """[(old pid, new pid)] of the front's replacement lines, in order."""
    return [(int(a), int(b)) for a, b in REPLACED.findall(srv.error_log)]


def next_replacement(srv, seen):
    """The replacement after the `seen` first ones: (old pid, new pid)."""
    return wait_for(lambda: replacements(srv)[seen:], 30, "replacement %d" % (seen + 1))[0]


def route_count(srv, route):
    routes = requests.get(srv.url + "__profile__/api/latency", timeout=10).json()["routes"]
    return sum(r["count"] for r in routes if r["route"] == route)


def test_an_interrupted_worker_is_replaced_by_a_clean_one(tracfront):
    srv = start(tracfront, 1, "--threads", "2")
    before = children(srv.proc.pid)
    (old,) = before
    assert get(srv, "load?s=30")[0] == 504  # interrupted after the handler was attached
    assert next_replacement(srv, 0)[0] == old
    (_, new), = replacements(srv)
    # the line comes once the new worker accepts and the old one no longer does
    assert get(srv, "handlers") == (200, {"handlers": 1, "pid": new})
    wait_for(lambda: not running(old, before[old]), 20, "the old worker to exit")
    assert set(children(srv.proc.pid)) == {new}
    line = [l for l in srv.error_log.splitlines() if REPLACED.search(l)][0]
    assert "--request-timeout-action 504" in line, line


def test_without_workers_the_process_keeps_what_the_interrupt_left(tracfront):
    srv = tracfront(*APP, *TIMEOUT, "--threads", "2")
    assert get(srv, "load?s=30")[0] == 504
    assert get(srv, "handlers") == (200, {"handlers": 2, "pid": srv.proc.pid})
    assert not REPLACED.search(srv.error_log) and srv.alive()


def in_background(srv, path):
    """GET path on a thread of its own: (thread, dict whose "value" is fetch's)."""
    result = {}
    t = threading.Thread(target=lambda: result.update(value=get(srv, path)), daemon=True)
    t.start()
    return t, result


def test_requests_in_flight_on_the_replaced_worker_complete(tracfront, tmp_path):
    # A request running when its worker is replaced must itself stay under
    # the timeout: the gated one starts 4 s after the one interrupted at 8 s.
    srv = tracfront(*APP, "--workers", 1, "--threads", "4", "--request-timeout", "8",
                    "--request-timeout-action", "504")
    before = children(srv.proc.pid)
    gate, mark, mark2 = tmp_path / "gate", tmp_path / "mark", tmp_path / "mark2"
    stuck, interrupted = in_background(srv, "load?s=60&mark=%s" % mark)
    old = int(wait_for(lambda: mark.exists() and mark.read_text(), 10, "the stuck request"))
    time.sleep(4)
    t, result = in_background(srv, "gate?file=%s&mark=%s" % (gate, mark2))
    assert int(wait_for(lambda: mark2.exists() and mark2.read_text(), 10, "the gated request")) == old
    with Load(srv.url, ["/pid", "/work?n=100"], threads=2) as load:
        stuck.join(30)
        assert interrupted["value"][0] == 504, interrupted
        assert next_replacement(srv, 0)[0] == old
        (_, new), = replacements(srv)
        wait_for(lambda: get(srv, "pid") == (200, {"pid": new}), 10, "the new worker to serve")
        served = load.count()
        wait_for(lambda: load.count() > served + 4, 20, "more requests under load")
    assert load.failures() == [], load.failures()[:3]
    assert t.is_alive() and running(old, before[old]), \
        ("the old worker did not wait for its request", result)
    gate.touch()
    t.join(30)
    assert result["value"] == (200, {"released": True, "pid": old}), result
    wait_for(lambda: not running(old, before[old]), 20, "the old worker to exit")


def test_a_start_up_longer_than_the_timeout_is_not_replaced_for_ever(tracfront):
    # every process's first request spins 3 s: each new worker is interrupted at once
    srv = start(tracfront, 1, "--threads", "2", env={"RECYCLE_FIRST_SPIN": "3"})
    (first,) = children(srv.proc.pid)
    for i in range(3):
        assert get(srv, "pid")[0] == 504
        next_replacement(srv, i)
    chain = replacements(srv)
    assert [old for old, _ in chain] == [first] + [new for _, new in chain[:-1]], chain
    held = chain[-1][1]
    assert get(srv, "pid")[0] == 504  # the fourth worker's first request
    line = wait_for(lambda: [l for l in srv.error_log.splitlines() if HELD.search(l)], 20,
                    "the guard's line")
    assert HELD.search(line[0]).group(1) == str(held), line
    assert "3 workers" in line[0] and "--request-timeout" in line[0], line
    # it keeps serving, and is not replaced
    for _ in range(3):
        assert get(srv, "pid") == (200, {"pid": held})
    time.sleep(1.5)
    assert len(replacements(srv)) == 3 and len(HELD.findall(srv.error_log)) == 1
    assert set(children(srv.proc.pid)) == {held}
    # once it has completed requests, an interrupt replaces it again
    assert get(srv, "load?s=30")[0] == 504
    assert next_replacement(srv, 3)[0] == held


def test_requests_beside_a_cold_start_do_not_reset_the_bound(tracfront):
    """Requests that completed while a new worker's first request still ran
    (a health check, a fast error page beside a cold start) reset the count
    the guard keeps: under steady traffic an app whose start-up outlasts the
    timeout was replaced for ever (a new worker every 0.65 s). What counts is
    what had completed before the interrupted request began."""
    srv = start(tracfront, 1, "--threads", "4", env={"RECYCLE_FIRST_SPIN": "3"})
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                requests.get(srv.url + "pid", timeout=10)
            except requests.RequestException:
                pass
    clients = [threading.Thread(target=traffic) for _ in range(3)]
    for c in clients:
        c.start()
    try:
        line = wait_for(lambda: [l for l in srv.error_log.splitlines() if HELD.search(l)], 40,
                        "the guard's line under traffic")
        assert len(replacements(srv)) == 3, srv.error_log[-3000:]
        time.sleep(1.5)
    finally:
        stop.set()
        for c in clients:
            c.join()
    assert len(replacements(srv)) == 3 and len(HELD.findall(srv.error_log)) == 1, line


def test_a_replacement_that_could_not_start_does_not_count(tracfront, tmp_path):
    """A worker whose replacement could not start (the app's file broken
    since) keeps serving, and that attempt is no worker replaced: three of
    them made the guard keep it, and it was not replaced once the app was
    mended, until it completed a request."""
    source = (APPS / "recycle_app.py").read_text()
    app = tmp_path / "recycle_copy.py"
    app.write_text(source)
    srv = tracfront("--app", "recycle_copy:app", "--pythonpath", str(tmp_path), "--workers", "1",
                    *TIMEOUT)
    (first,) = children(srv.proc.pid)
    app.write_text(source + "\nthis is not python\n")
    for i in range(4):
        assert get(srv, "load?s=30")[0] == 504
        wait_for(lambda: srv.error_log.count("no worker could start to replace it") > i, 30,
                 "failed replacement %d" % (i + 1))
    assert not HELD.search(srv.error_log), srv.error_log[-3000:]
    app.write_text(source)
    assert get(srv, "load?s=30")[0] == 504
    assert next_replacement(srv, 0)[0] == first


def test_the_profile_survives_a_replacement(tracfront):
    srv = start(tracfront, 2, "--profile", "--profile-discard-first", "false", "--threads", "2")
    before = children(srv.proc.pid)
    k = 0
    for _ in range(20):
        assert get(srv, "work?n=3000")[0] == 200
        k += 1
    assert settle(lambda: busy_calls(srv), k, 10) == k
    assert get(srv, "load?s=30")[0] == 504
    old, new = next_replacement(srv, 0)
    assert old in before and new not in before
    wait_for(lambda: not running(old, before[old]), 20, "the old worker to exit")
    assert busy_calls(srv) == k, "the replacement lost the old worker's call counts"
    assert route_count(srv, "/work") == k, "the replacement lost the old worker's latency"
    for _ in range(10):
        assert get(srv, "work?n=3000")[0] == 200
    assert settle(lambda: busy_calls(srv), k + 10, 10) == k + 10
    assert settle(lambda: route_count(srv, "/work"), k + 10, 10) == k + 10


def test_a_client_cannot_ask_for_a_replacement(tracfront):
    """/replace is between a worker and its front: on the public port (a
    worker would relay it to the front) it is no profiler action."""
    srv = start(tracfront, 1)
    before = children(srv.proc.pid)
    (worker,) = before
    r = requests.post(srv.url + "__profile__/replace",
                      params={"port": "1", "completed": "0"}, timeout=10)
    assert r.status_code == 404 and "No such profiler action" in r.text, (r.status_code, r.text)
    assert get(srv, "pid") == (200, {"pid": worker})
    time.sleep(0.5)
    assert children(srv.proc.pid) == before and not replacements(srv)
