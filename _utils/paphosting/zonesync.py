"""Bring a nameserver's zones in line with the platform: thousands of zones, a few operations.

:func:`sync` is what ``dns_zone.apply`` (one zone), the ``dns_zone.managed`` state (every zone)
and the failover (``rotation.apply``) all run, under the minion's zone lock:

1. plan every zone (:func:`paphosting.zone.plan` with the platform's
   :class:`~paphosting.zone.Renderer`): current zones cost a text comparison; the serials the
   running server answers come from one pipelined batch of queries;
2. refuse what the change-safety rule refuses (unless ``force``);
3. check the changed zones with the server's own checker, in bulk
   (:func:`paphosting.dnsserver.check_zone_files`), on temporary files beside the live ones —
   except changes confined to the rotation's A/AAAA records (a failover): their text differs from
   a zone the checker accepted at the push only in addresses the pillar validation checked, so
   they are written without it (``docs/failover.md`` lists which check runs where);
4. rename the accepted files over the live ones, reload them in as few operations as the server
   allows (:func:`paphosting.dnsserver.zones_reload_commands`) and wait until the server answers
   every new serial;
5. then, out of the way of the serving, one ``sync`` makes every written file durable and the
   replaced files are freed.

Zones holding a rotation name (``first``) go through 3–4 before all others, so the rotation
name itself is served new within a reload of its own, whatever the number of customer zones.
"""

import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid

from paphosting import dnssec, dnsserver, dnsupdate, files
from paphosting import zone as pzone
from paphosting.errors import PapError

WAIT_BASE = 10.0
WAIT_PER_ZONE = 0.002


def rotation_zones(renderer):
    """The zones that hold a rotation name itself, sorted."""
    return sorted(
        z
        for z, owners in renderer.address_owners.items()
        if any(fqdn == rotation for fqdn, rotation in owners)
    )


def _entry(plan, path, live, describe):
    out = {
        "zone": plan.zone,
        "path": path,
        "changed": plan.changed,
        "stale": plan.stale,
        "serial": {"live": plan.serial_live, "served": plan.serial_served, "new": plan.serial_new},
        "records": plan.records,
        "refused": plan.refusal(),
        "rotation_only": plan.rotation_only,
        "patched": False,
        "written": False,
        "reloaded": None,
        "error": None,
    }
    if describe:
        out["diff"] = files.unified_diff(live, plan.text, path) if plan.changed else ""
    return out


def plan_all(renderer, ns, root, names, members=None, running=True, today=None, describe=True):
    """``(plans, entries)`` for ``names`` on nameserver ``ns``: nothing is written."""
    served = dnsserver.served_serials(ns, names) if running and names else {}
    plans, entries = {}, {}
    paths = dnsserver.zone_paths(ns, names, root)
    for name in names:
        path = paths[name]
        signed_live = files.read(path)
        # A signed zone is planned on the zone inside it: serials, diffs and change safety are
        # those of the rendered zone; signing is a step of its own (sign_plans).
        live = dnssec.unsigned_text(signed_live)
        plan = pzone.plan(
            None,
            name,
            live,
            today=today,
            members=members,
            served_serial=served.get(name),
            renderer=renderer,
        )
        if live is not signed_live:
            plan.signed_live = signed_live
        plans[name] = plan
        entries[name] = _entry(plan, path, live, describe)
    return plans, entries


def quick_plan(renderer, ns, root, names, members=None, today=None):
    """``(plans, entries)`` of the zones of ``names`` whose failover needs no render before it is
    served: unsigned zones on a rotation whose live file is exactly an earlier render
    (:meth:`paphosting.zone.Renderer.rotation_change`) and which the server serves (its serial
    is the file's). Their plan's ``text`` is the live text until they are served (its SOA is what
    the update's prerequisite names); the new text is rendered after. Every other zone is left
    out, for :func:`plan_all`. Knot's failover (:func:`_update`): at thousands of zones the
    full plan renders and compares every zone before the first update goes out."""
    signed = getattr(renderer, "dnssec", {})
    names = [z for z in names if z in renderer.address_owners and z not in signed]
    if not names:
        return {}, {}
    served = dnsserver.served_serials(ns, names)
    paths = dnsserver.zone_paths(ns, names, root)
    plans, entries = {}, {}
    nothing = {"added": [], "removed": []}
    for name in names:
        live = files.read(paths[name])
        found = renderer.rotation_change(name, live, members)
        if found is None or served.get(name) != found[0]:
            continue
        serial, records = found
        if records["added"] or records["removed"]:
            new = pzone.next_serial(serial, today or pzone.today_utc())
            plan = pzone.Plan(name, True, live, serial, serial, new, records, [], True)
        else:
            plan = pzone.Plan(name, False, live, serial, serial, serial, nothing, [])
        plans[name] = plan
        entries[name] = _entry(plan, paths[name], live, describe=False)
    return plans, entries


