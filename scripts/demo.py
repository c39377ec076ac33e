#!/usr/bin/env python3
"""``make demo``: the whole platform on 127.0.0.0/8, and a scenario narrated as a timeline.

Starts Subversion, two salt-masters (NL, CH) and eight salt-minions (2 load balancers, 3
nameservers: BIND, NSD, Knot, 3 webservers) as plain processes under ``build/demo/``
(``harness/launcher.py``), then:

 1. starts the platform;
 2. an admin commits the example pillar to Subversion and pushes it from NL (validated, made
    live, applied canary first); CH follows on its own;
 3. a second highstate everywhere changes nothing;
 4. a client resolves ``http0.l.paphosting.nl`` (and the sites) through every nameserver;
 5. it browses the stateless site ``www.paphosting.nl`` with a cookie jar: any webserver answers;
 6. and the stateful site ``shop.paphosting.nl``: always the same webserver, through either load
    balancer, the session's counter going up;
 7. the shop's primary webserver dies under load: haproxy fails over, no stateless request fails;
 8. a load balancer dies: the nameservers drop it (the time is measured), clients go on;
 9. it comes back: the nameservers hand it out again;
    (as root with nftables, every host in its own network namespace: the other load balancer
    loses power, no reset: the nameservers drop it, clients trying every address go on;
    ``--loopback`` runs on 127.0.0.0/8 without this step)
10. master NL stops: the other load balancer dies and CH alone fails over; it comes back;
11. a bad commit is pushed (through CH) and refused, nothing changes; the revert is pushed;
12. NL comes back and converges on CH's rotation and revision by itself;
13. everything is restored: the webserver, the shop's manual failback (run on CH, recorded on
    both masters), every answer;
14. HTTPS: Pebble (the ACME test CA) validates DNS-01 against our own nameservers; ``tls.issue``
    gets certificates for www and shop, both load balancers serve them (curl, HTTP/2, the chain
    verified against Pebble's root only), the shop's cookie sticks over HTTPS;
15. a renewal forced under HTTPS load: the certificate is swapped, no request fails;
16. everything is stopped, and nothing is left running.

Writes ``build/demo/report.json`` (shape in docs/demo.md); exits 0 only when every step passed.
"""

import copy
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import client, netns, processes, report  # noqa: E402
from harness import faults as faultlib  # noqa: E402
from harness.launcher import Events, Lab, LabError  # noqa: E402
from harness.timeline import Abort, Timeline  # noqa: E402
from harness.wait import wait_until  # noqa: E402

OUT = REPO / "build" / "demo"
PEBBLE = ("127.0.7.1", 14000)  # the ACME test CA: ACME on this port, its management API next
ROTATION = "http0.l.paphosting.nl"
WWW = "www.paphosting.nl"
SHOP = "shop.paphosting.nl"
EVENT_PREFIXES = ("salt/beacon/", "paphosting/", "salt/job/")
# The demo's hosts, each in its own network namespace (when root and nftables are here).
SUBNET = "198.18.19.0/24"


