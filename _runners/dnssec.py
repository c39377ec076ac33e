"""
DNSSEC keys of the platform's signed zones: made on a master, stored as secrets, rolled over.

The key sets live in the pillar tree as secrets (``secrets/dnssec/<zone>.asc``, GPG-encrypted to
the platform key, :mod:`paphosting.secrets`); the ``secrets`` ext_pillar publishes them to the
nameservers only, which sign their zones with them (``docs/dnssec.md``). A change of keys is a
commit to Subversion (``svnmucc``, computed from the live revision: when both masters make the
same change, the second commit is refused as out of date and nothing happens twice) followed by a
push of that revision (validated, made live, applied to the fleet like any other).

- ``keygen``: key sets for the signed zones that have none.
- ``maintain`` (scheduled on both masters): ``keygen``, then every ZSK rollover that is due
  (pre-publish, RFC 7583 timings from the zone's TTLs and the drift schedule).
- ``ksk_rollover`` / ``confirm_ds``: the operator's KSK rollover, step by step.
- ``status``: a table per zone: keys and their states, the next rollovers, the DS records for
  the registrar, and the earliest signature expiry each nameserver serves.

Never prints or logs a private key: key tags and DS records only.
"""

import logging
import os

import salt.client
import salt.pillar
import salt.utils.minions

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import dnssec, model, pillarcompile, platformcache, saltcontext, secrets, svn
from paphosting.errors import PapError

log = logging.getLogger(__name__)

__virtualname__ = "dnssec"


def __virtual__():
    return __virtualname__


def _finish(ok, text):
    return saltcontext.runner_return(__context__, ok, text)


def _accepted():
    return pillarcompile.accepted_minions(__opts__)


def _minion():
    """An accepted minion whose pillar holds the platform (every minion's does)."""
    accepted = _accepted()
    if not accepted:
        raise PapError("no accepted minion to compile the platform pillar for")
    return accepted[0]


def _platform():
    """The platform model of this master's live pillar (compiled without ext_pillars)."""
    minion_id = _minion()
    _, grains, _ = salt.utils.minions.get_minion_data(minion_id, __opts__)
    opts = dict(__opts__, ext_pillar=[])
    pillar = salt.pillar.Pillar(
        opts, grains or {"fqdn": minion_id}, minion_id, "base"
    ).compile_pillar()
    if pillar.get("_errors"):
        raise PapError(f"the pillar does not render: {'; '.join(map(str, pillar['_errors']))}")
    return platformcache.platform(pillar.get(model.ROOT), __opts__["cachedir"])


def _tree():
    """The live pillar tree: the ``pillar_roots`` folder of ``base`` that holds ``secrets/`` (as
    the secrets ext_pillar finds it), else the first."""
    roots = (__opts__.get("pillar_roots") or {}).get("base") or []
    if not roots:
        raise PapError("the master has no pillar_roots:base (see conf/master.d/svnpillar.conf)")
    for root in roots:
        if os.path.isdir(os.path.join(root, secrets.SECRETS_DIR)):
            return root
    return roots[0]


def _policy(platform, zone):
    return dnssec.policy(platform.zones[zone].dnssec, platform.dns.get("dnssec"), platform.schedule)


def _signed(platform):
    return sorted(z for z, zone in platform.zones.items() if zone.dnssec)


def _current():
    """``(platform, signed zones, {zone: KeySet or None})`` of this master's live pillar."""
    platform = _platform()
    zones = _signed(platform)
    return platform, zones, _keysets(_tree(), zones)


def _keysets(tree, zones):
    """``{zone: KeySet or None}`` from the live tree's secrets."""
    home = secrets.keydir(__opts__)
    have = set(secrets.names(tree, "dnssec")) if os.path.isdir(tree) else set()
    out = {}
    for zone in zones:
        if zone not in have:
            out[zone] = None
            continue
        where = secrets.relpath("dnssec", zone)
        out[zone] = dnssec.KeySet.from_text(
            zone, secrets.read(tree, "dnssec", zone, home), where=where
        )
    return out


