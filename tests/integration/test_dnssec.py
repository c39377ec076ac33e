"""Signed zones served by real BIND 9, NSD and Knot, validated by a real Unbound.

Three masterless nameserver minions (Salt's loaders over the repository, as in
``test_dns_servers.py``) serve the example zone ``paphosting.nl`` signed with NSEC and a zone of
their own, ``paphosting-nsec3.nl``, signed with NSEC3. Their key sets are in the pillar as the
masters' secrets ext_pillar publishes them to nameservers (``paphosting_secrets:dnssec``). Four
Unbound resolvers on 127.0.15.1 trust the zones' KSKs: one per server and one that asks all
three (a mix of servers). TTLs are a few seconds (zone TTLs 3 s, Unbound caps at 5 s) and the
rollover timings derive from them (propagation 2 s, safety margin 1 s), so a ZSK rollover runs
through in seconds, with the resolvers' caches in the way as they would be.

Every process started here is stopped at the end of the module.
"""

import threading
import time

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from harness.resolver import Unbound, authenticated
from harness.saltenv import file_root
from harness.wait import wait_until
from paphosting import daemon as pdaemon
from paphosting import dnssec, dnsserver, model
from tests.conftest import example_pillar, require_binary
from tests.integration.conftest import masterless

SERVERS = ("bind", "nsd", "knot")
IDS = {s: f"ns-{s}.dnssec.test" for s in SERVERS}
FQDN = {"bind": "ns1.paphosting.net", "nsd": "ns2.paphosting.net", "knot": "ns3.paphosting.net"}
ZONE = "paphosting.nl"
ZONE3 = "paphosting-nsec3.nl"
ROT = "http0.l.paphosting.nl"
LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
ADDR = {LB1: "127.0.1.1", LB2: "127.0.1.2"}
RESOLVER = "127.0.15.1"
TTL = 3


class Lab:
    """The nameservers' addresses, the key sets, the pillar, the minions and the resolvers."""

    def __init__(self, loopback, tmp):
        self.tmp = tmp
        self.ns = {}
        for i, server in enumerate(SERVERS):
            # BIND listens only on addresses configured on an interface: 127.0.0.1, its own ports.
            address = "127.0.0.1" if server == "bind" else f"127.0.15.{i + 2}"
            self.ns[server] = {
                "address": address,
                "port": loopback.udp_tcp_port(address),
                "server": server,
                "fqdn": FQDN[server],
            }
        self.ns["bind"]["control_port"] = loopback.port("127.0.0.1")
        # Keys made a month ago: a test signs as of days ago (the expiry test).
        made = dnssec.now_epoch() - 30 * 86400
        self.keysets = {z: dnssec.initial_keyset(z, made) for z in (ZONE, ZONE3)}
        self.pillar_dir = tmp / "pillar"
        self.pillar_dir.mkdir()
        (self.pillar_dir / "top.sls").write_text("base:\n  '*':\n    - paphosting\n")
        self.minions = {}
        self.resolvers = {}
        self.loopback = loopback

    def platform_pillar(self, dnssec_on=True):
        pillar = example_pillar()
        pillar.pop("metrics")
        pillar["nameservers"] = {IDS[s]: dict(v) for s, v in self.ns.items()}
        pillar["health"]["watchers"] = list(pillar["nameservers"])
        pillar["rotations"][ROT]["ttl"] = TTL
        zone = pillar["zones"][ZONE]
        zone["ttl"] = TTL
        zone.setdefault("soa", {})["minimum"] = TTL
        zone["dnssec"] = bool(dnssec_on)
        pillar["zones"][ZONE3] = {
            "ttl": TTL,
            "soa": {"minimum": TTL},
            "dnssec": {"nsec3": True},
            "records": {
                "www": [{"type": "A", "data": "192.0.2.1"}],
                "deep.sub": [{"type": "A", "data": "192.0.2.2"}],
                "@": [{"type": "TXT", "data": '"nsec3 zone"'}],
            },
        }
        pillar["dns"] = {"dnssec": {"propagation": 2, "safety": 1}}
        return pillar

    def write_pillar(self, dnssec_on=True, keysets=None):
        keysets = self.keysets if keysets is None else keysets
        data = {
            "paphosting": self.platform_pillar(dnssec_on),
            "paphosting_secrets": {"dnssec": {z: ks.to_dict() for z, ks in keysets.items()}},
        }
        (self.pillar_dir / "paphosting.sls").write_text(yaml.safe_dump(data))
        for m in self.minions.values():
            m.reload_all()

    def anchors(self):
        return [
            f"{z}. 3600 IN DNSKEY {k.dnskey.to_text()}"
            for z, ks in self.keysets.items()
            for k in ks.keys
            if k.role == "ksk"
        ]

    def apply(self, server, **kwargs):
        return self.minions[server].modules.dns_zone.apply_all(**kwargs)


