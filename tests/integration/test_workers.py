"""--workers N: a front process plus N worker processes running the app.

Requests spread over the workers; a worker's environ is what the same request
gets in-process (real client address, headers as sent, nothing added); the
profile is one for the whole server (exact merged call counts, exports,
Start/Stop/Clear reaching every worker, latency of every request, per-request
call trees from any worker); a killed worker is replaced, and what it had
measured stays in the counters; SIGTERM stops everything and leaves no
process behind.
"""
import base64
import hashlib
import http.client
import json
import os
import pstats
import re
import signal
import subprocess
import threading
import time

import pytest
import requests

from busy_tree_util import check_the_page_during_exports
from conftest import BINARY
from workers_util import (APP, busy_calls, children, concurrently, descendants, fetch,
                          memory_kib, peak_from_now, proc_stat, running, settle, wait_for)


def workers(tracfront, n=2, *extra, **kw):
    srv = tracfront(*APP, "--workers", n, *extra, **kw)
    assert re.search(r"listening on http://\S+ \(.*\b%d workers?\b" % n, srv.stderr), srv.stderr
    return srv


def worker_pids(srv):
    """The pids that served a burst of concurrent requests (sleeping a little,
    so that least-busy routing has to use more than one worker)."""
    res = concurrently(srv.url + "pid?s=0.02", 8, 10)
    assert all(status == 200 for status, _ in res), [r for r in res if r[0] != 200][:3]
    return {body["pid"] for _, body in res}


def test_startup_line_comes_after_every_worker_is_up(tracfront):
    srv = workers(tracfront, 3)
    kids = children(srv.proc.pid)
    assert len(kids) == 3, kids
    # the app already answers (the line promised ready workers)
    assert requests.get(srv.url + "pid", timeout=10).json()["pid"] in kids


def test_worker_stderr_reaches_the_error_log(tracfront):
    srv = workers(tracfront, 2)
    assert requests.get(srv.url + "log", params={"msg": "hello-from-a-worker"}, timeout=10).ok
    wait_for(lambda: "worker_app says hello-from-a-worker" in srv.error_log + srv.stderr, 10,
             "the worker's stderr line in the front's error log")


def test_requests_spread_over_workers(tracfront):
    srv = workers(tracfront, 2)
    res = concurrently(srv.url + "pid?s=0.005", 8, 50)
    assert len(res) == 400
    failed = [r for r in res if r[0] != 200]
    assert not failed, failed[:5]
    pids = {body["pid"] for _, body in res}
    assert len(pids) == 2, pids
    assert srv.proc.pid not in pids, "the front ran the app itself"
    assert pids == set(children(srv.proc.pid)), "served by processes that are not its workers"


