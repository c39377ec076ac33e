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

import json
import os
import time

from salt.exceptions import CommandExecutionError

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import actions, files, model, overlay, platformcache, saltcontext
from paphosting.errors import PapError

__virtualname__ = "rotation"
__func_alias__ = {"actions_": "actions"}


def __virtual__():
    return __virtualname__


def _held_path():
    return overlay.held_path(__opts__["cachedir"])


def _hold(published, durable=True):
    try:
        return overlay.hold(_held_path(), overlay.held_of(published), durable=durable)
    except (OSError, PapError) as exc:
        raise CommandExecutionError(f"cannot record the held rotation: {exc}") from exc


def _published(published, pillar=None):
    """``published``, or the rotation the master running this job publishes (in ``pillar``, else
    in the pillar compiled now)."""
    if published is None:
        if pillar is None:
            pillar = __salt__["pillar.items"](unmask=True)
        published = pillar.get(overlay.KEY)
    if overlay.held_of(published) is None:
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
    The failover's push: :func:`hold` ``published``, then, on a nameserver, bring every zone up
    to date with ``dns_zone.apply_all`` (the zones holding a rotation name first, then all the
    others in one batch), so the running server serves the newest rotation held. Zones whose
    content is current are not written or reloaded: when both masters push the same change, the
    second finds nothing to do.

    Returns ``{"held": {...}, "pillar": "cached" | "in memory" | "compiled", "zones": {zone:
    {"written", "patched", "serial", "reloaded", "error"}}, "timings": {phase: seconds}}``
    listing the zones that changed, and ``"started_at"`` (clock time, epoch seconds; with
    ``timings["served_at"]``, when the last zones were served: the benchmark places the job
    between the kill and the answers with them); fails when a zone could not be applied (the
    others are still applied).

    published
        As for :func:`hold`.

    pillar_digest
        The digest (``paphosting.model.digest``) of the ``paphosting`` pillar the master decided
        with. When this minion has that platform prepared in its cache
        (:mod:`paphosting.platformcache`), or its in-memory pillar has that digest, the zones
        render from it; otherwise (or without it) the minion compiles its pillar first.

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net rotation.apply
    """
    started = time.monotonic()
    started_at = round(time.time(), 3)
    cached = None
    if pillar_digest is not None:
        # The platform the master decided with, prepared on this minion by an earlier apply: no
        # pillar digest to compute, nothing to parse (milliseconds, whatever the number of zones).
        cached = platformcache.cached(pillar_digest, __opts__["cachedir"])
    if cached is not None:
        how, pillar, current = "cached", None, __pillar__
    elif pillar_digest is not None and pillar_digest == model.digest(__pillar__.get("paphosting")):
        how, pillar, current = "in memory", None, __pillar__
    else:
        # Compiled now, from the master that sent this job: the in-memory pillar may predate the
        # last push (a push applies highstates, which compile their own pillar).
        how = "compiled"
        pillar = current = __salt__["pillar.items"](unmask=True)
    # Flushed once the zones are served (below): an fsync waits for the file system's journal,
    # seconds while thousands of zone files are written or freed.
    held = _hold(_published(published, current), durable=False)
    out = {"held": held, "pillar": how, "zones": {}}
    if cached is not None:
        nameservers = cached.nameservers
    else:
        try:
            nameservers = saltcontext.renderer(__opts__, __context__, current).nameservers
        except CommandExecutionError as exc:
            raise CommandExecutionError(f"the pillar of this minion is invalid: {exc}") from exc
    if __opts__["id"] not in nameservers or "dns_zone.apply_all" not in __salt__:
        files.flush(_held_path())
        return out
    # Explicit members: what this minion holds now (the newest version any master sent).
    members = {n: r["members"] for n, r in (held or {}).get("rotations", {}).items()} or None
    timings = {"prepare": round(time.monotonic() - started, 4)}
    done = __salt__["dns_zone.apply_all"](
        members=members,
        pillar=pillar,
        pillar_digest=pillar_digest if cached else None,
        failover=True,
        timings=timings,
    )
    files.flush(_held_path())
    timings["total"] = round(time.monotonic() - started, 4)
    out["timings"] = timings
    out["started_at"] = started_at
    # No pillar refresh: what reads the rotation on a minion (the zones, the beacon's reports)
    # takes the newer of the in-memory pillar's and the held one recorded above. A refresh after
    # every change had each master compile every nameserver's and watcher's whole pillar again
    # (megabytes at a hoster's size: seconds of master CPU per minion, twice per change) and
    # reload the minion's beacons, for nothing the failover needs.
    keys = ("written", "patched", "serial", "reloaded", "error")
    saltcontext.zones_applied(done, out, keys, "the rotation", changed_only=True)
    return out


def held():
    """
    The newest rotation recorded by :func:`hold`, or None.

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net rotation.held
    """
    return overlay.load_held(overlay.held_path(__opts__["cachedir"]))


# --- operator actions (paphosting.actions): this minion keeps the masters' journal and relays ---


def _actions_path():
    return actions.journal_path(__opts__["cachedir"])


def _load_actions(path):
    try:
        return actions.load_journal(path)
    except actions.BadRecord as exc:
        raise CommandExecutionError(str(exc)) from exc


def keep_actions(entries=None, fire=True):
    """
    Keep the masters' operator actions (``{slot: {"record": text, "sig": signature}}``, see
    ``paphosting.actions``) that are newer than this minion's, and with ``fire`` send each to
    every master this minion is connected to (tag ``paphosting/operator/action``) every record it
    holds: that is how an action taken on one master reaches the other, and how a master whose
    journal differs from this minion's (seen in its heartbeat) learns what it lacks. Records not
    signed with the master key this minion trusts are refused. Returns the slots kept.

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net rotation.keep_actions entries='{...}'
    """
    if not isinstance(entries, dict):
        raise CommandExecutionError(
            f"entries: a mapping of slot to record and sig, got {entries!r}"
        )
    try:
        with open(os.path.join(__opts__["pki_dir"], "minion_master.pub"), "rb") as fh:
            public = fh.read()
    except OSError as exc:
        raise CommandExecutionError(f"cannot read the master's public key: {exc}") from exc
    path = _actions_path()
    kept, refused, fired = [], [], []
    with files.locked(path + ".lock"):
        journal = _load_actions(path)
        for entry in entries.values():
            try:
                record = actions.verify_entry(entry, public)
            except actions.BadRecord as exc:
                refused.append(str(exc))
                continue
            if actions.merge(journal, entry["record"], entry["sig"], record):
                kept.append(actions.slot(record))
        if kept:
            files.write_checked(path, json.dumps(journal, sort_keys=True), mode=0o600)
        if fire:
            fired = list(journal.values())  # all: a master that missed one learns it here
    for entry in fired:
        __salt__["event.send"](actions.TAG, {"record": entry["record"], "sig": entry["sig"]})
    if refused:
        raise CommandExecutionError("refused operator actions: " + "; ".join(refused))
    return {"kept": kept, "fired": len(fired)}


def actions_():
    """
    The operator actions this minion keeps (``{slot: {"record", "sig"}}``): a master that was
    down while the other took one learns it from here (``salt-run rotation.sync_actions``).

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net rotation.actions
    """
    return _load_actions(_actions_path())