def keysets_of(secrets, zone_names):
    """``{zone: paphosting.dnssec.KeySet}`` from the nameservers' secrets pillar
    (``paphosting_secrets:dnssec``), for ``zone_names``; a zone without keys is left out (its
    apply says so), an invalid key set raises naming its pillar path."""
    out = {}
    for name in zone_names:
        data = (secrets or {}).get(name)
        if data is not None:
            out[name] = dnssec.KeySet.from_text(name, data)
    return out


def sign_plans(renderer, plans, entries, group, keysets, members=None, now=None, today=None):
    """Sign the planned text of every signed zone of ``group`` (``renderer.dnssec``), in place.

    A zone whose rendered content is current is signed again (with a new serial) when
    :func:`paphosting.dnssec.resign_reason` says so: a key changed state, signatures expire within
    the refresh margin, the signed file was edited. Signatures of unchanged RRsets are reused, so
    a failover signs the rotation's A/AAAA RRsets and the SOA only; those new signatures are
    validated here, in Python (``plan.verify`` False); any other signing is verified with
    ``dnssec-verify`` before it is written (``plan.verify`` True, :func:`_write`). A zone signed
    live that the pillar no longer signs is a change-safety problem (turning DNSSEC off needs the
    DS removed first, and ``force``). A zone that cannot be signed gets its ``error`` and keeps
    its live file.
    """
    now = dnssec.now_epoch() if now is None else int(now)
    settings = getattr(renderer, "dnssec", {})
    common = getattr(renderer, "dnssec_settings", {})
    for z in group:
        plan, entry = plans[z], entries[z]
        plan.verify = False
        wanted = settings.get(z)
        if wanted is None:
            if plan.signed_live is not None:
                _bump(renderer, plan, entry, members, today)
                plan.problems.append(
                    "it turns DNSSEC off for a zone that is signed live: remove the DS at the "
                    "registrar first and wait for the parent's DS TTL (docs/dnssec.md, 'Turning "
                    "DNSSEC off')"
                )
                entry["refused"] = plan.refusal()
                entry["dnssec"] = {"off": True}
            continue
        keyset = keysets.get(z)
        if keyset is None:
            missing = (
                f"zone {z} is signed (pillar paphosting:zones:{z}:dnssec) but this nameserver has "
                f"no keys for it in pillar paphosting_secrets:dnssec:{z} (salt-run dnssec.keygen; "
                "the masters' dnssec.maintain makes them on its schedule)"
            )
            if plan.signed_live is None:
                # Never signed yet (keys come after the pillar says dnssec: true): it is served
                # unsigned until they come, as before.
                entry["dnssec"] = {"pending": missing}
            else:
                # Signed live: serving it unsigned would break validation for every resolver
                # that has our DS. Keep it (the keys may be missing from this pillar only).
                entry["error"] = f"{missing}; the live signed zone was kept"
            continue
        pol = dnssec.policy(wanted, common.get("dnssec"), common.get("schedule"))
        reason = None
        if not plan.changed:
            reason = dnssec.resign_reason(plan.signed_live, keyset, now, pol)
            if reason is None:
                continue
            _bump(renderer, plan, entry, members, today)
        try:
            signed = dnssec.sign(plan.text, z, keyset, now, pol, previous=plan.signed_live)
            fast = plan.rotation_only and signed.reused > 0 and reason is None
            if fast:
                dnssec.verify_new(signed, z, keyset, now)
        except PapError as exc:
            entry["error"] = f"zone {z} was not written: {exc}"
            plan.changed = entry["changed"] = False
            continue
        plan.text = signed.text
        plan.verify = not fast
        entry["dnssec"] = {
            "signatures": len(signed.made),
            "reused": signed.reused,
            "keys": " ".join(keyset.fingerprint(now)),
            "resigned": reason,
        }
    return entries


