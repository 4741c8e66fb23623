"""--basic-auth / --digest-auth PROJECT,FILE,REALM, as tracd does them.

Credentials are asked for on the project's login path only; REMOTE_USER and
AUTH_TYPE reach the app only after the password was verified, never from a
header the client sends. Password files are made here with Apache's
htpasswd (-B, -m, -s, -d) and htdigest (driven through a pty, as it reads the
password from its terminal); tests/apps/auth_app.py shows what the app got.
"""
import hashlib
import json
import os
import pathlib
import pty
import re
import select
import shutil
import signal
import subprocess
import time

import pytest
import requests
from requests.auth import HTTPDigestAuth

from conftest import fake_trac
from workers_util import children, wait_for

if not shutil.which("htpasswd") or not shutil.which("htdigest"):
    pytest.skip("htpasswd/htdigest missing: install apache2-utils (scripts/setup does)",
                allow_module_level=True)

APP = ("--app", "auth_app:application")
REALM = "Test Realm"
DREALM = "Digest Realm"
# user: (htpasswd option, password)
FORMATS = {
    "bcrypt": ("-B", "b-cr ypt:pw"),
    "apr1": ("-m", "apr1-pw"),
    "sha": ("-s", "sha1-pw"),
    "des": ("-d", "despw"),
}


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def htpasswd(path, user, password, option="-m"):
    create = [] if pathlib.Path(path).exists() else ["-c"]
    subprocess.run(["htpasswd", "-b"] + create + [option, str(path), user, password],
                   check=True, capture_output=True, timeout=30)


def htdigest(path, realm, user, password):
    """Run htdigest on a pty (it asks for the password twice on its tty)."""
    args = ["htdigest"] + ([] if pathlib.Path(path).exists() else ["-c"]) + \
        [str(path), realm, user]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        try:
            os.execvp(args[0], args)
        finally:
            os._exit(127)
    out, answered, deadline = b"", 0, time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            while out.lower().count(b"password:") > answered:
                os.write(fd, password.encode() + b"\n")
                answered += 1
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and answered == 2, out


@pytest.fixture
def files(tmp_path):
    pw = tmp_path / "htpasswd"
    for user, (option, password) in FORMATS.items():
        htpasswd(pw, user, password, option)
    dg = tmp_path / "htdigest"
    # written by hand as htdigest does (USER:REALM:MD5(USER:REALM:PASSWORD)) ...
    dg.write_text("alice:%s:%s\nalice:Other:%s\n" % (
        DREALM, md5("alice:%s:wonderland" % DREALM), md5("alice:Other:x")))
    # ... and one line by htdigest itself
    htdigest(dg, DREALM, "carol", "c-pass")
    assert "carol:%s:%s" % (DREALM, md5("carol:%s:c-pass" % DREALM)) in dg.read_text()
    return {"htpasswd": pw, "htdigest": dg}


def basic(tracfront, files, *extra, project="*", **kw):
    return tracfront(*APP, "--basic-auth", "%s,%s,%s" % (project, files["htpasswd"], REALM),
                     *extra, **kw)


def digest(tracfront, files, *extra, project="*", **kw):
    return tracfront(*APP, "--digest-auth", "%s,%s,%s" % (project, files["htdigest"], DREALM),
                     *extra, **kw)


def digest_header(challenge, user, password, method, uri, nc="00000001", cnonce="0a4f113b"):
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    resp = md5("%s:%s:%s:%s:auth:%s" % (md5("%s:%s:%s" % (user, params["realm"], password)),
                                        params["nonce"], nc, cnonce, md5(method + ":" + uri)))
    return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", qop=auth, nc=%s, '
            'cnonce="%s", response="%s"' % (user, params["realm"], params["nonce"], uri, nc,
                                             cnonce, resp))


def log_lines(srv, needle):
    return [line for line in srv.error_log.splitlines() if needle in line]


# --- Basic --------------------------------------------------------------------------


