"""The app for test_error_log.py, served as `log_lines_app:app`.

/line?n=N&tag=T  writes one line to wsgi.errors: "<T:", N bytes of T's first
                 letter, ":T>" and a newline, so a reader can tell a whole
                 line from a cut or mixed one
/raise           raises RuntimeError (a 500 and a traceback)
/sleep?s=S       sleeps S seconds in 0.05 s slices (a stuck request under
                 --request-timeout)
"""
import time
from urllib.parse import parse_qsl


def line(tag, n):
    return "<%s:%s:%s>\n" % (tag, tag[0] * n, tag)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/line":
        environ["wsgi.errors"].write(line(qs["tag"], int(qs["n"])))
    elif path == "/raise":
        raise RuntimeError("log_lines_app raised on purpose")
    elif path == "/sleep":
        deadline = time.monotonic() + float(qs["s"])
        while time.monotonic() < deadline:
            time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
