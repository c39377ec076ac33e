"""Drift correction on the minion: a highstate that reports what it had to change.

Scheduled on every minion by the ``minion`` SLS (interval and splay from ``paphosting:schedule``).
"""

from paphosting import drift

__virtualname__ = "drift"


def __virtual__():
    return __virtualname__


def highstate(**kwargs):
    """
    Run a highstate; when it had to change something, or something failed, report it on the
    event bus with the tag ``paphosting/drift/<minion id>`` and the data
    ``{"changed": [...], "failed": [...]}`` (see ``paphosting.drift.summarize``).

    Returns the summary. A run skipped because another state run is in progress reports nothing.

    CLI Example:

    .. code-block:: bash

        salt-call drift.highstate
    """
    ret = __salt__["state.highstate"](**kwargs)
    if isinstance(ret, list) and any("is running as PID" in str(line) for line in ret):
        return {"skipped": " ".join(str(line) for line in ret), "changed": [], "failed": []}
    summary = drift.summarize(ret)
    if summary["changed"] or summary["failed"]:
        __salt__["event.send"](drift.TAG_PREFIX + __opts__["id"], summary)
    return summary
