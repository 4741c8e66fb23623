"""WSGI app for tests/integration/test_auth.py: answers with what the server
put in the environ about the user and the Trac projects (trac.env_path,
trac.env_parent_dir), as JSON, on every path (so a login path and any other
path look alike to the app)."""
import json


def application(environ, start_response):
    answer = {
        "path": environ.get("PATH_INFO"),
        "script_name": environ.get("SCRIPT_NAME"),
        "remote_user": environ.get("REMOTE_USER"),
        "auth_type": environ.get("AUTH_TYPE"),
        "http_remote_user": environ.get("HTTP_REMOTE_USER"),
        "has_authorization": "HTTP_AUTHORIZATION" in environ,
        "env_path": environ.get("trac.env_path"),
        "env_parent_dir": environ.get("trac.env_parent_dir"),
    }
    if "kept" in environ:  # test_lifecycle: an --env entry of the --config file
        answer["kept"] = environ["kept"]
    body = json.dumps(answer).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
