"""A page written through write(), as Trac writes its pages, for
tests/integration/test_spill.py: /write?mb=N writes N MiB in 64 KiB chunks,
each chunk its index repeated, so a reader can tell a complete and ordered
body from a cut or shuffled one. What write() raised goes to wsgi.errors.
/inline answers fast (so it runs inline) unless sent X-Big. /mixed?mb=N&tail=K
writes N MiB and then returns K more chunks as a list; /big?mb=N&count=C
writes one N MiB bytes object C times; /two?mb=N has two threads write N MiB
each at the same time."""
import threading

CHUNK = 65536
lock = threading.Lock()
progress = {}  # QUERY_STRING -> bytes written so far


def chunk(i):
    return (b"%08d" % i) * (CHUNK // 8)


def stream(k, size):
    """Writer k's bytes of /two: 0-126 (k = 0) or 128-254 (k = 1), counting
    up, so that each writer's share of a body can be picked out and checked."""
    b = bytes(i % 127 + 128 * k for i in range(size + 127))
    return b[:size]


def write_stream(write, k, mb, size):
    whole = stream(k, mb * 1024 * 1024 + size)
    for at in range(0, mb * 1024 * 1024, size):
        write(whole[at:at + size])


def app(environ, start_response):
    if environ["PATH_INFO"] == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]
    if environ["PATH_INFO"] == "/progress":
        start_response("200 OK", [("Content-Type", "text/plain")])
        with lock:
            return [b"%d" % progress.get(environ["QUERY_STRING"], -1)]
    if environ["PATH_INFO"] == "/inline":  # fast, until asked for 2 MiB (X-Big): inline then
        n = 32 if environ.get("HTTP_X_BIG") else 0  # sized: a stream without one never is
        write = start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                          ("Content-Length", str(n * CHUNK + 3))])
        for i in range(n):
            write(chunk(i))
        write(b"end")
        return []
    query = environ["QUERY_STRING"]
    args = dict(p.split("=") for p in query.split("&"))
    mb = int(args["mb"])
    if environ["PATH_INFO"] == "/two":  # two threads write() at once
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        sizes = {0: 1024 * 1024, 1: 4096}
        threads = [threading.Thread(target=write_stream, args=(write, k, mb, sizes[k]))
                   for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        environ["wsgi.errors"].write("wrote all of %s\n" % query)
        return []
    if environ["PATH_INFO"] == "/big":
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        data = b"x" * (mb * 1024 * 1024)
        for _ in range(int(args["count"])):
            write(data)
        environ["wsgi.errors"].write("wrote all of %s\n" % query)
        return []
    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for i in range(mb * 1024 * 1024 // CHUNK):
        try:
            write(chunk(i))
        except BaseException as e:  # OSError, or tracfront.RequestTimeout
            environ["wsgi.errors"].write("write() of chunk %d raised %r\n" % (i, e))
            raise
        with lock:
            progress[query] = (i + 1) * CHUNK
    environ["wsgi.errors"].write("wrote all of %s\n" % query)
    if environ["PATH_INFO"] == "/mixed":  # the rest of the body as an iterable
        n = mb * 1024 * 1024 // CHUNK
        return [chunk(i) for i in range(n, n + int(args["tail"]))]
    return []
