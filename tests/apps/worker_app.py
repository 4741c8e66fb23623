"""WSGI app for the worker-process and reload tests (test_workers.py,
test_reload.py): every answer says which process served it, so a test can see
how requests spread over workers and when a new generation took over.

Routes: /pid and /login (pid, the CGI part of the environ, the HTTP_* headers,
the body's length; ?s=SECONDS sleeps first), /work?n=N (calls busy(n) exactly once, for
exact call counts in the profile), /slow?s=S (sleeps), /gate?file=PATH
[&mark=PATH][&exit=N] (writes its pid to mark, then waits until file exists; with exit,
the process then exits with status N without answering), /log?msg=M
(prints "worker_app says M" to stderr), /abort (os.abort(): the worker dies
without a word, as a crash in a C extension would), /exit (the worker process
exits at once, as a crash would, without answering), /version
(VERSION of the module reload_plugin, imported at startup from a directory the
test puts on --pythonpath; "none" when that module is not on the path),
/import?name=M&pid=P (imports module M, from a folder the test puts on
--pythonpath, only in process P: a module one worker loaded and the others
did not, as a Trac plugin loaded when a project's first request came there),
/hold_gil?mark=PATH (writes its pid to mark, then runs a regular expression
that backtracks for ever: C code that never releases the GIL, as a C
extension's long call). If the process environment has WORKER_ATEXIT_DIR, an
atexit handler writes DIR/atexit-PID at interpreter exit; with
WORKER_ATEXIT_BLOCK set too, another one, run after it, then blocks for an
hour. With WORKER_SPAWN_DIR, the import starts `sleep 60` in a session of its
own through os.system (a shell: every inheritable descriptor goes with it) and
writes its pid to DIR/holder-PID. It must never import anything the test does
not control, nor keep state across requests beyond what is listed.
"""
import atexit
import importlib
import json
import os
import re
import sys
import time
from urllib.parse import parse_qs

try:
    import reload_plugin  # a SyntaxError here must stop the worker from starting
except ModuleNotFoundError as e:
    if e.name != "reload_plugin":
        raise
    reload_plugin = None

_atexit_dir = os.environ.get("WORKER_ATEXIT_DIR")
if _atexit_dir:
    def _write_atexit_file(path=os.path.join(_atexit_dir, "atexit-%d" % os.getpid())):
        with open(path, "w") as f:
            f.write("finalized\n")
    if os.environ.get("WORKER_ATEXIT_BLOCK"):  # registered first: runs last
        atexit.register(time.sleep, 3600)
    atexit.register(_write_atexit_file)
    if os.environ.get("WORKER_ATEXIT_FORK"):  # a child that outlives its parent's end

        def _fork_a_sleeper():
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
        atexit.register(_fork_a_sleeper)

_spawn_dir = os.environ.get("WORKER_SPAWN_DIR")
if _spawn_dir:
    os.system("setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $! > %s/holder-%d"
              % (_spawn_dir, os.getpid()))


def busy(n):
    """Deterministic pure-Python work; one call per /work request."""
    total = 0
    for i in range(n):
        total = (total * 31 + i) % 1000003
    return total


def _reply(start_response, doc, status="200 OK"):
    body = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _environ_doc(environ):
    length = environ.get("CONTENT_LENGTH") or ""
    body = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
    cgi = {k: v for k, v in environ.items() if "." not in k and isinstance(v, str)}
    return {
        "pid": os.getpid(),
        "REMOTE_ADDR": environ.get("REMOTE_ADDR"),
        "REMOTE_PORT": environ.get("REMOTE_PORT"),
        "HTTP_HOST": environ.get("HTTP_HOST"),
        "REMOTE_USER": environ.get("REMOTE_USER"),
        "wsgi.multiprocess": environ.get("wsgi.multiprocess"),
        "wsgi.multithread": environ.get("wsgi.multithread"),
        "wsgi.url_scheme": environ.get("wsgi.url_scheme"),
        "http_keys": sorted(k for k in environ if k.startswith("HTTP_")),
        "cgi": cgi,
        "body_length": len(body),
    }


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path in ("/pid", "/login"):
        if "s" in qs:
            time.sleep(float(qs["s"]))
        return _reply(start_response, _environ_doc(environ))
    if path == "/work":
        result = busy(int(qs.get("n", "1000")))
        if "s" in qs:
            time.sleep(float(qs["s"]))
        return _reply(start_response, {"pid": os.getpid(), "result": result})
    if path == "/slow":
        time.sleep(float(qs.get("s", "1")))
        return _reply(start_response, {"pid": os.getpid(), "slept": qs.get("s", "1")})
    if path == "/gate":
        if "mark" in qs:
            with open(qs["mark"] + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(qs["mark"] + ".tmp", qs["mark"])
        deadline = time.monotonic() + float(qs.get("timeout", "30"))
        while not os.path.exists(qs["file"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        if "exit" in qs:
            os._exit(int(qs["exit"]))
        return _reply(start_response, {"pid": os.getpid(), "released": True})
    if path == "/hold_gil":
        with open(qs["mark"] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(qs["mark"] + ".tmp", qs["mark"])
        re.match(r"(a+)+$", "a" * 64 + "b")
        return _reply(start_response, {"pid": os.getpid()})
    if path == "/log":  # to the worker's stderr, which the front logs
        print("worker_app says %s" % qs.get("msg", ""), file=sys.stderr, flush=True)
        return _reply(start_response, {"pid": os.getpid()})
    if path == "/import":
        here = os.getpid() == int(qs["pid"])
        value = importlib.import_module(qs["name"]).VALUE if here else None
        return _reply(start_response, {"pid": os.getpid(), "imported": here, "value": value})
    if path == "/abort":
        os.abort()
    if path == "/exit":
        os._exit(70)
    if path == "/version":
        version = reload_plugin.VERSION if reload_plugin else "none"
        return _reply(start_response, {"pid": os.getpid(), "version": version})
    return _reply(start_response, {"error": "no such route"}, "404 Not Found")
