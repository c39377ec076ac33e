#!/usr/bin/env python3
"""``make bench``: how fast and how far the platform goes. See docs/bench.md.

Parts (all by default; ``--part`` picks some):

render
    Render and validate (real ``haproxy -c`` and the three zone checkers) the haproxy config and
    the zones at 100, 1,000 and 10,000 services, and a zone of 100,000 records; time and peak
    memory, each size in a fresh process.
failover
    On the running platform (two masters, two load balancers, three nameservers): kill a load
    balancer's haproxy, time until every nameserver answers without it (failover), restart it,
    time until every nameserver answers with it again (recovery); ``--trials`` of each.
noop
    A highstate that changes nothing on a load balancer and on a nameserver at each size, beside
    an empty highstate on the same minion (Salt's own floor).
errors
    Client-visible errors under a bounded loopback load while a backend dies and while a load
    balancer dies.
scale
    Growth with a hoster's number of customer zones (each with its apex on the rotation): at 0,
    100, 1,000 and 5,000 zones, the failover and recovery on every nameserver (BIND, NSD, Knot)
    until it serves the new answer for every zone and for the rotation name; the no-change
    highstate of each nameserver beside Salt's floor; the push's validation (Salt's pillar
    compile and the real checkers, for every minion); the master's CPU per health report.
faults
    Every host in its own network namespace (needs root and nftables; harness/faultbench.py):
    per fault kind of harness/faults.py (load balancer killed or powered off, backend killed or
    powered off, one watcher cut off from one load balancer, 30 % loss on a load balancer's link,
    a master unreachable from the minions), what a browser-like client (every address in turn)
    and a one-address client see while holding their DNS answer: failed requests and added
    latency p50/p99; and the failover after a power-off beside the one after a kill.
dnssec
    Signing (docs/dnssec.md): the zone of 10,000 services and a zone of 100,000 records signed in
    full, checked with ``dnssec-verify``, and what a nameserver computes for a failover of that
    zone signed (plan, re-signing the changed RRsets, validating them) beside unsigned (the plan);
    and the failover of the rotation name with its zone signed beside unsigned (two labs).
peers
    The failover trials once more, with gdnsd and PowerDNS (each health-checking by itself,
    harness/peers.py) started beside the platform's nameservers: the same kills, the same
    clock, p50/p95 per system; and one watcher of three cut off from a load balancer.
tls
    Certificates through ACME DNS-01 with Pebble: the time from ``tls.issue`` until every load
    balancer serves the certificates; forced renewals under a loop of TLS handshakes (failed
    handshakes during the swap, target 0); HTTPS beside plain HTTP requests per second per load
    balancer.

Writes ``build/bench/results.json`` (shape: docs/bench.md, checked by harness/report.py), a
PNG chart ``build/bench/results.png``, and prints a table.
"""

import argparse
import hashlib
import http.client
import json
import os
import pathlib
import platform as host
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import (  # noqa: E402 - harness puts _utils on sys.path
    client,
    faultbench,
    peers,
    report,
    synthetic,
)
from harness.launcher import Events, Lab, LabError  # noqa: E402
from harness.report import percentile  # noqa: E402
from harness.wait import wait_until  # noqa: E402
from paphosting import dnsserver, dnsupdate, files, haproxy, pushcheck  # noqa: E402
from paphosting import zone as pzone  # noqa: E402

OUT = REPO / "build" / "bench"
# Where the benchmark's labs run (their processes' files, zones and caches): the machine's
# temporary file system, as a real host keeps its zones under /var or /etc, not in a source
# checkout (on the machine of docs/bench.md, creating a file in the checkout's folder took
# 0.27 ms against 0.01 ms in /tmp: 5,000 zone files, 1.3 s more per failover). The results
# stay in OUT.
LABS = pathlib.Path(os.environ.get("PAPHOSTING_BENCH_LABS") or tempfile.gettempdir()) / (
    "paphosting-bench"
)
SIZES = (100, 1000, 10000)
ZONE_RECORDS = 100_000
PARTS = ("render", "failover", "noop", "errors", "faults", "scale", "peers", "dnssec", "tls")
SIGNING_CASES = ((10000, 0), (0, ZONE_RECORDS))
ZONE_SIZES = (0, 100, 1000, 5000)
TARGET_RENDER_S = 5.0


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- render ----------------------------------------------------------------------------------


