"""The authoritative DNS server of a nameserver minion: its config, and the running server.

See ``docs/dns.md``. Rendering and checking live in ``paphosting.dnsserver``, running the server in
the ``dns_server`` execution module; these states compare and act.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "dns_server"


def __virtual__():
    if "dns_server.diff" not in __salt__:
        return (
            False,
            "dns_server: the dns_server execution module is not available (no DNS server installed)",
        )
    return __virtualname__


def managed(name):
    """
    The server's config file, rendered from pillar and validated with the server's own checker
    (``named-checkconf``, ``nsd-checkconf``, ``knotc conf-check``) on a temporary file before an
    atomic write. For BIND, also rndc's config and a generated rndc key (created once, never shown).
    Zone transfers and control access stay closed: control is local only.

    name
        The nameserver's minion id in pillar (``paphosting:nameservers``).

    .. code-block:: yaml

        nameserver-config:
          dns_server.managed:
            - name: {{ grains['id'] }}
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        diff = __salt__["dns_server.diff"](nameserver=name)
        if not diff["changed"]:
            ret.update(result=True, comment="DNS server config is up to date")
            return ret
        changes = {}
        if diff["diff"]:
            changes["diff"] = diff["diff"]
        if diff["key"]:
            changes["key"] = {"old": None, "new": diff["key_file"]}
        if __opts__["test"]:
            __salt__["dns_server.check"](nameserver=name)
            ret.update(result=None, changes=changes, comment="DNS server config would be updated")
            return ret
        __salt__["dns_server.write"](nameserver=name)
        ret["changes"] = changes
        if __salt__["dns_server.diff"](nameserver=name)["changed"]:
            ret["comment"] = "DNS server config still differs after the write"
            return ret
        ret.update(result=True, comment="DNS server config updated")
    except (CommandExecutionError, SaltInvocationError) as exc:
        # Invalid pillar or the checker refused the config: nothing was written.
        ret["comment"] = str(exc)
    return ret


def running(name, enable=True):
    """
    The server runs and answers on its address (systemd unit, or a process with a pidfile in
    service mode ``process``). Watching the config reloads it.

    name
        The nameserver's minion id in pillar (``paphosting:nameservers``).

    enable
        In systemd mode, also enable the unit at boot.

    .. code-block:: yaml

        nameserver-service:
          dns_server.running:
            - name: {{ grains['id'] }}
            - watch:
              - dns_server: nameserver-config
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        info = __salt__["dns_server.info"](nameserver=name)
        status = __salt__["dns_server.status"](nameserver=name)
        changes = {}
        if not status["running"]:
            changes["service"] = {"old": "stopped", "new": "running"}
        enabled = True
        if enable and info["mode"] == "systemd":
            enabled = __salt__["service.enabled"](info["unit"])
            if not enabled:
                changes["enabled"] = {"old": False, "new": True}
        if not changes and status["answering"]:
            ret.update(result=True, comment=f"{info['server']} is running")
            return ret
        start = "service" in changes or not status["answering"]
        if __opts__["test"]:
            ret.update(
                result=None,
                changes=changes,
                comment=" and ".join(
                    ([f"{info['server']} would be started"] if start else [])
                    + ([f"{info['unit']} would be enabled at boot"] if "enabled" in changes else [])
                ),
            )
            return ret
        if start:
            __salt__["dns_server.start"](nameserver=name)
            if "service" in changes:
                ret["changes"]["service"] = changes["service"]
            if not __salt__["dns_server.status"](nameserver=name)["running"]:
                ret["comment"] = f"{info['server']} did not stay up; see {info['log']}"
                return ret
        done = [
            f"{info['server']} started" if "service" in changes else f"{info['server']} is running"
        ]
        if "enabled" in changes:
            if not __salt__["service.enable"](info["unit"]):
                # systemctl refused (a masked or missing unit): the server would not come back
                # after a reboot, so the state is not met.
                ret["comment"] = f"{done[0]}, but systemctl enable {info['unit']} failed"
                return ret
            ret["changes"]["enabled"] = changes["enabled"]
            done.append(f"{info['unit']} enabled at boot")
        ret.update(result=True, comment="; ".join(done))
    except (CommandExecutionError, SaltInvocationError) as exc:
        # The server failed to start or to answer on its address.
        ret["comment"] = str(exc)
    return ret


def mod_watch(name, sfun=None, **kwargs):
    """Reload the server when a watched state (its config) changed; start it when stopped. Only
    for :func:`running`: a watch on any other state of this module fails, it reloads nothing."""
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    if sfun != "running":
        # As Salt's service.mod_watch: a watch this state cannot trigger is a mistake in the SLS.
        ret["comment"] = (
            f"dns_server.{sfun} does not react to watch: nothing was reloaded "
            "(put the watch on dns_server.running)"
        )
        return ret
    try:
        status = __salt__["dns_server.status"](nameserver=name)
        old = "running" if status["running"] else "stopped"
        new = "reloaded" if status["running"] else "started"
        if __opts__["test"]:
            ret.update(
                result=None,
                changes={"service": {"old": old, "new": new}},
                comment=f"The server would be {new}",
            )
            return ret
        done = __salt__["dns_server.reload"](nameserver=name)
        ret.update(
            result=True,
            changes={"service": {"old": old, "new": done}},
            comment=f"The server was {done}",
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        # The reload command failed: the server keeps its previous config.
        ret["comment"] = str(exc)
    return ret