def _commit(keysets, message, push):
    """Commit the key sets (encrypted) to Subversion and push the new revision; the revision, or
    None when the other master committed the same change first."""
    conf = __opts__.get("paphosting_svn") or {}
    if not conf.get("url"):
        raise PapError("the master option paphosting_svn:url is not set (docs/push.md)")
    client = svn.Client.from_options(conf)
    prefix = str(conf.get("path", "pillar")).strip("/")
    home = secrets.keydir(__opts__)
    texts = {
        f"{prefix}/{secrets.relpath('dnssec', zone)}": secrets.encrypt(ks.to_text(), home)
        for zone, ks in keysets.items()
    }
    base = (__salt__["svnpillar.revision"]() or {}).get("revision")
    try:
        rev = client.put(texts, message, base=base)
    except svn.SvnError as exc:
        if "out of date" in str(exc):
            log.info("dnssec: %s: the other master committed first (%s)", message, exc)
            return None
        raise
    log.info("dnssec: committed r%s: %s", rev, message)
    if push:
        out = __salt__["svnpillar.push"](rev=rev)
        if isinstance(out, dict) and out.get("result") is False:
            raise PapError(f"r{rev} was committed but its push failed: {out.get('comment')}")
    return rev


def _ttls(platform, zone):
    """``(DNSKEY TTL, largest TTL)`` of a zone: what the rollover timings wait for."""
    z = platform.zones[zone]
    ttls = [z.ttl] + [r.ttl for r in z.records if r.ttl is not None]
    ttls += [
        platform.rotations[rot].ttl
        for owner, rot in platform.address_owners.get(zone, ())
        if rot in platform.rotations
    ]
    return z.ttl, max(ttls)


def keygen(zone=None, push=True):
    """
    Make a key set (one KSK, one ZSK, the zone's algorithm) for every signed zone of the pillar
    that has none, or for ``zone``; commit them encrypted to Subversion and push. Prints the DS
    records to give the registrar (only once the zone is served signed).

    zone
        One zone (it must have ``dnssec: true``); default: every signed zone without keys.

    push
        False: commit only (push later with ``salt-run svnpillar.push``).

    CLI Example:

    .. code-block:: bash

        salt-run dnssec.keygen
        salt-run dnssec.keygen zone=paphosting.nl
    """
    try:
        platform = _platform()
        zones = _signed(platform)
        if zone is not None:
            zone = str(zone).rstrip(".").lower()
            if zone not in zones:
                return _finish(False, f"zone {zone} does not have dnssec: true in paphosting:zones")
            zones = [zone]
        have = _keysets(_tree(), zones)
        now = dnssec.now_epoch()
        made = {
            z: dnssec.initial_keyset(z, now, _policy(platform, z).algorithm)
            for z in zones
            if have[z] is None
        }
        if not made:
            return "Every signed zone has its keys."
        rev = _commit(made, f"dnssec: keys for {', '.join(sorted(made))}", push)
    except PapError as exc:
        return _finish(False, str(exc))
    lines = [f"r{rev}: keys for {len(made)} zone(s)" if rev else "the other master made them"]
    for z, ks in sorted(made.items()):
        lines.append(f"  {z}: " + ", ".join(dnssec.describe(k, now) for k in ks.keys))
        lines += [
            f"    DS for the registrar: {z}. IN DS {ds}" for ds in dnssec.ds_records(ks, z, now)
        ]
    return "\n".join(lines)


def maintain(push=True):
    """
    What the masters run on their schedule: key sets for new signed zones (``keygen``), then
    every ZSK rollover that is due (pre-publish: the new ZSK is published now, signs after the
    publication interval, and the old one leaves after the retire interval; RFC 7583), committed
    and pushed as one revision. Nothing to do: nothing is committed.

    CLI Example:

    .. code-block:: bash

        salt-run dnssec.maintain
    """
    try:
        platform, zones, have = _current()
        now = dnssec.now_epoch()
        changed, what = {}, []
        for z in zones:
            pol = _policy(platform, z)
            ks = have[z]
            if ks is None:
                changed[z] = dnssec.initial_keyset(z, now, pol.algorithm)
                what.append(f"keys for {z}")
            elif dnssec.zsk_due(ks, now, pol):
                changed[z] = dnssec.roll_zsk(ks, now, pol, *_ttls(platform, z))
                what.append(f"ZSK rollover of {z}")
        if not changed:
            return "Nothing due."
        rev = _commit(changed, "dnssec: " + "; ".join(what), push)
    except PapError as exc:
        return _finish(False, str(exc))
    return f"r{rev}: " + "; ".join(what) if rev else "the other master did it: " + "; ".join(what)


