"""WSGI apps for tests/integration/test_pep3333.py, served as `pep3333_apps:app`.

`app` routes on the first PATH_INFO segment; unknown paths dump the environ
as JSON. Every well-behaved app is wrapped with wsgiref.validate.validator via
`validated()`: a validator assertion (or WSGIWarning, turned into an error)
is written to wsgi.errors with the marker VALIDATOR-FAIL and kept in FAILURES
(served at /failures), so the tests can assert that neither holds anything.
Apps that are deliberately broken (bad status/headers, str bodies) or whose
point is a server fast path the validator's wrappers would hide (single-item
list, the server's own file_wrapper type) are marked `unvalidated`.
"""
import hashlib
import io
import json
import os
import sys
import threading
import time
import warnings
from urllib.parse import parse_qsl
from wsgiref.validate import WSGIWarning, validator

MARK = "VALIDATOR-FAIL"
warnings.filterwarnings("error", category=WSGIWarning)

_lock = threading.Lock()
CLOSED = {}     # tag -> close() calls on response iterables
CALLS = {}      # tag -> times an app ran for that tag
FILES = {}      # tag -> file object handed to wsgi.file_wrapper
FAILURES = []   # every validator failure seen, in or out of a request


def _bump(counter, tag):
    with _lock:
        counter[tag] = counter.get(tag, 0) + 1


def _qs(environ):
    return dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))


def _fail(errors, exc):
    msg = "%s: %s: %s" % (MARK, type(exc).__name__, exc)
    FAILURES.append(msg)
    try:
        errors.write(msg + "\n")
        errors.flush()
    except Exception:
        pass


_prev_hook = sys.unraisablehook


def _unraisable(u):
    # The validator asserts in IteratorWrapper.__del__ when close() was skipped.
    if isinstance(u.exc_value, AssertionError):
        FAILURES.append("%s: unraisable: %s" % (MARK, u.exc_value))
        sys.stderr.write("%s: unraisable: %s\n" % (MARK, u.exc_value))
    _prev_hook(u)


sys.unraisablehook = _unraisable


class _Guard:
    """Passes the validator's iterator through, recording its assertions."""

    def __init__(self, it, errors):
        self.it, self.errors = it, errors

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self.it)
        except (AssertionError, WSGIWarning) as e:
            _fail(self.errors, e)
            raise

    def close(self):
        try:
            self.it.close()
        except (AssertionError, WSGIWarning) as e:
            _fail(self.errors, e)
            raise


def validated(app):
    checked = validator(app)

    def wrapper(environ, start_response):
        errors = environ["wsgi.errors"]
        # The validator replaces these; keep the server's own objects, since
        # InputWrapper forbids read() without a size and re-implements __iter__.
        environ["pep3333.raw_input"] = environ["wsgi.input"]
        environ["pep3333.raw_errors"] = errors
        try:
            return _Guard(checked(environ, start_response), errors)
        except (AssertionError, WSGIWarning) as e:
            _fail(errors, e)
            raise
    wrapper.__name__ = app.__name__
    return wrapper


def unvalidated(app):
    return app


TEXT = [("Content-Type", "text/plain")]


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


# --- environ -----------------------------------------------------------------

def _simple(v):
    if v is None or isinstance(v, (str, bool, int, float)):
        return True
    return isinstance(v, tuple) and all(_simple(x) for x in v)


@validated
def environ_app(environ, start_response):
    raw_in = environ.get("pep3333.raw_input", environ["wsgi.input"])
    raw_err = environ.get("pep3333.raw_errors", environ["wsgi.errors"])
    return _json(start_response, {
        "values": {k: v for k, v in environ.items() if _simple(v)},
        "types": {k: type(v).__name__ for k, v in environ.items()},
        "input_attrs": [a for a in ("read", "readline", "readlines", "__iter__")
                        if hasattr(raw_in, a)],
        "errors_attrs": [a for a in ("write", "writelines", "flush")
                         if hasattr(raw_err, a)],
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
    })


