"""A zone of the platform on this nameserver: rendered from pillar, checked, written, reloaded.

See ``docs/dns.md``. The rendering, serial policy and change-safety rule live in
``paphosting.zone``; this state only compares the live zone with the wanted one and acts.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "dns_zone"


def __virtual__():
    if "dns_zone.diff" not in __salt__:
        return (False, "dns_zone: the dns_zone execution module is not available")
    return __virtualname__


def _summary(diff):
    records = diff["records"]
    return f"{len(records['added'])} records added, {len(records['removed'])} removed"


def managed(name, members=None, force=False, nameserver=None):
    """
    Render zone ``name`` from pillar, validate it with this nameserver's own checker
    (``named-checkzone``, ``nsd-checkzone`` or ``kzonecheck``) on a temporary file, write it
    atomically and reload only this zone, only when its content changed. The serial is bumped
    only then, from the live zone's serial (``YYYYMMDDnn``, never backwards).

    A change of the zone's NS or SOA, or one that deletes or changes more than
    ``paphosting:dns:max_change_share`` of its records, is refused unless ``force`` is set.
    Rotation membership (the failover's changes) is exempt.

    name
        The zone, e.g. ``paphosting.nl``.

    members
        ``{rotation: [load balancer ids]}`` overriding rotation membership. Default: what the
        failover published in the pillar key ``paphosting_rotation``, else the configured members.

    force
        Apply a change the safety rule refuses.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    .. code-block:: yaml

        nameserver-zone-paphosting.nl:
          dns_zone.managed:
            - name: paphosting.nl
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        if __opts__["test"]:
            diff = __salt__["dns_zone.diff"](name, members=members, nameserver=nameserver)
            if diff["changed"] and diff["refused"] and not force:
                ret["comment"] = diff["refused"]
                return ret
        else:
            # Write and reload in one step, under the minion's zone lock (dns_zone.apply).
            diff = __salt__["dns_zone.apply"](
                name, members=members, force=force, nameserver=nameserver
            )
        zone, serial = diff["zone"], diff["serial"]
        if not diff["changed"] and not diff["stale"]:
            ret.update(result=True, comment=f"Zone {zone} is up to date (serial {serial['live']})")
            return ret
        if diff["changed"]:
            ret["changes"] = {
                "diff": diff["diff"],
                "records": diff["records"],
                "serial": {"old": serial["live"], "new": serial["new"]},
            }
            what = f"Zone {zone}: serial {serial['live']} -> {serial['new']}, {_summary(diff)}"
        else:
            ret["changes"] = {"served_serial": {"old": serial["served"], "new": serial["live"]}}
            what = f"Zone {zone}: the server served serial {serial['served']}, the file has {serial['live']}"
        if __opts__["test"]:
            ret.update(result=None, comment=f"{what}; would be written and reloaded")
        elif diff["error"]:
            # The file was written (see the changes) but the server does not serve it.
            ret["comment"] = f"{what}, but {diff['error']}"
        else:
            ret.update(result=True, comment=f"{what}; {diff['reloaded'] or 'not reloaded'}")
    except (CommandExecutionError, SaltInvocationError) as exc:
        # Invalid pillar, the change-safety rule or the checker refused the zone: nothing written.
        ret["comment"] = str(exc)
    return ret