def ksk_rollover(zone, push=True):
    """
    Start a KSK rollover of ``zone`` (double-KSK): a new KSK is published and signs the DNSKEY
    RRset beside the old one; once it is in every cache the zone's CDS/CDNSKEY name it alone.
    ``salt-run dnssec.status`` then shows its DS record: put it at the registrar (or let the
    registry read the CDS), and confirm with ``dnssec.confirm_ds``. See docs/dnssec.md.

    CLI Example:

    .. code-block:: bash

        salt-run dnssec.ksk_rollover zone=paphosting.nl
    """
    return _change(
        zone,
        lambda ks, pol, platform, now: dnssec.start_ksk_rollover(
            ks, now, pol, _ttls(platform, ks.zone)[0]
        ),
        "KSK rollover started",
        push,
    )


def confirm_ds(zone, tag, push=True):
    """
    Confirm that the parent (the registry) now serves the DS of the new KSK ``tag`` and no longer
    the old one: the old KSK leaves the zone after the parent's DS TTL
    (``paphosting:dns:dnssec:parent_ds_ttl``).

    CLI Example:

    .. code-block:: bash

        salt-run dnssec.confirm_ds zone=paphosting.nl tag=12345
    """
    return _change(
        zone,
        lambda ks, pol, platform, now: dnssec.confirm_ds(ks, tag, now, pol),
        f"DS of KSK {tag} confirmed",
        push,
    )


def _change(zone, change, what, push):
    try:
        platform = _platform()
        zone = str(zone).rstrip(".").lower()
        if zone not in _signed(platform):
            return _finish(False, f"zone {zone} does not have dnssec: true in paphosting:zones")
        ks = _keysets(_tree(), [zone])[zone]
        if ks is None:
            return _finish(False, f"zone {zone} has no keys yet: salt-run dnssec.keygen")
        now = dnssec.now_epoch()
        new = change(ks, _policy(platform, zone), platform, now)
        rev = _commit({zone: new}, f"dnssec: {zone}: {what}", push)
    except PapError as exc:
        return _finish(False, str(exc))
    keys = ", ".join(dnssec.describe(k, now) for k in new.keys)
    return f"r{rev}: {zone}: {what} ({keys})" if rev else f"the other master did it: {what}"


def _served(platform, zones, timeout=15):
    """``{zone: {nameserver: row or error}}`` from ``dns_zone.signatures`` on every nameserver
    (asked together; one that has no accepted key is shown as such, not waited for)."""
    accepted = set(_accepted())
    targets = sorted(n for n in platform.nameservers if n in accepted)
    out = {
        z: {n: "no accepted key" for n in platform.nameservers if n not in accepted} for z in zones
    }
    if not targets or not zones:
        return out
    client = salt.client.get_local_client(__opts__["conf_file"], mopts=__opts__)
    try:
        ret = client.cmd(
            targets,
            "dns_zone.signatures",
            kwarg={"zones": list(zones)},
            tgt_type="list",
            timeout=timeout,
        )
    finally:
        client.destroy()
    for ns in targets:
        got = ret.get(ns)
        for z in zones:
            if not isinstance(got, dict):
                out[z][ns] = "no answer" if got is None else f"error: {got}"
            else:
                out[z][ns] = got.get(z) or "not served"
    return out


def status():
    """
    A table per signed zone: its keys (tag, state, when published, active, inactive, removed),
    the next ZSK rollover and the state of a KSK rollover, the DS records for the registrar, and
    for every nameserver the serial it serves and the earliest expiry of the signatures in it.

    CLI Example:

    .. code-block:: bash

        salt-run dnssec.status
    """
    try:
        platform, zones, keysets = _current()
        served = _served(platform, zones)
    except PapError as exc:
        return _finish(False, str(exc))
    policies = {z: _policy(platform, z) for z in zones}
    return dnssec.status_text(zones, keysets, served, dnssec.now_epoch(), policies)