def environ_seen(srv, method="GET", body=None, source="127.0.0.2"):
    """What /pid saw for one request from `source`, with headers a client might send."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10, source_address=(source, 0))
    try:
        conn.connect()
        client_port = conn.sock.getsockname()[1]
        conn.putrequest(method, "/pid?x=1&y=%C3%A9", skip_host=True, skip_accept_encoding=True)
        for name, value in (("Host", "tracfront.test:8080"), ("X-Custom", "abc"),
                            ("X-Forwarded-For", "10.9.9.9"), ("X-Tracfront-Remote-User", "evil"),
                            ("Cookie", "a=1"), ("Cookie", "b=2"), ("Accept-Language", "de"),
                            ("Authorization", "Basic dXNlcjpwdw=="), ("User-Agent", "t/1")):
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Type", "application/x-www-form-urlencoded")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        assert r.status == 200
        return json.loads(r.read()), client_port
    finally:
        conn.close()


@pytest.mark.parametrize("method,body", [("GET", None), ("POST", b"a=1&b=%C3%A9")],
                         ids=["GET", "POST"])
def test_environ_is_what_the_app_gets_in_process(tracfront, method, body):
    inproc, worker = tracfront(*APP), workers(tracfront, 2)
    seen = {}
    for name, srv in (("in-process", inproc), ("worker", worker)):
        doc, client_port = environ_seen(srv, method, body)
        assert doc["REMOTE_ADDR"] == "127.0.0.2", (name, doc["REMOTE_ADDR"])
        assert doc["REMOTE_PORT"] == str(client_port), (name, doc["REMOTE_PORT"], client_port)
        assert doc["HTTP_HOST"] == "tracfront.test:8080", (name, doc["HTTP_HOST"])
        assert doc["REMOTE_USER"] is None, (name, doc["REMOTE_USER"])
        assert doc["body_length"] == len(body or b""), name
        cgi = dict(doc["cgi"])
        del cgi["REMOTE_PORT"]
        if "SERVER_PORT" in cgi:
            cgi["SERVER_PORT"] = (cgi["SERVER_PORT"] == str(srv.port))
        seen[name] = (cgi, doc)
    w_cgi, w_doc = seen["worker"]
    assert w_doc["wsgi.multiprocess"] is True
    assert seen["in-process"][1]["wsgi.multiprocess"] is False
    assert w_doc["wsgi.url_scheme"] == "http"
    assert w_cgi["HTTP_X_FORWARDED_FOR"] == "10.9.9.9", "the front added to X-Forwarded-For"
    for k in ("HTTP_FORWARDED", "HTTP_VIA", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"):
        assert k not in w_cgi, k
    # everything else, CGI keys and end-to-end headers, exactly as in-process;
    # X-Tracfront-* (a client's are dropped) and hop-by-hop headers aside.
    def comparable(cgi):
        return {k: v for k, v in cgi.items() if not k.startswith("HTTP_X_TRACFRONT")
                and k not in ("HTTP_CONNECTION", "HTTP_KEEP_ALIVE", "HTTP_TE")}
    assert comparable(w_cgi) == comparable(seen["in-process"][0])


FORGED = {"X-Tracfront-Remote-User": "evil", "X-Tracfront-User": "evil Basic",
          "X-Tracfront-Client": "10.6.6.6 4444 1", "X-Tracfront-Token": "guessed",
          "X-Remote-User": "evil"}


def assert_not_fooled(doc, remote_addr="127.0.0.1"):
    assert doc["REMOTE_USER"] is None and "REMOTE_USER" not in doc["cgi"], doc
    assert doc["REMOTE_ADDR"] == remote_addr, doc


def test_client_cannot_set_remote_user_or_address(tracfront):
    srv = workers(tracfront, 2)
    for name, value in FORGED.items():
        r = requests.get(srv.url + "pid", headers={name: value, name.upper(): value}, timeout=10)
        assert r.status_code == 200, name
        assert_not_fooled(r.json())
    assert_not_fooled(requests.get(srv.url + "pid", headers=FORGED, timeout=10).json())


def listening_ports(pid):
    """TCP ports a process listens on (its sockets matched in /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    with open("/proc/%d/net/tcp" % pid) as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                ports.add(int(cols[1].split(":")[1], 16))
    return ports


def test_worker_port_does_not_trust_forged_headers(tracfront):
    # Anyone on the machine can reach a worker's loopback (control) port
    # directly: nothing a client sends there sets REMOTE_USER or REMOTE_ADDR.
    srv = workers(tracfront, 1)
    worker = next(iter(children(srv.proc.pid)))
    ports = listening_ports(worker) - {srv.port}
    assert ports, "found no listening port of the worker"
    for port in ports:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/pid", headers=FORGED)
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        if r.status == 200:
            assert_not_fooled(json.loads(body))
        else:
            assert 400 <= r.status < 500, (r.status, body[:200])


def sha_htpasswd(tmp_path, user, password):
    path = tmp_path / "htpasswd"
    path.write_text("%s:{SHA}%s\n" % (user, base64.b64encode(hashlib.sha1(password.encode()).digest())
                                      .decode()))
    return path


def test_verified_user_reaches_the_worker(tracfront, tmp_path):
    if "--basic-auth" not in subprocess.run([str(BINARY), "--help"], capture_output=True,
                                            text=True).stdout:
        pytest.skip("this build has no --basic-auth")
    srv = workers(tracfront, 2, "--basic-auth", "*,%s,test" % sha_htpasswd(tmp_path, "alice", "pw"))
    assert requests.get(srv.url + "login", timeout=10).status_code == 401
    bad = requests.get(srv.url + "login", auth=("alice", "wrong"), headers=FORGED, timeout=10)
    assert bad.status_code == 401
    ok = requests.get(srv.url + "login", auth=("alice", "pw"), headers=FORGED, timeout=10)
    assert ok.status_code == 200
    doc = ok.json()
    assert doc["REMOTE_USER"] == "alice" and doc["cgi"].get("AUTH_TYPE", "Basic") == "Basic", doc
    assert doc["REMOTE_ADDR"] == "127.0.0.1"
    assert_not_fooled(requests.get(srv.url + "pid", auth=("alice", "pw"), timeout=10).json())


# --- one profile for the whole server ----------------------------------------

def work_on_both(srv, rounds=10):
    """Concurrent /work requests until both workers have run some; return how many were made."""
    made, pids = 0, set()
    for _ in range(rounds):
        res = concurrently(srv.url + "work?n=3000&s=0.01", 4, 5)
        assert all(status == 200 for status, _ in res), res[:3]
        made += len(res)
        pids |= {body["pid"] for _, body in res}
        if len(pids) == 2:
            return made
    raise AssertionError("every /work request went to one worker: %s" % pids)


def test_function_profile_is_the_merge_of_all_workers(tracfront, tmp_path):
    srv = workers(tracfront, 2, "--profile", "--profile-discard-first", "false")
    k = work_on_both(srv)
    assert settle(lambda: busy_calls(srv), k) == k
    path = tmp_path / "merged.pstats"
    path.write_bytes(requests.get(srv.url + "__profile__/pstats", timeout=30).content)
    st = pstats.Stats(str(path))
    busy = [v for f, v in st.stats.items() if f[2] == "busy" and f[0].endswith("worker_app.py")]
    assert len(busy) == 1 and busy[0][1] == k, busy
    # callgrind: the edges into busy add up to k calls
    grind = requests.get(srv.url + "__profile__/callgrind", timeout=30).text
    assert grind.startswith("# callgrind format")
    assert sum(int(m) for m in re.findall(r"^cfn=busy [^\n]*\ncalls=(\d+) ", grind, re.M)) == k
    collapsed = requests.get(srv.url + "__profile__/collapsed", timeout=30).text
    assert any(line.rpartition(" ")[0].split(";")[-1].startswith("busy (")
               for line in collapsed.splitlines())
    doc = requests.get(srv.url + "__profile__/speedscope.json", timeout=30).json()
    assert any(f["name"].startswith("busy (") for f in doc["shared"]["frames"])
    page = requests.get(srv.url + "__profile__", params={"filter": "busy"}, timeout=30).text
    assert "worker_app.py" in page and "(busy)" in page


@pytest.mark.skipif(os.environ.get("TF_SANITIZER") == "asan",
                    reason="ASan's allocator keeps and reuses freed memory: RSS is not use")
def test_the_front_reads_its_merged_tree_without_a_copy(tracfront):
    """An export or page copies the tree it reads (72 bytes a node) where
    Python that it runs lets other threads change the tree. The front's
    merged tree changes only under the lock its pages hold, and no app runs
    there: it is read as it is (each page grew the front by a copy)."""
    srv = tracfront("--app", "export_overlap_app:app", "--workers", "1", "--profile",
                    "--profile-discard-first", "false", "--profile-max-nodes", "1000000")
    copy_kib = int(requests.get(srv.url, timeout=60).text) * 72 // 1024  # 737,190 nodes
    for _ in range(2):  # the merge's own memory, there for the next pages
        assert requests.get(srv.url + "__profile__/callgrind", timeout=60).status_code == 200
    for page in ["callgrind", "", "api/functions"]:
        rss = peak_from_now(srv.proc.pid)
        assert requests.get(srv.url + "__profile__/" + page, timeout=60).status_code == 200
        grew = memory_kib(srv.proc.pid, "VmHWM") - rss
        assert grew < copy_kib / 4, (page, grew, copy_kib)


def test_the_front_page_while_an_export_reads_the_tree(tracfront):
    """The front's page waited for the merge lock behind an export of the
    merged tree (seconds for a big one), holding the front's thread: it
    shows its latency and in-flight parts with a note at once, as a single
    process does."""
    srv = tracfront("--app", "export_overlap_app:app", "--workers", "1", "--profile",
                    "--profile-discard-first", "false", "--profile-max-nodes", "1000000")
    assert int(requests.get(srv.url, timeout=60).text) > 700000
    check_the_page_during_exports(srv)


def test_nothing_is_saved_from_part_of_the_workers(tracfront, tmp_path):
    """A worker that sends no call tree in time (stopped here; a request
    holding its GIL in a long C call does the same) left the merge: Save
    wrote the other worker's profile alone and said "written". Now nothing
    is written, the POST is a 504 naming the cause, and the next Save with
    every worker there writes the whole."""
    log, grind = tmp_path / "w.pstats", tmp_path / "w.callgrind"
    srv = workers(tracfront, 2, "--profile", "--profile-discard-first", "false",
                  "--profile-log", log, "--profile-callgrind", grind)
    k = work_on_both(srv)
    assert settle(lambda: busy_calls(srv), k) == k
    live = requests.Session()
    mine = live.get(srv.url + "pid", timeout=10).json()["pid"]  # this connection's worker
    other, = set(worker_pids(srv)) - {mine}
    origin = {"Origin": srv.url.rstrip("/")}
    os.kill(other, signal.SIGSTOP)
    try:
        r = live.post(srv.url + "__profile__/save", headers=origin, allow_redirects=False,
                      timeout=60)
    finally:
        os.kill(other, signal.SIGCONT)
    assert r.status_code == 504, (r.status_code, r.text)
    assert "did not send its call tree" in r.text, r.text
    assert not log.exists() and not grind.exists()
    assert "--profile-log not written: a worker did not send its call tree" in srv.error_log
    assert "--profile-callgrind not written either" in srv.error_log
    page = live.get(srv.url + "__profile__", timeout=60).text
    assert "could not be written" in page, page[:3000]
    r = live.post(srv.url + "__profile__/save", headers=origin, allow_redirects=False, timeout=60)
    assert r.status_code == 303, (r.status_code, r.text)
    st = pstats.Stats(str(log))
    assert sum(v[1] for f, v in st.stats.items() if f[2] == "busy") == k


def test_a_view_too_long_for_the_clients_head_goes_back_to_the_bare_page(tracfront):
    """The front checks that the redirect's Location fits the answer's head
    on its own connection (the worker's relay, a small request); the worker
    copied it onto the client's, whose head had no room left: nothing was
    sent, though the action was done."""
    srv = workers(tracfront, 2)
    for view_bytes, cookie_bytes in ((12000, 5000), (10000, 10000)):
        r = requests.post(srv.url + "__profile__/stop?sort=calls&x=" + "a" * view_bytes,
                          headers={"Origin": srv.url.rstrip("/"), "Cookie": "c=" + "b" * cookie_bytes},
                          allow_redirects=False, timeout=30)
        assert (r.status_code, r.headers["Location"]) == (303, "../__profile__")
    r = post(srv, "start?sort=calls")  # a view that fits is kept
    assert (r.status_code, r.headers["Location"]) == (303, "../__profile__?sort=calls")


def test_a_page_during_a_hand_over_counts_every_request(tracfront):
    """A hand-over added the stopping worker's latency to what the front
    kept using the page's registry as its scratch: a page drawn meanwhile
    showed that worker's share alone (its counters went down)."""
    srv = tracfront("--app", "export_overlap_app:app", "--workers", "2", "--profile",
                    "--profile-discard-first", "false", "--profile-max-nodes", "2000000")
    made = 202
    for width in ["90"] * 2 + ["1"] * (made - 2):  # two big trees: the page's merge takes seconds
        assert requests.get(srv.url, params={"width": width}, timeout=60).status_code == 200

    def timed():
        page = requests.get(srv.url + "__profile__?sort=calls", timeout=120).text
        return int(re.search(r"Up \d+s, (\d+) requests timed", page).group(1))

    assert timed() == made
    during = []
    page = threading.Thread(target=lambda: during.append(timed()))
    page.start()
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGHUP)  # both workers hand over while the page merges
    page.join()
    assert during == [made]
    wait_for(lambda: "new workers are serving" in srv.error_log, 30, "the reload")
    assert timed() == made


