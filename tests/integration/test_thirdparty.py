"""Serve real third-party frameworks (Debian's Django and Flask) through tracfront:
tests/apps/django_site (`--app django_site.wsgi:application`) and
tests/apps/flask_app.py (`--app flask_app:app`). Covers HTML/JSON pages, request
bodies hashed by the app, non-ASCII paths, streaming responses, mounts and errors.
"""
import hashlib
import json
import random

import pytest
import requests

DJANGO = ("--app", "django_site.wsgi:application")
FLASK = ("--app", "flask_app:app")


def payload(n, seed=7):
    return random.Random(seed).randbytes(n)


# ---------------------------------------------------------------- Django


def test_django_html_and_json(tracfront):
    srv = tracfront(*DJANGO)
    r = requests.get(srv.url, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<h1>Django on tracfront</h1>" in r.text
    r = requests.get(srv.url + "json/?a=1&b=%C3%A9", timeout=30)
    assert r.status_code == 200
    assert r.json() == {"framework": "django", "method": "GET", "query": {"a": "1", "b": "é"}}


def test_django_settings_from_env_option(tracfront):
    # The settings module may also come from the process environment.
    srv = tracfront(*DJANGO, env={"DJANGO_SETTINGS_MODULE": "django_site.settings"})
    assert requests.get(srv.url + "json/", timeout=30).json()["framework"] == "django"


def test_django_append_slash_redirect_and_404(tracfront):
    srv = tracfront(*DJANGO)
    r = requests.get(srv.url + "json", allow_redirects=False, timeout=30)
    assert r.status_code == 301
    assert r.headers["Location"] == "/json/"
    assert requests.get(srv.url + "no/such/page/", timeout=30).status_code == 404
    assert srv.alive()


@pytest.mark.parametrize("size", [0, 1, 70000, 3 * 1024 * 1024 + 17])
def test_django_post_body(tracfront, size):
    srv = tracfront(*DJANGO)
    body = payload(size)
    r = requests.post(srv.url + "echo/", data=body, timeout=60,
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    assert r.json() == {"sha256": hashlib.sha256(body).hexdigest(), "len": size,
                        "content_type": "application/octet-stream"}


def test_django_unicode_path(tracfront):
    srv = tracfront(*DJANGO)
    r = requests.get(srv.url + "unicode/%C3%A9t%C3%A9%E2%82%AC/", timeout=30)
    assert r.status_code == 200
    assert r.text == "name=été€"


def test_django_streaming_response(tracfront):
    srv = tracfront(*DJANGO)
    r = requests.get(srv.url + "stream/", timeout=30)
    assert r.status_code == 200
    assert "Content-Length" not in r.headers
    assert r.text == "".join("line %d\n" % i for i in range(5))


def test_django_mounted(tracfront):
    srv = tracfront(*DJANGO, "--mount", "/site")
    r = requests.get(srv.url + "site/meta/", timeout=30)
    assert r.status_code == 200
    assert r.json() == {"script_name": "/site", "path": "/site/meta/", "path_info": "/meta/",
                        "absolute": "http://127.0.0.1:%d/x/" % srv.port}


# ---------------------------------------------------------------- Flask


def test_flask_index_and_json(tracfront):
    srv = tracfront(*FLASK)
    r = requests.get(srv.url, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.text == "<html><body><h1>Flask on tracfront</h1></body></html>"
    r = requests.get(srv.url + "json?x=%E2%9C%93", timeout=30)
    assert r.json() == {"framework": "flask", "args": {"x": "✓"}, "script_root": "",
                        "path": "/json"}


@pytest.mark.parametrize("size", [0, 5, 1024 * 1024 + 3])
def test_flask_upload(tracfront, size):
    srv = tracfront(*FLASK)
    body = payload(size, seed=size)
    r = requests.post(srv.url + "upload", data=body, timeout=60,
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    assert r.json() == {"sha256": hashlib.sha256(body).hexdigest(), "len": size}


def test_flask_stream(tracfront):
    srv = tracfront(*FLASK)
    r = requests.get(srv.url + "stream", timeout=30)
    assert r.status_code == 200
    assert r.text == "".join("chunk %d\n" % i for i in range(5))


def test_flask_template_escaping_and_utf8(tracfront):
    srv = tracfront(*FLASK)
    r = requests.get(srv.url + "template?who=%3Cb%3EZo%C3%AB", timeout=30)
    assert r.status_code == 200
    assert r.content.decode("utf-8") == \
        "<ul><li>&lt;b&gt;Zoë</li><li>&lt;script&gt;</li><li>Zoë</li></ul>"


def test_flask_exception_is_500_and_logged(tracfront):
    srv = tracfront(*FLASK)
    r = requests.get(srv.url + "error", timeout=30)
    assert r.status_code == 500
    assert "Internal Server Error" in r.text
    # Flask writes the traceback to wsgi.errors, which is the error log.
    assert "deliberate failure in flask_app" in srv.error_log
    assert requests.get(srv.url, timeout=30).status_code == 200


def test_flask_mounted(tracfront):
    srv = tracfront(*FLASK, "--mount", "/app")
    r = requests.get(srv.url + "app/json", timeout=30)
    assert r.status_code == 200
    assert json.loads(r.text)["script_root"] == "/app"
    assert json.loads(r.text)["path"] == "/json"
