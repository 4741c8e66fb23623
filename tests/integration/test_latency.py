"""The always-on latency accounting behind /__profile__: requests folded into
route keys, percentiles from the histograms, Prometheus text that
prometheus_client parses, and the profile path kept away from the app."""
import concurrent.futures
import html
import http.client
import re
import time

import pytest
import requests

from conftest import fake_trac

APP = ("--app", "robust_apps:app")


def latency(srv, settle=None):
    """The latency table; with settle=(route, count), wait until that route
    has its count (a request is recorded when its connection work completes,
    which can be just after the client has read the response)."""
    deadline = time.monotonic() + 5
    while True:
        r = requests.get(srv.url + "__profile__/api/latency", timeout=10)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/json"
        routes = {(x["route"], x["backend"]): x for x in r.json()["routes"]}
        if not settle or routes.get((settle[0], "wsgi"), {}).get("count") == settle[1] \
                or time.monotonic() > deadline:
            return routes
        time.sleep(0.02)


def test_routes_fold_ids_and_count(tracfront):
    srv = tracfront(*APP)
    for path in ("count?i=1", "hello", "hello", "slow?s=0.05"):
        assert requests.get(srv.url + path, timeout=10).status_code == 200
    for n in (1, 22, 333):
        requests.get(srv.url + "ticket/%d" % n, timeout=10)
    routes = latency(srv, settle=("/ticket/:id", 3))
    assert routes[("/hello", "wsgi")]["count"] == 2
    tickets = routes[("/ticket/:id", "wsgi")]
    assert tickets["count"] == 3
    assert tickets["status"] == {"2xx": 3} or sum(tickets["status"].values()) == 3
    slow = routes[("/slow", "wsgi")]
    assert slow["count"] == 1
    assert slow["p50_us"] >= 50000 * 0.99  # slept 50 ms
    for r in routes.values():
        assert r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["max_us"]
        assert r["ttfb_p50_us"] <= r["max_us"]


@pytest.mark.parametrize("mount,workers", [("", ()), ("/trac", ()), ("/a/b", ("--workers", "2"))])
def test_trac_project_names_are_never_folded(tracfront, tmp_path, mount, workers):
    """Under --trac-env-parent-dir the first segment (after --mount) of what
    the app answers names a project: projects 2024 and 2025 are two routes,
    not /:id; ids further on still fold, and so do those of a static path."""
    parent = tmp_path / "projects"
    for name in ("2024", "2025", "deadbeef42"):
        (parent / name).mkdir(parents=True)
    files = tmp_path / "files"
    for n in ("123", "456"):
        (files / n).mkdir(parents=True)
        (files / n / "a.txt").write_text("a")
    srv = tracfront("--trac-env-parent-dir", parent, "--pythonpath", fake_trac(tmp_path),
                    "--static", "/files=%s" % files, *(("--mount", mount) if mount else ()),
                    *workers)
    base = srv.url + mount.lstrip("/") + ("/" if mount else "")
    for path in ("2024/wiki", "2025/wiki", "2025/wiki", "deadbeef42/ticket/7", "2024/ticket/8"):
        assert requests.get(base + path, timeout=10).status_code == 200
    for n in ("123", "456"):
        assert requests.get(srv.url + "files/%s/a.txt" % n, timeout=10).text == "a"
    deadline = time.monotonic() + 5
    while True:
        r = requests.get(srv.url + "__profile__/api/latency", timeout=10).json()
        counts = {(x["route"], x["backend"]): x["count"] for x in r["routes"]}
        if counts.get(("/files/:id/a.txt", "static")) == 2 and \
                counts.get((mount + "/2024/ticket/:id", "wsgi")) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert counts[(mount + "/2024/wiki", "wsgi")] == 1, counts
    assert counts[(mount + "/2025/wiki", "wsgi")] == 2
    assert counts[(mount + "/deadbeef42/ticket/:id", "wsgi")] == 1
    assert counts[(mount + "/2024/ticket/:id", "wsgi")] == 1
    assert counts[("/files/:id/a.txt", "static")] == 2, counts
    assert not any("/:id/" in route for route, backend in counts if backend == "wsgi"), counts


