"""Drift correction: what a scheduled highstate had to change, and the masters' record of it.

Every minion runs a highstate on a schedule (``paphosting:schedule``). A run that had to change
something is drift: somebody edited a managed file by hand, stopped a service, and so on. The
minion reports it on the event bus (tag :data:`TAG_PREFIX` + minion id); the masters keep a bounded
history, listed by ``salt-run drift.report``.
"""

import json
import socket
import time

from paphosting import files

TAG_PREFIX = "paphosting/drift/"
HISTORY_LIMIT = 500


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
        host, port = _host_port(str(entry), default_port)
        if (host, port) not in out:
            out.append((host, port))
    return out


def _host_port(entry, default_port):
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        port = rest.lstrip(":")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:  # a name, an IPv4 address, or a bare IPv6 address
        host, port = entry, ""
    return host, int(port) if port else int(default_port)


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
    sorted by the order the states ran in.
    """
    changed, failed = [], []
    if not isinstance(highstate_return, dict):
        # A highstate that could not even start returns a list of error strings.
        failed.append(
            {"state": "", "id": "", "name": "", "comment": str(highstate_return), "changes": []}
        )
        return {"changed": changed, "failed": failed}
    runs = sorted(
        ((k, v) for k, v in highstate_return.items() if isinstance(v, dict)),
        key=lambda kv: kv[1].get("__run_num__", 0),
    )
    for key, ret in runs:
        module, state_id, name, function = (key.split("_|-") + ["", "", "", ""])[:4]
        item = {
            "state": f"{module}.{function}",
            "id": ret.get("__id__", state_id),
            "name": ret.get("name", name),
            "comment": str(ret.get("comment", ""))[:500],
            "changes": sorted(ret.get("changes") or {}),
        }
        if ret.get("result") is False:
            failed.append(item)
        elif ret.get("changes"):
            changed.append(item)
    return {"changed": changed, "failed": failed}


def record(path, minion, summary, when=None):
    """Append one minion's drift report to the history file at ``path`` (bounded, atomic write).

    Read, append and write happen under ``<path>.lock``: the reactor runs one runner per event,
    in parallel, and two reports read at once would otherwise both write, losing one.
    """
    with files.locked(path + ".lock"):
        history = load(path)
        entry = {"minion": minion, "time": when if when is not None else time.time(), **summary}
        history.append(entry)
        history = history[-HISTORY_LIMIT:]
        files.write_checked(path, json.dumps(history, indent=1, sort_keys=True), mode=0o600)
    return entry


def load(path):
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return data if isinstance(data, list) else []


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