@pytest.fixture(scope="module")
def lab(salt_factories, tmp_path_factory, loopback):
    for binary in ("named", "nsd", "knotd", "unbound", "dnssec-verify"):
        require_binary(binary)
    lab = Lab(loopback, tmp_path_factory.mktemp("dnssec"))
    lab.write_pillar()
    fileroot = file_root(tmp_path_factory.mktemp("dnssec-fileroot"))
    roots = {}
    try:
        for server in SERVERS:
            roots[server] = tmp_path_factory.mktemp(f"dnssec-{server}")
            lab.minions[server] = masterless(
                salt_factories,
                IDS[server],
                lab.pillar_dir,
                fileroot,
                roots[server],
                f"salt.loaded.papsec{server}",
            )
        for m in lab.minions.values():
            ret = m.modules.state.sls("nameserver")
            assert not ret.failed, [(r.id, r.comment) for r in ret if r.result is False]
        servers = {s: (lab.ns[s]["address"], lab.ns[s]["port"]) for s in SERVERS}
        for name, chosen in [(s, [servers[s]]) for s in SERVERS] + [
            ("mix", list(servers.values()))
        ]:
            port = loopback.udp_tcp_port(RESOLVER)
            lab.resolvers[name] = Unbound(
                lab.tmp / f"unbound-{name}",
                RESOLVER,
                port,
                {ZONE: chosen, ZONE3: chosen},
                lab.anchors(),
            ).start()
        yield lab
    finally:
        for r in lab.resolvers.values():
            r.stop()
        platform = model.parse(lab.platform_pillar())
        for server, root in roots.items():
            pdaemon.stop(dnsserver.daemon(platform.nameservers[IDS[server]], str(root)))


def ask(ns, name, rdtype="A", dnssec_ok=True):
    query = dns.message.make_query(name, rdtype, want_dnssec=dnssec_ok)
    query.flags &= ~dns.flags.RD
    return dns.query.udp(query, ns["address"], port=ns["port"], timeout=2)


def addresses(resp, name=ROT):
    return sorted(
        rd.address
        for rr in resp.answer
        if rr.rdtype == dns.rdatatype.A and rr.name == dns.name.from_text(name)
        for rd in rr
    )


def dnskey_tags(ns, zone=ZONE):
    resp = ask(ns, zone, "DNSKEY")
    return sorted(
        dns.dnssec.key_id(rd)
        for rr in resp.answer
        if rr.rdtype == dns.rdatatype.DNSKEY
        for rd in rr
    )


def rrsigs(ns, name, rdtype="A"):
    resp = ask(ns, name, rdtype)
    return [rd for rr in resp.answer if rr.rdtype == dns.rdatatype.RRSIG for rd in rr]


class Watch:
    """Asks every resolver for the rotation name and a name that does not exist, over and over,
    in a thread, and keeps every answer that was not authenticated."""

    def __init__(self, lab):
        self.lab = lab
        self.bad = []
        self.count = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_event.is_set():
            for name, r in self.lab.resolvers.items():
                for qname, rdtype in ((ROT, "A"), (f"nothing.{ZONE}", "A"), (f"www.{ZONE3}", "A")):
                    try:
                        resp = r.ask(qname, rdtype)
                    except Exception as exc:  # noqa: BLE001 (a timeout is a failure to record)
                        self.bad.append((name, qname, repr(exc)))
                        continue
                    self.count += 1
                    if not authenticated(resp):
                        self.bad.append((name, qname, dns.rcode.to_text(resp.rcode())))
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(10)


