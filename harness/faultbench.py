"""``make bench``'s ``faults`` part: what clients see under each fault of :mod:`harness.faults`,
on the example platform (:func:`harness.faults.platform_pillar`) with every host in its own
network namespace.

Per fault kind, a window of :data:`BEFORE` seconds without fault (the baseline, measured by the
same clients just before) then ``seconds`` with the fault; two kinds of clients browse the
stateless site meanwhile, each resolving the rotation name once, while everything is healthy,
and holding that answer for its TTL (300 s: the whole window), its addresses in one random order:

- a browser-like client tries every address of the answer in turn, each with a connect timeout
  of :data:`CONNECT_TIMEOUT` s;
- a one-address client tries only the first.

Each kind reports the requests after the fault, the failed ones (with up to three of what the
clients saw), and the latency added at p50 and p99 (the percentile after the fault minus the
same clients' just before). Besides: the failover after a power-off and after a
kill of a load balancer, ``trials`` each, time until every nameserver answers without it, against
the floor (``fall`` x ``interval``).
"""

import time

from harness import faults as faultlib
from harness.client import DnsWatch, Load, cached_picker, wait_answer
from harness.launcher import Lab, LabError
from harness.report import percentile
from harness.wait import wait_until

SUBNET = "198.18.18.0/24"
ROTATION = "http0.l.paphosting.nl"
WWW = "www.paphosting.nl"
CONNECT_TIMEOUT = 3.0
CLIENTS = 6  # of each kind, each its own answer order
BEFORE = 5.0  # seconds of each window before the fault: its baseline
RATE = 4.0  # requests per second per client


