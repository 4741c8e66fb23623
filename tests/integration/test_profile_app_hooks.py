"""The function profiler against what apps do (tests/apps/profile_edges_app.py):
distinct code objects sharing one label nested in each other (a list
comprehension in another, exec in exec, a dataclass's generated __init__ in
another's) count as recursion, never twice in cumulative time; recursion
deeper than the C stack allows under the frame hook is a RecursionError,
not a dead server (on a thread with a small stack too), and a generator
resumed there is left unrun; a C stack overflow on any thread that runs
Python leaves the Python stacks in the error log; an app that sets its own
profile hook (cProfile, sys.setprofile) has that request left out and said
(escaped), one that saves and restores sys.getprofile() gives the profile
back, in another call than took it is left out, and a profiler that passes
events on to the one it replaced keeps its hook."""
import marshal
import os
import re
import signal
import threading
import time

import pytest
import requests

from workers_util import memory_kib, peak_from_now, wait_for

APP = ("--app", "profile_edges_app:app")
PROFILED = APP + ("--profile", "--profile-discard-first", "false")
FILE = "profile_edges_app.py"
REPLACED = "the app replaced the profile hook"


def get(srv, path, **kw):
    r = requests.get(srv.url + path, timeout=60, **kw)
    assert r.status_code == 200, (path, r.status_code, r.text[-2000:])
    return r


def rows(srv):
    return get(srv, "__profile__/api/functions", params={"limit": 100000}).json()


def row(functions, pattern):
    found = [f for f in functions if re.search(pattern, f["function"])]
    assert len(found) == 1, (pattern, [f["function"] for f in functions])
    return found[0]


NESTED = {"nestedcomp": (r"\(<listcomp>\)$", 5), "nestedexec": (r"^<string>:1\(<module>\)$", 2),
          "nesteddc": (r"^<string>:2\(__init__\)$", 2)}


@pytest.mark.parametrize("builtins", ["true", "false"])
@pytest.mark.parametrize("case", sorted(NESTED))
def test_nested_calls_sharing_a_label_count_once_in_cumtime(tracfront, case, builtins):
    """The inner code object's calls run inside the outer's: they are
    recursive calls of one row, whose cumulative time is the outer calls'
    alone, within the app's (it was about twice the app's)."""
    srv = tracfront(*PROFILED, "--profile-builtins=" + builtins)
    for _ in range(3):
        get(srv, case)
    doc = rows(srv)
    pattern, per_request = NESTED[case]
    nested, app = row(doc["functions"], pattern), row(doc["functions"], r"\(app\)$")
    assert (nested["ncalls"], nested["pcalls"]) == (3 * per_request, 3)
    assert nested["cumtime"] <= app["cumtime"], (nested, app)
    pstats_row = [v for f, v in marshal.loads(get(srv, "__profile__/pstats").content).items()
                  if re.search(pattern, "%s:%d(%s)" % (os.path.basename(f[0]), f[1], f[2]))]
    assert [(v[0], v[1]) for v in pstats_row] == [(3, 3 * per_request)]
    assert pstats_row[0][3] == pytest.approx(nested["cumtime"], abs=1e-6)


@pytest.mark.parametrize("builtins", ["true", "false"])
def test_code_compiled_for_each_request_takes_the_first_ones_place(tracfront, builtins):
    """Code objects made anew for each request (exec of a string, as
    repoze.profile's cProfile.runctx does) with the labels of the last
    request's follow the same paths: the tree stays the size one request
    gave it (it had a copy per request, and filled --profile-max-nodes)."""
    srv = tracfront(*PROFILED, "--profile-builtins=" + builtins, "--profile-max-nodes", "400")
    get(srv, "compiledeach")
    stacks = get(srv, "__profile__/collapsed").text.splitlines()
    for _ in range(60):
        get(srv, "compiledeach")
    again = get(srv, "__profile__/collapsed").text.splitlines()
    assert sorted(l.rsplit(" ", 1)[0] for l in again) == \
        sorted(l.rsplit(" ", 1)[0] for l in stacks), (stacks, again)
    doc = rows(srv)
    assert doc["dropped_calls"] == 0, doc
    work = row(doc["functions"], r"^<string>:2\(work\)$")
    assert (work["ncalls"], work["pcalls"]) == (61, 61)
    assert row(doc["functions"], r"\(leaf\)$")["ncalls"] == 61 * 3


