"""The rotation overlay: the failover's membership, laid over the rotations the pillar configures.

One module owns its shape, its validation and its merge; every other module asks it.

* **Published**: what a master's failover decides, the pillar key :data:`KEY`
  (``paphosting_rotation``, from the ``rotation`` ext_pillar, and the argument of
  ``rotation.apply``): ``{"version": N, "rotations": {name: {"members": [lb ids]}}}``
  (:func:`value` makes one).
* **Held**: the newest published rotation a minion was sent (:func:`hold`, in
  ``<cachedir>/paphosting/rotation_held.json``), with the :func:`digest` of its membership:
  ``{"version", "digest", "rotations"}`` (:func:`held_of`).
* **Effective**: what a nameserver renders from: the newer of the published and the held one, if
  the held one still fits the platform (:func:`effective`).
* **Members**: the membership a zone is rendered with (:func:`members_of` validates a published
  value, :func:`members_for` lays it over the configured members: only configured members, never
  empty).
"""

import hashlib
import json
import os

from paphosting import files
from paphosting.errors import InvalidPillar, PillarError

KEY = "paphosting_rotation"


def value(version, members):
    """The published value for ``version`` and ``{rotation: [members]}``."""
    return {"version": version, "rotations": {n: {"members": list(m)} for n, m in members.items()}}


def configured(rotations):
    """``{rotation: [members]}`` as the pillar configures them (``Platform.rotations``)."""
    return {name: list(r.members) for name, r in rotations.items()}


def digest(rotations):
    """A short digest of a membership ``{rotation: {"members": [...]}}`` (order of names ignored)."""
    canon = {name: sorted(r["members"]) for name, r in rotations.items()}
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:16]


def held_of(published):
    """``{version, digest, rotations}`` of a ``paphosting_rotation`` pillar value, or None if it is
    not one. ``rotations`` is ``{name: {"members": [...]}}``, members sorted."""
    try:
        if isinstance(published, dict) and isinstance(published.get("version"), int):
            rotations = {
                str(name): {"members": sorted(str(m) for m in r["members"])}
                for name, r in published["rotations"].items()
            }
            return {
                "version": published["version"],
                "digest": digest(rotations),
                "rotations": rotations,
            }
    except (AttributeError, KeyError, TypeError):
        pass
    return None


def newest_held(*helds):
    """The held rotation with the highest version among ``helds`` (Nones ignored), or None."""
    found = [h for h in helds if h is not None]
    return max(found, key=lambda h: h["version"], default=None)


def effective(published, held, configured):
    """The ``paphosting_rotation`` value a nameserver renders its zones from.

    ``published`` is what the master that compiled the pillar publishes (the pillar key, or None);
    ``held`` what this minion holds (:func:`load_held`, or None): the newest rotation any master
    sent it. The held one wins when it is newer and still fits the platform (``configured``, :func:`configured`: every rotation it names exists
    and its members are configured members), so
    a master that missed a failover (it was down) cannot undo it through a highstate. Otherwise
    ``published``.
    """
    if not held or not held.get("rotations"):
        return published
    pub_version = published.get("version") if isinstance(published, dict) else None
    if isinstance(pub_version, int) and pub_version >= held["version"]:
        return published
    for name, r in held["rotations"].items():
        if name not in configured or not set(r["members"]) <= set(configured[name]):
            return published
    return {"version": held["version"], "rotations": held["rotations"]}


def held_path(cachedir):
    """Where a minion keeps the newest rotation any of its masters published to it."""
    return os.path.join(cachedir, "paphosting", "rotation_held.json")


def load_held(path):
    """The held rotation stored at ``path``, or None (no file, unreadable or malformed)."""
    held = files.read_json(path, kind=dict)
    if not (
        held is not None
        and isinstance(held.get("version"), int)
        and isinstance(held.get("digest"), str)
    ):
        return None
    out = {"version": held["version"], "digest": held["digest"]}
    rotations = held.get("rotations")
    if (
        isinstance(rotations, dict)
        and all(
            isinstance(r, dict)
            and isinstance(r.get("members"), list)
            and all(isinstance(m, str) for m in r["members"])
            for r in rotations.values()
        )
        and digest(rotations) == held["digest"]
    ):
        out["rotations"] = rotations
    return out


def hold(path, held, durable=True):
    """Store ``held`` at ``path`` when it is newer than what is stored; return what is stored now.

    A minion has one connection per master and its beacons read the pillar of the first one only;
    this file is how a watcher learns what the other master published (see ``docs/masters.md``).
    """
    with files.locked(path + ".lock"):
        current = load_held(path)
        if held is None or (current is not None and current["version"] >= held["version"]):
            return current
        files.write_json(path, held, durable=durable)
        return held


def members_of(pillar_overlay):
    """The rotation membership published by the failover, as ``{rotation: [lb ids]}``, or None.

    ``pillar_overlay`` is the value of the pillar key ``paphosting_rotation`` (or a whole pillar
    holding that key): ``{"version": int, "rotations": {name: {"members": [lb ids]}}}``. None or an
    absent key means "use the configured members".
    """
    path = (KEY,)
    overlay = pillar_overlay
    if isinstance(overlay, dict) and KEY in overlay:
        overlay = overlay[KEY]
    elif isinstance(overlay, dict) and not {"rotations", "version"} & set(overlay):
        overlay = None  # a whole pillar without the key
    if overlay is None:
        return None
    errors = []
    if not isinstance(overlay, dict):
        raise InvalidPillar([PillarError(path, f"must be a mapping, got {type(overlay).__name__}")])
    rotations = overlay.get("rotations") or {}
    if not isinstance(rotations, dict):
        raise InvalidPillar(
            [
                PillarError(
                    path + ("rotations",), f"must be a mapping, got {type(rotations).__name__}"
                )
            ]
        )
    out = {}
    for name, item in rotations.items():
        p = path + ("rotations", name)
        members = item.get("members") if isinstance(item, dict) else None
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            errors.append(PillarError(p + ("members",), "must be a list of load balancer ids"))
            continue
        out[str(name).rstrip(".").lower()] = list(members)
    if errors:
        raise InvalidPillar(errors)
    return out


def members_for(rotations, members=None):
    """``{rotation: (lb ids)}``: the configured members, overridden by ``members`` where given.

    An override can only take configured members out (the failover removes dead load balancers; it
    never adds one the pillar does not list). Names that are not configured members are dropped, and
    an override that leaves nothing falls back to the configured members (fail open: a rotation is
    never published empty).
    """
    members = {str(k).rstrip(".").lower(): v for k, v in (members or {}).items()}
    out = {}
    for name, rot in rotations.items():
        wanted = rot.members
        if name in members:
            keep = set(members[name])
            chosen = tuple(m for m in rot.members if m in keep)
            wanted = chosen or rot.members
        out[name] = wanted
    return out