def _bump(renderer, plan, entry, members, today):
    """Turn a no-change plan into a change of the serial only (re-signing, unsigning)."""
    if plan.changed:
        return
    serial = pzone.next_serial(
        pzone.newest_serial(plan.serial_live, plan.serial_served), today or pzone.today_utc()
    )
    plan.text = renderer.render(plan.zone, serial, members)
    plan.changed = entry["changed"] = True
    plan.rotation_only = entry["rotation_only"] = True  # the records are what was checked before
    plan.serial_new = serial
    entry["serial"]["new"] = serial


def predict(ns, plans, entries):
    """What :func:`sync` would say without writing: the changed zones (rotation-only changes
    excepted, as in :func:`sync`) are checked with the server's checker on a temporary copy, and a
    refusal is recorded as the zone's ``error``. For ``test=True``."""
    todo = {
        z: p
        for z, p in plans.items()
        if p.changed
        and (not p.rotation_only or p.verify)
        and not entries[z]["refused"]
        and not entries[z]["error"]
    }
    if not todo:
        return entries
    with tempfile.TemporaryDirectory(prefix="paphosting-zones-") as d:
        paths = {}
        for z, plan in todo.items():
            paths[z] = os.path.join(d, f"{z}.zone")
            with open(paths[z], "w", encoding="utf-8") as fh:
                fh.write(plan.text)
        refused = dnsserver.check_zone_files(ns, paths)
        tool = dnsserver.CHECKZONE[ns.server]
        for z, message in refused.items():
            entries[z]["error"] = f"{tool} would reject zone {z}:\n{message}"
        signed = {z: p for z, p in paths.items() if todo[z].verify}
        for z, message in dnssec.verify_files(signed).items():
            entries[z]["error"] = f"dnssec-verify would reject zone {z}:\n{message}"
    return entries


def _patch(renderer, plan, entry):
    """Turn ``plan`` (a zone whose live file differs in more than the rotation's records) into the
    failover's patch: only the rotation's records and the serial change. A zone whose rotation
    records are already right is left to drift correction (not written)."""
    live = dnssec.unsigned_text(files.read(entry["path"]))
    try:
        text = pzone.patch_rotation(
            plan.zone, live, plan.text, renderer.address_owners, plan.serial_new
        )
    except PapError as exc:
        entry["error"] = entry["refused"] = f"the failover cannot patch zone {plan.zone}: {exc}"
        return
    entry["drift"] = plan.records
    if text is None:
        plan.changed = entry["changed"] = False
        entry["refused"] = None
        return
    plan.text = text
    plan.problems = []
    entry["refused"] = None
    entry["patched"] = True
    entry["records"] = {"added": [], "removed": []}
    if "diff" in entry:
        entry["diff"] = files.unified_diff(live, text, entry["path"])


def _write(ns, plans, entries, keep_old=None):
    """Stage, check (in bulk, rotation-only changes excepted) and commit; return what was
    written. A refused zone keeps its live file and gets its ``error``."""
    items = {entries[z]["path"]: plans[z].text for z in plans}
    temps = files.stage(items, durable=False)  # one sync for every group: sync(), cleanup
    try:
        to_check = {z: temps[entries[z]["path"]] for z in plans if not plans[z].rotation_only}
        refused = dnsserver.check_zone_files(ns, to_check)
        tool = dnsserver.CHECKZONE[ns.server]
        for z, message in refused.items():
            entries[z]["error"] = f"zone {z} was not written: {tool} rejected zone {z}:\n{message}"
        # A signed zone is served only once it validates: dnssec-verify on the staged file (the
        # failover's fast path was validated in Python when it was signed: sign_plans).
        to_verify = {
            z: temps[entries[z]["path"]] for z in plans if plans[z].verify and z not in refused
        }
        for z, message in dnssec.verify_files(to_verify).items():
            refused[z] = message
            entries[z]["error"] = (
                f"zone {z} was not written: dnssec-verify rejected its signed text:\n{message}"
            )
    except BaseException:
        files.discard(temps)
        raise
    files.discard({entries[z]["path"]: temps[entries[z]["path"]] for z in refused})
    written = [z for z in plans if z not in refused]
    files.commit(
        {entries[z]["path"]: temps[entries[z]["path"]] for z in written}, keep_old=keep_old
    )
    for z in written:
        entries[z]["written"] = True
    return written


