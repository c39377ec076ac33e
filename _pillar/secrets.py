"""
Publish the platform's secrets, decrypted, to the minions whose role needs them, and to no other.

Returns ``{"paphosting_secrets": {kind: {name: text}}}`` with only the kinds of the minion's roles
in the platform model (:data:`paphosting.secrets.KINDS`): ``tls`` (each service's PEM bundle) to
load balancers, ``dnssec`` to nameservers; nothing to a webserver, nothing to a minion outside
the platform, and the masters' own secrets (``acme``) to nobody. The secrets are the
``secrets/<kind>/<name>.asc`` files of the pillar tree this compile reads (the first folder of
``pillar_roots`` of its pillar environment: the validated revision a master serves), decrypted
with the platform key in the master's ``gpg_keydir``. See docs/tls.md.

A secret that cannot be read or decrypted fails the minion's pillar (Salt reports "Failed to load
ext_pillar secrets: ..." naming the file) rather than publishing less: a load balancer that lost a
certificate from its pillar would stop serving HTTPS for it. Nothing is logged but file names and
fingerprints.

Master configuration (``conf/master.d/paphosting.conf``):

.. code-block:: yaml

    ext_pillar:
      - secrets: {}

    # optional: where the platform key lives (Salt's default: /etc/salt/gpgkeys)
    gpg_keydir: /etc/salt/gpgkeys
"""

import logging
import os

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import model, platformcache, secrets
from paphosting.errors import PapError

log = logging.getLogger(__name__)

__virtualname__ = "secrets"


def __virtual__():
    return __virtualname__


def _tree(tree=None):
    if tree:
        return tree
    env = __opts__.get("pillarenv") or __opts__.get("saltenv") or "base"
    roots = (__opts__.get("pillar_roots") or {}).get(env) or []
    for root in roots:
        if os.path.isdir(os.path.join(root, secrets.SECRETS_DIR)):
            return root
    return None


def ext_pillar(minion_id, pillar, tree=None, **kwargs):
    """The ``paphosting_secrets`` pillar value of ``minion_id`` (see the module docstring).

    tree
        The pillar tree holding ``secrets/`` (default: found in ``pillar_roots``).
    """
    if not pillar.get(model.ROOT):
        return {}  # not a minion of the platform
    try:
        platform = platformcache.platform(pillar.get(model.ROOT), __opts__["cachedir"])
    except PapError as exc:
        log.error(
            "secrets ext_pillar: the pillar of %s is invalid, publishing nothing: %s",
            minion_id,
            exc,
        )
        return {}
    kinds = secrets.kinds_for(platform.roles(minion_id))
    where = _tree(tree)
    if not kinds or where is None:
        return {}
    # Raising fails this minion's pillar (see the module docstring); SecretError names the file.
    published = secrets.publish(where, kinds, secrets.keydir(__opts__))
    log.debug(
        "secrets ext_pillar: %s gets %s",
        minion_id,
        {k: {n: secrets.fingerprint(t) for n, t in v.items()} for k, v in published.items()},
    )
    return {secrets.PILLAR_KEY: published} if published else {}