def test_code_with_a_new_label_each_request_is_not_kept_past_the_node_cap(tracfront):
    """The first code object of each label is kept (its key), but no more
    of them than --profile-max-nodes: code compiled with a new name for
    each request is let go as the trees that held it are."""
    srv = tracfront(*PROFILED, "--profile-max-nodes", "100")
    for _ in range(300):
        get(srv, "uniquecode")
    alive, made = map(int, get(srv, "alivecode").text.split(" of "))
    assert made == 300 and alive <= 150, (alive, made)
    r = requests.post(srv.url + "__profile__/clear", allow_redirects=False, timeout=10)
    assert r.status_code in (200, 303), r.status_code
    assert get(srv, "alivecode").text.startswith("0 of "), "Clear lets them all go"


def clear_during_race(srv, tmp_path):
    """GET /race?MARKER on a thread; once it has made MARKER (it waits for a
    weak reference's callback), Clear. Returns /race's answer."""
    result, marker = {}, tmp_path / "waiting"
    t = threading.Thread(target=lambda: result.update(r=get(srv, "race?%s" % marker).text))
    t.start()
    wait_for(marker.exists, 10, "/race waiting")
    r = requests.post(srv.url + "__profile__/clear", allow_redirects=False, timeout=30)
    assert r.status_code in (200, 303)
    t.join(30)
    return result.get("r", "")


@pytest.mark.parametrize("builtins", ["true", "false"])
def test_a_sweep_that_lets_python_run_leaves_no_alias_half_cleared(tracfront, builtins,
                                                                   tmp_path):
    """A code object the Clear's sweep let go had a weak reference whose
    callback slept: another profiled request then remembered an alias in a
    slot the sweep had half cleared (its code set, its key NULL), and the
    next call of that code entered a node keyed NULL (SIGSEGV)."""
    srv = tracfront("--app", "alias_race_app:app", "--profile", "--profile-discard-first",
                    "false", "--profile-max-nodes", "100", "--threads", "4",
                    "--profile-builtins=" + builtins)
    assert get(srv, "seed").text == "seeded"
    answer = clear_during_race(srv, tmp_path)
    made, slept = answer.split()
    assert slept == "True" and int(made) > 0, answer  # the race took place
    assert srv.alive(), srv.stderr[-2000:]
    assert "(base)" in str(rows(srv)["functions"])


@pytest.mark.parametrize("slowest", ["0", "1"])
@pytest.mark.parametrize("builtins", ["true", "false"])
def test_a_clear_that_lets_python_run_frees_no_tree_in_use(tracfront, builtins, slowest,
                                                           tmp_path):
    """Freeing the accumulated tree (or a kept one) drops its labels, and a
    code object's last one ran a weak reference's callback that let other
    threads in while the tree was half freed: a request ending then drained
    into the freed nodes (ASan: heap-use-after-free in merge_children), or
    freed a kept tree a second time. Shared trees are moved out first."""
    srv = tracfront("--app", "clear_race_app:app", "--profile", "--profile-max-nodes", "100",
                    "--profile-slowest", slowest, "--threads", "4",
                    "--profile-builtins=" + builtins)
    assert get(srv, "fill").text == "filled"  # discarded: fills the label map
    assert get(srv, "seed").text == "seeded"
    get(srv, "small")
    answer = clear_during_race(srv, tmp_path)
    assert answer == "race True", answer  # it ran while the callback slept
    assert srv.alive(), srv.stderr[-3000:]
    assert get(srv, "alive").text.startswith("False"), "the seeded code was let go"


def loop_until(stop, fn):
    """fn() again and again on a thread until stop is set; the thread."""
    def run():
        while not stop.is_set():
            try:
                fn()
            except requests.RequestException:
                stop.wait(0.05)
    t = threading.Thread(target=run)
    t.start()
    return t


RACED = {"pstats": ("export_race_app:app", ["pstats"]),
         "flat": ("export_race_app:flat_app", ["callgrind", "api/functions", ""])}


