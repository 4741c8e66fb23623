"""How the application is loaded and what its Python sees, compared with
mod_wsgi, uWSGI and gunicorn: print() and sys.stdout in the error log,
sys.stderr as a file object (faulthandler), the --wsgi-file module name,
sys.path (the working directory, --pythonpath with .pth files and ':'),
--venv's Python version, --env keys the server owns, tracfront's own
variables kept out of os.environ, and --app's MODULE[:CALLABLE].
"""
import hashlib
import platform
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import APPS, app_lines, start_server

APP = ("--app", "loading_apps:app")


def wait_for_file(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError("%s never appeared" % path)
        time.sleep(0.02)


# ---- print() and sys.stdout --------------------------------------------------

def test_print_goes_to_the_error_log_at_once(tracfront):
    srv = tracfront(*APP)
    r = requests.get(srv.url + "print", params={"text": "HELLO-FROM-PRINT"}, timeout=10)
    assert r.status_code == 200, r.text
    log = srv.error_log  # read while the server still runs: nothing waits for exit
    lines = app_lines(log)  # each stamped "[date] [app] "
    assert "PRINT-AT-IMPORT" in lines, log
    assert "HELLO-FROM-PRINT" in lines, log
    assert "SPLIT-HELLO-FROM-PRINT" in lines, log


def test_concurrent_prints_keep_their_lines_whole(tracfront):
    srv = tracfront(*APP, "--threads", "8")
    texts = ["T%02d-%s" % (i, "x" * 300) for i in range(48)]

    def fetch(text):
        return requests.get(srv.url + "print", params={"text": text}, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(fetch, texts)) == {200}
    lines = set(app_lines(srv.error_log))
    broken = [t for t in texts if t not in lines or "SPLIT-" + t not in lines]
    assert not broken, "lines cut or mixed in the error log:\n%s" % srv.error_log[-3000:]


def test_prints_survive_an_exit_with_a_request_in_flight(tracfront, tmp_path):
    srv = tracfront(*APP, "--graceful-timeout", "0.2")
    marker = tmp_path / "hang-marker"
    s = srv.connect()
    try:
        s.sendall(b"GET /hang?marker=%s HTTP/1.1\r\nHost: x\r\n\r\n"
                  % urllib.parse.quote(str(marker)).encode())
        wait_for_file(marker)
        assert srv.stop() == 0
    finally:
        s.close()
    log = srv.error_log
    assert "exiting without them" in log, "not the exit with a request in flight:\n" + log
    assert "WHOLE-LINE-BEFORE-HANG" in app_lines(log), log
    assert "UNFINISHED-LINE" in app_lines(log), log


# ---- sys.stdout and sys.stderr as file objects --------------------------------

@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_std_streams_have_the_file_attributes(tracfront, stream):
    srv = tracfront(*APP)
    r = requests.get(srv.url + "streams", timeout=10)
    assert r.status_code == 200, srv.error_log[-3000:]
    info = r.json()
    attrs = info[stream]
    assert attrs["fileno_target"] == str(srv.workdir / "error.log"), attrs
    assert (attrs["encoding"], attrs["errors"], attrs["closed"], attrs["name"]) == \
        ("utf-8", "backslashreplace", False, "<%s>" % stream), attrs
    assert (attrs["isatty()"], attrs["writable()"], attrs["readable()"], attrs["seekable()"],
            attrs["flush()"], attrs["line_buffering"]) == (False, True, False, False, None, True)
    assert info["errors_is_stderr"] is True
    assert "WRITELINES-ONE" in app_lines(srv.error_log)


def test_faulthandler_enabled_at_import_writes_to_the_error_log(tracfront):
    srv = tracfront("--app", "faulthandler_app:app")
    r = requests.get(srv.url + "dump", timeout=10)
    assert r.status_code == 200, r.text
    log = srv.error_log
    assert "Stack (most recent call first)" in log and "loading_apps.py" in log, log


def test_faulthandler_loads_with_the_error_log_off(tracfront):
    srv = tracfront("--app", "faulthandler_app:app", "--error-log", "off")
    r = requests.get(srv.url + "streams", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["stderr"]["fileno_target"] == "/dev/null"


# ---- --wsgi-file's module ------------------------------------------------------

PICKLING_SCRIPT = '''
import base64, pickle
class Thing:
    pass
def application(environ, start_response):
    data = environ["QUERY_STRING"]
    if data:
        answer = type(pickle.loads(base64.urlsafe_b64decode(data))).__qualname__
    else:
        answer = "%s %s %s" % (__name__, __file__,
                               base64.urlsafe_b64encode(pickle.dumps(Thing())).decode())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [answer.encode()]
'''


def test_wsgi_file_module_name_is_the_same_in_every_process(tracfront, tmp_path):
    script = tmp_path / "site" / "pickling.wsgi"
    script.parent.mkdir()
    script.write_text(PICKLING_SCRIPT)
    expected = "_tracfront_wsgi_" + hashlib.md5(str(script).encode()).hexdigest()
    # Another hash seed each, and the path relative to the first one's folder.
    a = tracfront("--wsgi-file", "../site/pickling.wsgi", env={"PYTHONHASHSEED": "1"})
    b = tracfront("--wsgi-file", script, env={"PYTHONHASHSEED": "2"})
    name, file, pickled = requests.get(a.url, timeout=10).text.split()
    assert (name, file) == (expected, str(script))
    assert requests.get(b.url, timeout=10).text.split()[:2] == [expected, str(script)]
    r = requests.get(b.url + "?" + pickled, timeout=10)
    assert (r.status_code, r.text) == (200, "Thing"), b.error_log[-3000:]


# ---- sys.path --------------------------------------------------------------------

MYAPP = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"myapp from the working directory"]
'''


def test_the_working_directory_is_on_sys_path(tmp_path):
    # The README's first example: `tracfront --app myapp:application` beside myapp.py.
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "myapp.py").write_text(MYAPP)
    srv = start_server(workdir, "--app", "myapp:application")
    try:
        r = requests.get(srv.url, timeout=10)
        assert (r.status_code, r.text) == (200, "myapp from the working directory")
    finally:
        assert srv.stop() == 0


def test_sys_path_is_pythonpath_then_working_directory_then_python(tracfront):
    srv = tracfront(*APP)
    path = requests.get(srv.url + "syspath", timeout=10).json()
    assert path[:2] == [str(APPS), str(srv.workdir)], path
    assert path.count(str(srv.workdir)) == 1 and not any(p in ("", ".") for p in path), path


def test_pythonpath_splits_at_colons_and_reads_pth_files(tracfront, tmp_path):
    a, b, site, plugin = (tmp_path / n for n in ("a", "b", "site", "plugin-src"))
    for d in (a, b, site, plugin):
        d.mkdir()
    # A Trac plugin installed in develop mode: a .pth file naming its source folder.
    (site / "plugin.egg-link.pth").write_text("%s\nimport os; os.environ['PTH_RAN'] = '1'\n"
                                              % plugin)
    (plugin / "plugmod.py").write_text("WHERE = 'plugin source'\n")
    srv = tracfront(*APP, "--pythonpath", "%s:%s:" % (a, b), "--pythonpath", site)
    path = requests.get(srv.url + "syspath", timeout=10).json()
    assert path[:6] == [str(APPS), str(a), str(b), str(site), str(plugin), str(srv.workdir)], path
    assert requests.get(srv.url + "osenviron", timeout=10).json().get("PTH_RAN") == "1"


# ---- --venv's Python ----------------------------------------------------------------

def fake_venv(tmp_path, cfg_text):
    """A folder that looks like a venv with the given pyvenv.cfg (None: none)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages").mkdir(parents=True)
    (venv / "bin" / "python3").symlink_to("/usr/bin/python3")
    if cfg_text is not None:
        (venv / "pyvenv.cfg").write_text(cfg_text)
    return venv


def expect_start_failure(tracfront, *args, app=APP):
    srv = tracfront(*app, *args, expect_fail=True)
    assert srv.url is None, "started:\n" + srv.stderr
    return srv.proc.wait(), srv.stderr


@pytest.mark.parametrize("cfg_text, says", [
    ("home = /opt/python3.12/bin\ninclude-system-site-packages = false\nversion = 3.12.1\n",
     ["3.12.1", platform.python_version()]),
    ("home = /usr/bin\nversion_info = 3.10.13.final.0\n", ["3.10.13", platform.python_version()]),
    ("home = /opt/pyenv/versions/3.11.7/bin\nversion = 3.11.7\n",
     ["3.11.7", "/opt/pyenv/versions/3.11.7/bin", platform.python_version()]),
    (None, ["pyvenv.cfg"]),
    ("home = /usr/bin\n", ["pyvenv.cfg", "version"]),
], ids=["python-3.12", "python-3.10-virtualenv", "other-3.11-build", "no-pyvenv.cfg",
        "no-version"])
def test_venv_of_another_python_is_refused(tracfront, tmp_path, cfg_text, says):
    rc, err = expect_start_failure(tracfront, "--venv", fake_venv(tmp_path, cfg_text))
    assert rc == 2, err
    assert "--venv" in err and all(s in err for s in says), err


def test_empty_venv_is_refused(tracfront):
    rc, err = expect_start_failure(tracfront, "--venv", "")
    assert rc == 2 and "--venv" in err, err


def test_venv_of_the_embedded_python_starts(tracfront, tmp_path):
    version = platform.python_version()
    venv = fake_venv(tmp_path, "home = /usr/bin\nversion = %s\n" % version)
    srv = tracfront(*APP, "--venv", venv)
    path = requests.get(srv.url + "syspath", timeout=10).json()
    assert str(venv / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages") in path


# ---- --env keys ---------------------------------------------------------------------

@pytest.mark.parametrize("entry, hint", [
    ("HTTP_X_FORWARDED_PROTO=https", "trac.base_url"),
    ("SERVER_PORT=443", "trac.base_url"),
    ("REQUEST_URI=/x", "trac.base_url"),
    ("REMOTE_USER=admin", "--basic-auth"),
    ("CONTENT_LENGTH=0", ""),
    ("wsgi.multithread=false", "PEP 3333"),
    ("wsgi.version=2", "PEP 3333"),
    ("NOEQUALS", "KEY=VALUE"),
])
def test_env_keys_the_server_sets_are_refused(tracfront, entry, hint):
    rc, err = expect_start_failure(tracfront, "--env", entry)
    assert rc == 2, err
    assert "--env" in err and entry.split("=")[0] in err and hint in err, err


def test_env_script_name_behind_a_prefix_stripping_proxy(tracfront):
    """nginx's `location /trac/ { proxy_pass http://127.0.0.1:8000/; }` strips
    the prefix: --env SCRIPT_NAME=/trac gives the app its links' prefix (as
    mod_wsgi's SetEnv would), SERVER_NAME likewise; with --mount it is refused."""
    srv = tracfront(*APP, "--env", "SCRIPT_NAME=/trac", "--env", "SERVER_NAME=example.org")
    env = requests.get(srv.url + "environ", timeout=10).json()
    assert env["SCRIPT_NAME"] == ["'/trac'", "str"] and env["PATH_INFO"] == ["'/environ'", "str"]
    assert env["SERVER_NAME"] == ["'example.org'", "str"]
    rc, err = expect_start_failure(tracfront, "--env", "SCRIPT_NAME=/trac", "--mount", "/x")
    assert rc == 2 and "--mount" in err and "SCRIPT_NAME" in err, err


def test_env_key_refused_from_the_config_file_too(tracfront, tmp_path):
    cfg = tmp_path / "tf.ini"
    cfg.write_text("[tracfront]\nenv = SERVER_PORT=443\n")
    rc, err = expect_start_failure(tracfront, "--config", cfg)
    assert rc == 2 and "--env" in err and "SERVER_PORT" in err, err


def test_env_sets_the_keys_it_may(tracfront):
    srv = tracfront(*APP, "--env", "wsgi.url_scheme=https", "--env", "HTTPS=on",
                    "--env", "trac.base_url=https://example.org/trac")
    env = requests.get(srv.url + "environ", headers={"X-Forwarded-Proto": "http"},
                       timeout=10).json()
    assert env["wsgi.url_scheme"] == ["'https'", "str"]
    assert env["HTTPS"] == ["'on'", "str"]
    assert env["trac.base_url"] == ["'https://example.org/trac'", "str"]
    assert env["HTTP_X_FORWARDED_PROTO"] == ["'http'", "str"]
    assert env["wsgi.multithread"] == ["True", "bool"] and env["wsgi.version"] == ["(1, 0)", "tuple"]


# ---- tracfront's own variables ------------------------------------------------------

@pytest.mark.parametrize("workers", ["0", "2"])
def test_app_does_not_see_tracfronts_variables(tracfront, workers):
    srv = tracfront(*APP, "--workers", workers, env={"TF_MINE": "kept"})
    for _ in range(4):  # more than one worker answers
        environ = requests.get(srv.url + "osenviron", timeout=10).json()
        assert environ.get("TF_MINE") == "kept"
        ours = [k for k in environ if k.startswith(("TF_LISTEN", "TF_FRONT_", "TF_WORKER_",
                                                     "TF_AUTH_"))]
        assert not ours, "the app sees %s" % {k: environ[k] for k in ours}


# ---- --app MODULE[:CALLABLE] ----------------------------------------------------------

def test_app_without_callable_serves_application(tracfront):
    srv = tracfront("--app", "hello")
    r = requests.get(srv.url, timeout=10)
    assert (r.status_code, r.text) == (200, "Hello, World!\n")


@pytest.mark.parametrize("spec", [
    "loading_apps:app.", "loading_apps:.app", "loading_apps:a..b", "loading_apps:",
    ".loading_apps:app", "loading_apps.:app", "tests..apps:app", ":app", "loading_apps:app:x",
    "",
])
def test_app_with_an_empty_name_is_refused(tracfront, spec):
    rc, err = expect_start_failure(tracfront, app=("--app", spec))
    assert rc == 2, err
    assert "--app" in err and ("'%s'" % spec) in err, err


def test_unfinished_lines_of_concurrent_requests_do_not_mix(tracfront):
    """One request's unfinished line is held for its own thread: another
    request's whole line is not appended to it (one stream-wide buffer did),
    and a line left unfinished when a request ends is ended then, as
    mod_wsgi ends it, not joined to the next request's output."""
    srv = tracfront(*APP, "--threads", "4", "--inline-fast-calls", "false")
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(requests.get, srv.url + "partial?who=A", timeout=30)
        # B writes once A has started its line (the app orders them)
        assert requests.get(srv.url + "partial?who=B", timeout=30).status_code == 200
        assert a.result().status_code == 200
    assert requests.get(srv.url + "partial?who=C", timeout=30).status_code == 200
    assert requests.get(srv.url + "print", params={"text": "AFTER-C"}, timeout=30).ok
    lines = app_lines(srv.error_log)
    assert "B-WHOLE-LINE" in lines, srv.error_log[-2000:]
    assert "A-STARTS-A-LINE A-ENDS-IT" in lines, srv.error_log[-2000:]
    assert "C-UNFINISHED" in lines and "AFTER-C" in lines, srv.error_log[-2000:]


# ---- tracebacks -----------------------------------------------------------------------

WRAPPED_STDERR_APP = """
import sys

class FlushingWrapper:
    '''As colorama's StreamWrapper (Django 3.2 calls colorama.init()): a
    flush() after every write().'''
    def __init__(self, wrapped):
        self.wrapped = wrapped

    def write(self, text):
        self.wrapped.write(text)
        self.wrapped.flush()

    def __getattr__(self, name):
        return getattr(self.wrapped, name)

if %(colorama)r:
    import colorama
    colorama.init()
    assert sys.stderr.__class__.__name__ == "StreamWrapper", sys.stderr
else:
    sys.stderr = FlushingWrapper(sys.stderr)

def application(environ, start_response):
    return {}["c"]
"""


@pytest.mark.parametrize("wrapper", ["flushing-wrapper", "colorama"])
def test_traceback_lines_stay_whole_when_the_app_wraps_stderr(tracfront, tmp_path, wrapper):
    """Each flush() ends a line of sys.stderr, so a traceback printed through
    the app's wrapper came out a line per piece (`KeyError`, `: `, `'c'`):
    tracebacks go to the error log's own stream, as mod_wsgi and gunicorn
    log them."""
    if wrapper == "colorama":
        pytest.importorskip("colorama")
    (tmp_path / "wrapapp.py").write_text(WRAPPED_STDERR_APP % {"colorama": wrapper == "colorama"})
    srv = tracfront("--app", "wrapapp:application", "--pythonpath", tmp_path)
    assert requests.get(srv.url, timeout=10).status_code == 500
    lines = app_lines(srv.error_log)
    assert "Traceback (most recent call last):" in lines, srv.error_log[-3000:]
    assert "KeyError: 'c'" in lines, srv.error_log[-3000:]
    assert any(line.startswith('  File "%s", line ' % (tmp_path / "wrapapp.py"))
               and line.endswith(", in application") for line in lines), srv.error_log[-3000:]