def wait_answer(lab, wanted, timeout=30):
    """Until every resolver answers the rotation name with ``wanted``, authenticated."""
    last = {}

    def every():
        last.update(
            (n, (addresses(r.ask(ROT)), authenticated(r.ask(ROT))))
            for n, r in lab.resolvers.items()
        )
        return all(v == (wanted, True) for v in last.values())

    if not wait_until(every, timeout, 0.2, error=None):
        raise AssertionError(f"resolvers answer {last}, not {wanted} authenticated")


# --- serving ------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolver", (*SERVERS, "mix"))
def test_the_rotation_name_resolves_authenticated_through_each_server(lab, resolver):
    r = lab.resolvers[resolver]
    resp = r.ask(ROT)
    assert authenticated(resp), (resp, r.log()[-2000:])
    assert addresses(resp) == sorted(ADDR.values())
    www = r.ask(f"www.{ZONE}")  # a CNAME to the rotation name, both validated
    assert authenticated(www) and addresses(www, ROT) == sorted(ADDR.values())
    assert authenticated(r.ask(f"www.{ZONE3}"))


def test_every_server_serves_the_same_dnskey_rrset(lab):
    for zone, keyset in lab.keysets.items():
        want = sorted(k.tag for k in keyset.keys)
        assert {s: dnskey_tags(lab.ns[s], zone) for s in SERVERS} == dict.fromkeys(SERVERS, want)


@pytest.mark.parametrize("resolver", (*SERVERS, "mix"))
@pytest.mark.parametrize("zone, denial", [(ZONE, dns.rdatatype.NSEC), (ZONE3, dns.rdatatype.NSEC3)])
def test_denial_of_existence_validates(lab, resolver, zone, denial):
    r = lab.resolvers[resolver]
    resp = r.ask(f"no-such-name.{zone}")
    assert resp.rcode() == dns.rcode.NXDOMAIN and authenticated(resp), resp
    assert any(rr.rdtype == denial for rr in resp.authority), resp
    nodata = r.ask(zone if zone == ZONE3 else ROT, "MX" if zone == ZONE3 else "TXT")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and authenticated(nodata)
    if zone == ZONE3:  # an empty non-terminal (sub. above deep.sub.) is a name, without data
        ent = r.ask(f"sub.{ZONE3}")
        assert ent.rcode() == dns.rcode.NOERROR and authenticated(ent), ent


# --- failover, rollover, expiry ----------------------------------------------------------------


def test_a_failover_resigns_only_what_changed_and_never_servfails(lab):
    with Watch(lab) as watch:
        for server in SERVERS:
            out = lab.apply(server, members={ROT: [LB1]}, failover=True)
            entry = out[ZONE]
            assert entry["error"] is None and entry["written"], entry
            assert entry["rotation_only"]
            # The SOA and the two A RRsets the rotation owns; every other signature is kept.
            assert entry["dnssec"]["signatures"] == 3, entry["dnssec"]
            assert entry["dnssec"]["reused"] > 10
            assert out[ZONE3]["changed"] is False
        wait_answer(lab, [ADDR[LB1]])
        for server in SERVERS:
            lab.apply(server, members={ROT: [LB1, LB2]}, failover=True)
        wait_answer(lab, sorted(ADDR.values()))
    assert watch.count > 50
    assert watch.bad == []


