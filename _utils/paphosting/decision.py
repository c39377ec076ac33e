"""The failover decision: which load balancers each rotation name hands out.

The masters keep one state (a JSON document, :func:`new_state`) and change it only through the
functions here, so the decision is plain Python, the same on both masters:

* :func:`authenticate` accepts a report only when it is well formed, from a configured watcher and
  signed with that watcher's accepted Salt key; :func:`accept` then refuses stale, replayed and
  out-of-order reports and drops views of unknown load balancers. Every refusal is a
  :class:`Rejected` carrying the reason.
* :func:`decide` keeps each watcher's latest view. A load balancer is ``down`` when at least
  ``quorum`` watchers with a fresh view say so, ``up`` when so many say ``up`` that the others
  could not make a quorum, and otherwise keeps its previous verdict (a watcher cut off from the
  others, or silent, changes nothing). With every watcher's fresh view in hand the verdicts are a
  function of those views only: whatever order the reports came in, and on whichever master.
* :func:`membership` turns verdicts and drains into rotations: drained load balancers are out,
  down ones are out, but a rotation never has fewer than its minimum (``min_members``, at least the
  platform-wide ``health:min_members``) and is never empty: below that it keeps every
  non-drained member (fail open).
* The version goes up only when a membership changes (:func:`decide`, :func:`drain`,
  :func:`restore`); it is one more than the highest version seen, on this master or reported by a
  watcher, so a master that comes back after missing changes never publishes an older number.
* Flapping is damped in the watchers (:mod:`paphosting.health`): a flapping load balancer is
  reported ``down`` until stable, so it stays out by the same quorum rule; and again on the
  quorum's verdict (:func:`_damp`), which several undamped watchers could still switch back and
  forth. The damping is the one place where history, not only the fresh views, decides.
"""

import copy
import datetime
import json
import os

from paphosting import files, health, overlay
from paphosting.errors import PapError
from paphosting.model import ID_RE

FORMAT = 1
# A watcher's view counts for this many heartbeat periods; older reports are refused.
STALE_HEARTBEATS = 3
HISTORY = 50
IN, OUT = "in", "out"


class Rejected(PapError):
    """A report the masters refuse, with the reason (logged, never acted on)."""


class RateLimited(Rejected):
    """A genuine report beyond its watcher's allowance (:class:`paphosting.refusals.RateLimit`)."""


def stale_after(h):
    """Seconds a view stays fresh, for a :class:`paphosting.model.Health`."""
    return STALE_HEARTBEATS * h.heartbeat + h.interval * max(h.fall, h.rise)


def config_of(platform):
    """The part of the platform the decision needs, as plain JSON data."""
    h = platform.health
    return {
        "watchers": list(h.watchers),
        "quorum": h.quorum,
        "stale_after": stale_after(h),
        "min_members": h.min_members,
        # The watchers' flap damping, applied again to the quorum's verdicts (see _damp).
        "flap": {
            "window": h.flap_window,
            "max_transitions": h.flap_max_transitions,
            "hold": h.flap_hold,
        },
        "loadbalancers": {
            name: {"address": lb.address, "address6": lb.address6}
            for name, lb in sorted(platform.loadbalancers.items())
        },
        "nameservers": sorted(platform.nameservers),
        # Where each nameserver answers: a drain asks them when they stopped serving an address.
        "nameserver_addresses": {
            name: [ns.address, ns.port] for name, ns in sorted(platform.nameservers.items())
        },
        "rotations": {
            name: {"members": list(r.members), "min_members": r.min_members, "ttl": r.ttl}
            for name, r in sorted(platform.rotations.items())
        },
    }


def state_path(opts):
    """Where a master keeps the state: option ``paphosting_rotation_state``, else its cachedir."""
    return opts.get("paphosting_rotation_state") or os.path.join(
        opts["cachedir"], "paphosting", "rotation.json"
    )


