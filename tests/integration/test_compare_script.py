"""scripts/compare against two real tracfront servers: the table and the --json
output list every path of the URLs file (comments and blank lines skipped)
with numeric timings and ratios, status differences are marked, and a base
that refuses connections is reported per path, without a traceback."""
import json
import re
import subprocess

import pytest

from conftest import ROOT, closed_port

SCRIPT = ROOT / "scripts" / "compare"
PATHS = ["/", "/a", "/b/c?x=1", "/differ-status"]


@pytest.fixture
def urls(tmp_path):
    f = tmp_path / "urls.txt"
    f.write_text("# paths to compare\n\n/\n/a\n   \n/b/c?x=1\n# /commented-out\n/differ-status\n")
    return f


def run(*args):
    p = subprocess.run(["/usr/bin/python3", str(SCRIPT)] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def base(srv):
    return srv.url.rstrip("/")


def test_table_has_every_path_and_ratios(tracfront, urls):
    a = tracfront("--app", "hello:application")
    b = tracfront("--app", "hello:application")
    p = run(urls, base(a), base(b), "--rounds", "3", "--warmup", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    for path in PATHS:
        row = [line for line in lines if line.split()[:1] == [path]]
        assert len(row) == 1, (path, p.stdout)
        cells = row[0].split()
        assert [float(c) for c in cells[1:6]], row  # A med, A p95, B med, B p95, B/A
        assert float(cells[5]) > 0
        assert cells[6:] == ["200", "200"]
    assert "/commented-out" not in p.stdout
    total = [line for line in lines if line.startswith("total")]
    assert len(total) == 1 and float(total[0].split()[-1]) > 0


def test_json_and_status_mismatch(tracfront, urls):
    a = tracfront("--app", "mirror_app:application", "--env", "mirror.side=a")
    b = tracfront("--app", "mirror_app:application", "--env", "mirror.side=b")
    p = run(urls, base(a), base(b), "--rounds", "2", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    rows = {r["path"]: r for r in out["paths"]}
    assert list(rows) == PATHS
    for r in rows.values():
        for side in ("a", "b"):
            assert r[side]["samples"] == 2 and r[side]["errors"] == 0
            assert 0 < r[side]["median_ms"] <= r[side]["p95_ms"]
        assert isinstance(r["ratio"], float) and r["ratio"] > 0
    assert rows["/differ-status"]["a"]["status"] == 200
    assert rows["/differ-status"]["b"]["status"] == 404
    assert rows["/differ-status"]["status_mismatch"] is True
    assert not any(rows[p]["status_mismatch"] for p in PATHS[:3])
    assert out["geomean_ratio"] > 0
    # and the table marks it
    table = run(urls, base(a), base(b), "--rounds", "1", "--warmup", "0").stdout
    row = next(line for line in table.splitlines() if line.startswith("/differ-status"))
    assert re.search(r"200 404 !$", row), row


def test_connection_refused_is_reported_per_path(tracfront, urls):
    a = tracfront("--app", "hello:application")
    dead = "http://127.0.0.1:%d" % closed_port()
    p = run(urls, base(a), dead, "--rounds", "2")
    assert p.returncode == 1
    assert p.stdout.count("connection refused") == len(PATHS), p.stdout
    p = run(urls, base(a), dead, "--rounds", "2", "--json")
    assert p.returncode == 1
    rows = json.loads(p.stdout)["paths"]
    assert [r["path"] for r in rows] == PATHS
    for r in rows:
        assert r["a"]["status"] == 200 and r["a"]["errors"] == 0
        assert r["b"]["errors"] == 2 and r["b"]["error"] == "connection refused"
        assert r["b"]["median_ms"] is None and r["ratio"] is None


def test_bad_usage_is_an_error_not_a_traceback(tmp_path):
    p = run(tmp_path / "missing.txt", "http://127.0.0.1:1", "http://127.0.0.1:2")
    assert p.returncode == 2 and "missing.txt" in p.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    p = run(empty, "http://127.0.0.1:1", "http://127.0.0.1:2")
    assert p.returncode == 2 and "no paths" in p.stderr


def test_paths_are_encoded_for_the_request_line(upstream, tmp_path):
    """A URLs file saved with a BOM, a non-ASCII path and one with a space:
    each is requested, percent-encoded (UTF-8), while an existing %XX, the
    query's reserved characters and a lone % are kept or encoded as meant;
    the table shows the paths as written."""
    a, b = upstream(), upstream()
    f = tmp_path / "urls.txt"
    paths = ["/echo/a", "/echo/café", "/echo/with space", "/echo/a%20b", "/echo/q?x=1&y=a b",
             "/echo/100%"]
    f.write_text("\n".join(paths) + "\n", encoding="utf-8-sig")
    p = run(f, a.url.rstrip("/"), b.url.rstrip("/"), "--rounds", "1", "--warmup", "0",
            "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    rows = json.loads(p.stdout)["paths"]
    assert [r["path"] for r in rows] == paths
    assert all(r["a"]["status"] == 200 and r["b"]["status"] == 200 for r in rows), rows
    for up in (a, b):
        seen = set(up.stats()["by_path"])
        # "?" still starts the query (its space encoded: no error)
        assert seen == {"/echo/a", "/echo/caf%C3%A9", "/echo/with%20space", "/echo/a%20b",
                        "/echo/q", "/echo/100%25"}, seen


def test_a_file_that_is_not_utf8_is_a_usage_error(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("/caf\xe9\n".encode("latin-1"))
    p = run(f, "http://127.0.0.1:1", "http://127.0.0.1:2")
    assert p.returncode == 2 and "UTF-8" in p.stderr, p.stderr
