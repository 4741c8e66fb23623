"""An app that keeps its requests' environ (Trac's do, in reference cycles
that only Python's collector frees, and --gc-freeze may never): what only
served an ended request — its answer's spill file, its body's spool — is let
go when the request has ended and the app's call has returned, not when the
collector gets round to wsgi.input. A wsgi.input read after that raises;
one that PEP 3333 allows after the call has returned — a generator reading
the body as it yields, the iterable's close(), wsgi.file_wrapper around
wsgi.input — still reads the whole body."""
import hashlib
import os
import re

import requests

from test_spill import read_to_close, spill_sizes, stalled_client
from workers_util import wait_for

APP = ("--app", "kept_environ_app:app")
MIB = 1024 * 1024


def wait_released(srv, what):
    wait_for(lambda: spill_sizes(srv.proc.pid) == [], 10,
             "%s to be closed (files still open: %s)" % (what, spill_sizes(srv.proc.pid)))


def outcome_of(srv, path, what):
    """What the app's /raced or /closed answers once it is no longer "running"."""
    return wait_for(lambda: (lambda t: t != "running" and t)(
        requests.get(srv.url + path, timeout=10).text), 30, what)


def test_an_answers_spill_file_is_closed_once_its_slow_client_has_it(tracfront):
    srv = tracfront(*APP, "--max-spill", "16M")
    s = stalled_client(srv, "/write?mb=8", http10=True)
    wait_for(lambda: "wrote all of mb=8" in srv.error_log, 60, "the app to write it all")
    assert spill_sizes(srv.proc.pid), "the answer never went to a file"
    answer = read_to_close(s)
    head, _, got = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and got == b"x" * (8 * MIB)
    s.close()
    wait_released(srv, "the answer's spill file")


def test_an_answers_spill_file_is_closed_once_its_client_has_left(tracfront):
    srv = tracfront(*APP, "--max-spill", "1M")
    s = stalled_client(srv, "/write?mb=64")
    wait_for(lambda: "the response waits for the client" in srv.error_log, 60,
             "write() to wait for the client")
    assert spill_sizes(srv.proc.pid), "the answer never went to a file"
    s.close()  # unread bytes: a reset
    wait_for(lambda: "OSError('client disconnected')" in srv.error_log, 30,
             "write() to raise")
    wait_released(srv, "the answer's spill file")


def test_a_bodys_spool_is_closed_at_the_answer_and_a_late_read_raises(tracfront):
    srv = tracfront(*APP)
    body = b"y" * (2 * MIB)  # spooled to a file past 256 KiB
    r = requests.post(srv.url + "upload?read=1000", data=body, timeout=30)
    assert (r.status_code, r.text) == (200, "1000")
    wait_released(srv, "the body's spool")
    r = requests.get(srv.url + "late", timeout=10)
    assert r.text == "RuntimeError('wsgi.input read after the request ended')"
    assert srv.alive()


def test_a_thread_reading_the_body_as_the_call_returns_is_stopped_cleanly(tracfront):
    """The app's thread reads on (each read of the spool's file releases the
    GIL) while the request ends: a read finishes on the bytes it began with,
    the next raises; the file is closed once that read is done."""
    srv = tracfront(*APP)
    size = 4 * MIB
    r = requests.post(srv.url + "race", data=b"r" * size, timeout=30)
    assert (r.status_code, r.text) == (200, "started")
    outcome = outcome_of(srv, "raced", "the thread to stop reading")
    m = re.fullmatch(r"read (\d+) bytes(, then RuntimeError\('wsgi.input read after the "
                     r"request ended'\))?", outcome)
    assert m, outcome
    assert int(m.group(1)) % 4096 == 0 and (int(m.group(1)) == size) == (not m.group(2)), outcome
    wait_released(srv, "the body's spool")


def test_a_mirror_copys_share_of_the_body_is_closed_when_the_copy_ends(tracfront):
    """--mirror-primary upstream: the copy of a GET with a body runs in the
    app, on a duplicate of the spool's file."""
    up = tracfront(*APP)
    srv = tracfront(*APP, "--upstream", up.url, "--mirror", "--mirror-primary", "upstream",
                    "--threads", "4", "--route", "/late=app")
    r = requests.request("GET", srv.url + "upload", data=b"z" * (2 * MIB), timeout=30)
    assert (r.status_code, r.text) == (200, str(2 * MIB))
    copied = lambda: requests.get(srv.url + "__profile__/api/compare",  # noqa: E731
                                  timeout=10).json()["mirrored"] == 1
    wait_for(copied, 10, "the copy to be compared")
    wait_released(srv, "the copy's spool")
    r = requests.get(srv.url + "late", timeout=10)  # the copy's wsgi.input
    assert r.text == "RuntimeError('wsgi.input read after the request ended')"



def spooled_body():
    body = os.urandom(6 * MIB)  # spooled to a file past 256 KiB
    return body, "%d %s" % (len(body), hashlib.sha256(body).hexdigest())


def test_a_generator_reads_the_body_while_it_yields(tracfront):
    srv = tracfront(*APP)
    body, digest = spooled_body()
    r = requests.post(srv.url + "gen", data=body, timeout=60)
    assert r.status_code == 200
    dots, _, got = r.text.partition("\n")
    assert (got, dots) == (digest, "." * (len(body) // 65536))
    wait_released(srv, "the body's spool")


def test_the_iterables_close_reads_the_rest_of_the_body(tracfront):
    srv = tracfront(*APP)
    body, digest = spooled_body()
    r = requests.post(srv.url + "close", data=body, timeout=60)
    assert (r.status_code, r.text) == (200, "65536")
    assert outcome_of(srv, "closed", "close() to have read") == digest
    wait_released(srv, "the body's spool")


def test_a_file_wrapper_around_wsgi_input_sends_the_whole_body(tracfront):
    srv = tracfront(*APP)
    body, _ = spooled_body()
    r = requests.post(srv.url + "fw", data=body, timeout=60)
    assert r.status_code == 200
    assert (len(r.content), hashlib.sha256(r.content).hexdigest()) == \
        (len(body), hashlib.sha256(body).hexdigest())
    wait_released(srv, "the body's spool")
