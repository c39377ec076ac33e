"""The peers: two open-source authoritative servers that health-check by themselves, run beside the
lab's nameservers by ``make bench --part peers`` (docs/bench.md, "Side by side with the peers").

- **gdnsd** (Debian's ``gdnsd``): each rotation name is a ``DYNA`` record of plugin ``multifo``
  over the rotation's load balancers, monitored by a service type of plugin ``http_status``.
- **PowerDNS Authoritative** (``pdns-server`` with ``pdns-backend-bind``): each rotation name is a
  ``LUA`` record calling ``ifurlup`` over the same addresses (``enable-lua-records``).

Both serve every zone of the platform as the lab's nameservers do, rendered by
:mod:`paphosting.zone` from the same pillar, with each rotation name's address records replaced by
the server's own health-checked record, probing the load balancers' health endpoint
(``paphosting:haproxy:health_path`` on ``http_port``). Each is tuned to ``paphosting:health``
(interval, ``fall``, ``rise``, timeout) as closely as its options allow; :func:`gdnsd_tuning` and
:func:`pdns_tuning` say where they differ and why.

:func:`gdnsd_files` and :func:`pdns_files` are pure (the platform in, ``{file: text}`` out).
:class:`Peer` writes them under a folder, checks them with the server's own checker
(``gdnsd checkconf``, ``pdnsutil check-zone``), runs the server as a plain process with a pidfile
in that folder (so the lab's sweep stops it too) and stops it again. :func:`side_by_side` runs the
failover part's trials once, watching this platform's nameservers and the peers with one clock.
"""

import contextlib
import math
import pathlib
import re
import shutil
import subprocess
import textwrap
import time
from dataclasses import dataclass

import dns.message
import dns.name
import dns.query
import dns.rdatatype

from paphosting import zone
from paphosting.errors import PapError, PillarError
from paphosting.model import ROOT

from . import client, processes
from .ports import udp_tcp_port
from .wait import wait_until

KINDS = ("gdnsd", "pdns")
LABELS = {"paphosting": "this platform", "gdnsd": "gdnsd", "pdns": "PowerDNS"}
# Where the peers listen: 127.0.0.0/8 addresses no server of the example pillar uses.
ADDRESSES = {"gdnsd": "127.0.6.1", "pdns": "127.0.6.2"}
# gdnsd.config(5) documents a minimum interval of 1 s, but gdnsd 3.8.1 refuses anything below 2:
# "option 'interval': Value out of range (2, 3600)".
GDNSD_MIN_INTERVAL = 2
PACKAGES = {"gdnsd": "gdnsd", "pdns": "pdns-server"}
BINARIES = {"gdnsd": ("gdnsd",), "pdns": ("pdns_server", "pdnsutil")}


class PeerError(PapError):
    """A peer cannot be configured, checked or started; the message says what and where to look."""


# --- tuning --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tuning:
    """How one peer probes: every ``interval`` s, ``timeout`` s each, out after ``down_after``
    failed probes in a row, back after ``up_after`` good ones; ``notes`` say where that differs
    from ``paphosting:health`` and why."""

    interval: int
    timeout: int
    down_after: int
    up_after: int
    notes: tuple

    @property
    def failover_floor(self):
        return self.down_after * self.interval

    @property
    def recovery_floor(self):
        return self.up_after * self.interval

    def as_dict(self):
        return {
            "interval_s": self.interval,
            "timeout_s": self.timeout,
            "down_after": self.down_after,
            "up_after": self.up_after,
            "failover_floor_s": float(self.failover_floor),
            "recovery_floor_s": float(self.recovery_floor),
            "differences": list(self.notes),
        }


def _whole(seconds, least):
    return max(least, math.ceil(seconds - 1e-9))


def gdnsd_tuning(health):
    """gdnsd's ``http_status`` service type for ``health`` (a model Health).

    ``down_thresh`` is ``fall`` and ``ok_thresh`` 1: one good probe resets gdnsd's failure count,
    so it takes ``fall`` failures in a row, as a beacon does; ``up_thresh`` is ``rise``. Interval
    and timeout are whole seconds, the interval at least 2 s, the timeout below the interval."""
    interval = _whole(health.interval, GDNSD_MIN_INTERVAL)
    timeout = min(_whole(health.timeout, 1), interval - 1)
    notes = []
    if interval != health.interval:
        notes.append(
            f"probes every {interval} s, not {health.interval:g} s: gdnsd 3.8.1 refuses an "
            f"interval below {GDNSD_MIN_INTERVAL} s"
        )
    if timeout != health.timeout:
        notes.append(f"probe timeout {timeout} s, not {health.timeout:g} s: whole seconds only")
    return Tuning(interval, timeout, health.fall, health.rise, tuple(notes))


