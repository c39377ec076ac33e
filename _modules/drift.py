"""Drift correction on the minion: a highstate that reports what it had to change.

Scheduled on every minion by the ``minion`` SLS (interval and splay from ``paphosting:schedule``).
"""

import copy
import logging
import os

import salt.config
import salt.loader
import salt.utils.zeromq
from salt.exceptions import CommandExecutionError

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import drift

log = logging.getLogger(__name__)

REVISION_KEY = "paphosting_revision"  # published by the svnpillar ext_pillar

__virtualname__ = "drift"


def __virtual__():
    return __virtualname__


def _configured_masters():
    """The ``master`` setting of the minion's configuration file (every master, in order)."""
    try:
        return salt.config.minion_config(__opts__["conf_file"]).get("master")
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("drift: cannot read %s: %s", __opts__.get("conf_file"), exc)
        return None


def _loader(host, port, address):
    """Execution functions whose requests (pillar, files) go to the master at ``address``."""
    opts = copy.deepcopy(__opts__)
    opts.update(
        master=host,
        master_ip=address,
        master_port=port,
        master_uri=f"tcp://{salt.utils.zeromq.ip_bracket(address)}:{port}",
    )
    return salt.loader.minion_mods(opts, utils=salt.loader.utils(opts))


def _revision(functions, host):
    """The pillar revision the master behind ``functions`` serves (``paphosting_revision``)."""
    try:
        revision = functions["pillar.items"](unmask=True).get(REVISION_KEY)
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("drift: cannot compile the pillar from %s: %s", host, exc)
        return None
    return revision if isinstance(revision, int) else None


def _functions():
    """``(execution functions, master, pillar revision)`` to run the highstate with.

    Salt runs one scheduler for all of a minion's master connections, with the first master's
    options, so a scheduled job compiles its pillar and fetches its states there. Here: every
    configured master that answers (this job's first), and of those the one serving the newest
    pillar revision (``paphosting_revision``, from the ``svnpillar`` ext_pillar): a master that
    is down, or that has not yet synced a revision the other pushed, is passed over.
    """
    candidates = drift.master_candidates(
        __opts__.get("master"), _configured_masters(), __opts__.get("master_port", 4506)
    )
    live, down = [], []
    for i, (host, port) in enumerate(candidates):
        address = drift.reachable(host, port)
        if address is None:
            down.append(f"{host}:{port}")
        else:
            live.append((host, __salt__ if i == 0 else _loader(host, port, address)))
    if not live:
        raise CommandExecutionError(f"drift: no master answers (tried {', '.join(down) or 'none'})")
    if len(live) == 1:
        revisions = [None]
    else:
        revisions = [_revision(functions, host) for host, functions in live]
    best = drift.choose(revisions)
    host, functions = live[best]
    if host != candidates[0][0]:
        log.warning(
            "drift: running the highstate through %s (revision %s; down: %s; others: %s)",
            host,
            revisions[best],
            ", ".join(down) or "none",
            ", ".join(f"{h} r{r}" for (h, _), r in zip(live, revisions, strict=True) if h != host)
            or "none",
        )
    return functions, host, revisions[best]


def highstate(**kwargs):
    """
    Run a highstate through the master that serves the newest pillar revision among those of the
    minion's ``master`` list that answer (this job's master among equals); report the run on the
    event bus with the tag ``paphosting/drift/<minion id>`` and the data ``{"report": <text>,
    "sig": <signature>}``: the text names this minion and holds the summary ``{"changed": [...],
    "failed": [...], "master": <master>, "revision": <pillar revision>, "schedule": {"interval",
    "splay"}}`` (see ``paphosting.drift.summarize``), signed with this minion's key
    (``paphosting.drift.signed_report``). The masters record a run that changed or failed
    something as drift, and every run as the minion's last run. The revision is None when only one
    master answered (nothing to compare) or none serves one.

    Returns the summary. A run skipped because another state run is in progress reports nothing.

    CLI Example:

    .. code-block:: bash

        salt-call drift.highstate
    """
    functions, master, revision = _functions()
    # The project's modules are not synced at every highstate (autoload_dynamic_modules: False,
    # conf/minion.d/paphosting.conf): the scheduled correction brings code drift back too. As
    # Salt's autoload did: onto disk, where the state run loads them, without refreshing the
    # minion's pillar (refresh=True would recompile it, and reset what the pillar schedules).
    functions["saltutil.sync_all"](refresh=False)
    ret = functions["state.highstate"](**kwargs)
    if isinstance(ret, list) and any("is running as PID" in str(line) for line in ret):
        return {
            "skipped": " ".join(str(line) for line in ret),
            "changed": [],
            "failed": [],
            "master": master,
            "revision": revision,
        }
    summary = drift.summarize(ret)
    summary.update(master=master, revision=revision)
    sched = __salt__["paphosting.schedule"]()
    summary["schedule"] = {"interval": sched["highstate_interval"], "splay": sched["splay"]}
    # Every run is reported, a run that changed nothing too: the masters list a minion whose
    # runs stopped (drift.report, drift.heal). Signed with this minion's key: the masters trust
    # the minion id the signature proves, not the event's (see paphosting.drift).
    with open(os.path.join(__opts__["pki_dir"], "minion.pem"), "rb") as fh:
        data = drift.signed_report(__opts__["id"], summary, fh.read())
    __salt__["event.send"](drift.TAG_PREFIX + __opts__["id"], data)
    return summary


def scheduled():
    """
    Whether this minion's drift-correction job is in its schedule: ``{"present": bool}``. Asked
    by the masters' ``drift.heal`` (which knows from the pillar it serves whether it should be).

    CLI Example:

    .. code-block:: bash

        salt '*' drift.scheduled
    """
    jobs = __salt__["schedule.list"](show_all=True, return_yaml=False) or {}
    return {"present": drift.SCHEDULE_JOB in jobs}
