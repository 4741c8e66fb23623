"""--mirror between a tracfront's app and its --upstream (another tracfront
serving the same tests/apps/mirror_app.py, as side "b"): the client gets the
primary's answer, /__profile__/api/compare counts pairs and status/size/hash
mismatches per route, only GET and HEAD are mirrored, the HTML page escapes
route keys, and a full --mirror-queue drops copies without hurting the primary."""
import hashlib
import html
import http.client
import json
import re
import signal
import socket
import struct
import threading
import time

import pytest
import requests

from conftest import closed_port
from upload_util import assert_refused_early

APP = ("--app", "mirror_app:application")


@pytest.fixture
def pair(tracfront):
    """start(*extra) -> (srv, up): srv serves side a and mirrors to up (side b)."""
    def start(*extra):
        up = tracfront(*APP, "--env", "mirror.side=b")
        srv = tracfront(*APP, "--env", "mirror.side=a", "--upstream", up.url, "--mirror", *extra)
        return srv, up
    return start


def compare(srv, done=lambda j: True):
    """The compare JSON, polled for up to 5 s until done(json): a pair is
    recorded when the slower of its two requests completes."""
    deadline = time.monotonic() + 5
    while True:
        r = requests.get(srv.url + "__profile__/api/compare", timeout=10)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("application/json")
        j = r.json()
        if done(j) or time.monotonic() > deadline:
            return j
        time.sleep(0.05)


def routes(j):
    return {x["route"]: x for x in j["routes"]}


def total_pairs(j):
    return sum(x["pairs"] for x in j["routes"])


def counts(srv, path):
    """What mirror_app on srv's side has seen for path (this request goes
    through srv like any other)."""
    r = requests.get(srv.url + "count", params={"path": path}, timeout=10)
    assert r.status_code == 200
    return r.json()


def counts_held(srv):
    """How many of srv's app threads its /sleep requests hold (the profiler's
    in-flight list: the app's own /count needs a free thread)."""
    r = requests.get(srv.url + "__profile__/api/inflight", timeout=10)
    return [rec["target"].split("?")[0] for rec in r.json()["requests"]].count("/sleep")


def wait_counts(srv, path, expected):
    deadline = time.monotonic() + 5
    while counts(srv, path) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return counts(srv, path)


def send(srv, plan):
    answers = {}
    for path, n in plan:
        for _ in range(n):
            r = requests.get(srv.url + path.lstrip("/"), timeout=10)
            answers[path] = (r.status_code, r.content)
    return answers


PLAN = [("/same", 3), ("/differ-size", 2), ("/differ-hash", 2), ("/differ-status", 2)]


def test_app_primary_answers_and_mismatches_are_counted(pair):
    srv, up = pair()
    answers = send(srv, PLAN)
    assert answers == {"/same": (200, b"same body\n"), "/differ-size": (200, b"a" * 10),
                       "/differ-hash": (200, b"side-a\n"),
                       "/differ-status": (200, b"same body\n")}
    j = compare(srv, lambda j: total_pairs(j) == 9)
    assert j["primary"] == "app"
    assert j["mirrored"] == 9 and j["dropped"] == 0
    r = routes(j)
    assert {k: r[k]["pairs"] for k in ("/same", "/differ-size", "/differ-hash",
                                       "/differ-status")} == dict(PLAN)
    same = r["/same"]
    assert (same["status_mismatches"], same["size_mismatches"], same["hash_mismatches"]) == (0, 0, 0)
    assert same["app"]["count"] == 3 and same["upstream"]["count"] == 3
    for side in ("app", "upstream"):
        assert same[side]["p50_ms"] <= same[side]["p95_ms"] <= same[side]["p99_ms"]
    assert all(isinstance(same[k], (int, float)) and same[k] > 0
               for k in ("ratio_p50", "ratio_p95", "ratio_p99"))
    assert r["/differ-size"]["size_mismatches"] == 2
    assert r["/differ-size"]["hash_mismatches"] == 0  # a pair of two sizes: under size alone
    assert r["/differ-size"]["status_mismatches"] == 0
    assert (r["/differ-hash"]["hash_mismatches"], r["/differ-hash"]["size_mismatches"]) == (2, 0)
    assert r["/differ-hash"]["status_mismatches"] == 0
    assert r["/differ-status"]["status_mismatches"] == 2
    assert r["/differ-status"]["size_mismatches"] == 0
    assert r["/differ-status"]["hash_mismatches"] == 0

    mm = j["mismatches"]
    assert {m["target"] for m in mm} == {"/differ-size", "/differ-hash", "/differ-status"}
    assert len(mm) == 6 and all(m["method"] == "GET" for m in mm)
    size = next(m for m in mm if m["target"] == "/differ-size")
    assert (size["app_status"], size["upstream_status"]) == (200, 200)
    assert (size["app_bytes"], size["upstream_bytes"]) == (10, 20)
    status = next(m for m in mm if m["target"] == "/differ-status")
    assert (status["app_status"], status["upstream_status"]) == (200, 404)

    # each side saw each GET exactly once
    assert counts(up, "/same") == {"GET": 3}
    assert counts(srv, "/same") == {"GET": 3}