def updates_apply(ns, reload=True, running=True):
    """Whether a sync on ``ns`` serves rotation-only changes through RFC 2136 updates."""
    return reload and running and ns.server == "knot"


def _update(ns, root, renderer, todo, entries):
    """Serve what can be served through RFC 2136 updates (:mod:`paphosting.dnsupdate`): on Knot,
    the rotation-only changes of unsigned zones whose live file is what the server serves.
    Returns the zones the server took; every other zone (refused, unanswered, not eligible) is
    left to the file path, which then reloads it as before; a zone whose update was tried says
    why in its entry's ``update`` and is not tried again in the same sync."""
    if not updates_apply(ns):
        return []
    signed = getattr(renderer, "dnssec", {})
    eligible = {
        z: (p.text, p.serial_live, p.serial_new, p.records)
        for z, p in todo.items()
        if p.rotation_only
        and not entries[z]["patched"]
        and p.signed_live is None
        and z not in signed
        and p.serial_live is not None
        and p.serial_served == p.serial_live
        and "update" not in entries[z]
    }
    if not eligible:
        return []
    key = dnsserver.layout(ns, root)["update_key"]
    secret = dnsupdate.read_key(key)
    if secret is None:
        results = dict.fromkeys(eligible, f"no update key in {key}")
    else:
        results = dnsupdate.apply(ns.address, ns.port, secret, eligible)
    done = []
    for z, why in results.items():
        if why is None:
            entries[z]["reloaded"] = "updated (RFC 2136)"
            done.append(z)
        else:
            entries[z]["update"] = f"not updated ({why}): reloaded from its file instead"
    return done


def _reload(ns, root, zones, running, unknown=False):
    """Make the running server load ``zones`` (changed files, or current files it does not serve);
    the outcome. ``unknown``: some are not served at all yet (new in the config): reload the
    config too (NSD's ``reload`` would silently skip them)."""
    if not running:
        return "not running"
    try:
        if unknown:
            for argv in dnsserver.reload_commands(ns, root):
                dnsserver.run_control(argv)
            return "reloaded (config and zones)"
        try:
            for argv in dnsserver.zones_reload_commands(ns, zones, root):
                dnsserver.run_control(argv)
        except dnsserver.ControlError:
            # A zone the running config does not name yet: reload the config too.
            for argv in dnsserver.reload_commands(ns, root):
                dnsserver.run_control(argv)
            return "reloaded (config and zones)"
    except PapError as exc:
        return f"error: {exc}"
    return "reloaded"


def _wait(ns, want, entries, log_path):
    """Wait until ``ns`` answers the serial ``want[zone]`` for every zone; record the errors."""
    late = dnsserver.wait_serials(ns, want, WAIT_BASE + WAIT_PER_ZONE * len(want))
    for z, got in late.items():
        entries[z]["error"] = (
            f"{ns.server} was reloaded but serves serial {got} for zone {z}, not "
            f"{want[z]}; see {log_path}"
        )


