"""The profiler's exports with the names real code has: non-ASCII, not
UTF-8 at all, with control characters, shared by several functions; and raw
request paths in the latency reports. Each export is read by the tool it is
for (json, pstats, prometheus_client's parser, callgrind_annotate) and must
stay valid whatever the names and paths were."""
import json
import marshal
import os
import pathlib
import pstats
import re
import shutil
import subprocess
import time

import pytest
import requests

from upload_util import assert_refused_early
from workers_util import concurrently, wait_for

APPS = pathlib.Path(__file__).resolve().parents[1] / "apps"
APP = ("--app", "profile_names_app:app", "--profile", "--profile-discard-first", "false")


def get(srv, path, **params):
    r = requests.get(srv.url + "__profile__/" + path, params=params, timeout=30)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return r


def get_json(srv, path, **params):
    """A JSON report, decoded as strict UTF-8 (requests would guess)."""
    return json.loads(get(srv, path, **params).content.decode("utf-8"))


def raw_get(srv, target):
    """A GET with the target's bytes sent as they are (a browser would
    percent-encode them; a client need not)."""
    answer = srv.raw(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]


def routes(srv, want):
    """The latency report's routes, once want is among them (a request is
    recorded just after its answer)."""
    deadline = time.monotonic() + 5
    while True:
        found = {r["route"] for r in get_json(srv, "api/latency")["routes"]}
        if want in found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_non_ascii_names_and_paths_in_json(tracfront):
    srv = tracfront(*APP)
    assert requests.get(srv.url + "cafe", timeout=10).status_code == 200
    raw_get(srv, "/café/x".encode())
    raw_get(srv, b"/raw\xff\xfe")
    names = [f["name"] for f in get_json(srv, "api/functions")["functions"]]
    assert "café" in names
    frames = [f["name"] for f in get_json(srv, "speedscope.json")["shared"]["frames"]]
    assert any(f.startswith("café (") for f in frames), frames
    found = routes(srv, "/raw%FF%FE")  # a byte that is not UTF-8 as its escape in a route
    assert "/café/x" in found and "/raw%FF%FE" in found, found
    targets = [r["target"] for r in get_json(srv, "api/slowest")["slowest"]]
    assert "/café/x" in targets and "/raw\ufffd\ufffd" in targets, targets


def test_prometheus_scrape_survives_raw_bytes_in_a_path(tracfront):
    parser = pytest.importorskip("prometheus_client.parser")
    srv = tracfront(*APP)
    raw_get(srv, b"/raw\xff\xfe")
    raw_get(srv, b"/raw\xfe\xff")
    raw_get(srv, b"/raw%FF%FE")  # the same route as the raw bytes: one series, not two alike
    raw_get(srv, b'/q"uo\\te')
    routes(srv, '/q"uo\\te')
    text = get(srv, "metrics").content.decode("utf-8")  # strict: the scrape is UTF-8
    series = [(s.name, tuple(sorted(s.labels.items())))
              for f in parser.text_string_to_metric_families(text) for s in f.samples]
    labels = {dict(labels).get("route") for _, labels in series}
    # two routes that differ only in bytes that are not UTF-8 stay two series
    assert {"/raw%FF%FE", "/raw%FE%FF", '/q"uo\\te'} <= labels, labels
    assert len(series) == len(set(series)), "a series is written twice"


LEGACY_FILE = os.fsdecode(b"/nowhere/caf\xe9_legacy.py")  # 'caf\udce9': not valid Unicode
LEGACY_SHOWN = "/nowhere/caf\\udce9_legacy.py"  # what the reports show instead