@validated
def log_app(environ, start_response):
    environ["wsgi.errors"].write("app-log: %s\n" % _qs(environ).get("msg", ""))
    environ["wsgi.errors"].flush()
    start_response("200 OK", TEXT)
    return [b"logged"]


# --- counters ------------------------------------------------------------------

@validated
def closed_count(environ, start_response):
    start_response("200 OK", TEXT)
    return [str(CLOSED.get(_qs(environ).get("tag"), 0)).encode()]


@validated
def calls_count(environ, start_response):
    start_response("200 OK", TEXT)
    return [str(CALLS.get(_qs(environ).get("tag"), 0)).encode()]


@validated
def file_closed(environ, start_response):
    f = FILES.get(_qs(environ).get("tag"))
    start_response("200 OK", TEXT)
    return [b"missing" if f is None else str(f.closed).encode()]


@validated
def failures(environ, start_response):
    return _json(start_response, list(FAILURES))


# --- start_response and its errors -----------------------------------------------

BAD_STATUS = {"short": "20 OK", "alpha": "abc OK", "bytes": b"200 OK",
              "crlf": "200 OK\r\nX-Injected: 1"}
BAD_HEADER = {"value-crlf": ("X-Bad", "a\r\nX-Injected: 1"),
              "name-newline": ("X-Bad\nX-Injected", "1"),
              "name-colon": ("X-Injected: 1\r\nX-Bad", "v"),
              "value-int": ("X-Bad", 5)}


@unvalidated
def bad_status(environ, start_response):
    start_response(BAD_STATUS[_qs(environ)["kind"]], list(TEXT))
    return [b"should-not-appear"]


@unvalidated
def bad_header(environ, start_response):
    start_response("200 OK", TEXT + [BAD_HEADER[_qs(environ)["kind"]]])
    return [b"should-not-appear"]


# start_response called with keywords, or wrongly (each a TypeError, so a 500).
SR_CALLS = {
    "keywords": lambda sr: sr(status="200 OK", response_headers=list(TEXT)),
    "mixed": lambda sr: sr("200 OK", response_headers=list(TEXT), exc_info=None),
    "too-many": lambda sr: sr("200 OK", list(TEXT), None, None),
    "missing": lambda sr: sr("200 OK"),
    "unknown-keyword": lambda sr: sr("200 OK", list(TEXT), colour="red"),
    "twice": lambda sr: sr("200 OK", list(TEXT), status="200 OK"),
}


@unvalidated
def sr_call_styles(environ, start_response):
    SR_CALLS[_qs(environ)["kind"]](start_response)
    return [b"called"]


@validated
def exc_before(environ, start_response):
    start_response("200 OK", TEXT + [("X-Stage", "first")])
    try:
        raise RuntimeError("replaced-before-send")
    except RuntimeError:
        start_response("503 Service Unavailable", TEXT + [("X-Stage", "error")],
                       sys.exc_info())
    return [b"custom error page"]


@validated
def exc_after_write(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"partial-body\n")
    try:
        raise RuntimeError("exc-after-headers")
    except RuntimeError:
        start_response("500 Internal Server Error", TEXT, sys.exc_info())
        environ["wsgi.errors"].write("EXC-NOT-RERAISED\n")
    return [b"should-not-appear"]


@validated
def exc_after_yield(environ, start_response):
    start_response("200 OK", TEXT)
    errors = environ["wsgi.errors"]

    def gen():
        yield b"partial-body\n"
        try:
            raise RuntimeError("exc-after-headers")
        except RuntimeError:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
            errors.write("EXC-NOT-RERAISED\n")
        yield b"should-not-appear"
    return gen()


# --- response bodies -------------------------------------------------------------

@validated
def write_app(environ, start_response):
    write = start_response("200 OK", TEXT)
    for i in range(int(_qs(environ).get("n", "5"))):
        write(b"chunk-%d\n" % i)
    return [b"tail\n"]


