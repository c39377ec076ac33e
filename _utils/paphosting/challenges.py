"""ACME DNS-01 challenge records: the overlay the issuing master publishes to every nameserver.

One module owns the shape, the names and the merge of the challenges; the runner, the minion
module and the zone renderer ask it.

* **Sent**: what the issuing master sends to every nameserver (``acme_challenge.apply``):
  ``{"version": float, "expires": epoch seconds, "records": {owner fqdn: [TXT values]}}``
  (:func:`value` makes one). ``version`` orders two sets (the time the master made it): a job
  that arrives late never replaces a newer set. The empty set (``records: {}``) removes them.
* **Held**: the newest set a nameserver was sent, in ``<cachedir>/paphosting/acme_held.json``
  (:func:`hold`, :func:`load_held`). A set past ``expires`` is as good as empty, so the records
  of an issuance whose master died mid-way vanish at the next apply.
* **Merged**: the ``paphosting`` pillar value with the held records laid into its zones as TXT
  records (:func:`merge`), so the zone machinery (rendering, the servers' checkers, serials,
  reloads, the highstate's ``dns_zone.managed``) carries them like any other record.
"""

import copy
import os
import time

from paphosting import files
from paphosting.errors import PapError

LABEL = "_acme-challenge"
TTL = 60


class ChallengeError(PapError):
    """A challenge set that cannot be published (a name outside every managed zone, a clash)."""


def owner_of(name):
    """The owner of the TXT record that proves control of ``name`` (RFC 8555 section 8.4): a
    wildcard ``*.example.nl`` is proven at ``_acme-challenge.example.nl``."""
    name = str(name).rstrip(".").lower()
    if name.startswith("*."):
        name = name[2:]
    return f"{LABEL}.{name}"


def is_owner(relative_name):
    """Whether a (relative or absolute) owner name, as text or a dnspython name, is a challenge's:
    its first label is ``_acme-challenge`` (such TXT records come and go with every issuance,
    so the change-safety rule does not count them)."""
    labels = getattr(relative_name, "labels", None)
    if labels is not None:
        return bool(labels) and labels[0].lower() == LABEL.encode()
    return str(relative_name).lower().split(".", 1)[0] == LABEL


def value(records, version=None, ttl_seconds=900, now=None):
    """A set to send: ``records`` ``{owner fqdn: [TXT values]}``, valid ``ttl_seconds``."""
    now = time.time() if now is None else now
    return {
        "version": float(version if version is not None else now),
        "expires": float(now + ttl_seconds),
        "records": {
            str(k).rstrip(".").lower(): sorted(set(map(str, v))) for k, v in records.items()
        },
    }


def checked(sent):
    """``sent`` validated (a :class:`ChallengeError` naming what is wrong), normalised."""
    if not isinstance(sent, dict):
        raise ChallengeError(f"a challenge set must be a mapping, got {type(sent).__name__}")
    try:
        version = float(sent["version"])
        expires = float(sent["expires"])
        records = sent["records"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ChallengeError(
            f"a challenge set needs version, expires and records (got {sorted(sent)}): {exc}"
        ) from None
    if not isinstance(records, dict):
        raise ChallengeError("challenge records must be a mapping of owner name to TXT values")
    out = {}
    for owner, values in records.items():
        owner = str(owner).rstrip(".").lower()
        if not is_owner(owner):
            raise ChallengeError(f"{owner} is not an ACME challenge name ({LABEL}.<name>)")
        if not isinstance(values, list) or not all(
            isinstance(v, str)
            and v
            and v.isascii()
            and v.isprintable()
            and '"' not in v
            and "\\" not in v
            and len(v) <= 255
            for v in values
        ):
            raise ChallengeError(f"{owner}: the TXT values must be a list of short printable texts")
        out[owner] = sorted(set(values))
    return {"version": version, "expires": expires, "records": out}


def live_records(held, now=None):
    """``{owner: [values]}`` of a held set, empty when there is none or it expired."""
    now = time.time() if now is None else now
    if not held or held["expires"] <= now:
        return {}
    return held["records"]


def held_path(cachedir):
    return os.path.join(cachedir, "paphosting", "acme_held.json")


def load_held(path):
    """The held set at ``path``, or None (no file, unreadable or malformed)."""
    try:
        return checked(files.read_json(path))
    except ChallengeError:
        return None


def hold(path, sent):
    """Store ``sent`` at ``path`` unless a newer set is stored; ``(held now, replaced)``."""
    sent = checked(sent)
    with files.locked(path + ".lock"):
        current = load_held(path)
        if current is not None and current["version"] > sent["version"]:
            return current, False
        if current == sent:
            return current, False
        files.write_json(path, sent)
        return sent, True


def zone_of(zones, fqdn):
    """The managed zone (a name in ``zones``) holding ``fqdn``, longest suffix; None outside."""
    labels = str(fqdn).rstrip(".").lower().split(".")
    for i in range(len(labels)):
        candidate = ".".join(labels[i:])
        if candidate in zones:
            return candidate
    return None


def zones_of(zones, records):
    """``{zone: {relative owner: [values]}}`` for ``records``; a :class:`ChallengeError` names
    the owners outside every zone."""
    out, outside = {}, []
    for owner, values in sorted(records.items()):
        zname = zone_of(zones, owner)
        if zname is None:
            outside.append(owner)
            continue
        out.setdefault(zname, {})[owner[: -len(zname) - 1]] = values
    if outside:
        raise ChallengeError(f"{', '.join(outside)}: in no zone of pillar paphosting:zones")
    return out


def merge(paphosting, records):
    """The ``paphosting`` pillar value with ``records`` ``{owner fqdn: [values]}`` added to its
    zones as TXT records (TTL :data:`TTL`); ``paphosting`` itself when there are none. Records
    outside every zone are left out (the issuing master refuses such names before it sends)."""
    if not records or not isinstance(paphosting, dict):
        return paphosting
    zones = paphosting.get("zones")
    if not isinstance(zones, dict):
        return paphosting
    canon = {str(z).rstrip(".").lower(): z for z in zones}
    out = dict(paphosting)
    out["zones"] = dict(zones)
    for owner, values in sorted(records.items()):
        zname = zone_of(canon, owner)
        if zname is None:
            continue
        key = canon[zname]
        zone = out["zones"][key] = copy.copy(out["zones"][key] or {})
        rel = owner[: -len(zname) - 1]
        recs = zone["records"] = dict(zone.get("records") or {})
        mine = [{"type": "TXT", "data": f'"{v}"', "ttl": TTL} for v in values]
        recs[rel] = list(recs.get(rel) or []) + mine
    return out