def _render_once(services, records):
    argv = [sys.executable, __file__, "--render-worker", str(services), str(records)]
    res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(
            f"render worker {services} services / {records} records failed:\n{res.stderr[-3000:]}"
        )
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_render(repeat):
    """One row per size: the run with the median time of ``repeat`` runs (peaks: the highest)."""
    rows = []
    cases = [(n, 0) for n in SIZES] + [(0, ZONE_RECORDS)]
    for services, records in cases:
        runs = []
        # The 100,000-record zone takes long: once is enough to see where it stands.
        for _ in range(1 if records else repeat):
            runs.append(_render_once(services, records))
        runs.sort(key=lambda r: r["seconds"])
        row = dict(runs[len(runs) // 2])
        row["peak_mb"] = max(r["peak_mb"] for r in runs)
        row["runs_s"] = [r["seconds"] for r in runs]
        rows.append(row)
        what = f"{services} services" if services else f"a zone of {records} extra records"
        log(
            f"render {what}: {row['seconds']:.2f} s, peak {row['peak_mb']:.0f} MB ({row['records']} zone records, {row['haproxy_lines']} haproxy.cfg lines)"
        )
    return rows


def bench_dnssec_failover(trials):
    """The failover and recovery of the rotation name with its zone (``paphosting.nl``) signed,
    beside the same platform unsigned: one lab each, the same trials as the ``failover`` part.
    The signed lab's key set is made here and laid in its pillar tree encrypted to the platform
    key (``secrets/dnssec/<zone>.asc``), as ``salt-run dnssec.keygen`` commits it; every
    nameserver is checked to serve the rotation name signed before the trials."""
    from paphosting import dnssec as pdnssec
    from paphosting import secrets as psecrets

    out = {}
    for signed in (False, True):
        pillar = bench_pillar()
        if signed:
            pillar["zones"][synthetic.ZONE]["dnssec"] = True
        name = "signed" if signed else "unsigned"
        lab = Lab(f"bench-dnssec-{name}", pillar=pillar, svn=False, say=log, parent=LABS)
        with lab:
            if signed:
                keyset = pdnssec.initial_keyset(synthetic.ZONE, pdnssec.now_epoch())
                path = lab.pillar_dir / psecrets.relpath("dnssec", synthetic.ZONE)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(lab.encrypt(keyset.to_text()))
            _prepare(lab)
            if signed:
                import dns.message
                import dns.query
                import dns.rdatatype

                for ns in lab.nameservers:
                    query = dns.message.make_query(ROTATION + ".", "A", want_dnssec=True)
                    resp = dns.query.udp(query, ns.address, port=ns.port, timeout=2)
                    if not any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in resp.answer):
                        raise RuntimeError(f"{ns.name} does not serve {ROTATION} signed: {resp}")
            log(f"dnssec failover: {name} platform up ({synthetic.ZONE} {name})")
            fail, recover = bench_failover(lab, trials)
        out[name] = {"failover": fail, "recovery": recover}
    return out


def bench_dnssec(trials=10):
    """One row per case of :data:`SIGNING_CASES`, each in a fresh process (harness/signing.py),
    and the failover signed beside unsigned (:func:`bench_dnssec_failover`)."""
    rows = []
    for services, records in SIGNING_CASES:
        argv = [sys.executable, __file__, "--signing-worker", str(services), str(records)]
        res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
        if res.returncode != 0:
            raise RuntimeError(f"signing worker {services}/{records} failed:\n{res.stderr[-3000:]}")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        log(
            f"dnssec {row['records']} records: signed in {row['sign_full_s']:.1f} s, "
            f"dnssec-verify {row['verify_s']:.1f} s; failover computed in "
            f"{row['failover_signed_s'] * 1000:.0f} ms signed, "
            f"{row['failover_unsigned_s'] * 1000:.1f} ms unsigned"
        )
    return {"signing": rows, "failover": bench_dnssec_failover(trials)}


# --- the running platform ----------------------------------------------------------------------


ROTATION = "http0.l.paphosting.nl"
WWW = "www.paphosting.nl"
SHOP = "shop.paphosting.nl"


def bench_pillar(services=0, watchers=True, lean=False):
    """The example platform for measurements: no scheduled drift correction (it would run a
    highstate at a random moment of a measurement), flap damping out of the way (the trials kill
    and restore the same load balancers every few seconds, which is flapping by design), and, with
    generated services, health checks every minute (10,000 backends checked every 2 s would load
    the machine that is measured).

    ``lean``: one server per generated stateless service and ``maxconn`` 2000, so that haproxy
    needs fewer file descriptors than a container's usual hard limit (docs/bench.md)."""
    pillar = synthetic.platform(services, check_inter=60000 if services else None, lean=lean)
    if lean:
        pillar.setdefault("haproxy", {})["maxconn"] = 2000
    pillar["schedule"]["enabled"] = False
    pillar["health"]["flap"] = {"window": 300, "max_transitions": 1000, "hold": 0}
    if not watchers:
        pillar["health"]["watchers"] = []
    return pillar


def summary(samples, floor):
    return {
        "trials": len(samples),
        "p50_s": round(percentile(samples, 0.5), 3),
        "p95_s": round(percentile(samples, 0.95), 3),
        "floor_s": float(floor),
        "min_s": round(min(samples), 3) if samples else 0.0,
        "max_s": round(max(samples), 3) if samples else 0.0,
        "samples_s": [round(x, 3) for x in samples],
    }


def _phases(events, t0, lb, state, quorum):
    """From the masters' event buses since ``t0``: when the ``quorum``-th watcher reported ``lb``
    ``state`` (detection) and when the first master published a rotation change (decision)."""
    reports = []
    decided = None
    for ev in events:
        for dt, tag, data in ev.since(t0):
            if tag.endswith("/http_health/transition"):
                try:
                    body = json.loads(data.get("report") or "{}")
                except ValueError:
                    continue
                if lb in body.get("changed", []) and body["lbs"][lb]["state"] == state:
                    reports.append((dt, body["watcher"]))
            elif tag == "paphosting/rotation/changed":
                decided = dt if decided is None else min(decided, dt)
    first = {}
    for dt, watcher in sorted(reports):
        first.setdefault(watcher, dt)
    times = sorted(first.values())
    detected = times[quorum - 1] if len(times) >= quorum else None
    return detected, decided


def _decision_timings(events, t0):
    """Where the first master that published a change since ``t0`` took its time deciding
    (``timings`` of its ``paphosting/rotation/changed`` event: context, admit, state, push)."""
    first = None
    for ev in events:
        for dt, tag, data in ev.since(t0):
            if tag == "paphosting/rotation/changed" and (first is None or dt < first[0]):
                first = (dt, data.get("timings") or {}, data.get("master"))
    return {} if first is None else dict(first[1], master=first[2])


def _prepare(lab):
    """Highstate everything; wait until every backend is up and every nameserver answers every
    load balancer."""
    res = lab.highstate(lab.minions, master=lab.master().name)
    failed = {m: r["failed"] for m, r in res.items() if r["failed"]}
    if failed:
        raise RuntimeError(f"highstate failed: {failed}")
    p = lab.platform

    def backends_up():
        for lb in p.loadbalancers:
            for servers in lab.haproxy_servers(lb).values():
                if not all(s.startswith("UP") for s in servers.values()):
                    return False
        return True

    # A new backend is UP after `rise` (2) checks; haproxy spreads the first checks over the
    # interval, and the generated services check every 60 s: up to about two intervals.
    inter = max([svc.check.inter / 1000 for svc in p.services.values()] or [2])
    wait_until(
        backends_up, max(90, 3 * inter), message="every backend up", interval=0.2, error=LabError
    )
    client.wait_answer(lab.nameservers, ROTATION, {x.address for x in p.loadbalancers.values()}, 90)


def _restart_haproxy(lab, lb):
    """Start haproxy again (as its highstate would) and return when its health URL answers."""
    lbc = lab.platform.loadbalancers[lb]
    haproxy.start(lab.root(lb))
    wait_until(
        lambda: client.healthy(lbc.address, lbc.http_port, lbc.health_path),
        30,
        message=f"{lb} healthy",
        interval=0.02,
        error=LabError,
    )
    return time.monotonic()


def bench_failover(lab, trials):
    """Kill a load balancer's haproxy (SIGKILL), time until every nameserver answers without it;
    start it again, time from its first healthy answer until every nameserver answers with it."""
    p = lab.platform
    h = p.health
    lbs = sorted(p.loadbalancers)
    addr = {lb: p.loadbalancers[lb].address for lb in lbs}
    events = [Events(m, ("salt/beacon/", "paphosting/rotation/")) for m in lab.masters.values()]
    fail, recover, phases = [], [], []
    try:
        for i in range(trials):
            lb = lbs[i % len(lbs)]
            lab.wait_idle()
            dns = client.DnsWatch(
                lab.nameservers, ROTATION, {a for x, a in addr.items() if x != lb}
            )
            t0 = time.monotonic()
            lab.kill_haproxy(lb)
            at = dns.wait(90)
            if len(at) < len(lab.nameservers):
                raise RuntimeError(
                    f"trial {i + 1}: {lb} still handed out 90 s after its death: {dns.last}"
                )
            f = max(at.values()) - t0
            detected, decided = _phases(events, t0, lb, "down", h.quorum)
            fail.append(f)
            lab.wait_idle()
            dns = client.DnsWatch(lab.nameservers, ROTATION, set(addr.values()))
            t_up = _restart_haproxy(lab, lb)
            at = dns.wait(90)
            if len(at) < len(lab.nameservers):
                raise RuntimeError(
                    f"trial {i + 1}: {lb} not handed out 90 s after it came back: {dns.last}"
                )
            r = max(at.values()) - t_up
            r_detected, r_decided = _phases(events, t_up, lb, "up", h.quorum)
            recover.append(r)
            phases.append(
                {
                    "lb": lb,
                    "failover_s": round(f, 3),
                    "detected_s": _r(detected),
                    "decided_s": _r(decided),
                    "recovery_s": round(r, 3),
                    "recovery_detected_s": _r(r_detected),
                    "recovery_decided_s": _r(r_decided),
                }
            )
            log(
                f"trial {i + 1}/{trials} {lb}: failover {f:.2f} s (quorum of reports {_fmt(detected)}, decision {_fmt(decided)}); "
                f"recovery {r:.2f} s (reports {_fmt(r_detected)}, decision {_fmt(r_decided)})"
            )
    finally:
        for ev in events:
            ev.stop()
    floor = h.fall * h.interval
    out_fail = summary(fail, floor)
    out_rec = summary(recover, h.rise * h.interval)
    for out, key in ((out_fail, ""), (out_rec, "recovery_")):
        for phase in ("detected_s", "decided_s"):
            values = [x[key + phase] for x in phases if x[key + phase] is not None]
            out[f"p50_{phase}"] = round(percentile(values, 0.5), 3) if values else None
    out_fail["trials_detail"] = phases
    return out_fail, out_rec


def _r(x):
    return None if x is None else round(x, 3)


def _fmt(x):
    return "?" if x is None else f"+{x:.2f} s"


def bench_client_errors(lab, rounds=1):
    """Client-visible errors under a bounded load: 4 clients x 10 requests/s each.

    Backend kill: each webserver in turn loses its web application (SIGKILL) while the clients
    browse the stateless site through both load balancers (one attempt per request). Load balancer
    kill: each load balancer in turn loses its haproxy while clients resolve the rotation name
    through a random nameserver at every request (a resolver cache that just expired) and try one
    of the addresses (naive: one attempt), or every address in turn (like a browser).
    """
    p = lab.platform
    lbs = sorted(p.loadbalancers)
    addr = [p.loadbalancers[lb].address for lb in lbs]
    port = p.loadbalancers[lbs[0]].http_port
    out = {
        "backend_kill": 0,
        "lb_kill": 0,
        "lb_kill_with_retry": 0,
        "shop_backend_kill": 0,
        "requests": {},
    }
    requests = {"backend_kill": 0, "lb_kill": 0, "lb_kill_with_retry": 0, "shop_backend_kill": 0}
    shop = p.services["shop"]
    primary = next(s.name for s in shop.servers if s.role == "primary")
    for _ in range(rounds):
        for web in sorted(p.webservers):
            www = client.Load(WWW, port, client.rotating(addr), workers=4, rate=10, retry=False)
            shop_load = client.Load(
                SHOP, port, client.rotating(addr), workers=2, rate=5, retry=False
            )
            with www, shop_load:
                www.wait_requests(40)
                lab.kill_webapp(web)
                wait_until(
                    lambda web=web: all(
                        lab.haproxy_servers(lb)["www"][web].startswith("DOWN") for lb in lbs
                    ),
                    30,
                    message=f"{web} down",
                    interval=0.1,
                    error=LabError,
                )
                www.wait_requests(80)
            log(f"backend kill {web}: www {www.summary()}; shop {shop_load.summary()}")
            out["backend_kill"] += www.errors
            out["shop_backend_kill"] += shop_load.errors
            requests["backend_kill"] += www.requests
            requests["shop_backend_kill"] += shop_load.requests
            res = lab.highstate([web], master=lab.master().name, sls="webserver")
            if any(r["failed"] for r in res.values()):
                raise RuntimeError(f"restoring {web} failed: {res}")
            wait_until(
                lambda web=web: all(
                    lab.haproxy_servers(lb)["www"][web].startswith("UP") for lb in lbs
                ),
                60,
                message=f"{web} up",
                interval=0.2,
                error=LabError,
            )
            if web == primary:
                lab.salt(lbs, "haproxy_cfg.failback", "shop", master=lab.master().name)
        for lb in lbs:
            lab.wait_idle()
            others = {a for x, a in zip(lbs, addr, strict=True) if x != lb}
            naive = client.Load(
                WWW,
                port,
                client.dns_picker(lab.nameservers, ROTATION),
                workers=4,
                rate=10,
                retry=False,
            )
            browser = client.Load(
                WWW,
                port,
                client.dns_picker(lab.nameservers, ROTATION),
                workers=4,
                rate=10,
                retry=True,
            )
            with naive, browser:
                naive.wait_requests(40)
                dns = client.DnsWatch(lab.nameservers, ROTATION, others)
                lab.kill_haproxy(lb)
                dns.wait(90)
                naive.wait_requests(40)
            log(
                f"load balancer kill {lb}: one attempt: {naive.summary()}; every address: {browser.summary()}"
            )
            out["lb_kill"] += naive.errors
            out["lb_kill_with_retry"] += browser.errors
            requests["lb_kill"] += naive.requests
            requests["lb_kill_with_retry"] += browser.requests
            _restart_haproxy(lab, lb)
            client.wait_answer(lab.nameservers, ROTATION, set(addr), 90)
    out["requests"] = requests
    return out


def bench_platform(trials, parts):
    """The failover and client-error parts, on one lab of the example platform."""
    out = {}
    lab = Lab("bench", pillar=bench_pillar(), svn=False, say=log, parent=LABS)
    with lab:
        _prepare(lab)
        log("platform up and highstated: 2 masters, 2 load balancers, 3 nameservers, 3 webservers")
        if "failover" in parts:
            out["failover"], out["recovery"] = bench_failover(lab, trials)
        if "errors" in parts:
            out["client_errors"] = bench_client_errors(lab)
            out["errors_measured"] = True
        if "peers" in parts:
            out["peers"] = bench_peers(lab, trials)
    return out


def bench_peers(lab, trials):
    """gdnsd and PowerDNS beside the platform's nameservers, through the failover part's trials
    (harness/peers.py; docs/bench.md)."""
    with peers.running(lab.platform, lab.base / "peers", say=log) as started:
        systems, details = peers.side_by_side(
            lab, started, trials, lambda lb: _restart_haproxy(lab, lb), summary, ROTATION, log
        )
        described = {kind: peer.describe() for kind, peer in started.items()}
    h = lab.platform.health
    lbs = sorted(lab.platform.rotations[ROTATION].members)
    quorum = peers.quorum_case(
        lab, h.watchers[0], lbs[0], ROTATION, window=3 * h.fall * h.interval, say=log
    )
    return peers.results(lab.platform.health, systems, details, described, quorum, trials)


# --- tls: certificates through ACME (issue 13) --------------------------------------------------

TLS_OCTET = 79  # the tls part's lab lives on 127.79.0.0/16 (_own_addresses)
PEBBLE = (f"127.{TLS_OCTET}.7.1", 14000)


class Handshakes:
    """TLS handshakes in a loop against every load balancer (SNI ``host``, the test CA's root
    only, a new connection each), ``workers`` threads: how many, how many failed and why, and
    which leaf certificates were served."""

    def __init__(self, addresses, port, host, ctx, workers=2):
        self.addresses, self.port, self.host, self.ctx = list(addresses), port, host, ctx
        self.workers = workers
        self.count = 0
        self.failures = []
        self.leaves = {}
        self._stop = threading.Event()
        self._threads = []
        self._lock = threading.Lock()

    def _run(self):
        i = 0
        while not self._stop.is_set():
            address = self.addresses[i % len(self.addresses)]
            i += 1
            try:
                with (
                    socket.create_connection((address, self.port), timeout=5) as raw,
                    self.ctx.wrap_socket(raw, server_hostname=self.host) as conn,
                ):
                    leaf = conn.getpeercert(binary_form=True)
                error = None
            except (OSError, ssl.SSLError) as exc:
                leaf, error = None, f"{address}: {type(exc).__name__}: {exc}"
            with self._lock:
                self.count += 1
                if error:
                    self.failures.append(error)
                else:
                    key = hashlib.sha256(leaf).hexdigest()[:16]
                    self.leaves[key] = self.leaves.get(key, 0) + 1

    def __enter__(self):
        for _ in range(self.workers):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)


