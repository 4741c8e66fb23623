"""The command line and the INI file: values that could only fail later (every
request, or at shutdown) stop tracfront at start naming the flag; options that
do nothing without their main option are refused; --help and README agree;
a start failure is said once on the terminal."""
import os
import pathlib
import pstats
import re
import subprocess
import tempfile

import pytest
import requests

from conftest import start_server
from test_lifecycle import BINARY, ROOT, good_args, run_cli, write_config


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://127.0.0.1:abc",
                                 "http://[::1", "http://127.0.0.1:0", "http://ho^st:80",
                                 "http://user:secret@127.0.0.1:80", "http://@127.0.0.1:80",
                                 "http://user:secret@127.0.0.1:99999", "http://user:secret@h/?x",
                                 "HTTP://user:secret@h", "user:secret@127.0.0.1:80",
                                 "http://user:sec/ret@127.0.0.1:80"])
def test_bad_upstream_url_is_refused(tmp_path, url):
    """They started, and every request was a 502 ("URL using bad/illegal
    format"), or, with user:password@, went out with `Authorization: Basic`
    and the startup line showed the password; a URL refused for another
    reason was quoted with its password."""
    rc, out, err = run_cli(tmp_path, "--listen", "127.0.0.1:0", "--upstream", url, timeout=10)
    assert rc == 2 and "--upstream" in err, (rc, err)
    assert not re.search("sec/?ret", err), err


@pytest.mark.parametrize("flag", ["--profile-log", "--profile-callgrind"])
@pytest.mark.parametrize("value, message", [("{tmp}", "is a folder"), ("", "empty")])
def test_profile_file_that_cannot_be_written_is_refused(tmp_path, flag, value, message):
    """The profile was lost at shutdown ("cannot write /tmp: Is a directory")."""
    rc, out, err = run_cli(tmp_path, *good_args(), flag, value.format(tmp=tmp_path), timeout=10)
    assert rc == 2 and flag in err and message in err, (rc, err)


NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run tracfront as nobody")


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.fixture
def shared_folder():
    """A folder under /tmp (pytest's are root's alone), removed afterwards."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="tf-options-"))
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=True)


@needs_root
@pytest.mark.parametrize("theirs", ["p.pstats", "p.pstats.tmp"])
def test_profile_file_another_user_owns_in_a_sticky_folder_is_refused(shared_folder, theirs,
                                                                     for_nobody):
    """As nobody, root's p.pstats (or p.pstats.tmp), writable by all, in a
    sticky world-writable folder (/tmp): it was taken, and the profile lost at
    SIGTERM (renaming p.pstats.tmp onto it: "Operation not permitted")."""
    shared_folder.chmod(0o1777)
    (shared_folder / theirs).write_text("root's")
    (shared_folder / theirs).chmod(0o666)
    proc = subprocess.run([str(for_nobody.binary), "--listen", "127.0.0.1:0", "--upstream",
                           "http://127.0.0.1:9", "--profile-log", str(shared_folder / "p.pstats")],
                          cwd=str(shared_folder), preexec_fn=as_nobody,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=10, env={k: v for k, v in os.environ.items()
                                           if k != "PYTHONPATH"})
    assert proc.returncode == 2, proc.stderr
    assert "--profile-log" in proc.stderr and "sticky" in proc.stderr, proc.stderr
    assert theirs in proc.stderr, proc.stderr
    assert (shared_folder / theirs).read_text() == "root's"


@needs_root
def test_own_read_only_profile_file_in_own_folder_is_replaced(shared_folder, for_nobody):
    """As nobody, its own p.pstats, mode 0444, in its own folder: refused at
    start ("Permission denied"), though renaming p.pstats.tmp onto it works."""
    log, workdir = shared_folder / "p.pstats", shared_folder / "srv"
    workdir.mkdir()
    log.write_text("old")
    for path in (shared_folder, workdir, log):
        os.chown(path, NOBODY, NOBODY)
    log.chmod(0o444)
    srv = start_server(workdir, "--app", "profiled_app:app", "--profile",
                       "--profile-discard-first", "false", "--profile-log", log,
                       preexec_fn=as_nobody, binary=for_nobody.binary, apps=for_nobody.apps)
    try:
        assert requests.get(srv.url, timeout=10).status_code == 200
    finally:
        assert srv.stop() == 0, srv.error_log
    assert "wrote %s" % log in srv.error_log, srv.error_log
    assert [v[1] for f, v in pstats.Stats(str(log)).stats.items() if f[2] == "workload"] == [1]


@needs_root
def test_a_planted_tmp_symlink_is_not_written_through(shared_folder, tmp_path):
    """Another user's symlink at p.pstats.tmp in a sticky folder, to a file of
    root's: root's tracfront wrote its profile through it (fopen followed
    it). Now a new p.pstats.tmp is made (O_EXCL), and the victim is intact."""
    shared_folder.chmod(0o1777)
    victim = tmp_path / "victim"
    victim.write_text("root's own")
    planted = shared_folder / "p.pstats.tmp"
    os.symlink(victim, planted)
    os.chown(planted, NOBODY, NOBODY, follow_symlinks=False)
    log = shared_folder / "p.pstats"
    srv = start_server(tmp_path / "srv", "--app", "profiled_app:app", "--profile",
                       "--profile-discard-first", "false", "--profile-log", log)
    try:
        assert requests.get(srv.url, timeout=10).status_code == 200
    finally:
        assert srv.stop() == 0, srv.error_log
    assert victim.read_text() == "root's own"
    assert "wrote %s" % log in srv.error_log, srv.error_log
    assert pstats.Stats(str(log)).total_calls > 0


def test_a_folder_where_the_profile_is_first_written_is_refused(tmp_path):
    (tmp_path / "p.pstats.tmp").mkdir()
    rc, out, err = run_cli(tmp_path, *good_args(), "--profile-log", tmp_path / "p.pstats",
                           timeout=10)
    assert rc == 2 and "p.pstats.tmp' is a folder" in err, (rc, err)


@pytest.mark.parametrize("flag, value", [
    ("--worker-start-timeout", "0"), ("--worker-start-timeout", "0.5"),
    ("--upstream-connect-timeout", "0"), ("--upstream-connect-timeout", "0.0004"),
    ("--upstream-read-timeout", "0.0000001"), ("--upstream-read-timeout", "0.0009"),
])
def test_timeouts_too_short_to_work_are_refused(tmp_path, flag, value):
    """--worker-start-timeout 0: no worker could ever start; --upstream-connect-
    timeout 0 (or under half a millisecond) meant libcurl's 300 s; --upstream-
    read-timeout under a microsecond meant no limit (0, as it is meant, is
    taken: test_config.c)."""
    extra = ["--workers", "1"] if flag == "--worker-start-timeout" else \
        ["--upstream", "http://127.0.0.1:9"]
    rc, out, err = run_cli(tmp_path, *good_args(), *extra, flag, value, timeout=10)
    assert rc == 2 and flag in err and "at least" in err, (rc, err)


def test_connect_timeout_of_a_millisecond_is_taken(tracfront, upstream):
    up = upstream()
    srv = tracfront("--upstream", up.url, "--upstream-connect-timeout", "0.001")
    assert srv.alive()


@pytest.mark.parametrize("flag", ["--trac-env", "--trac-env-parent-dir"])
@pytest.mark.parametrize("key", ["trac.env_path", "trac.env_parent_dir"])
def test_env_cannot_name_another_trac_environment(tmp_path, flag, key):
    """--trac-env p1 --env trac.env_path=p2 served p2, while the startup line,
    --reload and --basic-auth went by p1."""
    rc, out, err = run_cli(tmp_path, "--listen", "127.0.0.1:0", flag, tmp_path,
                           "--env", "%s=/elsewhere" % key, timeout=10)
    assert rc == 2 and key in err and flag in err, (rc, err)


TRAC_STUB = """import os


def dispatch_request(environ, start_response):  # trac.web.main's choice of environment
    environ.setdefault('trac.env_path', os.getenv('TRAC_ENV'))
    environ.setdefault('trac.env_parent_dir', os.getenv('TRAC_ENV_PARENT_DIR'))
    env_path = environ.get('trac.env_path')
    if not env_path:
        project = environ['PATH_INFO'].split('/')[1]
        env_path = os.path.join(environ['trac.env_parent_dir'], project)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [env_path.encode()]
