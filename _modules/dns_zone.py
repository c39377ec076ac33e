"""Zones of the platform: render from pillar, diff against the live zone, check, write, import.

The zone text is a pure function of the ``paphosting`` pillar, of the rotation membership the
DNS failover publishes under the pillar key ``paphosting_rotation`` (absent: the configured
members) and of the ACME challenge records this nameserver holds (``acme_challenge.apply``).
Serials are date based and computed from the live zone on this nameserver, so they never go
backwards. See ``docs/dns.md``.
"""

import os

from salt.exceptions import CommandExecutionError

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import challenges, files, overlay, platformcache, saltcontext
from paphosting.errors import PapError

try:
    from paphosting import dnssec, dnsserver, zonesync
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
    return saltcontext.root(__opts__)


def _renderer(pillar=None, digest=None):
    """The platform's zone renderer (``.platform``: the parsed platform), parsed once per pillar
    digest (:mod:`paphosting.saltcontext`).
    ``digest``: the pillar's digest, when the caller knows it. The ACME challenge records this
    nameserver holds (:mod:`paphosting.challenges`) are laid into the zones first: every render,
    the highstate's included, serves them until the issuing master takes them back."""
    paphosting = (__pillar__ if pillar is None else pillar).get("paphosting")
    records = challenges.live_records(
        challenges.load_held(challenges.held_path(__opts__["cachedir"]))
    )
    # Not on the failover's fast path (no pillar, the master's digest: rotation.apply renders the
    # platform it has cached, and the in-memory pillar may predate it): there the records wait
    # for the issuing master's next apply or the next highstate rather than render a stale pillar.
    if records and not (pillar is None and digest is not None):
        paphosting, digest = challenges.merge(paphosting, records), None
    return saltcontext.compiled(__opts__, __context__, paphosting, digest=digest)


def _zone_name(renderer, name):
    try:
        return renderer.zone(name)
    except PapError as exc:
        raise CommandExecutionError(f"zone {name} is not in pillar paphosting:zones") from exc


def _members(members, renderer, pillar=None):
    """Explicit ``members``, else the failover's rotation (the pillar's ``paphosting_rotation``, or
    the newer one this minion holds: :func:`paphosting.overlay.effective`), else None."""
    try:
        if members is None:
            held = overlay.load_held(overlay.held_path(__opts__["cachedir"]))
            published = (__pillar__ if pillar is None else pillar).get(overlay.KEY)
            return overlay.members_of(
                overlay.effective(published, held, overlay.configured(renderer.rotations))
            )
        if not isinstance(members, dict):
            raise CommandExecutionError(
                "members must be a mapping of rotation name to load balancer ids"
            )
        return overlay.members_of({"rotations": {k: {"members": v} for k, v in members.items()}})
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _keysets(renderer, pillar=None):
    """The DNSSEC key sets of the signed zones, from the secrets pillar the masters publish to
    nameservers only (``paphosting_secrets:dnssec``, docs/dnssec.md)."""
    signed = getattr(renderer, "dnssec", {})
    if not signed:
        return {}
    secrets = (__pillar__ if pillar is None else pillar).get("paphosting_secrets") or {}
    try:
        found = zonesync.keysets_of(secrets.get("dnssec"), signed)
        if pillar is None and len(found) < len(signed):
            # The in-memory pillar may predate the keys (a failover renders from the cached
            # platform and this minion's pillar): ask the master for the current one.
            fresh = __salt__["pillar.items"](unmask=True).get("paphosting_secrets") or {}
            found = zonesync.keysets_of(fresh.get("dnssec"), signed)
        return found
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _running(ns):
    """Whether ``ns``'s server runs (from the nameserver the caller has: the in-memory pillar
    may not hold the platform, e.g. when ``rotation.apply`` compiled one or renders from the
    cache)."""
    return dnsserver.running(ns, _root(), __salt__.get("service.status"))


def _plan(name, members, nameserver, pillar=None):
    renderer = _renderer(pillar)
    ns = saltcontext.nameserver(__opts__, renderer, nameserver)
    zname = _zone_name(renderer, name)
    try:
        _, entries = zonesync.plan_all(
            renderer, ns, _root(), [zname], _members(members, renderer, pillar), _running(ns)
        )
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return entries[zname]