def test_a_zsk_rollover_across_servers_out_of_step_never_servfails(lab):
    now = dnssec.now_epoch()
    old = lab.keysets[ZONE]
    old_zsk = old.signers(now, "zsk")[0].tag
    policy = dnssec.Policy(propagation=2, safety=1)
    rolled = dnssec.roll_zsk(old, now, policy, dnskey_ttl=TTL, max_ttl=TTL)
    new_zsk = next(k.tag for k in rolled.keys if k.role == "zsk" and k.tag != old_zsk)
    done = max(k.delete or 0 for k in rolled.keys)
    lab.keysets = dict(lab.keysets, **{ZONE: rolled})
    lab.write_pillar()
    seen = {s: set() for s in SERVERS}
    with Watch(lab) as watch:
        # The servers re-sign one after the other, a second apart: they change state at
        # different moments, as drift correction makes them do.
        i = 0
        while dnssec.now_epoch() <= done + 2:
            server = SERVERS[i % 3]
            entry = lab.apply(server)[ZONE]
            assert entry["error"] is None, entry
            seen[server].add(tuple(dnskey_tags(lab.ns[server])))
            i += 1
            time.sleep(0.3)
        for server in SERVERS:
            lab.apply(server)
        time.sleep(6)  # the resolvers' caches turn over once more
    assert watch.count > 100
    assert watch.bad == []
    ksk = next(k.tag for k in rolled.keys if k.role == "ksk")
    for server in SERVERS:
        # Each server went through the pre-publish states: old only -> both -> new only.
        assert tuple(sorted((ksk, old_zsk, new_zsk))) in seen[server], seen[server]
        assert dnskey_tags(lab.ns[server]) == sorted((ksk, new_zsk))
        assert {rd.key_tag for rd in rrsigs(lab.ns[server], ROT)} == {new_zsk}


@pytest.mark.parametrize("days_ago", [10, 20])  # expiring within the refresh margin; expired
def test_old_signatures_are_replaced_before_they_are_served_again(lab, days_ago):
    """A nameserver that was down for weeks comes back with its old signed files: the next apply
    (drift correction) signs again before anything else, and resolvers validate again."""
    now = dnssec.now_epoch()
    server = "knot"
    m = lab.minions[server]
    path = dnsserver.zone_path(
        model.parse(lab.platform_pillar()).nameservers[IDS[server]], ZONE, m.opts["paphosting_root"]
    )
    with open(path, encoding="utf-8") as fh:
        live = fh.read()
    policy = dnssec.Policy(propagation=2, safety=1)
    old = dnssec.sign(
        dnssec.unsigned_text(live), ZONE, lab.keysets[ZONE], now - days_ago * 86400, policy
    )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(old.text)
    entry = lab.apply(server)[ZONE]
    assert entry["written"] and entry["error"] is None, entry
    assert "signatures expire" in entry["dnssec"]["resigned"]
    expirations = [int(rd.expiration) for rd in rrsigs(lab.ns[server], ROT)]
    assert expirations and min(expirations) > now + 13 * 86400
    assert authenticated(lab.resolvers[server].ask(ROT))


def test_a_signed_zone_without_keys_keeps_its_live_zone_and_names_the_pillar_path(lab):
    m = lab.minions["nsd"]
    before = ask(lab.ns["nsd"], ZONE, "SOA").answer
    lab.write_pillar(keysets={ZONE3: lab.keysets[ZONE3]})
    try:
        out = m.modules.dns_zone.apply_all(members={ROT: [LB2]}, failover=True)
        assert "paphosting_secrets:dnssec:paphosting.nl" in out[ZONE]["error"]
        assert not out[ZONE]["written"]
        assert ask(lab.ns["nsd"], ZONE, "SOA").answer == before
        assert authenticated(lab.resolvers["nsd"].ask(ROT))
    finally:
        lab.write_pillar()
        lab.apply("nsd")


def test_turning_dnssec_off_needs_force(lab):
    m = lab.minions["bind"]
    lab.write_pillar(dnssec_on=False)
    try:
        ret = m.states.dns_zone.managed(name=ZONE)
        assert ret.result is False and "turns DNSSEC off" in ret.comment, ret.comment
        assert rrsigs(lab.ns["bind"], ROT)  # still signed
        ret = m.states.dns_zone.managed(name=ZONE, force=True)
        assert ret.result is True, ret.comment
        assert not rrsigs(lab.ns["bind"], ROT)
    finally:
        lab.write_pillar()
        assert m.states.dns_zone.managed(name=ZONE).result is True
    assert rrsigs(lab.ns["bind"], ROT)
