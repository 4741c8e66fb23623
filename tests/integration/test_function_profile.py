"""The function profiler: call counts equal cProfile's exactly on a
deterministic workload (functions, builtins, recursion, generators), also
with concurrent profiled requests; the exports load in the tools they are
for (pstats, callgrind_annotate; collapsed and speedscope checked by their
format); the page's Start/Stop/Clear are POSTs refused from other sites."""
import marshal
import os
import pathlib
import pstats
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests

from busy_tree_util import check_the_page_during_exports

ROOT = pathlib.Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"
WORKLOAD_FILE = str(APPS / "profiled_app.py")


def cprofile_stats(rounds):
    script = (
        "import cProfile, marshal, sys\n"
        "sys.path.insert(0, %r)\n"
        "import profiled_app\n"
        "p = cProfile.Profile()\n"
        "p.enable()\n"
        "for _ in range(%d):\n"
        "    profiled_app.workload()\n"
        "p.disable()\n"
        "p.create_stats()\n"
        "sys.stdout.buffer.write(marshal.dumps(p.stats))\n" % (str(APPS), rounds))
    out = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True,
                         check=True, env={"PATH": os.environ["PATH"]}).stdout
    return marshal.loads(out)


def in_workload(func):
    return func[0] == WORKLOAD_FILE and func[2] != "app"


def comparable(stats):
    """(cc, nc) per function of the workload, and per (callee, workload caller)
    edge, builtins included: what the two profilers must agree on."""
    funcs = {f: (v[0], v[1]) for f, v in stats.items() if in_workload(f)}
    edges = {(f, caller): (c[0], c[1])
             for f, v in stats.items() for caller, c in v[4].items() if in_workload(caller)}
    return funcs, edges


def tracfront_stats(srv):
    r = requests.get(srv.url + "__profile__/pstats", timeout=30)
    assert r.status_code == 200
    return marshal.loads(r.content)


def test_counts_equal_cprofile(tracfront, tmp_path):
    srv = tracfront("--app", "profiled_app:app", "--profile", "--profile-builtins")
    requests.get(srv.url, timeout=10)  # discarded: the first request pays for imports
    for _ in range(3):
        assert requests.get(srv.url, timeout=10).status_code == 200
    ours, theirs = comparable(tracfront_stats(srv)), comparable(cprofile_stats(3))
    assert ours[0] == theirs[0]
    assert ours[1] == theirs[1]
    names = {f[2] for f in ours[0]}
    assert {"fib", "is_even", "is_odd", "squares", "<genexpr>", "<listcomp>", "<lambda>",
            "add", "__init__", "parse_all", "workload"} <= names
    builtins = {f[2] for f, _ in ours[1] if f[0] == "~"}
    assert "<method 'append' of 'list' objects>" in builtins
    assert "<built-in method builtins.sorted>" in builtins
    # the export is what pstats and snakeviz load
    path = tmp_path / "out.pstats"
    path.write_bytes(requests.get(srv.url + "__profile__/pstats", timeout=30).content)
    st = pstats.Stats(str(path))
    fib = [v for f, v in st.stats.items() if f[2] == "fib"][0]
    assert fib[1] == 3 * 177 and fib[0] == 3  # fib(10) makes 177 calls, 1 primitive


def python_functions(stats):
    """(cc, nc) per Python function of the workload: what the frame hook
    (--profile-builtins=false) must agree on with cProfile. Edges are not
    compared: without built-ins, a function called by one (sorted's key, a
    generator resumed by sum) has the built-in's caller as its caller."""
    return {f: v for f, v in comparable(stats)[0].items() if f[0] != "~"}


def test_without_builtins_python_counts_equal_cprofile(tracfront):
    srv = tracfront("--app", "profiled_app:app", "--profile", "--profile-builtins=false")
    requests.get(srv.url, timeout=10)  # discarded
    for _ in range(3):
        assert requests.get(srv.url, timeout=10).status_code == 200
    stats = tracfront_stats(srv)
    assert python_functions(stats) == python_functions(cprofile_stats(3))
    assert not [f for f in stats if f[0] == "~"], "a built-in was profiled"
    fib = [v for f, v in stats.items() if f[2] == "fib"][0]
    assert (fib[0], fib[1]) == (3, 3 * 177)  # recursion: 1 primitive call per request
    squares = [v for f, v in stats.items() if f[2] == "squares"][0]
    assert squares[1] == 3 * 13  # 12 values and the end: creating it is not a call
    workload = [v for f, v in stats.items() if f[2] == "workload"][0]
    assert workload[3] >= workload[2] > 0  # cumulative time covers its own time
    page = requests.get(srv.url + "__profile__", timeout=10).text
    assert "Python functions only (--profile-builtins=false)" in page


# CPython 3.11.0-3.11.2 can crash under any profile function (gh-101975):
# there the default mode is the frame hook (this suite runs the Python the
# build embeds, /usr/bin/python3).
SETPROFILE_MAY_CRASH = (3, 11, 0) <= sys.version_info[:3] < (3, 11, 3)
CRASH_WARNING = "--profile-builtins=true: this Python"


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["single", "workers"])
def test_the_default_mode_is_the_frame_hook_where_setprofile_may_crash(tracfront, workers):
    srv = tracfront("--app", "profiled_app:app", "--profile", *workers)
    for _ in range(4 if workers else 2):
        assert requests.get(srv.url, timeout=10).status_code == 200
    stats = tracfront_stats(srv)
    assert [f for f in stats if f[2] == "workload"], stats
    assert any(f[0] == "~" for f in stats) == (not SETPROFILE_MAY_CRASH)
    page = requests.get(srv.url + "__profile__", timeout=10).text
    assert ("Python functions only" in page) == SETPROFILE_MAY_CRASH
    assert CRASH_WARNING not in srv.error_log