@pytest.mark.parametrize("variant", sorted(RACED))
def test_an_export_that_lets_python_run_reads_nothing_a_clear_freed(tracfront, variant):
    """An export makes Python objects (pstats a dict per function; the
    exports that flatten the tree a tuple to hash each function's name
    with), so the collector can run, and a finalizer that lets the GIL go (a
    write, a wait) let a Clear on another thread free the tree under the
    walk and the code objects its flat view borrowed: the export then read
    freed nodes and code objects (release: SIGSEGV; ASan: heap-use-after-free
    in prof_label_tuple, prof_walk_next). Each export now works on a copy of
    the tree that holds its own references. Collapsed stacks, speedscope,
    the tree dump and a request's own page are not raced here: on this
    Python they make no GC-tracked object while they walk a tree, so nothing
    can collect there (their copy is a guard, not a fix)."""
    app, exports = RACED[variant]
    asan = os.environ.get("TF_SANITIZER") == "asan"  # code objects from malloc: ASan sees them
    srv = tracfront("--app", app, "--profile", "--profile-discard-first", "false",
                    "--threads", "2", "--io-threads", "2",
                    env={"PYTHONMALLOC": "malloc"} if asan else None)
    stop, answers = threading.Event(), []
    clear = lambda: requests.post(srv.url + "__profile__/clear", allow_redirects=False,
                                  timeout=30)
    loops = [loop_until(stop, lambda: requests.get(srv.url, timeout=30)) for _ in range(2)]
    loops.append(loop_until(stop, clear))
    deadline = time.monotonic() + 20
    try:
        while len(answers) < 300 and time.monotonic() < deadline and srv.alive():
            path = "__profile__/" + exports[len(answers) % len(exports)]
            try:
                answers.append((path, requests.get(srv.url + path, timeout=30).status_code))
            except requests.RequestException as e:
                answers.append((path, repr(e)))
    finally:
        stop.set()
        for t in loops:
            t.join(60)
    assert srv.alive(), srv.stderr[-3000:]
    # 404: a Clear just before, nothing profiled since (no file a tool could load)
    assert [a for a in answers if a[1] not in (200, 404)] == [], answers[-5:]
    assert sum(a[1] == 200 for a in answers) >= 10, answers


def test_exports_at_once_hold_one_copy_of_the_tree(tracfront, tmp_path):
    """Each export reads a copy of the tree, 72 bytes a node (720 MB at the
    10-million node cap): exports at once on several network threads, the
    first letting Python run (a collection's callback that waits, in
    export_overlap_app), held a copy each, so the peak grew by a copy per
    export. Only one copy exists at a time now, and the network threads do
    not wait for it (every connection on their loop would): the later
    exports are answered 503 with Retry-After at once, and the server's
    other pages keep answering meanwhile."""
    asan = os.environ.get("TF_SANITIZER") == "asan"  # no quarantine: freed memory goes back
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0"}
    srv = tracfront("--app", "export_overlap_app:app", "--profile", "--profile-discard-first",
                    "false", "--threads", "1", "--io-threads", "2",
                    "--profile-max-nodes", "1000000", env=env if asan else None)
    copy_kib = int(get(srv, "").text) * 72 // 1024  # 737,190 nodes
    get(srv, "arm", params={"dir": str(tmp_path)})
    rss = peak_from_now(srv.proc.pid)
    answers = []
    pstats_ = lambda: answers.append(requests.get(srv.url + "__profile__/pstats", timeout=90))
    first = threading.Thread(target=pstats_)
    first.start()
    try:
        wait_for(lambda: (tmp_path / "stalled-1").exists(), 30, "the first export never collected")
        for _ in range(4):  # on both network threads (one new connection each)
            later = requests.get(srv.url + "__profile__/pstats", timeout=30)
            assert (later.status_code, later.headers.get("Retry-After")) == (503, "1"), later.text
            latency = requests.get(srv.url + "__profile__/api/latency", timeout=30)
            assert latency.status_code == 200
    finally:
        (tmp_path / "release").touch()
        first.join(120)
    assert [a.status_code for a in answers] == [200]
    grew = memory_kib(srv.proc.pid, "VmHWM") - rss
    assert copy_kib * 0.9 < grew < copy_kib * 1.6, (grew, copy_kib, sorted(os.listdir(tmp_path)))
    assert requests.get(srv.url + "__profile__/pstats", timeout=90).status_code == 200


def hold_the_app_thread(srv):
    """With --threads 1, a request that sleeps holds the one slot: the next
    is queued, and an app thread (not the network thread that read it)
    runs it. Returns the sleeper's thread, to join."""
    sleeper = threading.Thread(target=get, args=(srv, "sleep"), kwargs={"params": "1.5"})
    sleeper.start()
    wait_for(lambda: "/sleep" in requests.get(srv.url + "__profile__/api/inflight",
                                              timeout=10).text, 10, "the sleeper running")
    return sleeper


