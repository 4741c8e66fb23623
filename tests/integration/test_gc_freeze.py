"""--gc-freeze: after the 1st, 10th, 100th ... request the app's objects are
frozen out of the garbage collector's walks (logged each time); garbage made
later is still collected; without the flag nothing is frozen."""
import re

import requests


def frozen(srv):
    return int(requests.get(srv.url + "frozen", timeout=10).text)


def test_frozen_after_the_first_and_tenth_request(tracfront):
    srv = tracfront("--app", "gc_app:app", "--gc-freeze", "--threads", "1")
    assert frozen(srv) == 0  # request 1: the freeze comes after it
    after_first = frozen(srv)
    assert after_first > 1000  # the interpreter and the app's modules
    counts = [frozen(srv) for _ in range(8)]  # requests 3..10
    assert counts == [after_first] * 8
    assert frozen(srv) >= after_first  # request 11, after the second freeze
    log = srv.error_log
    assert re.search(r"--gc-freeze: after 1 request, \d+ objects are frozen", log)
    assert re.search(r"--gc-freeze: after 10 requests, \d+ objects are frozen", log)
    assert "after 100 requests" not in log


def test_garbage_made_after_the_freeze_is_still_collected(tracfront):
    srv = tracfront("--app", "gc_app:app", "--gc-freeze", "--threads", "1")
    for _ in range(15):
        frozen(srv)
    # each request's cycle is garbage once it ends; only the one made by this
    # /collect request itself is still alive when it counts
    assert requests.get(srv.url + "collect", timeout=10).text == "0"


def test_nothing_frozen_without_the_flag(tracfront):
    srv = tracfront("--app", "gc_app:app", "--threads", "1")
    assert [frozen(srv) for _ in range(12)] == [0] * 12
    assert "--gc-freeze" not in srv.error_log
