"""Process lifecycle: graceful stop, Python finalization, and the command line.

SIGTERM lets an in-flight request finish, refuses new connections and exits 0
after finalizing Python (atexit runs); --graceful-timeout bounds the wait. Bad
configuration fails fast with a message naming the culprit; --help, --version
and --config files (with flags overriding file keys) work.
"""
import os
import pathlib
import re
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import refused

ROOT = pathlib.Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"
BINARY = pathlib.Path(os.environ.get("TRACFRONT_BIN", ROOT / "build" / "tracfront"))
APP = ("--app", "robust_apps:app")


def wait_until_seen(srv, path, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = requests.get(srv.url + "seen", timeout=10)
        if path in [rec["path"] for rec in r.json()]:
            return
        time.sleep(0.05)
    raise AssertionError("the app never received %s" % path)


def in_thread(fn):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as e:
            result["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def test_sigterm_lets_in_flight_request_finish(tracfront, tmp_path):
    srv = tracfront(*APP, "--threads", "2")
    gate = tmp_path / "open-gate"
    t, res = in_thread(lambda: requests.get(
        srv.url + "gate", params={"file": str(gate)}, timeout=60))
    try:
        wait_until_seen(srv, "/gate")
        srv.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not refused(srv.port):  # as nginx: not accepted and closed unanswered
            assert time.monotonic() < deadline, "still accepting new connections after SIGTERM"
            time.sleep(0.05)
        assert t.is_alive() and srv.alive(), "did not wait for the in-flight request"
    finally:
        gate.touch()
    t.join(30)
    assert "error" not in res, res
    assert (res["value"].status_code, res["value"].text) == (200, "released")
    assert srv.proc.wait(20) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_finalizes_python_and_exits_zero(tracfront, tmp_path, sig):
    marker = tmp_path / "atexit-ran"
    srv = tracfront(*APP, env={"ROBUST_ATEXIT_FILE": str(marker)})
    assert requests.get(srv.url + "hello", timeout=10).status_code == 200
    assert not marker.exists()
    assert srv.stop(sig) == 0
    assert marker.read_text() == "finalized\n", "atexit handlers did not run"


LATE_THREADING_APP = """
import sys

def application(environ, start_response):
    first = "threading" not in sys.modules
    import threading  # as trac.wsgi does, on the thread that runs the request
    threading.current_thread()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"first import" if first else b"imported before"]
"""


def test_stop_is_prompt_when_the_app_imported_threading_on_a_request(tracfront, tmp_path):
    # threading's shutdown waits for the thread that imported it to end its
    # Python thread state; a request thread that kept its state alive made
    # the stop hang (trac.wsgi does this).
    script = tmp_path / "late.wsgi"
    script.write_text(LATE_THREADING_APP)
    srv = tracfront("--wsgi-file", script, "--threads", "2")
    r = requests.get(srv.url, timeout=10)
    assert (r.status_code, r.text) == (200, "first import")
    started = time.monotonic()
    assert srv.stop(timeout=10) == 0
    assert time.monotonic() - started < 5


def test_graceful_timeout_bounds_shutdown(tracfront):
    srv = tracfront(*APP, "--threads", "2", "--graceful-timeout", "1")
    t, _ = in_thread(lambda: requests.get(srv.url + "slow?s=20", timeout=60))
    wait_until_seen(srv, "/slow")
    srv.proc.send_signal(signal.SIGTERM)
    try:
        rc = srv.proc.wait(8)
    except subprocess.TimeoutExpired:
        raise AssertionError("still running 8 s after SIGTERM with --graceful-timeout 1")
    assert rc == 0
    t.join(10)


# ---- command line and config -------------------------------------------------

def test_half_sent_request_does_not_hold_shutdown(tracfront):
    # A client that never finishes its headers is not a request in flight:
    # SIGTERM must not wait the whole --graceful-timeout for it.
    srv = tracfront(*APP, "--graceful-timeout", "30")
    s = srv.connect()
    s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    time.sleep(0.3)
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(20)
    s.close()
    assert srv.proc.returncode == 0
    assert time.monotonic() - started < 15, "shutdown waited for a half-sent request"


def run_cli(cwd, *args, timeout=20):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([str(BINARY)] + [str(a) for a in args], cwd=str(cwd), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("still running after %ss (it started despite a bad config?)\n%s"
                             % (timeout, err.decode(errors="replace")[-2000:]))
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def good_args(**override):
    """A valid command line; override={'app': ...} replaces or (None) drops a flag."""
    flags = {"listen": "127.0.0.1:0", "pythonpath": str(APPS), "app": "robust_apps:app"}
    flags.update(override)
    args = []
    for k, v in flags.items():
        if v is not None:
            args += ["--" + k, v]
    return args


def write_config(tmp_path, body, name="tf.ini"):
    path = tmp_path / name
    path.write_text("[tracfront]\n" + body)
    return path


@pytest.mark.parametrize("extra, names", [
    (["--no-such-flag"], ["no-such-flag"]),
    (["--no-such-flag", "1"], ["no-such-flag"]),
    (["--threads", "0"], ["threads"]),
    (["--threads", "-3"], ["threads"]),
    (["--threads", "abc"], ["threads"]),
    (["--max-body", "lots"], ["max-body"]),
    (["--graceful-timeout", "soon"], ["graceful-timeout"]),
    (["--env", "NOEQUALSSIGN"], ["env", "NOEQUALSSIGN"]),
    (["--threads"], ["threads"]),                       # missing value
], ids=["unknown-flag", "unknown-flag-with-value", "threads-0", "threads-negative",
        "threads-nan", "max-body-nan", "graceful-timeout-nan", "env-no-equals",
        "missing-value"])
def test_bad_flag_fails_naming_it(tmp_path, extra, names):
    rc, out, err = run_cli(tmp_path, *good_args(), *extra)
    assert rc > 0, (rc, err)
    assert any(n in err for n in names), "stderr does not name %s:\n%s" % (names, err)


@pytest.mark.parametrize("value", ["nonsense", "127.0.0.1:99999", "127.0.0.1:http",
                                   "127.0.0.1:"])
def test_bad_listen_fails_naming_it(tmp_path, value):
    rc, out, err = run_cli(tmp_path, *good_args(listen=value))
    assert rc > 0, (rc, err)
    assert "listen" in err or value in err, err


@pytest.mark.parametrize("value, names", [
    ("nosuchmodule_xyz:app", ["nosuchmodule_xyz"]),
    ("robust_apps", ["application"]),                     # no colon: `application`
    ("robust_apps:nosuchcallable", ["nosuchcallable"]),
], ids=["no-module", "no-colon-no-application", "no-callable"])
def test_bad_app_fails_naming_it(tmp_path, value, names):
    rc, out, err = run_cli(tmp_path, *good_args(app=value))
    assert rc > 0, (rc, err)
    assert any(n in err for n in names), "stderr does not name %s:\n%s" % (names, err)


@pytest.mark.parametrize("body, name", [
    ("bogus_key = 1\n", "bogus_key"),
    ("threads = many\n", "threads"),
    ("threads = 0\n", "threads"),
], ids=["unknown-key", "threads-nan", "threads-0"])
def test_bad_config_file_fails_naming_key(tmp_path, body, name):
    cfg = write_config(tmp_path, body)
    rc, out, err = run_cli(tmp_path, "--config", cfg, *good_args())
    assert rc > 0, (rc, err)
    assert name in err, "stderr does not name %r:\n%s" % (name, err)


def test_missing_config_file_fails_naming_it(tmp_path):
    rc, out, err = run_cli(tmp_path, "--config", tmp_path / "nope-tf.ini", *good_args())
    assert rc > 0, (rc, err)
    assert "nope-tf.ini" in err, err


def test_help(tmp_path):
    rc, out, err = run_cli(tmp_path, "--help")
    assert rc == 0, err
    text = out + err
    for flag in ("--listen", "--app", "--threads", "--config", "--graceful-timeout"):
        assert flag in text, "--help does not mention %s:\n%s" % (flag, text)


def test_version(tmp_path):
    rc, out, err = run_cli(tmp_path, "--version")
    assert rc == 0, err
    assert re.search(r"\d+\.\d+", out + err), out + err


def test_config_file_sets_app_and_threads(tracfront, tmp_path):
    cfg = write_config(tmp_path, "; robustness test\napp = robust_apps:other\nthreads = 2\n")
    srv = tracfront("--config", cfg)
    r = requests.get(srv.url + "hello", timeout=10)
    assert (r.status_code, r.text) == (200, "other")


def test_flag_overrides_config_key(tracfront, tmp_path):
    cfg = write_config(tmp_path, "app = robust_apps:other\nthreads = 2\n")
    srv = tracfront("--config", cfg, "--app", "robust_apps:app")
    r = requests.get(srv.url + "hello", timeout=10)
    assert (r.status_code, r.text) == (200, "hello")


def test_flag_before_config_still_overrides_it(tracfront, tmp_path):
    cfg = write_config(tmp_path, "app = robust_apps:other\n")
    srv = tracfront("--app", "robust_apps:app", "--config", cfg)
    r = requests.get(srv.url + "hello", timeout=10)
    assert (r.status_code, r.text) == (200, "hello")


def test_a_flag_replaces_the_files_entries_of_a_repeatable_key(tracfront, tmp_path):
    """Flags win over the file for repeatable keys too, as gunicorn's command
    line does: the file's `static = /s=DIR` and a flag's --static /s=DIR2 were
    'routed twice', and a flag's --profile-allow could not narrow the file's
    ranges. The flag's entries replace all the file's for that key."""
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in (old, new):
        folder.mkdir()
        (folder / "f.txt").write_text(folder.name)
    cfg = write_config(tmp_path, "static = /s=%s\nstatic = /t=%s\nprofile-allow = 127.0.0.0/8\n"
                       % (old, old))
    srv = tracfront("--config", cfg, *APP, "--static", "/s=%s" % new,
                    "--profile-allow", "10.0.0.0/8")
    assert requests.get(srv.url + "s/f.txt", timeout=10).text == "new"
    assert requests.get(srv.url + "t/f.txt", timeout=10).text != "old"  # the app's now
    assert requests.get(srv.url + "__profile__", timeout=10).status_code == 403


def test_routes_are_one_key(tracfront, tmp_path):
    """--static is --route PREFIX=static:DIR: a flag of either replaces the
    file's routes of both."""
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in (old, new):
        folder.mkdir()
        (folder / "f.txt").write_text(folder.name)
    cfg = write_config(tmp_path, "route = /s=static:%s\n" % old)
    srv = tracfront("--config", cfg, *APP, "--static", "/s=%s" % new)
    assert requests.get(srv.url + "s/f.txt", timeout=10).text == "new"


def test_repeatable_keys_of_the_file_stay_without_a_flag(tracfront, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "f.txt").write_text("old")
    cfg = write_config(tmp_path, "static = /s=%s\n" % (tmp_path / "old"))
    srv = tracfront("--config", cfg, *APP, "--profile-allow", "127.0.0.0/8")
    assert requests.get(srv.url + "s/f.txt", timeout=10).text == "old"


def test_an_app_flag_takes_the_files_project_entries_with_its_app(tracfront, tmp_path):
    """mod_wsgi's layout in the file (a .wsgi script and SetEnv's
    trac.env_path) and a Trac environment named by a flag: the flag's app
    replaces the file's, projects included ("cannot be set: --trac-env names
    the environment" before). The file's other env entries stay."""
    script = tmp_path / "t.wsgi"
    script.write_text("def application(environ, start_response):\n"
                      "    start_response('200 OK', [])\n    return [b'script']\n")
    cfg = write_config(tmp_path, "wsgi-file = %s\nenv = trac.env_path=%s\nenv = kept=yes\n"
                       % (script, tmp_path))
    srv = tracfront("--config", cfg, "--app", "auth_app:application",
                    "--env", "trac.env_parent_dir=%s" % tmp_path)
    body = requests.get(srv.url, timeout=10).json()
    assert body["env_path"] is None and body["kept"] == "yes", body
    assert body["env_parent_dir"] == str(tmp_path), body  # the flag's own stays


@pytest.mark.parametrize("flags, said", [
    (("--threads", "1"), "app robust_apps:app, 1 thread;"),
    (("--workers", "1", "--threads", "1"), "app robust_apps:app, 1 worker of 1 thread;"),
    (("--workers", "2"), "app robust_apps:app, 2 workers of 8 threads;"),
])
def test_listening_line_counts_in_the_singular_too(tracfront, flags, said):
    srv = tracfront(*APP, *flags)
    assert said in srv.stderr, srv.stderr


# --- signals the app takes at import -------------------------------------------------------

SIGNAL_APP = """
import signal, sys

def handler(sig, frame):
    sys.stderr.write("the app's handler ran\\n")

for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, handler)

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]], ids=["in-process", "workers"])
def test_app_setting_signal_handlers_at_import_does_not_stop_shutdown(tracfront, tmp_path,
                                                                      workers):
    """As mod_wsgi's WSGIRestrictSignal: tracfront keeps SIGTERM, SIGINT and
    SIGHUP (its shutdown and reload), and says the app's handler is not used."""
    (tmp_path / "sigapp.py").write_text(SIGNAL_APP)
    srv = tracfront("--app", "sigapp:application", "--pythonpath", tmp_path, *workers)
    assert requests.get(srv.url, timeout=30).text == "ok"
    assert srv.stop(signal.SIGTERM, timeout=20) == 0
    assert "the app set its own handler for SIGTERM" in srv.error_log
    assert "the app's handler ran" not in srv.error_log


SUBPROCESS_APP = """
import subprocess  # imports signal, which sets Python's own SIGINT handler

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]], ids=["in-process", "workers"])
def test_importing_signal_is_not_reported_as_a_handler_of_the_apps(tracfront, tmp_path,
                                                                  workers):
    """`import signal` (subprocess, Trac) installs Python's KeyboardInterrupt
    handler for SIGINT: that is not the app's, and was logged as an error."""
    (tmp_path / "subapp.py").write_text(SUBPROCESS_APP)
    srv = tracfront("--app", "subapp:application", "--pythonpath", tmp_path, *workers)
    assert requests.get(srv.url, timeout=30).text == "ok"
    assert srv.stop(signal.SIGINT, timeout=20) == 0
    assert "its own handler" not in srv.error_log


HANGING_IMPORT = """
import time
time.sleep(60)
def application(environ, start_response):
    start_response("200 OK", [])
    return [b""]
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_hung_import_can_be_interrupted(tmp_path, sig):
    """A database that never answers at import: Ctrl-C or SIGTERM must end
    the start, not wait for it (nothing is served yet)."""
    (tmp_path / "hang.py").write_text(HANGING_IMPORT)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([str(BINARY), "--listen", "127.0.0.1:0", "--app", "hang:application",
                             "--pythonpath", str(tmp_path)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    time.sleep(1.5)  # inside the import's sleep
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the signal did not end a start stuck in the app's import")
    assert b"listening on" not in err


# --- the INI file, as uWSGI and configparser read it ------------------------------------------


def test_indented_keys_are_keys(tracfront, tmp_path):
    cfg = write_config(tmp_path, "app = robust_apps:other\n    threads = 3\n\tmount = /m\n")
    srv = tracfront("--config", cfg)
    assert requests.get(srv.url + "m/hello", timeout=10).text == "other"
    assert requests.get(srv.url + "hello", timeout=10).status_code == 404


def test_long_ini_line_is_a_clear_error(tracfront, tmp_path):
    """libinih (Debian's build) reads lines of up to 199 characters and would
    cut a longer one in two wrong lines: up to that it works, past it the
    start fails naming the line."""
    value = "v" * (199 - len("env = tf.long="))
    cfg = write_config(tmp_path, "app = robust_apps:app\nenv = tf.long=%s\n" % value)
    srv = tracfront("--config", cfg)
    assert requests.get(srv.url + "hello", timeout=10).text == "hello"
    cfg = write_config(tmp_path, "app = robust_apps:app\nenv = tf.long=%sv\nthreads = 2\n"
                       % value, "long.ini")
    rc, out, err = run_cli(tmp_path, "--config", cfg, "--listen", "127.0.0.1:0",
                           "--pythonpath", APPS)
    assert rc == 2, err
    assert "line 3: longer than 199 characters" in err and "command line" in err, err


def test_config_directory_is_refused(tmp_path):
    """A folder read as an empty file started with no configuration at all."""
    rc, out, err = run_cli(tmp_path, "--config", tmp_path, *good_args())
    assert rc == 2, err
    assert "--config %s: cannot read: Is a directory" % tmp_path in err, err


def test_config_from_a_pipe_is_read(tracfront, tmp_path):
    """Not only regular files: what can be read, /dev/stdin or a FIFO, is."""
    fifo = tmp_path / "tf.fifo"
    os.mkfifo(fifo)
    t, _ = in_thread(lambda: fifo.write_text("[tracfront]\napp = robust_apps:other\n"))
    srv = tracfront("--config", fifo)
    t.join(10)
    assert requests.get(srv.url + "hello", timeout=10).text == "other"


def test_config_from_a_pipe_is_refused_with_workers(tmp_path):
    """Workers read --config again when they start: from a pipe they found
    nothing and failed with "nothing to serve"; now the start says why."""
    fifo = tmp_path / "tf.fifo"
    os.mkfifo(fifo)
    t, _ = in_thread(lambda: fifo.write_text("[tracfront]\napp = robust_apps:other\n"
                                             "workers = 1\n"))
    rc, out, err = run_cli(tmp_path, "--config", fifo, "--listen", "127.0.0.1:0",
                           "--pythonpath", APPS)
    t.join(10)
    assert rc == 2, err
    assert "not a regular file (a pipe?)" in err, err


def test_nul_in_an_ini_line_is_refused(tmp_path):
    """`threads = 3\\0junk` was read as 3: the text after the NUL vanished."""
    cfg = tmp_path / "nul.ini"
    cfg.write_bytes(b"[tracfront]\n; ok\nthreads = 3\0junk\n")
    rc, out, err = run_cli(tmp_path, "--config", cfg, *good_args())
    assert rc == 2, err
    assert "line 3: holds a NUL or 0x1f byte" in err, err


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_empty_upstream_host_is_refused(tmp_path, how):
    """It started and sent `Host: ` (empty) to the upstream."""
    args = ["--upstream", "http://127.0.0.1:9", "--listen", "127.0.0.1:0"]
    if how == "flag":
        args += ["--upstream-host", ""]
    else:
        args += ["--config", write_config(tmp_path, "upstream-host =\n")]
    rc, out, err = run_cli(tmp_path, *args)
    assert rc == 2, err
    assert "--upstream-host" in err and "empty" in err, err


def test_ini_error_names_its_own_line(tmp_path):
    cfg = write_config(tmp_path, "app = robust_apps:app\nbogus\nthreads = x\nqueue_size = y\n")
    rc, out, err = run_cli(tmp_path, "--config", cfg, "--listen", "127.0.0.1:0",
                           "--pythonpath", APPS)
    assert rc == 2, err
    assert "line 3: not KEY = VALUE" in err, err
    assert "queue" not in err and "threads" not in err, err


def test_second_config_file_is_refused(tmp_path):
    a = write_config(tmp_path, "threads = 2\n", "a.ini")
    b = write_config(tmp_path, "threads = 3\n", "b.ini")
    rc, out, err = run_cli(tmp_path, "--config", a, "--config", b, *good_args())
    assert rc == 2 and "--config" in err and "once" in err, err


@pytest.mark.parametrize("flag", ["--wsgi-file", "--wsgi_file"])
def test_flag_app_choice_replaces_the_files(tracfront, tmp_path, flag):
    """Flags win over the file, also across --app, --wsgi-file and --trac-env,
    and however the flag is spelt (--wsgi_file: "exclude each other")."""
    script = tmp_path / "w.wsgi"
    script.write_text("def application(environ, start_response):\n"
                      "    start_response('200 OK', [])\n    return [b'from the script']\n")
    cfg = write_config(tmp_path, "app = robust_apps:other\n")
    srv = tracfront("--config", cfg, flag, script)
    assert requests.get(srv.url, timeout=10).text == "from the script"


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, value", [
    ("--graceful-timeout", "nan"), ("--idle-timeout", "inf"), ("--request-timeout", "NaN"),
    ("--idle-timeout", "0x10"), ("--graceful-timeout", " 5"), ("--idle-timeout", "1e999"),
])
def test_seconds_must_be_plain_numbers(tmp_path, flag, value):
    rc, out, err = run_cli(tmp_path, *good_args(), flag, value)
    assert rc == 2 and flag in err, (rc, err)


def test_fractional_idle_timeout_rounds_up_not_to_off(tracfront):
    srv = tracfront(*APP, "--idle-timeout", "0.4")
    s = srv.connect(timeout=10)
    try:
        s.settimeout(10)
        assert s.recv(1) == b""  # closed after about a second, not kept forever
    finally:
        s.close()


@pytest.mark.parametrize("mount", ["/my%20app", "/a?b", "/a/../b", "/a ", "/a#b", "/./a"])
def test_mount_that_could_never_match_is_refused(tmp_path, mount):
    rc, out, err = run_cli(tmp_path, *good_args(), "--mount", mount)
    assert rc == 2 and "--mount" in err, (rc, err)


@pytest.mark.parametrize("target", ["/a/b/../../etc", "/a/b/%2e%2e/%2e%2e/x", "/a/b/../c",
                                    "/%61/b/../x", "/a/b%2F..%2Fx", "/a/b%2f%2e%2e/x"])
def test_dot_segments_cannot_leave_the_mount(tracfront, target):
    """With the app under /a/b, a path whose dot segments climb out of it is
    not the app's (uWSGI and Apache normalise before matching): 400."""
    srv = tracfront(*APP, "--mount", "/a/b")
    assert srv.raw(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % target.encode()).startswith(b"HTTP/1.1 400 ")
    r = requests.get(srv.url + "a/b/x/../hello", timeout=10)
    assert r.status_code == 200


def test_profile_log_folder_is_checked_at_start(tmp_path):
    rc, out, err = run_cli(tmp_path, *good_args(), "--profile-log", tmp_path / "no" / "x.pstats")
    assert rc == 2 and "--profile-log" in err, (rc, err)


@pytest.mark.parametrize("flag, value, message", [
    ("--trac-env", "{tmp}/missing", "No such file or directory"),
    ("--trac-env", "", "empty"),
    ("--trac-env", "{tmp}/file.txt", "is not a directory"),
    ("--trac-env-parent-dir", "{tmp}/missing", "No such file or directory"),
    ("--wsgi-file", "{tmp}/missing.wsgi", "No such file or directory"),
    ("--wsgi-file", "{tmp}", "is not a file"),
])
def test_app_paths_are_checked_at_start(tmp_path, flag, value, message):
    (tmp_path / "file.txt").write_text("x")
    value = value.format(tmp=tmp_path)
    rc, out, err = run_cli(tmp_path, "--listen", "127.0.0.1:0", flag, value)
    assert rc == 2 and flag in err and message in err, (rc, err)


def test_stop_line_gives_a_fractional_graceful_timeout(tracfront):
    srv = tracfront(*APP, "--graceful-timeout", "0.5")
    assert srv.stop(signal.SIGTERM, timeout=20) == 0
    assert "waiting up to 0.5s for requests in flight" in srv.error_log, srv.error_log[-2000:]