def post(srv, action, origin=True):
    headers = {"Origin": srv.url.rstrip("/")} if origin else {"Origin": "http://evil.example"}
    return requests.post(srv.url + "__profile__/" + action, headers=headers,
                         allow_redirects=False, timeout=30)


def test_start_stop_clear_reach_every_worker(tracfront):
    srv = workers(tracfront, 2, "--profile-discard-first", "false")
    work_on_both(srv, rounds=3)
    assert busy_calls(srv) == 0  # off by default
    assert post(srv, "start", origin=False).status_code == 403
    assert post(srv, "start").status_code == 303
    assert "Function profiling: <b>on</b>" in requests.get(srv.url + "__profile__", timeout=30).text
    k = work_on_both(srv)
    assert settle(lambda: busy_calls(srv), k) == k
    assert post(srv, "stop").status_code == 303
    work_on_both(srv, rounds=3)
    time.sleep(0.3)
    assert busy_calls(srv) == k, "requests after Stop were profiled"
    assert post(srv, "clear").status_code == 303
    assert busy_calls(srv) == 0
    assert requests.get(srv.url + "__profile__/pstats", timeout=30).status_code == 404  # nothing
    assert post(srv, "start").status_code == 303
    k2 = work_on_both(srv)
    assert settle(lambda: busy_calls(srv), k2) == k2, "Clear left counts in a worker"