def test_a_file_name_that_is_not_utf8_fails_no_report(tracfront, tmp_path):
    srv = tracfront(*APP)
    for path in ("cafe", "legacy"):
        assert requests.get(srv.url + path, timeout=10).status_code == 200
    functions = get_json(srv, "api/functions")["functions"]
    assert {"legacy", "café"} <= {f["name"] for f in functions}
    assert [f["file"] for f in functions if f["name"] == "legacy"] == [LEGACY_SHOWN]
    frames = [f["name"] for f in get_json(srv, "speedscope.json")["shared"]["frames"]]
    assert any(LEGACY_SHOWN in f for f in frames), frames
    collapsed = get(srv, "collapsed").content.decode("utf-8")
    assert "legacy (" + LEGACY_SHOWN in collapsed
    callgrind = get(srv, "callgrind").content.decode("utf-8")
    assert "fl=" + LEGACY_SHOWN in callgrind and "fl=?" not in callgrind
    page = requests.get(srv.url + "__profile__", timeout=30).text
    assert "café" in page and "caf\\udce9_legacy.py" in page  # flame graph and table kept
    # pstats keeps the name as Python has it, as cProfile would
    stats = marshal.loads(get(srv, "pstats").content)
    assert (LEGACY_FILE, 1, "legacy") in stats
    path = tmp_path / "out.pstats"
    path.write_bytes(get(srv, "pstats").content)
    assert (LEGACY_FILE, 1, "legacy") in pstats.Stats(str(path)).stats


def callgrind_blocks(text):
    """The callgrind export as {fn: {"fl": file, "self": cost, "calls": {cfn: count}}}
    (a name's blocks added up, as the readers do), checking that every cfn= names
    a fn=."""
    blocks, current, callee = {}, None, None
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key == "fl":
            fl = value
        elif eq and key == "fn":
            current = blocks.setdefault(value, {"fl": fl, "self": 0, "calls": {}})
        elif eq and key == "cfn":
            callee = value
        elif eq and key == "calls":
            current["calls"][callee] = current["calls"].get(callee, 0) + int(value.split()[0])
        elif line and line[0].isdigit() and current is not None and callee is None:
            current["self"] += int(line.split()[1])
        elif not line:
            callee = None
    for block in blocks.values():
        for cfn in block["calls"]:
            assert cfn in blocks, "cfn=%s has no fn= block" % cfn
    return blocks


