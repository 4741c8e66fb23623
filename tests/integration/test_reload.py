"""--reload and SIGHUP: a new generation of workers takes over without a
restart and without a failed request.

The app (tests/apps/worker_app.py) imports reload_plugin from a directory the
test owns and serves its VERSION at /version. Rewriting that file must move
traffic to workers running the new code while clients keep hammering the
server (zero failures, versions never going back); SIGHUP does the same on
demand; a new generation that cannot start (SyntaxError, or not ready within
--worker-start-timeout) leaves the old one serving and says why in the log.
"""
import http.client
import itertools
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import APPS, BINARY
from workers_util import APP, Load, children, descendants, fetch, running, wait_for


_writes = itertools.count(1)


def write_plugin(folder, version, body=""):
    """Replace reload_plugin.py atomically (as editors do), its size different
    for every version so that no stale __pycache__ entry can match it."""
    path = folder / "reload_plugin.py"
    tmp = folder / "reload_plugin.py.tmp"
    tmp.write_text("%sVERSION = %r\n# %s\n" % (body, str(version), "#" * next(_writes)))
    os.replace(tmp, path)


def plugin_dir(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    write_plugin(folder, 1)
    return folder


def version(srv):
    status, body = fetch(requests, srv.url + "version", timeout=10)
    assert status == 200, body
    return body


def wait_version(srv, want, timeout=20):
    return wait_for(lambda: version(srv)["version"] == want, timeout, "VERSION %s to be served" % want)


def log_lines(srv, needle):
    return [line for line in srv.error_log.splitlines() if needle in line]


def serving_count(srv):
    return len(log_lines(srv, "reload: new workers are serving"))


def reload_count(srv):
    """How many reloads began (for whatever cause)."""
    return len([line for line in log_lines(srv, "reload: ") if "; starting " in line])


def test_reload_implies_one_worker(tracfront, tmp_path):
    srv = tracfront(*APP, "--reload", "--pythonpath", plugin_dir(tmp_path))
    assert re.search(r"listening on http://\S+ \(.*\b1 worker", srv.stderr), srv.stderr
    assert len(children(srv.proc.pid)) == 1
    assert version(srv)["version"] == "1"
    assert version(srv)["pid"] != srv.proc.pid


def test_reload_under_load_drops_nothing(tracfront, tmp_path):
    plugins = plugin_dir(tmp_path)
    srv = tracfront(*APP, "--reload", "--workers", "2", "--pythonpath", plugins)
    assert version(srv)["version"] == "1"
    with Load(srv.url, ["/version", "/pid"], threads=4, max_seconds=90) as load:
        for v in range(2, 6):
            old = children(srv.proc.pid)
            write_plugin(plugins, v)
            wait_version(srv, str(v))
            # the old generation goes away once its requests are done
            wait_for(lambda: not any(running(p, s) for p, s in old.items()), 20,
                     "generation %d's workers to exit" % (v - 1))
        n_before_end = load.count()
        wait_for(lambda: load.count() > n_before_end + 8, 20, "more requests on the last version")
    assert not load.failures(), load.failures()[:10]
    assert load.count() >= 100, "too little load to prove anything: %d" % load.count()
    for log in load.log:  # per client, sequential requests: versions never go back
        versions = [int(body["version"]) for path, _, body in log if path == "/version"]
        assert versions == sorted(versions), versions
        assert versions[-1] == 5
    assert serving_count(srv) == 4, srv.error_log[-3000:]
    assert len(log_lines(srv, "reload_plugin.py")) >= 4, "the cause (the file) is not logged"
    assert len(children(srv.proc.pid)) == 2


def test_changes_in_quick_succession_end_on_the_last_version(tracfront, tmp_path):
    # An editor saving again and again, some saves landing while the previous
    # generation is still starting or being retired: the last save wins.
    plugins = plugin_dir(tmp_path)
    srv = tracfront(*APP, "--reload", "--pythonpath", plugins)
    with Load(srv.url, ["/version"], threads=2, max_seconds=60) as load:
        for v, pause in zip(range(2, 12), (0.3, 0.9, 1.0, 1.1, 0.5, 1.2, 0.2, 1.0, 0.95, 0)):
            write_plugin(plugins, v)
            time.sleep(pause)
        wait_version(srv, "11", timeout=30)
    assert not load.failures(), load.failures()[:10]
    assert not log_lines(srv, "reload failed"), srv.error_log[-3000:]
    wait_for(lambda: len(children(srv.proc.pid)) == 1, 20, "the old generations to exit")


def test_a_file_stamped_ahead_of_the_clock_reloads_once(tracfront, tmp_path):
    # A file can be stamped ahead of the clock the reload compares with (a
    # network file system's clock, fine-grained file times): one reload for
    # one save, not one per check until the clock catches up.
    plugins = plugin_dir(tmp_path)
    srv = tracfront(*APP, "--reload", "--pythonpath", plugins)
    assert version(srv)["version"] == "1"
    write_plugin(plugins, 2)
    ahead = time.time_ns() + 2_000_000_000
    os.utime(plugins / "reload_plugin.py", ns=(ahead, ahead))
    wait_version(srv, "2")
    time.sleep(3.5)  # past the stamp: more than three checks (one a second)
    assert len(log_lines(srv, "reload_plugin.py changed")) == 1, srv.error_log[-3000:]


def test_sighup_reloads_on_demand(tracfront, tmp_path):
    plugins = plugin_dir(tmp_path)
    srv = tracfront(*APP, "--workers", "1", "--pythonpath", plugins)  # no --reload
    first = version(srv)
    assert first["version"] == "1"
    with Load(srv.url, ["/version"], threads=2, max_seconds=60) as load:
        write_plugin(plugins, 2)
        srv.proc.send_signal(signal.SIGHUP)
        wait_version(srv, "2")
    assert not load.failures(), load.failures()[:10]
    second = version(srv)["pid"]
    assert second != first["pid"]
    wait_for(lambda: serving_count(srv) == 1, 10, "the 'new workers are serving' line")
    assert log_lines(srv, "reload")
    srv.proc.send_signal(signal.SIGHUP)  # again, with nothing changed: still a new generation
    wait_for(lambda: version(srv)["pid"] != second, 20, "a third worker process")
    wait_for(lambda: serving_count(srv) == 2, 20, "the second reload")
    assert version(srv)["version"] == "2"


def test_old_generation_finishes_its_requests(tracfront, tmp_path):
    plugins = plugin_dir(tmp_path)
    srv = tracfront(*APP, "--reload", "--pythonpath", plugins)
    gate, mark = tmp_path / "gate", tmp_path / "mark"
    result = {}
    t = threading.Thread(target=lambda: result.update(value=fetch(
        requests, srv.url + "gate?file=%s&mark=%s" % (gate, mark), timeout=60)), daemon=True)
    t.start()
    old_pid = int(wait_for(lambda: mark.exists() and mark.read_text(), 10, "the gated request"))
    old_start = children(srv.proc.pid)[old_pid]
    write_plugin(plugins, 2)
    wait_version(srv, "2")
    assert running(old_pid, old_start) and t.is_alive(), "the old worker did not wait for its request"
    gate.touch()
    t.join(30)
    assert result["value"][0] == 200 and result["value"][1]["pid"] == old_pid, result
    wait_for(lambda: not running(old_pid, old_start), 20, "the old worker to exit")
    assert list(children(srv.proc.pid)) == [version(srv)["pid"]]


def test_failed_reload_keeps_the_old_generation(tracfront, tmp_path):
    plugins = plugin_dir(tmp_path)
    srv = tracfront(*APP, "--reload", "--workers", "2", "--pythonpath", plugins)
    with Load(srv.url, ["/version", "/pid"], threads=2, max_seconds=90) as load:
        write_plugin(plugins, 2)
        wait_version(srv, "2")
        serving = wait_for(lambda: (lambda k: len(k) == 2 and k)(children(srv.proc.pid)), 20,
                           "generation 1 to exit")
        write_plugin(plugins, 3, body="def broken(:\n")
        wait_for(lambda: log_lines(srv, "reload failed"), 30, "'reload failed' in the error log")
        assert "SyntaxError" in srv.error_log + srv.stderr, "the new worker's traceback is not logged"
        assert "a syntax error in %s" % (plugins / "reload_plugin.py") in srv.error_log, \
            "the new worker did not say it is a syntax error"
        assert version(srv)["version"] == "2"
        assert children(srv.proc.pid) == serving, "the old workers were replaced or a broken one is left"
        write_plugin(plugins, 4)  # fixed: the next reload works
        wait_version(srv, "4")
    assert not load.failures(), load.failures()[:10]
    versions = {body["version"] for log in load.log for path, _, body in log if path == "/version"}
    assert "3" not in versions


def import_in(srv, pid, name):
    """Have worker pid import module name (new connections until one lands
    there); the others do not import it."""
    for _ in range(500):
        status, body = fetch(requests, srv.url + "import?name=%s&pid=%d" % (name, pid), timeout=10)
        assert status == 200, body
        if body["imported"]:
            return
    raise AssertionError("no request reached worker %d" % pid)


def test_a_module_only_one_worker_imported_is_watched(tracfront, tmp_path):
    # Every worker's modules are watched, not the first one's only: a module
    # that one worker imported and the other did not (a Trac plugin from a
    # shared plugins_dir, loaded where that project's first request landed)
    # must reload when edited, else the two serve different code.
    lazy = tmp_path / "lazy"
    lazy.mkdir()
    for n in (1, 2):
        (lazy / ("lazy_%d.py" % n)).write_text("VALUE = 1\n")
    srv = tracfront(*APP, "--reload", "--workers", "2", "--pythonpath", plugin_dir(tmp_path),
                    "--pythonpath", lazy)
    gone = set()
    for n in (1, 2):  # one worker of the two, then the other of the next two: one is not the first
        pids = wait_for(lambda: (lambda k: len(k) == 2 and not gone & set(k) and sorted(k))(
            children(srv.proc.pid)), 30, "the two workers of generation %d" % n)
        import_in(srv, pids[n - 1], "lazy_%d" % n)
        (lazy / ("lazy_%d.py" % n)).write_text("VALUE = 22\n")
        wait_for(lambda: serving_count(srv) == n, 30, "a reload after lazy_%d.py changed" % n)
        assert log_lines(srv, "lazy_%d.py changed" % n), srv.error_log[-3000:]
        gone |= set(pids)


def test_worker_start_timeout_bounds_a_hanging_generation(tracfront, tmp_path):
    plugins = plugin_dir(tmp_path)
    srv = tracfront(*APP, "--reload", "--worker-start-timeout", "2", "--pythonpath", plugins)
    serving = children(srv.proc.pid)
    write_plugin(plugins, 2, body="import time\ntime.sleep(120)\n")
    wait_for(lambda: log_lines(srv, "reload failed"), 30, "'reload failed' in the error log")
    assert version(srv)["version"] == "1"
    # the hung worker was stopped, not left behind
    wait_for(lambda: children(srv.proc.pid) == serving, 10, "only the old worker to remain")
    write_plugin(plugins, 3)
    wait_version(srv, "3")


def blocking_body(mark, gate):
    """Plugin code whose import says it has begun (creates mark), then waits for gate."""
    return ("import os, time\nopen(%r, 'w').close()\nwhile not os.path.exists(%r):\n"
            "    time.sleep(0.02)\n" % (str(mark), str(gate)))


def test_sigterm_while_the_first_workers_import_stops_at_once(tmp_path):
    # As without --workers: an import that hangs can be interrupted, not
    # waited for until --worker-start-timeout. (Started directly: the harness
    # waits for the "listening" line, which comes once the workers are ready.)
    plugins = plugin_dir(tmp_path)
    importing = tmp_path / "importing"
    write_plugin(plugins, 1, body=blocking_body(importing, tmp_path / "never"))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([str(BINARY), "--listen", "127.0.0.1:0", "--pythonpath", str(APPS),
                                 "--error-log", str(tmp_path / "error.log"), *APP, "--workers",
                                 "1", "--worker-start-timeout", "30", "--pythonpath", str(plugins)],
                                cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(importing.exists, 30, "the worker to be importing the app")
        tree = descendants(proc.pid)
        assert tree, "no worker process"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "error.log").read_text() + (tmp_path / "stderr.txt").read_text()
    assert "did not start" not in log, "it waited for --worker-start-timeout:\n" + log
    assert "signal 15" in log and "listening on" not in log, log
    assert rc == 0, log
    wait_for(lambda: not any(running(p, s) for p, s in tree.items()), 10,
             "the importing worker to be gone")


def test_sigterm_during_a_reload_stops_the_serving_workers_gracefully(tracfront, tmp_path):
    plugins = plugin_dir(tmp_path)
    marks = tmp_path / "atexit"
    marks.mkdir()
    srv = tracfront(*APP, "--workers", "2", "--worker-start-timeout", "30", "--pythonpath", plugins,
                    env={"WORKER_ATEXIT_DIR": str(marks)})
    serving = children(srv.proc.pid)
    gate, mark = tmp_path / "gate", tmp_path / "mark"
    result = {}
    t = threading.Thread(target=lambda: result.update(value=fetch(
        requests, srv.url + "gate?file=%s&mark=%s" % (gate, mark), timeout=60)), daemon=True)
    t.start()
    wait_for(mark.exists, 10, "the gated request")
    importing = tmp_path / "importing"
    write_plugin(plugins, 2, body=blocking_body(importing, tmp_path / "never"))
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(importing.exists, 30, "the new workers to be importing")
    tree = descendants(srv.proc.pid)
    srv.proc.send_signal(signal.SIGTERM)
    gate.touch()
    t.join(60)
    assert srv.proc.wait(60) == 0
    assert result["value"][0] == 200, result  # the request in flight was let finish
    assert not log_lines(srv, "reload failed"), "it waited for --worker-start-timeout:\n" + \
        srv.error_log[-3000:]
    assert log_lines(srv, "signal 15: stopping the workers"), srv.error_log[-3000:]
    assert sorted(p.name for p in marks.iterdir()) == sorted("atexit-%d" % p for p in serving), \
        "a serving worker did not stop gracefully"
    wait_for(lambda: not any(running(p, s) for p, s in tree.items()), 10, "every worker to be gone")


def test_signals_during_a_reload_are_acted_on_after_it(tracfront, tmp_path):
    plugins = plugin_dir(tmp_path)
    srv = tracfront(*APP, "--workers", "1", "--pythonpath", plugins)
    importing, gate = tmp_path / "importing", tmp_path / "gate"
    write_plugin(plugins, 2, body=blocking_body(importing, gate))
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(importing.exists, 30, "the new worker to be importing")
    srv.proc.send_signal(signal.SIGUSR1)
    srv.proc.send_signal(signal.SIGHUP)
    time.sleep(0.2)  # the signals reach the front while it waits for the import
    gate.touch()
    wait_for(lambda: serving_count(srv) == 2, 30, "the reload SIGHUP asked for during the first")
    wait_for(lambda: [line for line in log_lines(srv, "SIGUSR1: log files reopened")
                      if "[worker " not in line], 10, "the front's log reopening")
    assert srv.proc.poll() is None


def uploads_get_the_503(srv):
    """An upload gets the 503 too, not a reset: a client that sends its whole
    body before it reads (http.client, requests) found the connection closed
    with its body unread, and the kernel answered with a reset. Chunked too;
    one that asks for 100 Continue, or in another coding (read until the
    client closes), gets the 503 at its head."""
    for chunked in (False, True):  # an iterable has no length: http.client sends it chunked
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            try:
                conn.request("POST", "/login", body=iter([b"y" * 65536] * 48) if chunked
                             else b"x" * (3 << 20))
                r = conn.getresponse()
                assert r.status == 503 and b"no worker" in r.read().lower(), r.status
            finally:
                conn.close()
    for head in (b"Content-Length: 200000000\r\nExpect: 100-continue",
                 b"Transfer-Encoding: gzip"):  # read until the close: not drained
        s = srv.connect(30)
        try:
            s.sendall(b"PUT /login HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n" % head)
            s.settimeout(5)
            answer = s.recv(65536)
            assert answer.startswith(b"HTTP/1.1 503 "), (head, answer[:200])
        finally:
            s.close()


def test_with_no_worker_alive_clients_get_503(tracfront, tmp_path):
    plugins = plugin_dir(tmp_path)
    srv = tracfront(*APP, "--workers", "2", "--pythonpath", plugins)
    write_plugin(plugins, 2, body="def broken(:\n")
    for n in (1, 2):  # one worker, then the other, dies; no replacement can start
        assert fetch(requests, srv.url + "exit", timeout=30)[0] == "error"
        wait_for(lambda: len(log_lines(srv, "exited (status 70)")) == n, 30, "worker exit %d" % n)
    wait_for(lambda: len(log_lines(srv, "reload failed")) >= 2, 30, "the failed restarts")
    r = requests.get(srv.url + "pid", timeout=30)  # not left waiting in the socket's backlog
    assert r.status_code == 503 and r.headers.get("Retry-After"), (r.status_code, r.headers)
    assert "no worker" in r.text.lower(), r.text
    wait_for(lambda: '"GET /pid HTTP/1.1" 503 ' in srv.access_log, 10, "the 503's access-log line")
    uploads_get_the_503(srv)
    last = log_lines(srv, "reload failed")[-1]
    assert "no worker is running" in last and "keep serving" not in last, last
    # uploads whose bodies the front is reading when the workers come back
    # got a reset: it closed its connections at once; now they get the 503
    answers = {}
    uploads = [threading.Thread(target=lambda i=i: answers.update({i: slow_upload(srv)}))
               for i in range(3)]
    for upload in uploads:
        upload.start()
    time.sleep(0.5)
    write_plugin(plugins, 3)  # fixed
    srv.proc.send_signal(signal.SIGHUP)  # the workers take the socket back from the front
    wait_for(lambda: (lambda r: r[0] == 200 and r[1]["version"])(
        fetch(requests, srv.url + "version", timeout=10)) == "3", 30, "VERSION 3 to be served")
    for upload in uploads:
        upload.join()
    assert all(a.startswith(b"HTTP/1.1 503 ") for a in answers.values()), answers
    assert srv.proc.poll() is None


def slow_upload(srv, size=8 << 20, per_second=2 << 20):
    """POST size bytes at per_second, sending the whole body before reading
    (as http.client): the answer's status line, or what went wrong."""
    s = srv.connect(30)
    try:
        s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = b"x" * 65536
        for _ in range(size // len(chunk)):
            s.sendall(chunk)
            time.sleep(len(chunk) / per_second)
        return s.recv(65536).split(b"\r\n", 1)[0]
    except OSError as e:
        return repr(e).encode()
    finally:
        s.close()


# --- a Trac environment: its plugins/ folder and conf/trac.ini are watched ----

PROBE_PLUGIN = '''from trac.core import Component, implements
from trac.web.api import IRequestHandler


class ReloadProbe(Component):
    implements(IRequestHandler)

    def match_request(self, req):
        return req.path_info == "/reloadprobe"

    def process_request(self, req):
        req.send(%r.encode(), "text/plain")
'''


def trac_pythonpath():
    """A PYTHONPATH under which /usr/bin/python3 imports Trac, or None."""
    local = os.path.join(os.path.dirname(__file__), "..", "..", "third_party_local", "trac")
    for path in (os.environ.get("PYTHONPATH", ""), os.path.abspath(local)):
        r = subprocess.run(["/usr/bin/python3", "-c", "import trac.web.main"], capture_output=True,
                           env=dict(os.environ, PYTHONPATH=path), timeout=60)
        if r.returncode == 0:
            return path
    return None


def probe(srv):
    r = requests.get(srv.url + "reloadprobe", timeout=30)
    return r.text if r.status_code == 200 else r.status_code


def test_trac_plugins_and_trac_ini_are_watched(tracfront, tmp_path):
    pythonpath = trac_pythonpath()
    if pythonpath is None:
        pytest.skip("Trac is not importable by /usr/bin/python3")
    env = tmp_path / "demo"
    subprocess.run(["/usr/bin/python3", "-m", "trac.admin.console", str(env), "initenv", "demo",
                    "sqlite:db/trac.db"], check=True, capture_output=True, timeout=300,
                   env=dict(os.environ, PYTHONPATH=pythonpath))
    srv = tracfront("--trac-env", env, "--reload", env={"PYTHONPATH": pythonpath})
    assert probe(srv) == 404
    plugin = env / "plugins" / "reload_probe.py"
    plugin.write_text(PROBE_PLUGIN % "probe 1")  # a file added
    wait_for(lambda: probe(srv) == "probe 1", 30, "the new plugin to be served")
    assert [line for line in log_lines(srv, "reload") if "plugins" in line], "cause not logged"
    plugin.write_text(PROBE_PLUGIN % "probe 22")  # changed
    wait_for(lambda: probe(srv) == "probe 22", 30, "the changed plugin to be served")
    before = serving_count(srv)
    with open(env / "conf" / "trac.ini", "a") as f:  # trac.ini changed
        f.write("\n[reload_test]\nchanged = yes\n")
    wait_for(lambda: serving_count(srv) > before, 30, "a reload after trac.ini changed")
    assert log_lines(srv, "trac.ini")
    plugin.unlink()  # removed
    wait_for(lambda: probe(srv) == 404, 30, "the removed plugin to be gone")


@pytest.mark.parametrize("given", ["trac.env_path", "trac.env_parent_dir"])
def test_projects_given_through_env_are_watched(tracfront, tmp_path, given):
    """mod_wsgi's SetEnv layout (`--wsgi-file trac.wsgi --env trac.env_path=ENV`,
    or trac.env_parent_dir=DIR for several projects): the projects' plugins/
    and conf/trac.ini are watched as with --trac-env. Only the file system is
    read, so any app serves here."""
    parent = tmp_path / "projects"
    env = project_folder(parent, "demo")
    value = env if given == "trac.env_path" else parent
    srv = tracfront(*APP, "--reload", "--pythonpath", plugin_dir(tmp_path),
                    "--env", "%s=%s" % (given, value))
    assert version(srv)["version"] == "1"
    (env / "plugins" / "probe.py").write_text("X = 1\n")
    wait_for(lambda: serving_count(srv) == 1, 30, "a reload after a plugin was added")
    assert [line for line in log_lines(srv, "reload") if "plugins" in line], srv.error_log
    before = serving_count(srv)
    with open(env / "conf" / "trac.ini", "a") as f:
        f.write("[reload_test]\nchanged = yes\n")
    wait_for(lambda: serving_count(srv) > before, 30, "a reload after trac.ini changed")


def project_folder(parent, name):
    """A folder shaped as a Trac environment, as far as --reload looks:
    conf/trac.ini and plugins/."""
    env = parent / name
    (env / "conf").mkdir(parents=True)
    (env / "plugins").mkdir()
    (env / "conf" / "trac.ini").write_text("[trac]\n")
    return env


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


def serve_projects(tracfront, tmp_path, parent):
    srv = tracfront(*APP, "--reload", "--pythonpath", plugin_dir(tmp_path),
                    "--env", "trac.env_parent_dir=%s" % parent)
    assert version(srv)["version"] == "1"
    return srv


def test_a_change_made_in_several_steps_reloads_once(tracfront, tmp_path):
    # `trac-admin DIR/new initenv` writes for a second or more: the reload
    # waits until what it watches has stayed the same for a check, rather
    # than start workers on a half-made project and then reload again.
    parent = tmp_path / "projects"
    project_folder(parent, "demo")
    srv = serve_projects(tracfront, tmp_path, parent)
    new = parent / "new"
    steps = (lambda: new.mkdir(),
             lambda: project_folder(parent, "new"),  # conf/trac.ini, plugins/
             lambda: (new / "plugins" / "a.py").write_text("A = 1\n"),
             lambda: append(new / "conf" / "trac.ini", "[a]\n"),
             lambda: (new / "plugins" / "b.py").write_text("B = 1\n"),
             lambda: append(new / "conf" / "trac.ini", "[b]\n"))
    for step in steps:  # a change every 0.3 s for 1.5 s
        step()
        time.sleep(0.3)
    wait_for(lambda: serving_count(srv) >= 1, 30, "a reload after the project was made")
    time.sleep(3)  # three checks more: time for a second reload, were one to come
    assert reload_count(srv) == 1, srv.error_log[-3000:]
    append(new / "conf" / "trac.ini", "[c]\n")  # a single change still reloads
    wait_for(lambda: serving_count(srv) == 2, 30, "a reload after trac.ini changed")
    assert reload_count(srv) == 2, srv.error_log[-3000:]


def test_files_trac_never_reads_make_no_reload(tracfront, tmp_path):
    # Trac takes only folders in the parent folder as projects (not those
    # its .tracignore names, by default none starting with a dot), and loads
    # only plugins/*.py and *.egg: nothing else there makes a reload.
    parent = tmp_path / "projects"
    demo = project_folder(parent, "demo")
    (parent / ".tracignore").write_text("# not projects\n old-* \n.*\n")
    srv = serve_projects(tracfront, tmp_path, parent)
    (parent / "NOTES.txt").write_text("hi\n")
    (parent / "backup.tgz").write_bytes(b"\0" * 100)
    (demo / "plugins" / "hello.py.orig").write_text("X = 1\n")
    (demo / "plugins" / "README").write_text("plugins go here\n")
    project_folder(parent, "old-demo")
    project_folder(parent, ".snapshot")
    time.sleep(3.5)  # more than three checks
    assert reload_count(srv) == 0, srv.error_log[-3000:]
    project_folder(parent, "other")
    wait_for(lambda: serving_count(srv) == 1, 30, "a reload after a project folder was added")
    assert [line for line in log_lines(srv, "reload: ") if str(parent) in line], srv.error_log
    (demo / "plugins" / "hello.py").write_text("X = 1\n")
    wait_for(lambda: serving_count(srv) == 2, 30, "a reload after a plugin was added")
    assert log_lines(srv, "%s changed" % (demo / "plugins" / "hello.py")), srv.error_log[-3000:]


def test_changes_that_never_settle_reload_after_a_while(tracfront, tmp_path):
    # An edit more often than the settle wait (a log written into a watched
    # file, a sync that never ends) must not put the reload off for ever.
    parent = tmp_path / "projects"
    demo = project_folder(parent, "demo")
    srv = serve_projects(tracfront, tmp_path, parent)
    deadline = time.monotonic() + 40
    n = 0
    while not serving_count(srv) and time.monotonic() < deadline:
        append(demo / "conf" / "trac.ini", "[edit%d]\n" % n)  # a new size every 50 ms
        n += 1
        time.sleep(0.05)  # (at 0.3 s, a test stalled 0.7 s on a loaded machine let it settle)
    assert serving_count(srv) == 1, "no reload while the edits went on:\n" + srv.error_log[-3000:]
    assert log_lines(srv, "still changing"), srv.error_log[-3000:]


# --- the front's questions to a worker --------------------------------------

def main_thread_wait(pid):
    """The system call pid's main thread is in and its first two arguments
    (/proc/PID/task/PID/syscall), or its state ("running")."""
    with open("/proc/%d/task/%d/syscall" % (pid, pid)) as f:
        return tuple(f.read().split()[:3])


def asking_the_workers(srv):
    """A function telling whether the front's main thread waits for an answer
    from its workers right now: a wait (poll) other than its wait for
    signals, which it is in at the start, between its checks."""
    def settled():
        first = main_thread_wait(srv.proc.pid)
        time.sleep(0.1)
        return len(first) == 3 and main_thread_wait(srv.proc.pid) == first and first
    idle = wait_for(settled, 10, "the front to wait for signals")
    return lambda: (lambda w: w[0] == idle[0] and w != idle)(main_thread_wait(srv.proc.pid))


def test_a_request_holding_the_gil_does_not_block_a_reload(tracfront, tmp_path):
    # The front asks each worker for its modules every 5 s; the answer must
    # not take the GIL, or a request holding it (C code that never releases
    # it, as a long call of a C extension) blocks the worker's control port,
    # and the next reload's "stop accepting" goes unanswered.
    srv = tracfront(*APP, "--reload", "--graceful-timeout", "1", "--pythonpath",
                    plugin_dir(tmp_path))
    mark = tmp_path / "gil-mark"
    threading.Thread(target=lambda: fetch(requests, srv.url + "hold_gil?mark=%s" % mark,
                                          timeout=120), daemon=True).start()
    wait_for(mark.exists, 10, "the GIL-holding request to run")
    time.sleep(7)  # the front asks for the modules at least once meanwhile (every 5 s)
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: serving_count(srv) == 1, 30, "the reload")
    assert not log_lines(srv, "did not confirm"), srv.error_log[-3000:]


def test_a_stop_during_the_modules_question_starts_no_reload(tracfront, tmp_path):
    # A stop that comes while the front waits for a worker's list of modules
    # must not be followed by a reload it would kill at once. The worker is
    # stopped (SIGSTOP) so that the question takes its 2 s; the test ticks the
    # front itself (a SIGCHLD does, as a child's end) so that a change is
    # first seen by the check just before the next question, 5 s after one.
    parent = tmp_path / "projects"
    project_folder(parent, "demo")
    srv = serve_projects(tracfront, tmp_path, parent)
    asking = asking_the_workers(srv)
    (worker,) = children(srv.proc.pid)
    os.kill(worker, signal.SIGSTOP)
    try:
        wait_for(asking, 20, "the front to ask the stopped worker for its modules")
        asked = time.monotonic()

        def at(seconds, action):
            time.sleep(max(0.0, asked + seconds - time.monotonic()))
            action()
        at(2.5, lambda: srv.proc.send_signal(signal.SIGCHLD))  # the question is over
        at(3.3, lambda: srv.proc.send_signal(signal.SIGCHLD))
        at(3.6, lambda: project_folder(parent, "new"))
        at(4.1, lambda: srv.proc.send_signal(signal.SIGCHLD))  # sees it: settling
        wait_for(asking, 10, "the next question")  # the check the change settles in
        srv.proc.send_signal(signal.SIGTERM)
        # not sooner: its answer would end the question before the signal did
        wait_for(lambda: log_lines(srv, "signal 15: stopping the workers"), 10, "the stop")
    finally:
        os.kill(worker, signal.SIGCONT)
    assert srv.proc.wait(30) == 0
    assert reload_count(srv) == 0, srv.error_log[-3000:]


def test_keys_only_a_restart_changes_keep_the_fronts_values_at_a_reload(tracfront, tmp_path):
    """A reload's workers read the config file again, but the front does not: a key the front
    uses (profile-path, where it sends its workers their controls; graceful-timeout, which
    bounds their stop) keeps the front's value in the new workers, and the log names every
    such key the file changed instead of ignoring it silently."""
    config = tmp_path / "tracfront.ini"
    config.write_text("profile-path = /p1\ngraceful-timeout = 30\nworkers = 1\n"
                      "env = STAGE=one\nprofile-max-routes = 2\n")
    srv = tracfront(*APP, "--config", str(config))
    assert requests.get(srv.url + "p1", timeout=10).status_code == 200
    first = version(srv)["pid"]
    config.write_text("profile-path = /p2\ngraceful-timeout = 5\nworkers = 3\n"
                      "env = STAGE=two\nprofile-max-routes = 100\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: serving_count(srv) == 1, 30, "the reload")
    assert version(srv)["pid"] != first
    # the keys a reload applies are applied (the new workers' environ)...
    assert fetch(requests, srv.url + "pid", timeout=10)[1]["cgi"]["STAGE"] == "two"
    # ...the front's are not, in the workers either: the profiler stays where the front asks
    assert requests.get(srv.url + "p1", timeout=10).status_code == 200
    assert requests.post(srv.url + "p1/start", timeout=10, allow_redirects=False,
                         headers={"Origin": srv.url.rstrip("/")}).status_code == 303
    assert "Function profiling: <b>on</b>" in requests.get(srv.url + "p1", timeout=10).text
    wait_for(lambda: len(children(srv.proc.pid)) == 1, 30, "the old worker to exit, no new ones")
    for key, old, new in (("profile-path", "/p1", "/p2"), ("graceful-timeout", "30", "5"),
                          ("workers", "1", "3"), ("profile-max-routes", "2", "100")):
        said = log_lines(srv, "reload: %s changed in %s" % (key, config))
        assert said and "%s -> %s" % (old, new) in said[0] and "restart" in said[0], \
            srv.error_log[-3000:]
    assert not log_lines(srv, "reload: env changed"), "env is a key a reload applies"
    assert not log_lines(srv, "reload: listen changed"), "the file never named it"
    assert not log_lines(srv, "did not take"), srv.error_log[-3000:]