@pytest.mark.skipif(not SETPROFILE_MAY_CRASH, reason="this Python has gh-101975's fix")
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["single", "workers"])
def test_builtins_asked_for_where_setprofile_may_crash_are_warned_once(tracfront, workers):
    srv = tracfront("--app", "profiled_app:app", "--profile", "--profile-builtins", *workers)
    requests.get(srv.url, timeout=10)
    assert srv.stop() == 0, srv.stderr
    lines = [l for l in srv.error_log.splitlines() if CRASH_WARNING in l]
    assert len(lines) == 1, srv.error_log  # the front's alone
    assert "[warn]" in lines[0] and "gh-101975" in lines[0] and "3.11.3" in lines[0], lines


@pytest.mark.parametrize("builtins", ["true", "false"])
def test_concurrent_requests_add_up_exactly(tracfront, builtins):
    srv = tracfront("--app", "profiled_app:app", "--profile", "--threads", "4",
                    "--profile-builtins=" + builtins)
    requests.get(srv.url, timeout=10)  # discarded
    errors = []

    def hammer():
        try:
            for _ in range(5):
                assert requests.get(srv.url, timeout=30).status_code == 200
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    if builtins == "true":
        assert comparable(tracfront_stats(srv)) == comparable(cprofile_stats(20))
    else:
        assert python_functions(tracfront_stats(srv)) == python_functions(cprofile_stats(20))


@pytest.mark.parametrize("builtins", ["true", "false"])
def test_start_stop_clear_and_cross_site_refusal(tracfront, builtins):
    srv = tracfront("--app", "profiled_app:app", "--profile-discard-first", "false",
                    "--profile-builtins=" + builtins)
    requests.get(srv.url, timeout=10)
    assert requests.get(srv.url + "__profile__/pstats", timeout=10).status_code == 404  # off by default
    base = srv.url + "__profile__/"
    evil = requests.post(base + "start", headers={"Origin": "http://evil.example"},
                         allow_redirects=False, timeout=10)
    assert evil.status_code == 403
    assert requests.post(base + "start", headers={"Sec-Fetch-Site": "cross-site"},
                         allow_redirects=False, timeout=10).status_code == 403
    ok = requests.post(base + "start", headers={"Origin": srv.url.rstrip("/")},
                       allow_redirects=False, timeout=10)
    assert ok.status_code == 303 and ok.headers["Location"] == "../__profile__"  # from .../start
    page = requests.get(base, timeout=10).text
    assert "Function profiling: <b>on</b>" in page
    assert ("Python functions only" in page) == (builtins == "false")
    requests.get(srv.url, timeout=10)
    assert any(f[2] == "workload" for f in tracfront_stats(srv))
    assert requests.post(base + "stop", allow_redirects=False, timeout=10).status_code == 303
    requests.get(srv.url, timeout=10)
    workload_calls = [v[1] for f, v in tracfront_stats(srv).items() if f[2] == "workload"]
    assert workload_calls == [1]  # the request after Stop was not profiled
    assert requests.post(base + "clear", allow_redirects=False, timeout=10).status_code == 303
    assert requests.get(base + "pstats", timeout=10).status_code == 404  # nothing since Clear
    # profiling again after Clear: one request, counted once
    requests.post(base + "start", allow_redirects=False, timeout=10)
    requests.get(srv.url, timeout=10)
    assert [v[1] for f, v in tracfront_stats(srv).items() if f[2] == "workload"] == [1]


@pytest.mark.parametrize("builtins", ["true", "false"])
def test_unwind_profiles_the_body_iteration(tracfront, builtins):
    def fib_calls(*flags):
        srv = tracfront("--app", "profiled_app:streaming", "--profile",
                        "--profile-discard-first", "false", "--profile-builtins=" + builtins,
                        *flags)
        assert requests.get(srv.url, timeout=10).text == "5\n8\n"
        return sum(v[1] for f, v in tracfront_stats(srv).items() if f[2] == "fib")
    assert fib_calls() == 0
    assert fib_calls("--profile-unwind") == 15 + 25  # fib(5) and fib(6)


@pytest.mark.parametrize("path", ["boom", "bodyboom", "closeboom"])
def test_unwind_leaves_the_servers_own_traceback_out(tracfront, path):
    """With --profile-unwind, an app that raised had tracfront's logging of
    its traceback (traceback.format_exception, and the modules it imports
    the first time: 341 functions) in its profile; repoze.profile stops
    profiling when the exception leaves the app. The app's own close() is
    still profiled, after the body raised too."""
    srv = tracfront("--app", "profiled_app:raising", "--profile", "--profile-unwind",
                    "--profile-discard-first", "false")
    for _ in range(2):
        try:
            requests.get(srv.url + path, timeout=10)
        except requests.exceptions.ChunkedEncodingError:
            pass  # /bodyboom: the answer is cut after its first part
    deadline = time.monotonic() + 10
    while srv.error_log.count("ValueError") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # both tracebacks logged: their requests have ended
    time.sleep(0.2)  # and merged into the profile
    stats = tracfront_stats(srv)
    assert sum(v[1] for f, v in stats.items() if f[2] == "fib") == 2 * 5
    closes = 0 if path == "boom" else 2
    assert sum(v[1] for f, v in stats.items() if f[2] == "cleanup") == closes
    assert not [f for f in stats if "traceback" in f[0] or "format_exception" in f[2]], \
        sorted(f for f in stats if "traceback" in f[0])[:5]