def pdns_tuning(health):
    """PowerDNS's ``ifurlup`` for ``health``: ``lua-health-checks-interval`` (whole seconds) and
    the ``timeout`` option. PowerDNS 4.7.3 (Debian 12) has no ``minimumFailures`` and no rise
    threshold: one failed check takes an address out, one good check brings it back."""
    interval = _whole(health.interval, 1)
    timeout = _whole(health.timeout, 1)
    notes = []
    if interval != health.interval:
        notes.append(f"checks every {interval} s, not {health.interval:g} s: whole seconds only")
    if health.fall != 1:
        notes.append(
            f"out after 1 failed check, not {health.fall}: ifurlup's minimumFailures is not in "
            "PowerDNS 4.7.3 (Debian 12), only in later versions"
        )
    if health.rise != 1:
        notes.append(f"back after 1 good check, not {health.rise}: ifurlup has no rise threshold")
    if timeout != health.timeout:
        notes.append(f"check timeout {timeout} s, not {health.timeout:g} s: whole seconds only")
    return Tuning(interval, timeout, 1, 1, tuple(notes))


TUNINGS = {"gdnsd": gdnsd_tuning, "pdns": pdns_tuning}


# --- what both serve -----------------------------------------------------------------------------


def _members(platform, rotation):
    """The rotation's load balancers, and the one health port and path every peer probes them on
    (a peer has one probe per rotation name, not one per address)."""
    rot = platform.rotations[rotation]
    lbs = [platform.loadbalancers[m] for m in rot.members]
    probes = {(lb.http_port, lb.health_path) for lb in lbs}
    if len(probes) != 1:
        raise PeerError(
            str(
                PillarError(
                    (ROOT, "rotations", rotation, "members"),
                    "the peers probe every member of a rotation on one port and path; these "
                    f"members differ: {sorted(probes)}",
                )
            )
        )
    port, path = probes.pop()
    return lbs, port, path


def _dynamic_owners(platform, zone_name):
    """``{owner (absolute name, no final dot): rotation}`` of the names in ``zone_name`` whose
    address records come from a rotation: the rotation names, and a zone apex that is a service
    hostname (no CNAME at an apex)."""
    out = {}
    for name in platform.rotations:
        if platform.zone_of(name) == zone_name:
            out[name] = name
    for svc in platform.services.values():
        if svc.rotation and zone_name in svc.hostnames:
            out[zone_name] = svc.rotation
    return out


def _zone_text(platform, zone_name, dynamic):
    """``zone_name`` as :func:`paphosting.zone.render` writes it (serial 1), without the address
    records of the rotation-owned names, each replaced by one record of the rotation's TTL whose
    type and data are ``dynamic(rotation)`` (the peer's own dynamic record)."""
    wanted = zone.build(platform, zone_name, 1)
    origin = wanted.origin
    owners = _dynamic_owners(platform, zone_name)
    for owner in owners:
        rel = dns.name.from_text(owner).relativize(origin)
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            wanted.rrsets.pop((rel, rdtype), None)
    lines = [
        f"{owner}. {platform.rotations[rotation].ttl} IN {dynamic(rotation)}"
        for owner, rotation in sorted(owners.items())
    ]
    text = zone.to_text(wanted, zone_name).split("\n", 1)[1]
    return (
        f"; {zone_name} for `make bench --part peers`: the platform's zone (harness/peers.py)\n"
        + text
        + "".join(line + "\n" for line in lines)
    )


def _resource(rotation):
    """A gdnsd resource or service-type name for ``rotation`` (letters, digits, underscores)."""
    return "rot_" + re.sub(r"[^a-z0-9]", "_", rotation)


