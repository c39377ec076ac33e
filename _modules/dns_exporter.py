"""The nameserver's Prometheus exporter: its statistics under common metric names.

A small process (:mod:`paphosting.dnsmetrics`) reads the DNS server's own statistics (BIND's
statistics channel, Knot's ``knotc stats``, ``nsd-control stats_noreset``) and serves
``/metrics`` on the nameserver's listener of ``paphosting:metrics:nameservers``. In service mode
``process`` it runs with a pidfile under ``paphosting_root``; in mode ``systemd`` as the unit
``paphosting-dns-exporter``. See ``docs/monitoring.md``.
"""

import json
import os

from salt.exceptions import CommandExecutionError

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import daemon as pdaemon
from paphosting import files, saltcontext
from paphosting.errors import PapError

try:
    from paphosting import dnsmetrics

    HAS_PROMETHEUS = True
except ImportError:
    HAS_PROMETHEUS = False

__virtualname__ = "dns_exporter"


def __virtual__():
    if not HAS_PROMETHEUS:
        return (False, "dns_exporter needs the Python package prometheus_client")
    return __virtualname__


def _root():
    return saltcontext.root(__opts__)


def _wanted(nameserver=None):
    """``(nameserver, service mode, config text or None)``."""
    platform = saltcontext.renderer(__opts__, __context__, __pillar__).platform
    ns = saltcontext.nameserver(__opts__, platform, nameserver)
    try:
        conf = dnsmetrics.exporter_config(platform, ns.name, _root(), __opts__["cachedir"])
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    text = None if conf is None else json.dumps(conf, indent=1, sort_keys=True) + "\n"
    return ns.name, ns.service_mode, text


def render(nameserver=None):
    """
    The exporter's config for this nameserver (JSON text), or None when
    ``paphosting:metrics:nameservers`` gives it no listener.

    CLI Example:

    .. code-block:: bash

        salt-call dns_exporter.render
    """
    return _wanted(nameserver)[2]


def status(nameserver=None):
    """
    What runs and what is written: ``{"configured", "mode", "running", "enabled",
    "config_current", "unit_current", "config", "diff"}``; ``enabled``: the unit is enabled at
    boot (always True in mode ``process``).

    CLI Example:

    .. code-block:: bash

        salt-call dns_exporter.status
    """
    _, mode, text = _wanted(nameserver)
    lay = dnsmetrics.layout(_root())
    current = files.read(lay["config"])
    if mode == "systemd":
        running = bool(__salt__["service.status"](dnsmetrics.UNIT))
        enabled = bool(__salt__["service.enabled"](dnsmetrics.UNIT))
        unit_current = files.read(lay["unit"]) == dnsmetrics.systemd_unit(_root())
    else:
        running = pdaemon.running(dnsmetrics.daemon(_root()))
        enabled = unit_current = True
    return {
        "configured": text is not None,
        "mode": mode,
        "running": running,
        "enabled": enabled,
        "config_current": current == text,
        "unit_current": unit_current,
        "config": lay["config"],
        "diff": files.unified_diff(current, text, lay["config"]) if text is not None else "",
    }


def apply(nameserver=None):
    """
    Write the exporter's config (and its unit in systemd mode) and (re)start it when the config
    changed or it does not run, and in systemd mode enable its unit at boot (fails when
    ``systemctl enable`` does); stop it when the pillar gives this nameserver no listener.
    Returns :func:`status` as it is afterwards.

    CLI Example:

    .. code-block:: bash

        salt-call dns_exporter.apply
    """
    _, mode, text = _wanted(nameserver)
    before = status(nameserver)
    lay = dnsmetrics.layout(_root())
    proc = dnsmetrics.daemon(_root())
    try:
        if text is None:
            if mode == "systemd":
                __salt__["service.stop"](dnsmetrics.UNIT)
            else:
                pdaemon.stop(proc)
            return status(nameserver)
        for path in (lay["config"], lay["log"], lay["pidfile"]):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        files.write_checked(lay["config"], text, mode=0o644)
        if mode == "systemd":
            os.makedirs(os.path.dirname(lay["unit"]), exist_ok=True)
            files.write_checked(lay["unit"], dnsmetrics.systemd_unit(_root()))
            if not before["unit_current"]:
                __salt__["service.systemctl_reload"]()
            if before["running"] and not (before["config_current"] and before["unit_current"]):
                __salt__["service.restart"](dnsmetrics.UNIT)
            else:
                __salt__["service.start"](dnsmetrics.UNIT)
            if not __salt__["service.enable"](dnsmetrics.UNIT):
                # A masked or missing unit: the exporter would not come back after a reboot.
                raise CommandExecutionError(f"systemctl enable {dnsmetrics.UNIT} failed")
        else:
            if before["running"] and not before["config_current"]:
                pdaemon.stop(proc)
            pdaemon.start(proc)
    except (PapError, OSError) as exc:
        raise CommandExecutionError(str(exc)) from exc
    return status(nameserver)
