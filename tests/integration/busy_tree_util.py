"""The profile page while an export reads the call tree (one reads it at a
time): the page shows its latency and in-flight parts at once, with a note
and a reload link (in the page's view) where the flame graph and the
functions go. For test_function_profile.py and test_workers.py."""
import threading
import time

import requests


def check_the_page_during_exports(srv, tries=3):
    """Export the tree (a big one: the export must outlast the page) and
    load the page and then another export meanwhile, tries times; at least
    once the export must still run when the page is there. The second
    export is told when to try again (Retry-After)."""
    overlapped = 0
    for _ in range(tries):
        export = threading.Thread(target=lambda: requests.get(
            srv.url + "__profile__/speedscope.json", timeout=120))
        export.start()
        time.sleep(0.2)
        page = requests.get(srv.url + "__profile__?sort=calls", timeout=60)
        still = export.is_alive()
        second = requests.get(srv.url + "__profile__/pstats", timeout=60)
        second_overlapped = export.is_alive()
        export.join()
        assert page.status_code == 200, page.text[:300]
        assert "Latency by route" in page.text
        if still:  # the export held the tree all along
            overlapped += 1
            assert "reading the call tree" in page.text, page.text[-2000:]
            # in its view, relative to the page (it may be behind a proxy's prefix)
            assert '<a href="__profile__?sort=calls">reload</a>' in page.text
        if second_overlapped:
            assert second.status_code == 503, second.status_code
            assert second.headers.get("Retry-After") == "1", second.headers
    assert overlapped, "the export never outlasted the page: make the tree bigger"
