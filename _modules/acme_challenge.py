"""ACME DNS-01 challenge records on a nameserver: hold the set the issuing master sent, apply it.

The ``tls`` runner on a master sends every nameserver the challenge TXT records of an issuance
(:func:`apply`), waits until every one serves them, lets the CA validate, then sends the empty set.
The nameserver holds the newest set in ``<cachedir>/paphosting/acme_held.json``; every zone render
(``dns_zone``, the highstate's included) lays the held records into the zones, so a highstate
during an issuance keeps them and one after it removes them. See ``docs/tls.md``.
"""

from salt.exceptions import CommandExecutionError

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import challenges, saltcontext
from paphosting.errors import PapError

__virtualname__ = "acme_challenge"


def __virtual__():
    return __virtualname__


def _path():
    return challenges.held_path(__opts__["cachedir"])


def apply(challenge_set):
    """
    Hold ``challenge_set`` when it is newer than the set held, then bring the zones it touches
    (and those the previous set touched) up to date with ``dns_zone.apply_all``: written, checked
    by the server's own checker, reloaded, and waited for until served.

    Returns ``{"held": version, "replaced": bool, "records": {owner: [values]}, "zones": {zone:
    {"serial", "written", "reloaded", "error"}}}``; fails when a zone could not be applied.

    challenge_set
        ``{"version": float, "expires": epoch seconds, "records": {owner fqdn: [TXT values]}}``
        (``records: {}`` removes every challenge record).

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net acme_challenge.apply '{"version": 1, "expires": 2e9, "records": {}}'
    """
    try:
        before = challenges.live_records(challenges.load_held(_path()))
        held, replaced = challenges.hold(_path(), challenge_set)
    except (OSError, PapError) as exc:
        raise CommandExecutionError(f"cannot hold the challenge set: {exc}") from exc
    now = challenges.live_records(held)
    # Compiled now, from the master that sent this job: the in-memory pillar may predate the
    # last push (as for rotation.apply).
    pillar = __salt__["pillar.items"](unmask=True)
    zones = saltcontext.renderer(__opts__, __context__, pillar).zone_names
    try:
        touched = set(challenges.zones_of(zones, before)) | set(challenges.zones_of(zones, now))
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    out = {"held": held["version"], "replaced": replaced, "records": now, "zones": {}}
    if not touched:
        return out
    done = __salt__["dns_zone.apply_all"](zones=sorted(touched), pillar=pillar)
    keys = ("serial", "written", "reloaded", "error")
    return saltcontext.zones_applied(done, out, keys, "the challenge records")


def held():
    """
    The challenge set this nameserver holds (expired or not), or None.

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net acme_challenge.held
    """
    return challenges.load_held(_path())