"""


def test_trac_env_variable_does_not_replace_the_parent_dir(tracfront, tmp_path):
    """TRAC_ENV=/srv/other tracfront --trac-env-parent-dir P served /srv/other
    for every project: Trac takes TRAC_ENV when the environ has no
    trac.env_path, and tracd sets it to None. With real Trac: test_trac.py."""
    stub = tmp_path / "stub" / "trac" / "web"
    stub.mkdir(parents=True)
    for init in (stub.parent / "__init__.py", stub / "__init__.py"):
        init.write_text("")
    (stub / "main.py").write_text(TRAC_STUB)
    projects = tmp_path / "projects"
    (projects / "one").mkdir(parents=True)
    srv = tracfront("--pythonpath", tmp_path / "stub", "--trac-env-parent-dir", projects,
                    env={"TRAC_ENV": "/srv/other"})
    r = requests.get(srv.url + "one/wiki", timeout=10)
    assert r.status_code == 200 and r.text == str(projects / "one"), r.text


@pytest.mark.skipif(os.environ.get("TF_SANITIZER") is not None,
                    reason="a sanitizer's runtime must be the first library loaded")
def test_start_failure_after_the_log_is_open_goes_to_the_error_log(tmp_path):
    """Out of memory making --profile-slowest's table (prof_latency_init) was
    said on stderr only, not in the --error-log file. calloc fails for that
    table alone, through a library preloaded before libc's."""
    shim = tmp_path / "failcalloc.c"
    shim.write_text("#include <stddef.h>\n"
                    "extern void *__libc_calloc(size_t n, size_t size);\n"
                    "void *calloc(size_t n, size_t size)\n"
                    "{ return n == 7777 ? NULL : __libc_calloc(n, size); }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "failcalloc.so"), str(shim)],
                   check=True, timeout=60)
    log = tmp_path / "error.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["LD_PRELOAD"] = str(tmp_path / "failcalloc.so")
    proc = subprocess.run([str(BINARY), *good_args(), "--profile-slowest", "7777",
                           "--error-log", str(log)], cwd=str(tmp_path), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("out of memory") == 1, proc.stderr
    assert log.read_text().count("out of memory") == 1, log.read_text()


@pytest.mark.parametrize("flag, extra, needs", [
    ("--upstream-host", ["--upstream-host", "backend"], "--upstream"),
    ("--upstream-pin", ["--upstream-pin"], "--upstream"),
    ("--upstream-read-timeout", ["--upstream-read-timeout", "5"], "--upstream"),
    ("--upstream-connect-timeout", ["--upstream-connect-timeout", "5"], "--upstream"),
    ("--request-timeout-action", ["--request-timeout-action", "504"], "--request-timeout"),
    ("--dump-all", ["--dump-all"], "--request-timeout"),
    ("--dump-all", ["--request-timeout", "0", "--dump-all"], "--request-timeout"),
    ("--profile-flush-at-shutdown", ["--profile-flush-at-shutdown"], "--profile-log"),
    ("--digest-nonce-lifetime", ["--digest-nonce-lifetime", "60"], "--digest-auth"),
    ("--digest-nonce-lifetime", ["--digest-nonce-lifetime", "300"], "--digest-auth"),
    ("--worker-start-timeout", ["--worker-start-timeout", "30"], "--workers or --reload"),
])
def test_option_without_its_main_option_is_refused(tmp_path, flag, extra, needs):
    rc, out, err = run_cli(tmp_path, *good_args(), *extra, timeout=10)
    assert rc == 2 and flag + ": only with " + needs in err, (rc, err)


@pytest.mark.parametrize("line, message", [
    ("upstream_pin = true", "--upstream-pin: only with --upstream"),
    ("worker-start-timeout = 60", "--worker-start-timeout: only with --workers or --reload"),
    ("digest_nonce_lifetime = 300", "--digest-nonce-lifetime: only with --digest-auth"),
])
def test_option_without_its_main_option_is_refused_in_the_ini_file(tmp_path, line, message):
    cfg = write_config(tmp_path, line + "\n")
    rc, out, err = run_cli(tmp_path, "--config", cfg, *good_args(), timeout=10)
    assert rc == 2 and message in err, (rc, err)


def test_options_with_their_main_option_start(tracfront, upstream, tmp_path):
    up = upstream()
    srv = tracfront("--app", "robust_apps:app", "--upstream", up.url, "--route", "/legacy=upstream",
                    "--upstream-host", "backend", "--upstream-pin", "--upstream-read-timeout", "5",
                    "--request-timeout", "30", "--request-timeout-action", "504", "--dump-all",
                    "--profile-log", tmp_path / "p.pstats", "--profile-flush-at-shutdown")
    assert requests.get(srv.url + "legacy/echo", timeout=10).status_code == 200


@pytest.mark.parametrize("flags", [["--workers", "1"], ["--reload"]])
def test_worker_start_timeout_with_workers_starts(tracfront, flags):
    """Its workers get the same command line (with --worker): they start too."""
    srv = tracfront("--app", "robust_apps:app", *flags, "--worker-start-timeout", "30")
    assert requests.get(srv.url + "hello", timeout=10).status_code == 200


@pytest.mark.parametrize("word", ["maybe", "-x"])
def test_yes_no_flag_followed_by_a_word_names_the_flag(tmp_path, word):
    rc, out, err = run_cli(tmp_path, *good_args(), "--inline-fast-calls", word, timeout=10)
    assert rc == 2, (rc, err)
    assert "--inline-fast-calls: '%s' is not true or false" % word in err, err


def help_entries(text):
    """--help's flags, each with its text (up to the next flag)."""
    entries, flag = {}, None
    for line in text.splitlines():
        m = re.match(r"  (--[a-z-]+)", line)
        if m:
            flag = m.group(1)
            entries[flag] = ""
            for more in re.findall(r", (--[a-z-]+)", line):
                entries[more] = ""
        if flag and not line.strip().endswith(":"):
            entries[flag] += " " + line.strip()
    return entries


def readme_entries():
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\| `(--[a-z-]+)[^|]*\|([^|]*)\|(.*)\|$", line.replace("\\|", "/"))
        if m:
            rows[m.group(1)] = m.group(2) + " " + m.group(3)
            for more in re.findall(r", `(--[a-z-]+)`", line.split("|")[1]):
                rows[more] = rows[m.group(1)]
    return rows


def test_help_and_readme_name_the_same_flags_and_say_what_0_means(tmp_path):
    rc, out, err = run_cli(tmp_path, "--help")
    assert rc == 0, err
    helps, readme = help_entries(out), readme_entries()
    assert sorted(helps) == sorted(readme), (set(helps) ^ set(readme))
    for flag, row in readme.items():
        if re.search(r"\b0(?: =|:| \()", row):  # README says what 0 means
            assert re.search(r"\b0\b", helps[flag]), "--help does not say what %s 0 does: %s" \
                % (flag, helps[flag])
    assert "iterable" in helps["--max-spill"], helps["--max-spill"]
    assert "loopback only" not in helps["--profile-path"], helps["--profile-path"]
    assert "--profile-allow" in helps["--profile-path"], helps["--profile-path"]
    # as main.c does it: the logs are opened once the switch is made, never by root
    assert "logs are opened as USER" in helps["--user"], helps["--user"]


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]])
def test_start_failure_is_said_once_on_the_terminal(tmp_path, workers):
    """The error log is stderr by default: the error went to both, and showed
    two or three times."""
    rc, out, err = run_cli(tmp_path, "--listen", "127.0.0.1:0", "--app", "nosuch_xyz", *workers)
    assert rc == 1, err
    assert err.count("'nosuch_xyz' (is it on --pythonpath?): ") == 1, err
    assert err.count("did not start") == (1 if workers else 0), err


def test_start_failure_goes_to_the_error_log_file_too(tmp_path):
    log = tmp_path / "error.log"
    rc, out, err = run_cli(tmp_path, "--listen", "127.0.0.1:0", "--app", "nosuch_xyz",
                           "--error-log", log)
    assert rc == 1, err
    assert err.count("'nosuch_xyz' (is it on --pythonpath?): ") == 1, err
    assert log.read_text().count("'nosuch_xyz' (is it on --pythonpath?): ") == 1, log.read_text()


@pytest.mark.parametrize("args, message", [
    # a flag whose value was forgotten took the next flag as its value
    (["--threads", "--app", "hello:application"],
     "--threads needs a value, and the next argument, --app, is a flag"),
    (["--app", "hello:application", "--config", "--threads", "3"],
     "--config needs a value, and the next argument, --threads, is a flag"),
    # the profiler answers everything under its path: such a route is never reached
    (["--app", "hello:application", "--static", "/__profile__/x={tmp}"],
     "--static /__profile__/x: under --profile-path /__profile__"),
    (["--app", "hello:application", "--profile-path", "/p", "--route", "/p=upstream",
      "--upstream", "http://127.0.0.1:9"], "--route /p: under --profile-path /p"),
    # the upstream is spoken to in plain HTTP, as the README says
    (["--upstream", "https://127.0.0.1:8443"], "tracfront speaks plain HTTP to its upstream"),
    (["--app", "hello:application", "--env", "wsgi.url_scheme=ftp"],
     "'wsgi.url_scheme' cannot be set: its value may be http or https only"),
])
def test_a_setting_that_cannot_work_is_refused_naming_it(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    rc, out, err = run_cli(tmp_path, "--listen", "127.0.0.1:0", *args, timeout=10)
    assert rc == 2 and message in err, (rc, err)


def test_a_value_that_starts_with_two_dashes_is_given_with_an_equals_sign(tracfront):
    srv = tracfront("--app", "worker_app:app", "--env=X_VALUE=--x", "--env", "Y_VALUE=--y")
    cgi = requests.get(srv.url + "pid", timeout=10).json()["cgi"]
    assert (cgi["X_VALUE"], cgi["Y_VALUE"]) == ("--x", "--y"), cgi