def test_callgrind_tells_functions_of_the_same_name_apart(tracfront, tmp_path):
    srv = tracfront(*APP)
    for _ in range(2):
        assert requests.get(srv.url + "same-names", timeout=10).status_code == 200
    text = get(srv, "callgrind").content.decode("utf-8")
    blocks = callgrind_blocks(text)
    app_file = str(APPS / "profile_names_app.py")
    runs = sorted(fn for fn in blocks if fn.startswith("run "))
    lambdas = sorted(fn for fn in blocks if fn.startswith("<lambda> "))
    assert len(runs) == 2 and len(lambdas) == 2, sorted(blocks)
    for fn in runs + lambdas:
        assert fn.startswith(("run " + app_file + ":", "<lambda> " + app_file + ":")), fn
        assert blocks[fn]["fl"] == app_file
    [app] = [fn for fn in blocks if fn.startswith("app ")]
    assert {fn: n for fn, n in blocks[app]["calls"].items() if fn in runs + lambdas} == \
        {fn: 2 for fn in runs + lambdas}
    annotate = shutil.which("callgrind_annotate")
    if annotate:  # valgrind's own reader agrees
        path = tmp_path / "callgrind.out.tracfront"
        path.write_text(text)
        out = subprocess.run([annotate, "--inclusive=yes", "--threshold=100", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        for fn in runs + lambdas:
            assert ":" + fn + "\n" in out.stdout, out.stdout


def test_callgrind_export_of_many_functions(tracfront):
    """40,000 functions called from one: each is listed once as its callee
    with its one call. (The export is built holding the GIL; finding each
    function's callees by scanning every function took 6 s here, one pass a
    fraction of a second: measured by hand, not asserted, as timings are not
    in tests.)"""
    n = 40000
    srv = tracfront(*APP)
    assert requests.get(srv.url + "many", params=str(n), timeout=120).status_code == 200
    text = get(srv, "callgrind").content.decode("utf-8")
    blocks = callgrind_blocks(text)
    [caller] = [fn for fn in blocks if fn.startswith("many ")]
    calls = blocks[caller]["calls"]
    assert len([fn for fn in calls if fn.startswith("f")]) == n
    assert all(calls[fn] == 1 for fn in calls if fn.startswith("f"))


def test_pstats_adds_up_functions_that_share_a_label(tracfront, tmp_path):
    """eval and exec compile a new code object per call, each labelled
    <string>:1(<module>): as cProfile's snapshot does for callers, and
    pstats.Stats.add for whole entries, their figures are added up, never
    overwritten by whichever came last."""
    srv = tracfront(*APP)
    for _ in range(3):
        assert requests.get(srv.url + "eval", timeout=10).status_code == 200
    path = tmp_path / "eval.pstats"
    path.write_bytes(get(srv, "pstats").content)
    stats = pstats.Stats(str(path)).stats
    module = ("<string>", 1, "<module>")
    [g] = [f for f in stats if f[2] == "g"]
    cc, nc, tt, ct, callers = stats[g]
    assert (cc, nc) == (6, 6)
    assert callers[module][:2] == (6, 6), callers  # (nc, cc) of that caller: 6 calls
    assert stats[module][:2] == (6, 6)
    assert abs(sum(c[3] for c in callers.values()) - ct) < 1e-6  # every call's time


def test_control_characters_in_names_keep_line_formats_intact(tracfront, tmp_path):
    """A newline or tab in a function or file name (code.replace can make
    one) must not split a collapsed stack or a callgrind line: each becomes
    a space, as in the tree a worker hands its front."""
    srv = tracfront(*APP)
    assert requests.get(srv.url + "control", timeout=10).status_code == 200
    collapsed = get(srv, "collapsed").content.decode("utf-8")
    for line in collapsed.splitlines():
        assert re.fullmatch(r"[^\t\r]+ \d+", line), line
    frames = {frame.split(" (")[0] for line in collapsed.splitlines()
              for frame in line.rpartition(" ")[0].split(";")}
    assert {"new line", "tab here", "in_odd_file"} <= frames, frames
    assert "in_odd_file (file with newline.py:1)" in collapsed
    text = get(srv, "callgrind").content.decode("utf-8")
    blocks = callgrind_blocks(text)
    assert "new line names.py:1" in blocks and "tab here names.py:1" in blocks, sorted(blocks)
    assert blocks["in_odd_file file with newline.py:1"]["fl"] == "file with newline.py"
    annotate = shutil.which("callgrind_annotate")
    if annotate:
        path = tmp_path / "callgrind.out.tracfront"
        path.write_text(text)
        out = subprocess.run([annotate, str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "malformed" not in out.stderr, out.stderr


def speedscope_self_times(doc):
    """Replay an evented speedscope profile as speedscope does (events in
    time order, each close matching the frame open on top) and return each
    frame name's own time."""
    frames = [f["name"] for f in doc["shared"]["frames"]]
    [profile] = doc["profiles"]
    assert profile["type"] == "evented" and profile["unit"] == "nanoseconds"
    stack, own, last = [], {}, profile["startValue"]
    for e in profile["events"]:
        assert e["at"] >= last and 0 <= e["frame"] < len(frames), e
        if stack:  # time since the last event is the top frame's own
            own[frames[stack[-1]]] = own.get(frames[stack[-1]], 0) + e["at"] - last
        last = e["at"]
        if e["type"] == "O":
            stack.append(e["frame"])
        else:
            assert e["type"] == "C" and stack and stack.pop() == e["frame"], e
    assert not stack and last <= profile["endValue"]
    return own


def test_collapsed_and_speedscope_keep_every_function_and_all_the_time(tracfront):
    """tiny0..2 each run well under a microsecond: whole microseconds would
    round their paths to nothing (they were dropped), and the totals with
    them. In nanoseconds every path is there and the totals are pstats'.
    speedscope's evented profile gives each function the own time pstats
    gives it."""
    srv = tracfront(*APP)
    for _ in range(3):
        assert requests.get(srv.url + "wide", timeout=10).status_code == 200
    stats = marshal.loads(get(srv, "pstats").content)
    names = {f[2] for f in stats}
    assert {"tiny0", "tiny1", "tiny2", "wide", "app"} <= names
    total_ns = sum(v[2] for v in stats.values()) * 1e9  # every function's own time
    lines = get(srv, "collapsed").content.decode("utf-8").splitlines()
    counts = [int(line.rpartition(" ")[2]) for line in lines]
    leaves = {line.rpartition(" ")[0].split(";")[-1].split(" (")[0] for line in lines}
    assert names <= leaves | {"app", "wide"}, (names, leaves)
    assert abs(sum(counts) - total_ns) <= 1 + total_ns * 1e-9, (sum(counts), total_ns)
    doc = get_json(srv, "speedscope.json")
    own = speedscope_self_times(doc)
    assert doc["profiles"][0]["endValue"] == sum(own.values()) == sum(counts)
    assert {name.split(" (")[0] for name in own} == names, (own, names)
    for f, v in stats.items():
        [(name, ns)] = [(n, ns) for n, ns in own.items() if n.split(" (")[0] == f[2]]
        assert abs(ns - v[2] * 1e9) <= 2, (name, ns, v[2])


DOWNLOADS = {"pstats": "tracfront.pstats", "callgrind": "callgrind.out.tracfront",
             "collapsed": "tracfront.collapsed", "speedscope.json": "tracfront.speedscope.json"}


@pytest.mark.parametrize("workers", [0, 2])
def test_downloads_are_named_and_methods_answered_alike(tracfront, workers):
    """Each export is a download with a file name the tool expects (a saved
    pstats was called "pstats"); a method a page does not take is 405 with
    Allow, on the pages and the controls alike (a POST to an export was 404).
    With --workers a worker relays the front's answer, headers included."""
    srv = tracfront(*APP, *(("--workers", workers) if workers else ()))
    requests.get(srv.url + "cafe", timeout=10)
    for path, name in DOWNLOADS.items():
        r = get(srv, path)
        assert r.headers.get("Content-Disposition") == 'attachment; filename="%s"' % name, \
            (path, r.headers)
    base = srv.url + "__profile__/"
    for method, path, allow in [("POST", "pstats", "GET, HEAD"), ("POST", "api/functions", "GET, HEAD"),
                                ("DELETE", "metrics", "GET, HEAD"), ("GET", "start", "POST"),
                                ("PUT", "clear", "POST")]:
        r = requests.request(method, base + path, allow_redirects=False, timeout=10)
        assert (r.status_code, r.headers.get("Allow")) == (405, allow), (method, path, r.text)
    assert requests.post(base + "clear", allow_redirects=False, timeout=10).status_code == 303


@pytest.mark.parametrize("workers", [0, 2])
def test_upload_a_page_does_not_take_is_refused_before_its_body(tracfront, workers):
    """A 405 (or the 403 of a client the profiler is not open to) follows
    from the head alone: it comes instead of 100 Continue, and without
    Expect before the body is read (it was spooled whole first)."""
    srv = tracfront(*APP, *(("--workers", workers) if workers else ()))
    head = assert_refused_early(srv, b"POST", b"/__profile__/metrics", 405)
    assert b"Allow: GET, HEAD\r\n" in head, head
    assert b"Allow: POST\r\n" in assert_refused_early(srv, b"PUT", b"/__profile__/clear", 405)
    head = assert_refused_early(srv, b"POST", b"/__profile__/metrics", 403,
                                b"X-Forwarded-For: 192.0.2.1\r\n")
    assert b"Allow:" not in head, head
    r = requests.post(srv.url + "__profile__/clear", data=b"x" * 300000, allow_redirects=False,
                      headers={"Expect": "100-continue"}, timeout=10)
    assert r.status_code == 303  # a control takes its POST, body and all


@pytest.mark.parametrize("mode", ["callers", "callees"])
def test_api_functions_takes_the_pages_mode(tracfront, mode):
    """/api/functions takes the page's parameters (README), mode included:
    with callers or callees each function lists them, with that edge's
    figures, as the page's indented rows do."""
    srv = tracfront(*APP)
    for _ in range(2):
        assert requests.get(srv.url + "same-names", timeout=10).status_code == 200
    doc = get_json(srv, "api/functions", mode=mode, filter=r"\((app|run)\)$")
    rows = {(f["name"], f["line"]): f for f in doc["functions"]}
    [app] = [f for f in doc["functions"] if f["name"] == "app"]
    runs = [f for f in doc["functions"] if f["name"] == "run"]
    assert len(runs) == 2 and all(mode in f for f in doc["functions"]), rows
    if mode == "callers":
        for run in runs:
            assert [(c["name"], c["ncalls"]) for c in run["callers"]] == [("app", 2)]
            assert run["callers"][0]["cumtime"] == pytest.approx(run["cumtime"])
        assert app["callers"] == []
    else:
        callees = {(c["name"], c["line"]): c["ncalls"] for c in app["callees"]}
        for run in runs:
            assert callees[("run", run["line"])] == 2
        assert {("<lambda>", 2)} <= {(c["name"], c["ncalls"]) for c in app["callees"]}
    stats = get_json(srv, "api/functions", filter=r"\(app\)$")["functions"][0]
    assert "callers" not in stats and "callees" not in stats  # mode=stats: the rows alone


def test_function_table_shows_one_row_per_label(tracfront):
    """The code objects eval and exec make per call share one label: the
    table (JSON and page) shows it once with the calls added up, and once
    among g's callers, as pstats does, not a row per request."""
    srv = tracfront(*APP)
    for _ in range(3):
        assert requests.get(srv.url + "eval", timeout=10).status_code == 200
    rows = get_json(srv, "api/functions", mode="callers")["functions"]
    modules = [f for f in rows if f["function"] == "<string>:1(<module>)"]
    assert [(f["ncalls"], f["pcalls"]) for f in modules] == [(6, 6)], modules
    [g] = [f for f in rows if f["name"] == "g"]
    assert [(c["function"], c["ncalls"]) for c in g["callers"]] == [("<string>:1(<module>)", 6)]
    assert g["callers"][0]["cumtime"] == pytest.approx(g["cumtime"])
    page = requests.get(srv.url + "__profile__", params={"mode": "callers"}, timeout=30).text
    table = page[page.index("id=functions"):]
    assert table.count("<code>&#60;string&#62;:1(&#60;module&#62;)</code>") == 2  # row, caller


def calls_of(srv, name, many_calls):
    """ncalls of the functions named name (a regular expression), once many()
    has been recorded many_calls times (a request's calls are merged just
    after its answer)."""
    deadline = time.monotonic() + 5
    while True:
        stats = marshal.loads(get(srv, "pstats").content)
        if [v[1] for f, v in stats.items() if f[2] == "many"] == [many_calls] or \
                time.monotonic() > deadline:
            return sum(v[1] for f, v in stats.items() if re.fullmatch(name, f[2]))
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [0, 2])
def test_calls_past_the_node_cap_are_reported(tracfront, workers):
    """--profile-max-nodes: a call past the cap is not recorded but counted,
    and the count is shown (page, JSON), with every worker's added up: the
    calls recorded and the calls past the cap are all the calls made. The
    error log says so once per Clear."""
    flags = ("--workers", workers) if workers else ()
    whole = tracfront(*APP, *flags, "--profile-builtins")
    capped = tracfront(*APP, *flags, "--profile-builtins", "--profile-max-nodes", "100")
    for srv in (whole, capped):
        for _ in range(3):
            assert requests.get(srv.url + "many", params="300", timeout=30).status_code == 200
    # many() makes 300 calls (f0 to f299), after the calls that build them in
    # a process's first request, and app then calls len(): the calls past the
    # cap are among those (whichever worker had which request)
    last = r"f\d+|<built-in method builtins\.len>"
    assert calls_of(whole, last, 3) == 903
    assert get_json(whole, "api/functions")["dropped_calls"] == 0
    recorded = calls_of(capped, last, 3)
    dropped = get_json(capped, "api/functions")["dropped_calls"]
    assert 0 < recorded < 903 and recorded + dropped == 903, (recorded, dropped)
    page = requests.get(capped.url + "__profile__", timeout=30).text
    assert "%d calls past --profile-max-nodes (100) were not recorded" % dropped in page
    assert "were not recorded" not in requests.get(whole.url + "__profile__", timeout=30).text
    if workers:
        return  # each worker says so in the error log, once it reaches the cap
    line = "--profile-max-nodes (100) reached"
    assert capped.error_log.count(line) == 1, capped.error_log
    assert line not in whole.error_log
    requests.post(capped.url + "__profile__/clear", allow_redirects=False, timeout=10)
    assert get_json(capped, "api/functions")["dropped_calls"] == 0
    assert requests.get(capped.url + "many", params="300", timeout=30).status_code == 200
    calls_of(capped, "many", 1)
    deadline = time.monotonic() + 5  # written just after the merge
    while capped.error_log.count(line) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert capped.error_log.count(line) == 2, capped.error_log


def mine_on_both_workers(srv, n):
    """/mine?n (n functions of the worker's own) until both workers ran it."""
    pids = set()
    for _ in range(20):
        res = concurrently(srv.url + "mine?%d" % n, 8, 3)
        assert all(status == 200 for status, _ in res), res[:3]
        pids |= {pid for _, pid in res}
        if len(pids) == 2:
            return
    raise AssertionError("every /mine request went to one worker: %s" % pids)


def test_the_fronts_merge_past_the_node_cap_is_logged_once_per_clear(tracfront):
    """With --workers the front merges the workers' call trees into one under
    the same cap: each worker's tree stays under it (300 functions of its
    own, so nothing in its log), their merge does not. The front's error log
    says so once per Clear, as a worker does of its own tree."""
    srv = tracfront(*APP, "--workers", 2, "--profile-max-nodes", "500")
    line = "--profile-max-nodes (500) reached"

    def said():
        lines = [entry for entry in srv.error_log.splitlines() if line in entry]
        assert not [entry for entry in lines if "[worker " in entry], lines
        return len(lines)
    for clears in range(2):
        mine_on_both_workers(srv, 300)
        wait_for(lambda: get_json(srv, "api/functions")["dropped_calls"] > 0, 5,
                 "the merge to pass the cap")
        get(srv, "")  # merged again: said once
        assert said() == clears + 1, srv.error_log
        requests.post(srv.url + "__profile__/clear", allow_redirects=False, timeout=10)
        assert get_json(srv, "api/functions")["dropped_calls"] == 0


def slowest_id(srv, target):
    """The id of target's row among the slowest requests (recorded just
    after its answer)."""
    deadline = time.monotonic() + 5
    while True:
        ids = [r["id"] for r in get_json(srv, "api/slowest")["slowest"] if r["target"] == target]
        if ids or time.monotonic() > deadline:
            assert ids, target
            return ids[0]
        time.sleep(0.05)


DEPTH = 20000


@pytest.mark.parametrize("workers", [0, 2])
def test_a_deep_call_chain_fails_no_page_or_export(tracfront, workers):
    """One request 20000 calls deep: every walk of its call tree (the flame
    graph, zoom, the table's flattening, the exports, a worker's tree dump)
    used to recurse once per level and overflowed the network thread's
    stack. The server answers every page, and the flame graph stops at 1000
    rows and says so. With --workers the front merges the workers' trees."""
    # (the frame hook's calls take C stack: 20000 levels are a RecursionError there)
    srv = tracfront(*APP, "--profile-builtins", *(("--workers", workers) if workers else ()))
    r = requests.get(srv.url + "deep", params=str(DEPTH), timeout=60)
    assert r.status_code == 200, r.text[:300]
    rid = slowest_id(srv, "/deep?%d" % DEPTH)
    page = get(srv, "").text
    assert "Flame graph" in page and "deeper than the 1000 rows drawn" in page, page[-3000:]
    flame = page[page.index("id=flame"):]
    svg = flame[flame.index("<svg"):flame.index("</svg>")]
    assert 1000 <= svg.count("<rect") <= 1100, svg.count("<rect")
    deep_rows = [f for f in get_json(srv, "api/functions", filter="deep")["functions"]]
    assert [(f["name"], f["ncalls"], f["pcalls"]) for f in deep_rows] == [("deep", DEPTH + 1, 1)]
    request_page = get(srv, "request", id=rid).text
    assert "deeper than the 1000 rows drawn" in request_page
    # zoomed deep down: drawn from there
    zoomed = get(srv, "request", id=rid, zoom=DEPTH - 10).text
    assert zoomed.count("<rect") >= 5 and "deeper than the 1000" not in zoomed
    stats = marshal.loads(get(srv, "pstats").content)
    assert [v[:2] for f, v in stats.items() if f[2] == "deep"] == [(1, DEPTH + 1)]
    assert "fn=deep" in get(srv, "callgrind").text
    assert get(srv, "tree").text.count("\tdeep\n") == DEPTH + 1
    # speedscope is evented: its size grows with the tree, not the depth squared
    scope = get(srv, "speedscope.json")
    assert len(scope.content) < 200 * DEPTH
    own = speedscope_self_times(json.loads(scope.content))
    assert [n for n in own if n.startswith("deep (")]
    # collapsed stacks write each path whole (20000 frames on the last line):
    # past the size limit the export is refused, saying what to use instead
    r = requests.get(srv.url + "__profile__/collapsed", timeout=60)
    assert r.status_code == 500 and "speedscope" in r.text, (r.status_code, r.text[:300])
    assert "tracfront_request_duration_seconds" in get(srv, "metrics").text
    assert requests.get(srv.url + "cafe", timeout=10).status_code == 200
    assert srv.alive()


def test_filter_is_a_python_regular_expression(tracfront):
    """The filter is Python's re, as in pstats and repoze.profile (it was
    POSIX extended: \\d, (?i) and non-greedy patterns meant other things)."""
    srv = tracfront(*APP)
    assert requests.get(srv.url + "wide", timeout=10).status_code == 200

    def names(pattern):
        return sorted(f["name"] for f in get_json(srv, "api/functions", filter=pattern)["functions"])
    assert names(r"tiny\d") == ["tiny0", "tiny1", "tiny2"]
    assert names(r"(?i)TINY0") == ["tiny0"]
    assert names(r"profile_names_app\.py:\d+\(tiny[12]\)$") == ["tiny1", "tiny2"]
    assert names(r"tiny(?!0)\w") == ["tiny1", "tiny2"]
    bad = requests.get(srv.url + "__profile__/api/functions", params={"filter": "tiny("},
                       timeout=10)
    assert bad.status_code == 400
    assert "the filter cannot be used: not a valid regular expression: missing closing parenthesis" in bad.json()["error"]
    page = requests.get(srv.url + "__profile__", params={"filter": "tiny("}, timeout=10).text
    assert "The filter cannot be used: not a valid regular expression: missing closing parenthesis" in page


def test_a_filter_that_backtracks_for_ever_is_refused(tracfront):
    """Python's re takes ages over (\\w|\\w)*\\d{5}$ on a long name, holding
    the GIL and so every app thread (any page that an allowed browser loads could send
    it): the match is bounded, the filter refused with a 400, the app serves."""
    srv = tracfront(*APP)
    assert requests.get(srv.url + "wide", timeout=10).status_code == 200
    bad = requests.get(srv.url + "__profile__/api/functions",
                       params={"filter": r"(\w|\w)*\d\d\d\d\d$"}, timeout=30)
    assert bad.status_code == 400
    assert "took too long" in bad.json()["error"]
    assert requests.get(srv.url + "wide", timeout=10).status_code == 200


def test_repoze_parameter_names(tracfront):
    """repoze.profile's form names its filter `filename` and its full-path
    switch `fulldirs`: a bookmarked repoze link means the same here."""
    srv = tracfront(*APP)
    assert requests.get(srv.url + "wide", timeout=10).status_code == 200
    rows = get_json(srv, "api/functions", filename=r"tiny[01]")["functions"]
    assert sorted(f["name"] for f in rows) == ["tiny0", "tiny1"]
    short = requests.get(srv.url + "__profile__", params={"filename": "tiny0"}, timeout=10).text
    full = requests.get(srv.url + "__profile__", params={"filename": "tiny0", "fulldirs": "1"},
                        timeout=10).text
    app_file = str(APPS / "profile_names_app.py")
    assert "<code>profile_names_app.py:" in short and "<code>%s:" % app_file not in short
    assert "<code>%s:" % app_file in full
    assert re.search(r"1 of \d+ functions match, 1 shown", full), full
