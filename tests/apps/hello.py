"""Hello-world WSGI app used by scripts/bench-hello for every WSGI server.

Answers every request with the same 14-byte text/plain body and an explicit
Content-Length, so keep-alive works on all servers and they all do equal work.
"""

BODY = b"Hello, World!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [BODY]