@pytest.mark.parametrize("flag,action,on", [((), "start", True), (("--profile",), "stop", False)],
                         ids=["started", "stopped"])
def test_new_workers_take_the_pages_start_stop_state(tracfront, flag, action, on):
    srv = workers(tracfront, 2, "--profile-discard-first", "false", *flag)
    assert post(srv, action).status_code == 303
    before = children(srv.proc.pid)
    os.kill(next(iter(before)), signal.SIGKILL)  # a worker of the server this test started
    wait_for(lambda: (lambda k: len(k) == 2 and not set(k) & set(before))(children(srv.proc.pid)),
             30, "a new generation of workers")
    wait_for(lambda: set(worker_pids(srv)).isdisjoint(before), 20, "the new workers to serve")
    state = "on" if on else "off"
    assert "Function profiling: <b>%s</b>" % state in \
        requests.get(srv.url + "__profile__", timeout=30).text
    k = work_on_both(srv)
    if not on:
        time.sleep(0.3)  # as long as a profiled request would take to show
    assert settle(lambda: busy_calls(srv), k if on else 0) == (k if on else 0), \
        "the new workers do not profile as the page says (%s)" % state


def route_count(srv, route):
    routes = requests.get(srv.url + "__profile__/api/latency", timeout=10).json()["routes"]
    return sum(r["count"] for r in routes if r["route"] == route)


def new_generation(srv, before):
    """Wait until workers other than `before` serve; return their pids."""
    kids = wait_for(lambda: (lambda new: new if len(new) == len(before) else None)(
        set(children(srv.proc.pid)) - set(before)), 30, "a new generation")
    wait_for(lambda: set(worker_pids(srv)).isdisjoint(before), 20, "the new workers to serve")
    return kids


def test_profile_outlives_a_reload(tracfront):
    srv = workers(tracfront, 2, "--profile", "--profile-discard-first", "false")
    k = work_on_both(srv)
    assert settle(lambda: busy_calls(srv), k) == k
    assert settle(lambda: route_count(srv, "/work"), k) == k
    assert fetch(requests, srv.url + "slow?s=0.3")[0] == 200  # the slowest, whatever comes next
    old_id = wait_for(lambda: [e["id"] for e in requests.get(
        srv.url + "__profile__/api/slowest", timeout=10).json()["slowest"]
        if e["target"].startswith("/slow")], 5, "the slow request's row")[0]
    assert requests.get(srv.url + "__profile__/request", params={"id": old_id},
                        timeout=10).status_code == 200
    before = children(srv.proc.pid)
    srv.proc.send_signal(signal.SIGHUP)
    new_generation(srv, before)
    # the old workers handed their profile to the front before they went
    wait_for(lambda: not set(children(srv.proc.pid)) & set(before), 20, "the old workers to exit")
    assert busy_calls(srv) == k, "the reload lost the old workers' call counts"
    assert route_count(srv, "/work") == k, "the reload lost the old workers' latency"
    slowest = requests.get(srv.url + "__profile__/api/slowest", timeout=10).json()["slowest"]
    assert old_id in [e["id"] for e in slowest]  # the row stays; its call tree went with its worker
    page = requests.get(srv.url + "__profile__/request", params={"id": old_id}, timeout=10)
    assert page.status_code == 404 and "its worker has stopped" in page.text, page.text
    k2 = work_on_both(srv)
    assert settle(lambda: busy_calls(srv), k + k2) == k + k2
    assert settle(lambda: route_count(srv, "/work"), k + k2) == k + k2
    assert post(srv, "clear").status_code == 303  # clears what the old workers left too
    assert busy_calls(srv) == 0 and route_count(srv, "/work") == 0