def test_upstream_primary(pair):
    srv, up = pair("--mirror-primary", "upstream")
    answers = send(srv, PLAN)
    assert answers == {"/same": (200, b"same body\n"), "/differ-size": (200, b"b" * 20),
                       "/differ-hash": (200, b"side-b\n"),
                       "/differ-status": (404, b"same body\n")}
    j = compare(srv, lambda j: total_pairs(j) == 9)
    assert j["primary"] == "upstream"
    r = routes(j)
    assert r["/same"]["pairs"] == 3 and r["/same"]["hash_mismatches"] == 0
    assert r["/differ-size"]["size_mismatches"] == 2
    assert r["/differ-status"]["status_mismatches"] == 2
    size = next(m for m in j["mismatches"] if m["target"] == "/differ-size")
    assert (size["app_bytes"], size["upstream_bytes"]) == (10, 20)  # sides, not roles
    assert counts(up, "/differ-size") == {"GET": 2}


def test_post_is_not_mirrored_head_is(pair):
    srv, up = pair()
    r = requests.post(srv.url + "post-me", data=b"payload", timeout=10)
    assert r.status_code == 200 and r.content == b"same body\n"
    r = requests.head(srv.url + "head-me", timeout=10)
    assert r.status_code == 200 and r.content == b""
    assert requests.get(srv.url + "marker", timeout=10).status_code == 200
    assert wait_counts(up, "/marker", {"GET": 1}) == {"GET": 1}
    assert wait_counts(up, "/head-me", {"HEAD": 1}) == {"HEAD": 1}
    assert counts(up, "/post-me") == {}          # the other side never saw the POST
    assert counts(srv, "/post-me") == {"POST": 1}  # ...which the app did answer
    j = compare(srv, lambda j: "/head-me" in routes(j) and "/marker" in routes(j))
    assert routes(j)["/head-me"]["pairs"] == 1
    assert "/post-me" not in routes(j)
    assert not any(m["target"] == "/head-me" for m in j["mismatches"])


def test_an_upload_outside_the_mount_is_refused_at_its_head(pair):
    """--mirror copies GETs and HEADs only: an upload outside --mount gets no
    copy, so its 404 (the app's whatever it is sent) comes before its body,
    as without --mirror; it got 100 Continue and its body was read first."""
    srv, up = pair("--mount", "/m")
    head = assert_refused_early(srv, b"POST", b"/outside", 404)
    assert b"--mount" in head, head


def test_a_get_outside_the_mount_is_compared_with_its_404(pair):
    """A GET outside --mount is copied (the other side may serve it) and
    answered by the app side's own 404: that page was compared as an empty
    answer (app_bytes 0); it is compared with its bytes, as the client got it."""
    srv, up = pair("--mount", "/m")
    r = requests.get(srv.url + "outside", timeout=10)
    assert r.status_code == 404 and b"--mount" in r.content, r.content
    j = compare(srv, lambda j: any(m["target"] == "/outside" for m in j["mismatches"]))
    m = [m for m in j["mismatches"] if m["target"] == "/outside"]
    assert m and m[0]["app_status"] == 404 and m[0]["app_bytes"] == len(r.content), json.dumps(j)


