"""Shared by scripts/bench-*: start servers in their own process groups (and
always stop them), find free loopback ports, wait until a server answers,
run wrk --latency (req/s, median latency, the server's CPU time per request,
and whether the run is valid at all), let the peers take turns for ROUNDS
rounds and summarise them (medians, per-round ratios to a baseline), print
tables, build mhd_hello (the plain libmicrohttpd hello-world server) and
null_hooks (do-nothing profiling hooks), and find real Trac when it imports.

A run is INVALID, and its figures are left out of every median and ratio,
when wrk saw any answer it counts as an error (4xx or 5xx: wrk counts 1xx-3xx
as success; every peer is checked for a 200 with the expected body before it
is measured) or any socket error: connect, read, write, or timeout (wrk's
--timeout here is 10 s, so a timeout is a request that waited longer than
that, not a cut at the end of the run), or when wrk gave no figures. A script
that had one exits 1 (finish())."""
import atexit
import collections
import os
import re
import signal
import socket
import statistics
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
# wrk prints these lines only when one of their counts is not 0.
ERROR_PATTERNS = (r"Non-2xx or 3xx responses: \d+", r"Socket errors: .*")

# One wrk run. rps (req/s), p50 (ms), cpu (the server's user + system CPU in
# us per request) and busy (busy_threads()) are None when not measured, and
# all four when the run is INVALID; notes then says why.
Run = collections.namedtuple("Run", "rps p50 cpu busy notes")
invalid_runs = []  # "url c=N: why" of every INVALID run, for finish()


def _wrk_output(url, conns, duration, cpus):
    argv = ["wrk", "-t%d" % min(2, conns), "-c%d" % conns, "-d%ds" % duration,
            "--timeout", "10s", "--latency", url]
    return subprocess.run(argv, capture_output=True, text=True,
                          preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)


def warm_up(url, conns, seconds, cpus=None):
    """Load url for a while; nothing is measured or checked."""
    _wrk_output(url, conns, seconds, cpus)


def wrk_errors(out):
    """What in wrk's output makes its run invalid: [] when nothing does."""
    return [m.group(0).strip() for m in (re.search(p, out) for p in ERROR_PATTERNS) if m]


def wrk(url, conns, duration, cpus=None, pid=None):
    """Run wrk --latency against url (on cpus, if given) and return a Run;
    with pid, the CPU time and busy threads of that server process (its
    children included) are measured around it. An INVALID run is
    remembered for finish()."""
    if pid:
        before, threads_before = cpu_seconds(pid), thread_cpu_seconds(pid)
    r = _wrk_output(url, conns, duration, cpus)
    out = r.stdout
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
    served = re.search(r"^\s*(\d+) requests in", out, re.M)
    errors = wrk_errors(out)
    if r.returncode != 0 or not rps or not p50 or not served:
        errors.append("wrk failed: " + (r.stderr or out).strip()[-200:])
    if errors:
        why = "INVALID: " + "; ".join(errors)
        invalid_runs.append("%s c=%d: %s" % (url, conns, why))
        return Run(None, None, None, None, why)
    cpu = busy = None
    if pid:
        after = cpu_seconds(pid)
        busy = busy_threads(threads_before, thread_cpu_seconds(pid))
        if before is not None and after is not None and int(served.group(1)):
            cpu = (after - before) * 1e6 / int(served.group(1))
    return Run(float(rps.group(1)), float(p50.group(1)) * UNITS[p50.group(2)], cpu, busy, "")


def take_turns(peers, rounds, bench_one):
    """{peer: [its result in each round]}: each round runs bench_one(name)
    for every peer in turn (a fresh server each time), so a machine that
    speeds up or slows down during the run touches all of them alike.
    bench_one returns {key: Run}, or None when the peer is missing or does
    not start: in the first round such a peer is dropped (it is absent from
    the result), later it gets {} for that round."""
    out = {}
    for n in range(rounds):
        log("round %d of %d" % (n + 1, rounds))
        for name in peers:
            if n and name not in out:
                continue
            res = bench_one(name)
            if res is not None or n:
                out.setdefault(name, []).append(res or {})
    return {name: out[name] for name in peers if name in out}


def summary(runs, base_runs):
    """Over one peer's rounds at one key (runs: a Run or None per round):
    (a Run of the medians of its valid runs, [its per-round ratio of req/s
    to base_runs', the baseline's Run or None in the same rounds])."""
    def med(field):
        vals = [getattr(r, field) for r in runs if r and getattr(r, field) is not None]
        return statistics.median(vals) if vals else None
    ratios = [r.rps / b.rps for r, b in zip(runs, base_runs) if r and b and r.rps and b.rps]
    invalid = [r.notes for r in runs if r and r.notes.startswith("INVALID")]
    notes = sorted({r.notes for r in runs if r and r.notes} - set(invalid))
    if invalid:
        notes.insert(0, "INVALID in %d of %d rounds%s" % (
            len(invalid), len(runs), invalid[0][len("INVALID"):]))
    if None in runs:
        notes.insert(0, "no result in %d of %d rounds" % (runs.count(None), len(runs)))
    return Run(med("rps"), med("p50"), med("cpu"), None, "; ".join(notes)), ratios


def fmt_ratio(ratios, suffix=""):
    """The median of per-round ratios, and their range when there are more."""
    if not ratios:
        return "-"
    text = "%.2f%s" % (statistics.median(ratios), suffix)
    return text + (" (%.2f-%.2f)" % (min(ratios), max(ratios)) if len(ratios) > 1 else "")


def fmt_run(run):
    """req/s, p50 and CPU/req of a Run as table cells ('INVALID' when it is)."""
    if run.rps is None and "INVALID" in run.notes:
        return "INVALID", "-", "-"
    return ("%.0f" % run.rps if run.rps else "-", fmt_ms(run.p50),
            "%.1fus" % run.cpu if run.cpu else "-")


def print_table(rows, left=1):
    """rows[0] is the header. The first `left` columns are left-aligned, the
    others right-aligned, and the last (notes) is not aligned."""
    n = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    print()
    for i, r in enumerate(rows):
        line = "  ".join(r[j].ljust(widths[j]) if j < left else r[j].rjust(widths[j])
                         for j in range(n))
        print((line + "  " + r[n]).rstrip())
        if i == 0:
            print("-" * len(line))
    print()


def finish(not_measured=()):
    """The script's exit status: 1 (after saying why) when a peer the run
    was for was not measured (not_measured: messages) or a run was INVALID."""
    for what in not_measured:
        log("NOT MEASURED: " + what)
    if invalid_runs:
        log("%d INVALID run%s (left out of every median, ratio and verdict):\n  %s" % (
            len(invalid_runs), "" if len(invalid_runs) == 1 else "s", "\n  ".join(invalid_runs)))
    return 1 if not_measured or invalid_runs else 0


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
