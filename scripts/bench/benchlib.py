"""Shared by scripts/bench-*: start servers in their own process groups (and
always stop them), find free loopback ports, wait until a server answers,
run wrk --latency, parsing req/s and the median, build mhd_hello (the
plain libmicrohttpd hello-world server) and null_hooks (do-nothing profiling
hooks), and find real Trac when it imports."""
import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "build", "bench")
PY = "/usr/bin/python3"
TRAC_ENV = os.path.join(ROOT, ".demo", "trac-env")
TRAC_LOCAL = os.path.join(ROOT, "third_party_local", "trac")
running = []  # Popen objects still to stop


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def _signal(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _reap(proc):
    """Wait for proc after SIGTERM; SIGKILL its group if it takes over 10 s."""
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL)
        proc.wait()


def kill_all():
    """Stop every server started here: SIGTERM its process group, then SIGKILL."""
    for p in running:
        if p.poll() is None:
            _signal(p, signal.SIGTERM)
    for p in running:
        _reap(p)
    running.clear()


def stop(proc):
    """Stop one server started here (SIGTERM to its group, then SIGKILL)."""
    if proc.poll() is None:
        _signal(proc, signal.SIGTERM)
        _reap(proc)
    if proc in running:
        running.remove(proc)


def _on_signal(signum, frame):
    kill_all()
    sys.exit(128 + signum)


atexit.register(kill_all)
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, log_path, cwd=None, env=None, cpus=None):
    """Start a server in its own session, output to log_path; it is stopped
    by kill_all() (also at exit and on SIGINT/SIGTERM/SIGHUP)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    running.append(proc)
    return proc


def wait_ready(proc, url, expected=None, timeout=30):
    """None once url answers 200 (with the expected body, if given), else why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited with status %d" % proc.returncode
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                body = r.read()
            if expected is None or body == expected:
                return None
            return "answered %r instead of %r" % (body[:60], expected)
        except OSError:
            time.sleep(0.1)
    return "did not answer within %ds" % timeout


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def wrk(url, conns, duration, cpus=None):
    """Run wrk --latency; return (req_per_s, p50_ms, notes)."""
    argv = ["wrk", "-t%d" % min(2, conns), "-c%d" % conns, "-d%ds" % duration,
            "--timeout", "10s", "--latency", url]
    r = subprocess.run(argv, capture_output=True, text=True,
                       preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    out = r.stdout
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
    if r.returncode != 0 or not rps or not p50:
        return None, None, "wrk failed: " + (r.stderr or out).strip()[-200:]
    notes = []
    for pat in (r"Socket errors:.*", r"Non-2xx or 3xx responses:.*"):
        m = re.search(pat, out)
        if m:
            notes.append(m.group(0).strip())
    return float(rps.group(1)), float(p50.group(1)) * UNITS[p50.group(2)], "; ".join(notes)


def cpu_seconds(pid):
    """user + system CPU time so far of a process, of the children it has
    reaped and of its live children (gunicorn's and uWSGI's workers), or None
    when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            children = [int(c) for c in f.read().split()]
    except OSError:  # no children list on this kernel: the process alone
        children = []
    for child in children:
        total += cpu_seconds(child) or 0.0
    return total


def thread_cpu_seconds(pid):
    """{thread id: user + system CPU seconds so far} of one process's threads
    (its children not included); {} when it is gone."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def busy_threads(before, after, floor=0.1):
    """How many of a process's threads each took at least `floor` of its CPU
    time between two thread_cpu_seconds() readings (None when it used none)."""
    used = [after[t] - before.get(t, 0.0) for t in after]
    total = sum(u for u in used if u > 0)
    return sum(1 for u in used if u >= floor * total) if total > 0 else None


def fmt_ms(ms):
    if ms is None:
        return "-"
    return "%.0fus" % (ms * 1000) if ms < 1 else "%.2fms" % ms


def _build(src_name, out_name, argv_tail):
    """Compile scripts/bench/SRC into build/bench/OUT when out of date, with
    cc -O2 and argv_tail (flags and libraries); the output's path, or None."""
    src = os.path.join(ROOT, "scripts", "bench", src_name)
    out = os.path.join(BENCH, out_name)
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
        return out
    os.makedirs(BENCH, exist_ok=True)
    r = subprocess.run(["cc", "-O2", "-o", out, src] + argv_tail)
    return out if r.returncode == 0 else None


def build_mhd_hello():
    """build/bench/mhd_hello from scripts/bench/mhd_hello.c; None if it
    cannot be built."""
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libmicrohttpd"],
                               check=True, capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return _build("mhd_hello.c", "mhd_hello", flags + ["-lpthread"])


def build_null_hooks():
    """The null_hooks extension module (scripts/bench/null_hooks.c) for
    /usr/bin/python3, in build/bench/; None if it cannot be built."""
    try:
        conf = subprocess.run([PY, "-c", "import sysconfig as s; print(s.get_paths()['include']);"
                               "print(s.get_config_var('EXT_SUFFIX'))"],
                              check=True, capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return _build("null_hooks.c", "null_hooks" + conf[1],
                  ["-shared", "-fPIC", "-I" + conf[0]])


def module_ok(mod, pythonpath=""):
    env = dict(os.environ, PYTHONPATH=pythonpath)
    return subprocess.run([PY, "-c", "import " + mod], env=env, capture_output=True).returncode == 0


def trac_pythonpath():
    """The PYTHONPATH under which /usr/bin/python3 imports Trac (this one, else
    third_party_local/trac), or None when Trac is to be skipped, as it is
    without the demo environment (TRAC_ENV, made by scripts/demo)."""
    if not os.path.isfile(os.path.join(TRAC_ENV, "VERSION")):
        return None
    current = os.environ.get("PYTHONPATH", "")
    if module_ok("trac.web.main", current):
        return current
    if os.path.isdir(TRAC_LOCAL) and module_ok("trac.web.main", TRAC_LOCAL):
        return TRAC_LOCAL
    return None