def test_login_without_credentials_is_challenged(tracfront, files):
    srv = basic(tracfront, files)
    r = requests.get(srv.url + "login", timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Basic realm="%s", charset="UTF-8"' % REALM
    assert "remote_user" not in r.text  # the app never ran
    assert log_lines(srv, "auth:") == []  # asking is not a refusal


@pytest.mark.parametrize("user", sorted(FORMATS))
def test_each_htpasswd_format(tracfront, files, user):
    srv = basic(tracfront, files)
    password = FORMATS[user][1]
    r = requests.get(srv.url + "login", auth=(user, password), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["remote_user"] == user
    assert r.json()["auth_type"] == "Basic"
    r = requests.get(srv.url + "login", auth=(user, "Wrong" + password), timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    lines = log_lines(srv, "auth: wrong password")
    assert len(lines) == 1, srv.error_log
    assert 'user "%s" from 127.0.0.1' % user in lines[0]
    assert password not in srv.error_log


def test_unknown_user_and_access_log(tracfront, files):
    srv = basic(tracfront, files)
    r = requests.get(srv.url + "login", auth=("mallory", "x"), timeout=10)
    assert r.status_code == 401
    assert len(log_lines(srv, 'auth: unknown user: user "mallory" from 127.0.0.1')) == 1
    assert requests.get(srv.url + "login", auth=("apr1", "apr1-pw"), timeout=10).ok
    srv.stop()
    assert re.search(r'^127\.0\.0\.1 - apr1 \[.*"GET /login HTTP/1\.1" 200 ', srv.access_log, re.M)
    assert re.search(r'^127\.0\.0\.1 - - \[.*"GET /login HTTP/1\.1" 401 ', srv.access_log, re.M)


def test_other_paths_are_never_challenged_nor_given_a_user(tracfront, files):
    srv = basic(tracfront, files)
    good = ("sha", "sha1-pw")
    for path in ("", "wiki/login", "logout", "loginx", "login.html"):
        r = requests.get(srv.url + path, auth=good, timeout=10)
        assert r.status_code == 200, path
        assert r.json()["remote_user"] is None, path
        assert r.json()["auth_type"] is None
        assert r.json()["has_authorization"]  # the header itself reaches the app, as in tracd


def test_client_headers_never_set_remote_user(tracfront, files):
    srv = basic(tracfront, files)
    forged = {"Remote-User": "admin", "X-Remote-User": "admin", "Auth-Type": "Basic",
              "X-Tracfront-User": "Basic admin"}
    r = requests.get(srv.url + "wiki", headers=forged, timeout=10)
    assert r.status_code == 200
    assert r.json()["remote_user"] is None
    assert r.json()["http_remote_user"] == "admin"  # as HTTP_REMOTE_USER, nothing more
    r = requests.get(srv.url + "login", headers=forged, timeout=10)
    assert r.status_code == 401
    r = requests.get(srv.url + "login", headers=forged, auth=("des", "despw"), timeout=10)
    assert r.json()["remote_user"] == "des"


def test_utf8_user_name(tracfront, files):
    htpasswd(files["htpasswd"], "jörg", "pässword")
    srv = basic(tracfront, files)
    r = requests.get(srv.url + "login", auth=("jörg".encode(), "pässword".encode()), timeout=10)
    assert r.status_code == 200
    assert r.json()["remote_user"] == "jörg"


def test_long_basic_credentials(tracfront, files):
    """A 300-byte user name and a 1100-byte password are taken, as Apache
    takes them; only past the 8 KiB header limit are they refused, as too
    long (not malformed)."""
    import base64
    user, password = "u" * 300, "p" * 1100
    sha = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    with open(files["htpasswd"], "a") as f:
        f.write("%s:{SHA}%s\n" % (user, sha))
    srv = basic(tracfront, files)
    r = requests.get(srv.url + "login", auth=(user, password), timeout=10)
    assert r.status_code == 200, srv.error_log[-300:]
    assert r.json()["remote_user"] == user
    r = requests.get(srv.url + "login", auth=(user, password + "x"), timeout=10)
    assert r.status_code == 401
    assert len(log_lines(srv, "auth: wrong password: user \"uuu")) == 1, srv.error_log
    r = requests.get(srv.url + "login", auth=(user, "p" * 6200), timeout=10)
    assert r.status_code == 401
    assert len(log_lines(srv, "auth: Basic credentials too long")) == 1, srv.error_log
    assert "malformed" not in srv.error_log


def test_file_changed_on_disk_is_reread(tracfront, files):
    srv = basic(tracfront, files)
    assert requests.get(srv.url + "login", auth=("apr1", "apr1-pw"), timeout=10).ok
    htpasswd(files["htpasswd"], "apr1", "new-pw")
    htpasswd(files["htpasswd"], "newcomer", "hello", "-B")
    deadline = time.monotonic() + 15
    while requests.get(srv.url + "login", auth=("apr1", "new-pw"), timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the changed file was not re-read"
        time.sleep(0.2)
    assert requests.get(srv.url + "login", auth=("apr1", "apr1-pw"), timeout=10).status_code == 401
    r = requests.get(srv.url + "login", auth=("newcomer", "hello"), timeout=10)
    assert r.json()["remote_user"] == "newcomer"
    assert "re-read" in srv.error_log


def test_file_rewritten_with_its_mtime_kept_is_reread(tracfront, files):
    """cp -p and rsync -t keep the mtime: a file rewritten in place to the
    same size is still seen as changed (its ctime moved)."""
    srv = basic(tracfront, files)
    assert requests.get(srv.url + "login", auth=("sha", "sha1-pw"), timeout=10).ok
    before = os.stat(files["htpasswd"])
    text = files["htpasswd"].read_text()
    old = re.search(r"^sha:(\{SHA\}.*)$", text, re.M).group(1)
    new = subprocess.run(["htpasswd", "-nbs", "sha", "sha1-PW"], check=True, capture_output=True,
                         text=True, timeout=30).stdout.strip().split(":", 1)[1]
    assert len(new) == len(old)
    with open(files["htpasswd"], "r+") as f:  # in place: same inode, same size
        f.write(text.replace(old, new))
    os.utime(files["htpasswd"], ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(files["htpasswd"])
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)
    deadline = time.monotonic() + 10
    while requests.get(srv.url + "login", auth=("sha", "sha1-PW"), timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the rewritten file was not re-read"
        time.sleep(0.2)
    assert requests.get(srv.url + "login", auth=("sha", "sha1-pw"), timeout=10).status_code == 401


def test_malformed_lines_are_skipped_with_a_warning(tracfront, files):
    with open(files["htpasswd"], "a") as f:
        f.write("no-colon-here\nplain:text-password\n")
    srv = basic(tracfront, files)
    assert "line 5: not USER:HASH; line skipped" in srv.error_log
    assert "line 6: the password hash is not bcrypt" in srv.error_log
    assert "text-password" not in srv.error_log
    assert requests.get(srv.url + "login", auth=("sha", "sha1-pw"), timeout=10).ok
    assert requests.get(srv.url + "login", auth=("plain", "text-password"),
                        timeout=10).status_code == 401


def raw_login(srv, authorization):
    head = b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    return srv.raw(head + b"Authorization: " + authorization + b"\r\n\r\n", timeout=10)


MALFORMED = [b"Basic", b"Basic !!!", b"Basic " + b"A" * 5000, b"Basic YWxpY2U=",
             b"Basic OnB3", b"Digest", b'Digest username="a', b"Digest ,,,=,,", b"Negotiate x",
             b'Digest username="alice", realm="' + DREALM.encode() + b'", nonce="00", '
             b'uri="/login", qop=auth, nc=zz, cnonce="c", response="1"',
             b"Digest " + b"a=b, " * 1000]


def test_malformed_authorization_is_a_401(tracfront, files):
    for srv in (basic(tracfront, files), digest(tracfront, files)):
        for value in MALFORMED:
            answer = raw_login(srv, value)
            assert re.match(rb"HTTP/1\.1 (401|400|431) ", answer), (value[:60], answer[:200])
        assert srv.alive()
        assert requests.get(srv.url + "other", timeout=10).ok


def test_mount(tracfront, files):
    srv = basic(tracfront, files, "--mount", "/trac")
    assert requests.get(srv.url + "trac/login", timeout=10).status_code == 401
    r = requests.get(srv.url + "trac/login", auth=("des", "despw"), timeout=10)
    assert r.json() == {"path": "/login", "script_name": "/trac", "remote_user": "des",
                        "auth_type": "Basic", "http_remote_user": None, "has_authorization": True,
                        "env_path": None, "env_parent_dir": None}
    assert requests.get(srv.url + "login", timeout=10).status_code == 404  # not the app's


def test_ini_keys(tracfront, files, tmp_path):
    ini = tmp_path / "tracfront.ini"
    ini.write_text("[tracfront]\nbasic-auth = *,%s,%s\n" % (files["htpasswd"], REALM))
    srv = tracfront(*APP, "--config", ini)
    assert requests.get(srv.url + "login", timeout=10).status_code == 401
    assert requests.get(srv.url + "login", auth=("sha", "sha1-pw"), timeout=10).ok


@pytest.mark.parametrize("key, flag", [("basic-auth", "--basic-auth"),
                                       ("digest-auth", "--auth"), ("auth", "--digest-auth"),
                                       ("basic-auth", "--digest-auth")])
def test_a_flag_replaces_the_files_logins(tracfront, files, tmp_path, key, flag):
    """The file's login for a project and a flag's for the same one stopped
    the start ("already has a --basic-auth"): flags win over the file, the
    three login keys being one."""
    kinds = {"basic-auth": "htpasswd", "--basic-auth": "htpasswd"}  # else htdigest
    ini = tmp_path / "tracfront.ini"
    ini.write_text("[tracfront]\n%s = *,%s,From The File\n"
                   % (key, files[kinds.get(key, "htdigest")]))
    srv = tracfront(*APP, "--config", ini, flag,
                    "*,%s,%s" % (files[kinds.get(flag, "htdigest")], DREALM))
    challenge = requests.get(srv.url + "login", timeout=10).headers["WWW-Authenticate"]
    assert 'realm="%s"' % DREALM in challenge and "From The File" not in challenge, challenge


@pytest.mark.parametrize("args,message", [
    (("--basic-auth", "*,{dir}/missing,R"),
     "--basic-auth: cannot read '{dir}/missing': No such file or directory"),
    (("--digest-auth", "*,{htdigest}"), "--digest-auth: '*,{htdigest}' is not "
                                        "PROJECT,HTDIGEST,REALM"),
    (("--basic-auth", "proj,{htpasswd},R"), "--basic-auth: with --app or --wsgi-file there "
                                            "is one project: use * for PROJECT, not 'proj'"),
    (("--basic-auth", "*,{htpasswd},R", "--digest-auth", "*,{htdigest},R"),
     "--digest-auth: project '*' already has a --basic-auth"),
])
def test_config_errors_name_the_flag(tracfront, files, tmp_path, args, message):
    fill = {"dir": tmp_path, "htpasswd": files["htpasswd"], "htdigest": files["htdigest"]}
    srv = tracfront(*APP, *[a.format(**fill) for a in args], expect_fail=True)
    assert srv.proc.wait(10) == 2
    assert message.format(**fill) in srv.stderr


@pytest.mark.parametrize("kind", ["unreadable", "fifo"])
def test_unreadable_file_at_start_is_a_config_error(tracfront, files, tmp_path, kind):
    """A FIFO there hung the start (its open blocks for a writer), deaf to
    SIGTERM: only a regular file is read."""
    if kind == "fifo":
        files["htpasswd"] = tmp_path / "fifo"
        os.mkfifo(files["htpasswd"])
    elif os.geteuid() == 0:  # root reads every file: a folder cannot be read either
        files["htpasswd"] = tmp_path / "folder"
        files["htpasswd"].mkdir()
    else:
        files["htpasswd"].chmod(0)
    srv = basic(tracfront, files, expect_fail=True)
    assert srv.proc.wait(10) == 2
    assert "--basic-auth: cannot read '%s': " % files["htpasswd"] in srv.stderr


# --- Digest ---------------------------------------------------------------------------


def test_digest_with_requests(tracfront, files):
    srv = digest(tracfront, files)
    r = requests.get(srv.url + "login", timeout=10)
    assert r.status_code == 401
    assert re.fullmatch(r'Digest realm="%s", qop="auth", algorithm=MD5, nonce="[0-9a-f]{56}", '
                        r'stale=false' % DREALM, r.headers["WWW-Authenticate"])
    session = requests.Session()
    session.auth = HTTPDigestAuth("alice", "wonderland")
    for query in ("", "?a=1", "?a=2"):  # one nonce, nc counting up
        r = session.get(srv.url + "login" + query, timeout=10)
        assert r.status_code == 200, r.headers
        assert r.json()["remote_user"] == "alice"
        assert r.json()["auth_type"] == "Digest"
    r = requests.get(srv.url + "login", auth=HTTPDigestAuth("carol", "c-pass"), timeout=10)
    assert r.json()["remote_user"] == "carol"  # the line htdigest itself wrote
    r = requests.post(srv.url + "login", data=b"x=1",
                      auth=HTTPDigestAuth("carol", "c-pass"), timeout=10)
    assert r.json()["remote_user"] == "carol"
    r = requests.get(srv.url + "login", auth=HTTPDigestAuth("alice", "Wonderland"), timeout=10)
    assert r.status_code == 401
    assert 'auth: wrong password: user "alice" from 127.0.0.1 (Digest realm' in srv.error_log
    assert "onderland" not in srv.error_log
    r = requests.get(srv.url + "elsewhere", auth=HTTPDigestAuth("alice", "wonderland"),
                     timeout=10)
    assert r.status_code == 200 and r.json()["remote_user"] is None


def test_digest_replayed_answer_is_stale(tracfront, files):
    srv = digest(tracfront, files)
    challenge = requests.get(srv.url + "login", timeout=10).headers["WWW-Authenticate"]
    answer = digest_header(challenge, "alice", "wonderland", "GET", "/login")
    r = requests.get(srv.url + "login", headers={"Authorization": answer}, timeout=10)
    assert r.json()["remote_user"] == "alice"
    r = requests.get(srv.url + "login", headers={"Authorization": answer}, timeout=10)
    assert r.status_code == 401
    assert "stale=true" in r.headers["WWW-Authenticate"]
    assert r.headers["WWW-Authenticate"] != challenge  # a new nonce to retry with


def test_digest_expired_nonce_is_stale(tracfront, files):
    srv = digest(tracfront, files, "--digest-nonce-lifetime", "1")
    challenge = requests.get(srv.url + "login", timeout=10).headers["WWW-Authenticate"]
    time.sleep(2.5)  # past the nonce's lifetime (whole seconds)
    answer = digest_header(challenge, "alice", "wonderland", "GET", "/login")
    r = requests.get(srv.url + "login", headers={"Authorization": answer}, timeout=10)
    assert r.status_code == 401
    assert "stale=true" in r.headers["WWW-Authenticate"]
    assert log_lines(srv, "auth:") == []  # the password was right: nothing to report
    fresh = r.headers["WWW-Authenticate"]
    answer = digest_header(fresh, "alice", "wonderland", "GET", "/login")
    r = requests.get(srv.url + "login", headers={"Authorization": answer}, timeout=10)
    assert r.json()["remote_user"] == "alice"


def test_digest_forged_nonce_and_wrong_uri(tracfront, files):
    srv = digest(tracfront, files)
    challenge = requests.get(srv.url + "login", timeout=10).headers["WWW-Authenticate"]
    forged = re.sub(r'nonce="([0-9a-f]{8})', lambda m: 'nonce="%08x' % (int(m.group(1), 16) + 1),
                    challenge)
    r = requests.get(srv.url + "login", timeout=10, headers={
        "Authorization": digest_header(forged, "alice", "wonderland", "GET", "/login")})
    assert r.status_code == 401 and "stale=false" in r.headers["WWW-Authenticate"]
    assert "a nonce this server did not issue" in srv.error_log
    r = requests.get(srv.url + "login?x", timeout=10, headers={
        "Authorization": digest_header(challenge, "alice", "wonderland", "GET", "/login")})
    assert r.status_code == 400


def test_digest_with_an_absolute_form_target(tracfront, files):
    """RFC 7616 3.4: uri is the request-target as sent, so a client talking
    absolute-form (as to a proxy) answers for 'http://host/login'."""
    srv = digest(tracfront, files)
    challenge = requests.get(srv.url + "login", timeout=10).headers["WWW-Authenticate"]
    for nc, uri in (("00000001", srv.url + "login"), ("00000002", "/login")):
        answer = digest_header(challenge, "alice", "wonderland", "GET", uri, nc=nc)
        head = srv.raw(b"GET " + (srv.url + "login").encode() + b" HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: close\r\nAuthorization: " + answer.encode() + b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), (uri, head[:300])
        assert b'"remote_user": "alice"' in head
    answer = digest_header(challenge, "alice", "wonderland", "GET", "http://elsewhere/login",
                           nc="00000003")
    head = srv.raw(b"GET " + (srv.url + "login").encode() + b" HTTP/1.1\r\nHost: x\r\n"
                   b"Connection: close\r\nAuthorization: " + answer.encode() + b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head[:300]


def send_login(srv, authorization):
    """One GET /login on a connection of its own: (status, WWW-Authenticate)."""
    r = requests.get(srv.url + "login", headers={"Authorization": authorization,
                                                  "Connection": "close"}, timeout=30)
    return r.status_code, r.headers.get("WWW-Authenticate", "")


def test_digest_answer_on_a_new_connection_with_workers(tracfront, files):
    """Python's urllib sends its answer on a new connection, which another
    worker may take: that worker takes the nonce (the workers share the
    nonces' table), where it used to answer stale=true and urllib gave up."""
    import json
    import urllib.request
    srv = digest(tracfront, files, "--workers", "2")
    users = []
    for _ in range(20):
        passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        passwords.add_password(None, srv.url, "alice", "wonderland")
        opener = urllib.request.build_opener(urllib.request.HTTPDigestAuthHandler(passwords))
        with opener.open(srv.url + "login", timeout=30) as r:
            users.append(json.load(r)["remote_user"])
    assert users == ["alice"] * 20
    assert log_lines(srv, "auth:") == []


def one_connection_per_worker(srv):
    """{pid: a keep-alive session whose one connection that worker serves}."""
    sessions = {}
    for _ in range(100):
        s = requests.Session()
        pid = s.get(srv.url + "pid", timeout=30).json()["pid"]
        if pid in sessions:
            s.close()
        else:
            sessions[pid] = s
        if len(sessions) == 2:
            return sessions
    raise AssertionError("every connection went to worker %s" % list(sessions))


def assert_nonce_taken_at_the_other_worker(srv):
    """A nonce worker A issued is taken at worker B, and the answer's replay
    at A is refused: they share one table of nonces."""
    (a, at_a), (b, at_b) = one_connection_per_worker(srv).items()
    challenge = at_a.get(srv.url + "login", timeout=30).headers["WWW-Authenticate"]
    answer = digest_header(challenge, "alice", "wonderland", "GET", "/login")
    r = at_b.get(srv.url + "login", headers={"Authorization": answer}, timeout=30)
    assert r.status_code == 200, r.headers
    assert r.json()["pid"] == b and r.json()["REMOTE_USER"] == "alice"
    r = at_a.get(srv.url + "login", headers={"Authorization": answer}, timeout=30)
    assert r.status_code == 401 and "stale=true" in r.headers["WWW-Authenticate"]  # a replay
    assert len(log_lines(srv, "a nonce count used before")) == 1, srv.error_log


def test_digest_nonce_from_one_worker_is_taken_at_the_other(tracfront, files):
    srv = tracfront("--app", "worker_app:app", "--workers", "2", "--digest-auth",
                    "*,%s,%s" % (files["htdigest"], DREALM))
    assert_nonce_taken_at_the_other_worker(srv)


def test_digest_added_by_a_reload_is_shared_by_the_workers(tracfront, files, tmp_path):
    """The front makes the nonces' table whatever its own settings: a reload
    whose workers read --digest-auth from the --config file share it too
    (they used to keep one each, silently)."""
    ini = tmp_path / "tracfront.ini"
    ini.write_text("[tracfront]\n")
    srv = tracfront("--app", "worker_app:app", "--workers", "2", "--config", ini)
    assert requests.get(srv.url + "login", timeout=30).status_code == 200
    ini.write_text("[tracfront]\ndigest-auth = *,%s,%s\n" % (files["htdigest"], DREALM))
    old = set(wait_for(lambda: children(srv.proc.pid), 30, "the workers"))
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(children(srv.proc.pid)) == 2 and not old & set(children(srv.proc.pid)),
             60, "the old workers replaced by new ones")
    assert requests.get(srv.url + "login", timeout=30).status_code == 401
    assert_nonce_taken_at_the_other_worker(srv)


def test_digest_answer_is_not_replayable_across_workers(tracfront, files):
    """RFC 7616 5.4: the workers share the table of nonce counts taken, so an
    answer taken at one worker is refused at every other (the client is told
    stale and retries with a new nonce, without asking its user)."""
    srv = digest(tracfront, files, "--workers", "2")
    challenge = requests.get(srv.url + "login", timeout=30).headers["WWW-Authenticate"]
    answer = digest_header(challenge, "alice", "wonderland", "GET", "/login")
    results = [send_login(srv, answer) for _ in range(30)]
    assert results[0][0] == 200, results  # taken once, at whichever worker got it first
    assert all(status == 401 and "stale=true" in www for status, www in results[1:]), results
    assert len(log_lines(srv, "a nonce count used before")) == 29, srv.error_log


def test_digest_answer_is_not_replayable_after_a_reload(tracfront, files):
    srv = digest(tracfront, files, "--workers", "1")
    challenge = requests.get(srv.url + "login", timeout=30).headers["WWW-Authenticate"]
    answer = digest_header(challenge, "alice", "wonderland", "GET", "/login")
    assert send_login(srv, answer)[0] == 200
    old = set(wait_for(lambda: children(srv.proc.pid), 30, "a worker"))
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: set(children(srv.proc.pid)) - old and not old & set(children(srv.proc.pid)),
             60, "the old worker replaced by a new one")
    for _ in range(3):  # the new worker issues nonces from the same table
        assert requests.get(srv.url + "login", timeout=30).status_code == 401
    status, www = send_login(srv, answer)
    assert status == 401 and "stale=true" in www
    # refused as a replay, not as another table's nonce: the new worker has the old one's record
    assert len(log_lines(srv, "a nonce count used before")) == 1, srv.error_log


def test_digest_nc_out_of_order_or_zero_is_stale_and_logged_as_such(tracfront, files):
    """An nc below the highest one taken, or 00000000, is answered stale (the
    client retries with a new nonce); the log says which, not "replay"."""
    srv = digest(tracfront, files)
    challenge = requests.get(srv.url + "login", timeout=10).headers["WWW-Authenticate"]
    results = [send_login(srv, digest_header(challenge, "alice", "wonderland", "GET", "/login",
                                             nc=nc)) for nc in ("00000003", "00000002")]
    assert results[0][0] == 200
    assert results[1][0] == 401 and "stale=true" in results[1][1]
    fresh = requests.get(srv.url + "login", timeout=10).headers["WWW-Authenticate"]
    status, www = send_login(srv, digest_header(fresh, "alice", "wonderland", "GET", "/login",
                                                nc="00000000"))
    assert status == 401 and "stale=true" in www
    assert len(log_lines(srv, "auth: a nonce count below the highest one taken (sent out of "
                              "order?)")) == 1, srv.error_log
    assert len(log_lines(srv, "auth: an invalid nonce count 00000000")) == 1, srv.error_log
    assert log_lines(srv, "replayed") == []


def test_digest_with_a_long_uri(tracfront, files):
    """Trac links to /login?referer=<the page>: the uri parameter repeats the
    target, so the header may be long (Apache takes up to 8190 bytes)."""
    srv = digest(tracfront, files)
    target = "login?referer=" + "x" * 3000
    r = requests.get(srv.url + target, auth=HTTPDigestAuth("alice", "wonderland"), timeout=10)
    assert r.status_code == 200, srv.error_log[-500:]
    assert r.json()["remote_user"] == "alice"


def test_tracd_auth_flag_is_digest(tracfront, files):
    """tracd spells Digest -a/--auth: the same spelling works here."""
    srv = tracfront(*APP, "--auth", "*,%s,%s" % (files["htdigest"], DREALM))
    r = requests.get(srv.url + "login", auth=HTTPDigestAuth("alice", "wonderland"), timeout=10)
    assert r.json()["remote_user"] == "alice"


def test_expect_100_continue_gets_the_401_first(tracfront, files):
    """An upload to the login path without credentials is refused before its
    body is asked for, as Apache and nginx do."""
    srv = basic(tracfront, files)
    s = srv.connect()
    try:
        s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n"
                  b"Expect: 100-continue\r\nContent-Type: application/octet-stream\r\n\r\n")
        head = s.recv(4096)
    finally:
        s.close()
    assert head.startswith(b"HTTP/1.1 401 "), head[:200]
    assert b"WWW-Authenticate: Basic" in head
    r = requests.post(srv.url + "login", data=b"x=1", auth=("sha", "sha1-pw"), timeout=10,
                      headers={"Expect": "100-continue"})
    assert r.json()["remote_user"] == "sha"


def upload_head(srv, authorization):
    """Start a 50 MB upload to /login that waits for 100 Continue: the first
    thing the server answers, and whether it then closed the connection."""
    s = srv.connect()
    try:
        s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n"
                  b"Expect: 100-continue\r\nAuthorization: " + authorization + b"\r\n\r\n")
        head = s.recv(4096)
        if head.startswith(b"HTTP/1.1 100 "):
            return head, False
        s.settimeout(10)
        while True:  # read to the end: the server closes after its refusal
            chunk = s.recv(65536)
            if not chunk:
                return head, True
    finally:
        s.close()


def test_basic_upload_with_wrong_credentials_gets_the_401_first(tracfront, files):
    """Basic credentials are checked away from the network thread (a bcrypt
    hash is slow): the body still waits until they are, so a wrong password
    or unknown user gets the 401 instead of 100 Continue, as Apache does."""
    import base64
    srv = basic(tracfront, files)
    for user, password in (("bcrypt", "wrong"), ("nobody", "x")):
        value = b"Basic " + base64.b64encode(("%s:%s" % (user, password)).encode())
        head, closed = upload_head(srv, value)
        assert head.startswith(b"HTTP/1.1 401 "), (user, head[:200])
        assert b"WWW-Authenticate: Basic" in head and closed
    value = b"Basic " + base64.b64encode(b"bcrypt:b-cr ypt:pw")
    assert upload_head(srv, value)[0].startswith(b"HTTP/1.1 100 ")  # the right one: the body
    r = requests.post(srv.url + "login", data=b"x" * 100000, auth=("bcrypt", "b-cr ypt:pw"),
                      headers={"Expect": "100-continue"}, timeout=10)
    assert r.json()["remote_user"] == "bcrypt"
    assert len(log_lines(srv, "auth: wrong password")) == 1
    assert len(log_lines(srv, "auth: unknown user")) == 1


def test_basic_upload_without_expect_gets_its_401_not_a_reset(tracfront, files):
    """Python's requests and browsers send an upload whole without waiting
    for 100 Continue: the 401 comes while they are still sending, and the
    connection closes lingering (what still comes is read and dropped). A
    close with unread data is answered by the kernel with a reset, which
    lost the 401 (a ConnectionError in 20 of 20 tries at 5 MB)."""
    srv = basic(tracfront, files)
    got = []
    for _ in range(10):
        try:
            r = requests.post(srv.url + "login", data=b"x" * 5000000, auth=("bcrypt", "wrong"),
                              timeout=30)
            got.append((r.status_code, r.headers.get("WWW-Authenticate", "")[:6]))
        except requests.exceptions.ConnectionError as e:
            got.append(repr(e)[:100])
    assert got == [(401, "Basic ")] * 10, got
    assert len(log_lines(srv, "auth: wrong password")) == 10


@pytest.mark.parametrize("user", ["bcrypt", "sha"])  # checked away from the loop, and on it
def test_login_with_an_empty_body_keeps_its_connection(tracfront, files, user):
    """Content-Length: 0 is no body to refuse before reading: a wrong
    password's 401 keeps the connection open, as for a GET."""
    import base64
    import http.client
    srv = basic(tracfront, files)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        value = base64.b64encode(("%s:wrong" % user).encode()).decode()
        conn.request("POST", "/login", body=b"", headers={"Authorization": "Basic " + value})
        r = conn.getresponse()
        r.read()
        assert r.status == 401 and not r.will_close, r.getheaders()
        sock = conn.sock
        conn.request("GET", "/x")
        r = conn.getresponse()
        assert r.status == 200 and conn.sock is sock  # on the same connection
        r.read()
    finally:
        conn.close()


def test_login_checked_while_the_stop_begins_is_served(tracfront, files):
    """An upload whose credentials are being checked when SIGTERM comes was
    already coming: it goes on (100 Continue, its body, the app's answer),
    as any request in flight does; only a head after the stop gets 503."""
    import base64
    subprocess.run(["htpasswd", "-b", "-B", "-C", "13", str(files["htpasswd"]), "slow",
                    "slow-pw"], check=True, capture_output=True, timeout=60)
    srv = basic(tracfront, files)
    s = srv.connect(30)
    try:
        s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                  b"Expect: 100-continue\r\nAuthorization: Basic " +
                  base64.b64encode(b"slow:slow-pw") + b"\r\n\r\n")
        time.sleep(0.1)  # the check is under way (cost 13: about half a second)
        srv.proc.send_signal(signal.SIGTERM)
        s.settimeout(30)
        assert s.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"0123456789")
        answer = s.makefile("rb").read()  # to the close: Connection: close while stopping
    finally:
        s.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert json.loads(body)["remote_user"] == "slow"
    assert srv.proc.wait(30) == 0


