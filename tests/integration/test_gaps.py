"""Assorted behaviours not covered elsewhere: a client disconnect reaches the
app as OSError from write(); --wsgi-file with a plain script (and its failure
modes); --trac-env without Trac or on a missing directory; --venv; and --env
entries accumulating from repeated flags and the --config file.
"""
import os
import pathlib
import subprocess
import time

import pytest
import requests

from test_lifecycle import APPS, good_args, run_cli, write_config

APP = ("--app", "gap_apps:app")
PY = "/usr/bin/python3"
HELLO_WSGI = APPS / "scripts" / "hello.wsgi"


def wait_for_file(path, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError("%s never appeared" % path)


# ---- client disconnect -----------------------------------------------------

def test_client_disconnect_raises_oserror_in_write(tracfront, tmp_path):
    # --max-spill 1M: write() must wait for the client before its 32 MiB are
    # buffered (with the default 1G, a fast app could finish first: a flake)
    srv = tracfront(*APP, "--max-spill", "1M")
    marker = tmp_path / "stream-outcome"
    s = srv.connect()
    try:
        s.sendall(b"GET /stream?marker=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(marker).encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 200"), "the stream did not start"
    finally:
        s.close()   # with unread data pending: the kernel answers RST
    outcome = wait_for_file(marker, timeout=30)
    assert outcome.startswith("OSError"), \
        "write() did not raise OSError after the client went away: %r" % outcome
    assert srv.alive()
    r = requests.get(srv.url + "list", timeout=10)
    assert r.status_code == 200 and r.content == b"list body " * 10


# ---- --wsgi-file with a plain script -----------------------------------------

def test_wsgi_file_plain_script_runs_as_module(tracfront):
    srv = tracfront("--wsgi-file", HELLO_WSGI)
    first = requests.get(srv.url + "one", timeout=10)
    second = requests.get(srv.url + "two", timeout=10)
    assert first.status_code == second.status_code == 200
    a, b = first.json(), second.json()
    assert pathlib.Path(a["file"]).resolve() == HELLO_WSGI.resolve(), a
    assert a["helper"] == "helper from %s" % a["file"]
    assert a["name"] not in ("__main__", "builtins") and a["name"], a
    assert (a["path"], b["path"]) == ("/one", "/two")
    assert b["hits"] == a["hits"] + 1, "module globals did not persist between requests"


def test_wsgi_file_syntax_error_fails(tmp_path):
    script = tmp_path / "broken.wsgi"
    script.write_text("def application(environ, start_response:\n    return []\n")
    rc, out, err = run_cli(tmp_path, *good_args(app=None), "--wsgi-file", script)
    assert rc > 0, (rc, err)
    assert "--wsgi-file" in err, err
    assert "SyntaxError" in err or "syntax" in err.lower(), err


@pytest.mark.parametrize("module", ["badsyntax", "importsbad"], ids=["its-own", "one-it-imports"])
def test_app_module_syntax_error_says_so(tmp_path, module):
    # not "cannot import module (is it on --pythonpath?)": it was found
    (tmp_path / "badsyntax.py").write_text("def application(environ, start_response:\n    pass\n")
    (tmp_path / "importsbad.py").write_text("import badsyntax\napplication = None\n")
    rc, out, err = run_cli(tmp_path, *good_args(app=module + ":application",
                                                pythonpath=str(tmp_path)))
    assert rc > 0, (rc, err)
    assert "--pythonpath?" not in err, err
    assert "syntax error in %s" % (tmp_path / "badsyntax.py") in err, err
    assert "'%s'" % module in err, err


def test_app_module_that_raises_at_import_says_so(tmp_path):
    (tmp_path / "raising.py").write_text("raise RuntimeError('no database')\n")
    rc, out, err = run_cli(tmp_path, *good_args(app="raising:application",
                                                pythonpath=str(tmp_path)))
    assert rc > 0, (rc, err)
    assert "--pythonpath?" not in err, err
    assert "module 'raising' raised while being imported" in err and "no database" in err, err


@pytest.mark.parametrize("source,exception", [
    ("import no_such_dependency_xyz\n", "No module named 'no_such_dependency_xyz'"),
    ("from os import no_such_name_xyz\n", "cannot import name 'no_such_name_xyz'"),
], ids=["missing-module", "missing-name"])
def test_app_module_whose_own_import_fails_says_so(tmp_path, source, exception):
    # the module was found: --pythonpath is not what is wrong
    (tmp_path / "needsdep.py").write_text(source + "application = None\n")
    rc, out, err = run_cli(tmp_path, *good_args(app="needsdep:application",
                                                pythonpath=str(tmp_path)))
    assert rc > 0, (rc, err)
    assert "--pythonpath?" not in err, err
    assert "cannot import module 'needsdep': an import in it failed" in err, err
    assert exception in err, err


@pytest.mark.parametrize("app", ["nosuch_pkg_xyz.app", "gap_apps.nosuch_xyz"],
                         ids=["its-package", "itself"])
def test_app_module_not_found_suggests_pythonpath(tmp_path, app):
    rc, out, err = run_cli(tmp_path, *good_args(app=app + ":application"))
    assert rc > 0, (rc, err)
    assert "cannot import module '%s' (is it on --pythonpath?)" % app in err, err


def test_wsgi_file_without_application_fails(tmp_path):
    script = tmp_path / "noapp.wsgi"
    script.write_text("def app(environ, start_response):\n    return []\n")
    rc, out, err = run_cli(tmp_path, *good_args(app=None), "--wsgi-file", script)
    assert rc > 0, (rc, err)
    assert "application" in err, "stderr does not say `application` is missing:\n" + err
    assert "noapp.wsgi" in err or "--wsgi-file" in err, err


# ---- --trac-env failures -----------------------------------------------------

def _trac_importable_without_pythonpath():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run([PY, "-c", "import trac"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=60).returncode == 0


def test_trac_env_without_trac_fails(tmp_path):
    if _trac_importable_without_pythonpath():
        pytest.skip("trac is importable by %s even without PYTHONPATH" % PY)
    env_dir = tmp_path / "tracenv"
    env_dir.mkdir()
    rc, out, err = run_cli(tmp_path, *good_args(app=None), "--trac-env", env_dir)
    assert rc > 0, (rc, err)
    assert "--trac-env" in err, err
    assert "import" in err.lower(), "stderr does not say Trac cannot be imported:\n" + err


def test_trac_env_missing_directory_fails(tmp_path):
    rc, out, err = run_cli(tmp_path, *good_args(app=None),
                           "--trac-env", tmp_path / "no-such-env")
    assert rc > 0, (rc, err)
    assert "--trac-env" in err or "no-such-env" in err, err
    assert "not a directory" in err.lower(), err


# ---- --venv ------------------------------------------------------------------

VENV_MODULE = '''
import sys
def app(environ, start_response):
    body = ("%s|%s" % (sys.prefix, sys.base_prefix)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.fixture
def venv(tmp_path):
    path = tmp_path / "venv"
    r = subprocess.run([PY, "-m", "venv", "--without-pip", str(path)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip("cannot create a venv: %s" % r.stderr[-500:])
    site = subprocess.run([str(path / "bin" / "python3"), "-c",
                           "import site; print(site.getsitepackages()[0])"],
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    (pathlib.Path(site) / "venvonly.py").write_text(VENV_MODULE)
    return path


def test_venv_site_packages_and_prefix(tracfront, venv):
    srv = tracfront("--venv", venv, "--app", "venvonly:app")
    r = requests.get(srv.url, timeout=10)
    assert r.status_code == 200, r.text
    prefix, base_prefix = r.text.split("|")
    assert pathlib.Path(prefix).resolve() == venv.resolve(), r.text
    assert pathlib.Path(base_prefix).resolve() != venv.resolve(), r.text


def test_venv_not_a_venv_fails(tmp_path):
    plain = tmp_path / "plain-dir"
    plain.mkdir()
    rc, out, err = run_cli(tmp_path, *good_args(), "--venv", plain)
    assert rc > 0, (rc, err)
    assert "--venv" in err, err


# ---- --env accumulates -------------------------------------------------------

def test_env_flag_repeated(tracfront):
    srv = tracfront(*APP, "--env", "GAP_A=1", "--env", "GAP_B=two words")
    env = requests.get(srv.url + "echoenv", timeout=10).json()
    assert (env.get("GAP_A"), env.get("GAP_B")) == ("1", "two words"), env


def test_env_from_config_and_flag_accumulate(tracfront, tmp_path):
    cfg = write_config(tmp_path, "env = GAP_A=1\n")
    srv = tracfront("--config", cfg, *APP, "--env", "GAP_B=2")
    env = requests.get(srv.url + "echoenv", timeout=10).json()
    assert (env.get("GAP_A"), env.get("GAP_B")) == ("1", "2"), env


def test_ini_values_keep_semicolons_and_hashes(tracfront, tmp_path):
    """As uWSGI and Python's configparser (trac.ini) read them: `;` and `#`
    start a comment only at the start of a line; libinih cut `a ;b` to `a`."""
    cfg = write_config(tmp_path, "; a comment\n  # another\nenv = GAP_A=a ;b\n"
                                 "env = GAP_B=x #y ; z\n")
    srv = tracfront("--config", cfg, *APP)
    env = requests.get(srv.url + "echoenv", timeout=10).json()
    assert (env.get("GAP_A"), env.get("GAP_B")) == ("a ;b", "x #y ; z"), env
