"""The authoritative DNS server of a nameserver minion: BIND 9, NSD or Knot, chosen in pillar.

Configs are rendered from the ``paphosting`` pillar (``paphosting:nameservers:<id>:server``) and
validated by the server's own checker before they are written. In service mode ``systemd`` the
distribution's unit is driven through ``service.*``; in mode ``process`` the server runs as a plain
process with a pidfile under ``paphosting_root``. See ``docs/dns.md``.
"""

import grp
import os

from salt.exceptions import CommandExecutionError

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import daemon as pdaemon
from paphosting import dnsserver, files, saltcontext, waiting
from paphosting.errors import PapError

__virtualname__ = "dns_server"


def __virtual__():
    if not any(dnsserver.installed(s) for s in dnsserver.SERVERS):
        return (False, "dns_server: no DNS server is installed (named, nsd or knotd)")
    return __virtualname__


def _root():
    return saltcontext.root(__opts__)


def _renderer(pillar=None):
    return saltcontext.renderer(__opts__, __context__, __pillar__ if pillar is None else pillar)


def _ns(nameserver=None, pillar=None):
    return saltcontext.nameserver(__opts__, _renderer(pillar), nameserver)


def _platform_and_ns(nameserver=None, pillar=None):
    """``(platform, nameserver)``: the whole platform, for the server's config."""
    renderer = _renderer(pillar)
    return renderer.platform, saltcontext.nameserver(__opts__, renderer, nameserver)


def info(nameserver=None):
    """
    The nameserver's server, service mode, systemd unit, packages and file layout.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.info
    """
    ns = _ns(nameserver)
    out = dnsserver.layout(ns, _root())
    out.update(name=ns.name, address=ns.address, port=ns.port, mode=ns.service_mode)
    return out


def render(nameserver=None):
    """
    Render the server's config file from pillar (nothing is written).

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.render
    """
    platform, ns = _platform_and_ns(nameserver)
    return dnsserver.render_config(platform, ns.name, _root())


def _wanted_files(platform, ns):
    """{path: text} of every config file the server needs (the main config last)."""
    root = _root()
    lay = dnsserver.layout(ns, root)
    out = {}
    if ns.server == "bind":
        out[lay["control"]["conf"]] = dnsserver.rndc_conf(ns, root)
    out[lay["config"]] = dnsserver.render_config(platform, ns.name, root)
    return out


def check(nameserver=None):
    """
    Validate the rendered config with the server's own checker on a temporary file.

    ``named-checkconf``, ``nsd-checkconf`` or ``knotc conf-check``. Returns True, or fails with
    the checker's output.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.check
    """
    platform, ns = _platform_and_ns(nameserver)
    try:
        dnsserver.check_config_before_write(
            ns, dnsserver.render_config(platform, ns.name, _root()), _root()
        )
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return True


def diff(nameserver=None):
    """
    What writing the config would change: ``{"changed": bool, "diff": unified diff, "key": bool}``.

    ``key`` is True when the key file the config includes would be created (BIND's rndc key,
    Knot's update key: :func:`paphosting.dnsserver.key_file`), ``key_file`` its path (or None).

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.diff
    """
    platform, ns = _platform_and_ns(nameserver)
    text = ""
    for path, wanted in _wanted_files(platform, ns).items():
        current = files.read(path)
        if current != wanted:
            text += files.unified_diff(current, wanted, path)
    key_file = dnsserver.key_file(ns, _root())
    key = key_file is not None and not os.path.exists(key_file[0])
    return {
        "changed": bool(text) or key,
        "diff": text,
        "key": key,
        "key_file": key_file[0] if key_file else None,
    }


def _group(name):
    try:
        grp.getgrnam(name)
    except KeyError:
        return None
    return name


def write(nameserver=None):
    """
    Write the server's config after its checker accepted it on a temporary file.

    Creates the directories, and the key file the config includes when there is none (BIND's
    rndc key, Knot's update key; never rewritten). Returns what :func:`diff` returned before the write.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.write
    """
    platform, ns = _platform_and_ns(nameserver)
    lay = dnsserver.layout(ns, _root())
    before = diff(nameserver)
    try:
        for d in lay["dirs"]:
            os.makedirs(d, mode=0o755, exist_ok=True)
        key_file = dnsserver.key_file(ns, _root())
        if before["key"]:
            files.write_checked(key_file[0], key_file[1](), mode=0o640, group=_group(ns.server))
        for path, text in reversed(list(_wanted_files(platform, ns).items())):
            if files.read(path) == text:
                continue
            check = None
            if path == lay["config"]:
                check = lambda tmp: dnsserver.check_config_file(ns, tmp)  # noqa: E731
            files.write_checked(path, text, check=check, mode=0o644)
    except (PapError, OSError) as exc:
        raise CommandExecutionError(str(exc)) from exc
    return before