@unvalidated  # the validator's IteratorWrapper would hide that this is a 1-item list
def single(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"hello, single chunk"]


class Body:
    """Response iterable that counts close() calls per tag."""

    def __init__(self, tag, gen):
        self.tag, self.gen = tag, gen

    def __iter__(self):
        return self.gen

    def close(self):
        _bump(CLOSED, self.tag)
        self.gen.close()


def _parts(mode):
    if mode == "normal":
        for i in range(5):
            yield b"part-%d\n" % i
    elif mode == "error":
        yield b"part-0\n"
        raise RuntimeError("gen-boom")
    elif mode == "slow":  # ~6 MB/s for at most 90 s: the client hangs up first
        block = b"x" * 65536
        end = time.monotonic() + 90
        while time.monotonic() < end:
            yield block
            time.sleep(0.01)


@validated
def gen_app(environ, start_response):
    q = _qs(environ)
    start_response("200 OK", TEXT)
    return Body(q["tag"], _parts(q.get("mode", "normal")))


def _file_app(environ, start_response):
    q = _qs(environ)
    f = open(q["path"], "rb")
    f.seek(int(q.get("offset", "0")))
    FILES[q.get("tag", "")] = f
    size = os.fstat(f.fileno()).st_size - f.tell()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](f, 8192)


file_app = validated(_file_app)
file_app_raw = unvalidated(_file_app)  # lets the server see its own wrapper type


class ReadOnly:
    """File-like with nothing but read() and close()."""

    def __init__(self, data):
        self.buf, self.closed = io.BytesIO(data), False

    def read(self, n=-1):
        return self.buf.read(n)

    def close(self):
        self.closed = True


def pattern(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def _filelike_app(environ, start_response):
    q = _qs(environ)
    data = pattern(int(q.get("size", "100000")))
    f = io.BytesIO(data) if q.get("kind") == "bytesio" else ReadOnly(data)
    FILES[q.get("tag", "")] = f
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](f, 4096)


filelike_app = validated(_filelike_app)
filelike_app_raw = unvalidated(_filelike_app)


@validated
def raise_app(environ, start_response):
    raise RuntimeError("boom-%s" % _qs(environ).get("token", ""))


@unvalidated
def return_str(environ, start_response):
    start_response("200 OK", TEXT)
    return "a str is not a body"


@unvalidated
def return_str_list(environ, start_response):
    start_response("200 OK", TEXT)
    return ["a str ", "is not bytes"]


# --- request bodies --------------------------------------------------------------

@validated
def echo(environ, start_response):
    """Read the body as ?mode= says; answer its length, sha256 and pieces."""
    q = _qs(environ)
    _bump(CALLS, q.get("tag", ""))
    inp, raw = environ["wsgi.input"], environ["pep3333.raw_input"]
    mode, n = q.get("mode", "read"), int(q.get("n", "7"))
    if mode == "read":
        source = iter([raw.read()])
    elif mode == "iter":
        source = iter(raw)
    elif mode == "readlines":
        source = iter(inp.readlines())
    elif mode == "readn":
        source = iter(lambda: inp.read(n), b"")
    elif mode == "readline-n":
        source = iter(lambda: inp.readline(n), b"")
    else:
        source = iter(inp.readline, b"")
    # Hash as we go and keep pieces only while small: a 50 MiB upload must
    # not be held in memory by the app either.
    h, total, pieces, too_long = hashlib.sha256(), 0, [], 0
    for p in source:
        h.update(p)
        total += len(p)
        too_long += mode in ("readn", "readline-n") and len(p) > n
        if pieces is not None and total <= 65536:
            pieces.append(p)
        else:
            pieces = None
    return _json(start_response, {
        "len": total,
        "sha256": h.hexdigest(),
        "body": None if pieces is None else b"".join(pieces).decode("latin-1"),
        "pieces": None if pieces is None else [p.decode("latin-1") for p in pieces],
        "too_long": too_long,
        "CONTENT_LENGTH": environ.get("CONTENT_LENGTH"),
    })