class Bench:
    def __init__(self, lab, say):
        self.lab = lab
        self.say = say
        self.faults = faultlib.Faults(lab)
        p = lab.platform
        self.lbs = sorted(p.loadbalancers)
        self.addresses = sorted(p.loadbalancers[lb].address for lb in self.lbs)
        self.port = p.loadbalancers[self.lbs[0]].http_port
        self.floor = p.health.fall * p.health.interval

    def address(self, lb):
        return self.lab.platform.loadbalancers[lb].address

    # --- restoring ---------------------------------------------------------------------------------

    def wait_rotation(self, want, timeout=120):
        wait_answer(self.lab.nameservers, ROTATION, want, timeout)

    def restart_haproxy(self, lb):
        res = self.lab.highstate([lb], sls="loadbalancer")
        if res[lb]["failed"]:
            raise RuntimeError(f"restarting haproxy on {lb}: {res[lb]['failed']}")

    def restart_webapp(self, web):
        res = self.lab.highstate([web], sls="webserver")
        if res[web]["failed"]:
            raise RuntimeError(f"restarting the webapps of {web}: {res[web]['failed']}")

    def wait_backend_up(self, web, timeout=60):
        wait_until(
            lambda: all(
                self.lab.haproxy_servers(lb)["www"][web].startswith("UP") for lb in self.lbs
            ),
            timeout,
            message=f"{web} up in every haproxy",
            interval=0.2,
            error=LabError,
        )

    # --- the clients -------------------------------------------------------------------------------

    def window(self, seconds, inject, before=BEFORE):
        """Both kinds of clients for ``before`` seconds without fault (the baseline), then
        ``inject()`` (returns the fault) and ``seconds`` more. Returns ``(figures, fault)``,
        the figures by client kind, of the requests after the injection against those before."""
        kinds = {}
        for retry in (True, False):
            kinds[retry] = [
                Load(
                    WWW,
                    self.port,
                    cached_picker(self.lab.nameservers, ROTATION, seed=100 * retry + i),
                    workers=1,
                    rate=RATE,
                    timeout=CONNECT_TIMEOUT,
                    retry=retry,
                )
                for i in range(CLIENTS)
            ]
        loads = kinds[True] + kinds[False]
        for load in loads:
            load.start()
        fault = None
        try:
            for load in loads:
                load.wait_requests(1, timeout=30)
            time.sleep(before)
            marks = {id(load): (len(load.latencies), time.monotonic()) for load in loads}
            fault = inject()
            time.sleep(seconds)
        finally:
            for load in loads:
                load.stop()
        figures = {
            "browser": self.figures(kinds[True], marks),
            "one_address": self.figures(kinds[False], marks),
        }
        return figures, fault

    @staticmethod
    def figures(loads, marks):
        """The requests after each load's mark against those before it."""
        before, after, failed, seen = [], [], 0, []
        for load in loads:
            n, t = marks[id(load)]
            before += load.latencies[:n]
            after += load.latencies[n:]
            late = [what for at, what in load.failures if at >= t]
            failed += len(late)
            seen += late[: 3 - len(seen)]
        out = {
            "requests": len(after),
            "failed": failed,
            "p50_ms": round(percentile(after, 0.5) * 1000, 1),
            "p99_ms": round(percentile(after, 0.99) * 1000, 1),
            "baseline_p50_ms": round(percentile(before, 0.5) * 1000, 1),
            "baseline_p99_ms": round(percentile(before, 0.99) * 1000, 1),
            "failures_seen": seen,
        }
        out["added_p50_ms"] = round(out["p50_ms"] - out["baseline_p50_ms"], 1)
        out["added_p99_ms"] = round(out["p99_ms"] - out["baseline_p99_ms"], 1)
        return out

    def kinds(self):
        """``{kind: (inject, restore)}``: each injects one fault and returns it; restore brings
        the platform back to full health after the fault is healed."""
        lb1, lb2, lb3 = self.lbs
        web1 = sorted(self.lab.platform.webservers)[0]
        ns1 = sorted(self.lab.platform.nameservers)[0]
        full = lambda: self.wait_rotation(self.addresses)  # noqa: E731
        return {
            "lb_kill": (
                lambda: self.faults.kill(lb1, "haproxy"),
                lambda: (self.restart_haproxy(lb1), full()),
            ),
            "lb_power_off": (lambda: self.faults.power_off(lb2), full),
            "backend_kill": (
                lambda: self.faults.kill(web1, "webapp"),
                lambda: (self.restart_webapp(web1), self.wait_backend_up(web1)),
            ),
            "backend_power_off": (
                lambda: self.faults.power_off(web1),
                lambda: self.wait_backend_up(web1),
            ),
            "watcher_lb_partition": (lambda: self.faults.partition(ns1, lb3), full),
            "lb_loss_30": (lambda: self.faults.loss(lb3, 30), full),
            "master_unreachable": (lambda: self.faults.master_unreachable("nl"), full),
        }

    def clients(self, seconds):
        out = {}
        for kind, (inject, restore) in self.kinds().items():
            self.lab.wait_idle()
            figures, fault = self.window(seconds, inject)
            fault.heal()
            out[kind] = {"fault": str(fault), **figures}
            self.say(
                f"faults: {fault}: browser {figures['browser']}; one address {figures['one_address']}"
            )
            restore()
        return out

    # --- the failover ------------------------------------------------------------------------------

    def failover(self, trials, kind):
        """``trials`` of ``kind`` (``power_off`` or ``kill``), each on the next load balancer in
        turn (each one's flap history stays within the damping): seconds until every nameserver
        answers without it."""
        samples = []
        for i in range(trials):
            lb = self.lbs[i % len(self.lbs)]
            # From a steady platform: no job (the last recovery's zone apply) still running.
            self.lab.wait_idle()
            want = [a for a in self.addresses if a != self.address(lb)]
            watch = DnsWatch(self.lab.nameservers, ROTATION, want)
            t0 = time.monotonic()
            fault = self.faults.power_off(lb) if kind == "power_off" else self.faults.kill(lb)
            at = watch.wait(60)
            fault.heal()
            if len(at) < len(self.lab.nameservers):
                raise RuntimeError(f"{fault}: not every nameserver dropped {lb} within 60 s")
            samples.append(max(at.values()) - t0)
            self.say(f"faults: {fault}: out of every answer after {samples[-1]:.2f} s")
            if kind == "kill":
                self.restart_haproxy(lb)
            self.wait_rotation(self.addresses)
        return {
            "trials": len(samples),
            "p50_s": round(percentile(samples, 0.5), 3),
            "p95_s": round(percentile(samples, 0.95), 3),
            "floor_s": float(self.floor),
            "samples_s": [round(x, 3) for x in samples],
        }


def measure(trials, say, seconds=15.0, subnet=SUBNET, parent=None):
    """The ``faults`` part of ``results.json`` (docs/bench.md); ``parent``: where the lab runs
    (``Lab(parent=...)``)."""
    lab = Lab(
        "bench-faults",
        parent=parent,
        pillar=faultlib.platform_pillar(),
        svn=False,
        netns=subnet,
        loop_interval=0.05,
        say=say,
    )
    with lab:
        res = lab.highstate(list(lab.minions))
        failed = {m: r["failed"] for m, r in res.items() if r["failed"]}
        if failed:
            raise RuntimeError(f"highstate failed: {failed}")
        bench = Bench(lab, say)
        bench.wait_rotation(bench.addresses)
        out = {
            "connect_timeout_s": CONNECT_TIMEOUT,
            "clients_per_kind": CLIENTS,
            "window_s": seconds,
            "power_off_failover": bench.failover(trials, "power_off"),
            "kill_failover": bench.failover(trials, "kill"),
        }
        out["clients"] = bench.clients(seconds)
        return out