def sync(
    renderer,
    ns,
    root,
    names=None,
    members=None,
    force=False,
    running=True,
    first=(),
    today=None,
    describe=True,
    reload=True,
    failover=False,
    timings=None,
    keysets=None,
    now=None,
):
    """Bring ``names`` (default: every zone) up to date on nameserver ``ns`` and make its running
    server serve them; see the module docstring. Returns ``{zone: entry}`` for every zone, each
    with ``changed``, ``stale``, ``serial``, ``records``, ``refused``, ``written``, ``reloaded``
    and ``error``. Never raises for one zone's problem: it is that zone's ``refused``/``error``.
    ``reload`` False: write the files only.

    ``timings``: a dict to fill with the seconds each phase took (``plan``, then per group
    ``write``, ``reload``, ``wait``), for the operator and the benchmark; and ``served_at``, the
    clock time (epoch seconds) when the last group that changed something was served.

    ``failover``: a rotation change (``rotation.apply``) is never blocked by local damage: a zone
    whose live file differs from the pillar in more than the rotation's records gets only its
    rotation records (and serial) changed (:func:`paphosting.zone.patch_rotation`), checked by
    the server's checker, and is marked ``patched``; drift correction repairs the rest.

    ``keysets``: ``{zone: paphosting.dnssec.KeySet}`` of the signed zones (:func:`keysets_of`);
    ``now``: the signing time (epoch seconds; default: the clock).
    """
    timings = {} if timings is None else timings
    clock = time.monotonic()

    def lap(name):
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(timings.get(name, 0.0) + now - clock, 4)
        clock = now

    names = list(names) if names is not None else list(renderer.zone_names)
    # The files a sync replaces wait here (a link in the zone folder keeps them) until the server
    # serves the new ones: freeing thousands of files takes seconds (files.commit).
    replaced = os.path.join(dnsserver.layout(ns, root)["zone_dir"], ".replaced")
    first = [z for z in names if z in set(first)]
    groups = [first, [z for z in names if z not in set(first)]]
    log_path = dnsserver.layout(ns, root)["log"]
    plans, entries = {}, {}
    later = {}  # zones served through updates, their files written at the end
    for group in groups:
        if not group:
            continue
        if failover and updates_apply(ns, reload, running):
            # Knot: what an update can serve goes out before anything is rendered.
            group, served = _quick_updates(
                renderer, ns, root, group, members, today, plans, entries, later, lap
            )
            if served:
                timings["served_at"] = round(time.time(), 3)
            if not group:
                continue
        # Each group is planned just before it is applied: the rotation name's own zone does not
        # wait for thousands of customer zones to be compared.
        got_plans, got_entries = plan_all(
            renderer, ns, root, group, members, running, today, describe
        )
        for z, entry in got_entries.items():
            if entries.get(z, {}).get("update"):
                entry["update"] = entries[z]["update"]  # tried already: not again
        plans.update(got_plans)
        entries.update(got_entries)
        lap("plan")
        todo = {}
        stale = []
        for z in group:
            plan, entry = plans[z], entries[z]
            if (
                failover
                and plan.changed
                and not plan.rotation_only
                and plan.serial_live is not None
            ):
                _patch(renderer, plan, entry)
        sign_plans(renderer, plans, entries, group, keysets or {}, members, now, today)
        lap("sign")
        for z in group:
            plan, entry = plans[z], entries[z]
            if entry["error"]:
                continue
            if plan.changed and entry["refused"] and not force:
                entry["error"] = entry["refused"]
            elif plan.changed:
                todo[z] = plan
            elif plan.stale:
                stale.append(z)
        if not todo and not stale:
            continue
        updated = []
        if reload and running:
            updated = _update(ns, root, renderer, todo, entries)
            if updated:
                lap("update")
                later.update({z: todo.pop(z) for z in updated})
        written = _write(ns, todo, entries, replaced) if todo else []
        lap("write")
        if not reload or not (written or stale or updated):
            continue
        before = dnsserver.server_processes(ns, root) if running else set()
        if written or stale:
            unknown = any(plans[z].serial_served is None for z in written)
            outcome = _reload(ns, root, written + stale, running, unknown)
            lap("reload")
            for z in written + stale:
                entries[z]["reloaded"] = outcome
            if outcome.startswith("error"):
                for z in written + stale:
                    entries[z]["error"] = outcome
                written, stale = [], []
        if running:
            want = {z: plans[z].serial_new for z in written + updated}
            want.update({z: plans[z].serial_live for z in stale})
            _wait(ns, want, entries, log_path)
            dnsserver.wait_reloaded_processes(ns, before, root)
            lap("wait")
            timings["served_at"] = round(time.time(), 3)
    with unhurried():
        # The server serves the updated zones: their files get the same text, so that it reads
        # the same at a restart and drift correction compares what is served (no reload).
        if later:
            for z, plan in later.items():
                if plan.text is None:
                    # A quick plan (_quick_updates): what the server serves now is the render
                    # with these members, since its file was an earlier render.
                    plan.text = renderer.render(z, plan.serial_new, members)
            _write(ns, later, entries, replaced)
            lap("write after")
        # The servers serve the new files: make them durable (one flush for every file written,
        # out of the way of the serving: files.stage) and free the replaced ones (seconds for
        # thousands).
        if any(e["written"] for e in entries.values()):
            os.sync()
        files.purge(replaced)
        lap("cleanup")
    return entries


