"""The DNS failover on a minion: hold the newest rotation any master published, apply it.

After every rotation change each master runs :func:`apply` on the watchers and nameservers, with
the rotation it publishes as the argument. The minion records it in
``<cachedir>/paphosting/rotation_held.json`` when it is newer than the one recorded (version,
membership and its digest), and a nameserver then brings every zone up to date from the newest
rotation it holds (``dns_zone.apply``, under the minion's zone lock).

Why a file and not only the pillar: a minion connected to two masters has one pillar per
connection, and Salt runs its beacons in the connection to the first master only. The
``http_health`` beacon reports the newer of its pillar's and the held rotation, so a master that
missed changes learns the current version from the next report; zones render from the newer of
the two, so a highstate through a master that missed a failover cannot undo it (see
``docs/masters.md``).

Why not ``state.apply``: a state run waits for (or fails on) any other state run on the minion,
including one a master that has since died left queued; the failover must not wait for that.
"""

from salt.exceptions import CommandExecutionError

from paphosting import model, rotation
from paphosting.errors import PapError

__virtualname__ = "rotation"


def __virtual__():
    return __virtualname__


def _hold(published):
    try:
        return rotation.hold(rotation.held_path(__opts__["cachedir"]), rotation.held_of(published))
    except (OSError, PapError) as exc:
        raise CommandExecutionError(f"cannot record the held rotation: {exc}") from exc


def _published(published, pillar=None):
    """``published``, or the rotation the master running this job publishes (in ``pillar``, else
    in the pillar compiled now)."""
    if published is None:
        if pillar is None:
            pillar = __salt__["pillar.items"](unmask=True)
        published = pillar.get("paphosting_rotation")
    if rotation.held_of(published) is None:
        raise CommandExecutionError(
            "published: not a rotation (want {'version': int, 'rotations': {name: {'members': [...]}}}),"
            f" got {published!r}"
        )
    return published


def hold(published=None):
    """
    Record ``published`` when it is newer than the rotation held. Returns the rotation held now:
    ``{"version": N, "digest": "...", "rotations": {...}}`` or None.

    published
        ``{"version": N, "rotations": {name: {"members": [...]}}}``; default: the
        ``paphosting_rotation`` pillar of the master that runs this job, compiled now.

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net rotation.hold
    """
    return _hold(_published(published))


def apply(published=None, pillar_digest=None):
    """
    The failover's push: :func:`hold` ``published``, then, on a nameserver, ``dns_zone.apply``
    every zone, so the running server serves the newest rotation held. Zones whose content is
    current are not written or reloaded: when both masters push the same change, the second
    finds nothing to do.

    Returns ``{"held": {...}, "pillar": "in memory" | "compiled", "zones": {zone: {"written",
    "serial", "reloaded", "error"}}}``; fails when a zone could not be applied (the others are
    still applied).

    published
        As for :func:`hold`.

    pillar_digest
        The digest (``paphosting.model.digest``) of the ``paphosting`` pillar the master decided
        with. When the minion's in-memory pillar has the same digest, the zones render from it;
        otherwise (or without it) the minion compiles its pillar from the master first.

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net rotation.apply
    """
    if pillar_digest is not None and pillar_digest == model.digest(__pillar__.get("paphosting")):
        # The in-memory pillar holds the very platform the master decided with: use it (a pillar
        # compile is a round trip to the master, a third of this job's time).
        pillar, current = None, __pillar__
    else:
        # Compiled now, from the master that sent this job: the in-memory pillar may predate the
        # last push (a push applies highstates, which compile their own pillar).
        pillar = current = __salt__["pillar.items"](unmask=True)
    held = _hold(_published(published, current))
    out = {"held": held, "pillar": "compiled" if pillar is not None else "in memory", "zones": {}}
    try:
        platform = model.parse(current.get("paphosting"))
    except PapError as exc:
        raise CommandExecutionError(f"the pillar of this minion is invalid: {exc}") from exc
    if __opts__["id"] not in platform.nameservers or "dns_zone.apply" not in __salt__:
        __salt__["saltutil.refresh_pillar"]()
        return out
    errors = []
    for zone in sorted(platform.zones):
        try:
            done = __salt__["dns_zone.apply"](zone, pillar=pillar)
        except CommandExecutionError as exc:
            errors.append(f"{zone}: {exc}")
            continue
        out["zones"][zone] = {
            "written": done["written"],
            "serial": done["serial"],
            "reloaded": done["reloaded"],
            "error": done["error"],
        }
        if done["error"]:
            errors.append(f"{zone}: {done['error']}")
    # Last, so the zones do not wait for it: bring the in-memory pillar (what `pillar.item` shows,
    # what the beacons read) up to date. Asynchronous; the minion reloads its beacons meanwhile.
    __salt__["saltutil.refresh_pillar"]()
    if errors:
        raise CommandExecutionError(
            "the rotation was not applied to every zone: " + "; ".join(errors), info=out
        )
    return out


def held():
    """
    The newest rotation recorded by :func:`hold`, or None.

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net rotation.held
    """
    return rotation.load_held(rotation.held_path(__opts__["cachedir"]))