def names():
    """
    The names of every zone in pillar (every nameserver serves all of them).

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.names
    """
    return list(_renderer().zone_names)


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
        entry = _plan(name, members, nameserver)
        renderer = _renderer()
        return renderer.render(entry["zone"], entry["serial"]["new"], _members(members, renderer))
    renderer = _renderer()
    try:
        return renderer.render(_zone_name(renderer, name), int(serial), _members(members, renderer))
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def diff(name, members=None, nameserver=None):
    """
    What applying a zone would change, record by record, against the live zone on this nameserver.

    Returns ``changed`` (content other than the serial differs), ``stale`` (the file is current but
    the running server serves another serial), ``serial`` (``live``, ``served``, ``new``),
    ``records`` (``added`` and ``removed`` lines), the unified ``diff`` of the file,
    ``rotation_only`` (the change is confined to the rotation's A/AAAA records: a failover) and
    ``refused``: the change-safety message when the apply needs ``force``, else None.

    name
        The zone, e.g. ``paphosting.nl``.

    members
        As for :func:`render`.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.diff paphosting.nl
    """
    entry = _plan(name, members, nameserver)
    for key in ("written", "reloaded", "error"):
        entry.pop(key)
    return entry


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
    renderer = _renderer()
    zname = _zone_name(renderer, name)
    if server is None:
        server = saltcontext.nameserver(__opts__, renderer, nameserver).server
    try:
        text = renderer.render(
            zname, pzone.next_serial(None, pzone.today_utc()), _members(members, renderer)
        )
        dnsserver.check_zone_text(server, zname, text)
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return True


def _lock():
    """Serialise zone applies on this minion: both masters' jobs, a highstate, an operator."""
    return files.locked(os.path.join(__opts__["cachedir"], "paphosting", "zones.lock"))


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
    return apply(name, members=members, force=force, nameserver=nameserver, reload=False)


def apply_all(
    zones=None,
    members=None,
    force=False,
    nameserver=None,
    pillar=None,
    test=False,
    pillar_digest=None,
    failover=False,
    timings=None,
):
    """
    Bring many zones (default: every zone of the platform) up to date on this nameserver and make
    the running server serve them, in as few operations as the server allows: current zones cost
    a text comparison; changed ones are checked by the server's own checker in bulk (changes
    confined to the rotation's A/AAAA records excepted: see ``docs/failover.md``), written
    atomically, reloaded together, and waited for. Zones holding a rotation name go first.

    Returns ``{zone: {"changed", "stale", "serial", "records", "diff", "rotation_only",
    "refused", "written", "reloaded", "error"}}``. One zone's problem (refused by the change-safety
    rule, rejected by the checker, not served after the reload) is that zone's ``error``; the
    others are still applied.

    zones
        A list of zone names; default: every zone in pillar.

    members
        As for :func:`render`.

    force
        Apply changes the safety rule refuses.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    pillar
        The pillar to render from; default: this minion's (in memory).

    test
        Only plan and check (with the server's checker, on temporary copies): write nothing.

    pillar_digest
        The digest of the ``paphosting`` pillar to render, when known (``rotation.apply`` passes
        the master's): a platform prepared for it in the cache is used without hashing the pillar.

    failover
        A rotation change (``rotation.apply`` sets it): never blocked by local damage. A zone
        whose live file differs from the pillar in more than the rotation's records gets only
        those records (and its serial) changed, checked by the server's checker, and is marked
        ``patched``; drift correction repairs the rest through the change-safety rule.

    timings
        A dict (from Python callers such as ``rotation.apply``) filled with the seconds each
        phase took.

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.apply_all
        salt-call dns_zone.apply_all zones='[paphosting.nl]' test=True
    """
    renderer = _renderer(pillar, pillar_digest)
    ns = saltcontext.nameserver(__opts__, renderer, nameserver)
    names = None if zones is None else [_zone_name(renderer, z) for z in zones]
    wanted = _members(members, renderer, pillar)
    try:
        if test:
            plans, entries = zonesync.plan_all(
                renderer,
                ns,
                _root(),
                names if names is not None else list(renderer.zone_names),
                wanted,
                _running(ns),
            )
            zonesync.sign_plans(
                renderer,
                plans,
                entries,
                list(plans),
                _keysets(renderer, pillar),
                wanted,
            )
            return zonesync.predict(ns, plans, entries)
        keysets = _keysets(renderer, pillar)
        # Only failovers are recorded and compared: both masters send each one (a highstate's
        # sync is never skipped, and its record would never match a failover's key).
        key = zonesync.run_key(renderer, names, wanted, force, failover, keysets)
        record = os.path.join(__opts__["cachedir"], "paphosting", "zone_sync.json")
        seen = zonesync.last_run(record) if failover else None
        with _lock():
            if failover and zonesync.done_meanwhile(seen, zonesync.last_run(record), key):
                # The other master's copy of this failover was applied while this one waited.
                if timings is not None:
                    timings["same_as_previous"] = 1
                return {}
            out = zonesync.sync(
                renderer,
                ns,
                _root(),
                names,
                wanted,
                force=force,
                running=_running(ns),
                first=zonesync.rotation_zones(renderer),
                failover=failover,
                timings=timings,
                describe=not failover,  # the failover reports no file diffs: thousands of them
                keysets=keysets,
            )
            if failover:
                zonesync.record_run(record, key, out)
        platformcache.save(renderer, __opts__["cachedir"])
    except (PapError, OSError) as exc:
        raise CommandExecutionError(str(exc)) from exc
    return out


