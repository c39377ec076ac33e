"""Drift correction on the masters: record the minions' drift reports and list them.

The reactor ``reactor/drift.sls`` calls :func:`record` for every ``paphosting/drift/<id>`` event.
Both masters receive every event, so each keeps the same history.
"""

import logging
import os
import time

from paphosting import drift

log = logging.getLogger(__name__)

__virtualname__ = "drift"


def __virtual__():
    return __virtualname__


def _history_path():
    return os.path.join(__opts__["cachedir"], "paphosting", "drift.json")


def _valid_items(items):
    return isinstance(items, list) and all(
        isinstance(i, dict) and isinstance(i.get("state"), str) and isinstance(i.get("id"), str)
        for i in items
    )


def record(minion, report):
    """
    Record one drift report. ``minion`` is the id the master authenticated (``data['id']`` of an
    ``event.send`` event); ``report`` is the minion's summary. Malformed reports are logged and
    dropped.

    CLI Example:

    .. code-block:: bash

        salt-run drift.record minion=lb1 report='{"changed": [], "failed": []}'
    """
    if (
        not isinstance(report, dict)
        or not _valid_items(report.get("changed"))
        or not _valid_items(report.get("failed"))
    ):
        log.warning("drift: ignoring a malformed drift report from %r: %r", minion, report)
        return False
    summary = {"changed": report["changed"], "failed": report["failed"]}
    if isinstance(report.get("master"), str):
        summary["master"] = report["master"]  # the master the highstate ran through
    if isinstance(report.get("revision"), int):
        summary["revision"] = report["revision"]  # the pillar revision it applied
    drift.record(_history_path(), str(minion), summary)
    return True


def report(minion=None, hours=None):
    """
    The minions that drifted, what changed and when, as a table (newest last).

    minion
        Only this minion.
    hours
        Only the last ``hours`` hours.

    CLI Example:

    .. code-block:: bash

        salt-run drift.report
        salt-run drift.report minion=lb1.paphosting.net hours=24
    """
    since = time.time() - float(hours) * 3600 if hours is not None else None
    return drift.table(drift.load(_history_path()), minion=minion, since=since)


def history(minion=None):
    """
    The raw drift history (for scripts), optionally for one minion.

    CLI Example:

    .. code-block:: bash

        salt-run drift.history --out=json
    """
    return [h for h in drift.load(_history_path()) if minion is None or h.get("minion") == minion]
