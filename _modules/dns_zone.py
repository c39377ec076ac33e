"""Zones of the platform: render from pillar, diff against the live zone, check, write, import.

The zone text is a pure function of the ``paphosting`` pillar and of the rotation membership the
DNS failover publishes under the pillar key ``paphosting_rotation`` (absent: the configured
members). Serials are date based and computed from the live zone on this nameserver, so they never
go backwards. See ``docs/dns.md``.
"""

from salt.exceptions import CommandExecutionError

from paphosting import files, model
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


def _platform():
    try:
        return model.parse(__pillar__.get("paphosting"))
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


def _members(members):
    """Explicit ``members``, else what the failover published in the pillar, else None."""
    try:
        if members is None:
            return pzone.members_from_pillar(__pillar__.get(pzone.ROTATION_KEY))
        if not isinstance(members, dict):
            raise CommandExecutionError(
                "members must be a mapping of rotation name to load balancer ids"
            )
        return pzone.members_from_pillar(
            {"rotations": {k: {"members": v} for k, v in members.items()}}
        )
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _served(zname, ns):
    fun = "dns_server.served_serial"
    if fun not in __salt__:
        return None
    return __salt__[fun](zname, nameserver=ns.name)


def _plan(name, members, nameserver):
    platform = _platform()
    ns = _nameserver(platform, nameserver)
    zname = _zone_name(platform, name)
    path = dnsserver.zone_path(ns, zname, _root())
    live = files.read(path)
    try:
        plan = pzone.plan(
            platform, zname, live, members=_members(members), served_serial=_served(zname, ns)
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
        failover's ``paphosting_rotation`` pillar key, else the configured members.

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
        return pzone.render(platform, _zone_name(platform, name), int(serial), _members(members))
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
        failover's ``paphosting_rotation`` pillar key, else the configured members.

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
            platform, zname, pzone.next_serial(None, pzone.today_utc()), _members(members)
        )
        dnsserver.check_zone_text(server, zname, text)
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return True


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
    plan, ns, path, live = _plan(name, members, nameserver)
    out = _describe(plan, ns, path, live)
    out["written"] = False
    if not out["changed"]:
        return out
    if out["refused"] and not force:
        raise CommandExecutionError(out["refused"])
    try:
        files.write_checked(
            path, plan.text, check=lambda tmp: dnsserver.check_zone_file(ns, plan.zone, tmp)
        )
    except (PapError, OSError) as exc:
        raise CommandExecutionError(f"zone {plan.zone} was not written: {exc}") from exc
    out["written"] = True
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
