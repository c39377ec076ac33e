"""
Publish the pillar revision this master serves, as pillar: ``paphosting_revision: N``.

The number of the revision ``svnpillar.push`` or ``svnpillar.sync`` made live on this master
(``<store>/pillar/live``, see ``docs/push.md``); nothing when none is live or svnpillar is not
configured. A minion that can compile its pillar from either master uses it to pick the master
serving the newer revision: ``drift.highstate`` does, so a scheduled highstate does not apply a
revision older than one the other master already pushed.

Master configuration (``conf/master.d/paphosting.conf``):

.. code-block:: yaml

    ext_pillar:
      - svnpillar: {}
"""

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import pushstore

__virtualname__ = "svnpillar"

REVISION_KEY = "paphosting_revision"


def __virtual__():
    return __virtualname__


def ext_pillar(minion_id, pillar, **kwargs):
    """``{"paphosting_revision": N}`` for the live revision of this master, or ``{}``."""
    if not isinstance(__opts__.get("paphosting_svn"), dict):
        return {}
    revision = pushstore.Store.of(__opts__).live_revision()
    return {} if revision is None else {REVISION_KEY: revision}