def test_requests_on_old_workers_are_counted_until_they_end(tracfront, tmp_path):
    srv = workers(tracfront, 2)
    gate, mark = tmp_path / "gate", tmp_path / "mark"
    t, result = gated(srv, gate, mark)
    wait_for(mark.exists, 10, "the gated request")
    before = children(srv.proc.pid)
    srv.proc.send_signal(signal.SIGHUP)
    new_generation(srv, before)
    try:  # the old worker still runs it: in flight, with the one asking
        assert requests.get(srv.url + "__profile__/api/latency", timeout=10).json()["in_flight"] == 2
        inflight = requests.get(srv.url + "__profile__/api/inflight", timeout=10).json()
        assert [r["target"] for w in inflight["workers"] for r in w["requests"]
                if r["target"].startswith("/gate")], inflight
    finally:
        gate.touch()
        t.join(30)
    assert result["value"][0] == 200, result
    wait_for(lambda: not set(children(srv.proc.pid)) & set(before), 20, "the old workers to exit")
    doc = requests.get(srv.url + "__profile__/api/latency", timeout=10).json()
    assert doc["in_flight"] == 1, doc
    assert route_count(srv, "/gate") == 1, "the old worker's last request was not kept"


def test_latency_counts_every_request(tracfront):
    srv = workers(tracfront, 2)
    res = concurrently(srv.url + "pid?s=0.005", 6, 20)
    assert all(s == 200 for s, _ in res) and len({b["pid"] for _, b in res}) == 2

    def pid_count():
        routes = requests.get(srv.url + "__profile__/api/latency", timeout=10).json()["routes"]
        return sum(r["count"] for r in routes if r["route"] == "/pid")
    assert settle(pid_count, 120) == 120
    prom = requests.get(srv.url + "__profile__/metrics", timeout=10).text
    assert re.search(r'^tracfront_request_duration_seconds_count\{[^}]*route="/pid"[^}]*\} 120(\.0)?$',
                     prom, re.M), prom[:2000]


def test_the_fronts_rows_are_the_busiest_of_every_workers(tracfront):
    """Each worker gives its --profile-max-routes slots to the routes it sees
    first, and the front, adding up their rows, has as many: here each
    worker has /pid, a slow route and a fast one (3 slots), 5 routes in all.
    The front kept the first dump's rows and put the other's in (other), so
    one of the slow routes had no row; its rows are the routes with the most
    time now, and (other) holds the rest, every request counted. A row stays
    until Clear, as a worker's does."""
    srv = workers(tracfront, 2, "--profile-max-routes", "3")
    by_pid, tries = {}, 0
    while len(by_pid) < 2:  # a kept connection stays with the worker that took it
        tries += 1
        assert tries < 200, "the connections all went to one worker"
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/pid")
        pid = json.loads(conn.getresponse().read())["pid"]
        if pid in by_pid:
            conn.close()
        else:
            by_pid[pid] = conn
    first, second = by_pid.values()  # /pid is the third busiest: it has a row
    for conn, paths in ((first, ("/slow?s=0.3", "/version", "/pid?s=0.1")),
                        (second, ("/login?s=0.3", "/work?n=1"))):
        for path in paths:
            conn.request("GET", path)
            res = conn.getresponse()
            assert res.status == 200 and res.read(), path
    first.close()

    def rows():
        got = requests.get(srv.url + "__profile__/api/latency", timeout=10).json()["routes"]
        return {r["route"]: r["count"] for r in got}
    settle(lambda: sum(rows().values()), tries + 5)
    got = rows()
    assert got.get("/slow") == 1 and got.get("/login") == 1 and got.get("/pid") == tries + 1, got
    assert got.get("(other)") == 2 and sum(got.values()) == tries + 5, got
    # a route that now takes more time than one with a row goes to (other):
    # a row that vanished would take its counts with it (a Prometheus
    # counter going down) until Clear
    second.request("GET", "/work?n=1&s=0.6")  # where /work has a slot
    assert second.getresponse().read()
    second.close()
    settle(lambda: sum(rows().values()), tries + 6)
    later = rows()
    assert later.keys() == got.keys() and all(later[k] >= got[k] for k in got), (got, later)
    assert sum(later.values()) == tries + 6, later
    assert post(srv, "clear").status_code == 303
    assert requests.get(srv.url + "work?n=1&s=0.6", timeout=10).ok
    assert settle(lambda: rows(), {"/work": 1}) == {"/work": 1}  # Clear: rows given again


def test_requests_in_flight_on_the_workers_are_counted(tracfront, tmp_path):
    # as in-process: the requests running on any worker, plus the one asking
    srv = workers(tracfront, 2)
    gate = tmp_path / "gate"
    runs = [gated(srv, gate, tmp_path / ("mark%d" % i)) for i in range(3)]
    wait_for(lambda: all((tmp_path / ("mark%d" % i)).exists() for i in range(3)), 10,
             "the gated requests")
    try:
        doc = requests.get(srv.url + "__profile__/api/latency", timeout=10).json()
        assert doc["in_flight"] == 4, doc
        prom = requests.get(srv.url + "__profile__/metrics", timeout=10).text
        assert re.search(r"^tracfront_requests_in_flight 4$", prom, re.M), prom[-1500:]
        # the page: one In flight section, each worker's part under its pid
        pids = {int(p) for p in children(srv.proc.pid)}
        page = requests.get(srv.url + "__profile__", timeout=10).text
        assert page.count("id=inflight") == 1, page
        assert {int(p) for p in re.findall(r"<h3>Worker (\d+)</h3>", page)} == pids, page
        doc = requests.get(srv.url + "__profile__/api/inflight", timeout=10).json()
        assert {w["pid"] for w in doc["workers"]} == pids, doc
        assert sum(len(w["requests"]) for w in doc["workers"]) == 3, doc
    finally:
        gate.touch()
        for t, _ in runs:
            t.join(30)
    assert all(result["value"][0] == 200 for _, result in runs), runs
    assert settle(lambda: requests.get(srv.url + "__profile__/api/latency",
                                       timeout=10).json()["in_flight"], 1) == 1


