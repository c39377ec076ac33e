"""The lab's processes, run by the product's own supervisor (:mod:`paphosting.daemon`).

:class:`Process` is a :class:`~paphosting.daemon.Daemon` run in the foreground of its own session
(``paphosting.daemon`` writes its pidfile); :meth:`Process.stop` stops its whole process group (the
daemon and every child it forked), ``SIGTERM`` first, ``SIGKILL`` after a bounded wait.
:func:`kill` is a machine dying, not a service stopping. :func:`sweep` stops whatever a pidfile
under a folder names, but only a process whose command line mentions that folder: the daemons the
minions started (haproxy, the DNS servers, the web applications), and the leftovers of an earlier
run that was killed too hard to clean up after itself. :class:`Started` is the ``with`` block of
whatever the harness starts and stops (the lab, Pebble).
"""

import os
import pathlib
import signal

from paphosting import daemon


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def kill(pid, group=None):
    """``SIGKILL`` at once (the process group ``pid`` leads, when ``group`` or when it leads one):
    a machine dying, not a service stopping. Returns once it is gone (the kernel takes a moment),
    True when it ran."""
    if group is None:
        group = daemon.leads_group(pid)
    return daemon.terminate(pid, 5, signal.SIGKILL, group)


class Process:
    """A daemon run in the foreground of its own session; ``pidfile`` names it while it runs."""

    def __init__(self, name, argv, pidfile, log, env=None):
        self.daemon = daemon.Daemon(
            name=name,
            command=tuple(str(a) for a in argv),
            pidfile=str(pidfile),
            foreground=True,
            log=str(log),
            env=dict(env or {}),
            group=True,
        )

    @property
    def name(self):
        return self.daemon.name

    @property
    def log(self):
        return pathlib.Path(self.daemon.log)

    @property
    def pid(self):
        return daemon.pid(self.daemon)

    @property
    def running(self):
        return daemon.running(self.daemon)

    def start(self):
        """Start it unless it runs; its pid. Raises :class:`paphosting.daemon.DaemonError`."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        return daemon.start(self.daemon)

    def stop(self, timeout=15.0):
        """Stop it and its children; True when it ran."""
        return daemon.stop(self.daemon, timeout)

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
        pid = daemon.read_pid(pidfile)
        if pid is None or pid == os.getpid() or not daemon.alive(pid):
            continue
        cmd = cmdline(pid)
        if mark not in cmd:
            continue
        daemon.terminate(pid, timeout, group=daemon.leads_group(pid))
        stopped.append((str(pidfile), pid, cmd))
    return stopped


class Started:
    """``with thing as started``: :meth:`start` (its return is bound), :meth:`stop` at the end,
    and at once when the start fails halfway, so that nothing it started is left running."""

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
