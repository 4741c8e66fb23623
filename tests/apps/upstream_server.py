"""A small threaded HTTP/1.1 upstream for the proxy tests (stdlib only, raw sockets).

Run: /usr/bin/python3 tests/apps/upstream_server.py [--port 0]; it prints
`upstream listening on http://127.0.0.1:PORT/` and serves (keep-alive) until SIGTERM.
Endpoints: /echo* (JSON of what it received), /bytes?n=&chunk=&delay=&chunked=1&gzip=1
(bytes i % 251), /slow?delay=, /die?n=&sent=&delay= (short body, then close),
/status/CODE?location=, /headers?set=Name:Value, /big-head?n= (one header of n bytes),
/raw?b64= (raw response, then close),
/drop-idle (closes the other idle connections), /swallow (reads, closes, no answer),
/__stats and /__reset. /slow and /bytes?delay= stop waiting at once when the proxy closes
the connection, counted per path in stats["gone"]. A leading "/legacy" is ignored for dispatch (path-mapping tests).
"""
import argparse
import base64
import gzip
import hashlib
import http
import json
import os
import select
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

PATTERN = bytes(range(251))
lock = threading.Lock()
stats = {}
conns = {}  # conn number -> Conn
conn_counter = [0]


def reset():
    with lock:
        stats.clear()
        stats.update(connections=0, open=len(conns), requests=0, by_path={}, methods={}, gone={})


reset()