def new_state():
    return {
        "format": FORMAT,
        "version": 0,
        "views": {},
        "verdicts": {},
        "drains": {},
        "rotations": {},
        "last_change": None,
        "history": [],
        "resyncs": {},
        # The operator actions' journal (paphosting.actions): {slot: {"record", "sig"}}.
        "actions": {},
    }


# ---------------------------------------------------------------------------- reports


def claimed_watcher(text):
    """The watcher a report text claims to come from (not yet verified); :class:`Rejected` if none."""
    try:
        watcher = health.parse_report(text)["watcher"]
    except health.BadReport as exc:
        raise Rejected(f"malformed report: {exc}") from exc
    if not ID_RE.match(watcher):
        raise Rejected(f"the report names an invalid minion id {watcher!r}")
    return watcher


def admit(text, signature, config, public_key_for, limit, now):
    """:func:`authenticate`, then ``limit`` (a :class:`paphosting.refusals.RateLimit`) on the
    watcher the signature proved, never on the one a text claims: forged reports in a watcher's
    name cannot use up its allowance. Returns the parsed report or raises :class:`Rejected`
    (:class:`RateLimited` beyond the allowance)."""
    report = authenticate(text, signature, config, public_key_for)
    if not limit.allow(report["watcher"], now):
        raise RateLimited(
            f"rate limited: {report['watcher']!r} sent more reports than a watcher sends"
        )
    return report


def authenticate(text, signature, config, public_key_for):
    """Check a report text and its signature; return the parsed report or raise :class:`Rejected`.

    ``public_key_for(watcher)`` returns the PEM public key the master accepted for that minion,
    or None.
    """
    watcher = claimed_watcher(text)
    report = health.parse_report(text)
    if watcher not in config["watchers"]:
        raise Rejected(f"{watcher!r} is not a watcher (paphosting:health:watchers)")
    problem = health.signature_problem(text, signature, public_key_for, watcher, "watcher ")
    if problem:
        raise Rejected(problem)
    return report


def accept(state, report, config, now):
    """Record an authenticated report as its watcher's latest view.

    Returns the names of unknown load balancers that were dropped from the view. Raises
    :class:`Rejected` for a stale, future-dated, replayed or out-of-order report, or one about no
    known load balancer.
    """
    watcher = report["watcher"]
    limit = config["stale_after"]
    age = now - report["ts"]
    if age > limit:
        raise Rejected(f"stale report from {watcher!r}: {age:.1f}s old (limit {limit:g}s)")
    if -age > limit:
        raise Rejected(
            f"report from {watcher!r} is dated {-age:.1f}s in the future (limit {limit:g}s)"
        )
    last = state["views"].get(watcher)
    if last is not None and report["seq"] <= last["seq"]:
        what = "duplicate" if report["seq"] == last["seq"] else "replayed or out-of-order"
        raise Rejected(f"{what} report from {watcher!r} (seq {report['seq']}, last {last['seq']})")
    known = {n: v for n, v in report["lbs"].items() if n in config["loadbalancers"]}
    unknown = sorted(n for n in report["lbs"] if n not in config["loadbalancers"])
    if not known:
        raise Rejected(
            f"report from {watcher!r} is about no known load balancer ({', '.join(unknown) or 'none'})"
        )
    state["views"][watcher] = {
        "seq": report["seq"],
        "ts": report["ts"],
        "received": now,
        "kind": report["kind"],
        "lbs": known,
        "rotation": report.get("rotation"),
        "serving": report.get("serving") or (last or {}).get("serving"),
    }
    return unknown