def test_log_lines_are_exact_and_escaped(tracfront, files):
    srv = digest(tracfront, files)
    challenge = requests.get(srv.url + "login", timeout=10).headers["WWW-Authenticate"]
    answer = digest_header(challenge, "alice", "wonderland", "GET", "/login")
    assert send_login(srv, answer)[0] == 200
    assert send_login(srv, answer)[0] == 401  # the same nc again
    assert len(log_lines(srv, "a nonce count used before")) == 1, srv.error_log
    r = requests.get(srv.url + "login?x", timeout=10, headers={
        "Authorization": digest_header(challenge, "alice", "wonderland", "GET", "/login")})
    assert r.status_code == 400
    assert log_lines(srv, "the Digest uri is not the request's target")[0].endswith(
        "answered 400")
    srv.raw(b'GET /login?"\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
            b'Authorization: Digest username="bob"\r\n\r\n')
    line = log_lines(srv, 'user "bob"')[0]
    assert 'GET /login?\\"\\xff' in line, line  # escaped as the access log escapes it


def test_basic_with_trailing_whitespace(tracfront, files):
    srv = basic(tracfront, files)
    value = b"Basic " + __import__("base64").b64encode(b"sha:sha1-pw") + b"  "
    answer = raw_login(srv, value)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_slow_bcrypt_check_does_not_hold_other_requests(tracfront, files):
    """A bcrypt hash of cost 14 takes about a second to check. The check runs
    away from the network thread (as Apache runs it in a request's worker),
    so with one network thread another client's page is answered while it
    runs; at most --threads such checks run at once."""
    htpasswd(files["htpasswd"], "slow", "slow-pw", "-B")
    line = subprocess.run(["htpasswd", "-nbB", "-C", "14", "slow", "slow-pw"], check=True,
                          capture_output=True, text=True, timeout=60).stdout.strip()
    text = files["htpasswd"].read_text()
    files["htpasswd"].write_text("\n".join(
        line if entry.startswith("slow:") else entry for entry in text.splitlines()) + "\n")
    srv = basic(tracfront, files, "--io-threads", "1", "--threads", "1")
    order = []

    def login(password):
        r = requests.get(srv.url + "login", auth=("slow", password), timeout=60)
        order.append(("login", r.status_code))

    import threading
    worker = threading.Thread(target=login, args=("wrong",))
    worker.start()
    time.sleep(0.2)  # the check is under way
    r = requests.get(srv.url + "other", timeout=60)
    order.append(("other", r.status_code))
    r = requests.get(srv.url + "login", auth=("slow", "slow-pw"), timeout=60)
    order.append(("second login", r.status_code))  # past --threads checks at once: 503
    worker.join(60)
    assert order == [("other", 200), ("second login", 503), ("login", 401)], order
    assert "logins are being checked already (--threads); answered 503" in srv.error_log
    r = requests.get(srv.url + "login", auth=("slow", "slow-pw"), timeout=60)
    assert r.json()["remote_user"] == "slow" and r.json()["auth_type"] == "Basic"
    assert 'wrong password: user "slow"' in srv.error_log