def apply(name, members=None, force=False, nameserver=None, pillar=None, reload=True):
    """
    Bring one zone up to date on this nameserver and make the running server serve it: write it
    when its content changed (checked first by the server's own checker), reload only this zone
    and wait until the server answers the new serial. A zone whose file is current but whose
    server serves another serial (``stale``) is reloaded only. A current zone is left alone: no
    write, no reload, no serial. See :func:`apply_all` for many zones at once.

    Returns what :func:`diff` returned, with ``written``, ``reloaded`` and ``error``: None, or why
    the server does not serve the written zone. Raises, having written nothing, when the safety
    rule refuses the change (without ``force``), the pillar is invalid, or the server's checker
    rejects the zone.

    name
        The zone, e.g. ``paphosting.nl``.

    members
        As for :func:`render`.

    force
        Apply a change the safety rule refuses.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    pillar
        The pillar to render from; default: this minion's (in memory).

    reload
        False: write only (see :func:`write`).

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.apply paphosting.nl
    """
    renderer = _renderer(pillar)
    ns = saltcontext.nameserver(__opts__, renderer, nameserver)
    zname = _zone_name(renderer, name)
    try:
        with _lock():
            entry = zonesync.sync(
                renderer,
                ns,
                _root(),
                [zname],
                _members(members, renderer, pillar),
                force=force,
                running=_running(ns),
                reload=reload,
                keysets=_keysets(renderer, pillar),
            )[zname]
    except (PapError, OSError) as exc:
        raise CommandExecutionError(f"zone {zname} was not written: {exc}") from exc
    if entry["error"] and not entry["written"] and entry["changed"]:
        raise CommandExecutionError(entry["error"])
    return entry


def signatures(zones=None, nameserver=None):
    """
    What this nameserver serves of its signed zones, from the signer's record in each zone file
    (its first line) and the serial the running server answers: ``{zone: {"serial", "served",
    "expires", "dnskey", "sign", "cds"}}``; ``expires`` is the earliest expiry (epoch seconds)
    of every signature in the zone. Key tags only, never key material. ``salt-run dnssec.status``
    shows it for every nameserver.

    zones
        A list of zone names; default: every zone in pillar signed here.

    nameserver
        The nameserver's minion id in pillar; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call dns_zone.signatures
    """
    # Compiled now: the in-memory pillar may predate the last push (a push's highstate compiles
    # its own), and this answers an operator's question about what is served now.
    renderer = _renderer(__salt__["pillar.items"](unmask=True))
    ns = saltcontext.nameserver(__opts__, renderer, nameserver)
    names = [_zone_name(renderer, z) for z in zones] if zones else sorted(renderer.dnssec)
    served = dnsserver.served_serials(ns, names) if names and _running(ns) else {}
    out = {}
    for name in names:
        path = dnsserver.zone_path(ns, name, _root())
        try:
            with open(path, encoding="utf-8") as fh:
                head = dnssec.header(fh.readline())
        except OSError:
            head = {}
        text = files.read(path) or ""
        out[name] = {
            "serial": pzone.quick_serial(name, text),
            "served": served.get(name),
            "expires": int(head["expires"]) if head.get("expires", "").isdigit() else None,
            "dnskey": head.get("dnskey"),
            "sign": head.get("sign"),
            "cds": head.get("cds"),
        }
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