def lagging(state, config, watcher, now):
    """Why the nameserver ``watcher`` needs the current rotation pushed to it again (anti-entropy),
    or None: its latest report holds an older version than this master publishes, or its DNS
    server serves another membership (a missed job, a failed apply, a hand edit, a restored
    backup). At most once per heartbeat period per nameserver (both masters may push: the apply is
    idempotent)."""
    if watcher not in config["nameservers"]:
        return None
    view = state["views"].get(watcher) or {}
    last = state.get("resyncs", {}).get(watcher)
    if last is not None and now - last < config["stale_after"] / STALE_HEARTBEATS / 2:
        return None
    published = publish(state, config)
    mine = overlay.digest(published["rotations"])
    held = view.get("rotation") or {}
    if isinstance(held.get("version"), int) and held["version"] < state["version"]:
        return f"it holds version {held['version']}, this master publishes {state['version']}"
    serving = (view.get("serving") or {}).get("digest")
    if serving is not None and serving != mine:
        return f"its DNS server serves another membership than version {state['version']}"
    return None


# ---------------------------------------------------------------------------- decision


def _fresh_views(state, config, now):
    return {
        w: v
        for w, v in sorted(state["views"].items())
        if w in config["watchers"] and now - v["ts"] <= config["stale_after"]
    }


UNDECIDED = "undecided"  # a verdict kept, not given by the watchers (reason's first word)


def _verdict(lb, fresh, config, previous):
    n = len(config["watchers"])
    q = config["quorum"]
    states = {w: v["lbs"].get(lb, {}) for w, v in fresh.items()}
    down = [w for w, s in states.items() if s.get("state") == health.DOWN]
    up = [w for w, s in states.items() if s.get("state") == health.UP]
    if len(down) >= q:
        flapping = [w for w in down if states[w].get("flapping")]
        what = "flapping" if len(flapping) * 2 > len(down) else "down"
        detail = next((states[w].get("detail") for w in down if states[w].get("detail")), "")
        reason = f"{what} for {len(down)} of {n} watchers ({', '.join(down)})"
        return health.DOWN, reason + (f": {detail}" if detail else "")
    if len(up) >= n - q + 1:
        return health.UP, f"up for {len(up)} of {n} watchers"
    keep = previous or health.UP
    return keep, (
        f"{UNDECIDED} ({len(down)} down, {len(up)} up, {n - len(down) - len(up)} unknown or silent "
        f"of {n}; quorum {q}): stays {keep}"
    )


def verdicts(state, config, now):
    """``{lb: {"verdict", "reason"}}`` from the watchers' fresh views and the previous verdicts."""
    fresh = _fresh_views(state, config, now)
    out = {}
    for lb in sorted(config["loadbalancers"]):
        previous = state["verdicts"].get(lb, {}).get("verdict")
        verdict, reason = _verdict(lb, fresh, config, previous)
        out[lb] = {"verdict": verdict, "reason": reason}
    return out


def membership(config, verdicts_, drains):
    """``({rotation: [members]}, {rotation: note})`` for the given verdicts and drains."""
    out, notes = {}, {}
    for name, rot in sorted(config["rotations"].items()):
        members = list(rot["members"])
        pool = [m for m in members if m not in drains]
        if not pool:
            out[name] = members
            notes[name] = "every member is drained: keeping them all (a rotation is never empty)"
            continue
        healthy = [m for m in pool if verdicts_.get(m, {}).get("verdict", health.UP) == health.UP]
        floor = min(max(rot["min_members"], config["min_members"]), len(pool))
        if healthy and len(healthy) >= floor:
            out[name] = healthy
        else:
            out[name] = pool
            notes[name] = (
                f"fail open: only {len(healthy)} of {len(pool)} members up, below the minimum of "
                f"{floor}: keeping them all"
            )
    return out, notes


def publish(state, config):
    """The ``paphosting_rotation`` pillar value: the version and each rotation's members."""
    members, _ = membership(config, state.get("verdicts", {}), state.get("drains", {}))
    return overlay.value(state.get("version", 0), members)


def _seen_version(state):
    versions = [v["rotation"]["version"] for v in state["views"].values() if v.get("rotation")]
    return max(versions, default=0)


