"""The platform model: validate the ``paphosting`` pillar and tell a minion its roles.

The schema is documented in ``docs/pillar.md``.
"""

import os

from salt.exceptions import CommandExecutionError

from paphosting import health, platformcache
from paphosting.errors import PapError

__virtualname__ = "paphosting"


def __virtual__():
    return __virtualname__


def _platform(pillar=None):
    """The platform, parsed once per pillar digest (:mod:`paphosting.platformcache`)."""
    try:
        value = pillar if pillar is not None else __pillar__.get("paphosting")
        return platformcache.load(value, __opts__.get("cachedir")).platform
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def validate(pillar=None):
    """
    Validate the platform pillar; return a summary, or fail with every error and its pillar path.

    pillar
        A ``paphosting`` value to validate instead of this minion's pillar.

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.validate
    """
    platform = _platform(pillar)
    return {
        "loadbalancers": sorted(platform.loadbalancers),
        "nameservers": sorted(platform.nameservers),
        "webservers": sorted(platform.webservers),
        "services": sorted(platform.services),
        "rotations": sorted(platform.rotations),
        "zones": sorted(platform.zones),
    }


def roles(minion_id=None):
    """
    The platform roles of a minion (``loadbalancer``, ``nameserver``, ``webserver``).

    minion_id
        Defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.roles
    """
    return _platform().roles(minion_id or __opts__["id"])


def root():
    """
    The root prefix of every managed path (minion option ``paphosting_root``, default ``/``).

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.root
    """
    return __opts__.get("paphosting_root", "/")


def schedule():
    """
    The drift-correction schedule of the platform (``paphosting:schedule`` with its defaults).

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.schedule
    """
    return _platform().schedule


def watcher_beacon():
    """
    The ``http_health`` beacon configuration of a watcher (targets and timings from
    ``paphosting:loadbalancers`` and ``paphosting:health``), or None when this minion is not a
    watcher. Used by the ``watcher`` SLS.

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.watcher_beacon
    """
    platform = _platform()
    if __opts__["id"] not in platform.health.watchers:
        return None
    return health.beacon_config(platform, __opts__["id"])


def beacon_saved(name="http_health"):
    """
    True when beacon ``name`` is saved in this minion's ``minion.d/beacons.conf`` (where
    ``beacon.present`` with ``save: True`` keeps it, and whence the minion loads it at every
    start). The ``watcher`` SLS uses it to skip the module syncs a fresh watcher needs: reading a
    file costs nothing, asking the running minion (``beacons.list``) a round trip over its event
    bus of 1.5 s and more.

    name
        The beacon's name.

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.beacon_saved
    """
    path = os.path.join(os.path.dirname(__opts__["conf_file"]), "minion.d", "beacons.conf")
    try:
        with open(path, encoding="utf-8") as fh:
            return any(line.rstrip() == f"  {name}:" for line in fh)
    except OSError:
        return False