def _quick_updates(renderer, ns, root, group, members, today, plans, entries, later, lap):
    """The part of a failover's ``group`` that :func:`quick_plan` can judge, served through
    updates before anything is rendered (their files follow after, in ``later``); returns the
    zones left for the full plan: those it could not judge and those the server did not take,
    and whether any zone was served."""
    quick, quick_entries = quick_plan(renderer, ns, root, group, members, today)
    lap("plan")
    todo = {z: p for z, p in quick.items() if p.changed}
    updated = _update(ns, root, renderer, todo, quick_entries) if todo else []
    if todo:
        lap("update")
    if updated:
        _wait(
            ns,
            {z: todo[z].serial_new for z in updated},
            quick_entries,
            dnsserver.layout(ns, root)["log"],
        )
        lap("wait")
    for z in updated:
        # Its text is rendered with the files after serving (sync), off the failover's path.
        todo[z].text = None
        later[z] = todo[z]
    done = set(updated) | {z for z, p in quick.items() if not p.changed}
    for z in done:
        plans[z], entries[z] = quick[z], quick_entries[z]
    for z in set(todo) - done:
        entries[z] = {"update": quick_entries[z].get("update")}  # planned in full next
    return [z for z in group if z not in done], bool(updated)


@contextlib.contextmanager
def unhurried(step=10):
    """Run the block at a lower CPU priority (nice + ``step``), restored after: work nobody
    waits for (the files after the server serves them, thousands at a hoster's size) must not
    take the cores from the servers answering queries, nor, where nameservers share a machine,
    from another nameserver's failover. Linux applies it to the calling thread only, so a minion
    running jobs in threads lowers that job alone. Where the priority cannot be changed back (not
    root), it is left lowered for the rest of this job rather than failing it."""
    try:
        before = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, min(19, before + step))
    except OSError:
        before = None
    try:
        yield
    finally:
        if before is not None:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, before)


# --- the same apply twice in a row (both masters send every failover) -----------------------------


def run_key(renderer, names, members, force, failover, keysets):
    """What decides the outcome of a :func:`sync`: the platform (its digest), the zones asked
    for, the rotation members, ``force``, ``failover`` and the DNSSEC key sets. Two syncs with
    the same key, one right after the other, leave the zones the same."""
    data = {
        "platform": getattr(renderer, "digest", None),
        "names": sorted(names) if names is not None else None,
        "members": {r: sorted(m) for r, m in sorted((members or {}).items())} or None,
        "force": bool(force),
        "failover": bool(failover),
        "keys": {z: dnssec.key_digest(k) for z, k in sorted((keysets or {}).items())},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def last_run(path):
    """The record :func:`record_run` left at ``path``, or None (none yet, or unreadable)."""
    return files.read_json(path, kind=dict)


def record_run(path, key, entries):
    """Record that a sync with ``key`` just finished (``ok``: no zone has an error)."""
    ok = not any(e.get("error") for e in entries.values())
    record = {"key": key, "run": uuid.uuid4().hex, "ok": ok, "at": time.time()}
    files.write_json(path, record, sort_keys=False)


def done_meanwhile(seen, last, key):
    """True when, while this sync waited for the zone lock (``seen``: the record before it
    waited, ``last``: the record now it holds the lock), another sync with the same ``key``
    finished without an error: this one would find nothing to do, after planning every zone
    (a second of CPU at thousands of zones, taken from the other nameservers' failover on a
    shared machine). A record from before the wait never counts: a failover sent again to
    repair a nameserver is applied in full."""
    return (
        last is not None
        and last.get("key") == key
        and last.get("ok") is True
        and (seen is None or last.get("run") != seen.get("run"))
    )
