"""Drift correction: what a scheduled highstate had to change, and the masters' record of it.

Every minion runs a highstate on a schedule (``paphosting:schedule``). A run that had to change
something is drift: somebody edited a managed file by hand, stopped a service, and so on. The
minion reports it on the event bus (tag :data:`TAG_PREFIX` + minion id); the masters keep a bounded
history, listed by ``salt-run drift.report``.

A report is signed with the minion's own key (:func:`signed_report`), as the health reports are:
the ``id`` of an event is set by the master only when the minion sends it alone; through Salt's
batched ``events`` path (what beacons use) every field of the data, ``id`` included, is whatever
the sender wrote. The masters take the minion id from the signed text, checked against the key
they accepted for that id (:func:`authenticate`), never from the event.
"""

import json
import re
import socket
import time

import salt.utils.network

from paphosting import files, health, highstate
from paphosting.errors import PapError

TAG_PREFIX = "paphosting/drift/"
SCHEDULE_JOB = "paphosting-drift"  # the minion's scheduled job (salt/minion/init.sls)
HISTORY_LIMIT = 500
REPORT_FORMAT = 1
MAX_AGE = 3600.0
"""Seconds a signed report stays acceptable (it is recorded once: a replay is refused)."""
# A Salt minion id as a file name under pki_dir/minions: no path separators, not "." or "..".
_MINION_RE = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._@-]{1,255}$")


class Rejected(PapError):
    """A drift report that is not recorded: malformed, unsigned, badly signed, stale or replayed."""


