"""Drift correction on the minion: a highstate that reports what it had to change.

Scheduled on every minion by the ``minion`` SLS (interval and splay from ``paphosting:schedule``).
"""

import copy
import logging

import salt.config
import salt.loader
import salt.utils.zeromq
from salt.exceptions import CommandExecutionError

from paphosting import drift

log = logging.getLogger(__name__)

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


def _functions():
    """``(execution functions, master)`` to run the highstate with.

    Salt runs one scheduler for all of a minion's master connections, with the first master's
    options: without this, a scheduled highstate fails for as long as the first master is down,
    since it compiles its pillar and fetches its states there. So: this connection's master when it
    answers, else the first other configured master that does, with the loader built for it.
    """
    candidates = drift.master_candidates(
        __opts__.get("master"), _configured_masters(), __opts__.get("master_port", 4506)
    )
    tried = []
    for i, (host, port) in enumerate(candidates):
        address = drift.reachable(host, port)
        if address is None:
            tried.append(f"{host}:{port}")
            continue
        if i == 0:
            return __salt__, host
        log.warning(
            "drift: master %s does not answer; running the highstate through %s",
            ", ".join(tried),
            host,
        )
        opts = copy.deepcopy(__opts__)
        opts.update(
            master=host,
            master_ip=address,
            master_port=port,
            master_uri=f"tcp://{salt.utils.zeromq.ip_bracket(address)}:{port}",
        )
        return salt.loader.minion_mods(opts, utils=salt.loader.utils(opts)), host
    raise CommandExecutionError(f"drift: no master answers (tried {', '.join(tried) or 'none'})")


def highstate(**kwargs):
    """
    Run a highstate through a master that answers (this job's master, else the next one in the
    minion's ``master`` list); when it had to change something, or something failed, report it on
    the event bus with the tag ``paphosting/drift/<minion id>`` and the data
    ``{"changed": [...], "failed": [...], "master": <master>}`` (see
    ``paphosting.drift.summarize``).

    Returns the summary. A run skipped because another state run is in progress reports nothing.

    CLI Example:

    .. code-block:: bash

        salt-call drift.highstate
    """
    functions, master = _functions()
    ret = functions["state.highstate"](**kwargs)
    if isinstance(ret, list) and any("is running as PID" in str(line) for line in ret):
        return {
            "skipped": " ".join(str(line) for line in ret),
            "changed": [],
            "failed": [],
            "master": master,
        }
    summary = drift.summarize(ret)
    summary["master"] = master
    if summary["changed"] or summary["failed"]:
        __salt__["event.send"](drift.TAG_PREFIX + __opts__["id"], summary)
    return summary
