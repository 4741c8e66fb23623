"""A file that shrinks while tracfront sends it: what the client sees.

Used by the static-file and wsgi.file_wrapper tests. The client reads slowly
(a small receive buffer) so that most of the file is still unsent when it is
truncated; nginx then closes the connection and logs the truncation, and so
must tracfront, long before --idle-timeout."""
import os
import socket
import time

BIG = 16 << 20   # the file's length when the answer starts
KEEP = 1 << 20   # its length after the truncation


def write_big_file(path):
    with open(path, "wb") as f:
        f.write(os.urandom(BIG))


def download_while_truncating(srv, target, path, wait=10.0):
    """GET target, truncate path to KEEP bytes once the body has started,
    read on. Returns (body bytes received, True if the server closed the
    connection within `wait` seconds)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.settimeout(wait)
    s.connect(("127.0.0.1", srv.port))
    try:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"content-length: %d" % BIG in head.lower(), head
        time.sleep(0.3)  # the server is now blocked on the full socket
        os.truncate(path, KEEP)
        received = len(body)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return received, False
            if not chunk:
                return received, True
            received += len(chunk)
        return received, False
    finally:
        s.close()
