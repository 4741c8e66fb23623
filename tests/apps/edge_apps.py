"""Apps that behave badly or unusually at the edges of PEP 3333, for
tests/integration/test_edges.py: each path is one case."""
import subprocess
import sys
import time


def bogus_exc_info(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"started"
    # Not inside an except block: sys.exc_info() is (None, None, None).
    start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
    yield b"never"


def abort_midstream(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(20):
        time.sleep(0.0005)  # let the reader drain and wait between chunks
        yield b"chunk %d\n" % i
    raise RuntimeError("abort-midstream")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]
    if path == "/empty-header":  # a header with an empty value is still a header
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Empty", "")])
        return [b"ok"]
    if path == "/head-declared":
        # Trac's send_file for HEAD: the real length declared, an empty body.
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", "12345")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"x" * 12345]
    if path == "/big-write":
        # A large page through write(), as Trac writes: must not need the
        # client to keep up.
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        chunk = b"w" * 65536
        for _ in range(512):  # 32 MiB: far more than the kernel's socket buffers
            write(chunk)
        return []
    if path == "/abort-midstream":
        return abort_midstream(start_response)
    if path == "/bogus-exc-info":
        return bogus_exc_info(start_response)
    if path == "/mutate-headers":
        headers = [("Content-Type", "text/plain"), ("X-Kept", "yes")]
        start_response("200 OK", headers)
        headers.append(("X-Broken",))       # a 1-tuple: must not be read as a header
        headers.append(["X-List", "no"])
        headers[0] = 42
        return iter([b"mutated"])
    if path == "/short-body":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return iter([b"only ", b"ten b"])
    if path == "/child-sigmask":
        out = subprocess.run(["grep", "^SigBlk", "/proc/self/status"],
                             capture_output=True, check=True).stdout
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [out]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]
