"""
The DNS failover on the masters: take the watchers' health reports, decide the rotations, push.

The reactor (``reactor/health_report.sls``) hands every ``http_health`` beacon event to
:func:`report`. The decision itself is :mod:`paphosting.decision`; this runner adds the Salt
around it: the platform from the reporting watcher's pillar, the public keys the master accepted,
the state file in the master's cachedir (``paphosting_rotation_state`` to move it), and, when a
membership changed, one job on every nameserver and watcher (``rotation.apply`` with the new
rotation: the minion holds it and a nameserver applies its zones) and the event
``paphosting/rotation/changed``. Refused reports are logged and fired as
``paphosting/rotation/rejected``; they change nothing.

Operators use :func:`status`, :func:`drain`, :func:`restore` and :func:`failback`, on either
master: each action is signed with the masters' key and relayed to the other master through the
minions (:mod:`paphosting.actions`, :func:`take_action`, :func:`sync_actions`). See
``docs/failover.md``.
"""

import logging
import os
import threading
import time
import types

import salt.client
import salt.utils.event

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import (
    actions,
    decision,
    dnsserver,
    files,
    pillarcompile,
    refusals,
    saltcontext,
)
from paphosting.errors import PapError

log = logging.getLogger(__name__)

__virtualname__ = "rotation"

CHANGED_TAG = "paphosting/rotation/changed"
REJECTED_TAG = "paphosting/rotation/rejected"


def __virtual__():
    return __virtualname__


def _state_path():
    return decision.state_path(__opts__)


def _fire(data, tag):
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as event:
        event.fire_event(data, tag)


def _platform(minion_id):
    """The platform model from ``minion_id``'s pillar, and its digest
    (:func:`paphosting.pillarcompile.minion_platform`)."""
    return pillarcompile.minion_platform(__opts__, minion_id)


# The decision's configuration per pillar generation (see _generation): a report must not cost a
# pillar compile (a hoster's pillar is megabytes: 4 s at 5,000 zones; the watchers report every
# heartbeat). Kept by the process, not this module: the reactor loads its runners again every
# reactor_refresh_interval, and a failover's report landing after that paid the compile.
_configs = saltcontext.kept("rotation.configs", dict)
_configs_lock = saltcontext.kept("rotation.configs_lock", threading.Lock)


def _generation():
    """This master's pillar generation (:func:`paphosting.pillarcompile.generation`)."""
    return pillarcompile.generation(__opts__)


def _config(minion_id=None):
    """The decision's configuration, from the pillar of ``minion_id`` or of a known minion."""
    return _context(minion_id)[0]


def _context(minion_id=None):
    """``(configuration, pillar digest)`` from the pillar of ``minion_id`` or of a known minion."""
    if minion_id is None:
        state = decision.load(_state_path())
        known = list(state.get("views", {}))
        accepted = pillarcompile.accepted_minions(__opts__)
        candidates = known + [m for m in accepted if m not in known]
        if not candidates:
            raise PapError("no accepted minion to compile the platform pillar for")
        minion_id = candidates[0]
    # The decision is about the one platform of this pillar tree: its configuration is compiled
    # once per pillar generation (from the first reporter's pillar), however many reports come.
    key = _generation()
    with _configs_lock:
        found = _configs.get(key)
    if found is not None:
        return found
    if _public_key(minion_id) is None:
        # Never compile a pillar for an id this master has no key for (anyone can claim any id).
        raise PapError(f"no accepted key for {minion_id!r}")
    platform, digest = _platform(minion_id)
    found = (decision.config_of(platform), digest)
    with _configs_lock:
        _configs.clear()
        _configs[key] = found
    return found


def _public_key(watcher):
    path = os.path.join(__opts__["pki_dir"], "minions", watcher)
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


RESYNC_TAG = "paphosting/rotation/resync"


def _push(config, published, digest, targets=None):
    """Send ``published`` (this master's rotation) to every nameserver and watcher (or to
    ``targets``) with ``rotation.apply``; return the job id. ``digest`` is that of the
    ``paphosting`` pillar the decision was made with: a minion that prepared that platform
    applies from it without compiling its pillar again."""
    if targets is None:
        targets = sorted(set(config["nameservers"]) | set(config["watchers"]))
    if not targets:
        return None
    client = salt.client.get_local_client(__opts__["conf_file"], mopts=__opts__)
    # One execution-module job, not state.apply: a state run waits for any other state run on the
    # minion, including one a master that has since died left queued there. The minion applies
    # the zones under its own lock, so the other master's identical job finds nothing to do.
    jid = client.cmd_async(
        targets,
        "rotation.apply",
        [],
        tgt_type="list",
        kwarg={"published": published, "pillar_digest": digest},
    )
    log.info(
        "rotation: version %s pushed to %s (job %s)",
        published["version"],
        ", ".join(targets),
        jid,
    )
    return jid