def _q(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- gdnsd ---------------------------------------------------------------------------------------


def gdnsd_files(platform, address, port, folder):
    """``{path relative to folder: text}`` of a gdnsd 3 configuration directory serving every
    zone of ``platform`` on ``address``:``port``, its run and state directories under
    ``folder``. IPv4 only: a load balancer's ``address6`` is not served."""
    tuning = gdnsd_tuning(platform.health)
    folder = pathlib.Path(folder)
    services, resources = [], []
    for rotation in sorted(platform.rotations):
        lbs, hport, hpath = _members(platform, rotation)
        res = _resource(rotation)
        services.append(
            f"  # {rotation}: {hpath} on port {hport} of each member\n"
            f"  {res} => {{\n"
            f"    plugin => http_status\n"
            f"    port => {hport}\n"
            f"    url_path => {_q(hpath)}\n"
            f"    interval => {tuning.interval}\n"
            f"    timeout => {tuning.timeout}\n"
            f"    # down after {tuning.down_after} failures; one success resets the count\n"
            f"    down_thresh => {tuning.down_after}\n"
            f"    ok_thresh => 1\n"
            f"    up_thresh => {tuning.up_after}\n"
            f"  }}\n"
        )
        # multifo answers with every address not DOWN while at least ceil(up_thresh x members)
        # are, else with all of them: (min_members - 0.5) / members keeps at least min_members,
        # like the platform's failover (fail open).
        keep = min(platform.rotations[rotation].min_members, len(lbs))
        members = "".join(f"      {_resource(lb.name)} => {lb.address}\n" for lb in lbs)
        resources.append(
            f"    {res} => {{\n"
            f"      service_types => {res}\n"
            f"      up_thresh => {(keep - 0.5) / len(lbs):.6f}\n"
            f"{members}"
            f"    }}\n"
        )
    config = (
        "# gdnsd for `make bench --part peers`: rendered by harness/peers.py from the\n"
        "# platform pillar (rotations, load balancers, paphosting:health). Do not edit.\n"
        "options => {\n"
        f"  listen => [ {address}:{port} ]\n"
        "  udp_threads => 1\n"
        "  tcp_threads => 1\n"
        f"  run_dir => {_q(folder / 'run')}\n"
        f"  state_dir => {_q(folder / 'state')}\n"
        "}\n"
        "service_types => {\n" + "".join(services) + "}\n"
        "plugins => {\n"
        "  multifo => {\n" + "".join(resources) + "  }\n"
        "}\n"
    )
    files = {"config": config}
    for zone_name in sorted(platform.zones):
        files[f"zones/{zone_name}"] = _zone_text(
            platform, zone_name, lambda rotation: f"DYNA multifo!{_resource(rotation)}"
        )
    return files


# --- PowerDNS ------------------------------------------------------------------------------------


def _ifurlup(platform, rotation):
    tuning = pdns_tuning(platform.health)
    lbs, hport, hpath = _members(platform, rotation)
    addresses = ", ".join(f"'{lb.address}'" for lb in lbs)
    # The URL's host only names the Host header: PowerDNS connects to each address in turn.
    # selector 'all': every address that is up (the default, 'random', answers one of them);
    # backupSelector 'all': every address when none is up (fail open, as the platform does).
    return (
        f"ifurlup('http://{rotation}:{hport}{hpath}', {{{{{addresses}}}}}, "
        f"{{selector='all', backupSelector='all', timeout='{tuning.timeout}'}})"
    )


def pdns_files(platform, address, port, folder):
    """``{path relative to folder: text}`` of a PowerDNS Authoritative configuration directory
    (``pdns.conf``, the bind backend's ``named.conf`` and one zone file per zone) serving every
    zone of ``platform`` on ``address``:``port``. IPv4 only, as :func:`gdnsd_files`."""
    tuning = pdns_tuning(platform.health)
    folder = pathlib.Path(folder)
    conf = (
        "# PowerDNS Authoritative for `make bench --part peers`: rendered by harness/peers.py\n"
        "# from the platform pillar. Do not edit.\n"
        "launch=bind\n"
        f"bind-config={folder / 'named.conf'}\n"
        f"local-address={address}\n"
        f"local-port={port}\n"
        f"socket-dir={folder / 'run'}\n"
        "guardian=no\n"
        "daemon=no\n"
        "write-pid=no\n"
        "disable-syslog=yes\n"
        "loglevel=6\n"
        "security-poll-suffix=\n"
        "webserver=no\n"
        "api=no\n"
        "receiver-threads=1\n"
        "distributor-threads=1\n"
        "enable-lua-records=yes\n"
        f"lua-health-checks-interval={tuning.interval}\n"
        "# No packet or query cache: an answer changes the moment a check does.\n"
        "cache-ttl=0\n"
        "query-cache-ttl=0\n"
        "negquery-cache-ttl=0\n"
    )
    named = [f'options {{ directory "{folder}"; }};\n']
    files = {"pdns.conf": conf}
    for zone_name in sorted(platform.zones):
        files[f"zones/{zone_name}.zone"] = _zone_text(
            platform, zone_name, lambda rotation: f'LUA A "{_ifurlup(platform, rotation)}"'
        )
        named.append(
            f'zone "{zone_name}" {{ type master; file "{folder / "zones" / zone_name}.zone"; }};\n'
        )
    files["named.conf"] = "".join(named)
    return files


RENDERERS = {"gdnsd": gdnsd_files, "pdns": pdns_files}


# --- running them --------------------------------------------------------------------------------


def binary(name):
    path = shutil.which(name) or f"/usr/sbin/{name}"
    if not pathlib.Path(path).exists():
        raise PeerError(f"{name} is not installed: run scripts/setup (make bench does)")
    return path


def version(kind):
    """The Debian package version of a peer (``3.8.1-1``), or None."""
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", PACKAGES[kind]],
        capture_output=True,
        text=True,
        check=False,
    )
    return res.stdout.strip() or None


