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


def _one(entry, test, force):
    """``(ok, changes or None, line)`` for one zone's entry of ``dns_zone.apply_all``."""
    zone, serial = entry["zone"], entry["serial"]
    if entry["changed"] and entry["refused"] and not force:
        return False, None, entry["refused"]
    if entry["error"] and not entry["written"] and (not entry["changed"] or not test):
        # The checker or dnssec-verify refused it, or a signed zone has no keys: nothing written.
        return False, None, entry["error"]
    if not entry["changed"] and not entry["stale"]:
        return True, None, f"Zone {zone} is up to date (serial {serial['live']})"
    if entry["changed"]:
        changes = {
            "diff": entry["diff"],
            "records": entry["records"],
            "serial": {"old": serial["live"], "new": serial["new"]},
        }
        what = f"Zone {zone}: serial {serial['live']} -> {serial['new']}, {_summary(entry)}"
        signed = entry.get("dnssec")
        if signed and "signatures" in signed:
            # Key tags and counts only: never key material.
            changes["dnssec"] = signed
            what += (
                f", signed ({signed['signatures']} new signatures, {signed['reused']} kept"
                + (f"; re-signed because {signed['resigned']}" if signed["resigned"] else "")
                + ")"
            )
    else:
        changes = {"served_serial": {"old": serial["served"], "new": serial["live"]}}
        what = f"Zone {zone}: the server served serial {serial['served']}, the file has {serial['live']}"
    if entry["error"]:
        # The checker refused it (nothing written), or it was written and is not served.
        return False, changes if entry["written"] else None, f"{what}, but {entry['error']}"
    if test:
        return True, changes, f"{what}; would be written and reloaded"
    return True, changes, f"{what}; {entry['reloaded'] or 'not reloaded'}"


def managed(name, zones=None, members=None, force=False, nameserver=None):
    """
    Render zones from pillar, validate them with this nameserver's own checker
    (``named-checkzone``, ``nsd-checkzone`` or ``kzonecheck``, in bulk where the server allows),
    write them atomically and make the running server serve them, only when their content
    changed. A serial is bumped only then, from the live zone's serial (``YYYYMMDDnn``, never
    backwards). Many zones are one state (like ``pkg.installed`` with ``pkgs``): they are
    compared by text, checked together and reloaded in as few operations as the server allows.

    A change of a zone's NS or SOA, or one that deletes or changes more than
    ``paphosting:dns:max_change_share`` of its records, is refused unless ``force`` is set.
    Rotation membership (the failover's changes) is exempt.

    name
        The zone, e.g. ``paphosting.nl``; with ``zones``, just the state's name.

    zones
        A list of zones to manage in this one state, or ``all`` for every zone in pillar.

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

        nameserver-zones:
          dns_zone.managed:
            - zones: all
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    test = bool(__opts__["test"])
    try:
        wanted = None if zones == "all" else list(zones) if zones is not None else [name]
        entries = __salt__["dns_zone.apply_all"](
            wanted, members=members, force=force, nameserver=nameserver, test=test
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        # Invalid pillar or an unknown zone: nothing written.
        ret["comment"] = str(exc)
        return ret
    lines, failed, current = [], [], 0
    for zone in sorted(entries):
        ok, changes, line = _one(entries[zone], test, force)
        pending = (entries[zone].get("dnssec") or {}).get("pending")
        if pending:
            line += f"; not signed yet: {pending}"
            if ok and not changes:
                lines.append(line)
        if changes:
            ret["changes"][zone] = changes
        if not ok:
            failed.append(line)
        elif changes:
            lines.append(line)
        else:
            current += 1
    if zones is None:
        # One zone: its changes are the state's, as before.
        ret["changes"] = ret["changes"].get(name.rstrip(".").lower(), {})
    summary = f"{current} of {len(entries)} zones up to date" if zones is not None else ""
    ret["comment"] = "\n".join(failed + lines + ([summary] if summary else []))
    if zones is None and not failed and not lines:
        ret["comment"] = next(_one(e, test, force)[2] for e in entries.values())
    if failed:
        ret["result"] = False
    elif test and ret["changes"]:
        ret["result"] = None
    else:
        ret["result"] = True
    return ret