@pytest.mark.parametrize("where", ["network", "app"])
def test_recursion_past_the_c_stack_under_the_frame_hook_is_a_recursion_error(tracfront, where):
    """The frame hook makes each Python call a C call: 19500 levels (under
    the app's recursion limit of 20000) overflowed the 8 MiB thread stack
    and killed the server with nothing logged. It is a RecursionError that
    says why, on a network thread and an app thread alike."""
    srv = tracfront(*PROFILED, "--profile-builtins=false", "--threads", "1",
                    "--inline-fast-calls=false")
    sleeper = hold_the_app_thread(srv) if where == "app" else None
    answer = get(srv, "deeprec", params="19500").text
    if sleeper:
        sleeper.join()
    thread, _, result = answer.partition(" ")
    assert thread.startswith("tf-io-") == (where == "network"), answer
    assert result.startswith("RecursionError: ") and "C stack" in result, answer
    assert "--profile-builtins" in result, answer
    assert get(srv, "deeprec", params="800").text.endswith(" 800")  # not refused needlessly
    assert srv.alive()
    srv.stop()
    assert srv.proc.returncode == 0, srv.stderr[-3000:]


@pytest.mark.parametrize("kib", [256, 512])
def test_recursion_on_a_thread_with_a_small_stack_is_a_recursion_error(tracfront, kib):
    """A thread of 512 KiB or less had no check at all (the check wanted
    the reserve, at least 256 KiB, under half the stack): 3000 levels
    killed the server with nothing logged. A small stack keeps a quarter."""
    srv = tracfront(*PROFILED, "--profile-builtins=false")
    answer = get(srv, "smallstack", params="%d,3000" % kib).text
    assert answer.startswith("RecursionError: ") and "C stack (" in answer, answer
    if os.environ.get("TF_SANITIZER") != "tsan":  # TSan enlarges a small stack (its own TLS)
        assert "C stack (%d KiB)" % kib in answer, answer
    assert get(srv, "smallstack", params="%d,40" % kib).text == "40"  # not refused needlessly
    assert srv.alive()
    srv.stop()
    assert srv.proc.returncode == 0, srv.stderr[-3000:]


def test_a_thread_deep_when_the_hook_is_set_is_checked_once_it_unwinds(tracfront, tmp_path):
    """The stack floor came from a thread's first call after the hook was set:
    a thread waiting 20 KiB from its stack's end then was never checked, and
    recursing once it had unwound killed the server (SIGSEGV). The floor now
    follows the highest call seen on the thread."""
    ready = tmp_path / "ready"
    env = dict(os.environ, DEEP_KIB="256", DEEP_LEFT="20", DEEP_REC="3000",
               DEEP_READY=str(ready))
    srv = tracfront("--app", "deep_first_app:app", "--profile", "--profile-discard-first",
                    "false", "--profile-builtins=false", env=env)
    wait_for(ready.exists, 10, "the thread to be deep")
    assert get(srv, "warm").text.startswith("left ")  # the hook is set while it waits
    said = requests.get(srv.url + "go", timeout=40).text
    assert "out: RecursionError: " in said and "C stack" in said, said
    assert srv.alive()


def test_a_generator_resumed_at_the_stack_edge_is_left_unrun(tracfront):
    """A resumption the frame hook refuses is not run, as one past
    CPython's recursion limit is not: the RecursionError was thrown into the
    generator, whose except clause ran at the stack's edge, caught it and
    yielded, so send() returned as if resumed (and its value was lost)."""
    srv = tracfront(*PROFILED, "--profile-builtins=false")
    said, ran, closed = get(srv, "genedge").text.split("; ")
    assert said.startswith("RecursionError: ") and "C stack" in said, said
    assert (ran, closed) == ("ran: -", "closed: True")
    gen = row(rows(srv)["functions"], r"\(gen\)$")
    assert gen["ncalls"] == 1  # next(g): the refused resumption is no call
    assert srv.alive()


CRASH = "Fatal Python error: Segmentation fault"
# under ASan its own handler reports the signal after faulthandler's, and aborts
FATAL = (signal.SIGSEGV, signal.SIGABRT) if os.environ.get("TF_SANITIZER") else (signal.SIGSEGV,)


@pytest.mark.parametrize("where", ["network", "app"])
def test_a_stack_overflow_leaves_the_python_stacks_in_the_error_log(tracfront, where):
    """faulthandler runs on an alternate signal stack, which sigaltstack
    gives only to the thread that enabled it: a stack overflow on a thread
    without one killed the process with nothing logged."""
    if os.environ.get("TF_SANITIZER") == "tsan":
        pytest.skip("ThreadSanitizer takes the SIGSEGV and exits 66 itself")
    srv = tracfront(*APP, "--threads", "1", "--inline-fast-calls=false")
    srv.expect_fail = True
    sleeper = hold_the_app_thread(srv) if where == "app" else None
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "overflow", timeout=60)
    if sleeper:
        sleeper.join()
    assert -srv.proc.wait(30) in FATAL, srv.error_log[-3000:]
    log = srv.error_log
    said = re.search(r"overflowing on (\S+)", log)
    assert said and said.group(1).startswith("tf-io-") == (where == "network"), log[-3000:]
    assert CRASH in log, log[-3000:]
    assert re.search(r'File "[^"]*%s", line \d+ in overflow' % FILE, log), log[-3000:]