def _resync(config, minion, published, digest, why):
    """Push the current rotation to one minion again (anti-entropy); fire and log why."""
    jid = _push(config, published, digest, targets=[minion])
    log.warning("rotation: version %s pushed again to %s: %s", published["version"], minion, why)
    _fire(
        {
            "minion": minion,
            "version": published["version"],
            "why": why,
            "jid": jid,
            "master": __opts__["id"],
        },
        RESYNC_TAG,
    )
    return jid


def _publish_change(config, change, published, digest, lap=None):
    jid = _push(config, published, digest)
    if lap is not None:
        lap("push")
    _fire(
        dict(change, jid=jid, master=__opts__["id"], nameservers=config["nameservers"]), CHANGED_TAG
    )
    for name, c in change["changes"].items():
        log.warning(
            "rotation: %s is now %s (version %s; %s; decided in %s)",
            name,
            ", ".join(c["members"]),
            change["version"],
            "; ".join(f"{lb}: {why}" for lb, why in change["reasons"].items()),
            ", ".join(f"{k} {v:.3f} s" for k, v in change.get("timings", {}).items()) or "-",
        )
    return jid


# The intake's bounds (paphosting.refusals): a rate limit per authenticated watcher, and the
# refusal counts, logged and fired only for the first of a kind and sender each second. Kept by
# the process (see _configs): a flood must not get a fresh budget at every runner reload.
_limit = saltcontext.kept("rotation.limit", refusals.RateLimit)
_refusals = saltcontext.kept("rotation.refusals", dict)
_refusals_lock = saltcontext.kept("rotation.refusals_lock", threading.Lock)


def refused_path():
    return os.path.join(os.path.dirname(_state_path()), "rotation_refused.json")


def _refusal_counts():
    path = refused_path()
    with _refusals_lock:
        if path not in _refusals:
            _refusals.clear()
            _refusals[path] = refusals.Refusals(path)
        return _refusals[path]


def _reject(reason, sender, now=None):
    """Count a refusal; log and fire it only when it is the first of its kind and sender this
    second (a flood is counted in full, not amplified)."""
    try:
        count = _refusal_counts().note(reason, sender, now)
    except OSError as exc:
        log.warning("rotation: cannot record refused reports: %s", exc)
        count = 1
    if count:
        more = f" ({count - 1} more like it in the last second)" if count > 1 else ""
        log.warning("rotation: ignored a health report (event from %s): %s%s", sender, reason, more)
        _fire(
            {"reason": reason, "sender": sender, "master": __opts__["id"], "count": count},
            REJECTED_TAG,
        )
    return {"accepted": False, "reason": reason}


