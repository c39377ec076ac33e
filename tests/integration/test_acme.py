"""Certificates through ACME DNS-01 on our own nameservers, end to end, with real parts only.

One platform for the whole module (the lab's launcher, on 127.0.14.0/24): two salt-masters (NL,
CH) sharing one key pair and one platform GPG key, Subversion, two haproxy load balancers, NSD
and Knot nameservers, two webservers; and Pebble, the ACME test CA, validating DNS-01 against
our NSD (``-dnsserver``). Pebble's root, read from its management API, is the only root the
clients and the deploy checks trust.

The tests run in order, each from the state the previous one left: issue ``www`` and ``shop``;
both load balancers serve the same certificate over HTTPS (h2, verified chain), with the stateful
cookie across them and the redirect; a renewal forced under load fails no request; NL stopped
mid-issuance, CH completes and NL, back, follows without flipping a load balancer; the CA down
keeps the certificate and records the failure.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from harness import client
from harness.launcher import BIN, Lab
from harness.wait import wait_until
from paphosting import certstate, challenges, dnsserver, secrets
from tests.conftest import require_binary

NET = "127.0.14"
LBS = {"lb1.acme.test": f"{NET}.11", "lb2.acme.test": f"{NET}.12"}
NSS = {"ns1.acme.test": (f"{NET}.21", "nsd"), "ns2.acme.test": (f"{NET}.22", "knot")}
WEBS = {"web1.acme.test": f"{NET}.31", "web2.acme.test": f"{NET}.32"}
HTTP_PORT, HTTPS_PORT, DNS_PORT = 8080, 8443, 5300
ZONE = "paphosting.nl"
WWW, SHOP = f"www.{ZONE}", f"shop.{ZONE}"
PEBBLE_PORT = 14400


def platform_pillar():
    return {
        "settings": {"service_mode": "process"},
        "haproxy": {
            "http_port": HTTP_PORT,
            "https_port": HTTPS_PORT,
            "health_path": "/haproxy-health",
        },
        "loadbalancers": {lb: {"address": a} for lb, a in LBS.items()},
        "webservers": {w: {"address": a} for w, a in WEBS.items()},
        "nameservers": {
            ns: {"address": a, "port": DNS_PORT, "server": s} for ns, (a, s) in NSS.items()
        },
        "rotations": {f"http0.l.{ZONE}": {"ttl": 300, "members": sorted(LBS), "min_members": 1}},
        "services": {
            "www": {
                "type": "stateless",
                "hostnames": [WWW, ZONE],
                "port": 8000,
                "check": {"path": "/health", "inter": 500, "fall": 2, "rise": 2},
                "servers": [{"name": w} for w in sorted(WEBS)],
            },
            "shop": {
                "type": "stateful",
                "hostnames": [SHOP],
                "port": 8000,
                "failback": "manual",
                "check": {"path": "/health", "inter": 500, "fall": 2, "rise": 2},
                "servers": [
                    {"name": "web1.acme.test", "role": "primary"},
                    {"name": "web2.acme.test", "role": "backup"},
                ],
            },
        },
        "zones": {
            ZONE: {
                "ttl": 300,
                "ns": sorted(NSS),
                "soa": {"rname": f"hostmaster.{ZONE}", "minimum": 60},
                "records": {"mail": [{"type": "A", "data": f"{NET}.31"}]},
            }
        },
        "health": {
            "watchers": sorted(NSS),
            "interval": 1,
            "timeout": 0.5,
            "fall": 3,
            "rise": 2,
            "heartbeat": 30,
        },
        "masters": {"nl": {"address": f"{NET}.41"}, "ch": {"address": f"{NET}.42"}},
        "schedule": {"enabled": False},
    }


class Platform:
    def __init__(self, lab, pebble, root):
        self.lab = lab
        self.pebble = pebble
        self.root = root  # Pebble's root PEM: what clients trust

    def run(self, fun, *args, master="nl", timeout=300):
        res = self.lab.salt_run("--out=json", fun, *args, master=master, timeout=timeout)
        try:
            return json.loads(res.stdout)
        except ValueError:
            pytest.fail(f"salt-run {fun} on {master}: {res.returncode}\n{res.stdout}{res.stderr}")

    def get(self, lb, host, path="/", browser=None):
        """An HTTPS GET through load balancer ``lb`` (SNI ``host``, Pebble's root only)."""
        browser = browser or client.Browser(host, HTTPS_PORT, self.tls())
        return browser.get(LBS[lb], path)

    def tls(self, alpn=("http/1.1",)):
        return client.tls_context(self.root, alpn)

    def served(self, lb, host):
        """The fingerprint of the leaf ``lb`` serves for SNI ``host`` (verified)."""
        answer = self.get(lb, host)
        assert answer.ok, str(answer)
        return answer.certificate

    def head_bundle(self, service):
        armored = self.lab.svn._svn("cat", f"{self.lab.svn.url}/pillar/secrets/tls/{service}.asc")
        return armored

    def live_fingerprint(self, master, service):
        """The fingerprint of ``service``'s certificate in the revision live on ``master``."""
        m = self.lab.masters[master]
        live = m.cachedir / "paphosting" / "pillar" / "live"
        try:
            bundle = secrets.read(str(live), "tls", service, str(m.gpg_keydir))
        except secrets.SecretError:
            return None
        return certstate.certificate_info(bundle)["fingerprint"]


@pytest.fixture(scope="module")
def platform():
    require_binary("pebble")
    require_binary("svnmucc")
    with Lab("acme-test", pillar=platform_pillar(), acme=(f"{NET}.1", PEBBLE_PORT)) as lab:
        lab.pillar = lab.acme_pillar(
            services={"www": None, "shop": {"names": [SHOP, f"*.{SHOP}"]}},
            email=f"hostmaster@{ZONE}",
            retry={"min": 30, "max": 600},
            lock_timeout=15,
            propagation_timeout=30,
        )
        rev = lab.commit(lab.pillar_files(lab.pillar), "the ACME test platform")
        res = lab.push("nl")
        assert res.returncode == 0, f"push of r{rev} failed:\n{res.stdout}{res.stderr}"
        yield Platform(lab, lab.pebble, lab.pebble.root())


def held(platform):
    return platform.lab.salt(sorted(NSS), "acme_challenge.held")


def held_on_disk(platform, ns):
    """The challenge set ``ns`` holds, read from its cache (no job: NL may be down)."""
    minion = platform.lab.minions[ns]
    return challenges.load_held(challenges.held_path(str(minion.root / "cache")))


def test_issue_www_and_shop_through_our_nameservers(platform):
    ret = platform.run("tls.issue")
    assert ret["result"] is True, ret["comment"]
    assert "www: issued" in ret["comment"] and "shop: issued" in ret["comment"]
    # Committed encrypted: no key material in Subversion.
    for service in ("www", "shop"):
        armored = platform.head_bundle(service)
        assert armored.startswith("-----BEGIN PGP MESSAGE-----")
        assert "PRIVATE KEY" not in armored
    # Live on NL (the push), and on CH by its sync.
    for master in ("nl", "ch"):
        wait_until(
            lambda m=master: platform.live_fingerprint(m, "www"),
            60,
            message=f"the www certificate live on {master}",
        )
    assert platform.live_fingerprint("nl", "shop") == platform.live_fingerprint("ch", "shop")
    # Every nameserver took the challenge records back.
    for ns, got in held(platform).items():
        assert got["records"] == {}, ns
    for ns in platform.lab.nameservers:
        resp = dnsserver.query(ns, challenges.owner_of(WWW) + ".", "TXT")
        assert resp is not None and not resp.answer, f"{ns.name} still serves a challenge"


def test_both_load_balancers_serve_the_same_certificate_over_h2(platform, tmp_path):
    root = tmp_path / "root.pem"
    root.write_text(platform.root)
    for host, service in ((WWW, "www"), (ZONE, "www"), (SHOP, "shop")):
        want = platform.live_fingerprint("nl", service)
        for lb, address in LBS.items():
            wait_until(
                lambda lb=lb, host=host, want=want: platform.served(lb, host) == want,
                60,
                message=f"{lb} to serve {service}'s certificate {want} for {host}",
            )
            # A real client: curl, verifying against Pebble's root only, HTTP/2.
            got = client.curl_h2(address, HTTPS_PORT, host, root)
            assert got == "2 200", f"{lb} {host}: {got}"


def test_stateful_cookie_across_load_balancers_over_https(platform):
    browser = client.Browser(SHOP, HTTPS_PORT, platform.tls())
    first = platform.get("lb1.acme.test", SHOP, browser=browser)
    assert first.ok, str(first)
    assert first.cookies, "no persistence cookie over HTTPS"
    for lb in ("lb2.acme.test", "lb1.acme.test", "lb2.acme.test"):
        answer = platform.get(lb, SHOP, browser=browser)
        assert answer.ok and answer.server == first.server == "web1.acme.test", str(answer)


def test_plain_http_redirects_to_https(platform):
    for lb, address in LBS.items():
        resp = client.http_get(address, HTTP_PORT, "/some/page?x=1", host=WWW)
        assert resp.status == 301, lb
        assert resp.headers["Location"].startswith(f"https://{WWW}"), resp.headers["Location"]
        health = client.http_get(address, HTTP_PORT, "/haproxy-health", host=WWW)
        assert health.status == 200


def test_renewal_forced_under_load_fails_no_request(platform):
    old = platform.live_fingerprint("nl", "www")
    load = client.Load(WWW, HTTPS_PORT, lambda: sorted(LBS.values()), workers=2, rate=10,
                       retry=False, tls=platform.tls())  # fmt: skip
    with load:
        assert load.wait_requests(20), "the load does not run"
        ret = platform.run("tls.issue", "service=www", "force=True")
        assert ret["result"] is True, ret["comment"]
        new = platform.live_fingerprint("nl", "www")
        assert new != old
        for lb in LBS:
            wait_until(
                lambda lb=lb: platform.served(lb, WWW) == new,
                60,
                message=f"{lb} to serve the renewed certificate",
            )
        assert load.wait_requests(20)
    assert load.failures == [], load.failures[:5]
    assert old in load.certificates and new in load.certificates, load.certificates
    print(f"renewal under load: {load.requests} requests, 0 failed, {load.certificates}")


def test_status_table(platform):
    res = platform.lab.salt_run("tls.status", master="ch")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "SERVICE" in lines[0] and "DAYS LEFT" in lines[0] and "LAST ERROR" in lines[0]
    www = next(line for line in lines if line.strip().startswith("www"))
    assert "Pebble Intermediate" in www


def test_keys_only_on_load_balancers(platform):
    lab = platform.lab
    # Compiled now (pillar.items), not the in-memory pillar of before the push.
    pillars = {
        m: p.get("paphosting_secrets")
        for m, p in lab.salt(sorted(lab.minions), "pillar.items", unmask=True).items()
    }
    for minion, got in pillars.items():
        if minion in LBS:
            assert sorted(got["tls"]) == ["shop", "www"], minion
            assert "PRIVATE KEY" in got["tls"]["www"]
        else:
            assert not got, f"{minion} got secrets: {sorted(got) if got else got}"
    # No minion holds the ACME account key.
    for minion in lab.minions:
        assert "acme" not in (pillars[minion] or {})


def test_nl_stopped_mid_issuance_ch_completes_and_nl_follows(platform, tmp_path):
    lab = platform.lab
    nl = lab.masters["nl"]
    old = platform.live_fingerprint("ch", "shop")
    # NL starts a forced renewal of shop; the machine dies (master and runner) as soon as its
    # challenge records reach a nameserver: in the middle of the issuance, holding the lock.
    out = (tmp_path / "nl-runner.log").open("w")
    runner = subprocess.Popen(
        [str(BIN / "salt-run"), "-c", str(nl.conf_dir), "tls.issue", "service=shop", "force=True"],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: any((held_on_disk(platform, ns) or {}).get("records") for ns in sorted(NSS)),
            120,
            interval=0.01,
            message="NL's challenge records on a nameserver",
        )
    except AssertionError:
        pytest.fail(f"NL's runner: {(tmp_path / 'nl-runner.log').read_text()}")
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
        out.close()
    nl.stop()
    lock = lab.svn._svn("info", f"{lab.svn.url}/pillar/secrets/acme/account.asc")
    assert "Lock Comment" in lock and "nl " in lock, lock
    # CH alone: waits out NL's lock (lock_timeout), takes it over, issues, pushes.
    t0 = time.monotonic()
    ret = platform.run("tls.issue", "service=shop", "force=True", master="ch")
    assert ret["result"] is True, ret["comment"]
    assert "shop: issued" in ret["comment"]
    print(f"CH issued {time.monotonic() - t0:.1f} s after NL died (lock_timeout 15 s)")
    new = platform.live_fingerprint("ch", "shop")
    assert new != old
    for ns in sorted(NSS):
        assert held_on_disk(platform, ns)["records"] == {}, f"{ns} still holds challenge records"
    # NL comes back and follows CH's revision by its sync; a highstate through NL changes
    # nothing on the load balancers: the certificate does not flip back.
    nl.start()
    nl.wait_ready()
    lab.wait_minions(masters=[nl])
    wait_until(
        lambda: platform.live_fingerprint("nl", "shop") == new,
        90,
        message="NL to make CH's certificate live by its sync",
    )
    pillars = lab.salt(sorted(LBS), "pillar.items", master="nl", unmask=True)
    for lb, pillar in pillars.items():
        bundle = pillar["paphosting_secrets"]["tls"]["shop"]
        assert certstate.certificate_info(bundle)["fingerprint"] == new, lb
    for lb in LBS:
        assert platform.served(lb, SHOP) == new, lb
    ran = lab.highstate(sorted(LBS), master="nl")
    for lb, r in ran.items():
        assert not r["failed"], (lb, r["failed"])
        assert not [c for c in r["changed"] if "certificates" in c], (lb, r["changed"])
    for lb in LBS:
        assert platform.served(lb, SHOP) == new, f"{lb} flipped after a highstate through NL"
    # NL's scheduled renewal finds the certificate at HEAD current and issues nothing.
    ret = platform.run("tls.renew", master="nl")
    assert ret["result"] is True, ret["comment"]
    assert "issued" not in ret["comment"], ret["comment"]


def test_ca_down_keeps_the_certificate(platform):
    before = platform.live_fingerprint("nl", "www")
    platform.pebble.stop()
    try:
        res = platform.lab.salt_run("--out=json", "tls.issue", "service=www", "force=True")
        assert res.returncode != 0
        ret = json.loads(res.stdout)
        assert ret["result"] is False
        assert "the current certificate stays" in ret["comment"]
        assert "cannot be reached" in ret["comment"] or "cannot be used" in ret["comment"]
        assert platform.live_fingerprint("nl", "www") == before
        status = platform.lab.salt_run("tls.status").stdout
        www = next(line for line in status.splitlines() if line.strip().startswith("www"))
        assert "retry at" in www
        # The scheduled renewal waits out the backoff instead of hammering the CA.
        assert "waiting" in platform.run("tls.renew")["comment"]
    finally:
        platform.pebble.start()
