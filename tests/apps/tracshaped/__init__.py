"""A WSGI app shaped like Trac, for tests/integration/test_tracshaped.py.

Like Trac it renders Jinja2 templates and sends pages through the write()
callable returned by start_response, in several chunks and without
Content-Length; it keeps data in sqlite with one connection per request, serves
static files through wsgi.file_wrapper, and decodes non-ASCII PATH_INFO the way
Trac does (latin-1 bytes of the UTF-8 path).
"""
import atexit
import json
import mimetypes
import os
import sqlite3
import tempfile
import threading
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import parse_qs, quote

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = os.path.join(HERE, "static")
CHUNK = 1024  # write() granularity: pages arrive in several pieces

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
    autoescape=True)
_lock = threading.Lock()
_ready = set()
_default_db = None


class HTTPError(Exception):
    def __init__(self, status, message):
        Exception.__init__(self, message)
        self.status = status
        self.message = message


def _db_path(environ):
    global _default_db
    path = environ.get("tracshaped.db")
    with _lock:
        if not path:
            if _default_db is None:
                fd, _default_db = tempfile.mkstemp(prefix="tracshaped-", suffix=".db")
                os.close(fd)
                atexit.register(os.unlink, _default_db)
            path = _default_db
        if path not in _ready:
            cnx = sqlite3.connect(path)
            cnx.execute("CREATE TABLE IF NOT EXISTS ticket (id INTEGER PRIMARY KEY, "
                        "summary TEXT NOT NULL, description TEXT NOT NULL)")
            cnx.commit()
            cnx.close()
            _ready.add(path)
    return path


def _base_url(environ):
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or "%s:%s" % (environ["SERVER_NAME"],
                                                  environ["SERVER_PORT"])
    return "%s://%s%s" % (scheme, host, quote(environ.get("SCRIPT_NAME", "")))


def _path_info(environ):
    # Trac: PATH_INFO is the UTF-8 path decoded as latin-1 (PEP 3333).
    raw = environ.get("PATH_INFO", "")
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise HTTPError("404 Not Found", "Invalid URL encoding (was %r)" % raw)


def _read_form(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}


def _render(environ, start_response, template, status="200 OK", **data):
    """Render a template and push it through write() in CHUNK-sized pieces."""
    data.setdefault("href", quote(environ.get("SCRIPT_NAME", "")))
    write = start_response(status, [("Content-Type", "text/html;charset=utf-8"),
                                     ("Cache-Control", "no-cache")])
    buf = []
    size = 0
    for piece in _templates.get_template(template).generate(**data):
        buf.append(piece.encode("utf-8"))
        size += len(buf[-1])
        if size >= CHUNK:
            write(b"".join(buf))
            buf, size = [], 0
    if buf:
        write(b"".join(buf))
    return []


def _send_file(environ, start_response, name):
    path = os.path.realpath(os.path.join(STATIC, name))
    if not path.startswith(STATIC + os.sep) or not os.path.isfile(path):
        raise HTTPError("404 Not Found", "No such file: %s" % name)
    st = os.stat(path)
    mtime = int(st.st_mtime)
    ims = environ.get("HTTP_IF_MODIFIED_SINCE")
    if ims:
        try:
            if int(parsedate_to_datetime(ims).timestamp()) >= mtime:
                start_response("304 Not Modified", [])
                return []
        except (TypeError, ValueError):
            pass
    ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
    start_response("200 OK", [("Content-Type", ctype),
                              ("Content-Length", str(st.st_size)),
                              ("Last-Modified", formatdate(mtime, usegmt=True))])
    f = open(path, "rb")
    return environ["wsgi.file_wrapper"](f, 4096)


def _dispatch(environ, start_response, cnx):
    method = environ["REQUEST_METHOD"]
    path = _path_info(environ)
    if path in ("", "/"):
        count = cnx.execute("SELECT COUNT(*) FROM ticket").fetchone()[0]
        rows = ["Row %d of the report" % i for i in range(200)]
        return _render(environ, start_response, "index.html", count=count, rows=rows)
    if path.startswith("/ticket/"):
        try:
            tid = int(path[len("/ticket/"):])
        except ValueError:
            raise HTTPError("400 Bad Request", "Ticket id must be a number")
        row = cnx.execute("SELECT id, summary, description FROM ticket WHERE id=?",
                          (tid,)).fetchone()
        if row is None:
            raise HTTPError("404 Not Found", "Ticket %d does not exist." % tid)
        return _render(environ, start_response, "ticket.html",
                       id=row[0], summary=row[1], description=row[2])
    if path == "/newticket":
        if method != "POST":
            return _render(environ, start_response, "newticket.html")
        form = _read_form(environ)
        if not form.get("summary"):
            raise HTTPError("400 Bad Request", "Tickets must have a summary.")
        cur = cnx.execute("INSERT INTO ticket (summary, description) VALUES (?, ?)",
                          (form["summary"], form.get("description", "")))
        cnx.commit()
        write = start_response("303 See Other", [
            ("Location", "%s/ticket/%d" % (_base_url(environ), cur.lastrowid)),
            ("Content-Type", "text/plain"), ("Content-Length", "0")])
        write(b"")
        return []
    if path.startswith("/chrome/"):
        return _send_file(environ, start_response, path[len("/chrome/"):])
    if path.startswith("/wiki/"):
        name = path[len("/wiki/"):]
        return _render(environ, start_response, "wiki.html", name=name,
                       words=["%s paragraph %d" % (name, i) for i in range(100)])
    if path == "/environ":
        keys = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "wsgi.multithread",
                "wsgi.multiprocess", "wsgi.run_once", "wsgi.url_scheme")
        body = json.dumps({k: environ.get(k) for k in keys}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    raise HTTPError("404 Not Found", "No handler matched request to %s" % path)


def application(environ, start_response):
    cnx = sqlite3.connect(_db_path(environ), timeout=30)
    try:
        return _dispatch(environ, start_response, cnx)
    except HTTPError as e:
        return _render(environ, start_response, "error.html", status=e.status,
                       title=e.status, message=e.message)
    finally:
        cnx.close()