def test_trac_projects_stay_apart_when_the_upstream_answers_them(tracfront, upstream, tmp_path):
    """--mirror --mirror-primary upstream: the upstream answers the projects'
    paths (the app gets copies), and the latency rows still keep projects
    2024 and 2025 apart, as the comparison page does. (--mount /echo: the
    test upstream answers /echo... with 200.)"""
    parent = tmp_path / "projects"
    for name in ("2024", "2025"):
        (parent / name).mkdir(parents=True)
    up = upstream()
    srv = tracfront("--trac-env-parent-dir", parent, "--pythonpath", fake_trac(tmp_path),
                    "--mount", "/echo", "--upstream", up.url, "--mirror",
                    "--mirror-primary", "upstream")
    for path in ("echo/2024/wiki", "echo/2025/wiki", "echo/2025/wiki"):
        assert requests.get(srv.url + path, timeout=10).status_code == 200
    deadline = time.monotonic() + 5
    while True:
        rows = requests.get(srv.url + "__profile__/api/latency", timeout=10).json()["routes"]
        counts = {(x["route"], x["backend"]): x["count"] for x in rows}
        if counts.get(("/echo/2025/wiki", "upstream")) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert counts.get(("/echo/2024/wiki", "upstream")) == 1, counts
    assert counts.get(("/echo/2025/wiki", "upstream")) == 2, counts


def test_profile_path_never_reaches_the_app(tracfront):
    srv = tracfront(*APP)
    for path in ("__profile__", "__profile__/", "__profile__/metrics", "__profile__/nope",
                 "%5F_profile__/", "__%70rofile__/metrics"):  # matched decoded, as the app's
        requests.get(srv.url + path, timeout=10)
    seen = requests.get(srv.url + "seen", timeout=10).json()
    assert not any("__profile__" in str(s) for s in seen), seen
    assert requests.get(srv.url + "__profile__/nope", timeout=10).status_code == 404
    assert "tracfront_requests_total" in requests.get(srv.url + "__%70rofile__/metrics",
                                                      timeout=10).text
    assert requests.post(srv.url + "__profile__", timeout=10).status_code == 405
    # and the profiler's own requests are not timed as app routes
    assert not any("__profile__" in route for route, _ in latency(srv))