def profiled(tracfront, requests_made=3):
    srv = tracfront("--app", "profiled_app:app", "--profile", "--profile-builtins",
                    "--profile-discard-first", "false")
    for _ in range(requests_made):
        assert requests.get(srv.url, timeout=10).status_code == 200
    return srv


def test_collapsed_stacks_for_flamegraph(tracfront):
    srv = profiled(tracfront)
    r = requests.get(srv.url + "__profile__/collapsed", timeout=30)
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert lines, "empty profile"
    for line in lines:
        stack, _, value = line.rpartition(" ")
        assert stack and int(value) >= 0, line  # ns; a leaf is there even if it took none
    stacks = [l.rpartition(" ")[0].split(";") for l in lines]
    fib_stacks = [s for s in stacks if s[-1].startswith("fib (")]
    assert fib_stacks, "no fib frames"
    assert all(s[0].startswith("app (") and s[1].startswith("workload (") for s in fib_stacks)
    assert max(len(s) for s in fib_stacks) >= 2 + 5  # recursion shows as depth


def test_speedscope_json(tracfront):
    srv = profiled(tracfront)
    doc = requests.get(srv.url + "__profile__/speedscope.json", timeout=30).json()
    from test_profile_exports import speedscope_self_times  # checks the events' order
    own = speedscope_self_times(doc)
    assert doc["profiles"][0]["endValue"] == sum(own.values()) > 0
    assert any(name.startswith("fib (") for name in own)