def pattern(offset, length):
    rep = PATTERN * (length // 251 + 2)
    o = offset % 251
    return rep[o:o + length]


class Close(Exception):
    """Close the connection without (further) response."""


class Conn:
    def __init__(self, sock, number):
        self.sock = sock
        self.number = number
        self.idle = True
        self.rfile = sock.makefile("rb")

    def readline(self):
        line = self.rfile.readline(65537)
        if not line:
            raise Close()
        return line

    def read_exact(self, n):
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise Close()
        return data

    def body_chunks(self, headers):
        """Yield the request body in pieces (Content-Length or chunked)."""
        te = [v.lower() for k, v in headers if k.lower() == "transfer-encoding"]
        if te and "chunked" in te[-1]:
            while True:
                size = int(self.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.readline() not in (b"\r\n", b"\n"):
                        pass
                    return
                while size:
                    piece = self.read_exact(min(size, 65536))
                    size -= len(piece)
                    yield piece
                self.readline()
        else:
            cl = [v for k, v in headers if k.lower() == "content-length"]
            n = int(cl[0]) if cl else 0
            while n:
                piece = self.read_exact(min(n, 65536))
                n -= len(piece)
                yield piece

    def send(self, data):
        self.sock.sendall(data)


def wait_watching(c, seconds, path):
    """Sleep for seconds, or until the proxy closes the connection (then it is
    counted in stats["gone"] and the request ends). Bytes it sends (a
    pipelined request) are left for later: only a close ends the wait."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([c.sock], [], [], left)[0]:
            continue
        try:
            closed = c.sock.recv(1, socket.MSG_PEEK) == b""
        except ConnectionResetError:
            closed = True
        if closed:
            with lock:
                stats["gone"][path] = stats["gone"].get(path, 0) + 1
            raise Close()
        time.sleep(min(left, 0.05))


def head_bytes(status, headers):
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = ["HTTP/1.1 %d %s" % (status, reason)] + ["%s: %s" % hv for hv in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def respond(c, req, status, body=b"", headers=(), ctype="text/plain", length=True):
    hdrs = [("Content-Type", ctype)] if ctype else []
    hdrs += list(headers)
    if length:
        hdrs.append(("Content-Length", str(len(body))))
    c.send(head_bytes(status, hdrs) + (b"" if req["method"] == "HEAD" else body))


def handle_request(c, req):
    method, target, path = req["method"], req["target"], req["path"]
    query = urllib.parse.parse_qs(target.partition("?")[2], keep_blank_values=True)
    q = lambda k, d=None: query.get(k, [d])[0]
    disp = path[len("/legacy"):] if path.startswith("/legacy/") else path
    headers = req["headers"]

    if disp.startswith("/echo"):
        h = hashlib.sha256()
        n = 0
        for piece in c.body_chunks(headers):
            h.update(piece)
            n += len(piece)
        body = json.dumps({
            "method": method, "target": target, "version": req["version"],
            "headers": [[k, v] for k, v in headers], "body_len": n,
            "body_sha256": h.hexdigest(), "conn": c.number, "conn_requests": req["index"],
        }).encode()
        return respond(c, req, 200, body, ctype="application/json")

    for _ in c.body_chunks(headers):  # every other endpoint discards the body
        pass
    if disp == "/swallow":
        raise Close()
    if disp == "/bytes":
        n, chunk = int(q("n", "0")), int(q("chunk", "65536"))
        delay, chunked = float(q("delay", "0")), q("chunked") == "1"
        hdrs = [("Content-Type", "application/octet-stream")]
        if q("gzip") == "1":
            data = gzip.compress(pattern(0, n), mtime=0)
            src = lambda off, ln: data[off:off + ln]
            total = len(data)
            hdrs.append(("Content-Encoding", "gzip"))
        else:
            src, total = pattern, n
        hdrs.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(total)))
        c.send(head_bytes(200, hdrs))
        if method == "HEAD":
            return
        off = 0
        while off < total:
            if off and delay:
                wait_watching(c, delay, path)
            piece = src(off, min(chunk, total - off))
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            off += len(piece)
        if chunked:
            c.send(b"0\r\n\r\n")
        return
    if disp == "/slow":
        wait_watching(c, float(q("delay", "1")), path)
        return respond(c, req, 200, b"slow\n")
    if disp == "/die":
        n, sent = int(q("n", "1000")), int(q("sent", "10"))
        c.send(head_bytes(200, [("Content-Type", "application/octet-stream"),
                                ("Content-Length", str(n))]) + pattern(0, sent))
        time.sleep(float(q("delay", "0")))
        raise Close()
    if disp.startswith("/status/"):
        code = int(disp[len("/status/"):])
        hdrs = [("Location", q("location"))] if q("location") is not None else []
        if code in (204, 304) or code < 200:
            return respond(c, req, code, headers=hdrs, ctype=None, length=False)
        return respond(c, req, code, b"status %d\n" % code, headers=hdrs)
    if disp == "/big-head":  # one header of n bytes
        return respond(c, req, 200, b"big head\n", headers=[("X-Big", "h" * int(q("n", "0")))])
    if disp == "/headers":
        hdrs = [tuple(s.split(":", 1)) for s in query.get("set", []) if ":" in s]
        respond(c, req, 200, b"headers\n", headers=[(k, v.strip()) for k, v in hdrs])
        if any(k.lower() == "connection" and "close" in v.lower() for k, v in hdrs):
            raise Close()
        return
    if disp == "/raw":
        c.send(base64.b64decode(q("b64", "")))
        raise Close()
    if disp == "/drop-idle":
        with lock:
            victims = [o for o in conns.values() if o is not c and o.idle]
        for o in victims:  # closed before the answer: the asker's next request cannot race it
            try:
                o.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        respond(c, req, 200, b"dropped %d\n" % len(victims))
        return
    return respond(c, req, 404, b"not found\n")


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with lock:
            conn_counter[0] += 1
            c = Conn(sock, conn_counter[0])
            conns[c.number] = c
            stats["connections"] += 1
            stats["open"] += 1
        try:
            index = 0
            while True:
                c.idle = True
                line = c.readline()
                while line in (b"\r\n", b"\n"):
                    line = c.readline()
                c.idle = False
                parts = line.decode("latin-1").rstrip("\r\n").split(" ")
                if len(parts) != 3:
                    raise Close()
                method, target, version = parts
                headers = []
                while True:
                    h = c.readline().decode("latin-1").rstrip("\r\n")
                    if not h:
                        break
                    k, _, v = h.partition(":")
                    headers.append((k, v.strip()))
                path = target.partition("?")[0]
                if path in ("/__stats", "/__reset"):
                    if path == "/__reset":
                        reset()
                    with lock:
                        body = json.dumps(stats).encode()
                    respond(c, {"method": method}, 200, body, ctype="application/json")
                    continue
                index += 1
                with lock:
                    stats["requests"] += 1
                    stats["by_path"][path] = stats["by_path"].get(path, 0) + 1
                    stats["methods"].setdefault(path, []).append(method)
                if any(k.lower() == "expect" and v.lower() == "100-continue" for k, v in headers):
                    c.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                req = dict(method=method, target=target, version=version, path=path,
                           headers=headers, index=index)
                handle_request(c, req)
                conn_hdr = ",".join(v.lower() for k, v in headers if k.lower() == "connection")
                if "close" in conn_hdr or (version == "HTTP/1.0" and "keep-alive" not in conn_hdr):
                    break
        except (Close, OSError, ValueError):
            pass
        except Exception as e:  # never let a broken client kill the server
            print("upstream: %r" % e, file=sys.stderr)
        finally:
            with lock:
                conns.pop(c.number, None)
                stats["open"] -= 1
            try:
                sock.close()
            except OSError:
                pass


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    srv = Server(("127.0.0.1", args.port), Handler)
    print("upstream listening on http://127.0.0.1:%d/" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
