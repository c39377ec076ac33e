"""The DNS failover on a minion: remember the newest rotation any master published.

A minion connected to two masters has one pillar per connection, and Salt runs its beacons in the
connection to the first master only: the ``http_health`` beacon sees the rotation the first master
publishes, never the other's. After every rotation change each master runs :func:`hold` on the
watchers and nameservers; it records, in ``<cachedir>/paphosting/rotation_held.json``, the rotation
(version and membership digest) of the master that sent the job, when it is newer than the one
recorded. The beacon reports the newer of that and its own pillar's, so a master that missed
changes learns the current version from the next report (see ``docs/masters.md``).
"""

from salt.exceptions import CommandExecutionError

from paphosting import rotation
from paphosting.errors import PapError

__virtualname__ = "rotation"


def __virtual__():
    return __virtualname__


def hold():
    """
    Record the rotation the master that runs this job publishes (its ``paphosting_rotation``
    pillar, compiled now) when it is newer than the one recorded, and refresh the in-memory
    pillar. Returns the rotation held now: ``{"version": N, "digest": "..."}`` or None.

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net rotation.hold
    """
    published = __salt__["pillar.items"](unmask=True).get("paphosting_rotation")
    try:
        held = rotation.hold(rotation.held_path(__opts__["cachedir"]), rotation.held_of(published))
    except (OSError, PapError) as exc:
        raise CommandExecutionError(f"cannot record the held rotation: {exc}") from exc
    __salt__["saltutil.refresh_pillar"]()
    return held


def held():
    """
    The newest rotation recorded by :func:`hold`, or None.

    CLI Example:

    .. code-block:: bash

        salt ns1.paphosting.net rotation.held
    """
    return rotation.load_held(rotation.held_path(__opts__["cachedir"]))