def test_password_file_gone_refuses_instead_of_keeping_old_users(tracfront, files):
    """As Apache (500) and tracd: deleting the file must not leave the old
    passwords working; putting it back restores them."""
    srv = basic(tracfront, files)
    assert requests.get(srv.url + "login", auth=("sha", "sha1-pw"), timeout=10).ok
    kept = files["htpasswd"].read_bytes()
    files["htpasswd"].unlink()
    deadline = time.monotonic() + 15
    while requests.get(srv.url + "login", auth=("sha", "sha1-pw"), timeout=10).status_code != 500:
        assert time.monotonic() < deadline, "the old users still work"
        time.sleep(0.2)
    assert "cannot re-read it" in srv.error_log
    assert requests.get(srv.url + "other", timeout=10).ok  # other pages are not affected
    files["htpasswd"].write_bytes(kept)
    deadline = time.monotonic() + 15
    while requests.get(srv.url + "login", auth=("sha", "sha1-pw"), timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the restored file was not read"
        time.sleep(0.2)


# --- projects ----------------------------------------------------------------------------


def test_parent_dir_projects(tracfront, files, tmp_path):
    parent = tmp_path / "projects"
    for name in ("one", "two", "three"):
        (parent / name).mkdir(parents=True)
    srv = tracfront("--trac-env-parent-dir", parent, "--pythonpath", fake_trac(tmp_path),
                    "--basic-auth", "one,%s,One" % files["htpasswd"],
                    "--digest-auth", "*,%s,%s" % (files["htdigest"], DREALM))
    r = requests.get(srv.url + "one/login", timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith('Basic realm="One"')
    r = requests.get(srv.url + "one/login", auth=("bcrypt", "b-cr ypt:pw"), timeout=10)
    assert r.json()["remote_user"] == "bcrypt"
    assert r.json()["path"] == "/one/login"
    for name in ("two", "three"):  # '*': every other project, with Digest
        r = requests.get(srv.url + name + "/login", timeout=10)
        assert r.headers["WWW-Authenticate"].startswith('Digest realm="%s"' % DREALM)
        r = requests.get(srv.url + name + "/login", auth=HTTPDigestAuth("alice", "wonderland"),
                         timeout=10)
        assert r.json()["remote_user"] == "alice"
    for path in ("", "login", "one/wiki", "one/wiki/login"):  # the index, and other pages
        r = requests.get(srv.url + path, auth=("bcrypt", "b-cr ypt:pw"), timeout=10)
        assert r.status_code == 200 and r.json()["remote_user"] is None, path


def test_trac_env_project_name(tracfront, files, tmp_path):
    env = tmp_path / "main"
    env.mkdir()
    fake = fake_trac(tmp_path)
    srv = tracfront("--trac-env", str(env) + "/", "--pythonpath", fake,
                    "--basic-auth", "main,%s,%s" % (files["htpasswd"], REALM))
    assert requests.get(srv.url + "login", timeout=10).status_code == 401
    r = requests.get(srv.url + "login", auth=("des", "despw"), timeout=10)
    assert r.json()["remote_user"] == "des"
    assert requests.get(srv.url + "main/login", timeout=10).json()["remote_user"] is None
    dot = tracfront("--trac-env", str(env) + "/.", "--pythonpath", fake,
                    "--basic-auth", "main,%s,%s" % (files["htpasswd"], REALM))
    assert requests.get(dot.url + "login", timeout=10).status_code == 401  # tracd: abspath
    bad = tracfront("--trac-env", env, "--basic-auth", "other,%s,R" % files["htpasswd"],
                    expect_fail=True)
    assert bad.proc.wait(10) == 2
    assert "project 'other' is not served: --trac-env serves 'main'" in bad.stderr


def test_trac_env_through_a_symlink_is_named_by_the_link(tracfront, files, tmp_path):
    """tracd names the project basename(abspath(path)): a symlink keeps its
    own name (abspath resolves no link), and '..' is taken away by name."""
    (tmp_path / "envs" / "proj1" / "x").mkdir(parents=True)
    (tmp_path / "current").symlink_to(tmp_path / "envs" / "proj1")
    fake = fake_trac(tmp_path)
    for given in (tmp_path / "current", str(tmp_path / "current" / "x") + "/.."):
        srv = tracfront("--trac-env", given, "--pythonpath", fake,
                        "--basic-auth", "current,%s,%s" % (files["htpasswd"], REALM))
        assert requests.get(srv.url + "login", timeout=10).status_code == 401
        r = requests.get(srv.url + "login", auth=("des", "despw"), timeout=10)
        assert r.json()["remote_user"] == "des"
    bad = tracfront("--trac-env", tmp_path / "current", "--pythonpath", fake,
                    "--basic-auth", "proj1,%s,R" % files["htpasswd"], expect_fail=True)
    assert bad.proc.wait(10) == 2
    assert "project 'proj1' is not served: --trac-env serves 'current'" in bad.stderr


def deployed_trac_wsgi(tmp_path, env_path):
    """The cgi-bin/trac.wsgi that Trac 1.6's `trac-admin ENV deploy DIR`
    writes (trac/templates/deploy_trac.wsgi), for env_path, with fake_trac's
    dispatch_request: it reads trac.env_parent_dir as mod_wsgi's SetEnv gives
    it. Returns (its path, the --pythonpath for fake_trac)."""
    script = tmp_path / "deploy" / "cgi-bin" / "trac.wsgi"
    script.parent.mkdir(parents=True)
    script.write_text(
        "import os\n\n"
        "def application(environ, start_request):\n"
        "    if not 'trac.env_parent_dir' in environ:\n"
        "        environ.setdefault('trac.env_path', %r)\n"
        "    if 'PYTHON_EGG_CACHE' in environ:\n"
        "        os.environ['PYTHON_EGG_CACHE'] = environ['PYTHON_EGG_CACHE']\n"
        "    elif 'trac.env_path' in environ:\n"
        "        os.environ['PYTHON_EGG_CACHE'] = \\\n"
        "            os.path.join(environ['trac.env_path'], '.egg-cache')\n"
        "    elif 'trac.env_parent_dir' in environ:\n"
        "        os.environ['PYTHON_EGG_CACHE'] = \\\n"
        "            os.path.join(environ['trac.env_parent_dir'], '.egg-cache')\n"
        "    from trac.web.main import dispatch_request\n"
        "    return dispatch_request(environ, start_request)\n" % str(env_path))
    return script, fake_trac(tmp_path)


def test_env_parent_dir_of_a_deployed_trac_wsgi_has_a_login_per_project(tracfront, files,
                                                                        tmp_path):
    """mod_wsgi's way to serve several projects: the deployed trac.wsgi and
    `SetEnv trac.env_parent_dir`; as --trac-env-parent-dir, the login path is
    /NAME/login and PROJECT names one (Apache: <LocationMatch "/[^/]+/login">)."""
    parent = tmp_path / "projects"
    for name in ("alpha", "beta"):
        (parent / name).mkdir(parents=True)
    script, fake = deployed_trac_wsgi(tmp_path, tmp_path / "deployed-from")
    srv = tracfront("--wsgi-file", script, "--pythonpath", fake,
                    "--env", "trac.env_parent_dir=%s" % parent,
                    "--basic-auth", "alpha,%s,Alpha" % files["htpasswd"],
                    "--digest-auth", "*,%s,%s" % (files["htdigest"], DREALM))
    r = requests.get(srv.url + "alpha/login", timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith('Basic realm="Alpha"')
    r = requests.get(srv.url + "alpha/login", auth=("apr1", "apr1-pw"), timeout=10)
    assert r.json()["remote_user"] == "apr1" and r.json()["env_parent_dir"] == str(parent)
    assert r.json()["env_path"] is None  # the script left trac.env_path to the parent dir
    r = requests.get(srv.url + "beta/login", timeout=10)
    assert r.headers["WWW-Authenticate"].startswith('Digest realm="%s"' % DREALM)
    r = requests.get(srv.url + "beta/login", auth=HTTPDigestAuth("alice", "wonderland"),
                     timeout=10)
    assert r.json()["remote_user"] == "alice"
    for path in ("", "login", "alpha/wiki"):  # the index, a project named login, a page
        r = requests.get(srv.url + path, auth=("apr1", "apr1-pw"), timeout=10)
        assert r.status_code == 200 and r.json()["remote_user"] is None, path


def test_env_parent_dir_with_every_project_asks_on_each_login(tracfront, files, tmp_path):
    """The probe: --basic-auth '*,...' asked on /login only, so Trac's
    /alpha/login answered 500 "Authentication information not available"."""
    (tmp_path / "projects" / "alpha").mkdir(parents=True)
    script, fake = deployed_trac_wsgi(tmp_path, tmp_path / "deployed-from")
    srv = tracfront("--wsgi-file", script, "--pythonpath", fake,
                    "--env", "trac.env_parent_dir=%s" % (tmp_path / "projects"),
                    "--basic-auth", "*,%s,Trac" % files["htpasswd"])
    assert requests.get(srv.url + "alpha/login", timeout=10).status_code == 401
    r = requests.get(srv.url + "alpha/login", auth=("des", "despw"), timeout=10)
    assert r.json()["remote_user"] == "des"


@pytest.mark.parametrize("also_parent", [False, True], ids=["env_path", "both"])
def test_env_path_given_with_env_is_one_project_named_by_its_folder(tracfront, files,
                                                                     tmp_path, also_parent):
    """--env trac.env_path=/x/main is --trac-env's layout: /login, project
    'main'; Trac takes it over a trac.env_parent_dir given too."""
    env = tmp_path / "envs" / "main"
    env.mkdir(parents=True)
    script, fake = deployed_trac_wsgi(tmp_path, tmp_path / "deployed-from")
    given = ["--env", "trac.env_path=%s" % env] + \
        (["--env", "trac.env_parent_dir=%s" % env.parent] if also_parent else [])
    srv = tracfront("--wsgi-file", script, "--pythonpath", fake, *given,
                    "--basic-auth", "main,%s,%s" % (files["htpasswd"], REALM))
    assert requests.get(srv.url + "login", timeout=10).status_code == 401
    r = requests.get(srv.url + "login", auth=("sha", "sha1-pw"), timeout=10)
    assert r.json()["remote_user"] == "sha" and r.json()["env_path"] == str(env)
    assert requests.get(srv.url + "main/login", timeout=10).json()["remote_user"] is None
    bad = tracfront("--wsgi-file", script, "--pythonpath", fake, *given,
                    "--basic-auth", "other,%s,R" % files["htpasswd"], expect_fail=True)
    assert bad.proc.wait(10) == 2
    assert "project 'other' is not served: --env trac.env_path serves 'main'" in bad.stderr


def test_trac_env_in_the_environment_with_env_parent_dir_logins_is_refused(tracfront, files,
                                                                           tmp_path):
    """TRAC_ENV in tracfront's environment: Trac takes it for trac.env_path
    and serves that one project at every path, while the logins asked for
    are per folder (a user checked against one project's file was logged in
    to TRAC_ENV's). Refused at start, naming it; with trac.env_path given
    too, or without logins, there is nothing to mismatch."""
    script, fake = deployed_trac_wsgi(tmp_path, tmp_path / "deployed-from")
    parent = ["--env", "trac.env_parent_dir=%s" % tmp_path]
    bad = tracfront("--wsgi-file", script, "--pythonpath", fake, *parent,
                    "--basic-auth", "*,%s,%s" % (files["htpasswd"], REALM),
                    env={"TRAC_ENV": str(tmp_path / "two")}, expect_fail=True)
    assert bad.proc.wait(10) == 2
    assert "TRAC_ENV" in bad.stderr and "unset TRAC_ENV" in bad.stderr, bad.stderr
    for args in (parent, parent + ["--basic-auth", "*,%s,%s" % (files["htpasswd"], REALM),
                                   "--env", "trac.env_path=%s" % (tmp_path / "one")]):
        ok = tracfront("--wsgi-file", script, "--pythonpath", fake, *args,
                       env={"TRAC_ENV": str(tmp_path / "two")})
        assert ok.alive()


def test_env_paths_is_refused_for_a_string(tracfront):
    bad = tracfront("--app", "hello:application", "--env", "trac.env_paths=/a,/b",
                    expect_fail=True)
    assert bad.proc.wait(10) == 2
    assert "trac.env_paths" in bad.stderr and "trac.env_parent_dir" in bad.stderr, bad.stderr


def test_one_project_names_what_would_give_several(tracfront, files):
    bad = basic(tracfront, files, project="alpha", expect_fail=True)
    assert bad.proc.wait(10) == 2
    assert "--env trac.env_parent_dir=DIR" in bad.stderr, bad.stderr


def test_workers_get_the_verified_user(tracfront, files):
    srv = basic(tracfront, files, "--workers", "1")
    assert requests.get(srv.url + "login", timeout=30).status_code == 401
    r = requests.get(srv.url + "login", auth=("apr1", "apr1-pw"), timeout=30)
    assert r.json()["remote_user"] == "apr1" and r.json()["auth_type"] == "Basic"
    r = requests.get(srv.url + "login", auth=HTTPDigestAuth("alice", "wonderland"), timeout=30)
    assert r.status_code == 401  # a Basic realm: Digest answers are not taken
    r = requests.get(srv.url + "x", headers={"X-Tracfront-User": "Basic admin"}, timeout=30)
    assert r.json()["remote_user"] is None


def socket_inodes(pid):
    """{"socket:[inode]": descriptor} of a process's sockets."""
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:"):
            out[target] = int(fd)
    return out


def test_tracfront_variables_in_the_environment_do_not_reach_the_workers(tracfront, files):
    """A front started with a worker's variables set (from a worker's own
    subprocess, or by hand) gives its workers only its own: an inherited
    TF_AUTH_NONCES_FD that named the listening socket had each worker close
    it and die (216 restarts in 8 s), an inherited TF_LISTEN_FD won over the
    front's. A descriptor that is not the front's table is never closed."""
    srv = basic(tracfront, files, "--workers", "1")
    worker = next(iter(wait_for(lambda: children(srv.proc.pid), 30, "a worker")))
    shared = socket_inodes(srv.proc.pid).keys() & socket_inodes(worker).keys()
    assert len(shared) == 1, shared  # the listening socket, inherited at the same number
    listen_fd = socket_inodes(worker)[shared.pop()]
    assert srv.stop() == 0
    for env in ({"TF_AUTH_NONCES_FD": str(listen_fd)}, {"TF_LISTEN_FD": "0"},
                {"TF_AUTH_SECRET": "x", "TF_AUTH_NONCES_FD": "%d " % listen_fd}):
        srv = basic(tracfront, files, "--workers", "1", env=env)
        first = wait_for(lambda: children(srv.proc.pid), 30, "a worker")
        for _ in range(5):  # new connections, each accepted on the listening socket
            r = requests.get(srv.url + "login", auth=("sha", "sha1-pw"), timeout=30,
                             headers={"Connection": "close"})
            assert r.json()["remote_user"] == "sha", env
        time.sleep(0.5)
        assert children(srv.proc.pid) == first, (env, srv.error_log[-2000:])
        assert "nonces" not in srv.error_log, env
        assert srv.stop() == 0


def test_without_memfd_each_worker_keeps_a_table_of_its_own(tracfront, files, tmp_path):
    """Where the system cannot make the shared table (memfd_create fails:
    an old kernel, a seccomp filter), the front says why and starts; each
    worker then checks nonces in a table of its own (a nonce another worker
    issued is answered stale, and the browser retries). It used to stop
    saying "out of memory"."""
    if not shutil.which("cc"):
        pytest.skip("no C compiler to build the memfd_create stub")
    stub = tmp_path / "nomemfd.c"
    stub.write_text("#include <errno.h>\nint memfd_create(const char *n, unsigned f)"
                    "{ (void)n; (void)f; errno = ENOSYS; return -1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "nomemfd.so"), str(stub)],
                   check=True, capture_output=True, timeout=60)
    env = {"LD_PRELOAD": str(tmp_path / "nomemfd.so"),  # ASan's runtime is then not first
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    srv = digest(tracfront, files, "--workers", "2", env=env)
    assert len(log_lines(srv, "memfd_create: Function not implemented")) == 1, srv.error_log
    session = requests.Session()  # one connection: one worker, which issued the nonce
    session.auth = HTTPDigestAuth("alice", "wonderland")
    for _ in range(3):
        assert session.get(srv.url + "login", timeout=30).json()["remote_user"] == "alice"
    assert srv.stop() == 0


# --- real Trac ------------------------------------------------------------------------------

PY = "/usr/bin/python3"
TRAC_ENV = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}


def trac_importable():
    return subprocess.run([PY, "-c", "import trac.web.main"], capture_output=True,
                          timeout=60).returncode == 0


@pytest.mark.parametrize("served_as", ["parent-dir", "deployed-wsgi"])
def test_real_trac_login_per_project(tracfront, files, tmp_path, served_as):
    """--trac-env-parent-dir, and mod_wsgi's way: the trac.wsgi that
    `trac-admin deploy` wrote, given trac.env_parent_dir in the environ."""
    if not trac_importable():
        pytest.skip("Trac is not importable by %s with this PYTHONPATH" % PY)
    parent = tmp_path / "projects"
    parent.mkdir()
    for name in ("one", "two"):
        subprocess.run([PY, "-m", "trac.admin.console", str(parent / name), "initenv", name,
                        "sqlite:db/trac.db"], check=True, capture_output=True, timeout=300)
    app = ("--trac-env-parent-dir", parent)
    if served_as == "deployed-wsgi":
        subprocess.run([PY, "-m", "trac.admin.console", str(parent / "one"), "deploy",
                        str(tmp_path / "deploy")], check=True, capture_output=True, timeout=300)
        app = ("--wsgi-file", tmp_path / "deploy" / "cgi-bin" / "trac.wsgi",
               "--env", "trac.env_parent_dir=%s" % parent)
    srv = tracfront(*app, "--basic-auth",
                    "one,%s,One" % files["htpasswd"], "--digest-auth",
                    "two,%s,%s" % (files["htdigest"], DREALM), env=TRAC_ENV)
    assert requests.get(srv.url + "one/login", timeout=60).status_code == 401
    one = requests.Session()
    r = one.get(srv.url + "one/login", auth=("apr1", "apr1-pw"), allow_redirects=False,
                timeout=60)
    assert r.status_code in (302, 303), r.text[:500]
    assert "trac_auth" in one.cookies
    assert "apr1" in one.get(srv.url + "one/wiki/WikiStart", timeout=60).text
    two = requests.Session()
    two.auth = HTTPDigestAuth("alice", "wonderland")
    r = two.get(srv.url + "two/login", allow_redirects=False, timeout=60)
    assert r.status_code in (302, 303), r.text[:500]
    two.auth = None
    page = two.get(srv.url + "two/wiki/WikiStart", timeout=60).text
    assert re.search(r"logged in as.*alice", page, re.S)
    r = requests.get(srv.url, timeout=60)  # the index of projects: never challenged
    assert r.status_code == 200 and "one" in r.text and "two" in r.text
