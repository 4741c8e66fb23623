"""WSGI app for the --user tests (test_user.py): every answer is the JSON of
who runs it: the process's pid, its real and effective uid and gid, and its
supplementary groups, as the app sees them through os."""
import json
import os


def app(environ, start_response):
    body = json.dumps({"pid": os.getpid(), "uid": os.getuid(), "euid": os.geteuid(),
                       "gid": os.getgid(), "egid": os.getegid(),
                       "groups": sorted(os.getgroups())}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