class Demo:
    def __init__(self, timeline, subnet=None):
        self.tl = timeline
        self.lab = Lab(
            "demo", say=lambda m: timeline.say(m), prometheus=True, netns=subnet, acme=PEBBLE
        )
        self.faults = faultlib.Faults(self.lab)
        p = self.lab.platform
        self.p = p
        self.lbs = sorted(p.loadbalancers)
        self.addr = {lb: p.loadbalancers[lb].address for lb in self.lbs}
        self.port = p.loadbalancers[self.lbs[0]].http_port
        self.floor = p.health.fall * p.health.interval
        self.shop = p.services["shop"]
        self.primary = next(s.name for s in self.shop.servers if s.role == "primary")
        self.backup = next(s.name for s in self.shop.servers if s.role == "backup")
        self.client_errors = 0
        self.connect_failures = 0
        self.latencies = {}
        self.events = {}
        self.good_rev = None
        self.shop_browser = client.Browser(SHOP, self.port)
        self.ctx = None

    # --- helpers -------------------------------------------------------------------------------

    def short(self, minion):
        return minion.split(".")[0]

    def watch_events(self, master):
        if master in self.events:
            self.events[master].stop()
        self.events[master] = self.lab_events(master)

    def lab_events(self, master):
        return Events(self.lab.masters[master], EVENT_PREFIXES)

    def answers(self, name=ROTATION):
        return client.resolve_all(self.lab.nameservers, name)

    def dns_watch(self, want):
        """Start watching every nameserver's answer for the rotation name (see :meth:`dns_result`)."""
        return client.DnsWatch(self.lab.nameservers, ROTATION, want)

    def dns_result(self, step, watch, t0, what, timeout=60):
        """Narrate when each nameserver first answered ``watch.want``, counted from ``t0``; the
        seconds until the last one. Fails the step when one did not within ``timeout``."""
        at = watch.wait(timeout)
        for name, t in sorted(at.items(), key=lambda kv: kv[1]):
            ns = self.p.nameservers[name]
            step.say(
                f"{self.short(name)} ({ns.server}) answers {ROTATION} = {', '.join(sorted(watch.want))}: {t - t0:.2f} s after {what}"
            )
        missing = sorted({n.name for n in self.lab.nameservers} - set(at))
        if missing:
            step.fail(
                f"{', '.join(missing)} still answer {[watch.last.get(m) for m in missing]} {timeout} s after {what}"
            )
        return max(at.values()) - t0

    def narrate_failover_events(self, step, master, t0):
        """What the masters' event bus saw since ``t0``: the watchers' reports, the decision."""
        events = self.events.get(master)
        if events is None:
            return
        for dt, tag, data in events.since(t0):
            if tag.endswith("/http_health/transition"):
                text = data.get("report")
                try:
                    body = json.loads(text)
                    states = ", ".join(
                        f"{self.short(lb)} {v['state']}"
                        for lb, v in sorted(body["lbs"].items())
                        if lb in body.get("changed", [])
                    )
                    step.say(
                        f"  +{dt:.2f} s  watcher {self.short(body['watcher'])} reports {states} (beacon event, on {master.upper()})"
                    )
                except (TypeError, ValueError, KeyError):
                    step.say(f"  +{dt:.2f} s  {tag}")
            elif tag == "paphosting/rotation/changed":
                members = "; ".join(
                    f"{n} = {', '.join(self.short(m) for m in c['members'])}"
                    for n, c in data.get("changes", {}).items()
                )
                step.say(
                    f"  +{dt:.2f} s  {str(data.get('master', master)).upper()} decides version {data.get('version')}: {members}, applying to the nameservers"
                )
            elif tag == "paphosting/rotation/rejected":
                step.say(f"  +{dt:.2f} s  {master.upper()} refused a report: {data.get('reason')}")

    def narrate_drift(self, step, t0):
        """Scheduled drift-correction highstates that returned since ``t0`` (to either master),
        one line for those that had nothing to correct, one per minion that corrected something."""
        quiet, corrected = set(), {}
        for events in self.events.values():
            for _dt, _tag, data in events.since(t0, "salt/job/"):
                if data.get("fun") != "drift.highstate" or "return" not in data:
                    continue
                minion = self.short(str(data.get("id")))
                ret = data.get("return")
                changed = ret.get("changed") if isinstance(ret, dict) else None
                if changed:
                    corrected[minion] = ", ".join(
                        str(c.get("id", c)) if isinstance(c, dict) else str(c) for c in changed
                    )
                else:
                    quiet.add(minion)
        if quiet - set(corrected):
            step.say(
                f"  (the scheduled drift correction ran a highstate on {', '.join(sorted(quiet - set(corrected)))}: nothing to correct)"
            )
        for minion, what in sorted(corrected.items()):
            step.say(f"  (the scheduled drift correction on {minion} corrected: {what})")

    def highstate(self, step, minions, master=None, sls=None):
        t0 = time.monotonic()
        res = self.lab.highstate(minions, master=master, sls=sls)
        failed = {m: r["failed"] for m, r in res.items() if r["failed"]}
        changed = {m: r["changed"] for m, r in res.items() if r["changed"]}
        what = f"state.apply {sls}" if sls else "highstate"
        step.say(
            f"{what} on {', '.join(self.short(m) for m in sorted(minions))} through {(master or self.lab.master().name).upper()}: "
            f"{sum(map(len, changed.values()))} changes, {sum(map(len, failed.values()))} failures ({time.monotonic() - t0:.1f} s)"
        )
        for m, ids in sorted(changed.items()):
            step.note(f"{self.short(m)} changed {', '.join(ids)}")
            step.timeline.say(f"  {self.short(m)}: changed {', '.join(ids)}")
            for sid in ids:
                detail = res[m]["details"].get(sid, "")
                if detail:
                    step.timeline.say(f"    {sid}: {detail}")
        for m, items in sorted(failed.items()):
            step.say(f"  {self.short(m)}: FAILED {'; '.join(f'{sid}: {c}' for sid, c in items)}")
        if failed:
            step.fail(f"{what} failed on {', '.join(sorted(failed))}")
        return changed

    def browse_shop(self, step, lb, expect_server=None, expect_count=None):
        answer = self.shop_browser.get(self.addr[lb])
        step.say(
            f"GET http://{SHOP}/ {answer} (cookie {self.shop.cookie_name}={answer.cookies.get(self.shop.cookie_name, '-')})"
        )
        if expect_server is not None and answer.server != expect_server:
            step.check(False, f"expected {expect_server}, got {answer.server}")
        if expect_count is not None and answer.count != expect_count:
            step.check(
                False, f"expected request #{expect_count} of the session, got #{answer.count}"
            )
        return answer

    def rotation_of(self, master):
        """``(version, {rotation: sorted members})`` held by ``master``."""
        show = self.lab.run("rotation.show", master=master)
        members = {n: sorted(r["members"]) for n, r in show["rotations"].items()}
        return show["version"], members

    def same_rotation(self, step):
        """Both masters hand out the same members; a different version number is noted."""
        nl, ch = self.rotation_of("nl"), self.rotation_of("ch")
        if nl[1] == ch[1] and nl[0] != ch[0]:
            step.note(
                f"the masters agree on the members but not on the version number (NL {nl[0]}, CH {ch[0]})"
            )
        return nl[1] == ch[1], nl, ch

    def revision_of(self, master):
        return (self.lab.run("svnpillar.revision", master=master) or {}).get("revision")

    # --- the steps -----------------------------------------------------------------------------

    def start(self, step):
        self.lab.start()
        for m in self.lab.masters:
            self.watch_events(m)

    def push(self, step):
        files = self.lab.pillar_files()
        rev = self.lab.commit(files, "the example platform")
        step.say(
            f"an admin commits pillar/top.sls and pillar/paphosting.sls (the example platform): r{rev}"
        )
        step.say(
            f"salt-run svnpillar.push on NL: validate r{rev} (schema, haproxy -c, zone checkers), make it live, apply canary first"
        )
        res = self.lab.push("nl")
        for line in res.stdout.strip().splitlines():
            step.timeline.say(f"  | {line.strip()}")
        if res.returncode != 0:
            step.fail(
                f"the push failed (exit status {res.returncode}): {(res.stdout + res.stderr).strip()[-1500:]}"
            )
        step.note(res.stdout.strip().splitlines()[0] if res.stdout.strip() else "pushed")
        self.good_rev = rev
        t0 = time.monotonic()
        wait_until(
            lambda: self.revision_of("ch") == rev,
            120,
            message=f"CH to make r{rev} live",
            interval=0.2,
            error=LabError,
        )
        step.say(
            f"CH made r{rev} live by itself (its svnpillar.sync schedule, every {self.lab.sync_seconds} s here): {time.monotonic() - t0:.1f} s"
        )
        t0 = time.monotonic()
        self.wait_backends_up()
        step.say(
            f"both haproxies see every webserver UP (their health checks: inter 2 s, rise 2): {time.monotonic() - t0:.1f} s"
        )

    def wait_backends_up(self, timeout=60):
        def all_up():
            for lb in self.lbs:
                for servers in self.lab.haproxy_servers(lb).values():
                    if not all(status.startswith("UP") for status in servers.values()):
                        return False
            return True

        wait_until(
            all_up,
            timeout,
            message="every backend server UP on every load balancer",
            interval=0.2,
            error=LabError,
        )

    def idempotent(self, step):
        changed = self.highstate(step, self.lab.minions, master="nl")
        step.check(
            not changed,
            "a second highstate changes nothing"
            if not changed
            else f"a second highstate changed {changed}",
        )

    def resolve(self, step):
        want = sorted(self.addr.values())
        for name in (ROTATION, WWW, SHOP):
            for ns in self.lab.nameservers:
                got, ttl = client.resolve(ns, name)
                step.say(
                    f"{self.short(ns.name)} ({ns.server}, {ns.address}:{ns.port}): {name} -> {', '.join(got or ['no answer'])} (TTL {ttl})"
                )
                if got != want:
                    step.check(
                        False,
                        f"{self.short(ns.name)} does not hand out every load balancer for {name}",
                    )
                if name == ROTATION and ttl != self.p.rotations[ROTATION].ttl:
                    step.check(False, f"TTL {ttl}, expected {self.p.rotations[ROTATION].ttl}")
        step.note(f"every nameserver answers {ROTATION} = {', '.join(want)}")

    def stateless(self, step):
        browser = client.Browser(WWW, self.port)
        servers = []
        for i in range(6):
            lb = self.lbs[i % len(self.lbs)]
            answer = browser.get(self.addr[lb])
            step.say(f"GET http://{WWW}/ {answer}")
            if not answer.ok:
                step.check(False, f"request {i + 1} failed")
            servers.append(answer.server)
        step.check(
            len(set(servers)) > 1,
            f"balanced over {', '.join(sorted(set(filter(None, servers))))}: no stickiness needed",
        )

    def stateful(self, step):
        counts = []
        for i in range(6):
            lb = self.lbs[i % len(self.lbs)]
            answer = self.browse_shop(step, lb, expect_server=self.primary, expect_count=i + 1)
            counts.append(answer.count)
        step.check(
            counts == list(range(1, 7)),
            f"one session on {self.short(self.primary)} (the primary) across both load balancers, counter 1..6",
        )

    def backend_kill(self, step):
        www = client.Load(
            WWW,
            self.port,
            client.rotating([self.addr[lb] for lb in self.lbs]),
            workers=2,
            rate=10,
            retry=False,
        )
        shop = client.Load(
            SHOP,
            self.port,
            client.rotating([self.addr[lb] for lb in self.lbs]),
            workers=2,
            rate=5,
            retry=False,
        )
        with www, shop:
            www.wait_requests(20)
            t0 = time.monotonic()
            fault = self.faults.kill(self.primary, "webapp")
            step.say(f"{fault} while 4 clients browse www and shop (SIGKILL)")

            def down_everywhere():
                for lb in self.lbs:
                    for backend in ("www", "shop"):
                        if not self.lab.haproxy_servers(lb)[backend][self.primary].startswith(
                            "DOWN"
                        ):
                            return False
                return True

            wait_until(
                down_everywhere,
                30,
                message=f"both load balancers to mark {self.primary} down",
                interval=0.1,
                error=LabError,
            )
            step.say(
                f"both haproxies mark {self.short(self.primary)} DOWN in www and shop: {time.monotonic() - t0:.2f} s after the kill"
            )
            www.wait_requests(20)
        step.say(f"www under load: {www.summary()}")
        step.say(f"shop under load: {shop.summary()}")
        for _, what in (www.failures + shop.failures)[:5]:
            step.note(f"failed: {what}")
        self.client_errors += www.errors + shop.errors
        step.check(
            www.errors == 0,
            f"no stateless request failed while {self.short(self.primary)} died ({www.errors} failed)",
        )
        # The browser of step 6 now lands on the backup: its session there starts over.
        self.browse_shop(step, self.lbs[0], expect_server=self.backup, expect_count=1)
        self.browse_shop(step, self.lbs[1], expect_server=self.backup, expect_count=2)
        step.say(
            f"the shop's sessions moved to {self.short(self.backup)} (the backup) and stick there on both load balancers"
        )

    def browsing(self, picker, rate):
        """Two browser-like clients of www (every address in turn), ``rate`` requests/s each."""
        return client.Load(WWW, self.port, picker, workers=2, rate=rate, retry=True)

    def lb_kill(self, step, lb, master_names, key):
        """Kill ``lb``'s haproxy; every nameserver must drop it. Returns the latency."""
        other = [self.addr[x] for x in self.lbs if x != lb]
        load = self.browsing(client.dns_picker(self.lab.nameservers, ROTATION), 10)
        with load:
            load.wait_requests(10)
            watch = self.dns_watch(other)
            t0 = time.monotonic()
            fault = self.faults.kill(lb, "machine")
            step.say(
                f"{self.short(lb)} ({self.addr[lb]}) dies: SIGKILL its salt-minion and haproxy ({fault})"
            )
            latency = self.dns_result(step, watch, t0, f"the kill of {self.short(lb)}")
            load.wait_requests(10)
        for m in master_names:
            self.narrate_failover_events(step, m, t0)
        self.latencies[key] = latency
        step.measure(f"{key}_s", round(latency, 2))
        within = "within" if latency <= self.floor + 2 else "OVER"
        step.say(
            f"every nameserver dropped {self.short(lb)} {latency:.2f} s after it died (detection floor fall x interval = {self.floor:.0f} s; {within} floor + 2 s)"
        )
        step.say(f"clients resolving {ROTATION} through the nameservers: {load.summary()}")
        self.client_errors += load.errors
        self.connect_failures += load.first_failed
        versions = {}
        for m in master_names:
            versions[m] = self.rotation_of(m)
            step.say(
                f"{m.upper()}: rotation version {versions[m][0]}, {ROTATION} = {', '.join(self.short(x) for x in versions[m][1][ROTATION])}"
            )
            step.check(lb not in versions[m][1][ROTATION], f"{m.upper()} took {self.short(lb)} out")
        if len(versions) > 1:
            step.check(
                len({json.dumps(v, sort_keys=True) for v in versions.values()}) == 1,
                "both masters hold the same rotation and version",
            )
        return latency

    def lb_back(self, step, lb, master, key):
        lbc = self.p.loadbalancers[lb]
        watch = client.UpWatch(lbc.address, lbc.http_port, lbc.health_path)
        dns = self.dns_watch(self.addr.values())
        t0 = time.monotonic()
        self.lab.boot_machine(lb)
        step.say(
            f"{self.short(lb)} boots: its salt-minion answers the masters again ({time.monotonic() - t0:.1f} s)"
        )
        changed = self.highstate(step, [lb], master=master)
        up = watch.wait(60)
        if up is None:
            step.fail(f"haproxy on {self.short(lb)} does not answer {lbc.health_path}")
        how = (
            "its highstate started it"
            if changed.get(lb)
            else "the scheduled drift correction, run at boot, had started it"
        )
        step.say(
            f"haproxy on {self.short(lb)} answers {lbc.health_path} again, {up - t0:.1f} s after the boot ({how})"
        )
        latency = self.dns_result(step, dns, up, f"{self.short(lb)} came back")
        self.narrate_failover_events(step, master, up)
        self.latencies[key] = latency
        step.measure(f"{key}_s", round(latency, 2))
        step.say(
            f"every nameserver hands out {self.short(lb)} again {latency:.2f} s after it came back (floor rise x interval = {self.p.health.rise * self.p.health.interval:.0f} s)"
        )

    def lb_power_off(self, step):
        """A load balancer loses power: its packets vanish, nobody gets a reset (network
        namespaces only). Browser-like clients holding their DNS answer, and the nameservers."""
        lb = self.lbs[1]
        other = [self.addr[x] for x in self.lbs if x != lb]
        load = self.browsing(client.cached_picker(self.lab.nameservers, ROTATION), 5)
        with load:
            load.wait_requests(10)
            watch = self.dns_watch(other)
            t0 = time.monotonic()
            fault = self.faults.power_off(lb)
            step.say(
                f"{self.short(lb)} ({self.addr[lb]}) loses power: every packet to and from it dropped, no reset"
            )
            latency = self.dns_result(step, watch, t0, f"the power cut of {self.short(lb)}")
            load.wait_requests(10)
        self.narrate_failover_events(step, "nl", t0)
        self.latencies["lb_power_off"] = latency
        step.measure("lb_power_off_s", round(latency, 2))
        step.say(
            f"every nameserver dropped {self.short(lb)} {latency:.2f} s after the power cut (floor {self.floor:.0f} s)"
        )
        slow = sum(x > 1.0 for x in load.latencies)
        step.say(
            f"browser-like clients holding their answer for its TTL: {load.summary()}; {slow} requests "
            f"waited for a connect timeout on the dead address first (the client-side floor: the TTL)"
        )
        self.client_errors += load.errors
        step.check(
            load.errors == 0, f"no request failed for a client trying every address ({load.errors})"
        )
        dns = self.dns_watch(self.addr.values())
        fault.heal()
        t1 = time.monotonic()
        step.say(f"{self.short(lb)} has power again")
        back = self.dns_result(step, dns, t1, f"{self.short(lb)} came back")
        step.say(f"every nameserver hands out {self.short(lb)} again {back:.2f} s later")

    def master_down(self, step):
        nl = self.lab.masters["nl"]
        waited = self.lab.wait_idle()
        step.say(f"every minion is idle ({waited:.1f} s): no job of NL is left half-done")
        self.events.pop("nl").stop()
        nl.stop()
        step.say("salt-master NL stopped (SIGTERM): CH is alone")
        lb = self.lbs[1]
        self.lb_kill(step, lb, ["ch"], "lb_failover_ch_only")
        self.browse_shop(step, self.lbs[0], expect_server=self.backup)
        self.lb_back(step, lb, "ch", "lb_recovery_ch_only")

    def bad_commit(self, step):
        live_before = self.revision_of("ch")
        cfg_before = {lb: self.lab.file_text(lb, "/etc/haproxy/haproxy.cfg") for lb in self.lbs}
        bad = copy.deepcopy(self.lab.pillar)
        bad["services"]["www"]["port"] = 70000
        rev = self.lab.commit(self.lab.pillar_files(bad), "www on port 70000 (a typo)")
        step.say(f"an admin commits a typo, services:www:port 70000: r{rev}")
        res = self.lab.push("ch")
        text = (res.stdout + res.stderr).strip()
        for line in text.splitlines()[:8]:
            step.timeline.say(f"  | {line.strip()}")
        step.note(" / ".join(line.strip() for line in text.splitlines()[:3]))
        step.check(
            res.returncode != 0,
            f"salt-run svnpillar.push (on CH) refused r{rev} (exit status {res.returncode})",
        )
        step.check(
            "paphosting.sls" in text and "paphosting:services:www:port" in text,
            "the refusal names the file and the pillar key",
        )
        live_after = self.revision_of("ch")
        step.check(live_after == live_before, f"CH still serves r{live_after}")
        unchanged = all(
            self.lab.file_text(lb, "/etc/haproxy/haproxy.cfg") == cfg_before[lb] for lb in self.lbs
        )
        step.check(unchanged, "every haproxy.cfg is unchanged")
        rev = self.lab.commit(self.lab.pillar_files(), "revert the typo")
        step.say(f"the admin reverts it: r{rev}, and pushes it from CH")
        res = self.lab.push("ch")
        out = (res.stdout + (res.stderr if res.returncode else "")).strip().splitlines()
        for line in out if res.returncode else out[:1]:
            step.timeline.say(f"  | {line.strip()}")
        step.check(
            res.returncode == 0,
            f"r{rev} pushed through CH and applied (exit status {res.returncode})",
        )
        self.good_rev = rev

    def master_back(self, step):
        nl = self.lab.masters["nl"]
        t0 = time.monotonic()
        nl.start()
        nl.wait_ready()
        self.watch_events("nl")
        self.lab.wait_minions(masters=[nl], timeout=180)
        step.say(
            f"salt-master NL started; every minion answers it again: {time.monotonic() - t0:.1f} s"
        )
        wait_until(
            lambda: self.revision_of("nl") == self.good_rev,
            120,
            message=f"NL to make r{self.good_rev} live",
            interval=0.2,
            error=LabError,
        )
        step.say(
            f"NL serves r{self.good_rev} (its svnpillar.sync ran on start): {time.monotonic() - t0:.1f} s"
        )
        wait_until(
            lambda: self.same_rotation(step)[0],
            120,
            message="NL to hand out what CH hands out",
            interval=1,
            error=LabError,
        )
        _, nl, ch = self.same_rotation(step)
        step.say(
            f"NL hands out what CH hands out ({ROTATION} = {', '.join(self.short(x) for x in nl[1][ROTATION])}): {time.monotonic() - t0:.1f} s, without any command"
        )
        if nl[0] != ch[0]:
            step.say(
                f"note: the rotation version numbers differ, NL {nl[0]} and CH {ch[0]} (NL missed the changes made while it was down)"
            )

    def restore(self, step):
        self.highstate(step, [self.primary], master="nl")
        wait_until(
            lambda: all(
                self.lab.haproxy_servers(lb)["shop"][self.primary].startswith("UP")
                for lb in self.lbs
            ),
            60,
            message=f"{self.primary} up on both load balancers",
            interval=0.2,
            error=LabError,
        )
        step.say(f"{self.short(self.primary)} is UP again on both load balancers")
        self.browse_shop(step, self.lbs[0], expect_server=self.backup)
        step.say(f"the shop stays on {self.short(self.backup)}: its failback is manual")
        # The operator's failback, on CH: it runs on every load balancer and NL records it too.
        ret = self.lab.run("rotation.failback", "shop", master="ch")
        step.say(f"salt-run rotation.failback shop (on CH): {ret.get('comment')}")
        step.check(
            ret.get("result") is True and sorted(ret.get("done", {})) == sorted(self.lbs),
            "the failback ran on every load balancer",
        )

        def nl_knows():
            shown = self.lab.run("rotation.show", master="nl")
            return any(
                a["kind"] == "failback" and a["target"] == "shop" for a in shown.get("actions", [])
            )

        wait_until(nl_knows, 30, message="NL to record CH's failback", interval=0.5, error=LabError)
        step.say("NL's rotation.status lists it too: operator actions hold on both masters")
        self.browse_shop(step, self.lbs[1], expect_server=self.primary, expect_count=1)
        self.browse_shop(step, self.lbs[0], expect_server=self.primary, expect_count=2)
        want = sorted(self.addr.values())
        answers = self.answers()
        step.check(
            all(a == want for a in answers.values()),
            f"every nameserver answers {ROTATION} = {', '.join(want)}",
        )
        same, nl, ch = self.same_rotation(step)
        step.check(same, f"NL and CH hand out the same members (versions NL {nl[0]}, CH {ch[0]})")
        self.lab.wait_minions(timeout=60)
        step.say(f"all {len(self.lab.minions)} minions answer both masters")

    # --- HTTPS: certificates through ACME DNS-01 on our own nameservers (docs/tls.md) ---------

    def https_port(self, lb):
        return self.p.loadbalancers[lb].https_port

    def served(self, lb, host, ctx):
        """``(answer, leaf fingerprint)`` of one HTTPS request through ``lb`` for ``host``."""
        answer = client.Browser(host, self.https_port(lb), ctx).get(self.addr[lb])
        return answer, answer.certificate

    def https_issue(self, step):
        lab = self.lab
        step.say(
            f"Pebble, the ACME test CA, runs on {lab.pebble.directory} since the start, "
            "validating DNS-01 against our own NSD (its -dnsserver)"
        )
        pillar = lab.acme_pillar(email="hostmaster@paphosting.nl")
        rev = lab.commit(lab.pillar_files(pillar), "HTTPS: certificates from the ACME CA")
        step.say(
            f"an admin adds paphosting:acme (the CA's directory, every service) and the test CA's "
            f"root to paphosting:tls:trusted_roots: r{rev}, pushed from NL"
        )
        res = lab.push("nl")
        if res.returncode != 0:
            step.fail(f"the push failed: {(res.stdout + res.stderr).strip()[-1500:]}")
        lab.pillar = pillar
        self.good_rev = rev
        root = OUT / "pebble-root.pem"
        root.write_text(lab.pebble.root())
        self.ctx = client.tls_context(root.read_text())
        t0 = time.monotonic()
        step.say(
            "salt-run tls.issue on NL: order, DNS-01 on every nameserver, validate, commit encrypted, push"
        )
        ret = lab.run("tls.issue", master="nl", timeout=600)
        for line in str(ret.get("comment", ret)).splitlines():
            step.timeline.say(f"  | {line}")
        if not ret.get("result"):
            step.fail("tls.issue failed")
        fingerprints = {}
        for service, host in (("www", WWW), ("shop", SHOP)):
            for lb in self.lbs:
                got = wait_until(
                    lambda lb=lb, host=host: self.served(lb, host, self.ctx)[1],
                    120,
                    message=f"{lb} to serve {host} over HTTPS",
                    interval=0.2,
                    error=LabError,
                )
                fingerprints.setdefault(service, set()).add(got)
        took = time.monotonic() - t0
        step.measure("issuance_to_every_lb_s", round(took, 1))
        step.say(f"both load balancers serve www and shop over HTTPS: {took:.1f} s after tls.issue")
        for service, fps in fingerprints.items():
            step.check(
                len(fps) == 1,
                f"{service}: the same certificate on both load balancers ({', '.join(fps)[:30]}...)",
            )
        for host in (WWW, "paphosting.nl", SHOP):
            for lb in self.lbs:
                got = client.curl_h2(self.addr[lb], self.https_port(lb), host, root)
                step.say(
                    f"curl --http2 --cacert pebble-root.pem https://{host}:{self.https_port(lb)}/ via {self.short(lb)}: HTTP/{got}"
                )
                step.check(got == "2 200", f"{host} via {self.short(lb)}: valid chain, HTTP/2, 200")
        browser = client.Browser(SHOP, self.https_port(self.lbs[0]), self.ctx)
        servers = {browser.get(self.addr[lb]).server for lb in self.lbs + self.lbs}
        step.check(
            len(servers) == 1,
            f"the shop's HTTPS session sticks to {', '.join(map(str, servers))} across both load balancers",
        )
        plain = client.http_get(self.addr[self.lbs[0]], self.port, "/", host=WWW)
        step.check(
            plain.status == 301 and plain.headers.get("Location", "").startswith("https://"),
            f"plain HTTP answers {plain.status} -> {plain.headers.get('Location')}",
        )
        status = lab.salt_run("tls.status", master="ch")
        for line in status.stdout.rstrip().splitlines():
            step.timeline.say(f"  | {line}")
        step.check(
            status.returncode == 0 and "Pebble" in status.stdout,
            "salt-run tls.status on CH: the table",
        )

    def https_renew(self, step):
        lab = self.lab
        load = client.Load(
            WWW,
            self.https_port(self.lbs[0]),
            client.rotating([self.addr[lb] for lb in self.lbs]),
            workers=2,
            rate=10,
            retry=False,
            tls=self.ctx,
        )
        old = self.served(self.lbs[0], WWW, self.ctx)[1]
        with load:
            load.wait_requests(20)
            t0 = time.monotonic()
            step.say(
                "salt-run tls.issue service=www force=True on NL while 2 clients browse https://www.paphosting.nl/"
            )
            ret = lab.run("tls.issue", "service=www", "force=True", master="nl", timeout=600)
            if not ret.get("result"):
                step.fail(f"tls.issue failed: {ret}")
            for lb in self.lbs:
                wait_until(
                    lambda lb=lb: self.served(lb, WWW, self.ctx)[1] not in (None, old),
                    120,
                    message=f"{lb} to serve the renewed certificate",
                    interval=0.2,
                    error=LabError,
                )
            took = time.monotonic() - t0
            load.wait_requests(20)
        step.measure("renewal_to_every_lb_s", round(took, 1))
        step.say(
            f"both load balancers serve the renewed certificate {took:.1f} s after the request"
        )
        step.say(
            f"https://www.paphosting.nl under load: {load.summary()}; certificates seen: {len(load.certificates)}"
        )
        self.client_errors += load.errors
        step.check(load.errors == 0, f"no request failed during the renewal ({load.errors} failed)")
        step.check(
            len(load.certificates) == 2, "the clients saw the old certificate, then the new one"
        )