def _pieces(inp, mode):
    """What one reader takes: read(N) for "read-N", iteration, readlines(8192)
    or readline() — the server's own methods, no validator in between."""
    if mode.startswith("read-"):
        return iter(lambda: inp.read(int(mode[5:])), b"")
    if mode == "iter":
        return inp
    if mode == "readlines":
        return (ln for lines in iter(lambda: inp.readlines(8192), []) for ln in lines)
    return iter(inp.readline, b"")


def _read_in(inp, mode, chunks, errors, start):
    start.wait()
    try:
        for piece in _pieces(inp, mode):
            if not piece:
                errors.append("%s: an empty piece before the end" % mode)
            chunks.append(piece)
    except Exception as e:
        errors.append("%s: %r" % (mode, e))


@validated
def readers(environ, start_response):
    """Threads reading one wsgi.input at once (?modes=read-4096,readline,iter,...).
    The body is 64-byte records, each starting with its offset in 15 digits:
    reads of multiples of 64 and readlines start on a record, so the pieces,
    sorted by it, join into the body when each byte was read exactly once."""
    inp = environ["pep3333.raw_input"]
    modes = _qs(environ)["modes"].split(",")
    chunks, errors, threads, start = [], [], [], threading.Barrier(len(modes))
    for mode in modes:
        threads.append(threading.Thread(target=_read_in,
                                        args=(inp, mode, chunks, errors, start)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    joined = b"".join(sorted(chunks, key=lambda c: c[:15]))
    return _json(start_response, {"errors": errors, "len": len(joined),
                                  "sha256": hashlib.sha256(joined).hexdigest()})


@validated
def cut_spool(environ, start_response):
    """Cut the body's spool file (found among the process's deleted files by
    its size) to half, then read it as ?mode= says: what did the read raise?"""
    inp, size = environ["pep3333.raw_input"], int(environ["CONTENT_LENGTH"])
    cut = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "(deleted)" in os.readlink("/proc/self/fd/" + fd) and \
                    os.fstat(int(fd)).st_size == size:
                os.ftruncate(int(fd), size // 2)
                cut += 1
        except OSError:  # the listing's own descriptor, gone
            pass
    got, raised = 0, None
    try:
        for piece in _pieces(inp, _qs(environ)["mode"]):
            got += len(piece)
    except OSError as e:
        raised = [e.errno, str(e)]
    return _json(start_response, {"cut": cut, "read": got, "raised": raised})


@validated
def ignore_body(environ, start_response):
    _bump(CALLS, _qs(environ).get("tag", ""))
    start_response("200 OK", TEXT)
    return [b"ignored"]


@unvalidated  # wsgiref.validate refuses what these send on purpose
def shaped(environ, start_response):
    """/shaped?status=304&body=gen|list|write|empty|trac&cl=N&conn=VALUE:
    a response the caller shapes (bodyless statuses, the app's own
    Content-Length and Connection headers)."""
    q = _qs(environ)
    status = {"304": "304 Not Modified", "204": "204 No Content"}.get(q.get("status"), "200 OK")
    headers = [("X-Shaped", "1")]
    if "cl" in q:
        headers.append(("Content-Length", q["cl"]))
    if "conn" in q:
        headers.append(("Connection", q["conn"]))
    write = start_response(status, headers)
    kind = q.get("body", "list")
    if kind == "trac" and environ["REQUEST_METHOD"] == "HEAD":
        return []  # as Trac: nothing written for a HEAD of a streamed page
    if kind in ("write", "trac"):
        write(b"abc")
        return []
    if kind == "gen":
        return (part for part in [b"ab", b"c"])
    return [] if kind == "empty" else [b"abc"]


# --- streamed bodies that end early: HEAD, a client that leaves ------------------

def _stream_events(q, state):
    """Yield ?n= events (0: endless). With ?go=PATH, every event after the
    first waits for PATH to exist, and those made once it does are counted
    (state["after_go"]): the test creates it after its client has left."""
    n, go, i = int(q.get("n", "0")), q.get("go"), 0
    while n == 0 or i < n:
        if go and i > 0:
            end = time.monotonic() + 30
            while not os.path.exists(go) and time.monotonic() < end:
                time.sleep(0.01)
            state["after_go"] += os.path.exists(go)
        i += 1
        state["events"] = i
        yield b"data: event %d\n\n" % i


def _stream_done(q, state):
    """The body's finally: its state, as JSON, in ?done=PATH."""
    if q.get("done"):
        with open(q["done"] + ".tmp", "w") as f:
            json.dump(state, f)
        os.rename(q["done"] + ".tmp", q["done"])


@validated
def stream(environ, start_response):
    """/stream?mode=gen|write&n=N&go=PATH&done=PATH&cl=N: server-sent events
    from a generator or from write() (which lets an OSError propagate, as an
    SSE app that does not catch it), without a Content-Length unless cl."""
    q = _qs(environ)
    headers = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
    if "cl" in q:
        headers.append(("Content-Length", q["cl"]))
    write = start_response("200 OK", headers)
    state = {"events": 0, "after_go": 0, "exc": None}
    if q.get("mode") == "write":
        try:
            for event in _stream_events(q, state):
                write(event)
        except BaseException as e:
            state["exc"] = repr(e)
            raise
        finally:
            _stream_done(q, state)
        return []

    def gen():
        try:
            yield from _stream_events(q, state)
        except BaseException as e:
            state["exc"] = repr(e)
            raise
        finally:
            _stream_done(q, state)
    return gen()


def bodyless_stream(environ, start_response):
    """/bodyless-stream?status=204|304&done=PATH: an endless body for an
    answer that has none (an app's mistake); its end goes in PATH."""
    q = _qs(environ)
    start_response({"204": "204 No Content", "304": "304 Not Modified"}[q["status"]], [])

    def gen():
        try:
            while True:
                yield b"never sent"
        finally:
            with open(q["done"], "w") as f:
                f.write("closed")
    return gen()


def thread_write(environ, start_response):
    """/thread-write?done=PATH: write() a start, then return [] while a
    thread of the app write()s 8 MiB (which waits for a client that does not
    read) and puts what its write() did in PATH."""
    q = _qs(environ)
    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
    write(b"start")

    def more():
        try:
            write(b"x" * (8 << 20))
            outcome = "wrote"
        except OSError as e:
            outcome = "OSError: %s" % e
        with open(q["done"] + ".tmp", "w") as f:
            f.write(outcome)
        os.rename(q["done"] + ".tmp", q["done"])
    threading.Thread(target=more).start()
    return []


ROUTES = {
    "shaped": shaped, "thread-write": thread_write, "bodyless-stream": bodyless_stream,
    "log": log_app, "closed-count": closed_count, "calls": calls_count,
    "file-closed": file_closed, "failures": failures,
    "bad-status": bad_status, "bad-header": bad_header, "sr-call": sr_call_styles,
    "exc-before": exc_before, "exc-after-write": exc_after_write,
    "exc-after-yield": exc_after_yield,
    "write": write_app, "single": single, "gen": gen_app,
    "file": file_app, "file-raw": file_app_raw,
    "filelike": filelike_app, "filelike-raw": filelike_app_raw,
    "raise": raise_app, "return-str": return_str, "return-str-list": return_str_list,
    "echo": echo, "readers": readers, "cut-spool": cut_spool,
    "ignore-body": ignore_body, "stream": stream,
}


def app(environ, start_response):
    first = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0]
    return ROUTES.get(first, environ_app)(environ, start_response)
