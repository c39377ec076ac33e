"""
Publish the DNS failover's decision as pillar, so a highstate renders exactly the same zones.

Returns ``{"paphosting_rotation": {"version": N, "rotations": {name: {"members": [...]}}}}``,
computed from the state the ``rotation`` runner keeps on this master and the minion's own
``paphosting`` pillar: a load balancer the failover took out (or an operator drained) stays out
of every highstate until the failover puts it back. Without any state yet, every rotation has its
configured members and the version is 0. When the state cannot be read the pillar fails to
compile (the highstate stops) rather than publish the configured members.

Master configuration (``conf/master.d/paphosting.conf``):

.. code-block:: yaml

    ext_pillar:
      - paphosting_rotation: {}
"""

import logging

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import decision, overlay, platformcache
from paphosting.errors import PapError

log = logging.getLogger(__name__)

__virtualname__ = "paphosting_rotation"


def __virtual__():
    return __virtualname__


def ext_pillar(minion_id, pillar, **kwargs):
    """The ``paphosting_rotation`` pillar value (see the module docstring)."""
    if not pillar.get("paphosting"):
        return {}  # not a minion of the platform
    try:
        # Parsed once per pillar digest for all of this master's processes (platformcache.platform).
        config = decision.config_of(
            platformcache.platform(pillar.get("paphosting"), __opts__["cachedir"])
        )
    except PapError as exc:
        log.error(
            "rotation ext_pillar: the paphosting pillar of %s is invalid, publishing nothing: %s",
            minion_id,
            exc,
        )
        return {}
    # An unreadable state must not publish the configured members: that would undo a failover.
    # Raising makes the pillar fail to compile, so highstates stop instead (Salt reports
    # "Failed to load ext_pillar paphosting_rotation: ...").
    state = decision.load(decision.state_path(__opts__))
    return {overlay.KEY: decision.publish(state, config)}