def _damp(state, config, raw, now):
    """The verdicts after the masters' own flap damping: the watchers damp what each of them
    sees, but a quorum of undamped watchers can still switch a load balancer in and out (one
    flips while another's view goes stale, 30 % packet loss). Like a watcher (:mod:`health`),
    more than ``max_transitions`` switches of the quorum's verdict within ``window`` hold the load
    balancer out until its verdict has been up for ``hold`` seconds without a switch; a held load
    balancer counts as down (the rotation fails open as for any down member). Switches are
    counted in ``state["flaps"]``."""
    flap = config.get("flap")
    if not flap:
        return raw
    flaps = state.setdefault("flaps", {})
    out = {}
    for lb, v in raw.items():
        rec = flaps.setdefault(lb, {"raw": None, "switches": [], "held": False, "last": None})
        # As on the watchers: only a load balancer that was up once flaps; its first "up" (the
        # platform coming up, its load balancers down until their webservers serve) is its start.
        # (An "up" kept while undecided, as every load balancer starts, is not one the watchers
        # gave.)
        been_up = rec.setdefault("been_up", rec["raw"] == health.UP)
        if rec["raw"] is not None and v["verdict"] != rec["raw"] and been_up:
            rec["switches"].append(now)
            rec["last"] = now
        rec["raw"] = v["verdict"]
        rec["been_up"] = been_up or (
            v["verdict"] == health.UP and not v["reason"].startswith(UNDECIDED)
        )
        rec["switches"] = [t for t in rec["switches"] if t >= now - flap["window"]]
        if len(rec["switches"]) > flap["max_transitions"]:
            rec["held"] = True
        if rec["held"] and v["verdict"] == health.UP and now - rec["last"] >= flap["hold"]:
            rec["held"] = False
            rec["switches"] = []
        if rec["held"] and v["verdict"] == health.UP:
            v = {
                "verdict": health.DOWN,
                "reason": (
                    f"flapping: the watchers' verdict switched more than "
                    f"{flap['max_transitions']} times within {flap['window']:g} s; held out "
                    f"until up for {flap['hold']:g} s without a switch (up since "
                    f"{_when(rec['last'])})"
                ),
            }
        out[lb] = v
    for lb in [x for x in flaps if x not in raw]:
        del flaps[lb]
    return out


def _commit(state, config, new_verdicts, now, cause):
    """Store verdicts, recompute the membership; record and return the change, or None."""
    new_verdicts = _damp(state, config, new_verdicts, now)
    for lb, v in new_verdicts.items():
        old = state["verdicts"].get(lb)
        v["since"] = old["since"] if old and old["verdict"] == v["verdict"] else now
    state["verdicts"] = new_verdicts
    members, notes = membership(config, new_verdicts, state["drains"])
    changes = {}
    for name, new in members.items():
        old = state["rotations"].get(name, {}).get("members", config["rotations"][name]["members"])
        if set(old) != set(new):
            changes[name] = {
                "added": sorted(set(new) - set(old)),
                "removed": sorted(set(old) - set(new)),
                "members": list(new),
            }
    state["rotations"] = {name: {"members": m} for name, m in members.items()}
    if not changes:
        _adopt_version(state, members)
        return None
    caught_up = _held_version(state, members)
    if caught_up is not None and caught_up > state["version"] and caught_up >= _seen_version(state):
        # The watchers already hold this very membership, published by the other master while
        # this one missed it: take its version instead of publishing a new one.
        state["version"] = caught_up
        cause += f" (catching up with version {caught_up} held by the watchers)"
    else:
        state["version"] = max(state["version"], _seen_version(state)) + 1
    reasons = {}
    for name, ch in changes.items():
        configured = config["rotations"][name]["members"]
        for lb in ch["added"] + ch["removed"]:
            reasons.setdefault(
                lb, _reason(state, new_verdicts, lb, lb in ch["added"], lb in configured)
            )
        if name in notes:
            ch["note"] = notes[name]
    change = {
        "version": state["version"],
        "at": now,
        "cause": cause,
        "changes": changes,
        "reasons": dict(sorted(reasons.items())),
    }
    state["last_change"] = change
    state["history"] = (state["history"] + [change])[-HISTORY:]
    return copy.deepcopy(change)