def report(report=None, sig=None, sender=None):
    """
    Take one watcher's signed health report (from the ``http_health`` beacon, via the reactor),
    decide, and push when a rotation changed. Reports that are malformed, unsigned, badly signed,
    from a minion that is not a watcher, stale, replayed, or about no known load balancer are
    logged, fired as ``paphosting/rotation/rejected`` and change nothing.

    report
        The report text, exactly as signed.
    sig
        Its signature.
    sender
        The event's claimed minion id, for the log only (anyone can claim any id).

    CLI Example:

    .. code-block:: bash

        salt-run rotation.report report='{"format":1,...}' sig=MEUCIQ...
    """
    now = time.time()
    clock = [time.monotonic()]
    timings = {}

    def lap(name):
        t = time.monotonic()
        timings[name] = round(t - clock[0], 4)
        clock[0] = t

    try:
        config, digest = _context(decision.claimed_watcher(report))
        lap("context")
        body = decision.admit(report, sig, config, _public_key, _limit, now)
    except (decision.Rejected, PapError) as exc:
        return _reject(str(exc), sender, now)
    try:  # the refusals of a flood's last second, written once a real report comes
        _refusal_counts().flush(now)
    except OSError as exc:
        log.warning("rotation: cannot record refused reports: %s", exc)
    path = _state_path()
    lap("admit")
    with decision.locked(path):
        state = decision.load(path)
        try:
            dropped = decision.accept(state, body, config, time.time())
        except decision.Rejected as exc:
            return _reject(str(exc), sender)
        now = time.time()
        change = decision.decide(state, config, now, cause=f"{body['kind']} from {body['watcher']}")
        lag = None
        if change is None and body["kind"] == "heartbeat":
            lag = decision.lagging(state, config, body["watcher"], now)
            if lag is not None:
                state.setdefault("resyncs", {})[body["watcher"]] = now
        compare = _actions_differ(state, body, now)
        # Not flushed yet: an fsync waits for the file system's journal, seconds while the
        # nameservers write or free thousands of zone files, and a decision must not wait for
        # it. Flushed below, once the change is pushed (a crash before that leaves the previous
        # state, and the watchers' held versions keep the next version above this one).
        decision.save(path, state, durable=False)
        published = decision.publish(state, config)
    lap("state")
    if compare is not None:
        _relay(config, compare, targets=[body["watcher"]])
    if dropped:
        log.warning(
            "rotation: %s reported unknown load balancers, ignored: %s",
            body["watcher"],
            ", ".join(dropped),
        )
    if change is None:
        out = {"accepted": True, "changed": False, "version": state["version"]}
        if lag is not None:
            out["resync"] = _resync(config, body["watcher"], published, digest, lag)
        files.flush(path)
        return out
    change["detected"] = body["ts"]  # when the watcher sent it: the failover latency's start
    change["timings"] = timings  # where this master's decision took its time (seconds)
    jid = _publish_change(config, change, published, digest, lap)
    files.flush(path)
    return {"accepted": True, "changed": True, "version": change["version"], "jid": jid}


def resync(minion=None):
    """
    Push the current rotation again to one nameserver or watcher (anti-entropy): the reactor runs
    this when a minion starts (``salt/minion/<id>/start``), so a nameserver that was down during a
    failover serves the current rotation within a second of coming back. Idempotent (a current
    nameserver finds nothing to do) and at most once per heartbeat period per minion.

    minion
        The minion id. Not trusted: any id that is not a nameserver or watcher of the platform is
        refused, and a push changes nothing on a current minion.

    CLI Example:

    .. code-block:: bash

        salt-run rotation.resync minion=ns3.paphosting.net
    """
    try:
        config, digest = _context(minion)
    except PapError as exc:
        return {"result": False, "comment": str(exc)}
    if minion not in set(config["nameservers"]) | set(config["watchers"]):
        return {"result": False, "comment": f"{minion!r} is no nameserver or watcher"}
    path = _state_path()
    now = time.time()
    with decision.locked(path):
        state = decision.load(path)
        last = state.get("resyncs", {}).get(minion)
        if last is not None and now - last < 1.0:
            return {
                "result": True,
                "comment": f"{minion} was pushed the rotation {now - last:.1f} s ago",
            }
        state.setdefault("resyncs", {})[minion] = now
        decision.save(path, state)
        published = decision.publish(state, config)
    jid = _resync(config, minion, published, digest, "it started")
    return {
        "result": True,
        "comment": f"version {published['version']} pushed to {minion}",
        "jid": jid,
    }


def _master_key(name):
    with open(os.path.join(__opts__["pki_dir"], name), "rb") as fh:
        return fh.read()


def _relay_targets(config):
    return sorted(set(config["nameservers"]) | set(config["watchers"]))


def _relay(config, entries, targets=None):
    """Have the nameservers and watchers (or ``targets``) keep ``entries`` (``{slot: {"record",
    "sig"}}``) and fire their journals to every master they are connected to (the other master
    learns of the action within a second; :func:`take_action` there). Returns the job id."""
    targets = _relay_targets(config) if targets is None else targets
    if not targets:
        return None
    client = salt.client.get_local_client(__opts__["conf_file"], mopts=__opts__)
    return client.cmd_async(
        targets,
        "rotation.keep_actions",
        [],
        tgt_type="list",
        kwarg={"entries": entries, "fire": True},
    )


# A watcher whose heartbeat says its journal differs from this master's is asked to compare at
# most this often (the comparison itself is one small job; the next heartbeat shows the result).
ACTIONS_COMPARE_EVERY = 2.0