@pytest.mark.parametrize("n", [0, 2], ids=["in-process", "workers"])
def test_head_on_profile_pages_gives_the_length_of_the_get(tracfront, n):
    srv = tracfront(*APP, "--workers", n)
    assert fetch(requests, srv.url + "pid")[0] == 200
    for page in ("api/functions", "metrics", ""):
        head = requests.head(srv.url + "__profile__/" + page, timeout=10)
        get = requests.get(srv.url + "__profile__/" + page, timeout=10)
        assert head.status_code == get.status_code == 200, page
        assert head.content == b"", page
        assert head.headers["Content-Type"] == get.headers["Content-Type"], page
        length = int(head.headers["Content-Length"])
        if page == "api/functions":  # nothing changes it between the two
            assert length == len(get.content), page
        else:  # the request counts and uptime move
            assert abs(length - len(get.content)) < 100, (page, length, len(get.content))


@pytest.mark.parametrize("n", [0, 2], ids=["in-process", "workers"])
def test_a_long_query_on_a_profile_page_reaches_the_front_whole(tracfront, n):
    srv = tracfront(*APP, "--workers", n, "--profile", "--profile-builtins", "--profile-discard-first", "false")
    assert fetch(requests, srv.url + "slow?s=0.05")[0] == 200
    rid = wait_for(lambda: requests.get(srv.url + "__profile__/api/slowest", timeout=10).json()[
        "slowest"], 5, "the slow request's row")[0]["id"]
    page = requests.get(srv.url + "__profile__/request",
                        params={"pad": "x" * 6000, "id": rid}, timeout=10)
    assert page.status_code == 200 and "time.sleep" in page.text, page.text[:300]


def test_slow_request_call_tree_from_any_worker(tracfront):
    srv = workers(tracfront, 2, "--profile", "--profile-builtins", "--profile-discard-first", "false",
                  "--profile-slowest", "40")
    # the kernel hands each connection to whichever worker accepts first:
    # send pairs at once until both workers have run some
    pids, sent = set(), 0
    for s in ("0.15", "0.2") * 8:
        res = concurrently(srv.url + "slow?s=" + s, 2, 1)
        assert all(status == 200 for status, _ in res), res
        pids |= {body["pid"] for _, body in res}
        sent += 2
        if len(pids) == 2 and sent >= 4:
            break
    assert len(pids) == 2, "slow requests never reached both workers: %s" % pids

    def slowest():
        return requests.get(srv.url + "__profile__/api/slowest", timeout=10).json()["slowest"]
    kept = settle(lambda: len(slowest()), sent)
    assert kept == sent
    for entry in slowest():
        page = requests.get(srv.url + "__profile__/request", params={"id": entry["id"]}, timeout=10)
        assert page.status_code == 200, entry
        assert "<title>&#60;built-in method time.sleep&#62;" in page.text, entry
        # and it is that request's tree, not another one with the same number in another worker
        ms = float(re.search(r"Request \d+: ([\d.]+) ms", page.text).group(1))
        slept_ms = float(entry["target"].split("s=")[1]) * 1000
        assert slept_ms * 0.99 <= ms <= entry["total_us"] / 1000 + 1, (entry, ms)


def test_profile_page_waiting_for_the_front_does_not_hold_the_worker(tracfront):
    # A worker relays profile pages to the front. With the front stopped
    # (SIGSTOP) the relay waits; the worker's one network thread must go on
    # serving the app meanwhile.
    srv = workers(tracfront, 1, "--io-threads", "1")
    assert fetch(requests, srv.url + "pid")[0] == 200
    page = {}

    def get_page():
        try:
            page["status"] = requests.get(srv.url + "__profile__", timeout=60).status_code
        except requests.RequestException as e:
            page["status"] = repr(e)
    os.kill(srv.proc.pid, signal.SIGSTOP)
    try:
        t = threading.Thread(target=get_page, daemon=True)
        t.start()
        time.sleep(0.3)  # the worker has read it and is waiting for the front
        # well within the relay's own 10 s limit, after which a blocked loop
        # would be free again
        status, body = fetch(requests, srv.url + "pid", timeout=5)
        assert status == 200, body
        assert t.is_alive() and "status" not in page, page  # the relay was still waiting
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)
    t.join(30)
    assert page.get("status") == 200, page


# --- worker failure and shutdown ---------------------------------------------

def gated(srv, gate, mark, query=""):
    """Start /gate in a thread (query: more of its parameters, "&exit=N");
    return (thread, result dict)."""
    result = {}

    def run():
        result["value"] = fetch(requests, srv.url + "gate?file=%s&mark=%s%s" % (gate, mark, query),
                                timeout=60)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def test_killed_worker_is_replaced(tracfront, tmp_path):
    srv = workers(tracfront, 2)
    before = children(srv.proc.pid)
    gate, mark = tmp_path / "gate", tmp_path / "mark"
    t, result = gated(srv, gate, mark)
    victim = int(wait_for(lambda: mark.exists() and mark.read_text(), 10, "the gated request"))
    assert victim in before
    os.kill(victim, signal.SIGKILL)  # a worker of the server this test started
    t.join(15)
    gate.touch()  # in case the front retried it elsewhere (it must not)
    t.join(30)
    # the connection the killed worker held is gone: a connection error (the
    # worker served it itself; there is no process in between to answer 502)
    assert result["value"][0] in (502, "error"), result
    # from now on every request succeeds
    res = concurrently(srv.url + "pid", 4, 10)
    assert all(status == 200 for status, _ in res), [r for r in res if r[0] != 200][:3]
    assert victim not in {b["pid"] for _, b in res}
    kids = wait_for(lambda: (lambda k: k if len(k) == 2 and victim not in k else None)(
        children(srv.proc.pid)), 30, "a replacement worker")
    assert not running(victim, before[victim])
    new = set(kids) - set(before)
    assert new  # one replacement, or a whole new generation
    wait_for(lambda: new & worker_pids(srv), 20, "the replacement to serve requests")
    assert any("worker" in line and "restart" in line for line in srv.error_log.splitlines()), \
        srv.error_log[-2000:]



