"""The nameserver's Prometheus exporter runs with the config the pillar gives it (docs/monitoring.md)."""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "dns_exporter"


def __virtual__():
    if "dns_exporter.status" not in __salt__:
        return (False, "dns_exporter: the execution module did not load (prometheus_client?)")
    return __virtualname__


def running(name):
    """
    The exporter of nameserver ``name`` runs with its current config (restarted when the config
    changed), in service mode ``systemd`` enabled at boot; stopped when
    ``paphosting:metrics:nameservers`` gives it no listener.

    name
        The nameserver's minion id in pillar (``paphosting:nameservers``).

    .. code-block:: yaml

        nameserver-exporter:
          dns_exporter.running:
            - name: {{ grains['id'] }}
            - require:
              - dns_server: nameserver-service
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        before = __salt__["dns_exporter.status"](nameserver=name)
        changes = {}
        if before["configured"]:
            if not before["config_current"]:
                changes["diff"] = before["diff"]
            if not before["unit_current"]:
                changes["unit"] = {"old": "other", "new": "written"}
            if not before["running"] or changes:
                changes["service"] = {
                    "old": "running" if before["running"] else "stopped",
                    "new": "restarted" if before["running"] else "running",
                }
            if not before["enabled"]:
                changes["enabled"] = {"old": False, "new": True}
        elif before["running"]:
            changes["service"] = {"old": "running", "new": "stopped"}
        if not changes:
            ret.update(
                result=True,
                comment="the exporter runs with its config"
                if before["configured"]
                else "no exporter configured (paphosting:metrics:nameservers)",
            )
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment="the exporter would be updated")
            return ret
        after = __salt__["dns_exporter.apply"](nameserver=name)
        ret["changes"] = changes
        if after["configured"] and not after["running"]:
            ret["comment"] = "the exporter did not stay up; see its log"
            return ret
        ret.update(
            result=True,
            comment="the exporter runs with its config"
            if after["configured"]
            else "the exporter is stopped",
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        # Invalid pillar, or the exporter could not be written, started or enabled.
        ret["comment"] = str(exc)
    return ret
