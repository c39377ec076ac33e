"""The lab's processes: each in its own session (process group), each with a pidfile.

:class:`Process` starts a daemon in the foreground of its own session and writes its pidfile;
:meth:`Process.stop` signals the whole group (the daemon and every child it forked), first
``SIGTERM``, then ``SIGKILL`` after a bounded wait. :func:`sweep` stops whatever a pidfile under a
folder names, but only a process whose command line mentions that folder: the daemons the minions
started (haproxy, the DNS servers, the web applications), and the leftovers of an earlier run that
was killed too hard to clean up after itself.
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import time

from paphosting.daemon import alive


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def read_pid(path):
    try:
        return int(pathlib.Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _signal(pid, sig, group):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _group_alive(pgid):
    """True while any process of group ``pgid`` runs."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def terminate(pid, timeout=15.0, group=None):
    """Stop ``pid`` (and its process group when it leads one): SIGTERM, wait, SIGKILL. True if it ran."""
    if not alive(pid):
        return False
    if group is None:
        try:
            group = os.getpgid(pid) == pid
        except ProcessLookupError:
            return False
    _signal(pid, signal.SIGTERM, group)
    deadline = time.monotonic() + timeout
    running = (lambda: _group_alive(pid)) if group else (lambda: alive(pid))
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)
    if running():
        _signal(pid, signal.SIGKILL, group)
        deadline = time.monotonic() + 5
        while running() and time.monotonic() < deadline:
            time.sleep(0.05)
    return True


def kill(pid, group=None):
    """``SIGKILL`` at once: a machine dying, not a service stopping. True when it ran."""
    if not alive(pid):
        return False
    if group is None:
        group = os.getpgid(pid) == pid
    _signal(pid, signal.SIGKILL, group)
    return True


class Process:
    """A daemon run in the foreground of its own session; ``pidfile`` names it while it runs."""

    def __init__(self, name, argv, pidfile, log, env=None, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.pidfile = pathlib.Path(pidfile)
        self.log = pathlib.Path(log)
        self.env = env
        self.cwd = cwd
        self.proc = None

    @property
    def pid(self):
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        return read_pid(self.pidfile)

    @property
    def running(self):
        if self.proc is not None:
            return self.proc.poll() is None
        return alive(self.pid)

    def start(self):
        if self.running:
            return self.pid
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd,
            )
        self.pidfile.write_text(f"{self.proc.pid}\n")
        return self.proc.pid

    def stop(self, timeout=15.0):
        pid = self.pid
        stopped = terminate(pid, timeout, group=True) if pid else False
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        self.proc = None
        return stopped

    def tail(self, lines=20):
        try:
            return "".join(self.log.read_text(errors="replace").splitlines(True)[-lines:])
        except OSError:
            return ""


def sweep(folder, timeout=10.0):
    """Stop every process a ``*.pid`` file under ``folder`` names whose command line mentions
    ``folder``; return ``[(pidfile, pid, command line)]`` of those that ran."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    mark = str(folder.resolve())
    stopped = []
    for pidfile in sorted(folder.rglob("*.pid")):
        pid = read_pid(pidfile)
        if pid is None or pid == os.getpid() or not alive(pid):
            continue
        cmd = cmdline(pid)
        if mark not in cmd:
            continue
        terminate(pid, timeout)
        stopped.append((str(pidfile), pid, cmd))
    return stopped
