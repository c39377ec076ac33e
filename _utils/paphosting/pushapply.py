"""Applying a validated revision to the fleet: one load balancer and one nameserver first
(:func:`canary`), then the rest, stopping at the first wave that fails (:meth:`Fleet.waves`).

Salt is reached only through the functions the runner gives :class:`Fleet` (its ``LocalClient``,
its key list, its job cache); what each minion's ``state.apply`` says is read by
:func:`state_outcome` (with :mod:`paphosting.highstate`). Before a wave, when no other master
answers, the state jobs a master that died left on those minions are ended
(:meth:`Fleet.clear_orphans`, docs/masters.md).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from paphosting import daemon, highstate
from paphosting.errors import PapError


class FleetError(PapError):
    """Salt failed to reach the fleet (the runner turns Salt's own errors into this)."""


def canary(validated, targets):
    """``(first, rest)``: one load balancer and one nameserver among ``targets``, then the others."""
    roles = validated.roles()
    targets = sorted(targets)
    first = []
    for role in ("loadbalancer", "nameserver"):
        pick = next((m for m in targets if role in roles.get(m, ()) and m not in first), None)
        if pick is not None:
            first.append(pick)
    return first, [m for m in targets if m not in first]


def other_masters(platform, own_addresses, own_name=None):
    """``{name: address}`` of the masters of ``platform`` (``paphosting:masters``) other than
    this one: the one named ``own_name`` or listening on one of ``own_addresses``."""
    return {
        name: m.address
        for name, m in sorted((getattr(platform, "masters", None) or {}).items())
        if name != own_name and m.address not in own_addresses
    }


def orphaned_state_jobs(running, published_here):
    """``{minion: [jid, ...]}``: the state jobs (``state.*``, which hold a minion's state queue)
    in ``running`` (``{minion: saltutil.running list}``) that this master did not publish
    (``published_here(jid)`` False). Called only when no other master is reachable: then such a
    job was left by a master that died, and it would hold the minion until its requests to that
    master give up (Salt's ``request_channel_timeout``, 60 s, three tries)."""
    out = {}
    for minion, jobs in sorted(running.items()):
        if not isinstance(jobs, list):
            continue  # the minion did not answer: nothing to clear there
        jids = sorted(
            str(job["jid"])
            for job in jobs
            if isinstance(job, dict)
            and str(job.get("fun", "")).startswith("state.")
            and job.get("jid")
            and not published_here(str(job["jid"]))
        )
        if jids:
            out[minion] = jids
    return out


@dataclass
class Outcome:
    """One minion's ``state.apply``: did it work, what changed, what failed."""

    minion: str
    ok: bool
    changed: list = field(default_factory=list)  # (state id, comment, diff or None)
    failed: list = field(default_factory=list)  # (state id, comment)
    error: str = ""

    def line(self, test=False):
        if self.error:
            return f"{self.minion}: FAILED: {self.error}"
        if self.failed:
            sid, comment = self.failed[0]
            more = f" (and {len(self.failed) - 1} more)" if len(self.failed) > 1 else ""
            return f"{self.minion}: FAILED: {sid}: {comment}{more}"
        if not self.changed:
            return f"{self.minion}: no changes"
        verb = "would change" if test else "changed"
        return f"{self.minion}: {verb} {len(self.changed)}: " + ", ".join(
            c[0] for c in self.changed
        )


def state_outcome(minion, ret, test=False):
    """Read one minion's ``state.apply`` return (``None`` when the minion did not answer)."""
    if ret is None:
        return Outcome(minion, False, error="no answer (minion down or too slow)")
    ret = highstate.unwrap(ret)
    why = highstate.failure(ret)
    if why is not None:
        return Outcome(minion, False, error=why)
    out = Outcome(minion, True)
    for run in highstate.states(ret):
        if run.result is False:
            first = run.comment.strip().splitlines()
            out.failed.append((run.label, first[0] if first else "failed"))
        elif run.changes or (test and run.result is None):
            diff = run.changes.get("diff") if isinstance(run.changes, dict) else None
            out.changed.append((run.label, run.comment.strip(), diff))
    out.ok = not out.failed
    return out


@dataclass
class Fleet:
    """The minions a push applies to, reached through the runner's Salt functions.

    cmd
        ``cmd(minions, fun, arg=(), kwarg=None, timeout=None, full_return=False)``: Salt's
        ``LocalClient.cmd`` on the list ``minions``, returning ``{minion: return}``; raises
        :class:`FleetError`.
    accepted
        ``accepted()``: the ids of the minions whose keys this master accepted.
    published_here
        ``published_here(jid)``: whether this master published job ``jid`` (its job cache has it).
    own_addresses
        This master's addresses: the platform's masters (``paphosting:masters``) on none of them
        are the others.
    ret_port
        The port the other masters answer minions on (``ret_port``).
    progress
        ``progress(line)``: each step as it happens (default: nothing).
    """

    cmd: Callable
    accepted: Callable
    published_here: Callable
    own_addresses: set = field(default_factory=set)
    ret_port: int = 4506
    progress: Callable = lambda line: None

    def targets(self, validated):
        """The validated minions this master accepted, sorted."""
        accepted = set(self.accepted())
        return sorted(m for m in validated.minions if m in accepted)

    def clear_orphans(self, minions, platform, timeout):
        """When no other master of ``platform`` is reachable, end the state jobs on ``minions``
        that this master did not publish (a master that died left them; they would hold the
        minions' state queue until their requests to it gave up, minutes); the report lines."""
        if platform is None:
            return []
        others = other_masters(platform, self.own_addresses)
        if not others or any(
            daemon.port_open(a, self.ret_port, timeout=2.0) for a in others.values()
        ):
            return []
        running = self.cmd(minions, "saltutil.running", timeout=min(timeout, 30))
        lines = []
        for minion, jids in orphaned_state_jobs(running, self.published_here).items():
            for jid in jids:
                self.cmd([minion], "saltutil.term_job", [jid], timeout=min(timeout, 30))
            line = (
                f"{minion}: ended state job(s) {', '.join(jids)} left by a master that is not "
                f"reachable ({', '.join(sorted(others))})"
            )
            self.progress(line)
            lines.append(line)
        return lines

    def apply(self, minions, test, timeout, pillarenv=None, platform=None):
        """``state.apply`` on ``minions``; ``({minion: Outcome}, report lines)``. ``platform``:
        the platform pushed, whose masters (``paphosting:masters``) tell which other masters
        there are."""
        if not minions:
            return {}, []
        kwarg = {"test": bool(test)}
        if pillarenv:
            kwarg["pillarenv"] = pillarenv
        # A test run changes nothing, not even another master's jobs.
        lines = [] if test else self.clear_orphans(minions, platform, timeout)
        # The minions load the project's modules only when synced (autoload_dynamic_modules:
        # False, conf/minion.d/paphosting.conf): bring them what this master serves first.
        # Onto disk, where the state run loads them (as Salt's autoload did: no pillar refresh).
        self.cmd(minions, "saltutil.sync_all", kwarg={"refresh": False}, timeout=timeout)
        ret = self.cmd(minions, "state.apply", kwarg=kwarg, timeout=timeout, full_return=True)
        return {m: state_outcome(m, ret.get(m), test=test) for m in minions}, lines

    def waves(self, validated, timeout, test=False, pillarenv=None):
        """Apply in two waves, canary first; stop at the first wave that fails.

        Returns ``(ok, outcomes, lines)``: whether every minion applied cleanly, ``{minion:
        Outcome}``, and the report, wave by wave.
        """
        first, rest = canary(validated, self.targets(validated))
        platform = next(iter(validated.platforms.values()), None)
        outcomes = {}
        lines = []
        for wave, minions in (("canary", first), ("rest", rest)):
            if not minions:
                continue
            if outcomes and not all(o.ok for o in outcomes.values()):
                lines.append(
                    f"{wave}: NOT {'tested' if test else 'applied'}, the canary failed: {', '.join(minions)}"
                )
                continue
            self.progress(f"{'testing' if test else 'applying'} on {wave}: {', '.join(minions)}")
            done, cleared = self.apply(minions, test, timeout, pillarenv, platform)
            outcomes.update(done)
            lines.append(f"{wave}: {', '.join(minions)}")
            lines.extend(f"  {line}" for line in cleared)
            for minion in minions:
                lines.append(f"  {done[minion].line(test)}")
                self.progress(done[minion].line(test))
        return all(o.ok for o in outcomes.values()), outcomes, lines
