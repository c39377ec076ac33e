"""
The platform pillar from Subversion: push a validated revision, show what is live, keep the
masters in step.

The masters serve the pillar from ``<cachedir>/paphosting/pillar/live``, a symlink to the last
revision that passed validation. Nothing else ever becomes live. See ``docs/push.md``.

Master configuration (``conf/master.d/svnpillar.conf``):

.. code-block:: yaml

    paphosting_svn:
      url: svn://svn.paphosting.net/platform   # the repository
      path: pillar                             # the pillar tree (with its top.sls) in it
      username: salt-nl                        # optional: for marking revisions pushed
      password_file: /etc/salt/svn.password    # optional
      timeout: 10                              # seconds for an svn command
      keep: 5                                  # validated revisions kept in the cache
      apply_timeout: 300                       # seconds a minion may take for its highstate
      store: /var/cache/salt/master/paphosting # optional: where revisions live (<cachedir>/paphosting)
      name: nl                                 # optional: how this master signs its pushes (its id)
    pillar_roots:
      base: [/var/cache/salt/master/paphosting/pillar/live]
      paphosting_candidate: [/var/cache/salt/master/paphosting/pillar/candidate]
"""

import contextlib
import logging
import shutil

import salt.cache
import salt.client
import salt.loader
import salt.utils.network
from salt.exceptions import SaltException

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import pillarcompile, pushapply, saltcontext
from paphosting import push as ppush
from paphosting.errors import PapError

log = logging.getLogger(__name__)

__virtualname__ = "svnpillar"


def __virtual__():
    if shutil.which("svn") is None:
        return (False, "svnpillar: the svn command line client is not installed")
    return __virtualname__


def _finish(ok, text):
    return saltcontext.runner_return(__context__, ok, text)


def _accepted():
    return pillarcompile.accepted_minions(__opts__)


def _compile_tree(tree, prefix):
    """Every minion's pillar compiled from ``tree`` (:func:`paphosting.pillarcompile.compile_tree`):
    the accepted minions and every server the pillar names, each with its cached grains."""
    cache = salt.cache.factory(__opts__)

    def grains_of(minion):
        try:
            return cache.fetch("grains", minion) or {}
        except Exception:  # noqa: BLE001 - no cached grains: compile with the id alone
            return {}

    return pillarcompile.compile_tree(__opts__, tree, prefix, _accepted(), grains_of=grains_of)


def _published_here():
    """A function telling whether this master published a jid (its job cache has the job); the
    returners are loaded at its first call."""
    cache = __opts__.get("master_job_cache", "local_cache")
    loaded = []

    def mine(jid):
        if not loaded:
            loaded.append(salt.loader.returners(__opts__, {}))
        try:
            return bool(loaded[0][f"{cache}.get_load"](jid))
        except Exception:  # noqa: BLE001 - an unreadable job is not known to be ours
            return False

    return mine


@contextlib.contextmanager
def _fleet():
    """The fleet (:class:`paphosting.pushapply.Fleet`) through this master's ``LocalClient``,
    made at its first use and destroyed at the end; Salt's errors become ``FleetError``."""
    clients = []

    def cmd(minions, fun, arg=(), kwarg=None, timeout=None, full_return=False):
        try:
            if not clients:
                clients.append(salt.client.get_local_client(__opts__["conf_file"], mopts=__opts__))
            return clients[0].cmd(
                list(minions),
                fun,
                list(arg),
                tgt_type="list",
                kwarg=kwarg,
                timeout=timeout,
                full_return=full_return,
            )
        except SaltException as exc:
            raise pushapply.FleetError(str(exc)) from exc

    own = set(salt.utils.network.ip_addrs()) | set(salt.utils.network.ip_addrs6())
    own.add(str(__opts__.get("interface", "")))
    try:
        yield pushapply.Fleet(
            cmd=cmd,
            accepted=_accepted,
            published_here=_published_here(),
            own_addresses=own,
            ret_port=int(__opts__.get("ret_port", 4506)),
            progress=lambda line: log.info("svnpillar: %s", line),
        )
    finally:
        for client in clients:
            client.destroy()


# --- the runner functions --------------------------------------------------------------------


def push(rev=None, test=False):
    """
    Validate a Subversion revision of the pillar, make it live on this master, mark it pushed in
    Subversion (so the other master follows) and apply it to the fleet: one load balancer and one
    nameserver first, then the rest, stopping at the first failure.

    rev
        The revision to push (default: the newest, HEAD). Pushing a revision older than the one
        already pushed is refused: to roll back, revert in Subversion and push the new revision.

    test
        Validate, then show per minion what the highstate would change with this revision
        (``state.apply test=True`` against the candidate), without making anything live.

    A revision that fails validation (schema, haproxy -c, the zone and server checkers) is
    refused with the file, pillar path and checker message; nothing changes anywhere.

    CLI Example:

    .. code-block:: bash

        salt-run svnpillar.push
        salt-run svnpillar.push rev=1234 test=True
    """
    with _fleet() as fleet:
        return _finish(*ppush.push(__opts__, rev, test, _compile_tree, fleet, log))


def sync():
    """
    Make the newest revision marked pushed in Subversion live on this master, if it is newer
    than the live one (after validating it). Never goes back to an older revision. Meant for
    the master's own ``schedule`` (see ``conf/master.d/svnpillar.conf``), so that a master that
    was down or missed a push from the other master converges without anyone acting.

    Subversion unreachable: logs it and keeps the live revision.

    CLI Example:

    .. code-block:: bash

        salt-run svnpillar.sync
    """
    return _finish(*ppush.sync(__opts__, _compile_tree, log))


def status():
    """
    What this master serves: the live revision, its author and date, since when, the revisions
    held, and what the last push and the last sync did.

    CLI Example:

    .. code-block:: bash

        salt-run svnpillar.status
    """
    try:
        return ppush.status(__opts__)
    except PapError as exc:
        return _finish(False, str(exc))


def revision():
    """
    The live revision of this master as data (for scripts and the other master's checks):
    ``{"revision": N, "author": ..., "date": ..., "since": ..., "by": ...}``, or an empty dict.

    CLI Example:

    .. code-block:: bash

        salt-run svnpillar.revision --out=json
    """
    try:
        return ppush.live_info(__opts__)
    except PapError as exc:
        return _finish(False, str(exc))
