"""Process-mode service management against a real long-running process."""

import pathlib
import signal
import sys
import time

import pytest

from harness.wait import wait_until
from paphosting import daemon
from paphosting.daemon import Daemon, DaemonError

SCRIPT = """
import signal, sys, time
out = open(sys.argv[1], "a")
def hup(*_):
    out.write("reloaded\\n"); out.flush()
signal.signal(signal.SIGHUP, hup)
out.write("started\\n"); out.flush()
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def proc(tmp_path):
    script = tmp_path / "d.py"
    script.write_text(SCRIPT)
    d = Daemon(
        name="testd",
        command=(sys.executable, str(script), str(tmp_path / "out")),
        pidfile=str(tmp_path / "run" / "testd.pid"),
        foreground=True,
        log=str(tmp_path / "log"),
    )
    yield d
    daemon.stop(d)


def _wait_for(path, text, timeout=10):
    """True once ``path`` exists and holds ``text``."""
    return bool(wait_until(lambda: text in path.read_text(), timeout, error=None))


def test_start_is_idempotent_reload_and_stop(proc, tmp_path):
    pid = daemon.start(proc)
    assert daemon.pid(proc) == pid
    assert daemon.start(proc) == pid  # already running: nothing started
    assert _wait_for(tmp_path / "out", "started")
    assert daemon.reload(proc) == pid
    assert _wait_for(tmp_path / "out", "reloaded")
    assert daemon.stop(proc) is True
    assert daemon.pid(proc) is None
    assert daemon.stop(proc) is False


def test_stale_pidfile_is_not_running(proc):
    pidfile = pathlib.Path(proc.pidfile)
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text("999999\n")
    assert daemon.running(proc) is False


def test_start_failure_reports_log(tmp_path):
    d = Daemon(
        name="broken",
        command=(sys.executable, "-c", "import sys; print('bad config at line 3'); sys.exit(4)"),
        pidfile=str(tmp_path / "broken.pid"),
        log=str(tmp_path / "broken.log"),
    )
    with pytest.raises(DaemonError, match="bad config at line 3"):
        daemon.start(d, wait=3)


def test_missing_binary(tmp_path):
    d = Daemon(name="nope", command=("/nonexistent/bin",), pidfile=str(tmp_path / "p"))
    with pytest.raises(DaemonError, match="cannot run /nonexistent/bin"):
        daemon.start(d)


def test_reload_signal_default():
    assert Daemon(name="x", command=("x",), pidfile="p").reload_signal == signal.SIGHUP


FORKS = """
import os, signal, sys, time
child = os.fork()
if child == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
    open(sys.argv[1], "w").write(str(os.getpid()))
    while True:
        time.sleep(0.05)
while True:
    time.sleep(0.05)
"""


def _forking(tmp_path, group):
    script = tmp_path / "forks.py"
    script.write_text(FORKS)
    return Daemon(
        name="forks",
        command=(sys.executable, str(script), str(tmp_path / "child")),
        pidfile=str(tmp_path / "forks.pid"),
        foreground=True,
        group=group,
    )


def _child(tmp_path):
    assert _wait_for(tmp_path / "child", "")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = (tmp_path / "child").read_text()
        if text:
            return int(text)
        time.sleep(0.05)
    raise AssertionError("the forked child never wrote its pid")


def test_group_stop_ends_the_children_too(tmp_path):
    d = _forking(tmp_path, group=True)
    daemon.start(d)
    child = _child(tmp_path)
    assert daemon.stop(d, wait=1) is True
    assert not daemon.alive(child)
    assert not daemon.group_alive(child)


def test_plain_stop_ends_the_daemon_only(tmp_path):
    d = _forking(tmp_path, group=False)
    pid = daemon.start(d)
    child = _child(tmp_path)
    try:
        assert daemon.stop(d, wait=1) is True
        assert not daemon.alive(pid)
        assert daemon.alive(child)
    finally:
        daemon.terminate(child, wait=0)
    assert not daemon.alive(child)


def test_terminate_kills_what_ignores_sigterm(tmp_path):
    d = _forking(tmp_path, group=True)
    daemon.start(d)
    child = _child(tmp_path)
    t0 = time.monotonic()
    assert daemon.terminate(child, wait=0.5) is True
    assert not daemon.alive(child)
    assert time.monotonic() - t0 >= 0.5  # SIGTERM was ignored: it took the SIGKILL
    daemon.stop(d)
    assert daemon.terminate(child) is False  # not running any more