def _closed_loop(get, seconds, workers=4):
    """Requests per second of ``get()`` (True when it succeeded) over ``seconds`` in ``workers``
    threads, each sending its next request when the last one answered; ``(rate, failed)``."""
    done, failed = [0], [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run():
        while time.monotonic() < stop:
            ok = get()
            with lock:
                done[0] += 1
                failed[0] += not ok

    threads = [threading.Thread(target=run) for _ in range(workers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.monotonic() - t0), failed[0]


def bench_tls(renewals=3, seconds=10):
    """Issue 13's figures on a lab with Subversion and Pebble (docs/bench.md): the time from
    ``tls.issue`` until every load balancer serves every new certificate; ``renewals`` forced
    renewals of www under a loop of TLS handshakes (each: until every load balancer serves the
    new one, the handshakes that failed meanwhile); HTTPS beside plain HTTP requests per second
    through each load balancer (``www`` with ``https: both``, a new connection per request)."""
    pillar = _own_addresses(bench_pillar(), octet=TLS_OCTET, port_shift=TLS_OCTET + 100)
    pillar["services"]["www"]["https"] = "both"  # plain HTTP serves the page too, to compare
    lab = Lab("bench-tls", pillar=pillar, svn=True, say=log, acme=PEBBLE, parent=LABS)
    out = {"renewals": []}
    with lab:
        pillar = lab.acme_pillar(lab.pillar)
        lab.commit(lab.pillar_files(pillar), "HTTPS from the ACME CA")
        res = lab.push("nl")
        if res.returncode != 0:
            raise RuntimeError(f"push failed: {res.stdout}{res.stderr}")
        _prepare(lab)
        p = lab.platform
        lbs = sorted(p.loadbalancers)
        addresses = [p.loadbalancers[lb].address for lb in lbs]
        port = p.loadbalancers[lbs[0]].https_port
        ctx = client.tls_context(lab.pebble.root())

        def served(lb, host):
            answer = client.Browser(host, port, ctx).get(p.loadbalancers[lb].address)
            return answer.certificate

        t0 = time.monotonic()
        ret = lab.run("tls.issue", master="nl", timeout=900)
        if not ret.get("result"):
            raise RuntimeError(f"tls.issue failed: {ret}")
        for host in (WWW, SHOP):
            for lb in lbs:
                wait_until(
                    lambda lb=lb, host=host: served(lb, host),
                    300,
                    message=f"{lb} serving {host}",
                    interval=0.2,
                    error=LabError,
                )
        out["issue_to_every_lb_s"] = round(time.monotonic() - t0, 2)
        log(
            f"tls: issued www and shop, every load balancer serves them {out['issue_to_every_lb_s']} s after tls.issue"
        )
        for i in range(renewals):
            old = served(lbs[0], WWW)
            with Handshakes(addresses, port, WWW, ctx) as shakes:
                time.sleep(1)
                t0 = time.monotonic()
                ret = lab.run("tls.issue", "service=www", "force=True", master="nl", timeout=900)
                if not ret.get("result"):
                    raise RuntimeError(f"tls.issue force=True failed: {ret}")
                for lb in lbs:
                    wait_until(
                        lambda lb=lb, old=old: served(lb, WWW) not in (None, old),
                        300,
                        message=f"{lb} renewed",
                        interval=0.2,
                        error=LabError,
                    )
                took = time.monotonic() - t0
                time.sleep(1)
            row = {
                "to_every_lb_s": round(took, 2),
                "handshakes": shakes.count,
                "failed_handshakes": len(shakes.failures),
                "leaves": shakes.leaves,
                "first_failures": shakes.failures[:5],
            }
            out["renewals"].append(row)
            log(
                f"tls: renewal {i + 1}: {took:.1f} s until every load balancer served it; {shakes.count} handshakes, {len(shakes.failures)} failed"
            )
        out["swap_failed_handshakes"] = sum(r["failed_handshakes"] for r in out["renewals"])
        plain = client.Client()
        rates = {}
        for lb, address in zip(lbs, addresses, strict=True):
            http_port = p.loadbalancers[lb].http_port

            def get_http(address=address, http_port=http_port):
                try:
                    return plain.get(address, http_port, "/", host=WWW, timeout=5).status == 200
                except (OSError, http.client.HTTPException):
                    return False

            def get_https(address=address):
                try:
                    resp = client.Client().get(address, port, "/", host=WWW, timeout=5, tls=ctx)
                    return resp.status == 200
                except (OSError, http.client.HTTPException, ssl.SSLError):
                    return False

            http_rate, http_failed = _closed_loop(get_http, seconds)
            https_rate, https_failed = _closed_loop(get_https, seconds)
            rates[lb] = {
                "http": round(http_rate, 1),
                "https": round(https_rate, 1),
                "ratio": round(https_rate / http_rate, 3) if http_rate else 0.0,
                "failed": http_failed + https_failed,
            }
            log(
                f"tls: {lb}: {http_rate:.0f} HTTP req/s, {https_rate:.0f} HTTPS req/s (ratio {rates[lb]['ratio']})"
            )
        out["requests_per_s"] = rates
    return out


def scale_pillar(customers):
    """The bench platform with ``customers`` customer zones, each with its apex (and ``www``) on
    the rotation (harness/synthetic.py), on addresses of its own (:func:`_own_addresses`)."""
    return _own_addresses(synthetic.customers(customers, base=bench_pillar()))


def _own_addresses(pillar, octet=77, port_shift=100):
    """``pillar`` moved to addresses and ports no other lab of this machine uses (``scripts/lab
    up``, the demo or the monitoring test may be running): 127.0.x.y becomes 127.<octet>.x.y, the
    metrics listeners included; BIND, which listens on 127.0.0.1 only, gets its ports shifted by
    ``port_shift``."""
    metrics = pillar.get("metrics") or {}
    groups = [pillar.get(g, {}) for g in ("loadbalancers", "webservers", "nameservers", "masters")]
    groups += [metrics.get(g, {}) for g in ("loadbalancers", "nameservers", "masters")]
    for group in groups:
        for item in group.values():
            if item.get("address", "").startswith("127.0.") and item["address"] != "127.0.0.1":
                item["address"] = f"127.{octet}." + item["address"].split(".", 2)[2]
            elif item.get("address") == "127.0.0.1":
                item["port"] = item.get("port", 53) + port_shift
                if "control_port" in item:
                    item["control_port"] += port_shift
            if "stats_port" in item:  # BIND's statistics channel, on 127.0.0.1
                item["stats_port"] += port_shift
    return pillar


def _floor_root():
    extra = OUT / "floor_sls"
    (extra / "bench").mkdir(parents=True, exist_ok=True)
    (extra / "bench" / "floor.sls").write_text(EMPTY_SLS)
    return extra


def _push_validation(lab):
    """Seconds for what a push does before anything goes live: Salt compiles every minion's
    pillar (:func:`paphosting.pillarcompile.compile_tree`, as ``svnpillar.push`` does), then
    :func:`paphosting.pushcheck.validate` checks it with the real checkers."""
    from paphosting import pillarcompile

    opts = dict(lab.master().opts(), ext_pillar=[])
    tree = str(lab.pillar_dir)
    t0 = time.monotonic()
    compiled, sources, files, lines = pillarcompile.compile_tree(
        opts, tree, "pillar", sorted(lab.minions)
    )
    t1 = time.monotonic()
    pushcheck.validate("bench", compiled, sources, prefix="pillar", files=files, render_lines=lines)
    t2 = time.monotonic()
    return {
        "compile_s": round(t1 - t0, 2),
        "validate_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
    }


def _zone_trial(lab, names, want, act):
    """Run ``act`` (returns its start time), then time until every nameserver answers ``want``
    for the rotation name and for every one of ``names``: ``({ns: s}, {ns: s}, {ns: longest
    query round}, start time)``."""
    rot = client.DnsWatch(lab.nameservers, ROTATION, want)
    # The sample: a customer zone, applied in the batch after the rotation name's zone.
    sample = next((z for z in names if z != synthetic.ZONE), None)
    zones = client.ZoneWatch(lab.nameservers, names, want, first=ROTATION, sample=sample)
    t0 = act()
    at_rot = rot.wait(120)
    at_zones = zones.wait(300)
    if len(at_zones) < len(lab.nameservers) or len(at_rot) < len(lab.nameservers):
        raise RuntimeError(
            f"not every nameserver answers {sorted(want)} for every zone: {zones.left} left, "
            f"rotation name {rot.last}"
        )
    return (
        {ns: t - t0 for ns, t in at_rot.items()},
        {ns: t - t0 for ns, t in at_zones.items()},
        {ns: round(max(r), 3) for ns, r in zones.rounds.items() if r},
        t0,
    )


def bench_scale(trials, sizes=ZONE_SIZES, repeat=2):
    """The ``scale`` part (see the module docstring). One lab; the pillar grows size by size."""
    lab = Lab(
        "bench-scale",
        parent=LABS,
        pillar=scale_pillar(0),
        svn=False,
        say=log,
        extra_file_roots=[_floor_root()],
    )
    rows = []
    with lab:
        for n in sizes:
            try:
                rows.append(_scale_size(lab, n, trials, repeat))
            except Exception as exc:  # noqa: BLE001 - keep the smaller sizes' figures
                log(f"scale: {n} customer zones FAILED: {type(exc).__name__}: {exc}")
                rows.append({"zones": n, "error": f"{type(exc).__name__}: {exc}"[:2000]})
                break  # a larger size would fail the same way
        try:
            row_cpu = bench_report_cpu(lab)
        except Exception as exc:  # noqa: BLE001 - keep the sizes' figures
            log(f"scale: master CPU per report FAILED: {type(exc).__name__}: {exc}")
            row_cpu = [{"error": f"{type(exc).__name__}: {exc}"[:2000]}]
    return {"sizes": rows, "report_cpu": row_cpu}


def _scale_size(lab, n, trials, repeat):
    """One size of the ``scale`` part: its row."""
    pillar = scale_pillar(n)
    lab.write_pillar(pillar)
    t0 = time.monotonic()
    _prepare(lab)
    log(f"scale: {n} customer zones, platform highstated in {time.monotonic() - t0:.1f} s")
    names = sorted(z for z in lab.platform.zones if z.startswith("customer")) + [synthetic.ZONE]
    row = {"zones": n, "names_checked": len(names)}
    row["push_validation"] = _push_validation(lab)
    log(f"scale: push validation at {n} zones: {row['push_validation']}")
    noop = {}
    for ns in lab.nameservers:
        runs, floors, states = [], [], {}
        for _ in range(repeat):
            secs, res = _timed_apply(lab, ns.name)
            if res["failed"] or res["changed"]:
                raise RuntimeError(f"no-change highstate of {ns.name}: {res}")
            runs.append(secs)
            for sid, ms in res["durations"].items():
                states.setdefault(sid, []).append(ms)
            floors.append(_timed_apply(lab, ns.name, "bench.floor")[0])
        noop[ns.server] = {
            "seconds": round(percentile(runs, 0.5), 3),
            "floor_seconds": round(percentile(floors, 0.5), 3),
            "state_ms": {
                sid: round(percentile(v, 0.5))
                for sid, v in sorted(states.items(), key=lambda kv: -percentile(kv[1], 0.5))[:4]
            },
        }
    row["noop"] = noop
    log(f"scale: no-change highstate at {n} zones: {noop}")
    p = lab.platform
    kinds = {ns.name: ns.server for ns in lab.nameservers}
    acc = {
        "fail": {k: [] for k in kinds.values()},
        "recover": {k: [] for k in kinds.values()},
        "fail_rot": [],
        "recover_rot": [],
        "rounds": [],
        "rot_phases": [],
        "jobs": {},
    }
    trials_began = time.time()
    events = [Events(m, ("salt/beacon/", "paphosting/rotation/")) for m in lab.masters.values()]
    try:
        for i in range(trials):
            _scale_trial(lab, f"{n} zones, trial {i + 1}/{trials}", i, names, events, acc)
    finally:
        for ev in events:
            ev.stop()
    h = p.health
    row["failover"] = {k: summary(v, h.fall * h.interval) for k, v in acc["fail"].items()}
    row["recovery"] = {k: summary(v, h.rise * h.interval) for k, v in acc["recover"].items()}
    rot = row["failover_rotation_name"] = summary(acc["fail_rot"], h.fall * h.interval)
    for phase in ("detected_s", "decided_s", "applied_s"):
        values = [x[phase] for x in acc["rot_phases"] if x[phase] is not None]
        for q, name in ((0.5, "p50"), (0.95, "p95")):
            rot[f"{name}_{phase}"] = _r(percentile(values, q)) if values else None
    rot["trials_detail"] = acc["rot_phases"]
    row["failover_jobs"] = {
        server: {
            "p50_started_s": _r(percentile([x[0] for x in v], 0.5)),
            "p50_served_s": _r(percentile([x[1] for x in v], 0.5)),
            "p95_served_s": _r(percentile([x[1] for x in v], 0.95)),
            "trials": len(v),
        }
        for server, v in sorted(acc["jobs"].items())
    }
    row["recovery_rotation_name"] = summary(acc["recover_rot"], h.rise * h.interval)
    row["query_round_max_s"] = round(max(acc["rounds"]), 3) if acc["rounds"] else None
    row["apply_phases"] = _apply_phases(lab, trials_began, kinds)
    log(
        f"scale: {n} zones, each nameserver's rotation.apply (p50 s per phase): {row['apply_phases']}"
    )
    row["server_floor"] = _server_floor(lab, names)
    log(f"scale: {n} zones, each server on its own, every zone anew (p50 s): {row['server_floor']}")
    return row


def _scale_trial(lab, title, i, names, events, acc):
    """Trial ``i`` of :func:`_scale_size`: a failover and a recovery, appended to ``acc``. The
    rotation name's failover is split, from the masters' buses, into the quorum of reports
    (``detected_s``), the first master's decision (``decided_s``) and the nameservers' apply
    until the last one serves it (``applied_s``, counted from the decision)."""
    p = lab.platform
    lbs = sorted(p.loadbalancers)
    addr = {lb: p.loadbalancers[lb].address for lb in lbs}
    kinds = {ns.name: ns.server for ns in lab.nameservers}
    lb = lbs[i % len(lbs)]
    lab.wait_idle()
    killed = {}

    def kill():
        killed["at"] = time.time()
        t = time.monotonic()
        lab.kill_haproxy(lb)
        return t

    at_rot, at_zones, rnd, t0 = _zone_trial(
        lab, names, {a for x, a in addr.items() if x != lb}, kill
    )
    detected, decided = _phases(events, t0, lb, "down", p.health.quorum)
    served = max(at_rot.values())
    acc["rot_phases"].append(
        {
            "lb": lb,
            "served_s": _r(served),
            "detected_s": _r(detected),
            "decided_s": _r(decided),
            "applied_s": _r(served - decided) if decided is not None else None,
            "decision": _decision_timings(events, t0),
        }
    )
    for ns, t in at_zones.items():
        acc["fail"][kinds[ns]].append(t)
    acc["fail_rot"].append(served)
    acc["rounds"].append(max(rnd.values()))
    lab.wait_idle()
    jobs = _job_times(lab, killed["at"], kinds)
    for server, (started, job_served) in jobs.items():
        acc["jobs"].setdefault(server, []).append((started, job_served))
    r_rot, r_zones, _, _ = _zone_trial(
        lab, names, set(addr.values()), lambda: _restart_haproxy(lab, lb)
    )
    for ns, t in r_zones.items():
        acc["recover"][kinds[ns]].append(t)
    acc["recover_rot"].append(max(r_rot.values()))
    log(
        f"scale {title} {lb}: every zone "
        + ", ".join(f"{kinds[ns]} {t:.2f} s" for ns, t in sorted(at_zones.items()))
        + f" (rotation name {served:.2f} s: reports {_fmt(detected)}, decision {_fmt(decided)}"
        + f" {acc['rot_phases'][-1]['decision']});"
        + " jobs: "
        + ", ".join(
            f"{k} started {a:.2f} s, served {b:.2f} s" for k, (a, b) in sorted(jobs.items())
        )
        + ";"
        + " recovery "
        + ", ".join(f"{kinds[ns]} {t:.2f} s" for ns, t in sorted(r_zones.items()))
    )


def _rotation_jobs(lab, since, kinds):
    """``[(minion, return)]`` of the ``rotation.apply`` jobs whose return the masters stored
    since ``since`` (epoch seconds) and that wrote zones (the other master's apply of the same
    change, which finds nothing left to do, is not listed), read from the masters' job caches."""
    import salt.payload

    out = []
    for master in lab.masters.values():
        jobs = pathlib.Path(master.opts()["cachedir"]) / "jobs"
        for ret_path in jobs.glob("*/*/*/return.p"):
            minion = ret_path.parent.name
            if minion not in kinds:
                continue
            try:
                if ret_path.stat().st_mtime < since:
                    continue
                data = salt.payload.loads(ret_path.read_bytes())
            except (OSError, ValueError, TypeError):
                continue
            ret = data.get("return") if isinstance(data, dict) else None
            if not isinstance(ret, dict) or not isinstance(ret.get("timings"), dict):
                continue
            if any(z.get("written") for z in (ret.get("zones") or {}).values()):
                out.append((minion, ret))
    return out


def _apply_phases(lab, since, kinds):
    """``{server: {phase: p50 seconds}}`` of the ``rotation.apply`` jobs since ``since`` (epoch
    seconds) that wrote zones (:func:`_rotation_jobs`): where a failover's time goes on each
    nameserver (``timings`` of ``_modules/rotation.py``: prepare, plan, sign, write, reload,
    wait, cleanup; plan to wait repeat for the rotation name's zone and the others, summed)."""
    phases = {k: {} for k in kinds.values()}
    for minion, ret in _rotation_jobs(lab, since, kinds):
        for phase, secs in ret["timings"].items():
            if not phase.endswith("_at"):
                phases[kinds[minion]].setdefault(phase, []).append(secs)
    return {
        k: {ph: round(percentile(v, 0.5), 3) for ph, v in sorted(d.items())}
        for k, d in phases.items()
        if d
    }


def _job_times(lab, kill_at, kinds):
    """``{server: (started, served)}``: seconds from the kill (``kill_at``, epoch seconds) until
    the ``rotation.apply`` job that applied the failover on that nameserver started and until it
    had the server serve its last zones (``started_at``, ``timings["served_at"]``): the
    nameserver's own time, beside what the zone watch saw."""
    out = {}
    for minion, ret in _rotation_jobs(lab, kill_at - 1, kinds):
        served = ret["timings"].get("served_at")
        if ret.get("started_at") is None or served is None or ret["started_at"] < kill_at:
            continue
        got = (round(ret["started_at"] - kill_at, 3), round(served - kill_at, 3))
        out[kinds[minion]] = min(out.get(kinds[minion], got), got)
    return out


def _server_floor(lab, names, repeat=3):
    """What each server needs on its own to serve a new version of every zone of ``names``,
    without the platform's Python or the other nameservers around it: ``{server: {phase: p50
    seconds}}`` over ``repeat`` rounds, one nameserver at a time on the idle lab.

    The file way (BIND, NSD; Knot when an update is refused): every zone file written again with
    the serial + 1 and nothing else changed (``write``: staged and renamed over the live files as
    ``paphosting.zonesync`` does), the reload commands the platform runs (``reload``), until the
    server answers every new serial (``serve``); ``total`` is the three. For Knot also the update
    way: the same serial change as one RFC 2136 update per zone (``update``: sent, pipelined,
    until every answer; the files then get the same text, untimed). The zones stay what the
    platform rendered, with higher serials: the next plan finds them current. This is the floor
    of a failover's work per nameserver on this machine (docs/bench.md)."""
    lab.wait_idle()
    return {ns.server: _one_server_floor(lab, ns, names, repeat) for ns in lab.nameservers}


def _one_server_floor(lab, ns, names, repeat):
    """:func:`_server_floor` of one nameserver."""
    root = lab.root(ns.name)
    paths = dnsserver.zone_paths(ns, names, root)
    replaced = os.path.join(dnsserver.layout(ns, root)["zone_dir"], ".replaced")
    rounds = {}

    def bumped():
        served = dnsserver.served_serials(ns, names)
        texts, want = {}, {}
        for z in names:
            text = files.read(paths[z])
            live = pzone.quick_serial(z, text)
            if live is None or served.get(z) != live:
                raise RuntimeError(
                    f"server floor: {ns.name} serves {served.get(z)} for {z}, its file {live}"
                )
            want[z] = pzone.next_serial(live, pzone.today_utc())
            texts[z] = (text, live)
        return texts, want

    def serving(want, timeout=120):
        late = dnsserver.wait_serials(ns, want, timeout, interval=0.01)
        if late:
            raise RuntimeError(f"server floor: {ns.name} does not serve {len(late)} new serials")

    def write(texts, want):
        items = {paths[z]: pzone.with_serial(texts[z][0], want[z]) for z in names}
        files.commit(files.stage(items, durable=False), keep_old=replaced)

    for _ in range(repeat):
        texts, want = bumped()
        t0 = time.monotonic()
        write(texts, want)
        t1 = time.monotonic()
        for argv in dnsserver.zones_reload_commands(ns, names, root):
            dnsserver.run_control(argv)
        t2 = time.monotonic()
        serving(want)
        t3 = time.monotonic()
        for phase, secs in (
            ("write", t1 - t0),
            ("reload", t2 - t1),
            ("serve", t3 - t2),
            ("total", t3 - t0),
        ):
            rounds.setdefault(phase, []).append(secs)
        os.sync()
        files.purge(replaced)
        if ns.server != "knot":
            continue
        texts, want = bumped()
        secret = dnsupdate.read_key(dnsserver.layout(ns, root)["update_key"])
        changes = {
            z: (texts[z][0], texts[z][1], want[z], {"added": [], "removed": []}) for z in names
        }
        t0 = time.monotonic()
        refused = {
            z: why
            for z, why in dnsupdate.apply(ns.address, ns.port, secret, changes).items()
            if why
        }
        serving(want)
        rounds.setdefault("update", []).append(time.monotonic() - t0)
        if refused:
            raise RuntimeError(
                f"server floor: {ns.name} refused {len(refused)} updates, e.g. {next(iter(refused.items()))}"
            )
        write(texts, want)
        os.sync()
        files.purge(replaced)
    return {ph: round(percentile(v, 0.5), 3) for ph, v in rounds.items()}


RATE = 5.0  # reports a second one watcher may send (_runners/rotation.py RATE)


def bench_report_cpu(lab, reports=30, sizes=(100, 10000)):
    """Master CPU seconds per health report at ``sizes`` services: the ``rotation.report`` runner
    called in this process with the master's options, on signed heartbeats of a real watcher."""
    import salt.runner

    from paphosting import health

    watcher = lab.platform.health.watchers[0]
    key = (lab.minions[watcher].root / "pki" / "minion.pem").read_bytes()
    out = []
    for services in sizes:
        # lean: haproxy at 10,000 services within the file descriptors it may open (maxconn 2000).
        lab.write_pillar(bench_pillar(services, lean=True))
        # A state file of its own: the live failover's state (and its replay protection) is not
        # touched by these reports.
        opts = dict(
            lab.master().opts(), paphosting_rotation_state=str(OUT / f"cpu-{services}.json")
        )
        pathlib.Path(opts["paphosting_rotation_state"]).unlink(missing_ok=True)
        report = salt.runner.RunnerClient(opts).functions["rotation.report"]
        costs = []
        seq = int(time.time() * 1e6)
        for i in range(reports):
            views = {
                lb: {"state": "up", "flapping": False, "since": time.time()}
                for lb in lab.platform.loadbalancers
            }
            text = health.report_text(watcher, seq + i, time.time(), "heartbeat", views)
            sig = health.sign(text, key)
            c0 = time.process_time()
            res = report(report=text, sig=sig, sender=watcher)
            costs.append(time.process_time() - c0)
            if not res.get("accepted"):
                raise RuntimeError(f"report refused at {services} services: {res}")
            # Not faster than a watcher may report: the runner refuses a flood (RATE a second).
            time.sleep(1.5 / RATE)
        out.append(
            {
                "services": services,
                "first_report_cpu_s": round(costs[0], 4),
                "report_cpu_p50_s": round(percentile(costs[1:], 0.5), 5),
            }
        )
        log(f"scale: master CPU per report at {services} services: {out[-1]}")
    return out


EMPTY_SLS = (
    "# Salt's floor: a state run with one state that does nothing.\nbench-floor:\n  test.nop\n"
)


def _timed_apply(lab, minion, sls=None):
    t0 = time.monotonic()
    res = lab.highstate([minion], master="nl", sls=sls)[minion]
    return time.monotonic() - t0, res


def bench_noop(repeat=3, sizes=SIZES, autoload=False):
    """A highstate that changes nothing, on a load balancer and on a nameserver, at each size,
    beside ``state.apply`` of an SLS holding one ``test.nop`` on the same minion (Salt's floor:
    the same job, pillar and state machinery with nothing to do).

    ``autoload``: the minions' ``autoload_dynamic_modules``. False is what the project ships
    (conf/minion.d/paphosting.conf: the modules come by an explicit sync, at a push, a drift
    correction, a minion's start); True is Salt's default, which makes every highstate run
    ``saltutil.sync_all`` and reload every module first, measured beside it for comparison."""
    extra = _floor_root()
    roles = {"loadbalancer": "lb1.paphosting.net", "nameserver": "ns1.paphosting.net"}
    lab = Lab(
        "bench-noop",
        parent=LABS,
        pillar=bench_pillar(watchers=False, lean=True),
        svn=False,
        masters=["nl"],
        minions=sorted(roles.values()),
        say=log,
        extra_file_roots=[extra],
        minion_overrides={"autoload_dynamic_modules": autoload},
    )
    rows = []
    with lab:
        for n in sizes:
            lab.write_pillar(bench_pillar(n, watchers=False, lean=True))
            for minion in roles.values():
                _, res = _timed_apply(lab, minion)
                if res["failed"]:
                    raise RuntimeError(
                        f"highstate of {minion} at {n} services failed: {res['failed']}"
                    )
            for role, minion in roles.items():
                noop, floor, changed, states = [], [], [], {}
                for _ in range(repeat):
                    secs, res = _timed_apply(lab, minion)
                    noop.append(secs)
                    changed += res["changed"]
                    for sid, ms in res["durations"].items():
                        states.setdefault(sid, []).append(ms)
                    secs, _ = _timed_apply(lab, minion, "bench.floor")
                    floor.append(secs)
                row = {
                    "role": role,
                    "services": n,
                    "autoload_dynamic_modules": autoload,
                    "seconds": round(percentile(noop, 0.5), 3),
                    "floor_seconds": round(percentile(floor, 0.5), 3),
                    "minion": minion,
                    "runs_s": [round(x, 3) for x in noop],
                    "floor_runs_s": [round(x, 3) for x in floor],
                    "changed": sorted(set(changed)),
                    "state_ms": {
                        sid: round(percentile(v, 0.5))
                        for sid, v in sorted(states.items(), key=lambda kv: -percentile(kv[1], 0.5))
                    },
                }
                rows.append(row)
                top = ", ".join(
                    f"{sid} {ms / 1000:.2f} s" for sid, ms in list(row["state_ms"].items())[:3]
                )
                log(
                    f"no-change highstate {role} ({minion}) at {n} services{' (Salt default: module autoload)' if autoload else ''}: {row['seconds']:.2f} s, floor {row['floor_seconds']:.2f} s"
                    f" (slowest states: {top})" + (f"; CHANGED {row['changed']}" if changed else "")
                )
    return rows


# --- results ---------------------------------------------------------------------------------


def _targets(results):
    """Each target of issue 7: (name, met or None when not measured, the figures)."""
    out = []
    render = {r["services"]: r for r in results.get("render", []) if r.get("services")}
    if 10000 in render:
        s = render[10000]["seconds"]
        out.append(
            ("10,000 services rendered and validated <= 5 s", s <= TARGET_RENDER_S, f"{s:.2f} s")
        )
    fo = results.get("failover") or {}
    if fo.get("trials"):
        floor = fo["floor_s"]
        out.append(
            (
                "failover p50 <= floor + 1 s",
                fo["p50_s"] <= floor + 1,
                f"p50 {fo['p50_s']:.2f} s, floor {floor:.1f} s",
            )
        )
        out.append(
            (
                "failover p95 <= floor + 2 s",
                fo["p95_s"] <= floor + 2,
                f"p95 {fo['p95_s']:.2f} s, floor {floor:.1f} s",
            )
        )
    for row in results.get("noop_highstate", []):
        if row.get("floor_seconds"):
            ratio = row["seconds"] / row["floor_seconds"]
            out.append(
                (
                    f"no-change highstate {row['role']} {row['services']} services <= 2x floor",
                    ratio <= 2,
                    f"{row['seconds']:.2f} s vs {row['floor_seconds']:.2f} s ({ratio:.1f}x)",
                )
            )
    out += _scale_targets(results.get("scale") or {})
    out += _fault_targets(results.get("faults") or {})
    tls = results.get("tls") or {}
    if tls.get("renewals"):
        shakes = sum(r["handshakes"] for r in tls["renewals"])
        out.append(
            (
                "no failed TLS handshake during a certificate swap under load",
                tls["swap_failed_handshakes"] == 0,
                f"{tls['swap_failed_handshakes']} of {shakes} in {len(tls['renewals'])} renewals",
            )
        )
    ce = results.get("client_errors") or {}
    if "backend_kill" in ce and results.get("errors_measured"):
        out.append(
            (
                "no failed stateless request while a backend dies",
                ce["backend_kill"] == 0,
                f"{ce['backend_kill']} failed",
            )
        )
    return out


def _fault_lines(faults):
    """The faults part as a table: per fault kind, each client's failed requests and added latency."""
    if not faults:
        return []
    lines = [""]
    for key, what in (("power_off_failover", "powered off"), ("kill_failover", "killed")):
        fo = faults[key]
        lines.append(
            f"load balancer {what}: out of every answer p50 {fo['p50_s']:.2f} s, p95 {fo['p95_s']:.2f} s "
            f"({fo['trials']} trials, floor {fo['floor_s']:.1f} s)"
        )
    lines += [
        "",
        f"what clients see under each fault ({faults['window_s']:.0f} s, {faults['clients_per_kind']} clients of each kind "
        f"holding their DNS answer, connect timeout {faults['connect_timeout_s']:.0f} s; added: against the same "
        "clients just before the fault)",
        f"{'fault':<22} {'browser: failed/requests':>25} {'+p50 ms':>8} {'+p99 ms':>8}   {'one address: failed/requests':>28} {'+p50 ms':>8} {'+p99 ms':>8}",
    ]
    for kind, row in faults["clients"].items():
        b, o = row["browser"], row["one_address"]
        lines.append(
            f"{kind:<22} {b['failed']:>12}/{b['requests']:<12} {b['added_p50_ms']:>8.0f} {b['added_p99_ms']:>8.0f}   "
            f"{o['failed']:>14}/{o['requests']:<13} {o['added_p50_ms']:>8.0f} {o['added_p99_ms']:>8.0f}"
        )
    return lines


def _fault_targets(faults):
    """The targets of issue 17."""
    if not faults:
        return []
    fo = faults["power_off_failover"]
    backend = faults["clients"].get("backend_power_off", {}).get("browser", {})
    out = [
        (
            "a powered-off load balancer out of every answer within floor + 1 s (p50)",
            fo["p50_s"] <= fo["floor_s"] + 1,
            f"p50 {fo['p50_s']:.2f} s, floor {fo['floor_s']:.1f} s",
        )
    ]
    if backend:
        out.append(
            (
                "no failed stateless request to a powered-off backend",
                backend["failed"] == 0,
                f"{backend['failed']} of {backend['requests']} failed, added p50 "
                f"{backend['added_p50_ms']:.0f} ms, p99 {backend['added_p99_ms']:.0f} ms",
            )
        )
    return out


def _scale_targets(scale):
    """The targets of the scale part (issue "Failover at a hoster's size")."""
    out = []
    rows = scale.get("sizes") or []
    for row in rows:
        n = row["zones"]
        if "error" in row:
            out.append((f"the {n}-zone step measured", False, row["error"][:300]))
            continue
        for server, fo in sorted(row.get("failover", {}).items()):
            floor = fo["floor_s"]
            if n == max(r["zones"] for r in rows):
                out.append(
                    (
                        f"failover, every zone, {n} zones, {server}: p50 <= floor + 1 s, p95 <= floor + 2 s",
                        fo["p50_s"] <= floor + 1 and fo["p95_s"] <= floor + 2,
                        f"p50 {fo['p50_s']:.2f} s, p95 {fo['p95_s']:.2f} s, floor {floor:.1f} s",
                    )
                )
        rot = row.get("failover_rotation_name") or {}
        if rot.get("trials"):
            out.append(
                (
                    f"failover, the rotation name, {n} zones: p95 <= floor + 1 s",
                    rot["p95_s"] <= rot["floor_s"] + 1,
                    f"p95 {rot['p95_s']:.2f} s, floor {rot['floor_s']:.1f} s",
                )
            )
        if n == max(r["zones"] for r in rows):
            for server, noop in sorted(row.get("noop", {}).items()):
                ratio = noop["seconds"] / noop["floor_seconds"]
                out.append(
                    (
                        f"no-change nameserver highstate, {n} zones, {server}: <= 2x floor",
                        ratio <= 2,
                        f"{noop['seconds']:.2f} s vs {noop['floor_seconds']:.2f} s ({ratio:.1f}x)",
                    )
                )
            pv = row.get("push_validation") or {}
            if pv:
                out.append(
                    (
                        f"push validation of {n} zones for every minion <= 60 s",
                        pv["total_s"] <= 60,
                        f"{pv['total_s']:.1f} s (compile {pv['compile_s']:.1f} s, checks {pv['validate_s']:.1f} s)",
                    )
                )
    cpu = scale.get("report_cpu") or []
    if any("error" in c for c in cpu):
        out.append(("master CPU per report measured", False, cpu[0].get("error", "")[:300]))
        cpu = []
    if len(cpu) >= 2:
        a, b = cpu[0], cpu[-1]
        out.append(
            (
                f"master CPU per report does not grow with the pillar ({a['services']} -> {b['services']} services)",
                b["report_cpu_p50_s"] <= 2 * max(a["report_cpu_p50_s"], 0.001),
                f"{a['report_cpu_p50_s'] * 1000:.1f} ms -> {b['report_cpu_p50_s'] * 1000:.1f} ms"
                f" (first report, which compiles once: {a['first_report_cpu_s']:.2f} s -> {b['first_report_cpu_s']:.2f} s)",
            )
        )
    return out


def _scale_lines(scale):
    rows = scale.get("sizes") or []
    if not rows:
        return []
    servers = sorted({k for r in rows for k in r.get("failover", {})})
    head = f"{'zones':>6} " + " ".join(f"{s + ' fail p50/p95':>18}" for s in servers)
    head += f" {'rot.name p95':>13}" + " ".join(f"{s + ' recov p50':>13}" for s in servers)
    head += " " + " ".join(f"{s + ' noop/floor':>17}" for s in servers) + f" {'push s':>7}"
    lines = ["", "scale: customer apex zones (every zone asked of every nameserver)", head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['zones']:>6} not measured: {r['error'][:300]}")
            continue
        fo, rec, noop = r.get("failover", {}), r.get("recovery", {}), r.get("noop", {})
        line = f"{r['zones']:>6} " + " ".join(
            f"{fo[s]['p50_s']:>8.2f} /{fo[s]['p95_s']:>6.2f} s" if s in fo else f"{'-':>18}"
            for s in servers
        )
        rot = r.get("failover_rotation_name") or {}
        line += f" {rot.get('p95_s', 0):>11.2f} s"
        line += " ".join(
            f"{rec[s]['p50_s']:>11.2f} s" if s in rec else f"{'-':>13}" for s in servers
        )
        line += " " + " ".join(
            f"{noop[s]['seconds']:>7.2f}/{noop[s]['floor_seconds']:>5.2f} s"
            if s in noop
            else f"{'-':>17}"
            for s in servers
        )
        line += f" {r.get('push_validation', {}).get('total_s', 0):>7.1f}"
        lines.append(line)
        rot = r.get("failover_rotation_name") or {}
        if rot.get("p50_applied_s") is not None:
            lines.append(
                f"{'':>6} the rotation name, p50 / p95 from the kill: quorum of reports "
                f"{rot['p50_detected_s']:.2f} / {rot['p95_detected_s']:.2f} s, decision "
                f"{rot['p50_decided_s']:.2f} / {rot['p95_decided_s']:.2f} s; then served by every "
                f"nameserver after {rot['p50_applied_s']:.2f} / {rot['p95_applied_s']:.2f} s"
            )
        jobs = r.get("failover_jobs") or {}
        if jobs:
            lines.append(
                f"{'':>6} each nameserver's own failover job, p50 from the kill: "
                + "; ".join(
                    f"{s} started {j['p50_started_s']:.2f} s, served every zone "
                    f"{j['p50_served_s']:.2f} s (p95 {j['p95_served_s']:.2f})"
                    for s, j in jobs.items()
                )
            )
        floor = r.get("server_floor") or {}
        if floor:
            lines.append(
                f"{'':>6} each server on its own, every zone anew: "
                + "; ".join(
                    f"{s} files {f['total']:.2f} s "
                    f"(write {f['write']:.2f}, reload {f['reload']:.2f}, serve {f['serve']:.2f})"
                    + (f", updates {f['update']:.2f} s" if "update" in f else "")
                    for s, f in sorted(floor.items())
                )
            )
    for c in scale.get("report_cpu") or []:
        if "error" in c:
            lines.append(f"master CPU per health report not measured: {c['error'][:300]}")
            continue
        lines.append(
            f"master CPU per health report at {c['services']} services: {c['report_cpu_p50_s'] * 1000:.1f} ms"
            f" (the first, which compiles the pillar once: {c['first_report_cpu_s']:.2f} s)"
        )
    return lines


def table(results):
    lines = []
    if results.get("render"):
        lines += [
            "",
            "render + validate (one haproxy.cfg, haproxy -c; every zone, named-checkzone, nsd-checkzone, kzonecheck)",
            f"{'services':>9} {'records':>8} {'seconds':>8} {'peak MB':>8}   parse  hap.render hap.check zone.render zone.checks",
        ]
        for r in results["render"]:
            p = r["parts_s"]
            checks = sum(v for k, v in p.items() if k.startswith("zone_check_"))
            lines.append(
                f"{r['services']:>9} {r['records']:>8} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f}   "
                f"{p['parse']:5.2f} {p['haproxy_render']:10.2f} {p['haproxy_check']:9.2f} {p['zone_render']:11.2f} {checks:11.2f}"
            )
    for key in ("failover", "recovery"):
        part = results.get(key) or {}
        if part.get("trials"):
            lines += [
                "",
                f"{key}: {part['trials']} trials, p50 {part['p50_s']:.2f} s, p95 {part['p95_s']:.2f} s, floor {part['floor_s']:.1f} s",
            ]
    if (results.get("peers") or {}).get("trials"):
        lines += ["", *peers.table_lines(results["peers"])]
    lines += _fault_lines(results.get("faults") or {})
    lines += _scale_lines(results.get("scale") or {})
    signing = (results.get("dnssec") or {}).get("signing") or []
    if signing:
        lines += [
            "",
            "dnssec: full signing and dnssec-verify; a failover's computation, signed vs unsigned",
            f"{'services':>9} {'records':>8} {'sign s':>8} {'verify s':>9} {'failover signed ms':>19} {'unsigned ms':>12} {'sigs':>5}",
        ]
        for r in signing:
            lines.append(
                f"{r['services']:>9} {r['records']:>8} {r['sign_full_s']:>8.1f} {r['verify_s']:>9.1f} "
                f"{r['failover_signed_s'] * 1000:>19.1f} {r['failover_unsigned_s'] * 1000:>12.1f} {r['failover_signatures']:>5}"
            )
    dnssec_failover = (results.get("dnssec") or {}).get("failover") or {}
    if dnssec_failover:
        lines += ["", "dnssec: failover of the rotation name, its zone signed beside unsigned"]
        for name in ("unsigned", "signed"):
            row = dnssec_failover.get(name) or {}
            f, r = row.get("failover") or {}, row.get("recovery") or {}
            if f.get("trials"):
                lines.append(
                    f"  {name:<9} failover p50 {f['p50_s']:.2f} s, p95 {f['p95_s']:.2f} s; "
                    f"recovery p50 {r['p50_s']:.2f} s, p95 {r['p95_s']:.2f} s ({f['trials']} trials)"
                )
    if results.get("noop_highstate"):
        other = {
            (r["role"], r["services"]): r for r in results.get("noop_highstate_with_autoload", [])
        }
        lines += [
            "",
            f"{'no-change highstate':<20} {'services':>8} {'seconds':>8} {'floor':>8} {'ratio':>6}   with Salt's module autoload: seconds, ratio",
        ]
        for r in results["noop_highstate"]:
            o = other.get((r["role"], r["services"]))
            tail = f"   {o['seconds']:>8.2f} {o['seconds'] / o['floor_seconds']:>6.1f}" if o else ""
            lines.append(
                f"{r['role']:<20} {r['services']:>8} {r['seconds']:>8.2f} {r['floor_seconds']:>8.2f} {r['seconds'] / r['floor_seconds']:>6.1f}{tail}"
            )
    if results.get("errors_measured"):
        ce = results["client_errors"]
        lines += [
            "",
            f"client errors: backend kill {ce['backend_kill']}, load balancer kill {ce['lb_kill']}",
        ]
    tls = results.get("tls") or {}
    if tls.get("renewals"):
        lines += [
            "",
            f"certificates (ACME DNS-01, Pebble): tls.issue -> every load balancer serving www and "
            f"shop {tls['issue_to_every_lb_s']:.1f} s",
        ]
        for i, r in enumerate(tls["renewals"], 1):
            lines.append(
                f"  renewal {i} under a handshake loop: {r['to_every_lb_s']:.1f} s to every load "
                f"balancer, {r['failed_handshakes']} of {r['handshakes']} handshakes failed"
            )
        for lb, r in sorted(tls.get("requests_per_s", {}).items()):
            lines.append(
                f"  {lb}: {r['http']:.0f} HTTP req/s, {r['https']:.0f} HTTPS req/s (ratio {r['ratio']:.2f})"
            )
    targets = _targets(results)
    if targets:
        lines += ["", "targets"]
        lines += [
            f"  {'MET   ' if ok else 'MISSED'} {name}: {figures}" for name, ok, figures in targets
        ]
    return "\n".join(lines)


def chart(results, path):
    """The figures of ``results`` as a PNG: latencies, render times, no-op highstates, client errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_peers = bool((results.get("peers") or {}).get("trials"))
    with_scale = bool((results.get("scale") or {}).get("sizes"))
    nrows = 2 + with_peers + with_scale
    fig, axes = plt.subplots(nrows, 2, figsize=(13, 4.5 * nrows), squeeze=False)
    fig.suptitle(
        f"make bench ({results.get('date', '')}, {results['machine']['cpus']} CPUs)", fontsize=13
    )

    ax = axes[0][0]
    for i, key in enumerate(("failover", "recovery")):
        part = results.get(key) or {}
        samples = part.get("samples_s") or []
        if not samples:
            continue
        ax.scatter([i] * len(samples), samples, alpha=0.6, label=f"{key}: trials")
        # (y, colour, style, label): the figures, the floor, and for the failover its targets.
        lines = [
            (part["p50_s"], "black", "solid", "p50" if i == 0 else None),
            (part["p95_s"], "black", "dotted", "p95" if i == 0 else None),
            (
                part["floor_s"],
                "green",
                "dashed",
                "floor (fall or rise x interval)" if i == 0 else None,
            ),
        ]
        if key == "failover":
            lines += [
                (part["floor_s"] + 1, "red", "dashed", "target p50 (floor + 1 s)"),
                (part["floor_s"] + 2, "red", "dotted", "target p95 (floor + 2 s)"),
            ]
        for y, colour, style, label in lines:
            ax.hlines(y, i - 0.3, i + 0.3, colors=colour, linestyles=style, label=label)
    ax.set_xticks(
        [0, 1],
        [
            "failover\n(LB dies -> every NS without it)",
            "recovery\n(LB healthy -> every NS with it)",
        ],
    )
    ax.set_ylabel("seconds")
    ax.set_ylim(bottom=0)
    ax.set_title("DNS failover latency")
    ax.legend(fontsize=7, loc="lower center", ncol=2)

    ax = axes[0][1]
    rows = [r for r in results.get("render", []) if r.get("services")]
    if rows:
        xs = [r["services"] for r in rows]
        parts = [
            ("parse", "schema"),
            ("haproxy_render", "haproxy render"),
            ("haproxy_check", "haproxy -c"),
            ("zone_render", "zone render"),
        ]
        bottom = [0.0] * len(rows)
        labels = [str(x) for x in xs]
        for key, label in parts:
            vals = [r["parts_s"].get(key, 0.0) for r in rows]
            ax.bar(labels, vals, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        checks = [
            sum(v for k, v in r["parts_s"].items() if k.startswith("zone_check_")) for r in rows
        ]
        ax.bar(labels, checks, bottom=bottom, label="3 zone checkers")
        ax.axhline(
            TARGET_RENDER_S, color="red", linestyle="dashed", label="target for 10,000 (5 s)"
        )
        for i, r in enumerate(rows):
            ax.annotate(
                f"{r['seconds']:.2f} s\n{r['peak_mb']:.0f} MB",
                (i, r["seconds"]),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xlabel("services")
        ax.set_ylabel("seconds")
        zone = next((r for r in results["render"] if not r.get("services")), None)
        extra = (
            f"; zone of {zone['records']:,} records: {zone['seconds']:.1f} s, {zone['peak_mb']:.0f} MB"
            if zone
            else ""
        )
        ax.set_title(f"render + validate{extra}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")

    ax = axes[1][0]
    rows = results.get("noop_highstate") or []
    if rows:
        other = {
            (r["role"], r["services"]): r for r in results.get("noop_highstate_with_autoload", [])
        }
        labels = [f"{'LB' if r['role'] == 'loadbalancer' else 'NS'} {r['services']}" for r in rows]
        xs = list(range(len(rows)))
        ax.bar(
            [x - 0.27 for x in xs],
            [r["seconds"] for r in rows],
            width=0.27,
            label="highstate, nothing to change",
        )
        if other:
            ax.bar(
                xs,
                [other.get((r["role"], r["services"]), {}).get("seconds", 0) for r in rows],
                width=0.27,
                label="the same, Salt's default autoload_dynamic_modules: True",
            )
        ax.bar(
            [x + 0.27 for x in xs],
            [r["floor_seconds"] for r in rows],
            width=0.27,
            label="Salt's floor (one test.nop)",
        )
        ax.plot(
            xs,
            [2 * r["floor_seconds"] for r in rows],
            "r_",
            markersize=22,
            label="target (2 x floor)",
        )
        ax.set_xticks(xs, labels, fontsize=8)
        ax.set_ylabel("seconds")
        ax.set_title(
            "no-change highstate (LB: load balancer, NS: nameserver; services)", fontsize=10
        )
        ax.legend(fontsize=7)

    ax = axes[1][1]
    ce = results.get("client_errors") or {}
    if results.get("errors_measured"):
        req = ce.get("requests", {})
        keys = [
            ("backend_kill", "stateless site,\nbackend dies"),
            ("shop_backend_kill", "stateful site,\nbackend dies"),
            ("lb_kill", "LB dies,\none attempt"),
            ("lb_kill_with_retry", "LB dies, client tries\nevery address"),
        ]
        vals = [ce.get(k, 0) for k, _ in keys]
        ax.bar(
            [label for _, label in keys],
            vals,
            color=["tab:green", "tab:blue", "tab:orange", "tab:green"],
        )
        for i, (k, _) in enumerate(keys):
            ax.annotate(
                f"{ce.get(k, 0)} of {req.get(k, 0)}",
                (i, vals[i]),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_ylabel("failed requests")
        ax.set_title("client-visible errors under a bounded load", fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    if with_peers:
        peers.draw(axes[2][0], axes[2][1], results["peers"])
    if with_scale:
        _draw_scale(axes[nrows - 1][0], axes[nrows - 1][1], results["scale"])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _draw_scale(ax_fail, ax_cost, scale):
    """Growth curves: failover per server and for the rotation name against the number of zones;
    the no-change highstate beside Salt's floor and the push's validation."""
    rows = [r for r in scale["sizes"] if "error" not in r]  # a failed size has no figures
    if not rows:
        return
    xs = [max(r["zones"], 1) for r in rows]
    labels = [str(r["zones"]) for r in rows]
    servers = sorted({k for r in rows for k in r.get("failover", {})})
    for server in servers:
        p50 = [r["failover"][server]["p50_s"] for r in rows]
        p95 = [r["failover"][server]["p95_s"] for r in rows]
        line = ax_fail.plot(xs, p50, marker="o", label=f"{server}: every zone, p50")[0]
        ax_fail.plot(xs, p95, marker="^", linestyle="dotted", color=line.get_color(), label="p95")
    ax_fail.plot(
        xs,
        [(r.get("failover_rotation_name") or {}).get("p95_s", 0) for r in rows],
        marker="s",
        color="black",
        label="the rotation name, p95",
    )
    floor = rows[0]["failover_rotation_name"]["floor_s"]
    ax_fail.axhline(floor, color="green", linestyle="dashed", label="floor (fall x interval)")
    ax_fail.axhline(floor + 1, color="red", linestyle="dashed", label="target p50 (floor + 1 s)")
    ax_fail.axhline(floor + 2, color="red", linestyle="dotted", label="target p95 (floor + 2 s)")
    ax_fail.set_xscale("log")
    ax_fail.set_xticks(xs, labels)
    ax_fail.set_xlabel("customer zones with their apex on the rotation")
    ax_fail.set_ylabel("seconds from the kill")
    ax_fail.set_ylim(bottom=0)
    ax_fail.set_title("failover at a hoster's size: every nameserver, every zone", fontsize=10)
    ax_fail.legend(fontsize=6, ncol=2)
    for server in servers:
        line = ax_cost.plot(
            xs,
            [r["noop"][server]["seconds"] for r in rows],
            marker="o",
            label=f"{server}: no-change highstate",
        )[0]
        ax_cost.plot(
            xs,
            [2 * r["noop"][server]["floor_seconds"] for r in rows],
            linestyle="dotted",
            color=line.get_color(),
            label="target (2 x Salt's floor)",
        )
    ax_cost.plot(
        xs,
        [r["push_validation"]["total_s"] for r in rows],
        marker="s",
        color="black",
        label="push: compile + validate, every minion",
    )
    ax_cost.axhline(60, color="red", linestyle="dashed", label="push target (60 s)")
    ax_cost.set_xscale("log")
    ax_cost.set_yscale("symlog", linthresh=1)
    ax_cost.set_xticks(xs, labels)
    ax_cost.set_xlabel("customer zones with their apex on the rotation")
    ax_cost.set_ylabel("seconds")
    ax_cost.set_title("the cost that grows with the platform", fontsize=10)
    ax_cost.legend(fontsize=6)


def _load_previous(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _empty_results():
    empty = {"trials": 0, "p50_s": 0.0, "p95_s": 0.0, "floor_s": 0.0}
    return {
        "failover": dict(empty),
        "recovery": dict(empty),
        "render": [],
        "noop_highstate": [],
        "client_errors": {"backend_kill": 0, "lb_kill": 0},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--part", action="append", choices=PARTS, help="run only this part (repeatable)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="render runs per size (the median is kept)"
    )
    parser.add_argument("--trials", type=int, default=10, help="failover and recovery trials")
    parser.add_argument(
        "--zones",
        type=int,
        nargs="+",
        default=list(ZONE_SIZES),
        help="customer zone counts of the scale part",
    )
    parser.add_argument(
        "--signing-worker",
        nargs=2,
        type=int,
        metavar=("SERVICES", "RECORDS"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--render-worker",
        nargs=2,
        type=int,
        metavar=("SERVICES", "RECORDS"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.render_worker:
        from harness import render

        print(json.dumps(render.measure(*args.render_worker)))
        return 0
    if args.signing_worker:
        from harness import signing

        print(json.dumps(signing.measure(*args.signing_worker)))
        return 0
    parts = args.part or list(PARTS)

    def stop(signum, frame):
        raise KeyboardInterrupt  # so every lab stops what it started, as on Ctrl-C

    signal.signal(signal.SIGTERM, stop)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    # A partial run keeps the other parts of the previous results.
    results = _empty_results()
    if set(parts) != set(PARTS):
        results.update(_load_previous(path))
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": host.python_version(),
        "load_before": os.getloadavg(),
        "labs": str(LABS),
    }
    started = time.monotonic()
    failures = {}

    def attempt(name, fn):
        """Run one part; a failure is logged and recorded, and the other parts still run."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - report it, measure the rest
            log(f"{name} FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            failures[name] = f"{type(exc).__name__}: {exc}"

    if "render" in parts:
        attempt("render", lambda: results.update(render=bench_render(args.repeat)))
    if {"failover", "errors", "peers"} & set(parts):
        attempt("platform", lambda: results.update(bench_platform(args.trials, parts)))
    if "faults" in parts:
        attempt(
            "faults",
            lambda: results.update(
                faults=faultbench.measure(min(args.trials, 6), log, parent=LABS)
            ),
        )
    if "scale" in parts:
        attempt("scale", lambda: results.update(scale=bench_scale(args.trials, args.zones)))
    if "dnssec" in parts:
        attempt("dnssec", lambda: results.update(dnssec=bench_dnssec(args.trials)))
    if "tls" in parts:
        attempt("tls", lambda: results.update(tls=bench_tls()))
    if "noop" in parts:
        attempt("noop", lambda: results.update(noop_highstate=bench_noop()))
        attempt(
            "noop with autoload",
            lambda: results.update(noop_highstate_with_autoload=bench_noop(autoload=True)),
        )
    results["failures"] = failures
    results["machine"]["load_after"] = os.getloadavg()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["date"] = time.strftime("%Y-%m-%d %H:%M")
    results["targets"] = [{"target": n, "met": ok, "figures": f} for n, ok, f in _targets(results)]
    problems = report.bench_problems(results, complete=set(parts) == set(PARTS))
    path.write_text(json.dumps(results, indent=2) + "\n")
    chart(results, OUT / "results.png")
    print(table(results))
    log(f"wrote {path.relative_to(REPO)} and {(OUT / 'results.png').relative_to(REPO)}")
    if problems:
        log("results.json does not have the promised shape: " + "; ".join(problems))
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
