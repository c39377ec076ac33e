"""Daemons run as plain processes with a pidfile (service mode ``process``).

For machines without systemd (the tests and the demo). Each daemon is described by a
:class:`Daemon`: the command that starts it (the daemon writes ``pidfile`` itself, or is started in
the foreground and this module writes it), how to reload it, and how to stop it. This is the one
supervisor of the repository: the harness (``harness/processes.py``) runs the lab's salt-masters
and salt-minions with it too.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

from paphosting import waiting
from paphosting.errors import PapError


class DaemonError(PapError):
    pass


@dataclass(frozen=True)
class Daemon:
    name: str
    command: tuple  # argv that starts the daemon
    pidfile: str
    foreground: bool = False  # True: command stays in the foreground; we write the pidfile
    reload_signal: int = signal.SIGHUP
    reload_command: tuple | None = None  # when set, run instead of sending reload_signal
    stop_signal: int = signal.SIGTERM
    log: str | None = None  # where stdout/stderr of the daemon go
    env: dict = field(default_factory=dict)
    # True: stop the daemon's whole process group (it leads one: started here in its own session),
    # so that children it forked go with it even when it is killed.
    group: bool = False


def read_pid(pidfile):
    try:
        with open(pidfile, encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def alive(pid):
    """True when ``pid`` runs (a zombie child does not count)."""
    if not pid:  # None, or 0 (which os.kill would take as "our process group")
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def group_alive(pgid):
    """True while any process of process group ``pgid`` runs (zombies do not count)."""
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


def leads_group(pid):
    """True when ``pid`` runs and leads its own process group."""
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, TypeError):
        return False


def _signal(pid, sig, group):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def terminate(pid, wait=10.0, sig=signal.SIGTERM, group=False):
    """Stop process ``pid`` (with ``group``: the process group it leads): ``sig``, up to ``wait``
    seconds for it to end, then ``SIGKILL``. True when it ran."""
    if not alive(pid):
        return False
    running = (lambda: group_alive(pid)) if group else (lambda: alive(pid))
    _signal(pid, sig, group)
    if not waiting.until(lambda: not running(), wait):
        _signal(pid, signal.SIGKILL, group)
        waiting.until(lambda: not running(), 5)
    return True


def pid(daemon):
    """The pid of the running daemon, or None."""
    p = read_pid(daemon.pidfile)
    return p if alive(p) else None


def running(daemon):
    return pid(daemon) is not None


def start(daemon, wait=10.0):
    """Start the daemon unless it runs; return its pid. Raises :class:`DaemonError` on failure."""
    current = pid(daemon)
    if current:
        return current
    os.makedirs(os.path.dirname(os.path.abspath(daemon.pidfile)), exist_ok=True)
    log = open(daemon.log or os.devnull, "ab")  # noqa: SIM115 - handed to the child
    env = dict(os.environ, **daemon.env)
    try:
        proc = subprocess.Popen(
            daemon.command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    except OSError as exc:
        raise DaemonError(f"{daemon.name}: cannot run {daemon.command[0]}: {exc}") from exc
    finally:
        log.close()
    if daemon.foreground:
        with open(daemon.pidfile, "w", encoding="ascii") as fh:
            fh.write(f"{proc.pid}\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        current = pid(daemon)
        if current and (daemon.foreground or proc.poll() is not None):
            if daemon.foreground and proc.poll() is not None:
                break
            return current
        if not daemon.foreground and proc.poll() not in (None, 0):
            break
        time.sleep(0.05)
    code = proc.poll()
    tail = ""
    if daemon.log and os.path.exists(daemon.log):
        with open(daemon.log, encoding="utf-8", errors="replace") as fh:
            tail = "".join(fh.readlines()[-15:])
    raise DaemonError(
        f"{daemon.name} did not start (exit status {code}); log {daemon.log}:\n{tail}"
    )


def reload(daemon):
    """Reload the running daemon's configuration; start it when it is not running."""
    current = pid(daemon)
    if current is None:
        return start(daemon)
    if daemon.reload_command:
        res = subprocess.run(daemon.reload_command, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise DaemonError(
                f"{daemon.name}: reload command {' '.join(daemon.reload_command)} failed: "
                f"{(res.stdout + res.stderr).strip()}"
            )
    else:
        os.kill(current, daemon.reload_signal)
    return current


def stop(daemon, wait=10.0):
    """Stop the daemon; True when it was running."""
    current = pid(daemon)
    if current is None:
        return False
    terminate(current, wait, daemon.stop_signal, group=daemon.group and leads_group(current))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(daemon.pidfile)
    return True


def port_open(address, port, timeout=0.5):
    """Whether something accepts a TCP connection on ``address``:``port`` within ``timeout``."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False
