"""Zones of the platform: render from pillar, diff against the live zone, check, write, import.

The zone text is a pure function of the ``paphosting`` pillar and of the rotation membership the
DNS failover publishes under the pillar key ``paphosting_rotation`` (absent: the configured
members). Serials are date based and computed from the live zone on this nameserver, so they never
go backwards. See ``docs/dns.md``.
"""

import os

from salt.exceptions import CommandExecutionError

from paphosting import files, model, rotation
from paphosting.errors import PapError

try:
    from paphosting import dnsserver
    from paphosting import zone as pzone

    HAS_DNSPYTHON = True
except ImportError:
    HAS_DNSPYTHON = False

__virtualname__ = "dns_zone"


def __virtual__():
    if not HAS_DNSPYTHON:
        return (False, "dns_zone: the dnspython library is not installed")
    return __virtualname__


def _root():
    return __opts__.get("paphosting_root", "/")


def _platform(pillar=None):
    try:
        return model.parse((__pillar__ if pillar is None else pillar).get("paphosting"))
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _nameserver(platform, nameserver=None):
    try:
        return platform.nameserver(nameserver or __opts__["id"])
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _zone_name(platform, name):
    zname = str(name).rstrip(".").lower()
    if zname not in platform.zones:
        raise CommandExecutionError(f"zone {name} is not in pillar paphosting:zones")
    return zname


def _published(platform, pillar=None):
    """The failover's rotation to render: the pillar's, or the newer one this minion holds."""
    held = rotation.load_held(rotation.held_path(__opts__["cachedir"]))
    return rotation.effective(
        (__pillar__ if pillar is None else pillar).get(pzone.ROTATION_KEY),
        held,
        rotation.config_of(platform),
    )


def _members(members, platform=None, pillar=None):
    """Explicit ``members``, else the failover's rotation (:func:`_published`), else None."""
    try:
        if members is None:
            return pzone.members_from_pillar(_published(platform or _platform(pillar), pillar))
        if not isinstance(members, dict):
            raise CommandExecutionError(
                "members must be a mapping of rotation name to load balancer ids"
            )
        return pzone.members_from_pillar(
            {"rotations": {k: {"members": v} for k, v in members.items()}}
        )
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _served(zname, ns, pillar=None):
    fun = "dns_server.served_serial"
    if fun not in __salt__:
        return None
    return __salt__[fun](zname, nameserver=ns.name, pillar=pillar)


def _plan(name, members, nameserver, pillar=None):
    platform = _platform(pillar)
    ns = _nameserver(platform, nameserver)
    zname = _zone_name(platform, name)
    path = dnsserver.zone_path(ns, zname, _root())
    live = files.read(path)
    try:
        plan = pzone.plan(
            platform,
            zname,
            live,
            members=_members(members, platform, pillar),
            served_serial=_served(zname, ns, pillar),
        )
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return plan, ns, path, live


def names():
    """
    The names of every zone in pillar (every nameserver serves all of them).

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.names
    """
    return sorted(_platform().zones)


def render(name, serial=None, members=None, nameserver=None):
    """
    Render a zone to master-file text (nothing is written).

    Identical input gives byte-identical output.

    name
        The zone, e.g. ``paphosting.nl``.

    serial
        The SOA serial to render; default: what an apply would write on this nameserver (the live
        serial when nothing changed, the next one otherwise).

    members
        ``{rotation: [load balancer ids]}`` overriding rotation membership; default: the
        failover's rotation (the ``paphosting_rotation`` pillar key, or the newer rotation this
        minion holds from the other master, see ``rotation.held``), else the configured members.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.render paphosting.nl
        salt-call dns_zone.render paphosting.nl serial=2026010100 members='{"http0.l.paphosting.nl": ["lb1.paphosting.net"]}'
    """
    if serial is None:
        return _plan(name, members, nameserver)[0].text
    platform = _platform()
    try:
        return pzone.render(
            platform, _zone_name(platform, name), int(serial), _members(members, platform)
        )
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def diff(name, members=None, nameserver=None):
    """
    What applying a zone would change, record by record, against the live zone on this nameserver.

    Returns ``changed`` (content other than the serial differs), ``stale`` (the file is current but
    the running server serves another serial), ``serial`` (``live``, ``served``, ``new``),
    ``records`` (``added`` and ``removed`` lines), the unified ``diff`` of the file, and
    ``refused``: the change-safety message when the apply needs ``force``, else None.

    name
        The zone, e.g. ``paphosting.nl``.

    members
        ``{rotation: [load balancer ids]}`` overriding rotation membership; default: the
        failover's rotation (the ``paphosting_rotation`` pillar key, or the newer rotation this
        minion holds from the other master, see ``rotation.held``), else the configured members.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.diff paphosting.nl
    """
    return _describe(*_plan(name, members, nameserver))


def _describe(plan, ns, path, live):
    return {
        "zone": plan.zone,
        "path": path,
        "changed": plan.changed,
        "stale": plan.stale,
        "serial": {"live": plan.serial_live, "served": plan.serial_served, "new": plan.serial_new},
        "records": plan.records,
        "diff": files.unified_diff(live, plan.text, path) if plan.changed else "",
        "refused": plan.refusal(),
    }


