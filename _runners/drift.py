"""Drift correction on the masters: record the minions' drift reports and list them.

The reactor ``reactor/drift.sls`` calls :func:`record` for every ``paphosting/drift/<id>`` event,
which records it only when it is signed by the key this master accepted for the minion it names.
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


def _public_key(minion):
    """The public key this master accepted for ``minion`` (PEM bytes), or None."""
    path = os.path.join(__opts__["pki_dir"], "minions", minion)
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def record(report=None, sig=None, sender=None):
    """
    Record one signed drift report (``reactor/drift.sls`` hands over every
    ``paphosting/drift/<id>`` event). The minion recorded is the one the signed report names,
    checked against the key this master accepted for it: the event's ``id`` is not trusted (a
    minion sending through Salt's batched ``events`` path sets it to anything), and is used only
    to name the sender of a refused report in the log. Refused reports are logged and dropped.

    report
        The report text, exactly as signed (``paphosting.drift.signed_report``).
    sig
        Its signature, by the minion's own key.
    sender
        The event's claimed ``id``, for the log only.

    CLI Example:

    .. code-block:: bash

        salt-run drift.record report='{"format":1,"minion":"lb1",...}' sig=KQ3b...
    """
    try:
        minion, when, summary = drift.authenticate(report, sig, _public_key)
        drift.record(_history_path(), minion, summary, when=when)
    except drift.Rejected as exc:
        log.warning("drift: refused a report (event id %r): %s", sender, exc)
        return False
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
