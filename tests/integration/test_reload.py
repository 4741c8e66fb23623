"""--reload and SIGHUP: a new generation of workers takes over without a
restart and without a failed request.

The app (tests/apps/worker_app.py) imports reload_plugin from a directory the
test owns and serves its VERSION at /version. Rewriting that file must move
traffic to workers running the new code while clients keep hammering the
server (zero failures, versions never going back); SIGHUP does the same on
demand; a new generation that cannot start (SyntaxError, or not ready within
--worker-start-timeout) leaves the old one serving and says why in the log.
"""
import itertools
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import requests

from workers_util import APP, Load, children, fetch, running, wait_for


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
        assert version(srv)["version"] == "2"
        assert children(srv.proc.pid) == serving, "the old workers were replaced or a broken one is left"
        write_plugin(plugins, 4)  # fixed: the next reload works
        wait_version(srv, "4")
    assert not load.failures(), load.failures()[:10]
    versions = {body["version"] for log in load.log for path, _, body in log if path == "/version"}
    assert "3" not in versions


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
