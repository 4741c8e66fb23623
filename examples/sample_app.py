"""The sample app `scripts/demo` serves when Trac is not importable: a page
that shows the request as the app saw it, a form that posts back, and a
streamed page written through start_response's write(), as Trac writes."""
import html
import time


def page(title, body):
    return ("<!doctype html><meta charset=utf-8><title>%s</title>"
            "<h1>%s</h1>%s<p><a href='/'>home</a> · <a href='/stream'>streamed page</a>"
            % (title, title, body)).encode("utf-8")


def application(environ, start_response):
    path = environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace")
    if path == "/stream":
        write = start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        write(page("Streamed", "<p>Each line below was written separately:</p>"))
        for i in range(5):
            write(("<p>chunk %d at %.3f</p>" % (i, time.time())).encode())
        return []
    said = ""
    if environ["REQUEST_METHOD"] == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        said = "<p>You posted: <code>%s</code></p>" % html.escape(
            environ["wsgi.input"].read(size).decode("utf-8", "replace"))
    rows = "".join("<tr><td>%s<td>%s" % (html.escape(k), html.escape(str(v)))
                   for k, v in sorted(environ.items()))
    body = page("tracfront sample app",
                "<p>Path: <code>%s</code></p>%s"
                "<form method=post><input name=text><button>Post</button></form>"
                "<table>%s</table>" % (html.escape(path), said, rows))
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