def _actions_differ(state, body, now):
    """The journal to hand ``body``'s watcher when its heartbeat's actions digest differs from
    this master's (it keeps what is newer and fires its whole journal back), else None."""
    theirs = (body.get("actions") or {}).get("digest")
    journal = state.setdefault("actions", {})
    if theirs is None or theirs == actions.digest(journal):
        return None
    checks = state.setdefault("action_checks", {})
    if now - checks.get(body["watcher"], 0) < ACTIONS_COMPARE_EVERY:
        return None
    checks[body["watcher"]] = now
    return dict(journal)


def _record(state, kind, target, reason="", force=False):
    """Sign and keep in ``state`` the record of an operator action taken on this master; return
    the journal entries to relay."""
    text = actions.record_text(kind, target, __opts__["id"], time.time(), reason, force)
    sig = actions.sign(text, _master_key("master.pem"))
    record = actions.parse(text)
    actions.merge(state.setdefault("actions", {}), text, sig, record)
    return {actions.slot(record): {"record": text, "sig": sig}}


def _operator(action, lb, kind, reason="", force=False):
    config, digest = _context()
    path = _state_path()
    kwargs = {"reason": reason, "force": force} if kind == "drain" else {}
    with decision.locked(path):
        state = decision.load(path)
        try:
            change = action(state, config, lb, time.time(), **kwargs)
        except decision.Rejected as exc:
            return {"result": False, "comment": str(exc)}
        # Recorded even when nothing changed here: the other master may not be so yet.
        entries = _record(state, kind, lb, reason, force)
        decision.save(path, state)
        published = decision.publish(state, config)
    relay = _relay(config, entries)
    if change is None:
        return {
            "result": True,
            "comment": f"nothing to do on this master: {lb} is already so (sent to the other)",
            "version": state["version"],
            "relay": relay,
        }
    jid = _publish_change(config, change, published, digest)
    return {
        "result": True,
        "comment": decision.describe(change),
        "version": change["version"],
        "jid": jid,
        "relay": relay,
    }


def _take(config, digest, entries, sender):
    """Verify and apply journal entries another master signed; ``{"taken": [...], "refused":
    [...]}``. Idempotent: an entry not newer than the slot's is ignored."""
    public = _master_key("master.pub")
    taken, refused, changes = [], [], []
    path = _state_path()
    with decision.locked(path):
        state = decision.load(path)
        journal = state.setdefault("actions", {})
        for entry in entries.values() if isinstance(entries, dict) else []:
            try:
                record = actions.verify_entry(entry, public)
                if not actions.newer(journal, record):
                    continue
                change = None
                if record["kind"] != "failback":
                    change = decision.apply_action(state, config, record, time.time())
                actions.merge(journal, entry["record"], entry["sig"], record)
            except (actions.BadRecord, decision.Rejected) as exc:
                refused.append(str(exc))
                continue
            taken.append(f"{record['kind']} {record['target']} (from {record['master']})")
            if change is not None:
                changes.append(change)
        if taken:
            decision.save(path, state)
        published = decision.publish(state, config)
    for reason in refused:
        _reject(f"operator action: {reason}", sender)
    if changes:
        # Several records (a catch-up): one push of the final rotation, one event per change.
        for change in changes[:-1]:
            _fire(
                dict(change, master=__opts__["id"], nameservers=config["nameservers"]), CHANGED_TAG
            )
        _publish_change(config, changes[-1], published, digest)
    for what in taken:
        log.warning("rotation: took the operator action %s", what)
    return {"taken": taken, "refused": refused}


def take_action(record=None, sig=None, sender=None):
    """
    Take an operator action the other master (or this one) took: the reactor runs this for every
    ``paphosting/operator/action`` event, which the nameservers and watchers fire to both masters
    when a master relays an action (see :func:`drain`). The record must be signed with the
    masters' key; a record older than the one held for its load balancer or service, or already
    held, changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run rotation.take_action record='{"at":...}' sig=...
    """
    # No limit on the claimed sender (a forger could use up a real minion's allowance): a forged
    # record costs a signature check, and its refusal is counted and logged once a second.
    try:
        config, digest = _context()
    except PapError as exc:
        return {"result": False, "comment": str(exc)}
    out = _take(config, digest, {"relayed": {"record": record, "sig": sig}}, sender)
    return dict(out, result=not out["refused"])


