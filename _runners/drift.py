"""Drift correction on the masters: record the minions' drift reports, list them, and repair a
minion whose drift correction stopped.

The reactor ``reactor/drift.sls`` calls :func:`record` for every ``paphosting/drift/<id>`` event,
which records it only when it is signed by the key this master accepted for the minion it names.
Both masters receive every event, so each keeps the same history. :func:`heal`, scheduled on
both masters (``conf/master.d/paphosting.conf``), re-applies the ``minion`` SLS wherever the
scheduled job went missing.
"""

import logging
import os
import time

import salt.client
import salt.utils.event

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import drift, pillarcompile, pushcheck
from paphosting.errors import PapError

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
    path = _history_path()
    minions = [minion] if minion else _accepted()
    runs = drift.load_runs(path)
    if minion:
        runs = {m: r for m, r in runs.items() if m == minion}
    return (
        drift.table(drift.load(path), minion=minion, since=since)
        + "\n\nlast run of each minion's drift correction:\n"
        + drift.schedule_table(runs, minions)
    )


def _accepted():
    return pillarcompile.accepted_minions(__opts__)


def heal(timeout=60):
    """
    Find the minions whose drift correction stopped, and repair them: when the drift correction
    is on in the pillar this master serves (``paphosting:schedule:enabled``), each accepted
    server of the platform is asked whether its job is present (``drift.scheduled``); where it
    is missing (Salt 3008 loses it on some minions when a master restarts), the
    ``minion`` SLS is applied there, which schedules it again. Minions whose last run is overdue
    are listed too. Fires ``paphosting/drift/healed`` with what it found and did (on this
    master's bus) when anything was missing or overdue. Both masters run it; applying the SLS
    twice changes nothing the second time.

    timeout
        Seconds to wait for the minions' answers and for each repair.

    CLI Example:

    .. code-block:: bash

        salt-run drift.heal
    """
    out = {"missing": [], "repaired": {}, "overdue": [], "silent": []}
    accepted = _accepted()
    if not accepted:
        return out
    # Whether the drift correction is on, and on which servers: the pillar this master serves
    # (the minions' own in-memory pillar may predate the last push).
    platform = None
    problems = []
    for minion in accepted:  # the first accepted minion the platform pillar is given to
        try:
            platform, _ = pillarcompile.minion_platform(__opts__, minion)
            break
        except PapError as exc:
            problems.append(f"{minion}: {exc}")
    if platform is None:
        out["skipped"] = "no accepted minion's pillar holds the platform: " + "; ".join(problems)
        log.error("drift.heal: %s", out["skipped"])
        return out
    if not platform.schedule["enabled"]:
        out["skipped"] = "the drift correction is off (paphosting:schedule:enabled)"
        return out
    minions = sorted(set(accepted) & pushcheck.platform_servers(platform))
    client = salt.client.get_local_client(__opts__["conf_file"], mopts=__opts__)
    try:
        answers = client.cmd(minions, "drift.scheduled", tgt_type="list", timeout=timeout)
        missing = sorted(
            m for m, a in answers.items() if isinstance(a, dict) and a.get("present") is False
        )
        repaired = {}
        if missing:
            ret = client.cmd(
                missing, "state.apply", ["minion"], tgt_type="list", timeout=timeout, queue=True
            )
            for m in missing:
                states = ret.get(m)
                ok = isinstance(states, dict) and all(
                    isinstance(v, dict) and v.get("result") is True for v in states.values()
                )
                repaired[m] = "scheduled again" if ok else f"FAILED: {states!r:.300}"
    finally:
        client.destroy()
    rows = drift.schedule_rows(drift.load_runs(_history_path()), minions)
    out = {
        "missing": missing,
        "repaired": repaired,
        "overdue": [m for m, _, _, state in rows if state == "OVERDUE" and m in minions],
        "silent": sorted(set(minions) - set(answers)),
    }
    if out["missing"] or out["overdue"]:
        log.warning("drift.heal: %s", out)
        with salt.utils.event.get_master_event(
            __opts__, __opts__["sock_dir"], listen=False
        ) as event:
            event.fire_event(out, "paphosting/drift/healed")
    return out


def history(minion=None):
    """
    The raw drift history (for scripts), optionally for one minion.

    CLI Example:

    .. code-block:: bash

        salt-run drift.history --out=json
    """
    return [h for h in drift.load(_history_path()) if minion is None or h.get("minion") == minion]