@pytest.mark.parametrize("end,expect", [
    ("SIGKILL", r"signal 9\b"), ("SIGSEGV", r"signal 11\b"), ("exit=70", r"status 70\b"),
    ("finishes", None)], ids=["SIGKILL", "SIGSEGV", "exit-70", "finishes"])
def test_a_retired_worker_that_dies_is_logged(tracfront, tmp_path, end, expect):
    """A worker of an old generation, still finishing a request after a reload,
    that is killed, crashes or exits nonzero gets an [error] line naming it and
    how it ended (Apache's "child pid N exit signal ..."); one that exits 0
    after its requests, as it should, gets none."""
    if end == "SIGSEGV" and os.environ.get("TF_SANITIZER"):
        # a sanitizer's handler reports the fault, then aborts (ASan) or exits 66 (TSan)
        expect = r"status 66\b" if os.environ["TF_SANITIZER"] == "tsan" else r"signal (11|6)\b"
    srv = workers(tracfront, 1)
    gate, mark = tmp_path / "gate", tmp_path / "mark"
    t, result = gated(srv, gate, mark, "&" + end if end.startswith("exit=") else "")
    old = int(wait_for(lambda: mark.exists() and mark.read_text(), 10, "the gated request"))
    before = children(srv.proc.pid)
    srv.proc.send_signal(signal.SIGHUP)
    new_generation(srv, before)
    assert running(old, before[old]), "the old worker did not wait for its request"
    if end.startswith("SIG"):
        os.kill(old, getattr(signal, end))  # a worker of the server this test started
    else:
        gate.touch()
    t.join(30)

    def errors_naming_it():  # the front's lines, not the worker's own ("[worker PID] ...")
        return [l for l in srv.error_log.splitlines() if "[error] " in l
                and re.search(r"(?<!\[)worker %d\b" % old, l)]
    if expect is None:
        assert result["value"][0] == 200, result
        # reaped (the front's main thread logs right after), then a line the
        # same thread writes later: whatever the reap logged is in by then
        wait_for(lambda: (proc_stat(old) or (0, 0, None))[2] != before[old], 20,
                 "the front to reap the old worker")
        srv.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "log files reopened" in srv.error_log, 10, "the SIGUSR1 line")
        assert not errors_naming_it(), errors_naming_it()
        return
    assert result["value"][0] == "error", result  # the worker answered nothing
    line = wait_for(lambda: [l for l in errors_naming_it() if re.search(expect, l)], 10,
                    "an [error] line saying how the retired worker %d ended" % old)
    assert "stepping down after a reload" in line[0], line
    assert requests.get(srv.url + "pid", timeout=10).status_code == 200  # no restart needed

def requests_total(srv, route):
    """tracfront_requests_total of route (all its series) in /__profile__/metrics,
    or None when the page did not answer (a worker going away mid-request)."""
    try:
        prom = requests.get(srv.url + "__profile__/metrics", timeout=30).text
    except requests.RequestException:
        return None
    return sum(int(n) for r, n in re.findall(
        r'^tracfront_requests_total\{route="([^"]*)"[^}]*\} (\d+)$', prom, re.M) if r == route)