def sync_actions(timeout=10):
    """
    Catch up on operator actions (anti-entropy): ask the nameservers and watchers for the
    journals they keep, take every record newer than this master's, and hand every minion the
    records it lacks. Scheduled on the masters at start and every 5 minutes (``schedule`` in the
    master configuration), so a master that was down when the other took an action takes it
    then at the latest (the watchers' heartbeats carry their journal's digest: a master whose
    journal differs compares at once, :func:`report`).

    CLI Example:

    .. code-block:: bash

        salt-run rotation.sync_actions
    """
    try:
        config, digest = _context()
    except PapError as exc:
        return {"result": False, "comment": str(exc)}
    targets = _relay_targets(config)
    client = salt.client.get_local_client(__opts__["conf_file"], mopts=__opts__)
    answers = client.cmd(targets, "rotation.actions", [], tgt_type="list", timeout=timeout)
    taken, refused = [], []
    for minion, journal in sorted((answers or {}).items()):
        if not isinstance(journal, dict):
            refused.append(f"{minion}: {journal}")
            continue
        out = _take(config, digest, journal, minion)
        taken += out["taken"]
        refused += [f"{minion}: {r}" for r in out["refused"]]
    mine = decision.load(_state_path()).get("actions", {})
    behind = {}
    for minion in targets:
        journal = (answers or {}).get(minion)
        if isinstance(journal, dict):
            lacking = actions.missing(
                mine, {k: v for k, v in journal.items() if isinstance(v, dict)}
            )
            if lacking:
                behind[minion] = lacking
    for minion, lacking in behind.items():
        client.cmd_async(
            [minion],
            "rotation.keep_actions",
            [],
            tgt_type="list",
            kwarg={"entries": lacking, "fire": False},
        )
    return {
        "result": not refused,
        "taken": taken,
        "refused": refused,
        "answered": sorted(answers or {}),
        "silent": sorted(set(targets) - set(answers or {})),
        "handed": {m: sorted(v) for m, v in behind.items()},
    }


def failback(service, timeout=30):
    """
    Manual failback of a stateful service (``failback: manual``), on every load balancer: each
    sends every request back to the primary while it is up (``haproxy_cfg.failback`` there). The
    action is recorded and relayed like a drain, so :func:`status` on either master shows it.
    Load balancers that refuse (the primary is down there) or do not answer are listed.

    service
        The service's name in pillar ``paphosting:services``.

    CLI Example:

    .. code-block:: bash

        salt-run rotation.failback shop
    """
    config, _digest = _context()
    lbs = sorted(config["loadbalancers"])
    client = salt.client.get_local_client(__opts__["conf_file"], mopts=__opts__)
    answers = client.cmd(
        lbs, "haproxy_cfg.failback", [service], tgt_type="list", timeout=timeout, full_return=True
    )
    done, refused = {}, {}
    for lb in lbs:
        ans = (answers or {}).get(lb)
        if ans is None:
            refused[lb] = "did not answer"
        elif ans.get("retcode", 0) == 0 and isinstance(ans.get("ret"), dict):
            done[lb] = ans["ret"]
        else:
            refused[lb] = str(ans.get("ret"))
    if not done:
        return {
            "result": False,
            "comment": f"no load balancer failed {service} back",
            "refused": refused,
        }
    path = _state_path()
    with decision.locked(path):
        state = decision.load(path)
        entries = _record(state, "failback", service, reason=f"done on {', '.join(sorted(done))}")
        decision.save(path, state)
    _relay(config, entries)
    return {
        "result": not refused,
        "comment": f"{service} failed back on {', '.join(sorted(done))}"
        + (f"; not on {', '.join(sorted(refused))}" if refused else ""),
        "done": done,
        "refused": refused,
    }