def signed_report(minion, summary, private_pem, now=None):
    """``{"report": text, "sig": signature}``: the event data of one drift report, the text
    signed with ``private_pem`` (the minion's own key)."""
    body = {
        "format": REPORT_FORMAT,
        "minion": minion,
        "ts": float(now if now is not None else time.time()),
        "summary": summary,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
    return {"report": text, "sig": health.sign(text, private_pem)}


def _valid_items(items):
    return isinstance(items, list) and all(
        isinstance(i, dict) and isinstance(i.get("state"), str) and isinstance(i.get("id"), str)
        for i in items
    )


def authenticate(text, signature, public_key_for, now=None, max_age=MAX_AGE):
    """Check one signed drift report; return ``(minion, ts, summary)`` or raise :class:`Rejected`.

    ``public_key_for(minion)`` returns the PEM public key the master accepted for that minion id,
    or None. The minion is the one the signed text names; whatever the event claims is ignored.
    The summary keeps ``changed`` and ``failed`` (lists of ``{state, id, ...}``), and ``master``
    and ``revision`` when they have the right type.
    """
    try:
        body = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("format") != REPORT_FORMAT:
        raise Rejected(f"not a format {REPORT_FORMAT} drift report: {text!r:.200}")
    minion = body.get("minion")
    if not isinstance(minion, str) or not _MINION_RE.match(minion):
        raise Rejected(f"the report names no valid minion id: {minion!r:.100}")
    problem = health.signature_problem(text, signature, public_key_for, minion)
    if problem:
        raise Rejected(problem)
    ts = body.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise Rejected(f"the report from {minion!r} has no valid timestamp")
    age = (now if now is not None else time.time()) - ts
    if abs(age) > max_age:
        raise Rejected(f"the report from {minion!r} is {age:.0f} s old (limit {max_age:g} s)")
    report = body.get("summary")
    if (
        not isinstance(report, dict)
        or not _valid_items(report.get("changed"))
        or not _valid_items(report.get("failed"))
    ):
        raise Rejected(f"malformed drift summary from {minion!r}: {report!r:.200}")
    summary = {"changed": report["changed"], "failed": report["failed"]}
    sched = report.get("schedule")
    if (
        isinstance(sched, dict)
        and all(
            isinstance(sched.get(k), int) and not isinstance(sched.get(k), bool)
            for k in ("interval", "splay")
        )
        and sched["interval"] > 0
        and sched["splay"] >= 0
    ):
        summary["schedule"] = {"interval": sched["interval"], "splay": sched["splay"]}
    if isinstance(report.get("master"), str):
        summary["master"] = report["master"]  # the master the highstate ran through
    if isinstance(report.get("revision"), int) and not isinstance(report["revision"], bool):
        summary["revision"] = report["revision"]  # the pillar revision it applied
    return minion, float(ts), summary


def master_candidates(current, configured, default_port):
    """The masters a drift highstate may run through, in order: ``(host, port)`` pairs.

    ``current`` is the master of the connection the job runs in (the first master for a scheduled
    job: Salt runs one scheduler for all connections, with the first master's options);
    ``configured`` the minion's ``master`` setting (a name or a list; ``host`` or ``host:port``).
    The current master comes first, then the others in configuration order, each once.
    """
    if isinstance(configured, str):
        configured = [configured]
    out = []
    for entry in [current, *(configured or [])]:
        if not entry:
            continue
        # As the minion reads its master option: host, host:port, [v6]:port or a bare v6 address.
        host, port = salt.utils.network.parse_host_port(str(entry))
        port = port or int(default_port)
        if (host, port) not in out:
            out.append((host, port))
    return out


def choose(revisions):
    """The index of the master to run a highstate through, given the pillar revision each serves
    (in candidate order, the current master first; None: no revision known): the newest revision,
    the earliest candidate among equals, a master without a revision only when none has one."""
    best = 0
    for i, revision in enumerate(revisions):
        if revision is not None and (revisions[best] is None or revision > revisions[best]):
            best = i
    return best


def reachable(host, port, timeout=3.0):
    """The address of ``host`` when its ``port`` accepts a TCP connection within ``timeout``, else
    None (not resolvable, refused, or no answer)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return None
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sockaddr[0]
        except OSError:
            continue
    return None


def summarize(highstate_return):
    """The states of a highstate return that changed something, or failed.

    Returns ``{"changed": [...], "failed": [...]}``; each item is
    ``{"state": "<module>.<function>", "id": <state id>, "name": ..., "comment": ..., "changes": [keys]}``
    sorted by the order the states ran in (read by :func:`paphosting.highstate.states`).
    """
    changed, failed = [], []
    why = highstate.failure(highstate_return)
    if why is not None:
        # A highstate that could not even start returns a list of error strings.
        failed.append({"state": "", "id": "", "name": "", "comment": why, "changes": []})
        return {"changed": changed, "failed": failed}
    for run in highstate.states(highstate_return):
        item = {
            "state": run.state,
            "id": run.id,
            "name": run.name,
            "comment": run.comment[:500],
            "changes": sorted(run.changes),
        }
        if run.result is False:
            failed.append(item)
        elif run.changes:
            changed.append(item)
    return {"changed": changed, "failed": failed}


def runs_path(path):
    """Where the last run of each minion is kept, beside the history at ``path``."""
    return (path[:-5] if path.endswith(".json") else path) + ".runs.json"


def record(path, minion, summary, when=None):
    """Record one minion's drift report: its run in the last-runs file (:func:`runs_path`), and,
    when it changed or failed something, an entry in the history file at ``path`` (bounded, atomic
    writes). Returns the history entry, or None for a run that changed nothing.

    ``when`` is the report's own time (signed): a report of one minion not newer than the last
    one recorded is a replay and raises :class:`Rejected`.

    Read, append and write happen under ``<path>.lock``: the reactor runs one runner per event,
    in parallel, and two reports read at once would otherwise both write, losing one.
    """
    when = when if when is not None else time.time()
    with files.locked(path + ".lock"):
        runs = load_runs(path)
        last = runs.get(minion, {}).get("time")
        history = load(path)
        if (isinstance(last, (int, float)) and when <= last) or any(
            h.get("minion") == minion and h.get("time") == when for h in history
        ):
            raise Rejected(
                f"the report of {minion!r} at {when} is not newer than the last one (a replay)"
            )
        runs[minion] = {
            "time": when,
            "schedule": summary.get("schedule"),
            "changed": len(summary.get("changed") or []),
            "failed": len(summary.get("failed") or []),
        }
        files.write_json(runs_path(path), runs, indent=1)
        if not summary.get("changed") and not summary.get("failed"):
            return None
        entry = {"minion": minion, "time": when, **summary}
        history.append(entry)
        history = history[-HISTORY_LIMIT:]
        files.write_json(path, history, indent=1)
    return entry


def load_runs(path):
    """``{minion: {"time", "schedule", "changed", "failed"}}``: each minion's last drift run."""
    return files.read_json(runs_path(path), {}, dict)


GRACE = 120.0  # seconds a run may come after interval + splay before it counts as overdue


def schedule_rows(runs, minions, now=None, grace=GRACE):
    """One row per minion of ``minions`` (and of ``runs``): ``(minion, last run time or None,
    due time or None, state)``; state is ``ok``, ``OVERDUE`` (no run within its own reported
    interval + splay + ``grace`` after the last) or ``no run yet``."""
    now = now if now is not None else time.time()
    rows = []
    for minion in sorted(set(minions) | set(runs)):
        run = runs.get(minion) or {}
        last = run.get("time")
        sched = run.get("schedule") or {}
        if not isinstance(last, (int, float)):
            rows.append((minion, None, None, "no run yet"))
            continue
        due = None
        if sched.get("interval"):
            due = last + sched["interval"] + sched.get("splay", 0) + grace
        rows.append((minion, last, due, "OVERDUE" if due is not None and now > due else "ok"))
    return rows


def schedule_table(runs, minions, now=None, grace=GRACE):
    """A text table of :func:`schedule_rows`: when each minion's drift correction last ran."""
    stamp = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else "-"  # noqa: E731
    lines = [f"{'minion':<24} {'last run (UTC)':<20} {'due by (UTC)':<20} state"]
    for minion, last, due, state in schedule_rows(runs, minions, now, grace):
        lines.append(f"{minion:<24} {stamp(last):<20} {stamp(due):<20} {state}")
    return "\n".join(lines)


def load(path):
    """The drift history at ``path``: a list of reports, oldest first."""
    return files.read_json(path, [], list)


def table(history, minion=None, since=None):
    """A text table of drift reports, newest last: when, minion, what changed."""
    rows = [
        h
        for h in history
        if (minion is None or h.get("minion") == minion)
        and (since is None or h.get("time", 0) >= since)
    ]
    if not rows:
        return "no drift recorded"
    lines = [f"{'time (UTC)':<20} {'minion':<24} {'result':<8} state"]
    for h in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(h.get("time", 0)))
        for kind, items in (("changed", h.get("changed", [])), ("FAILED", h.get("failed", []))):
            for item in items:
                what = f"{item['state']} {item['id']}"
                if item.get("changes"):
                    what += f" ({', '.join(item['changes'])})"
                lines.append(f"{stamp:<20} {h.get('minion', '?'):<24} {kind:<8} {what}")
    return "\n".join(lines)
