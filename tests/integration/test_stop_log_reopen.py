"""SIGUSR1 (logrotate) during a stop of a server without --workers: the logs
are reopened and the new error log says so, as at any other time (the front's
and its workers' during a stop: test_stop.py)."""
import signal

import pytest

from test_stop import hold_requests
from workers_util import APP, wait_for


@pytest.mark.parametrize("phase", ["requests", "atexit"])
def test_sigusr1_during_an_in_process_stop_says_the_logs_were_reopened(tracfront, tmp_path,
                                                                       phase):
    # while the stop waits for a request, and while Python's end runs (a
    # blocking atexit handler, under the watch that bounds it)
    marks = tmp_path / "atexit"
    marks.mkdir()
    env = {"WORKER_ATEXIT_DIR": str(marks)}
    if phase == "atexit":
        env["WORKER_ATEXIT_BLOCK"] = "1"
    srv = tracfront(*APP, "--graceful-timeout", "30", env=env)
    log = srv.workdir / "error.log"
    gate = None
    try:
        if phase == "requests":
            gate, _, _ = hold_requests(srv, tmp_path, n=1)
        srv.proc.send_signal(signal.SIGTERM)
        if phase == "requests":
            wait_for(lambda: "waiting up to" in srv.error_log, 10, "the stop to begin")
        else:
            wait_for(lambda: list(marks.iterdir()), 10, "the atexit handlers to run")
        log.rename(srv.workdir / "error.log.1")
        srv.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: log.exists(), 10, "the error log reopened")
        wait_for(lambda: "SIGUSR1: log files reopened" in log.read_text(), 10,
                 "the reopen's line in the new file")
        if gate:
            gate.touch()
            assert srv.proc.wait(30) == 0
            assert "[info] stopped" in log.read_text(), log.read_text()
    finally:
        if gate:
            gate.touch()
        srv.stop(signal.SIGKILL)