def drain(lb, reason="", force=False, wait=30):
    """
    Take a load balancer out of every rotation (maintenance) until :func:`restore`. The drain is
    stored on this master, survives highstates and restarts, and is pushed to every nameserver.
    Refused when it would leave a rotation with fewer members up than its minimum, unless
    ``force=True``. Run it on either master: the action is signed with the masters' key and
    relayed through the nameservers and watchers to the other master, which takes it within a
    second (or, when it was down, within a heartbeat of starting, from the watchers' journals).

    It then asks every nameserver (for up to ``wait`` seconds) until none serves the load
    balancer's address any more, and reports when the last cached answer naming it expires: the
    time the last nameserver stopped serving it plus the rotation's TTL. Power it off after that
    (:func:`status` shows it too). Run again on a drained load balancer, it only checks again.

    lb
        The load balancer's minion id.
    reason
        Shown by :func:`status`.
    force
        Drain even below a rotation's minimum.
    wait
        Seconds to wait for every nameserver to stop serving its address.

    CLI Example:

    .. code-block:: bash

        salt-run rotation.drain lb=lb1.paphosting.net reason="kernel upgrade"
    """
    ret = _operator(decision.drain, lb, "drain", reason=reason, force=force)
    if ret["result"] is False:
        return ret
    config = _config()
    path = _state_path()
    known = decision.load(path)["drains"].get(lb, {})
    if known.get("expires") is None:
        stopped = _unserved(config, lb, float(wait))
        with decision.locked(path):
            state = decision.load(path)
            known = decision.note_drain_expiry(state, config, lb, stopped, time.time())
            if known is None:  # restored meanwhile
                return ret
            decision.save(path, state)
    ret["comment"] += f"; {lb}: " + decision.drain_expiry_text(known, time.time())
    ret["expires"] = known.get("expires")
    ret["pending"] = known.get("pending", [])
    return ret


def _unserved(config, lb, wait):
    """``{nameserver: time it was first seen answering none of lb's rotation names with lb's
    address, or None}``, asking each every 0.1 s for up to ``wait`` seconds."""
    target = config["loadbalancers"][lb]
    wanted = [(n, "A", target["address"]) for n in decision.drained_names(config, lb)]
    if target.get("address6"):
        wanted += [(n, "AAAA", target["address6"]) for n, _t, _a in list(wanted)]
    stopped = {ns: None for ns in config["nameservers"]}
    deadline = time.monotonic() + wait
    while True:
        for ns, (address, port) in config["nameserver_addresses"].items():
            if stopped.get(ns) is None and not _serves(address, port, wanted):
                stopped[ns] = time.time()
        if all(stopped.values()) or time.monotonic() >= deadline:
            return stopped
        time.sleep(0.1)


def _serves(address, port, wanted):
    """True when the nameserver at ``address:port`` serves any ``(name, type, address)`` of
    ``wanted``, or does not answer (not seen to stop)."""
    server = types.SimpleNamespace(address=address, port=port)
    for name, rdtype, addr in wanted:
        resp = dnsserver.query(server, name + ".", rdtype, timeout=0.5)
        if resp is None:
            return True
        if any(getattr(rd, "address", None) == addr for rrset in resp.answer for rd in rrset):
            return True
    return False


def restore(lb):
    """
    Undo :func:`drain`: the load balancer rejoins its rotations when it is healthy. Run it on
    either master; it reaches the other as a drain does.

    lb
        The load balancer's minion id.

    CLI Example:

    .. code-block:: bash

        salt-run rotation.restore lb=lb1.paphosting.net
    """
    return _operator(decision.restore, lb, "restore")


def status():
    """
    A table: each load balancer, each watcher's view, the verdict, rotation membership, the last
    change and its reason, and each watcher's last report.

    CLI Example:

    .. code-block:: bash

        salt-run rotation.status
    """
    config = _config()
    text = decision.status_text(decision.load(_state_path()), config, time.time())
    try:
        _refusal_counts().flush()  # this process's own refusals not yet written
    except OSError as exc:
        log.warning("rotation: cannot record refused reports: %s", exc)
    refused = refusals.text(refusals.read(refused_path()))
    return text + ("\n\n" + refused if refused else "")


def show():
    """
    This master's failover state as data, for scripts: the published rotation (version and
    members), each load balancer's verdict, the drains, each watcher's latest view and the last
    change.

    CLI Example:

    .. code-block:: bash

        salt-run rotation.show --out=json
    """
    state = decision.load(_state_path())
    now = time.time()
    published_ = decision.publish(state, _config())
    return {
        "version": published_["version"],
        "rotations": published_["rotations"],
        "verdicts": state["verdicts"],
        "drains": state["drains"],
        "actions": [dict(r) for r in actions.records(state.get("actions") or {})],
        "views": {
            w: {
                "seq": v["seq"],
                "age": round(now - v["ts"], 3),
                "kind": v["kind"],
                "lbs": {
                    lb: ("flapping" if x.get("flapping") else x["state"])
                    for lb, x in v["lbs"].items()
                },
            }
            for w, v in state["views"].items()
        },
        "last_change": state["last_change"],
    }
