"""A stand-in for Salt's ``service`` module: service mode ``systemd`` on a machine without systemd.

Salt's own module would act on the machine's real units (``nsd``, ``named``), so the functional
tests of mode ``systemd`` load this one instead, through Salt's loader (``module_dirs``). What
systemd would know lives in a JSON file named by the minion option ``paphosting_test_systemd``:
``pidfile`` (the unit is active while that pid runs: a real server, started in mode ``process``),
``enabled``, ``enable_works`` (what ``systemctl enable`` answers) and the ``calls`` made.
"""

import json

from paphosting import daemon

__virtualname__ = "service"


def __virtual__():
    if "paphosting_test_systemd" not in __opts__:
        return (False, "service stand-in: only for the functional tests of service mode systemd")
    return __virtualname__


def _load():
    with open(__opts__["paphosting_test_systemd"], encoding="utf-8") as fh:
        return json.load(fh)


def _save(state):
    with open(__opts__["paphosting_test_systemd"], "w", encoding="utf-8") as fh:
        json.dump(state, fh)


def _call(fun, name):
    state = _load()
    state["calls"].append([fun, name])
    _save(state)
    return state


def status(name, sig=None):
    return daemon.running(daemon.Daemon(name=name, command=(), pidfile=_load()["pidfile"]))


def enabled(name, **kwargs):
    return _load()["enabled"]


def enable(name, **kwargs):
    state = _call("enable", name)
    state["enabled"] = state["enabled"] or state["enable_works"]
    _save(state)
    return state["enable_works"]


def start(name, **kwargs):
    _call("start", name)
    return status(name)


def restart(name, **kwargs):
    _call("restart", name)
    return status(name)


def stop(name, **kwargs):
    _call("stop", name)
    return True


def systemctl_reload():
    _call("daemon-reload", None)
    return True
