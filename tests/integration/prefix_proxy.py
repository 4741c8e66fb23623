"""A reverse proxy that strips a path prefix, for the tests of pages served
behind one: what nginx's `location /tools/ { proxy_pass http://127.0.0.1:PORT/; }`,
Apache's `ProxyPass /tools/ http://127.0.0.1:PORT/` or IIS ARR with a rewrite
do. `/tools/X` is forwarded to the backend's `/X` (the raw target, query
included); anything else is answered 404 by the proxy itself, so a link that
leaves the prefix is seen at once. It sets Host to the backend's, as nginx's
proxy_pass does by default, and passes the client's in X-Forwarded-Host (with
X-Forwarded-For and X-Forwarded-Proto), as a site's nginx configuration
usually adds (nginx sends none of them by default), and maps a Location that names the backend's own
origin back under the prefix (`proxy_redirect default`); a path-absolute
Location passes unchanged, as with nginx, Apache and ARR.

Python's standard library only; serves on 127.0.0.1, port 0, on threads of
the test's process (stop() ends them).
"""
import http.client
import http.server
import threading

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "host", "content-length"}


class PrefixProxy:
    def __init__(self, backend_port, prefix="/tools/"):
        assert prefix.startswith("/") and prefix.endswith("/")
        self.prefix, self.backend_port = prefix, backend_port
        self.seen = []  # (method, target) of every request, in order: what the proxy was asked
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                proxy.seen.append((self.command, self.path))
                if not self.path.startswith(proxy.prefix):
                    body = b"not under the proxy's prefix\n"
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body if self.command != "HEAD" else b"")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Host"] = "127.0.0.1:%d" % proxy.backend_port
                headers["X-Forwarded-Host"] = self.headers.get("Host", "")
                headers["X-Forwarded-For"] = self.client_address[0]
                headers["X-Forwarded-Proto"] = "http"
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection("127.0.0.1", proxy.backend_port, timeout=60)
                try:
                    conn.request(self.command, "/" + self.path[len(proxy.prefix):], body, headers)
                    r = conn.getresponse()
                    data = r.read()
                    self.send_response(r.status, r.reason)
                    own = "http://127.0.0.1:%d/" % proxy.backend_port
                    for k, v in r.getheaders():
                        if k.lower() in HOP_BY_HOP:
                            continue
                        if k.lower() == "location" and v.startswith(own):
                            v = proxy.prefix + v[len(own):]
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = do_HEAD = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.origin = "http://127.0.0.1:%d" % self.port
        self.url = self.origin + prefix
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