def test_prometheus_text_parses(tracfront):
    parser = pytest.importorskip("prometheus_client.parser")
    srv = tracfront(*APP)
    for _ in range(5):
        requests.get(srv.url + "hello", timeout=10)
    latency(srv, settle=("/hello", 5))  # the 5th can be recorded just after its answer
    r = requests.get(srv.url + "__profile__/metrics", timeout=10)
    assert r.status_code == 200
    families = {f.name: f for f in parser.text_string_to_metric_families(r.text)}
    duration = families["tracfront_request_duration_seconds"]
    assert duration.type == "histogram"
    samples = [s for s in duration.samples if s.labels.get("route") == "/hello"]
    count = [s.value for s in samples if s.name.endswith("_count")]
    inf = [s.value for s in samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"]
    assert count == [5.0] and inf == [5.0]
    buckets = [s.value for s in samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets), "bucket counts must be cumulative"
    assert families["tracfront_requests_in_flight"].samples[0].value >= 0
    total = families["tracfront_requests"]  # the parser drops the _total suffix
    assert any(s.labels.get("route") == "/hello" and s.labels.get("code") == "2xx"
               and s.value == 5 for s in total.samples)


def test_page_escapes_route_keys(tracfront):
    srv = tracfront(*APP)
    # sent raw: a browser would percent-encode it, an attacker need not
    srv.raw(b"GET /x<script>alert(1)</script> HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    page = requests.get(srv.url + "__profile__", timeout=10)
    assert page.status_code == 200
    assert "/x&#60;script&#62;alert(1)&#60;/script&#62;" in page.text
    assert "<script>" not in page.text


def get_from(srv, source, path="/__profile__/api/latency", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10,
                                      source_address=(source, 0))
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read()


def test_profile_allow_replaces_loopback(tracfront):
    srv = tracfront(*APP, "--profile-allow", "127.0.0.2/32", "--profile-allow", "10.0.0.0/8")
    status, body = get_from(srv, "127.0.0.1")
    assert status == 403, body
    assert b"--profile-allow" in body
    assert get_from(srv, "127.0.0.2")[0] == 200
    # the app itself is open to both
    assert get_from(srv, "127.0.0.1", "/hello")[0] == 200


def test_default_allows_all_of_loopback(tracfront):
    srv = tracfront(*APP)
    assert get_from(srv, "127.0.0.1")[0] == 200
    assert get_from(srv, "127.0.0.3")[0] == 200


FORWARDED = [{"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
             {"X-Real-IP": "203.0.113.9"}]


@pytest.mark.parametrize("headers", FORWARDED, ids=lambda h: next(iter(h)))
def test_default_refuses_what_a_proxy_on_loopback_forwards(tracfront, headers):
    """Behind IIS ARR, Apache or nginx on the same host every client comes
    from loopback; the proxy says who it was in X-Forwarded-For (ARR's and
    mod_proxy's default), Forwarded or X-Real-IP: the default (loopback)
    does not open the profiler to them. Given ranges are the user's word."""
    srv = tracfront(*APP)
    status, body = get_from(srv, "127.0.0.1", headers=headers)
    assert status == 403 and b"proxy" in body and b"--profile-allow" in body, body
    assert get_from(srv, "127.0.0.1", "/hello", headers=headers)[0] == 200
    opened = tracfront(*APP, "--profile-allow", "127.0.0.1/32")
    assert get_from(opened, "127.0.0.1", headers=headers)[0] == 200


def test_bad_profile_allow_is_refused_at_start(tracfront):
    srv = tracfront(*APP, "--profile-allow", "10.0.0.0/33", expect_fail=True)
    assert srv.proc.wait(10) == 2
    assert "profile-allow" in srv.stderr


def test_slowest_requests_are_kept_slowest_first(tracfront):
    srv = tracfront(*APP, "--profile-slowest", "3")
    # 100 ms between the third and the fourth: a loaded machine does not swap them
    for s in ("0.02", "0.4", "0", "0.25", "0.12"):
        assert requests.get(srv.url + "slow", params={"s": s}, timeout=10).status_code == 200
    latency(srv, settle=("/slow", 5))  # all five recorded
    r = requests.get(srv.url + "__profile__/api/slowest", timeout=10)
    assert r.status_code == 200
    slowest = r.json()["slowest"]
    assert [x["target"] for x in slowest] == ["/slow?s=0.4", "/slow?s=0.25", "/slow?s=0.12"]
    assert slowest[0]["total_us"] >= 400000 * 0.99
    assert all(x["method"] == "GET" and x["status"] == 200 for x in slowest)
    assert all(x["queue_us"] <= x["ttfb_us"] <= x["total_us"] for x in slowest)
    page = requests.get(srv.url + "__profile__", timeout=10).text
    assert "Slowest requests" in page and "GET /slow?s=0.4" in page


def test_page_summary_and_route_histograms(tracfront):
    srv = tracfront(*APP)
    for _ in range(3):
        requests.get(srv.url + "hello", timeout=10)
    latency(srv, settle=("/hello", 3))
    page = requests.get(srv.url + "__profile__", timeout=10).text
    # the page's own request is one of those in flight, and the line says so
    assert re.search(r"Up \d+s, 3 requests timed, 1 in flight \(this page included\)", page)
    row = page[page.index("<code>/hello</code>"):]
    row = row[:row.index("\n")]
    assert "<svg width=\"120\"" in row and "<rect" in row
    bars = re.findall(r"<rect [^>]*><title>(\d+)</title>", row)
    assert sum(int(b) for b in bars) == 3


def test_latency_accounting_can_be_switched_off(tracfront):
    srv = tracfront(*APP, "--profile-latency", "false")
    for _ in range(3):
        assert requests.get(srv.url + "hello", timeout=10).status_code == 200
    time.sleep(0.2)  # past the point where a request would have been recorded
    assert latency(srv) == {}


def test_not_found_scan_does_not_take_the_route_slots(tracfront, tmp_path):
    """A scan of 404 URLs took a route slot per URL, first come first kept:
    real routes then went to (other) and /metrics grew by thousands of
    series. A 404 for a route not yet known is counted under (not found);
    a known route keeps its own 404s."""
    app = tmp_path / "scan_app.py"
    app.write_text(
        "def application(environ, start_response):\n"
        "    found = not environ['PATH_INFO'].startswith('/scan')\n"
        "    start_response('200 OK' if found else '404 Not Found', [])\n"
        "    return [b'x']\n")
    srv = tracfront("--app", "scan_app:application", "--pythonpath", tmp_path,
                    "--profile-max-routes", "5")
    with requests.Session() as s:
        for i in range(20):
            assert s.get(srv.url + "scan%d/wp-login.php" % i, timeout=10).status_code == 404
        assert s.get(srv.url + "wiki/WikiStart", timeout=10).status_code == 200
    routes = latency(srv, settle=("/wiki/WikiStart", 1))
    assert routes[("/wiki/WikiStart", "wsgi")]["count"] == 1
    assert routes[("(not found)", "wsgi")]["count"] == 20
    assert not any(route.startswith("/scan") for route, _ in routes), sorted(routes)
    assert ("(other)", "wsgi") not in routes


def test_not_found_takes_no_route_slot(tracfront, tmp_path):
    """(not found) and (other) are no routes of the app's: they took a slot of
    --profile-max-routes each, so with 2 slots a 404 left room for one real
    route (/b went to (other))."""
    app = tmp_path / "nf_app.py"
    app.write_text(
        "def application(environ, start_response):\n"
        "    found = environ['PATH_INFO'] != '/nf'\n"
        "    start_response('200 OK' if found else '404 Not Found', [])\n"
        "    return [b'x']\n")
    srv = tracfront("--app", "nf_app:application", "--pythonpath", tmp_path,
                    "--profile-max-routes", "2")
    with requests.Session() as s:
        for path in ("nf", "a", "b", "c", "a", "b"):
            s.get(srv.url + path, timeout=10)
    routes = latency(srv, settle=("/b", 2))
    counts = {route: r["count"] for (route, _), r in routes.items()}
    assert counts == {"(not found)": 1, "/a": 2, "/b": 2, "(other)": 1}, counts


def test_queue_wait_is_the_wait_for_an_app_thread(tracfront):
    """With one app thread, four requests of 0.3 s sent at once run one after
    another: the last waits about 0.9 s for the thread. The queue wait ended
    when the request was put in the pool's queue, so it read microseconds
    whatever the wait."""
    srv = tracfront(*APP, "--threads", "1")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: requests.get(
            srv.url + "slow", params={"s": "0.3", "i": i}, timeout=30), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    routes = latency(srv, settle=("/slow", 4))
    assert routes[("/slow", "wsgi")]["queue_p99_us"] >= 500000, routes[("/slow", "wsgi")]
    slowest = requests.get(srv.url + "__profile__/api/slowest", timeout=10).json()["slowest"]
    assert slowest[0]["queue_us"] >= 500000, slowest
    assert all(x["queue_us"] <= x["ttfb_us"] <= x["total_us"] for x in slowest), slowest
    metrics = requests.get(srv.url + "__profile__/metrics", timeout=10).text
    under = re.search(r'tracfront_request_queue_seconds_bucket\{route="/slow",backend="wsgi",'
                      r'le="0.5"\} (\d+)', metrics)
    assert under and int(under.group(1)) < 4, metrics


def test_a_body_still_arriving_is_no_queue_wait(tracfront):
    """An upload whose body takes 1.5 s to arrive, on an idle server: the queue wait (for an
    app thread, every one of them free) starts once the body is in, not at the request line;
    the 1.5 s stay in the total (probe: a 5 MB Trac attachment showed 4 s of queue)."""
    srv = tracfront(*APP)
    sock = srv.connect()
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
    time.sleep(1.5)
    sock.sendall(b"world")
    answer = b""
    while b"helloworld" not in answer:
        chunk = sock.recv(65536)
        assert chunk, answer
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    latency(srv, settle=("/echo", 1))
    slowest = requests.get(srv.url + "__profile__/api/slowest", timeout=10).json()["slowest"]
    echo = [x for x in slowest if x["target"] == "/echo"]
    assert echo and echo[0]["total_us"] >= 1500000 * 0.99, slowest
    assert echo[0]["queue_us"] < 500000, echo
    assert echo[0]["queue_us"] <= echo[0]["ttfb_us"] <= echo[0]["total_us"], echo
    routes = latency(srv)
    assert routes[("/echo", "wsgi")]["queue_p99_us"] < 500000, routes[("/echo", "wsgi")]


def test_a_wait_for_the_gil_is_no_queue_wait(tracfront, tmp_path):
    """A request that waits for the GIL (another request in C code that holds
    it: a backtracking regular expression) with app threads free has waited
    for no thread: that is app time, not queue wait (an operator reading a
    queue wait would add --threads, which only makes the GIL busier)."""
    app = tmp_path / "gil_app.py"
    app.write_text(
        "import re\n"
        "def application(environ, start_response):\n"
        "    if environ['PATH_INFO'] == '/hold':\n"
        "        re.match(r'(a+)+$', 'a' * 24 + 'b')\n"
        "    start_response('200 OK', [])\n"
        "    return [b'x']\n")
    srv = tracfront("--app", "gil_app:application", "--pythonpath", tmp_path, "--threads", "4")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        hold = pool.submit(requests.get, srv.url + "hold", timeout=60)
        time.sleep(0.1)
        fast = requests.get(srv.url + "fast", timeout=60)
        assert hold.result().status_code == fast.status_code == 200
    row = latency(srv, settle=("/fast", 1))[("/fast", "wsgi")]
    assert row["p99_us"] >= 100000, "/fast never waited for the GIL: the test shows nothing %s" % row
    assert row["queue_p99_us"] < row["p99_us"] / 4, row


def test_a_percent_encoded_path_is_the_same_route(tracfront):
    """/café sent raw (UTF-8) and as /caf%C3%A9 (what a browser sends) are one
    route and one /metrics series, as they are one path to the app."""
    srv = tracfront(*APP)
    for target in ("/caf%C3%A9".encode(), "/caf%c3%a9".encode(), "/café".encode(), b"/%7Ehello"):
        answer = srv.raw(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    routes = latency(srv, settle=("/café", 3))
    assert routes[("/café", "wsgi")]["count"] == 3, routes.keys()
    assert ("/~hello", "wsgi") in routes, routes.keys()
    assert not [r for r, _ in routes if "%" in r], routes.keys()
    metrics = requests.get(srv.url + "__profile__/metrics", timeout=10).text
    counts = re.findall(r'tracfront_request_duration_seconds_count\{route="/caf[^"]*"[^}]*\} (\S+)',
                        metrics)
    assert counts == ["3"], counts


def slow_rows(srv, n):
    """{target: (id, the row's HTML)} of the slowest-requests table, once n
    rows are kept (each is recorded when its connection work completes)."""
    deadline = time.monotonic() + 5
    while True:
        slowest = requests.get(srv.url + "__profile__/api/slowest", timeout=10).json()["slowest"]
        if len(slowest) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    page = requests.get(srv.url + "__profile__", timeout=10).text
    table = page[page.index("<h2>Slowest requests</h2>"):]
    table = table[:table.index("</table>")]
    return {x["target"]: (x["id"], next(line for line in table.splitlines()
                                        if "GET %s</code>" % x["target"] in line))
            for x in slowest}


@pytest.mark.parametrize("workers", [0, 2])
def test_slowest_links_a_call_tree_only_where_one_was_kept(tracfront, workers):
    # The first profiled request is discarded (of each worker): it has no tree.
    srv = tracfront(*APP, "--profile", "--workers", str(workers))
    targets = ["/slow?s=0.0%d" % i for i in range(1, 7)]
    for t in targets:
        assert requests.get(srv.url + t.lstrip("/"), timeout=10).status_code == 200
    rows = slow_rows(srv, len(targets))
    assert sorted(rows) == sorted(targets)
    linked = 0
    for target, (rid, row) in rows.items():
        status = requests.get(srv.url + "__profile__/request", params={"id": rid},
                              timeout=10).status_code
        assert ("/request?id=%d\"" % rid in row) == (status == 200), (target, row, status)
        linked += status == 200
    assert 0 < linked < len(targets)
    if not workers:  # one process: exactly its first request went unrecorded
        assert "call tree" not in rows[targets[0]][1]
        assert linked == len(targets) - 1


def test_slowest_has_no_call_tree_links_without_function_profiling(tracfront):
    srv = tracfront(*APP)
    for s in ("0.02", "0.01"):
        assert requests.get(srv.url + "slow", params={"s": s}, timeout=10).status_code == 200
    rows = slow_rows(srv, 2)
    assert len(rows) == 2
    assert not any("call tree" in row or "/request?id=" in row for _, row in rows.values())


# The latency table's own view: routes_sort and routes_limit (the function
# table's sort and limit are another table's).

def route_rows(page):
    """The latency table's rows as (route, backend), in the page's order."""
    table = page[page.index("Latency by route"):page.index("Slowest requests")]
    return [(html.unescape(route), backend) for route, backend in
            re.findall(r"<tr><td><code>([^<]*)</code>(?: <small[^>]*>[^<]*</small>)?<td>(\w+)<td>",
                       table)]


def route_links(page):
    """The latency table's links (unescaped hrefs), by their text."""
    table = page[page.index("Latency by route"):page.index("Slowest requests")]
    return {re.sub(r"<[^>]*>|[^\w ()]", "", html.unescape(text)).strip(): html.unescape(href)
            for href, text in re.findall(r'<a href="([^"]*)"[^>]*>(.*?)</a>', table)}


def routes_page(srv, query=""):
    r = requests.get(srv.url + "__profile__" + ("?" + query if query else ""), timeout=10)
    assert r.status_code == 200, r.text[:2000]
    return r.text


SLEEP_APP = ("import time\n"
             "from urllib.parse import parse_qs\n\n\n"
             "def application(environ, start_response):\n"
             "    qs = parse_qs(environ['QUERY_STRING'], keep_blank_values=True)\n"
             "    time.sleep(float(qs.get('s', ['0'])[0]))\n"
             "    status = '404 Not Found' if environ['PATH_INFO'] == '/nf' else '200 OK'\n"
             "    start_response('500 Oops' if 'bad' in qs else status, [])\n"
             "    return [b'x']\n")


def sleep_app(tracfront, tmp_path, *args):
    """A server whose app sleeps ?s= seconds on any path, answers 500 to
    ?bad and 404 to /nf."""
    (tmp_path / "sleep_app.py").write_text(SLEEP_APP)
    return tracfront("--app", "sleep_app:application", "--pythonpath", tmp_path, *args)


def test_route_rows_are_by_total_time_unless_asked(tracfront, tmp_path):
    """The rows were always in route order, all of them: a real page had
    hundreds, and the slowest route was to be found by eye. By default they
    are now by total time (requests x mean), most first; routes_sort picks
    another order and the column headers link to each, keeping the rest of
    the view."""
    srv = sleep_app(tracfront, tmp_path)
    with requests.Session() as s:
        for _ in range(6):
            s.get(srv.url + "hello", timeout=10)          # many, fast
        s.get(srv.url + "slow", params={"s": "0.5"}, timeout=10)  # one, slow: most time
        for _ in range(2):
            s.get(srv.url + "slow2", params={"s": "0.15"}, timeout=10)  # total 0.3
        s.get(srv.url + "alpha", timeout=10)
    latency(srv, settle=("/alpha", 1))
    order = [route for route, _ in route_rows(routes_page(srv))]
    assert order[:2] == ["/slow", "/slow2"], order
    assert set(order) == {"/hello", "/slow", "/slow2", "/alpha"}, order
    by = lambda key: [route for route, _ in route_rows(routes_page(srv, "routes_sort=" + key))]
    assert by("route") == ["/alpha", "/hello", "/slow", "/slow2"]
    assert by("requests")[:2] == ["/hello", "/slow2"]
    assert by("max")[:2] == by("p99")[:2] == by("mean")[:2] == ["/slow", "/slow2"]
    assert by("total") == order
    # the headers set routes_sort and keep the rest of the view (the
    # function table's sort and filter, the row limit)
    page = routes_page(srv, "sort=calls&filter=x&routes_limit=3&routes_sort=max")
    links = route_links(page)
    for key in ("route", "requests", "total", "mean", "p50", "p90", "p99", "errors"):
        header = next(v for k, v in links.items() if k.startswith(key))
        query = header.split("?", 1)[1].split("#")[0]
        assert sorted(query.split("&")) == sorted(["sort=calls", "filter=x", "routes_limit=3",
                                                   "routes_sort=" + key]), (key, header)


def test_route_rows_sort_by_errors(tracfront, tmp_path):
    srv = sleep_app(tracfront, tmp_path)
    with requests.Session() as s:
        for path in ("a", "a", "a", "b?bad", "b", "c?bad", "c?bad"):
            s.get(srv.url + path, timeout=10)
    latency(srv, settle=("/c", 2))
    order = [route for route, _ in route_rows(routes_page(srv, "routes_sort=errors"))]
    assert order == ["/c", "/b", "/a"], order


def test_route_rows_are_cut_to_a_limit_but_other_and_not_found(tracfront, tmp_path):
    """50 rows by default (routes_limit: a number, or all); the page says
    how many of how many. (other) and (not found) are not the app's routes:
    when they have requests they are shown whatever the limit."""
    srv = sleep_app(tracfront, tmp_path, "--profile-max-routes", "55")
    with requests.Session() as s:
        for i in range(60):  # 55 routes, then 5 under (other)
            s.get(srv.url + "r%02d" % i, timeout=10)
        s.get(srv.url + "nf", timeout=10)
        for _ in range(3):
            s.get(srv.url + "r07?s=0.05", timeout=10)
    latency(srv, settle=("/r07", 4))
    page = routes_page(srv)
    rows = route_rows(page)
    assert len(rows) == 52, rows
    assert {("(other)", "wsgi"), ("(not found)", "wsgi")} <= set(rows), rows
    assert re.search(r"\b52 of 57 rows\b", page), page[:3000]
    assert rows[0] == ("/r07", "wsgi"), rows  # 4 requests, 3 of them slow
    all_rows = route_rows(routes_page(srv, "routes_limit=all"))
    assert len(all_rows) == 57 and set(rows) <= set(all_rows)
    assert "routes_limit=all" in route_links(page)["all"]
    few = routes_page(srv, "routes_limit=2&routes_sort=requests")
    rows = route_rows(few)
    assert rows[0] == ("(other)", "wsgi") and ("/r07", "wsgi") in rows, rows
    assert len(rows) == 4 and ("(not found)", "wsgi") in rows, rows
    assert re.search(r"\b4 of 57 rows\b", few)
    # under the limit: no "of"
    assert not re.search(r"\bof 57 rows\b", routes_page(srv, "routes_limit=100"))


@pytest.mark.parametrize("query,said", [
    ("routes_sort=slowest", "Unknown routes_sort"), ("routes_sort=", "Unknown routes_sort"),
    ("routes_limit=0", "routes_limit"), ("routes_limit=-3", "routes_limit"),
    ("routes_limit=ten", "routes_limit"), ("routes_limit=5x", "routes_limit"),
    ("routes_limit=99999999999999999999999", "routes_limit")])
def test_bad_route_view_is_said_on_the_page(tracfront, query, said):
    """An unknown sort key or a limit that is not a positive number: the page
    says so (as the function table says an unknown sort key) and shows the
    rows in the default view."""
    srv = tracfront(*APP)
    requests.get(srv.url + "hello", timeout=10)
    latency(srv, settle=("/hello", 1))
    page = routes_page(srv, query)
    problem = re.search(r"<p><b>([^<]*)</b></p>", page[page.index("Latency by route"):])
    assert problem and said in problem.group(1), page[:3000]
    assert ("/hello", "wsgi") in route_rows(page)


def test_the_route_view_is_kept_by_the_buttons_and_the_function_table(tracfront):
    """Start/Stop/Clear carry the page's query back; the function table's
    links and filter form keep the latency table's view too."""
    srv = tracfront(*APP, "--profile", "--profile-discard-first", "false")
    for _ in range(2):
        requests.get(srv.url + "hello", timeout=10)
    latency(srv, settle=("/hello", 2))
    view = "routes_sort=p99&routes_limit=5"
    page = routes_page(srv, view)
    assert 'action="__profile__/stop?%s"' % view.replace("&", "&#38;") in page
    r = requests.post(srv.url + "__profile__/stop?" + view, allow_redirects=False, timeout=10)
    assert (r.status_code, r.headers["Location"]) == (303, "../__profile__?" + view)
    table = html.unescape(page[page.index("id=functions"):])
    sort_links = re.findall(r'href="([^"]*sort=time[^"]*)"', table)
    assert sort_links and all("routes_sort=p99" in h and "routes_limit=5" in h
                              for h in sort_links), sort_links
    assert re.search(r'<input type=hidden name=routes_sort value="p99">', table), table[:3000]
    assert re.search(r'<input type=hidden name=routes_limit value="5">', table)
