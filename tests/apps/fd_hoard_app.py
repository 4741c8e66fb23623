"""An app that takes its process's file descriptors and gives them back, for
the tests of a server out of descriptors (tests/integration/test_limits.py).

GET /hoard?leave=N  open /dev/null until the process may open no more
                    (EMFILE), then close N of those again; answers how many
                    it holds.
GET /release        close them all.
Anything else       "ok".
"""
import os
from urllib.parse import parse_qs

held = []


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hoard":
        leave = int(parse_qs(environ["QUERY_STRING"]).get("leave", ["0"])[0])
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        for _ in range(min(leave, len(held))):
            os.close(held.pop())
        body = b"%d\n" % len(held)
    elif path == "/release":
        while held:
            os.close(held.pop())
        body = b"released\n"
    else:
        body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