def check(name, server=None, members=None, nameserver=None):
    """
    Validate the rendered zone with a server's own checker on a temporary file.

    ``named-checkzone``, ``nsd-checkzone`` or ``kzonecheck``. Returns True, or fails with the
    checker's output.

    name
        The zone, e.g. ``paphosting.nl``.

    server
        ``bind``, ``nsd`` or ``knot``; default: this nameserver's server.

    members
        As for :func:`render`.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.check paphosting.nl
        salt-call dns_zone.check paphosting.nl server=knot
    """
    platform = _platform()
    zname = _zone_name(platform, name)
    if server is None:
        server = _nameserver(platform, nameserver).server
    try:
        text = pzone.render(
            platform, zname, pzone.next_serial(None, pzone.today_utc()), _members(members, platform)
        )
        dnsserver.check_zone_text(server, zname, text)
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return True


def _lock():
    """Serialise zone applies on this minion: both masters' jobs, a highstate, an operator."""
    return files.locked(os.path.join(__opts__["cachedir"], "paphosting", "zones.lock"))


def _write(plan, ns, path, out, force):
    """Write ``plan``'s text (checked first) unless the safety rule refuses; update ``out``."""
    if out["refused"] and not force:
        raise CommandExecutionError(out["refused"])
    try:
        files.write_checked(
            path, plan.text, check=lambda tmp: dnsserver.check_zone_file(ns, plan.zone, tmp)
        )
    except (PapError, OSError) as exc:
        raise CommandExecutionError(f"zone {plan.zone} was not written: {exc}") from exc
    out["written"] = True


def write(name, members=None, force=False, nameserver=None):
    """
    Write a zone when its content changed: checked by the server's own checker on a temporary file
    in the zone directory, then renamed over the live file. Does not reload the server.

    Refuses (and writes nothing) when the change-safety rule objects, unless ``force``. Returns what
    :func:`diff` returned, with ``written``.

    name
        The zone, e.g. ``paphosting.nl``.

    members
        As for :func:`render`.

    force
        Apply a change the safety rule refuses (NS/SOA changes, bulk deletions).

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.write paphosting.nl
    """
    with _lock():
        plan, ns, path, live = _plan(name, members, nameserver)
        out = _describe(plan, ns, path, live)
        out["written"] = False
        if out["changed"]:
            _write(plan, ns, path, out, force)
    return out


def apply(name, members=None, force=False, nameserver=None, pillar=None):
    """
    Bring one zone up to date on this nameserver and make the running server serve it: write it
    when its content changed (as :func:`write`), reload only this zone and wait until the server
    answers the new serial. A zone whose file is current but whose server serves another serial
    (``stale``) is reloaded only. A current zone is left alone: no write, no reload, no serial.

    Applies on one minion run one at a time (a lock in the cachedir), so when both masters send
    the same change at once, the first writes and reloads and the second finds nothing to do.

    Returns what :func:`diff` returned, with ``written``, ``reloaded`` (what
    ``dns_server.reload_zone`` said, or None) and ``error``: None, or why the server does not
    serve the written zone. Raises, having written nothing, when the safety rule refuses the
    change (without ``force``), the pillar is invalid, or the server's checker rejects the zone.

    name
        The zone, e.g. ``paphosting.nl``.

    members
        As for :func:`render`.

    force
        Apply a change the safety rule refuses.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    pillar
        The pillar to render from; default: this minion's (in memory). ``rotation.apply`` passes
        one it compiled just now.

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.apply paphosting.nl
    """
    with _lock():
        plan, ns, path, live = _plan(name, members, nameserver, pillar)
        out = _describe(plan, ns, path, live)
        out.update(written=False, reloaded=None, error=None)
        if not out["changed"] and not out["stale"]:
            return out
        if out["changed"]:
            _write(plan, ns, path, out, force)
        want = plan.serial_new if out["changed"] else plan.serial_live
        try:
            if "dns_server.reload_zone" in __salt__:
                out["reloaded"] = __salt__["dns_server.reload_zone"](
                    plan.zone, serial=want, nameserver=nameserver, pillar=pillar
                )
            after = _describe(*_plan(name, members, nameserver, pillar))
        except CommandExecutionError as exc:
            out["error"] = str(exc)
            return out
        if after["changed"] or after["stale"]:
            out["error"] = f"the zone still differs after the apply (serial {after['serial']})"
    return out


def import_zone(path=None, text=None, origin=None, dest=None):
    """
    Read a zone in master-file format and return the pillar YAML for it (for ``paphosting:zones``).

    Understands ``$ORIGIN``, ``$TTL``, relative names and every common record type. Rendering the
    result gives the same RRsets as the file (the SOA serial excepted: serials are managed).

    path
        A zone file on this minion.

    text
        The zone text instead of a file.

    origin
        The zone name, when the file has no ``$ORIGIN``.

    dest
        Also write the YAML to this file (e.g. a pillar ``.sls`` to review and paste).

    CLI Example:

    .. code-block:: bash

        salt-call --local dns_zone.import_zone /etc/bind/db.example.com origin=example.com
        salt-call --local dns_zone.import_zone /etc/bind/db.example.com dest=/tmp/example.com.sls
    """
    if (path is None) == (text is None):
        raise CommandExecutionError("give exactly one of path or text")
    if path is not None:
        text = files.read(path)
        if text is None:
            raise CommandExecutionError(f"{path} does not exist")
    try:
        out = pzone.import_zone(text, origin)
        if dest is not None:
            files.write_checked(dest, out)
    except (PapError, OSError) as exc:
        raise CommandExecutionError(str(exc)) from exc
    return out
