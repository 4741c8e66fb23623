"""The profile page rendered by a real browser (Debian's headless Chromium):
the DOM after rendering has every main section, and the screenshot shows
the page (not blank) with the flame graph's colours in it. Skipped cleanly
where Chromium or PIL is not installed."""
import shutil
import subprocess

import pytest
import requests

CHROMIUM = shutil.which("chromium")
Image = pytest.importorskip("PIL.Image")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium(tmp_path, *args):
    profile = tmp_path / "chromium-profile"
    return subprocess.run([CHROMIUM, *FLAGS, "--user-data-dir=%s" % profile, *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")
def test_page_renders_with_its_sections(tracfront, tmp_path):
    srv = tracfront("--app", "profiled_app:app", "--profile", "--profile-discard-first", "false")
    for _ in range(3):
        assert requests.get(srv.url, timeout=10).status_code == 200
    url = srv.url + "__profile__"
    dom = chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in ("tracfront profile", "Latency by route", "Slowest requests", "Flame graph",
                    "Functions"):
        assert section in dom.stdout, section
    shot = tmp_path / "page.png"
    run = chromium(tmp_path, "--screenshot=%s" % shot, "--window-size=1300,1600", url)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1300, 1600)
    colours = img.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50, "the screenshot looks blank"
    # the flame graph's frames: warm colours, red well above blue
    warm = sum(n for n, (r, g, b) in colours if r > 200 and 60 <= g <= 210 and b < 100)
    assert warm > 20000, "no flame graph in the screenshot (%d warm pixels)" % warm
    # the page names no icon of the app's: a look at it asked the app for
    # /favicon.ico, a request profiled as any other
    assert "/favicon.ico" not in srv.access_log, srv.access_log[-2000:]
