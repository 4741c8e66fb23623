"""Serve a REAL Trac (edgewall) environment through tracfront, both with
--trac-env / --trac-env-parent-dir and with --wsgi-file on the trac.wsgi script
written by `trac-admin deploy`. Skipped unless /usr/bin/python3 can import trac
with the current PYTHONPATH (see the README for fetching Trac 1.6 locally).
"""
import os
import re
import subprocess

import pytest
import requests

PY = "/usr/bin/python3"


def _trac_importable():
    try:
        subprocess.run([PY, "-c", "import trac.web.main"], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return True
    except (subprocess.SubprocessError, OSError):
        return False


if not _trac_importable():
    pytest.skip("Trac is not importable by %s with this PYTHONPATH" % PY,
                allow_module_level=True)

# The server must see the same PYTHONPATH (the harness drops it when env is None).
ENV = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}


def admin(*args):
    return subprocess.run([PY, "-m", "trac.admin.console"] + [str(a) for a in args],
                          check=True, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trac_site(tmp_path_factory):
    base = tmp_path_factory.mktemp("trac")
    env = base / "projects" / "demo"
    env.parent.mkdir()
    admin(env, "initenv", "demo", "sqlite:db/trac.db")
    admin(env, "deploy", base / "deploy")
    htdocs = subprocess.run([PY, "-c", "import os, trac; print(os.path.join("
                             "os.path.dirname(trac.__file__), 'htdocs'))"],
                            check=True, capture_output=True, text=True).stdout.strip()
    return {"env": env, "wsgi": base / "deploy" / "cgi-bin" / "trac.wsgi",
            "htdocs": htdocs}


@pytest.fixture(params=["trac-env", "wsgi-file"])
def trac(request, tracfront, trac_site):
    if request.param == "trac-env":
        return tracfront("--trac-env", trac_site["env"], env=ENV)
    return tracfront("--wsgi-file", trac_site["wsgi"], env=ENV)


def test_wikistart(trac):
    for path in ("", "wiki/WikiStart"):
        r = requests.get(trac.url + path, timeout=60)
        assert r.status_code == 200, r.text[-2000:]
        assert r.headers["Content-Type"] == "text/html;charset=utf-8"
        assert "Welcome to Trac" in r.text
        assert r.text.rstrip().endswith("</html>")
        assert "trac_form_token" in r.headers.get("Set-Cookie", "")


def test_static_css(trac, trac_site):
    want = open(os.path.join(trac_site["htdocs"], "css", "trac.css"), "rb").read()
    r = requests.get(trac.url + "chrome/common/css/trac.css", timeout=60)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/css")
    assert r.headers["Content-Length"] == str(len(want))
    assert r.content == want


def test_non_ascii_wiki_page(trac):
    r = requests.get(trac.url + "wiki/Caf%C3%A9%E6%97%A5%E6%9C%AC", timeout=60)
    assert r.status_code in (200, 404)
    assert "Café日本" in r.text
    r = requests.get(trac.url + "wiki/%FF%FE", timeout=60)
    assert r.status_code in (400, 404)


def test_missing_ticket_is_trac_error_page(trac):
    r = requests.get(trac.url + "ticket/1", timeout=60)
    assert r.status_code == 404
    assert re.search(r"<title>\s*Error: Invalid ticket number", r.text)
    assert trac.alive()


@pytest.mark.parametrize("path", ["timeline", "report/1", "query", "search?q=Welcome",
                                  "about", "prefs"])
def test_other_pages(trac, path):
    r = requests.get(trac.url + path, timeout=60)
    assert r.status_code == 200, r.text[-2000:]
    assert "Powered by" in r.text


def test_post_preferences_with_form_token(trac):
    s = requests.Session()
    assert s.get(trac.url + "prefs", timeout=60).status_code == 200
    token = s.cookies["trac_form_token"]
    r = s.post(trac.url + "prefs", allow_redirects=False, timeout=60,
               data={"__FORM_TOKEN": token, "name": "Zoë Ünicode",
                     "email": "zoe@example.org", "action": "save"})
    assert r.status_code == 303
    assert r.headers["Location"] == "http://127.0.0.1:%d/prefs" % trac.port
    assert 'value="Zoë Ünicode"' in s.get(trac.url + "prefs", timeout=60).text
    # Without the token Trac refuses the POST (400), it does not crash.
    assert requests.post(trac.url + "prefs", data={"name": "x"}, timeout=60).status_code == 400


@pytest.mark.parametrize("trac_env", [None, "/nonexistent/other-env"])
def test_env_parent_dir(tracfront, trac_site, trac_env):
    """With TRAC_ENV set in tracfront's environment, Trac opened that one for
    every request (500 here) until trac.env_path was None in the environ."""
    env = dict(ENV, **({"TRAC_ENV": trac_env} if trac_env else {}))
    srv = tracfront("--trac-env-parent-dir", trac_site["env"].parent, env=env)
    r = requests.get(srv.url, timeout=60)
    assert r.status_code == 200
    assert 'href="/demo"' in r.text
    r = requests.get(srv.url + "demo/wiki/WikiStart", timeout=60)
    assert r.status_code == 200
    assert "Welcome to Trac" in r.text
    assert 'href="/demo/chrome/common/css/trac.css' in r.text


def test_attachment_view_with_the_default_function_profiling(tracfront, trac_site, tmp_path):
    """Trac's first attachment view looks its MIME types up through Pygments'
    entry points, generators all the way: under a profile function on
    CPython before 3.11.3 the garbage collector then crashed the process
    (gh-101975; cProfile too). The default mode there is the frame hook."""
    attached = tmp_path / "notes.bin"
    attached.write_bytes(bytes(range(256)) * 40)
    admin(trac_site["env"], "attachment", "add", "wiki:WikiStart", attached)
    srv = tracfront("--trac-env", trac_site["env"], "--profile", env=ENV)
    for _ in range(3):
        r = requests.get(srv.url + "raw-attachment/wiki/WikiStart/notes.bin", timeout=60)
        assert r.status_code == 200 and r.content == attached.read_bytes()
        r = requests.get(srv.url + "attachment/wiki/WikiStart/notes.bin", timeout=60)
        assert r.status_code == 200 and "notes.bin" in r.text
    assert srv.alive(), srv.stderr
    assert srv.stop() == 0, srv.stderr
    assert "Fatal Python error" not in srv.error_log, srv.error_log


@pytest.mark.parametrize("builtins", ["true", "false"])
def test_function_profile_of_real_trac(tracfront, trac_site, builtins):
    """Both profiling modes on real Trac: the page still renders, and the
    profile names Trac's request dispatcher with one call per request."""
    import marshal
    srv = tracfront("--trac-env", trac_site["env"], "--profile",
                    "--profile-builtins=" + builtins, env=ENV)
    for _ in range(4):  # the first is discarded
        r = requests.get(srv.url + "wiki/WikiStart", timeout=60)
        assert r.status_code == 200 and "Welcome to Trac" in r.text
    stats = marshal.loads(requests.get(srv.url + "__profile__/pstats", timeout=60).content)
    dispatch = [v for f, v in stats.items()
                if f[0].endswith(os.path.join("trac", "web", "main.py")) and f[2] == "dispatch_request"]
    assert [v[1] for v in dispatch] == [3]
    has_builtins = any(f[0] == "~" for f in stats)
    assert has_builtins == (builtins == "true")