def stopped_check(tl, demo):
    with tl.step("everything is stopped") as step:
        for line in demo.lab.stop():
            step.say(line)
        left = [(pid, cmd) for pid, cmd in _processes_under(demo.lab.base)]
        step.check(
            not left,
            f"no process of the demo is left running{'' if not left else ': ' + str(left[:5])}",
        )


def _processes_under(base):
    mark = str(base)
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = processes.cmdline(int(entry.name))
            if mark in cmd and int(entry.name) != os.getpid():
                yield int(entry.name), cmd


STEPS = (
    ("the platform starts: svnserve, 2 salt-masters, 8 salt-minions", "start", True),
    ("the example pillar is committed to Subversion and pushed from NL", "push", True),
    ("a second highstate everywhere changes nothing", "idempotent", False),
    (f"a client resolves {ROTATION} through every nameserver", "resolve", False),
    (f"the stateless site {WWW}: any webserver answers", "stateless", False),
    (
        f"the stateful site {SHOP}: one webserver per session, through either load balancer",
        "stateful",
        False,
    ),
    ("a backend dies under load: haproxy fails over", "backend_kill", False),
    ("a load balancer dies: every nameserver drops it", "lb1_kill", False),
    ("the load balancer comes back: every nameserver hands it out again", "lb1_back", False),
    ("master NL stops: CH alone fails over and back", "master_down", False),
    ("a bad commit is pushed through CH and refused; the revert is pushed", "bad_commit", False),
    ("master NL comes back and converges by itself", "master_back", False),
    ("everything is restored", "restore", False),
    (
        "HTTPS: certificates through ACME DNS-01 on our nameservers, served by both load balancers (h2)",
        "https_issue",
        False,
    ),
    ("a certificate renewal under HTTPS load: no request fails", "https_renew", False),
)