def test_compare_page_lists_routes_escaped(pair):
    srv, _ = pair()
    send(srv, [("/same", 1), ("/differ-size", 1)])
    # sent raw: a browser would percent-encode it, an attacker need not
    srv.raw(b"GET /esc<i>x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    j = compare(srv, lambda j: any("<i>" in k for k in routes(j)) and "/differ-size" in routes(j))
    assert any("<i>" in k for k in routes(j)), json.dumps(j)
    page = requests.get(srv.url + "__profile__/compare", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "/same" in page.text and "/differ-size" in page.text
    assert "<i>" not in page.text
    assert "/esc&#60;i&#62;x" in page.text or "/esc&lt;i&gt;x" in page.text


def test_full_mirror_queue_drops_and_primary_still_answers(pair):
    srv, up = pair("--mirror-queue", "1")
    n = 10
    for _ in range(n):  # side b sleeps 1 s on each copy, so the queue stays full
        r = requests.get(srv.url + "sleep", params={"s": "1"}, timeout=10)
        assert (r.status_code, r.content) == (200, b"slept\n")
    j = compare(srv, lambda j: j["dropped"] > 0 and j["mirrored"] + j["dropped"] == n)
    assert j["dropped"] > 0, j
    assert j["mirrored"] >= 1
    assert j["mirrored"] + j["dropped"] == n


def assert_abandoned(j, route, n, compared=0):
    r = routes(j)[route]
    assert j["abandoned"] == n and r["abandoned"] == n, j
    assert (r["status_mismatches"], r["size_mismatches"], r["hash_mismatches"]) == (0, 0, 0), j
    # latency samples: only from the pairs compared
    assert r["app"]["count"] == compared and r["upstream"]["count"] == compared, j
    assert not any(m["target"].startswith(route) for m in j["mismatches"]), j


@pytest.mark.parametrize("primary", ["app", "upstream"])
def test_client_gone_mid_body_is_abandoned_not_a_mismatch(pair, primary):
    """A client that leaves during a large streamed body: the primary's
    answer is cut short, the copy's is whole; the pair is abandoned, not a
    size or status mismatch, and its lifetime is not a latency sample."""
    srv, _ = pair("--mirror-primary", primary)
    s = srv.connect()
    s.sendall(b"GET /big?n=67108864 HTTP/1.1\r\nHost: h\r\n\r\n")
    head, _ = read_head(s)
    assert head.startswith("HTTP/1.1 200"), head
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    j = compare(srv, lambda j: total_pairs(j) == 1)
    assert total_pairs(j) == 1, j
    assert_abandoned(j, "/big", 1)


@pytest.mark.parametrize("primary", ["app", "upstream"])
def test_slow_client_is_not_the_backends_latency(pair, primary):
    """A client that reads slowly holds the primary back (a paused transfer,
    an app waiting past --max-spill): its download time is not the backend's
    latency. The pair is still compared (same answers: no mismatch) and
    counted as held back, but gives no latency sample."""
    srv, _ = pair("--mirror-primary", primary, "--max-spill", "1M")
    s = srv.connect()
    s.sendall(b"GET /big?n=67108864 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    head, body = read_head(s)
    assert head.startswith("HTTP/1.1 200"), head
    time.sleep(0.5)  # not reading: far more than the socket buffers is waiting
    n = len(body)
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        n += len(chunk)
    s.close()
    assert n > 67108864  # chunked framing on top of the body
    j = compare(srv, lambda j: total_pairs(j) == 1)
    r = routes(j)["/big"]
    assert r["pairs"] == 1 and r["held_back"] == 1 and j["held_back"] == 1, j
    assert (r["status_mismatches"], r["size_mismatches"], r["hash_mismatches"]) == (0, 0, 0), j
    assert r["app"]["count"] == 0 and r["upstream"]["count"] == 0, j
    assert j["abandoned"] == 0, j


@pytest.mark.parametrize("primary,slow_side", [("app", "a"), ("upstream", "b")])
def test_client_gone_before_the_answer(pair, primary, slow_side):
    """A client that leaves while the primary is still working: the answer
    made for it is dropped with the connection (it held the request, and the
    request held it: neither was ever freed), and a stop does not wait for
    it. A reset connection is abandoned: the pair is neither a mismatch nor
    a latency sample. One that was only closed takes the app's whole answer
    (the server cannot tell it from a half-close), so that pair is compared;
    a proxied request ends there, as nginx's does (abandoned too)."""
    srv, _ = pair("--mirror-primary", primary)
    for linger in (False, True):  # a plain close, and one that resets the connection
        s = srv.connect()
        s.sendall(b"GET /sleep?s=0.5&on=%s HTTP/1.1\r\nHost: h\r\n\r\n" % slow_side.encode())
        time.sleep(0.1)
        if linger:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    j = compare(srv, lambda j: total_pairs(j) == 2)
    assert j["mirrored"] == 2 and total_pairs(j) == 2, j
    abandoned = 2 if primary == "upstream" else 1
    assert_abandoned(j, "/sleep", abandoned, compared=2 - abandoned)
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 10
    assert "requests still running" not in srv.error_log


def read_head(s):
    """Read from s until the end of a response head; (head, body bytes read after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def test_file_answer_is_not_held_for_its_hash(tracfront, upstream, tmp_path):
    """A wsgi.file_wrapper answer goes to the client before its body is
    hashed for the comparison, and the GIL is free while it is: a 1 TiB
    sparse file (its hash would take many minutes) starts arriving, and
    another app request is answered meanwhile, the pair still unrecorded.
    When the client leaves, the hash stops and the pair is recorded."""
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(1 << 40)
    up = upstream()  # answers /file with a short 404
    srv = tracfront(*APP, "--threads", "4", "--upstream", up.url, "--mirror",
                    "--graceful-timeout", "1")
    s = srv.connect()
    s.sendall(b"GET /file?path=%s HTTP/1.1\r\nHost: h\r\n\r\n" % str(big).encode())
    head, body = read_head(s)
    assert head.startswith("HTTP/1.1 200"), head
    assert "Content-Length: %d" % (1 << 40) in head, head
    while not body:
        body = s.recv(65536)
    assert set(body) == {0}
    r = requests.get(srv.url + "same", timeout=10)  # needs the GIL
    assert (r.status_code, r.content) == (200, b"same body\n")
    j = compare(srv, lambda j: "/same" in routes(j))
    assert "/same" in routes(j) and "/file" not in routes(j), j  # still hashing
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    j = compare(srv, lambda j: "/file" in routes(j))
    assert routes(j)["/file"]["pairs"] == 1, j
    assert routes(j)["/file"]["abandoned"] == 1, j
    assert srv.stop() == 0
    assert "requests still running" not in srv.error_log


@pytest.mark.parametrize("primary", ["app", "upstream"])
def test_explicit_routes_are_not_mirrored(pair, primary):
    """Only requests for the default backend are mirrored: an explicit
    --route is served by its own backend, as without --mirror, and gets no
    copy, whichever side is the primary."""
    srv, up = pair("--mirror-primary", primary, "--route", "/legacy=upstream",
                   "--route", "/local=app", "--route", "/count=app")  # srv's app's counts
    assert requests.get(srv.url + "legacy/x", timeout=10).status_code == 200
    assert requests.post(srv.url + "legacy/x", data=b"p", timeout=10).status_code == 200
    assert requests.get(srv.url + "local/y", timeout=10).status_code == 200
    assert requests.get(srv.url + "marker", timeout=10).status_code == 200
    assert wait_counts(up, "/marker", {"GET": 1}) == {"GET": 1}  # the default is mirrored
    assert counts(up, "/legacy/x") == {"GET": 1, "POST": 1}
    assert counts(srv, "/legacy/x") == {}
    assert counts(srv, "/local/y") == {"GET": 1}
    assert counts(up, "/local/y") == {}
    j = compare(srv, lambda j: "/marker" in routes(j))
    assert "/marker" in routes(j)
    assert not any(k.startswith(("/legacy", "/local")) for k in routes(j)), j


def test_failed_copies_are_counted_apart_with_their_error(tracfront, upstream):
    """A copy the upstream refuses, cuts short or leaves unanswered is no
    answer to compare: it is counted as failed and listed with its error
    (JSON and page), not as a status/size mismatch nor a latency sample,
    and the log says the copy failed (no client was answered 502)."""
    up = upstream()
    srv = tracfront(*APP, "--upstream", up.url, "--mirror", "--upstream-read-timeout", "0.5")
    dead = tracfront(*APP, "--upstream", "http://127.0.0.1:%d" % closed_port(), "--mirror")
    for s, path in ((srv, "die?n=1000&sent=10"), (srv, "slow?delay=3"), (dead, "gone")):
        r = requests.get(s.url + path, timeout=10)
        assert (r.status_code, r.content) == (200, b"same body\n")  # the app answers
    j = compare(srv, lambda j: total_pairs(j) == 2)
    k = compare(dead, lambda j: total_pairs(j) == 1)
    for x, n in ((j, 2), (k, 1)):
        assert x["failed"] == n and total_pairs(x) == n, x
        assert x["mismatches"] == [], x
        for r in x["routes"]:
            assert r["failed"] == r["pairs"] == 1, x
            assert (r["status_mismatches"], r["size_mismatches"], r["hash_mismatches"]) == (0, 0, 0)
            assert r["app"]["count"] == 0 and r["upstream"]["count"] == 0, x
        assert all(f["side"] == "upstream" and f["method"] == "GET" for f in x["failures"]), x
    errors = {f["target"].split("?")[0]: f["error"] for f in j["failures"] + k["failures"]}
    assert "transfer closed" in errors["/die"].lower() or "partial" in errors["/die"].lower(), errors
    assert "--upstream-read-timeout" in errors["/slow"], errors
    assert "connect" in errors["/gone"].lower(), errors
    page = html.unescape(requests.get(dead.url + "__profile__/compare", timeout=10).text)
    assert errors["/gone"] in page, page
    for s in (srv, dead):
        assert "answered 502" not in s.error_log and "answered 504" not in s.error_log
    assert "the --mirror copy failed" in dead.error_log, dead.error_log


def test_failed_copies_are_said_once_a_second_with_a_count(tracfront):
    """With the upstream down every request's copy fails: a line each would
    flood the error log (a wrk burst wrote 16 MB in a probe). One line a
    second says them, and the next one counts those left unsaid."""
    dead = tracfront(*APP, "--upstream", "http://127.0.0.1:%d" % closed_port(), "--mirror")
    with requests.Session() as s:
        for i in range(40):
            assert s.get(dead.url + "gone?i=%d" % i, timeout=10).status_code == 200
    k = compare(dead, lambda j: total_pairs(j) == 40)
    assert k["failed"] == 40, k
    lines = [l for l in dead.error_log.splitlines() if "the --mirror copy failed" in l]
    assert 1 <= len(lines) < 40, lines
    time.sleep(1.1)
    assert requests.get(dead.url + "gone?last", timeout=10).status_code == 200
    compare(dead, lambda j: total_pairs(j) == 41)
    lines = [l for l in dead.error_log.splitlines() if "the --mirror copy failed" in l]
    unsaid = sum(int(re.search(r"(\d+) more failed copies not logged", l).group(1))
                 for l in lines if "not logged" in l)
    assert len(lines) + unsaid == 41, lines
    for i in range(5):  # within a second of the last line: unsaid until the stop says them
        assert requests.get(dead.url + "gone?end=%d" % i, timeout=10).status_code == 200
    compare(dead, lambda j: total_pairs(j) == 46)
    dead.stop()
    log = dead.error_log
    unsaid = sum(int(n) for n in re.findall(r"(\d+) more failed(?: --mirror)? copies not logged",
                                            log))
    said = sum(1 for l in log.splitlines() if "the --mirror copy failed" in l)
    assert said + unsaid == 46, log


def test_failed_copies_unsaid_are_said_when_a_stop_gives_up_on_requests(tracfront):
    """A stop past --graceful-timeout exits without the upstream's orderly
    end: the failed copies not yet said are said before it does."""
    dead = tracfront(*APP, "--upstream", "http://127.0.0.1:%d" % closed_port(), "--mirror",
                     "--graceful-timeout", "1")
    with requests.Session() as s:
        for i in range(6):
            assert s.get(dead.url + "gone?i=%d" % i, timeout=10).status_code == 200
    def held():
        try:
            requests.get(dead.url + "sleep?on=a&s=10", timeout=30)
        except requests.RequestException:
            pass  # the stop gives up on it: the connection closes unanswered

    slow = threading.Thread(target=held, daemon=True)
    slow.start()
    compare(dead, lambda j: total_pairs(j) >= 6)
    time.sleep(0.3)  # the slow request is in the app
    dead.proc.send_signal(signal.SIGTERM)
    dead.proc.wait(timeout=20)
    log = dead.error_log
    assert "requests still running after --graceful-timeout" in log, log
    unsaid = sum(int(n) for n in re.findall(r"(\d+) more failed(?: --mirror)? copies not logged",
                                            log))
    said = sum(1 for l in log.splitlines() if "the --mirror copy failed" in l)
    assert said + unsaid == 7, log  # six, and the slow request's copy


def test_stop_abandons_copies_in_flight(tracfront, upstream, tmp_path):
    """A stop does not wait for mirror copies: they are not requests in
    flight. With a copy that would take 10 s and --graceful-timeout 2, the
    stop is clean (the profile log is saved,
    or with nothing profiled said not to be) instead of giving up."""
    up = upstream()
    log = tmp_path / "profile.pstats"
    srv = tracfront(*APP, "--upstream", up.url, "--mirror", "--graceful-timeout", "2",
                    "--profile-log", log)
    r = requests.get(srv.url + "slow?delay=10", timeout=10)
    assert (r.status_code, r.content) == (200, b"same body\n")
    deadline = time.monotonic() + 5
    while up.stats()["by_path"].get("/slow") != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert up.stats()["by_path"].get("/slow") == 1  # the copy is with the upstream
    assert srv.stop() == 0
    assert "requests still running" not in srv.error_log, srv.error_log
    assert "nothing profiled; --profile-log not written" in srv.error_log  # saving was reached


@pytest.mark.parametrize("flag,value", [("--mirror-primary", "upstream"), ("--mirror-queue", "4")])
def test_mirror_settings_without_mirror_are_refused(tracfront, flag, value):
    """A --mirror-* setting without --mirror would be silently ignored: it
    is a start error naming the flag (exit status 2)."""
    srv = tracfront(*APP, "--upstream", "http://127.0.0.1:%d" % closed_port(), flag, value,
                    expect_fail=True)
    assert srv.proc.wait(10) == 2
    assert flag in srv.stderr and "--mirror" in srv.stderr, srv.stderr


def test_pairs_in_flight_at_clear_are_counted_as_mirrored(pair):
    """Clear empties the comparison; a pair still in flight then is recorded
    when it ends, and counted in "mirrored" with it, so the counts agree."""
    srv, up = pair()
    assert requests.get(srv.url + "sleep", params={"s": "1"}, timeout=10).status_code == 200
    assert wait_counts(up, "/sleep", {"GET": 1}) == {"GET": 1}  # the copy is at side b
    r = requests.post(srv.url + "__profile__/clear", allow_redirects=False, timeout=10)
    assert r.status_code == 303
    j = compare(srv, lambda j: total_pairs(j) == 1)
    assert total_pairs(j) == 1 and j["mirrored"] == 1, j


def test_mismatch_record_notes_a_content_encoding_difference(tracfront, upstream):
    """An upstream that gzips and an app that does not differ in size for
    that reason alone: the mismatch record says which encodings each used."""
    up = upstream()
    srv = tracfront(*APP, "--upstream", up.url, "--mirror")
    assert requests.get(srv.url + "bytes?n=1000&gzip=1", timeout=10).status_code == 200
    assert requests.get(srv.url + "differ", timeout=10).status_code == 200  # 404 upstream
    j = compare(srv, lambda j: total_pairs(j) == 2)
    mm = {m["target"].split("?")[0]: m for m in j["mismatches"]}
    gz = mm["/bytes"]
    assert (gz["app_encoding"], gz["upstream_encoding"], gz["encoding_differs"]) == \
        ("", "gzip", True), gz
    plain = mm["/differ"]
    assert (plain["app_encoding"], plain["upstream_encoding"], plain["encoding_differs"]) == \
        ("", "", False), plain
    page = requests.get(srv.url + "__profile__/compare", timeout=10).text
    assert "gzip" in page


@pytest.mark.parametrize("primary", ["app", "upstream"])
def test_copy_of_a_get_carries_its_body(pair, primary):
    """A GET with a body (a search API, say) is copied with its body and
    Content-Length, as nginx's mirror does, and stays a GET."""
    srv, up = pair("--mirror-primary", primary, "--route", "/bodies=app")
    body = b"q=" + b"x" * 300000  # more than a body kept in memory
    r = requests.request("GET", srv.url + "search", data=body, timeout=10)
    assert (r.status_code, r.content) == (200, b"same body\n")
    want = [["GET", len(body), hashlib.sha256(body).hexdigest()]]
    for side in (srv, up):  # the primary's app, or the other side's: both saw it whole
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = requests.get(side.url + "bodies", params={"path": "/search"}, timeout=10).json()
            if got:
                break
            time.sleep(0.05)
        assert got == want, (side.url, got)


def test_primary_cut_short_by_its_backend_is_failed_not_abandoned(tracfront, upstream):
    """The upstream (primary) closes mid-body: the client's connection ends
    with an error too, but it was the backend that broke, so the pair is a
    failure with its error, not a client that left."""
    up = upstream()
    srv = tracfront(*APP, "--upstream", up.url, "--mirror", "--mirror-primary", "upstream")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("GET", "/die?n=100000&sent=5000&delay=1")  # the head is relayed, then a close
    r = conn.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    j = compare(srv, lambda j: total_pairs(j) == 1)
    assert total_pairs(j) == 1, j
    assert (j["failed"], j["abandoned"]) == (1, 0), j
    assert [f["side"] for f in j["failures"]] == ["upstream"], j


def test_app_error_page_is_a_failed_side_not_an_answer(pair):
    """The app raises on the copy's side (upstream primary): tracfront's 500
    page is not the app's answer, so the pair is failed, as a failed
    upstream copy is, not a 500-vs-200 mismatch with a latency sample."""
    srv, up = pair("--mirror-primary", "upstream")
    r = requests.get(srv.url + "raise?on=a", timeout=10)
    assert (r.status_code, r.content) == (200, b"same body\n")  # the upstream (side b) answers
    j = compare(srv, lambda j: total_pairs(j) == 1)
    assert (j["failed"], j["mismatches"]) == (1, []), j
    assert [f["side"] for f in j["failures"]] == ["app"], j
    assert "GET /raise?on=a: the app raised (in a --mirror copy; no client waits for it)" \
        in srv.error_log, srv.error_log  # a copy's, said so


def test_copies_never_hold_up_the_apps_own_requests(pair):
    """--mirror-primary upstream: the copies go to the app. At most half its
    --threads (at least one) run there at once; a copy past that is dropped
    and counted as dropped, never queued, so the app's own routes are
    answered while copies are stuck. Here the copies hold their app thread
    until the test lets them go (side a's /block)."""
    srv, up = pair("--mirror-primary", "upstream", "--threads", "4",
                   "--route", "/adm=app", "--route", "/count=app")  # srv's app's counts
    n = 16
    for _ in range(n):
        r = requests.get(srv.url + "block", timeout=10)  # side b answers at once
        assert (r.status_code, r.content) == (200, b"same body\n")
    for _ in range(3):  # the app's own route, on its two free threads
        r = requests.get(srv.url + "adm/x", timeout=10)
        assert (r.status_code, r.content) == (200, b"same body\n")
    j = compare(srv, lambda j: j["dropped"] == n - 2)
    assert (j["dropped"], j["mirrored"]) == (n - 2, 0), j
    assert counts(srv, "/block") == {"GET": 2}
    r = requests.get(srv.url + "adm/release", timeout=10)
    assert (r.status_code, r.content) == (200, b"2\n")  # both copies were still held
    j = compare(srv, lambda j: j["mirrored"] == 2)
    assert (j["mirrored"], j["dropped"], j["failed"]) == (2, n - 2, 0), j
    assert routes(j)["/block"]["pairs"] == 2 and j["mismatches"] == [], j


@pytest.mark.parametrize("threads, busy", [(1, 0), (2, 2)])
def test_copies_go_to_the_app_only_when_a_thread_is_free(pair, threads, busy):
    """With one app thread, copies never take it; with every thread busy with
    clients' requests, a copy is dropped, not queued ahead of later ones."""
    srv, up = pair("--mirror-primary", "upstream", "--threads", str(threads),
                   "--route", "/adm=app", "--route", "/count=app", "--route", "/sleep=app")
    held = [threading.Thread(target=requests.get, args=(srv.url + "sleep?on=a&s=3",),
                             kwargs={"timeout": 30}) for _ in range(busy)]
    for t in held:  # clients' requests holding every app thread
        t.start()
    deadline = time.monotonic() + 10
    while busy and counts_held(srv) < busy and time.monotonic() < deadline:
        time.sleep(0.05)
    r = requests.get(srv.url + "block", timeout=10)  # side b answers; the copy has no room
    assert (r.status_code, r.content) == (200, b"same body\n")
    j = compare(srv, lambda j: j["dropped"] == 1)
    assert j["dropped"] == 1, j
    for t in held:
        t.join(30)
    r = requests.get(srv.url + "adm/x", timeout=10)
    assert (r.status_code, r.content) == (200, b"same body\n")
    assert counts(srv, "/block") == {}  # no copy reached the app


def test_large_copy_is_compared_whole_across_loop_turns(pair):
    """A copy has no client to pace it, so it takes a bounded share of each
    turn of its network thread and is paused until the next (the other
    connections on the loop are served in between: scripts/bench-mirror
    measures that). Paused and resumed hundreds of times, the copy's body
    still reaches its tap whole and in order: the pair matches."""
    srv, _ = pair("--io-threads", "1")
    n = 64 * 1024 * 1024 + 12345  # not a whole number of pieces
    r = requests.get(srv.url + "big", params={"n": n}, timeout=60)
    assert r.status_code == 200 and len(r.content) == n
    j = compare(srv, lambda j: total_pairs(j) == 1)
    big = routes(j)["/big"]
    assert big["pairs"] == 1 and (j["failed"], j["abandoned"]) == (0, 0), j
    assert (big["status_mismatches"], big["size_mismatches"], big["hash_mismatches"]) == \
        (0, 0, 0), j


ENDLESS = "/bytes?n=1000000000&chunk=100&delay=0.1&chunked=1"  # about 11 days


def leave_a_stream(srv, target=ENDLESS):
    """A client that reads the head and a few pieces of an endless stream
    (both backends serve /bytes), then leaves."""
    s = srv.connect()
    s.sendall(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % target.encode())
    head, body = read_head(s)
    assert head.startswith("HTTP/1.1 200"), head
    while len(body) < 300:
        chunk = s.recv(65536)
        assert chunk
        body += chunk
    s.close()


def wait_gone(up, path, n, seconds=10):
    """The upstream's count of requests for path whose connection the proxy
    closed while the upstream was streaming, polled until it is n."""
    deadline = time.monotonic() + seconds
    while up.stats()["gone"].get(path, 0) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return up.stats()["gone"].get(path, 0)


def test_copy_of_an_endless_stream_ends_when_its_client_leaves(tracfront, upstream):
    """The app answers an endless stream (server-sent events) and its client
    leaves: the copy streaming from the upstream ends too (its upstream
    connection is closed) and the pair is counted abandoned. Before, the
    copy streamed until tracfront stopped, holding its place in
    --mirror-queue (here 1: every later copy was dropped) and an upstream
    connection (a gunicorn thread)."""
    up = upstream()
    srv = tracfront(*APP, "--upstream", up.url, "--mirror", "--mirror-queue", "1")
    for n in (1, 2):
        leave_a_stream(srv)
        assert wait_gone(up, "/bytes", n) == n, up.stats()
        j = compare(srv, lambda j: total_pairs(j) == n)
        assert_abandoned(j, "/bytes", n)
    r = requests.get(srv.url + "same", timeout=10)
    assert (r.status_code, r.content) == (200, b"same body\n")
    j = compare(srv, lambda j: "/same" in routes(j))
    assert routes(j)["/same"]["pairs"] == 1 and j["dropped"] == 0, j


def test_app_copy_of_an_endless_stream_ends_when_its_client_leaves(tracfront, upstream):
    """--mirror-primary upstream: the upstream streams endlessly and its
    client leaves; the copy in the app stops at its next chunk (its
    iterable is closed) and gives its app thread back, the pair counted
    abandoned. Before, the copy ran on an app thread for good: with
    --threads 2, the one thread copies may take."""
    up = upstream()
    srv = tracfront(*APP, "--upstream", up.url, "--mirror", "--mirror-primary", "upstream",
                    "--threads", "2")
    for n in (1, 2):
        leave_a_stream(srv)
        j = compare(srv, lambda j: total_pairs(j) == n)
        assert_abandoned(j, "/bytes", n)
        assert j["dropped"] == 0, j  # the first copy's thread was free again
    inflight = requests.get(srv.url + "__profile__/api/inflight", timeout=10).json()
    assert not [r for r in inflight["requests"] if r["target"].startswith("/bytes")], inflight


@pytest.mark.parametrize("target", ["/legacy" + ENDLESS, "/slow?delay=60"])
def test_copy_that_outlives_its_primary_is_stopped(tracfront, upstream, target):
    """A copy still running when its primary's answer has ended gets as long
    again as the primary took, at least 5 s; then it is stopped (its
    upstream connection closed) and its pair counted failed, with why. Here
    the app answers at once; the upstream streams /legacy/bytes endlessly
    (it ignores /legacy), or sends nothing for a minute (/slow)."""
    up = upstream()
    srv = tracfront(*APP, "--upstream", up.url, "--mirror")
    r = requests.get(srv.url + target.lstrip("/"), timeout=10)
    assert (r.status_code, r.content) == (200, b"same body\n")
    path = target.split("?")[0]
    assert wait_gone(up, path, 1, seconds=20) == 1, up.stats()
    j = compare(srv, lambda j: total_pairs(j) == 1)
    assert j["failed"] == 1 and routes(j)[path]["failed"] == 1, j
    (f,) = j["failures"]
    assert f["side"] == "upstream" and "after the app's answer ended" in f["error"], f
    lines = [l for l in srv.error_log.splitlines() if "the --mirror copy was stopped" in l]
    assert len(lines) == 1 and "[info]" in lines[0] and path in lines[0], srv.error_log


def test_app_copy_that_outlives_its_primary_is_stopped(tracfront, upstream, tmp_path):
    """--mirror-primary upstream, which answers /file at once (404): the
    copy in the app answers a 1 TiB sparse file, whose hash would take many
    minutes of an app thread; past its grace the hashing stops and the pair
    is counted failed, with why."""
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(1 << 40)
    up = upstream()
    srv = tracfront(*APP, "--upstream", up.url, "--mirror", "--mirror-primary", "upstream",
                    "--threads", "2")
    r = requests.get(srv.url + "file", params={"path": str(big)}, timeout=10)
    assert r.status_code == 404
    deadline = time.monotonic() + 20
    j = compare(srv)
    while total_pairs(j) == 0 and time.monotonic() < deadline:
        j = compare(srv, lambda j: total_pairs(j) == 1)
    assert j["failed"] == 1 and routes(j)["/file"]["failed"] == 1, j
    (f,) = j["failures"]
    assert f["side"] == "app" and "after the upstream's answer ended" in f["error"], f