def _reason(state, verdicts_, lb, added, configured):
    if not configured:
        return "no longer a member in the pillar"
    drained = state["drains"].get(lb)
    if drained is not None and not added:
        return "drained" + (f": {drained['reason']}" if drained.get("reason") else "")
    verdict = verdicts_.get(lb, {"verdict": health.UP, "reason": "new in the pillar"})
    if added and (verdict["verdict"] == health.DOWN or drained is not None):
        return (
            f"kept although {'drained' if drained is not None else verdict['reason']} (fail open)"
        )
    return verdict["reason"]


def describe(change):
    """One line per rotation for a change: ``name: -lb1 +lb2 (version N): lb1: why; ...``."""
    lines = []
    for name, c in sorted(change["changes"].items()):
        parts = [f"-{m}" for m in c["removed"]] + [f"+{m}" for m in c["added"]]
        why = "; ".join(
            f"{lb}: {change['reasons'][lb]}"
            for lb in c["removed"] + c["added"]
            if lb in change["reasons"]
        )
        lines.append(f"{name}: {' '.join(parts)} (version {change['version']}): {why}")
    return "\n".join(lines)


def _held_version(state, members):
    """The highest version the watchers hold for exactly this membership, or None."""
    mine = overlay.digest({n: {"members": m} for n, m in members.items()})
    held = [
        v["rotation"]["version"]
        for v in state["views"].values()
        if v.get("rotation") and v["rotation"]["digest"] == mine
    ]
    return max(held, default=None)


def _adopt_version(state, members):
    """Take a higher version the watchers hold for this very membership (the other master's)."""
    held = _held_version(state, members)
    if held is not None and held > state["version"]:
        state["version"] = held


def decide(state, config, now, cause="report"):
    """Recompute verdicts and memberships; return the change (a dict) or None."""
    return _commit(state, config, verdicts(state, config, now), now, cause)


def drain(state, config, lb, now, reason="", force=False):
    """Take ``lb`` out of every rotation until :func:`restore`; return the change or None.

    Refused (:class:`Rejected`) when it would leave a rotation with fewer members up than its
    minimum, unless ``force``.
    """
    if lb not in config["loadbalancers"]:
        raise Rejected(f"{lb!r} is not a load balancer (paphosting:loadbalancers)")
    if lb in state["drains"]:
        return None
    if not force:
        drains = dict(state["drains"], **{lb: {}})
        members, notes = membership(config, state["verdicts"], drains)
        for name, note in notes.items():
            if lb in config["rotations"][name]["members"]:
                raise Rejected(
                    f"draining {lb} would leave {name} below its minimum ({note}); use force=True"
                )
    state["drains"][lb] = {"since": now, "reason": reason}
    return _commit(state, config, verdicts(state, config, now), now, f"drain {lb}")


def drained_names(config, lb):
    """``{rotation name: ttl}`` of the rotations ``lb`` is configured in (its address leaves them
    when it is drained)."""
    return {
        name: int(r.get("ttl", 300))
        for name, r in config["rotations"].items()
        if lb in r["members"]
    }


def note_drain_expiry(state, config, lb, stopped, now):
    """Record on ``lb``'s drain when the last cached answer naming it expires: the time the last
    nameserver stopped serving its address plus the longest TTL of its rotations (a resolver or
    browser that cached the answer just before keeps it that long). ``stopped`` is ``{nameserver:
    time it was first seen not serving the address, or None when it was not seen to stop}``;
    while one is None the expiry is unknown and the drain names those nameservers as pending.
    Returns the drain record (None when ``lb`` is not drained)."""
    drain = state["drains"].get(lb)
    if drain is None:
        return None
    pending = sorted(ns for ns, t in stopped.items() if t is None)
    ttl = max(drained_names(config, lb).values(), default=0)
    drain["checked"] = now
    drain["ttl"] = ttl
    if pending:
        drain["pending"] = pending
        drain.pop("stopped", None)
        drain.pop("expires", None)
    else:
        last = max(stopped.values(), default=now)
        drain.pop("pending", None)
        drain["stopped"] = last
        drain["expires"] = last + ttl
    return drain