def _run(argv, what):
    res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if res.returncode != 0:
        raise PeerError(
            f"{what}: {' '.join(argv)} failed (exit status {res.returncode}):\n"
            f"{(res.stdout + res.stderr).strip()[-2000:]}"
        )


class Peer:
    """One peer server (``kind`` gdnsd or pdns) of ``platform`` with its files under ``folder``,
    listening on ``address``:``port`` (a free port by default). It has a model nameserver's
    ``name``, ``address`` and ``port``, so :mod:`lab.client` asks it like any nameserver."""

    def __init__(self, kind, platform, folder, address=None, port=None):
        if kind not in KINDS:
            raise PeerError(f"unknown peer {kind!r}: one of {', '.join(KINDS)}")
        self.kind = self.name = kind
        self.platform = platform
        self.folder = pathlib.Path(folder).resolve() / kind
        self.address = address or ADDRESSES[kind]
        self.port = port or udp_tcp_port(self.address)
        self.tuning = TUNINGS[kind](platform.health)
        if kind == "gdnsd":
            argv = [binary("gdnsd"), "-c", self.folder, "start"]
        else:
            argv = [binary("pdns_server"), f"--config-dir={self.folder}"]
        self.process = processes.Process(
            kind, argv, self.folder / "run" / f"{kind}.pid", self.folder / "log" / f"{kind}.log"
        )

    def write(self):
        """Write the rendered files and check them with the server's own checker."""
        files = RENDERERS[self.kind](self.platform, self.address, self.port, self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)
        for sub in ("run", "state", "log", "zones"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            (self.folder / rel).write_text(text)
        if self.kind == "gdnsd":
            _run([binary("gdnsd"), "-c", str(self.folder), "checkconf"], "gdnsd checkconf")
        else:
            for zone_name in sorted(self.platform.zones):
                _run(
                    [binary("pdnsutil"), f"--config-dir={self.folder}", "check-zone", zone_name],
                    f"pdnsutil check-zone {zone_name}",
                )
        return sorted(files)

    def answers(self, name, timeout=0.5):
        """The sorted addresses this peer answers for ``name`` (None: no answer)."""
        return client.resolve(self, name, timeout=timeout)[0]

    def start(self, timeout=30.0):
        """Write, check and start the server; return when it answers for every zone's apex."""
        self.write()
        self.process.start()
        apexes = sorted(self.platform.zones)

        def answers():
            if not self.process.running:
                raise PeerError(f"{self.kind} exited:\n{self.process.tail()}")
            return all(self._soa(z) for z in apexes)

        if not wait_until(answers, timeout, 0.1, error=PeerError):
            raise PeerError(
                f"{self.kind} does not answer on {self.address}:{self.port} after {timeout:g} s:"
                f"\n{self.process.tail()}"
            )
        return self

    def _soa(self, zone_name):
        query = dns.message.make_query(zone_name, "SOA")
        with contextlib.suppress(Exception):
            resp = dns.query.udp(query, self.address, port=self.port, timeout=0.3)
            return bool(resp.answer)
        return False

    def stop(self):
        return self.process.stop()

    def describe(self):
        """What ``results.json`` records of this peer: package version, address and tuning."""
        return {
            "package": PACKAGES[self.kind],
            "version": version(self.kind),
            "listen": f"{self.address}:{self.port}",
            "tuning": self.tuning.as_dict(),
            "config": str(self.folder),
        }


@contextlib.contextmanager
def running(platform, folder, kinds=KINDS, say=None):
    """Start the peers ``kinds`` of ``platform`` under ``folder``; stop them on the way out."""
    say = say or (lambda message: None)
    started = {}
    try:
        for kind in kinds:
            peer = Peer(kind, platform, folder)
            started[kind] = peer
            peer.start()
            say(f"{LABELS[kind]} ({version(kind)}) answers on {peer.address}:{peer.port}")
        yield started
    finally:
        for peer in started.values():
            peer.stop()


# --- side by side --------------------------------------------------------------------------------


def _wait_all(watches, timeout):
    """Wait (one deadline for all) until every watch saw its answer; ``{system: {ns: time}}``."""
    wait_until(lambda: all(watch.done for watch in watches.values()), timeout, error=None)
    return {name: watch.wait(0) for name, watch in watches.items()}


def side_by_side(lab, peers, trials, restart, summarize, rotation, say=None):
    """The failover part's trials, once, watching this platform's nameservers and each peer.

    Each trial SIGKILLs one load balancer's haproxy (alternately each) and notes, from the kill,
    when every server of each system answers ``rotation`` without it; then starts it again with
    ``restart(lb)`` (which returns when its health URL first answers) and notes, from then, when
    every server of each system answers with it. Before each kill and restart no Salt job runs and
    every system answers what it should. ``summarize(samples, floor)`` is the failover part's
    summary. Returns ``{system: {"failover": ..., "recovery": ...}}`` and the trials' details.
    """
    say = say or (lambda message: None)
    p = lab.platform
    h = p.health
    lbs = sorted(p.rotations[rotation].members)
    addr = {lb: p.loadbalancers[lb].address for lb in lbs}
    systems = {"paphosting": list(lab.nameservers)}
    systems.update({kind: [peer] for kind, peer in peers.items()})
    floors = {"paphosting": (h.fall * h.interval, h.rise * h.interval)}
    floors.update({k: (x.tuning.failover_floor, x.tuning.recovery_floor) for k, x in peers.items()})
    fail = {s: [] for s in systems}
    recover = {s: [] for s in systems}
    details = []

    def watches(want):
        return {s: client.DnsWatch(servers, rotation, want) for s, servers in systems.items()}

    def settle(want, what):
        late = {
            s: at for s, at in _wait_all(watches(want), 90).items() if len(at) < len(systems[s])
        }
        if late:
            raise RuntimeError(f"{what}: {', '.join(sorted(late))} do not answer {sorted(want)}")

    for i in range(trials):
        lb = lbs[i % len(lbs)]
        lab.wait_idle()
        settle(set(addr.values()), f"trial {i + 1}, before the kill")
        watch = watches({a for x, a in addr.items() if x != lb})
        t0 = time.monotonic()
        lab.kill_haproxy(lb)
        seen = _wait_all(watch, 90)
        row = {"lb": lb}
        for s, at in seen.items():
            if len(at) < len(systems[s]):
                raise RuntimeError(f"trial {i + 1}: {s} still hands out {lb} 90 s after its death")
            fail[s].append(max(at.values()) - t0)
            row[f"{s}_failover_s"] = round(fail[s][-1], 3)
        lab.wait_idle()
        watch = watches(set(addr.values()))
        t_up = restart(lb)
        seen = _wait_all(watch, 90)
        for s, at in seen.items():
            if len(at) < len(systems[s]):
                raise RuntimeError(
                    f"trial {i + 1}: {s} does not hand out {lb} 90 s after it is back"
                )
            recover[s].append(max(at.values()) - t_up)
            row[f"{s}_recovery_s"] = round(recover[s][-1], 3)
        details.append(row)
        say(
            f"side by side {i + 1}/{trials} {lb}: "
            + "; ".join(
                f"{LABELS[s]} {row[f'{s}_failover_s']:.2f} s / {row[f'{s}_recovery_s']:.2f} s"
                for s in systems
            )
            + " (failover / recovery)"
        )
    out = {}
    for s in systems:
        out[s] = {
            "label": LABELS[s],
            "failover": summarize(fail[s], floors[s][0]),
            "recovery": summarize(recover[s], floors[s][1]),
        }
    return out, details


def quorum_case(lab, watcher, lb, rotation, window, say=None):
    """One of the watchers cut off from one load balancer, on loopback: ``watcher``'s beacon
    probes a closed port (127.0.0.1:9) in place of ``lb``'s health URL, as if the network between
    them had failed while every client still reaches ``lb``. Watches every nameserver for
    ``window`` seconds after the watcher reported ``lb`` down and says whether any stopped
    handing ``lb`` out (the platform's answer must be no: one report is not a quorum); then
    restores the watcher's beacon with ``state.apply watcher``."""
    say = say or (lambda message: None)
    p = lab.platform
    address = p.loadbalancers[lb].address
    others = {p.loadbalancers[x].address for x in p.rotations[rotation].members if x != lb}
    listed = lab.salt(watcher, "beacons.list", return_yaml=False, include_pillar=False)[watcher]
    cut = [dict(item) for item in listed["http_health"]]
    for item in cut:
        if "targets" in item:
            item["targets"] = dict(item["targets"], **{lb: "http://127.0.0.1:9/cut-off"})
    drained = client.DnsWatch(lab.nameservers, rotation, others)
    t0 = time.monotonic()
    ret = lab.salt(watcher, "beacons.modify", "http_health", cut)[watcher]
    if not (isinstance(ret, dict) and ret.get("result")):
        drained.wait(0)
        raise RuntimeError(f"beacons.modify on {watcher} failed: {ret}")
    try:
        # True once the masters' rotation.show holds the watcher's report of lb down.
        reported = bool(
            wait_until(
                lambda: lab.run("rotation.show")["views"][watcher]["lbs"][lb] == "down",
                60,
                0.5,
                error=None,
            )
        )
        t_report = time.monotonic() - t0
        at = drained.wait(window)
    finally:
        res = lab.highstate([watcher], sls="watcher")
        if res[watcher]["failed"]:
            say(f"restoring the beacon of {watcher} failed: {res[watcher]['failed']}")
    out = {
        "measured": True,
        "cut": f"{watcher} cannot reach {lb} ({address}); every client and the other watchers can",
        "watcher_reported_down": reported,
        "reported_after_s": round(t_report, 3),
        "watched_s": window,
        "drained": bool(at),
        "nameservers_that_drained": sorted(at),
    }
    say(
        f"quorum case: {watcher} reported {lb} down after {t_report:.2f} s; "
        + (f"DRAINED by {sorted(at)}" if at else f"no nameserver drained it in {window:g} s")
    )
    return out


POWERED_OFF = (
    "not measured: a powered-off load balancer (no answer at all, every probe runs into its "
    "timeout) needs the network-fault lab (network namespaces), which does not exist yet; a killed "
    "haproxy refuses connections at once"
)
PEER_QUORUM = (
    "not measured: a peer's one prober cut off from a load balancer that clients still reach "
    "cannot be told from a dead one, so that server drains it after its down threshold, exactly as "
    "in the failover trials, while other servers of the same kind may keep it (documented "
    "behaviour; cutting one prober off on loopback needs the network-fault lab)"
)


def results(health, systems, details, described, quorum, trials):
    """The ``peers`` entry of ``results.json`` (docs/bench.md)."""
    ours = {
        "tuning": {
            "watchers": len(health.watchers),
            "quorum": health.quorum,
            "interval_s": health.interval,
            "timeout_s": health.timeout,
            "down_after": health.fall,
            "up_after": health.rise,
            "failover_floor_s": float(health.fall * health.interval),
            "recovery_floor_s": float(health.rise * health.interval),
            "differences": [],
        }
    }
    out = {"trials": trials, "systems": {}}
    for s, figures in systems.items():
        out["systems"][s] = {**figures, **(ours if s == "paphosting" else described[s])}
    out["trials_detail"] = details
    out["quorum"] = {"paphosting": quorum}
    out["quorum"].update({kind: {"measured": False, "why": PEER_QUORUM} for kind in described})
    out["powered_off"] = {"measured": False, "why": POWERED_OFF}
    return out


def _probes(system):
    t = system["tuning"]
    who = f"{t['watchers']} watchers, quorum {t['quorum']}, " if "watchers" in t else "itself, "
    return (
        f"{who}every {t['interval_s']:g} s, out after {t['down_after']}, back after {t['up_after']}"
    )


def _label(system):
    return f"{system['label']} {system.get('version') or ''}".strip()


def table_lines(part):
    """The bench table's lines for the ``peers`` entry of ``results.json``."""
    lines = [
        f"side by side: {part['trials']} trials, the same kills and clock for every system "
        "(failover: LB dies -> every server without it; recovery: LB healthy -> every server with it)",
        f"{'system':<24} {'failover p50':>12} {'p95':>5} {'floor':>5}   {'recovery p50':>12} {'p95':>5} {'floor':>5}   probes",
    ]
    for system in part["systems"].values():
        f, r = system["failover"], system["recovery"]
        lines.append(
            f"{_label(system):<24} {f['p50_s']:>12.2f} {f['p95_s']:>5.2f} {f['floor_s']:>5.1f}   "
            f"{r['p50_s']:>12.2f} {r['p95_s']:>5.2f} {r['floor_s']:>5.1f}   {_probes(system)}"
        )
    q = part["quorum"].get("paphosting") or {}
    if q.get("measured"):
        lines.append(
            f"one watcher of three cut off ({q['cut']}): this platform "
            + (
                f"DRAINED it ({', '.join(q['nameservers_that_drained'])})"
                if q["drained"]
                else f"kept it (watched {q['watched_s']:g} s after the report)"
            )
            + "; gdnsd, PowerDNS: not measured (one prober each, docs/bench.md)"
        )
    lines.append(
        "a powered-off load balancer: not measured (the network-fault lab does not exist yet)"
    )
    return lines


COLOURS = {"paphosting": "tab:blue", "gdnsd": "tab:orange", "pdns": "tab:purple"}


def draw(ax, ax_notes, part):
    """The peers' panel of the bench chart on ``ax`` (samples, p50, p95, floor per system and
    phase) and their tuning and features on ``ax_notes``."""
    names = list(part["systems"])
    for g, phase in enumerate(("failover", "recovery")):
        for i, s in enumerate(names):
            x = g * (len(names) + 1) + i
            fig = part["systems"][s][phase]
            first = g == 0 and i == 0
            samples = fig.get("samples_s") or []
            ax.scatter(
                [x] * len(samples),
                samples,
                alpha=0.6,
                color=COLOURS.get(s),
                label=_label(part["systems"][s]) if g == 0 else None,
            )
            for y, style, label in (
                (fig["p50_s"], "solid", "p50"),
                (fig["p95_s"], "dotted", "p95"),
            ):
                ax.hlines(
                    y,
                    x - 0.3,
                    x + 0.3,
                    colors="black",
                    linestyles=style,
                    label=label if first else None,
                )
            ax.hlines(
                fig["floor_s"],
                x - 0.3,
                x + 0.3,
                colors="green",
                linestyles="dashed",
                label="floor (probes x interval)" if first else None,
            )
    n = len(names)
    ax.set_xticks(
        [g * (n + 1) + i for g in range(2) for i in range(n)],
        [f"{'down' if g == 0 else 'up'}\n{LABELS[s]}" for g in range(2) for s in names],
        fontsize=8,
    )
    ax.set_ylabel("seconds")
    ax.set_ylim(bottom=0)
    ax.set_title(
        f"side by side, {part['trials']} trials: LB dies -> without it (down), back -> with it (up)",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="upper right")

    ax_notes.axis("off")
    lines = []
    for s in names:
        system = part["systems"][s]
        lines.append(f"{_label(system)}: {_probes(system)}")
        lines += [f"    {d}" for d in system["tuning"]["differences"]]
    q = part["quorum"].get("paphosting") or {}
    if q.get("measured"):
        lines.append(
            f"1 of 3 watchers cut off: this platform {'DRAINED' if q['drained'] else 'kept'} the LB"
        )
    lines.append("peers: one prober each, cut-off case not measured")
    lines.append("powered-off LB: not measured (no network-fault lab yet)")
    ax_notes.text(
        0, 1, "\n".join(_wrap(line) for line in lines), va="top", fontsize=7, family="monospace"
    )


def _wrap(line, width=88):
    return "\n      ".join(textwrap.wrap(line, width)) or line