POWER_OFF_STEP = (
    "a load balancer loses power (no reset): every nameserver drops it, clients go on",
    "lb_power_off",
    False,
)


def main(argv=None):
    loopback = "--loopback" in (sys.argv[1:] if argv is None else argv)
    OUT.mkdir(parents=True, exist_ok=True)
    tl = Timeline()
    why = "asked for (--loopback)" if loopback else netns.available()
    subnet = None if why else SUBNET
    where = f"each host in its own network namespace on {SUBNET}" if subnet else "127.0.0.0/8"
    tl.say(f"make demo: the paphosting platform on {where}, under {OUT.relative_to(REPO)}/")
    if why:
        tl.say(f"loopback lab ({why}): the power-cut step needs network namespaces")
    steps = list(STEPS)
    if subnet:
        steps.insert(steps.index(next(s for s in STEPS if s[1] == "master_down")), POWER_OFF_STEP)
    demo = Demo(tl, subnet)
    actions = {
        "lb1_kill": lambda step: demo.lb_kill(step, demo.lbs[0], ["nl", "ch"], "lb_failover"),
        "lb1_back": lambda step: demo.lb_back(step, demo.lbs[0], "nl", "lb_recovery"),
    }
    interrupted = False
    t_start = time.monotonic()
    try:
        aborted = None
        for name, action, critical in steps:
            if aborted:
                tl.skip(name, f"'{aborted}' failed")
                continue
            try:
                with tl.step(name, critical=critical) as step:
                    (actions.get(action) or getattr(demo, action))(step)
                    demo.narrate_drift(step, step.started)
            except Abort as exc:
                aborted = str(exc)
    except KeyboardInterrupt:
        interrupted = True
        tl.say("interrupted: stopping everything", "STOP")
    finally:
        for events in demo.events.values():
            events.stop()
        stopped_check(tl, demo)
    doc = {
        "passed": tl.passed and not interrupted,
        "steps": [s.as_dict() for s in tl.steps],
        "lb_failover_s": round(demo.latencies.get("lb_failover", 0.0), 2),
        "detection_floor_s": float(demo.floor),
        "client_errors": demo.client_errors,
        "client_connect_retries": demo.connect_failures,
        "latencies_s": {k: round(v, 2) for k, v in demo.latencies.items()},
        "targets": {"failover_p50_max_s": demo.floor + 1, "failover_p95_max_s": demo.floor + 2},
        "elapsed_s": round(time.monotonic() - t_start, 1),
        "timeline": tl.events,
        "interrupted": interrupted,
    }
    if "lb_failover" not in demo.latencies:
        doc["passed"] = False
    problems = report.demo_problems(doc)
    path = OUT / "report.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    if problems:
        tl.say(f"report.json does not have the promised shape: {'; '.join(problems)}", "FAIL")
        return 2
    passed = sum(s["passed"] for s in doc["steps"])
    tl.say(
        f"{passed} of {len(doc['steps'])} steps passed; load balancer failover {doc['lb_failover_s']:.2f} s "
        f"(floor {doc['detection_floor_s']:.0f} s); {doc['client_errors']} client errors; report: {path.relative_to(REPO)}",
        "PASS" if doc["passed"] else "FAIL",
    )
    tl.say(
        "Prometheus scraped the demo while it ran (its address is above); to browse it on a "
        "platform that stays up: .venv/bin/python scripts/lab up (docs/monitoring.md)"
    )
    if interrupted:
        return 130
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LabError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        sys.exit(1)