def drain_expiry_text(drain, now):
    """One line on when a drained load balancer stops being used by clients' caches."""
    if drain.get("expires") is not None:
        left = drain["expires"] - now
        when = _when(drain["expires"])
        if left > 0:
            return f"cached answers naming it expire at {when} (in {left:.0f} s): power it off after that"
        return f"no cached answer names it since {when}: safe to power off"
    if drain.get("pending"):
        return (
            f"still served by {', '.join(drain['pending'])} when last checked "
            f"({_when(drain['checked'])}): run rotation.drain again to learn when caches expire"
        )
    return "not yet checked whether the nameservers stopped serving it"


def restore(state, config, lb, now):
    """Undo :func:`drain`; return the change or None."""
    if lb not in state["drains"]:
        if lb not in config["loadbalancers"]:
            raise Rejected(f"{lb!r} is not a load balancer (paphosting:loadbalancers)")
        return None
    del state["drains"][lb]
    return _commit(state, config, verdicts(state, config, now), now, f"restore {lb}")


def apply_action(state, config, record, now):
    """Bring ``state`` to what an operator's drain or restore record (:mod:`paphosting.actions`)
    asks; return the change or None. A record taken on the other master is applied as it was
    decided there (the minimum was checked where the operator ran it): a drain is forced here, so
    both masters end with the same drains whatever their verdicts were at that moment."""
    lb = record["target"]
    if lb not in config["loadbalancers"]:
        raise Rejected(f"{lb!r} is not a load balancer (paphosting:loadbalancers)")
    if record["kind"] == "drain":
        if lb in state["drains"]:
            state["drains"][lb]["reason"] = record["reason"]
            return None
        return drain(state, config, lb, now, reason=record["reason"], force=True)
    if record["kind"] == "restore":
        return restore(state, config, lb, now)
    return None


# ---------------------------------------------------------------------------- persistence


def load(path):
    """The state stored at ``path``, or a new one when there is none."""
    # A damaged file raises (ValueError): publishing the configured members would undo a failover.
    state = files.read_json(path, kind=dict, error=ValueError, what="rotation state")
    if state is None:
        return new_state()
    if state.get("format") != FORMAT:
        raise PapError(f"{path} is not a rotation state of format {FORMAT}")
    base = new_state()
    base.update(state)
    return base


def save(path, state, durable=True):
    """Write ``state`` to ``path`` atomically (temp file in the same folder, fsync unless not
    ``durable``, rename; :func:`paphosting.files.flush` later makes it durable)."""
    files.write_json(path, state, indent=1, durable=durable)


def locked(path):
    """Hold an exclusive lock for read-decide-write of the state at ``path``."""
    return files.locked(path + ".lock")


# ---------------------------------------------------------------------------- status


def _when(ts):
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(view, lb, fresh):
    if view is None:
        return "-"
    s = view["lbs"].get(lb)
    if s is None:
        return "-"
    text = "flapping" if s.get("flapping") else s["state"]
    return text if fresh else f"({text})"


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header] + rows
    ]
    return lines