def test_callgrind_annotate_reads_the_export(tracfront, tmp_path):
    annotate = shutil.which("callgrind_annotate")
    if not annotate:
        pytest.skip("valgrind's callgrind_annotate is not installed")
    srv = profiled(tracfront)
    path = tmp_path / "callgrind.out.tracfront"
    path.write_bytes(requests.get(srv.url + "__profile__/callgrind", timeout=30).content)
    out = subprocess.run([annotate, "--inclusive=yes", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "fib" in out.stdout and "workload" in out.stdout
    assert "Nanoseconds" in out.stdout


def test_profile_files_on_save_and_at_shutdown(tracfront, tmp_path):
    log, grind = tmp_path / "tracfront.pstats", tmp_path / "callgrind.out"
    srv = tracfront("--app", "profiled_app:app", "--profile", "--profile-discard-first", "false",
                    "--profile-log", log, "--profile-callgrind", grind)
    requests.get(srv.url, timeout=10)
    assert not log.exists(), "never written per request"
    r = requests.post(srv.url + "__profile__/save", allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert [v[1] for f, v in pstats.Stats(str(log)).stats.items() if f[2] == "workload"] == [1]
    assert grind.read_text().startswith("# callgrind format")
    requests.get(srv.url, timeout=10)
    assert srv.stop() == 0
    # at clean shutdown the files hold the whole profile
    assert [v[1] for f, v in pstats.Stats(str(log)).stats.items() if f[2] == "workload"] == [2]


def test_the_page_says_what_save_did(tracfront, tmp_path):
    """Save sent the browser back to the page, which said nothing of what it
    did: after Clear it wrote nothing (an earlier file stayed) and only the
    error log said so. The page says what the last Save did, and when."""
    log, grind = tmp_path / "tracfront.pstats", tmp_path / "callgrind.out"
    srv = tracfront("--app", "profiled_app:app", "--profile", "--profile-discard-first", "false",
                    "--profile-log", log, "--profile-callgrind", grind)
    assert "Last Save" not in requests.get(srv.url + "__profile__", timeout=10).text
    requests.get(srv.url, timeout=10)
    page = requests.post(srv.url + "__profile__/save", timeout=10).text  # and back to the page
    assert re.search(r"Last Save \(\d\d:\d\d:\d\d\): <code>%s</code> written; <code>%s</code> "
                     r"written\." % (re.escape(str(log)), re.escape(str(grind))), page), page[:3000]
    assert requests.post(srv.url + "__profile__/clear", allow_redirects=False,
                         timeout=10).status_code == 303
    page = requests.post(srv.url + "__profile__/save", timeout=10).text
    assert "<code>%s</code> not written: nothing profiled" % log in page, page[:3000]
    assert log.exists() and grind.exists()  # the earlier files stay


def test_the_buttons_keep_the_view(tracfront):
    """Start, Stop and Clear sent the browser back to the bare page: its
    sort, filter, mode and limit were lost at each press. The buttons carry
    the page's query and the page they send back to keeps it."""
    srv = profiled(tracfront, requests_made=2)
    view = "sort=calls&mode=callers&limit=5&fullpath=0&filter=fib"
    page = requests.get(srv.url + "__profile__?" + view, timeout=30).text
    for action in ("stop", "clear"):
        assert 'action="__profile__/%s?%s"' % (action, view.replace("&", "&#38;")) in page, \
            re.findall(r"<form method=post action=\"[^\"]*\"", page)
        r = requests.post(srv.url + "__profile__/%s?%s" % (action, view), allow_redirects=False,
                          timeout=10)
        assert (r.status_code, r.headers["Location"]) == (303, "../__profile__?" + view)
    r = requests.post(srv.url + "__profile__/start", allow_redirects=False, timeout=10)
    assert (r.status_code, r.headers["Location"]) == (303, "../__profile__")  # the bare page
    # a view too long to go back to in the answer's head: the bare page (the
    # answer was lost, the connection closed with nothing sent)
    r = requests.post(srv.url + "__profile__/stop?sort=calls&x=" + "a" * 24000,
                      allow_redirects=False, timeout=10)
    assert (r.status_code, r.headers["Location"]) == (303, "../__profile__")


def test_the_page_says_a_file_save_could_not_write(tracfront, tmp_path):
    """A Save that wrote one file and failed the other answered 500 and the
    page said nothing (or an earlier Save's lines), though one file was
    replaced: the page says what became of each."""
    log, gone = tmp_path / "ok.pstats", tmp_path / "gone"
    gone.mkdir()
    srv = tracfront("--app", "profiled_app:app", "--profile", "--profile-discard-first", "false",
                    "--profile-log", log, "--profile-callgrind", gone / "cg.out")
    gone.rmdir()
    requests.get(srv.url, timeout=10)
    r = requests.post(srv.url + "__profile__/save", allow_redirects=False, timeout=10)
    assert r.status_code == 500 and log.exists(), r.text
    page = requests.get(srv.url + "__profile__", timeout=10).text
    assert re.search(r"Last Save \([\d:]+\): <code>%s</code> written; <code>%s</code> could not "
                     r"be written \(see the error log\)\." % (re.escape(str(log)),
                                                             re.escape(str(gone / "cg.out"))),
                     page), page[:3000]


@pytest.mark.parametrize("workers", [0, 2])
def test_save_needs_a_profile_file(tracfront, tmp_path, workers):
    """Without --profile-log or --profile-callgrind the page offered "Save files"
    and a POST to save answered 303 having written nothing: the button is left
    out and the POST refused, naming the flags (with --workers the front makes
    the page and saves)."""
    more = ("--workers", workers) if workers else ()
    srv = tracfront("--app", "profiled_app:app", "--profile", *more)
    page = requests.get(srv.url + "__profile__", timeout=30).text
    assert "Function profiling" in page and "Save files" not in page
    r = requests.post(srv.url + "__profile__/save", allow_redirects=False, timeout=10)
    assert r.status_code == 409, (r.status_code, r.text)
    assert "--profile-log" in r.text and "--profile-callgrind" in r.text, r.text
    srv = tracfront("--app", "profiled_app:app", "--profile", *more,
                    "--profile-callgrind", tmp_path / "callgrind.out")
    assert "Save files" in requests.get(srv.url + "__profile__", timeout=30).text


def test_flush_at_shutdown_removes_the_files(tracfront, tmp_path):
    log = tmp_path / "tracfront.pstats"
    srv = tracfront("--app", "profiled_app:app", "--profile", "--profile-discard-first", "false",
                    "--profile-log", log, "--profile-flush-at-shutdown")
    requests.get(srv.url, timeout=10)
    requests.post(srv.url + "__profile__/save", allow_redirects=False, timeout=10)
    assert log.exists()
    assert srv.stop() == 0
    assert not log.exists()


def test_function_table_views(tracfront):
    srv = profiled(tracfront, requests_made=2)
    page = requests.get(srv.url + "__profile__", params={"sort": "calls", "limit": "5"},
                        timeout=30).text
    table = page[page.index("id=functions"):]
    assert "profiled_app.py:7(fib)" in table  # short paths by default
    assert table.count("<tr><td>") == 5
    assert "<b>calls</b>" in table and "sort=time" in table  # current sort bold, others links
    assert re.search(r"<label>Filter [^<]*<input name=filter ", table)  # the box has a name
    callers = requests.get(srv.url + "__profile__", params={"mode": "callers", "filter": "fib"},
                           timeout=30).text
    assert "&larr; <code>profiled_app.py:" in callers
    full = requests.get(srv.url + "__profile__", params={"fullpath": "1", "filter": "fib"},
                        timeout=30).text
    assert WORKLOAD_FILE + ":7(fib)" in full
    bad = requests.get(srv.url + "__profile__", params={"filter": "<script>("}, timeout=30).text
    assert "not a valid regular expression" in bad
    assert "<script>(" not in bad and "&#60;script&#62;(" in bad


def test_function_table_json(tracfront):
    srv = profiled(tracfront, requests_made=2)
    doc = requests.get(srv.url + "__profile__/api/functions", params={"sort": "calls", "limit": "4"},
                       timeout=30).json()
    calls = [f["ncalls"] for f in doc["functions"]]
    assert len(calls) == 4 and calls == sorted(calls, reverse=True)
    assert doc["functions"][0]["name"] == "fib" and doc["functions"][0]["ncalls"] == 2 * 177
    only = requests.get(srv.url + "__profile__/api/functions", params={"filter": r"\(is_(even|odd)\)$"},
                        timeout=30).json()
    assert sorted(f["name"] for f in only["functions"]) == ["is_even", "is_odd"]
    assert only["matched"] == 2


def test_flame_graph_and_zoom(tracfront):
    srv = profiled(tracfront, requests_made=2)
    page = requests.get(srv.url + "__profile__", timeout=30).text
    start = page.index("<svg", page.index("id=flame"))
    svg = page[start:page.index("</svg>", start)]
    assert "<title>fib (" in svg and "<rect" in svg
    m = re.search(r'href="__profile__\?zoom=(\d+)#flame"><g><title>workload \(', svg)
    assert m, "no link on the workload frame"
    zoomed = requests.get(srv.url + "__profile__", params={"zoom": m.group(1)}, timeout=30).text
    zstart = zoomed.index("<svg", zoomed.index("id=flame"))
    zsvg = zoomed[zstart:zoomed.index("</svg>", zstart)]
    first = re.search(r'<title>([^<]*)</title><rect x="([\d.]+)" y="0" width="([\d.]+)"', zsvg)
    assert first.group(1).startswith("workload (") and float(first.group(3)) == 1200.0
    assert "<title>app (" not in zsvg  # above the zoomed frame: not drawn
    assert "back to all" in zoomed
    # a zoom (and the way back) keeps the table's view: its sort, filter, limit, and the
    # latency table's, but not the zoom it replaces
    view = [("sort", "calls"), ("filter", "fib|work"), ("limit", "7"), ("routes_sort", "p99"),
            ("zoom", m.group(1))]
    viewed = requests.get(srv.url + "__profile__", params=view, timeout=30).text
    links = re.findall(r'href="__profile__\?((?:[^"#]|&#38;)*)zoom=(\d+)#flame"', viewed)
    assert links, viewed[:3000]
    for kept, _ in links:
        assert kept == "sort=calls&#38;filter=fib%7Cwork&#38;limit=7&#38;routes_sort=p99&#38;", kept


def test_slowest_requests_keep_their_call_tree(tracfront):
    srv = tracfront("--app", "robust_apps:app", "--profile", "--profile-builtins",
                    "--profile-discard-first", "false",
                    "--profile-slowest", "2")
    for s in ("0.01", "0.15", "0", "0.08"):
        assert requests.get(srv.url + "slow", params={"s": s}, timeout=10).status_code == 200
    deadline = time.monotonic() + 5
    while True:  # recorded when each connection's work completes
        slowest = requests.get(srv.url + "__profile__/api/slowest", timeout=10).json()["slowest"]
        if [x["target"] for x in slowest] == ["/slow?s=0.15", "/slow?s=0.08"] or \
                time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [x["target"] for x in slowest] == ["/slow?s=0.15", "/slow?s=0.08"]
    page = requests.get(srv.url + "__profile__/request", params={"id": slowest[0]["id"]}, timeout=10)
    assert page.status_code == 200
    # that request's own calls only: one sleep (the four requests made four)
    assert re.search(r"<title>&#60;built-in method time.sleep&#62;: [\d.]+ ms, 1 calls,",
                     page.text), page.text
    ms = float(re.search(r"Request \d+: ([\d.]+) ms", page.text).group(1))
    assert 150 * 0.99 <= ms < 1000
    # the id parameter itself, not one whose name ends in "id" (grid=1 is no id=1)
    other = requests.get(srv.url + "__profile__/request",
                         params=[("grid", "1"), ("id", slowest[0]["id"])], timeout=10)
    assert other.status_code == 200 and "Request %d:" % slowest[0]["id"] in other.text
    # request 1 (the 10 ms one; the harness sends none before) was not among the two kept
    assert requests.get(srv.url + "__profile__/request", params={"id": 1}, timeout=10).status_code == 404
    page = requests.get(srv.url + "__profile__", timeout=10).text
    kept = re.findall(r'/request\?id=(\d+)" aria-label="call tree of request (\d+)">call tree</a>',
                      page)  # a screen reader names the request, not only "call tree"
    assert kept and all(a == b for a, b in kept), page


GETITEM_APP = """
class Table:
    def __init__(self):
        self.d = {i: i for i in range(100)}

    def __getitem__(self, k):
        return self.d[k]

    def get(self, k):
        return self.d[k]


def application(environ, start_response):
    t = Table()
    total = sum(t[i] + t.get(i) for i in range(100))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(total).encode()]
"""

# CPython before 3.11.4 runs a specialised obj[key] into a Python __getitem__
# without the frame-evaluation hook (gh-104405, fixed by gh-104441).
PY = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.hexversion)"],
                    capture_output=True, text=True).stdout
SUBSCR_MISSED = int(PY) < 0x030B04F0


@pytest.mark.parametrize("builtins", ["true", "false"])
def test_getitem_through_subscript(tracfront, tmp_path, builtins):
    """With cProfile's events every t[i] is a __getitem__ call. The frame
    hook misses those on CPython 3.11 before 3.11.4: then the start and the
    page say so, instead of a profile silently without them."""
    (tmp_path / "getitem_app.py").write_text(GETITEM_APP)
    srv = tracfront("--app", "getitem_app:application", "--pythonpath", tmp_path, "--profile",
                    "--profile-builtins=" + builtins)
    requests.get(srv.url, timeout=10)  # discarded
    for _ in range(5):
        assert requests.get(srv.url, timeout=10).text == "9900"
    counts = {f[2]: v[1] for f, v in tracfront_stats(srv).items()}
    assert counts["get"] == 500
    page = requests.get(srv.url + "__profile__", timeout=10).text
    warned = "gh-104405" in page and "gh-104405" in srv.error_log
    if builtins == "false" and SUBSCR_MISSED:
        assert warned, "no word of the calls the frame hook misses"
    else:
        assert counts["__getitem__"] == 500
        assert not warned


EMPTY_EXPORTS = ("pstats", "callgrind", "collapsed", "speedscope.json")


def test_nothing_profiled_writes_no_files_and_exports_say_so(tracfront, tmp_path):
    """pstats cannot load an empty profile (a marshalled {}), so with nothing
    profiled the files are not written (one that is there stays as it was) and
    every export answers 404 saying why, the same for each format."""
    log, grind = tmp_path / "tracfront.pstats", tmp_path / "callgrind.out"
    log.write_bytes(b"an earlier run's profile")
    srv = tracfront("--app", "profiled_app:app", "--profile-log", log, "--profile-callgrind", grind)
    assert requests.get(srv.url, timeout=10).status_code == 200  # profiling is off
    for path in EMPTY_EXPORTS:
        r = requests.get(srv.url + "__profile__/" + path, timeout=30)
        assert r.status_code == 404 and "Nothing has been profiled yet" in r.text, (path, r.text)
    r = requests.post(srv.url + "__profile__/save", allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert log.read_bytes() == b"an earlier run's profile" and not grind.exists()
    assert srv.stop() == 0
    assert log.read_bytes() == b"an earlier run's profile" and not grind.exists()
    assert srv.error_log.count("nothing profiled; --profile-log not written") == 2, srv.error_log
    assert srv.error_log.count("nothing profiled; --profile-callgrind not written") == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_only_the_discarded_first_request_is_nothing_profiled(tracfront, workers):
    srv = tracfront("--app", "profiled_app:app", "--profile",
                    *(("--workers", workers) if workers else ()))
    assert requests.get(srv.url, timeout=10).status_code == 200  # discarded
    r = requests.get(srv.url + "__profile__/pstats", timeout=30)
    assert r.status_code == 404 and "Nothing has been profiled yet" in r.text, r.text
    if not workers:  # which worker a request goes to is not known
        assert requests.get(srv.url, timeout=10).status_code == 200
        assert any(f[2] == "workload" for f in tracfront_stats(srv))


def functions(srv, **params):
    r = requests.get(srv.url + "__profile__/api/functions", params=dict(limit="100000", **params),
                     timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["functions"]


def test_pstats_sort_names_are_understood(tracfront):
    """pstats.sort_stats' own names sort as they do there; an unknown one is
    an error, not the default order without a word."""
    srv = profiled(tracfront, requests_made=2)
    for theirs, ours in [("tottime", "time"), ("cumtime", "cumulative"), ("ncalls", "calls"),
                         ("filename", "file"), ("module", "file")]:
        assert functions(srv, sort=theirs) == functions(srv, sort=ours), theirs
    rows = functions(srv, sort="tottime")
    assert [f["tottime"] for f in rows] == sorted((f["tottime"] for f in rows), reverse=True)
    nfl = [(f["name"], f["file"], f["line"]) for f in functions(srv, sort="nfl")]
    assert nfl == sorted(nfl)
    std = [f["function"] for f in functions(srv, sort="stdname")]
    assert std == sorted(std)
    page = requests.get(srv.url + "__profile__", params={"sort": "tottime"}, timeout=30).text
    assert "<b>time</b>" in page  # shown as the key it stands for
    for bad in ("bogus", "tottime2"):
        r = requests.get(srv.url + "__profile__/api/functions", params={"sort": bad}, timeout=30)
        assert r.status_code == 400 and "sort" in r.json()["error"], r.text
        page = requests.get(srv.url + "__profile__", params={"sort": bad}, timeout=30).text
        assert "Unknown sort key" in page
    r = requests.get(srv.url + "__profile__/api/functions", params={"filter": "("}, timeout=30)
    assert r.status_code == 400 and "filter" in r.json()["error"], r.text


def test_sorting_by_file_follows_the_names_shown(tracfront, tmp_path):
    """With short paths (the default, pstats' strip_dirs() as repoze.profile
    shows) sort=file and nfl follow the file names shown: they followed the
    hidden directories (aaa/omega_mod.py before zzz/alpha_mod.py)."""
    for folder, module, func in (("aaa", "omega_mod", "omega"), ("zzz", "alpha_mod", "alpha")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / (module + ".py")).write_text("def %s():\n    return 1\n" % func)
    (tmp_path / "sort_app.py").write_text(
        "import alpha_mod, omega_mod\n\n\ndef application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'%d' % (alpha_mod.alpha() + omega_mod.omega())]\n")
    srv = tracfront("--app", "sort_app:application", "--pythonpath", tmp_path,
                    "--pythonpath", tmp_path / "aaa", "--pythonpath", tmp_path / "zzz", "--profile",
                    "--profile-discard-first", "false")
    for _ in range(2):
        assert requests.get(srv.url, timeout=10).text == "2"
    ours = [os.path.basename(f["file"]) for f in functions(srv, sort="file")]
    mods = [m for m in ours if m in ("alpha_mod.py", "omega_mod.py", "sort_app.py")]
    assert mods == ["alpha_mod.py", "omega_mod.py", "sort_app.py"], ours
    full = [f["file"] for f in functions(srv, sort="file", fullpath="1")]
    assert full == sorted(full), full
    page = requests.get(srv.url + "__profile__", params={"sort": "file"}, timeout=30).text
    table = page[page.rindex("<table"):]  # the function table comes last
    assert table.index("alpha_mod.py:") < table.index("omega_mod.py:") < table.index("sort_app.py:")


BIG_TREE_APP = """\
def _make(i):
    def f(d):
        if d:
            for g in FUNCS:
                g(d - 1)
    f.__code__ = f.__code__.replace(co_name="f%d" % i)
    return f


FUNCS = [_make(i) for i in range(10)]


def application(environ, start_response):
    FUNCS[0](int(environ.get("QUERY_STRING") or "1"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def test_the_page_while_an_export_reads_the_tree(tracfront, tmp_path):
    """One page or export reads the call tree at a time: the page was a bare
    503 for as long as an export of a big tree took (seconds with a raised
    --profile-max-nodes). It shows its latency and in-flight parts, with a
    note where the flame graph and functions go."""
    (tmp_path / "big_tree_app.py").write_text(BIG_TREE_APP)
    srv = tracfront("--app", "big_tree_app:application", "--pythonpath", tmp_path, "--profile",
                    "--profile-discard-first", "false", "--profile-max-nodes", "3000000")
    assert requests.get(srv.url + "?6", timeout=120).text == "ok"  # 10**6 call paths
    check_the_page_during_exports(srv)


PROXY_SERVER = """\
    server {
        listen 127.0.0.1:%(port)d;
        location / { proxy_pass http://127.0.0.1:%(upstream)d; }
        location /fwd/ {
            proxy_pass http://127.0.0.1:%(upstream)d/;
            proxy_set_header X-Forwarded-Host $http_host;
        }
    }
}
"""


def test_controls_behind_a_reverse_proxy_and_tls(tracfront, tmp_path):
    """Behind nginx (proxy_pass without proxy_set_header Host, so the Host
    tracfront sees is its own address while the browser's Origin is nginx's)
    Start was refused as cross-site; so was any https Origin. A browser's
    Sec-Fetch-Site decides when sent; else Origin must name Host or
    X-Forwarded-Host, either scheme. Cross-site posts are still refused."""
    nginx_upstream = pytest.importorskip("test_nginx_upstream")
    if nginx_upstream.NGINX is None:
        pytest.skip("nginx not installed")
    srv = tracfront("--app", "profiled_app:app")
    proxy = nginx_upstream.Nginx(tmp_path / "nginx", tmp_path)
    with open(proxy.conf, "w") as f:
        f.write((nginx_upstream.HTTP_PREAMBLE + PROXY_SERVER)
                % {"dir": proxy.dir, "port": proxy.port, "upstream": srv.port})
    proxy.start()
    try:
        def start(base, **headers):
            return requests.post(base + "/__profile__/start", headers=headers,
                                 allow_redirects=False, timeout=10).status_code
        assert start(proxy.url, Origin=proxy.url, **{"Sec-Fetch-Site": "same-origin"}) == 303
        assert start(proxy.url + "/fwd", Origin=proxy.url) == 303  # X-Forwarded-Host
        assert start(proxy.url + "/fwd", Origin=proxy.url.replace("http:", "https:")) == 303
        # nothing tells the Origin is nginx's own: refused
        assert start(proxy.url, Origin=proxy.url) == 403
        for headers in ({"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
                        {"Origin": proxy.url, "Sec-Fetch-Site": "same-site"},
                        {"Origin": "http://evil.example"}, {"Origin": "null"},
                        {"Origin": proxy.url + ".evil.example"}):
            assert start(proxy.url + "/fwd", **headers) == 403, headers
            assert start(proxy.url, **headers) == 403, headers
    finally:
        proxy.stop()
    direct = srv.url.rstrip("/")
    assert start(direct, Origin=direct.replace("http:", "https:")) == 303  # TLS in front
    assert start(direct, Origin=direct + "0") == 403
    assert start(direct, Origin="https://evil.example") == 403


def test_filter_matches_the_names_shown(tracfront):
    """As pstats' strip_dirs().print_stats('^main.py'): in the short-path view
    the filter is searched in the names the table shows, and the count says
    how many of all the functions matched."""
    srv = profiled(tracfront, requests_made=2)
    api = srv.url + "__profile__/api/functions"
    every = requests.get(api, params={"limit": "100000"}, timeout=30).json()
    short = requests.get(api, params={"limit": "100000", "filter": r"^profiled_app\.py:"},
                         timeout=30).json()
    assert {"fib", "workload", "squares"} <= {f["name"] for f in short["functions"]}
    assert all(f["file"] == WORKLOAD_FILE for f in short["functions"])
    assert short["matched"] == len(short["functions"]) < every["matched"]
    assert short["total"] == every["total"] == every["matched"]
    full = requests.get(api, params={"filter": r"^profiled_app\.py:", "fullpath": "1"},
                        timeout=30).json()
    assert full["matched"] == 0  # full paths start with the folder
    full = requests.get(api, params={"filter": "^" + re.escape(WORKLOAD_FILE) + ":",
                                     "fullpath": "1"}, timeout=30).json()
    assert full["matched"] == short["matched"]
    page = requests.get(srv.url + "__profile__", params={"filter": r"^profiled_app\.py:"},
                        timeout=30).text
    assert "<code>profiled_app.py:7(fib)</code>" in page
    assert "%d of %d functions match" % (short["matched"], every["total"]) in page


# Request /hold holds the GIL for about 0.3 s in one C call (sum over a range
# checks for no GIL drop request) while request /wait is in time.sleep(0.05),
# which releases the GIL and must wait for it to come back.
GIL_APP = """
import threading, time

sleeping = threading.Event()


def seconds_per_item():
    best = 1.0
    for _ in range(3):
        t = time.perf_counter()
        sum(range(10 ** 6))
        best = min(best, time.perf_counter() - t)
    return best / 10 ** 6


per = seconds_per_item()


def application(environ, start_response):
    if environ["PATH_INFO"] == "/hold":
        sleeping.wait(10)
        sum(range(int(0.3 / per)))
    else:
        sleeping.set()
        time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]
"""


def hold_the_gil_while_one_waits(srv):
    """/hold and /wait at once; their profile as /api/functions has it."""
    hold = threading.Thread(target=requests.get, args=(srv.url + "hold",), kwargs={"timeout": 30})
    hold.start()
    assert requests.get(srv.url + "wait", timeout=30).status_code == 200
    hold.join(30)
    doc = requests.get(srv.url + "__profile__/api/functions", params={"limit": "100000"},
                       timeout=30).json()
    by_name = {f["function"]: f for f in doc["functions"]}
    return doc, by_name["{built-in method time.sleep}"], by_name["{built-in method builtins.sum}"]


def gil_app_server(tracfront, tmp_path, *flags):
    (tmp_path / "gil_app.py").write_text(GIL_APP)
    return tracfront("--pythonpath", tmp_path, "--app", "gil_app", "--threads", "4",
                     "--profile", "--profile-builtins", "--profile-discard-first", "false", *flags)


def test_wall_clock_bills_the_wait_for_the_gil_and_says_so(tracfront, tmp_path):
    srv = gil_app_server(tracfront, tmp_path)
    doc, sleep, _ = hold_the_gil_while_one_waits(srv)
    assert sleep["cumtime"] > 0.2  # 0.05 asleep, the rest waiting for /hold's GIL
    assert doc["clock"] == "wall" and doc["most_at_once"] == 2
    assert "--profile-clock cpu" in doc["warning"]
    page = requests.get(srv.url + "__profile__", timeout=30).text
    assert "includes waiting for other threads" in page and "--profile-clock cpu" in page


def test_cpu_clock_bills_only_the_cpu_time(tracfront, tmp_path):
    srv = gil_app_server(tracfront, tmp_path, "--profile-clock", "cpu")
    doc, sleep, held = hold_the_gil_while_one_waits(srv)
    assert sleep["cumtime"] < 0.1 < held["cumtime"]
    assert doc["clock"] == "cpu" and "warning" not in doc
    page = requests.get(srv.url + "__profile__", timeout=30).text
    assert "includes waiting for other threads" not in page
    assert "CPU time" in page


def test_one_request_at_a_time_needs_no_warning(tracfront):
    srv = profiled(tracfront, requests_made=3)
    doc = requests.get(srv.url + "__profile__/api/functions", timeout=30).json()
    assert doc["clock"] == "wall" and doc["most_at_once"] == 1 and "warning" not in doc
    assert "includes waiting for other threads" not in requests.get(srv.url + "__profile__",
                                                                  timeout=30).text


def test_profile_clock_is_wall_or_cpu(tracfront):
    srv = tracfront("--app", "profiled_app:app", "--profile-clock", "thread", expect_fail=True)
    assert srv.proc.wait(10) == 2
    assert "--profile-clock" in srv.stderr and "wall or cpu" in srv.stderr


OVERRIDE_APP = """
import sqlite3

class Cursor(sqlite3.Cursor):
    def execute(self, sql, *args):  # Trac's EagerCursor does this
        return sqlite3.Cursor.execute(self, sql, *args)

db = sqlite3.connect(":memory:", check_same_thread=False)

def application(environ, start_response):
    db.cursor(Cursor).execute("select 1")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def test_builtin_names_hold_no_address_and_merge_across_workers(tracfront, tmp_path):
    """cProfile names a C method reached through a Python override
    repr(getattr(type(self), name)): '<function Cursor.execute at 0x7f..>'.
    The address differs in every worker process (and after every reload):
    the front merged such rows by name, so one function became a row per
    worker. Without the address they are one row."""
    (tmp_path / "override_app.py").write_text(OVERRIDE_APP)
    srv = tracfront("--app", "override_app:application", "--pythonpath", tmp_path, "--profile", "--profile-builtins",
                    "--profile-discard-first", "false", "--workers", "2")
    for _ in range(60):  # new connections: the workers take turns
        requests.get(srv.url, headers={"Connection": "close"}, timeout=10)
    names = [f[2] for f in tracfront_stats(srv)]
    assert not [n for n in names if " at 0x" in n], names
    overrides = [n for n in names if "Cursor.execute" in n]
    assert overrides == ["<function Cursor.execute>"], names
    calls = {f[2]: v[1] for f, v in tracfront_stats(srv).items()}
    assert calls["<function Cursor.execute>"] == 60
