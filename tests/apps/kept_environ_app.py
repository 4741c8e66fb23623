"""For tests/integration/test_kept_environ.py: an app that leaves every
request's environ in a reference cycle, as Trac does (its Request holds
environ, which holds the Request back), with Python's cyclic collector off,
so only reference counting frees anything: what a request's wsgi.input
stands for must be let go by tracfront when the request ends.
/write?mb=N writes N MiB through write() (spilled for a client that reads
slowly); /upload?read=K reads K bytes of the body (all without read=) and
answers how many it read; /late reads the rest of the last /upload's
wsgi.input, long after that request ended, and answers what it got or
raised; /race answers at once and leaves a thread reading its body 4 KiB at
a time, whose outcome /raced answers ("running" until it has one).
Reads PEP 3333 allows after the call has returned, each answering the
body's length and sha256: /gen's generator reads the body as it yields,
/close's iterable reads it in close() (/closed answers what that got), /fw
sends wsgi.file_wrapper(wsgi.input) back."""
import gc
import hashlib
import threading

gc.disable()

CHUNK = 65536
last_upload = {}
race = {}
closed = {}


class Request:
    """Trac's shape: req.environ, and environ["trac.request"] back to req."""
    def __init__(self, environ):
        self.environ = environ
        environ["kept.request"] = self


def read_on(wsgi_input):
    got = 0
    try:
        while True:
            data = wsgi_input.read(4096)
            if not data:
                break
            got += len(data)
        race["outcome"] = "read %d bytes" % got
    except Exception as e:
        race["outcome"] = "read %d bytes, then %r" % (got, e)


def digest(n, h):
    return b"%d %s" % (n, h.hexdigest().encode())


def read_while_yielding(wsgi_input):
    h, n = hashlib.sha256(), 0
    while True:
        data = wsgi_input.read(CHUNK)
        if not data:
            break
        h.update(data)
        n += len(data)
        yield b"."  # the rest is read when tracfront asks for the next item
    yield b"\n" + digest(n, h)


class ReadInClose:
    """Yields one piece of the body; close() reads the rest."""
    def __init__(self, wsgi_input):
        self.input = wsgi_input
        self.h, self.n = hashlib.sha256(), 0
        closed.clear()

    def __iter__(self):
        data = self.input.read(CHUNK)
        self.h.update(data)
        self.n += len(data)
        yield b"%d" % len(data)

    def close(self):
        try:
            data = self.input.read()
            self.h.update(data)
            closed["outcome"] = digest(self.n + len(data), self.h)
        except Exception as e:
            closed["outcome"] = repr(e).encode()


def app(environ, start_response):
    Request(environ)  # garbage from now on, that only a collection frees
    path = environ["PATH_INFO"]
    if path == "/write":
        mb = int(environ["QUERY_STRING"].split("=")[1])
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        for _ in range(mb * 1024 * 1024 // CHUNK):
            write(b"x" * CHUNK)  # OSError once the client has left: the call ends
        environ["wsgi.errors"].write("wrote all of %s\n" % environ["QUERY_STRING"])
        return []
    if path == "/upload":
        query = environ["QUERY_STRING"]
        data = environ["wsgi.input"].read(int(query.split("=")[1]) if query else -1)
        last_upload["input"] = environ["wsgi.input"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % len(data)]
    if path == "/race":
        threading.Thread(target=read_on, args=(environ["wsgi.input"],)).start()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"started"]
    if path == "/raced":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [race.get("outcome", "running").encode()]
    if path in ("/gen", "/close", "/fw"):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        if path == "/gen":
            return read_while_yielding(environ["wsgi.input"])
        if path == "/close":
            return ReadInClose(environ["wsgi.input"])
        return environ["wsgi.file_wrapper"](environ["wsgi.input"])
    if path == "/closed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [closed.get("outcome", b"running")]
    if path == "/late":
        try:
            answer = "read %d bytes" % len(last_upload["input"].read())
        except Exception as e:
            answer = repr(e)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [answer.encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such page"]