def status_text(state, config, now):
    """The operator's view: a table per load balancer, the rotations and the last change."""
    fresh = _fresh_views(state, config, now)
    watchers = list(config["watchers"])
    published = publish(state, config)["rotations"]
    rows = []
    for lb in sorted(config["loadbalancers"]):
        cells = [_cell(state["views"].get(w), lb, w in fresh) for w in watchers]
        v = state["verdicts"].get(lb, {})
        in_rot = sorted(n for n, r in published.items() if lb in r["members"])
        verdict = "drained" if lb in state["drains"] else v.get("verdict", "up")
        since = state["drains"][lb]["since"] if lb in state["drains"] else v.get("since")
        rows.append([lb, *cells, verdict, _when(since), ", ".join(in_rot) or "-"])
    lines = _table(["LOAD BALANCER", *watchers, "VERDICT", "SINCE", "IN ROTATION"], rows)
    lines.append("")
    rot_rows = []
    for name in sorted(config["rotations"]):
        members = published[name]["members"]
        configured = config["rotations"][name]["members"]
        out = [m for m in configured if m not in members]
        rot_rows.append([name, ", ".join(members), ", ".join(out) or "-"])
    lines += _table(["ROTATION", "MEMBERS", "OUT"], rot_rows)
    lines.append("")
    lines.append(f"Version {state['version']}.")
    for lb, d in sorted(state["drains"].items()):
        lines.append(
            f"Drained: {lb} since {_when(d['since'])}"
            + (f" ({d['reason']})" if d.get("reason") else "")
            + f"; {drain_expiry_text(d, now)}"
        )
    acts = state.get("actions") or {}
    if acts:
        lines.append(
            "Operator actions (the newest per load balancer and service, on both masters):"
        )
        for key in sorted(acts):
            try:
                r = json.loads(acts[key]["record"])
                lines.append(
                    f"  {r['kind']} {r['target']} at {_when(r['at'])} on {r['master']}"
                    + (f" ({r['reason']})" if r.get("reason") else "")
                    + (" [forced]" if r.get("force") else "")
                )
            except (KeyError, TypeError, ValueError):
                lines.append(f"  {key}: unreadable record")
    ch = state.get("last_change")
    if ch:
        lines.append(f"Last change: version {ch['version']} at {_when(ch['at'])} ({ch['cause']})")
        for name, c in sorted(ch["changes"].items()):
            parts = [f"+{m}" for m in c["added"]] + [f"-{m}" for m in c["removed"]]
            lines.append(
                f"  {name}: {' '.join(parts)}" + (f" [{c['note']}]" if c.get("note") else "")
            )
        for lb, why in ch["reasons"].items():
            lines.append(f"  {lb}: {why}")
    else:
        lines.append("Last change: none (every rotation as configured)")
    lines.append("")
    wrows = []
    for w in watchers:
        v = state["views"].get(w)
        if v is None:
            wrows.append([w, "never reported", "-", "-"])
            continue
        age = now - v["ts"]
        wrows.append(
            [w, f"{age:.1f}s ago" + ("" if w in fresh else " (stale)"), v["kind"], v["seq"]]
        )
    lines += _table(["WATCHER", "LAST REPORT", "KIND", "SEQ"], wrows)
    lines.append("")
    mine = overlay.digest(published)
    # A report made before the current version was decided cannot hold it: such a row says so
    # rather than LAGS, until the nameserver's next report (a heartbeat at most).
    decided = ch.get("at") if ch and ch.get("version") == state["version"] else None
    nrows = []
    for ns in config["nameservers"]:
        v = state["views"].get(ns)
        if v is None:
            nrows.append([ns, "-", "-", "not a watcher: no reports (resynced at its start)"])
            continue
        held = v.get("rotation") or {}
        serving = (v.get("serving") or {}).get("digest")
        lag = []
        if isinstance(held.get("version"), int) and held["version"] < state["version"]:
            lag.append(f"LAGS: holds {held['version']} of {state['version']}")
        if serving is not None and serving != mine:
            lag.append("LAGS: serves another membership")
        if lag and decided is not None and v["ts"] < decided:
            lag = [f"its last report is from before version {state['version']}: the next shows it"]
        resync = state.get("resyncs", {}).get(ns)
        if resync is not None:
            lag.append(f"last pushed again {_when(resync)}")
        nrows.append(
            [
                ns,
                held.get("version", "-"),
                "-" if serving is None else ("current" if serving == mine else "other"),
                "; ".join(lag) or "ok",
            ]
        )
    lines += _table(["NAMESERVER", "HOLDS VERSION", "SERVES", "STATE"], nrows)
    return "\n".join(lines)