def status(nameserver=None):
    """
    Whether the server runs: ``{"running": bool, "pid": int or None, "mode": ..., "answering": bool}``.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.status
    """
    ns = _ns(nameserver)
    if ns.service_mode == "systemd":
        unit = dnsserver.UNITS[ns.server]
        running = bool(__salt__["service.status"](unit))
        pid = None
    else:
        pid = pdaemon.pid(dnsserver.daemon(ns, _root()))
        running = pid is not None
    return {
        "running": running,
        "pid": pid,
        "mode": ns.service_mode,
        "server": ns.server,
        "answering": running and dnsserver.answering(ns),
    }


def running(nameserver=None, pillar=None):
    """
    True when the server runs (its systemd unit, or its process in mode ``process``).

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    pillar
        The pillar to read the platform from; default: this minion's (in memory).

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.running
    """
    return _running(_ns(nameserver, pillar))


def _running(ns):
    return dnsserver.running(ns, _root(), __salt__.get("service.status"))


def _wait_answering(ns):
    if not waiting.until(lambda: dnsserver.answering(ns), 10.0, 0.1):
        raise CommandExecutionError(
            f"{ns.server} runs but does not answer on {ns.address} port {ns.port}"
            + (
                " (BIND listens only on addresses configured on a network interface: on 127.0.0.0/8 "
                "that is 127.0.0.1 unless the address is added to lo)"
                if ns.server == "bind"
                else ""
            )
        )


def start(nameserver=None):
    """
    Start the server (systemd unit, or the process in mode ``process``) and wait until it answers.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.start
    """
    ns = _ns(nameserver)
    if ns.service_mode == "systemd":
        if not __salt__["service.start"](dnsserver.UNITS[ns.server]):
            raise CommandExecutionError(f"systemctl start {dnsserver.UNITS[ns.server]} failed")
    else:
        try:
            pdaemon.start(dnsserver.daemon(ns, _root()))
        except PapError as exc:
            raise CommandExecutionError(str(exc)) from exc
    _wait_answering(ns)
    return True


def stop(nameserver=None):
    """
    Stop the server; True when it was running.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.stop
    """
    ns = _ns(nameserver)
    if ns.service_mode == "systemd":
        unit = dnsserver.UNITS[ns.server]
        was = bool(__salt__["service.status"](unit))
        return __salt__["service.stop"](unit) and was
    return pdaemon.stop(dnsserver.daemon(ns, _root()))


def reload(nameserver=None):
    """
    Reload the running server's config and zones (``rndc reload``, ``nsd-control reconfig`` and
    ``reload``, ``knotc reload``; ``service.reload`` in systemd mode). Starts it when it is not
    running.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.reload
    """
    ns = _ns(nameserver)
    if not _running(ns):
        start(nameserver)
        return "started"
    try:
        if ns.service_mode == "systemd" and ns.server != "nsd":
            if not __salt__["service.reload"](dnsserver.UNITS[ns.server]):
                raise CommandExecutionError(f"systemctl reload {dnsserver.UNITS[ns.server]} failed")
        else:
            for argv in dnsserver.reload_commands(ns, _root()):
                dnsserver.run_control(argv)
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    _wait_answering(ns)
    return "reloaded"


def served_serial(zone, nameserver=None, pillar=None):
    """
    The SOA serial the running server answers for ``zone``, or None.

    zone
        The zone name.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    pillar
        The pillar to read the platform from; default: this minion's (in memory). Callers that
        compiled a fresh one (``rotation.apply``) pass it.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.served_serial paphosting.nl
    """
    ns = _ns(nameserver, pillar)
    if not _running(ns):
        return None
    return dnsserver.served_serial(ns, zone.rstrip("."))


def reload_zone(zone, serial=None, nameserver=None, pillar=None):
    """
    Reload one zone on the running server and wait until it serves ``serial``.

    ``rndc reload <zone>``, ``nsd-control reload <zone>`` or ``knotc zone-reload <zone>``. A zone the
    running server does not know yet (just added to the config) gets a full reload instead. Returns
    ``"not running"`` (the zone loads when the server starts), or ``"reloaded"``.

    zone
        The zone name.

    serial
        The serial the server must answer after the reload (waits up to 10 s); None: don't wait.

    nameserver, pillar
        As for :func:`served_serial`.

    CLI Example:

    .. code-block:: bash

        salt-call dns_server.reload_zone paphosting.nl
    """
    ns = _ns(nameserver, pillar)
    zone = zone.rstrip(".").lower()
    if not _running(ns):
        return "not running"
    root = _root()
    before = dnsserver.server_processes(ns, root)
    try:
        try:
            dnsserver.run_control(dnsserver.zone_reload_command(ns, zone, root))
        except dnsserver.ControlError:
            # Not in the running config yet: reload the config (which names the new zone).
            for argv in dnsserver.reload_commands(ns, root):
                dnsserver.run_control(argv)
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    if serial is not None:
        got = waiting.until(lambda: dnsserver.served_serial(ns, zone) == int(serial), 10.0)
        if not got:
            now = dnsserver.served_serial(ns, zone)
            raise CommandExecutionError(
                f"{ns.server} reloaded zone {zone} but serves serial {now}, not {serial}; "
                f"see {dnsserver.layout(ns, root)['log']}"
            )
    dnsserver.wait_reloaded_processes(ns, before, root)
    return "reloaded"