def pid_requests(srv, n=120):
    """n concurrent /pid requests, both workers serving some; returns n."""
    res = concurrently(srv.url + "pid?s=0.005", 6, n // 6)
    assert all(s == 200 for s, _ in res) and len({b["pid"] for _, b in res}) == 2, res[:3]
    return len(res)


def crash_a_worker(srv, route, floor):
    """/abort kills the worker that takes it (SIGABRT, nothing handed over);
    the front starts a new generation and the other worker leaves as in a
    reload. Until both are gone route's counter must never read below floor;
    returns it then."""
    before = children(srv.proc.pid)
    assert fetch(requests, srv.url + "abort")[0] in (502, "error")
    seen = []

    def replaced():
        seen.append(requests_total(srv, route))
        assert seen[-1] is None or seen[-1] >= floor, "the counter went down: %s" % seen
        kids = children(srv.proc.pid)
        return len(kids) == 2 and not set(kids) & set(before)
    wait_for(replaced, 30, "a new generation, every old worker gone")
    return wait_for(lambda: (lambda v: v is not None and (v,))(requests_total(srv, route)), 10,
                    "the metrics page")[0]


def test_a_crashed_workers_counters_stay(tracfront):
    # Prometheus reads a counter that goes down as a reset (rate() jumps): a
    # worker that dies keeps what the front last had of it, here the scrape's
    srv = workers(tracfront, 2)
    n = pid_requests(srv)
    assert settle(lambda: requests_total(srv, "/pid"), n) == n
    assert crash_a_worker(srv, "/pid", n) == n, "the dead worker's requests were lost"
    # Clear still empties it, and a later crash brings nothing back from before
    assert post(srv, "clear").status_code == 303
    assert requests_total(srv, "/pid") == 0
    m = pid_requests(srv, 60)
    assert settle(lambda: requests_total(srv, "/pid"), m) == m
    assert crash_a_worker(srv, "/pid", m) == m


def test_a_crashed_worker_keeps_what_the_front_pulled(tracfront):
    # no profile page read before the crash: the front's own pull (every 2 s)
    srv = workers(tracfront, 2)
    n = pid_requests(srv)
    time.sleep(5)  # two pulls at least; reading the profile would pull too
    assert crash_a_worker(srv, "/pid", 0) == n, "the dead worker's requests were lost"


def test_a_crashed_workers_slow_rows_link_no_call_tree(tracfront):
    # its call trees died with it: its rows stay, without a link to a 404
    srv = workers(tracfront, 2, "--profile", "--profile-discard-first", "false")
    res = concurrently(srv.url + "slow?s=0.3", 2, 1)  # one on each worker (least busy)
    assert all(s == 200 for s, _ in res), res
    page = requests.get(srv.url + "__profile__", timeout=30).text  # the front pulls
    assert len(re.findall(r"request\?id=\d+", page)) >= 2, page
    crash_a_worker(srv, "/slow", 2)
    assert fetch(requests, srv.url + "slow?s=0.4")[0] == 200  # a new worker's: linked
    page = requests.get(srv.url + "__profile__", timeout=30).text
    assert page.count("/slow?s=0.3") >= 2, "the rows went with the worker"
    links = re.findall(r"request\?id=(\d+)", page)
    assert links, "the living worker's slow request lost its call tree link"
    for rid in links:
        r = requests.get(srv.url + "__profile__/request", params={"id": rid}, timeout=10)
        assert r.status_code == 200, "a call tree link leads to %d: %s" % (r.status_code, r.text)


def test_sigterm_stops_front_and_workers(tracfront, tmp_path):
    marks = tmp_path / "atexit"
    marks.mkdir()
    srv = workers(tracfront, 2, env={"WORKER_ATEXIT_DIR": str(marks)})
    served = worker_pids(srv)
    kids, tree = children(srv.proc.pid), descendants(srv.proc.pid)
    assert served == set(kids)
    gate, mark = tmp_path / "gate", tmp_path / "mark"
    t, result = gated(srv, gate, mark)
    wait_for(mark.exists, 10, "the gated request")
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert srv.alive() and t.is_alive(), "did not wait for the in-flight request"
    gate.touch()
    t.join(30)
    assert result["value"][0] == 200, result
    assert srv.proc.wait(30) == 0
    try:
        wait_for(lambda: not any(running(pid, start) for pid, start in tree.items()), 5, "")
    except AssertionError:
        raise AssertionError("processes left behind after SIGTERM: %s" % [
            pid for pid, start in tree.items() if running(pid, start)])
    assert sorted(p.name for p in marks.iterdir()) == sorted("atexit-%d" % p for p in kids), \
        "a worker did not finalize Python"



def test_a_worker_that_dies_in_the_stop_is_logged(tracfront, tmp_path):
    """A worker finishing its requests in a stop that is killed is named in an
    [error] line with its signal, as after a reload; the front still exits 0."""
    srv = workers(tracfront, 1)
    gate, mark = tmp_path / "gate", tmp_path / "mark"
    t, result = gated(srv, gate, mark)
    victim = int(wait_for(lambda: mark.exists() and mark.read_text(), 10, "the gated request"))
    srv.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping the workers" in srv.error_log, 10, "the front's stop")
    os.kill(victim, signal.SIGKILL)  # a worker of the server this test started
    t.join(30)
    assert result["value"][0] == "error", result
    assert srv.proc.wait(30) == 0
    assert [l for l in srv.error_log.splitlines() if "[error] worker %d of generation" % victim in l
            and "in the stop" in l and "signal 9" in l], srv.error_log[-2000:]

def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def test_workers_carry_the_fronts_process_name(tracfront):
    # what ps, top and pgrep -x show: the front's name, not "exe"
    srv = workers(tracfront, 2)
    name = BINARY.name[:15]  # as the kernel keeps it
    assert comm(srv.proc.pid) == name
    kids = children(srv.proc.pid)
    assert {pid: comm(pid) for pid in kids} == {pid: name for pid in kids}


def test_the_fronts_route_rows_are_sorted_and_cut_as_one_process(tracfront):
    """The front's page is made from its workers' rows added up: routes_sort
    and routes_limit order and cut them as in one process, (not found) kept."""
    srv = workers(tracfront, 2)
    with requests.Session() as s:
        s.get(srv.url + "slow", params={"s": "0.2"}, timeout=10)
        for _ in range(3):
            s.get(srv.url + "pid", timeout=10)
        s.get(srv.url + "version", timeout=10)
        assert s.get(srv.url + "nope", timeout=10).status_code == 404

    def rows(query):
        page = requests.get(srv.url + "__profile__?" + query, timeout=30).text
        table = page[page.index("Latency by route"):page.index("Slowest requests")]
        return re.findall(r"<tr><td><code>([^<]*)</code>", table), page
    settle(lambda: len(rows("routes_limit=all")[0]), 4)
    got, page = rows("routes_limit=1")
    assert got == ["/slow", "(not found)"], got
    assert re.search(r"\b2 of 4 rows\b", page), page[:3000]
    got, _ = rows("routes_limit=1&routes_sort=requests")
    assert got == ["/pid", "(not found)"], got
    got, _ = rows("routes_sort=route")
    assert got == ["(not found)", "/pid", "/slow", "/version"], got
