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
a time, whose outcome /raced answers ("running" until it has one)."""
import gc
import threading

gc.disable()

CHUNK = 65536
last_upload = {}
race = {}


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
    if path == "/late":
        try:
            answer = "read %d bytes" % len(last_upload["input"].read())
        except Exception as e:
            answer = repr(e)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [answer.encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such page"]