@pytest.mark.parametrize("path", ["cprofile", "setprofile", "above", "below", "aside"])
def test_an_app_that_replaces_the_profile_hook_is_left_out_and_said(tracfront, path):
    """cProfile's enable() or sys.setprofile() takes the thread's profile
    hook: the rest of the request went unseen and its time was charged to
    the call that took the hook. Given back in another call than took it
    (its caller, a callee, the next call at the same depth), the profile's
    open calls were not the thread's: what followed was charged to the
    call that took it (marker() called by take(), take;marker in the
    collapsed stacks). Either request is left out, the page, the API and the
    error log (once) say so, and the next request is profiled."""
    srv = tracfront(*PROFILED, "--profile-builtins")
    for _ in range(2):
        get(srv, path)
    for _ in range(3):
        get(srv, "after")
    doc = rows(srv)
    names = [f["function"] for f in doc["functions"]]
    assert not [n for n in names if n.startswith(("{method 'enable'", "{built-in method sys.set"))]
    assert not [n for n in names if re.search(r"\((marker|take|give_back|given_back_\w+)\)$", n)]
    assert "marker" not in get(srv, "__profile__/collapsed").text
    assert row(doc["functions"], r"\(after\)$")["ncalls"] == 3
    assert row(doc["functions"], r"\(app\)$")["ncalls"] == 3
    assert doc["hook_replaced_requests"] == 2
    assert REPLACED in get(srv, "__profile__").text
    assert srv.error_log.count(REPLACED) == 1, srv.error_log


def test_the_left_out_request_is_logged_escaped(tracfront):
    """The request's target went into the log line raw: bytes past 0x7e
    pass the server's target check, 0x9b among them (a terminal's CSI)."""
    srv = tracfront(*PROFILED, "--profile-builtins")
    answer = srv.raw(b"GET /setprofile?\x9b31mX HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer
    log = (srv.workdir / "error.log").read_bytes()
    assert REPLACED.encode() in log, log
    assert b"\x9b" not in log and b"GET /setprofile?\\x9b31mX " in log, log


def test_with_workers_the_left_out_line_does_not_promise_a_count(tracfront):
    """With --workers the front's page does not count left-out requests
    (each worker's log says its first): the line said the page did."""
    srv = tracfront(*PROFILED, "--profile-builtins", "--workers", "1")
    get(srv, "setprofile")
    wait_for(lambda: REPLACED in srv.error_log, 10, "the left-out line")
    line = [x for x in srv.error_log.splitlines() if REPLACED in x][0]
    assert "page says how many" not in line and "--workers" in line, line


@pytest.mark.parametrize("builtins", ["true", "false"])
def test_saving_and_restoring_the_profile_hook_gives_it_back(tracfront, builtins):
    """old = sys.getprofile(); sys.setprofile(f); ...; sys.setprofile(old):
    old is tracfront's collector, which was not callable (every such
    request a 500, TypeError). Restored, it profiles the rest exactly."""
    srv = tracfront(*PROFILED, "--profile-builtins=" + builtins)
    for _ in range(3):
        get(srv, "saverestore")
    doc = rows(srv)
    assert row(doc["functions"], r"\(after\)$")["ncalls"] == 6
    assert row(doc["functions"], r"\(saverestore\)$")["ncalls"] == 3
    assert doc["hook_replaced_requests"] == 0
    assert REPLACED not in srv.error_log


@pytest.mark.parametrize("builtins", ["true", "false"])
def test_a_profiler_that_passes_events_on_keeps_its_hook(tracfront, builtins):
    """f = sys.setprofile'd profiler calling old(frame, event, arg), old
    being what sys.getprofile() gave it: the collector took the hook back at
    the first event f passed on. f keeps it, and the events f passes on are
    profiled, so the request is whole."""
    srv = tracfront(*PROFILED, "--profile-builtins=" + builtins)
    for _ in range(2):
        events, kept = get(srv, "chain").text.split("; ")
        assert kept == "kept: True", (events, kept)
        assert int(events.split(": ")[1]) > 10, events
    doc = rows(srv)
    assert row(doc["functions"], r"\(after\)$")["ncalls"] == 6
    assert row(doc["functions"], r"\(chain\)$")["ncalls"] == 2
    assert doc["hook_replaced_requests"] == 0
    assert REPLACED not in srv.error_log
