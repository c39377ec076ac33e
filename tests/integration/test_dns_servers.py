"""Real BIND 9, NSD and Knot, started by the nameserver SLS in process mode, answering dnspython.

Three masterless minions (Salt's loaders), one per server, each with its own ``paphosting_root``
and one shared pillar derived from the example platform: the nameservers' addresses and ports come
from the ``loopback`` fixture. The servers start once for the module and are stopped at its end.

BIND listens only on addresses configured on an interface, so on 127.0.0.0/8 it gets 127.0.0.1
(with its own ports); NSD and Knot get addresses of their own.
"""

import re

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest
import yaml

from harness.saltenv import file_root
from paphosting import daemon as pdaemon
from paphosting import dnsserver, model
from paphosting import zone as pzone
from tests.conftest import REPO, example_pillar, require_binary
from tests.integration.conftest import masterless

SERVERS = ("bind", "nsd", "knot")
IDS = {s: f"ns-{s}.paphosting.test" for s in SERVERS}
FQDN = {"bind": "ns1.paphosting.net", "nsd": "ns2.paphosting.net", "knot": "ns3.paphosting.net"}
ZONE = "paphosting.nl"
ROT = "http0.l.paphosting.nl"
LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
RELOAD_LOG = {
    "bind": "received control channel command 'reload paphosting.nl'",
    "nsd": "control cmd:  reload paphosting.nl",
    "knot": "[paphosting.nl.] control, received command 'zone-reload'",
}


class Net:
    """The nameservers' addresses and ports for this module (from the loopback fixture)."""

    def __init__(self, loopback):
        self.ns = {}
        for server in SERVERS:
            address = "127.0.0.1" if server == "bind" else loopback.address()
            self.ns[server] = {
                "address": address,
                "port": loopback.udp_tcp_port(address),
                "server": server,
                "fqdn": FQDN[server],
            }
        self.ns["bind"]["control_port"] = loopback.port("127.0.0.1")

    def pillar(self, hosts=0):
        pillar = example_pillar()
        pillar.pop("metrics")  # the exporters of the example's own servers
        pillar["nameservers"] = {IDS[s]: dict(v) for s, v in self.ns.items()}
        pillar["health"]["watchers"] = list(pillar["nameservers"])
        records = pillar["zones"][ZONE]["records"]
        for i in range(hosts):
            records[f"host{i:02d}"] = [{"type": "A", "data": f"192.0.2.{i + 1}"}]
        return pillar


class Minion:
    """One masterless nameserver minion: Salt's loaders over the repository, its own root."""

    def __init__(self, server, loaders, root, pillar_dir):
        self.server = server
        self.loaders = loaders
        self.root = root
        self.pillar_dir = pillar_dir

    @property
    def id(self):
        return self.loaders.opts["id"]

    def nameserver(self):
        return model.parse(self.loaders.modules.pillar.get("paphosting")).nameservers[self.id]

    def zone_file(self, zone=ZONE):
        return (
            self.root / "var/lib/knot/zones" / f"{zone}.zone"
            if self.server == "knot"
            else self.root
            / {"bind": "etc/bind/zones", "nsd": "etc/nsd/zones"}[self.server]
            / f"{zone}.zone"
        )

    def log(self):
        return dnsserver.layout(self.server, str(self.root))["log"]

    def reloads(self):
        with open(self.log(), encoding="utf-8", errors="replace") as fh:
            return fh.read().count(RELOAD_LOG[self.server])

    def zone(self, **kwargs):
        """Apply the zone state; the StateResult."""
        return self.loaders.states.dns_zone.managed(name=ZONE, **kwargs)


@pytest.fixture(scope="module")
def net(loopback):
    return Net(loopback)


@pytest.fixture(scope="module")
def pillar_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dns-pillar")
    (d / "top.sls").write_text("base:\n  '*':\n    - paphosting\n")
    return d


def write_pillar(pillar_dir, pillar, rotation=None):
    data = {"paphosting": pillar}
    if rotation is not None:
        data["paphosting_rotation"] = rotation
    (pillar_dir / "paphosting.sls").write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def minions(salt_factories, tmp_path_factory, pillar_dir, net):
    for binary in ("named", "nsd", "knotd", "rndc", "nsd-control", "knotc"):
        require_binary(binary)
    write_pillar(pillar_dir, net.pillar())
    fileroot = file_root(tmp_path_factory.mktemp("dns-fileroot"))
    out = {}
    for server in SERVERS:
        root = tmp_path_factory.mktemp(f"r-{server}")
        loaders = masterless(
            salt_factories, IDS[server], pillar_dir, fileroot, root, f"salt.loaded.pap{server}"
        )
        out[server] = Minion(server, loaders, root, pillar_dir)
    try:
        for m in out.values():
            ret = m.loaders.modules.state.sls("nameserver")
            assert not ret.failed, [(r.id, r.comment) for r in ret if r.result is False]
        yield out
    finally:
        platform = model.parse(net.pillar())
        for m in out.values():
            pdaemon.stop(dnsserver.daemon(platform.nameservers[m.id], str(m.root)))


@pytest.fixture
def base(minions, pillar_dir, net):
    """Every server back on the example zone (forced), before the test."""
    set_pillar(minions, net.pillar())
    for m in minions.values():
        assert m.zone(force=True).result is True
    return minions


def set_pillar(minions, pillar, rotation=None):
    write_pillar(next(iter(minions.values())).pillar_dir, pillar, rotation)
    for m in minions.values():
        m.loaders.reload_all()


def ask(ns, name, rdtype="A"):
    """The response of one server (a pillar nameserver mapping) to one query."""
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    return dns.query.udp(query, ns["address"], port=ns["port"], timeout=2)


def rrset(ns, name, rdtype="A"):
    """(ttl, sorted rdata text) of the answer, or the rcode name when there is none."""
    resp = ask(ns, name, rdtype)
    for rr in resp.answer:
        if rr.rdtype == dns.rdatatype.from_text(rdtype) and rr.name == dns.name.from_text(name):
            return rr.ttl, sorted(rd.to_text() for rd in rr)
    return dns.rcode.to_text(resp.rcode())


def served_serial(ns, zone=ZONE):
    return dnsserver.served_serial(model_ns(ns), zone)


def model_ns(ns):
    return model.Nameserver(
        name="x",
        address=ns["address"],
        port=ns["port"],
        server=ns["server"],
        fqdn=ns["fqdn"],
        service_mode="process",
    )


# --- serving ------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
def test_the_rotation_name_returns_exactly_its_members_with_ttl_300(base, net, server):
    ns = net.ns[server]
    assert rrset(ns, ROT) == (300, ["127.0.1.1", "127.0.1.2"])
    assert rrset(ns, ZONE) == (300, ["127.0.1.1", "127.0.1.2"])
    assert rrset(ns, "www.paphosting.nl", "CNAME") == (3600, [ROT + "."])
    assert rrset(ns, ZONE, "MX") == (3600, ["10 mail.paphosting.nl."])
    assert rrset(ns, ZONE, "TXT") == (3600, ['"v=spf1 mx -all"'])
    assert rrset(ns, ZONE, "NS") == (
        3600,
        ["ns1.paphosting.net.", "ns2.paphosting.net.", "ns3.paphosting.net."],
    )
    assert rrset(ns, "nothing.paphosting.nl") == "NXDOMAIN"
    assert served_serial(ns) == pzone.serial_of(ZONE, base[server].zone_file().read_text())
    resp = ask(ns, "www.paphosting.nl")  # the CNAME is followed inside the zone
    assert sorted(
        rd.to_text() for rr in resp.answer if rr.rdtype == dns.rdatatype.A for rd in rr
    ) == ["127.0.1.1", "127.0.1.2"]


def zone_rrsets(text, origin):
    z = dns.zone.from_text(text, origin=origin, relativize=False)
    return {
        (n.to_text(), dns.rdatatype.to_text(r.rdtype)): (r.ttl, sorted(rd.to_text() for rd in r))
        for n, r in z.iterate_rdatasets()
    }


def test_the_three_servers_serve_the_example_zone_identically(base, net):
    text = base["knot"].zone_file().read_text()
    assert base["bind"].zone_file().read_text() == text == base["nsd"].zone_file().read_text()
    wanted = zone_rrsets(text, ZONE)
    assert len(wanted) >= 9
    for (name, rdtype), value in wanted.items():
        answers = {server: rrset(net.ns[server], name, rdtype) for server in SERVERS}
        assert answers == dict.fromkeys(SERVERS, value), (name, rdtype)


@pytest.mark.parametrize("server", SERVERS)
def test_example_zones_pass_every_checker(base, server):
    mod = base[server].loaders.modules.dns_zone
    for zone in mod.names():
        for checker in SERVERS:
            assert mod.check(zone, server=checker) is True


@pytest.mark.parametrize("server", SERVERS)
def test_zone_transfers_are_refused(base, net, server):
    ns = net.ns[server]
    with pytest.raises(
        (dns.exception.FormError, dns.query.TransferError, EOFError, ConnectionError)
    ):
        dns.zone.from_xfr(
            dns.query.xfr(ns["address"], ZONE, port=ns["port"], timeout=2, lifetime=5)
        )


# --- applying changes ---------------------------------------------------------------------------


def test_a_pillar_change_is_served_with_a_higher_serial_and_applying_again_changes_nothing(
    base, net
):
    before = {s: served_serial(net.ns[s]) for s in SERVERS}
    pillar = net.pillar()
    pillar["zones"][ZONE]["records"]["mail"] = [{"type": "A", "data": "127.0.2.9"}]
    pillar["zones"][ZONE]["records"]["new"] = [{"type": "TXT", "data": '"hello \\"world\\""'}]
    set_pillar(base, pillar)
    for server, m in base.items():
        reloads = m.reloads()
        ret = m.zone()
        assert ret.result is True, ret.comment
        assert ret.comment.endswith("; reloaded")
        assert m.reloads() == reloads + 1
        ns = net.ns[server]
        assert rrset(ns, "mail.paphosting.nl") == (3600, ["127.0.2.9"])
        assert rrset(ns, "new.paphosting.nl", "TXT") == (3600, ['"hello \\"world\\""'])
        assert pzone.serial_gt(served_serial(ns), before[server])
        mtime = m.zone_file().stat().st_mtime_ns
        again = m.zone()
        assert again.result is True and again.changes == {}, again.comment
        assert m.reloads() == reloads + 1
        assert m.zone_file().stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    "change, path",
    [
        (
            lambda z: z["records"].update({"@": [{"type": "CNAME", "data": "x.example."}]}),
            "records:@:0: a CNAME is not allowed at the zone apex",
        ),
        (
            lambda z: z["records"]["mail"].append({"type": "CNAME", "data": "x.example."}),
            "records:mail: a CNAME cannot stand beside other data",
        ),
        (
            lambda z: z["records"].update({"bad_name!": [{"type": "A", "data": "192.0.2.1"}]}),
            "records:bad_name!: 'bad_name!' is not a valid owner name",
        ),
        (
            lambda z: z["records"].update({"x.example.org.": [{"type": "A", "data": "192.0.2.1"}]}),
            "records:x.example.org.: x.example.org. is out of zone",
        ),
        (
            lambda z: z["records"]["mail"][0].update(ttl=2**31),
            "records:mail:0:ttl: 2147483648 is out of range",
        ),
        (
            lambda z: z["records"].update({"t": [{"type": "TXT", "data": '"a\nb"'}]}),
            "records:t:0:data: '\"a\\nb\"' contains a newline",
        ),
    ],
)
def test_an_invalid_change_is_refused_and_the_old_answer_still_served(base, net, change, path):
    before = {s: (served_serial(net.ns[s]), base[s].zone_file().read_text()) for s in SERVERS}
    pillar = net.pillar()
    change(pillar["zones"][ZONE])
    set_pillar(base, pillar)
    for server, m in base.items():
        ret = m.zone()
        assert ret.result is False
        assert f"pillar paphosting:zones:{ZONE}:{path}" in ret.comment
        assert m.zone_file().read_text() == before[server][1]
        assert served_serial(net.ns[server]) == before[server][0]
        assert rrset(net.ns[server], "mail.paphosting.nl") == (3600, ["127.0.2.3"])


def test_an_unknown_load_balancer_in_a_rotation_is_refused(base, net):
    pillar = net.pillar()
    pillar["rotations"][ROT]["members"] = [LB1, "lb9.paphosting.net"]
    set_pillar(base, pillar)
    for server, m in base.items():
        ret = m.zone()
        assert ret.result is False
        assert (
            f"pillar paphosting:rotations:{ROT}:members:1: 'lb9.paphosting.net' is not a load balancer"
            in ret.comment
        )
        assert rrset(net.ns[server], ROT) == (300, ["127.0.1.1", "127.0.1.2"])


def test_the_failover_members_change_only_the_rotation_records(base, net):
    answers = {s: zone_rrsets(base[s].zone_file().read_text(), ZONE) for s in SERVERS}
    set_pillar(base, net.pillar(), rotation={"version": 1, "rotations": {ROT: {"members": [LB2]}}})
    for server, m in base.items():
        ret = m.zone()
        assert ret.result is True, ret.comment
        assert ret.changes["records"] == {
            "added": [],
            "removed": [f"{ROT}. 300 IN A 127.0.1.1", f"{ZONE}. 300 IN A 127.0.1.1"],
        }
        ns = net.ns[server]
        assert rrset(ns, ROT) == (300, ["127.0.1.2"])
        now = zone_rrsets(m.zone_file().read_text(), ZONE)
        changed = {k for k in now if now[k] != answers[server].get(k)}
        assert changed == {(ROT + ".", "A"), (ZONE + ".", "A"), (ZONE + ".", "SOA")}
        # Explicit members (what the failover runner passes) win over the pillar key.
        assert m.zone(members={ROT: [LB1, LB2]}).result is True
        assert rrset(ns, ROT) == (300, ["127.0.1.1", "127.0.1.2"])


def test_the_serial_stays_valid_across_the_100th_change_of_a_day(base, net):
    day = pzone.next_serial(None, pzone.today_utc())
    for server, m in base.items():
        ns = net.ns[server]
        # Pretend 98 changes happened today: the live zone (file and server) is at YYYYMMDD98.
        text = m.zone_file().read_text()
        old = pzone.serial_of(ZONE, text)
        seeded = max(day + 98, old + 1)
        m.zone_file().write_text(re.sub(rf"\b{old}\b", str(seeded), text, count=1))
        assert m.loaders.modules.dns_server.reload_zone(ZONE, serial=seeded) == "reloaded"
        serials = [seeded]
        for members in ([LB1], [LB2], [LB1, LB2], [LB2]):
            ret = m.zone(members={ROT: members})
            assert ret.result is True, ret.comment
            serials.append(served_serial(ns))
            assert rrset(ns, ROT)[1] == sorted(f"127.0.1.{lb[2]}" for lb in members)
        for a, b in zip(serials, serials[1:], strict=False):
            assert pzone.serial_gt(b, a) and b == a + 1 and b < 2**32


def test_a_bulk_deletion_is_refused_without_force(base, net):
    set_pillar(base, net.pillar(hosts=20))
    for m in base.values():
        assert m.zone().result is True
    set_pillar(base, net.pillar(hosts=4))
    for server, m in base.items():
        ns = net.ns[server]
        serial = served_serial(ns)
        ret = m.zone()
        assert ret.result is False
        assert (
            "it deletes or changes 16 of its 32 records (50%, more than the allowed 30%)"
            in ret.comment
        )
        assert rrset(ns, "host10.paphosting.nl") == (3600, ["192.0.2.11"])
        assert served_serial(ns) == serial
        forced = m.zone(force=True)
        assert forced.result is True, forced.comment
        assert rrset(ns, "host10.paphosting.nl") == "NXDOMAIN"
        assert rrset(ns, "host03.paphosting.nl") == (3600, ["192.0.2.4"])


def test_a_stopped_server_gets_its_zone_at_start_and_the_state_starts_it(base, net):
    m = base["nsd"]
    assert m.loaders.modules.dns_server.stop() is True
    pillar = net.pillar()
    pillar["zones"][ZONE]["records"]["mail"] = [{"type": "A", "data": "127.0.2.7"}]
    set_pillar(base, pillar)
    ret = m.zone()
    assert ret.result is True and ret.comment.endswith("; not running")
    run = m.loaders.states.dns_server.running(name=m.id)
    assert run.result is True and run.changes == {"service": {"old": "stopped", "new": "running"}}
    assert rrset(net.ns["nsd"], "mail.paphosting.nl") == (3600, ["127.0.2.7"])
    assert m.loaders.states.dns_server.running(name=m.id).changes == {}


# --- import, and a new zone ---------------------------------------------------------------------


def test_an_imported_zone_is_served_with_the_same_rrsets(base, net):
    path = REPO / "tests" / "data" / "zones" / "example.com.zone"
    imported = yaml.safe_load(base["knot"].loaders.modules.dns_zone.import_zone(str(path)))
    pillar = net.pillar()
    pillar["zones"].update(imported["paphosting"]["zones"])
    set_pillar(base, pillar)
    original = zone_rrsets(path.read_text(), "example.com")
    delegated = dns.name.from_text("sub.example.com")
    for server, m in base.items():
        ret = m.loaders.modules.state.sls("nameserver")
        assert not ret.failed, [(r.id, r.comment) for r in ret if r.result is False]
        ns = net.ns[server]
        checked = 0
        for (name, rdtype), (ttl, rdatas) in original.items():
            if dns.name.from_text(name).is_subdomain(delegated):
                continue  # below the zone cut: answered by a referral, not authoritatively
            got = rrset(ns, name, rdtype)
            if rdtype == "SOA":
                assert got[1][0].split()[3:] == rdatas[0].split()[3:] and got[0] == ttl
            else:
                assert got == (ttl, rdatas), (server, name, rdtype)
            checked += 1
        assert checked >= 20
        referral = ask(ns, "www.sub.example.com")
        assert sorted(rd.to_text() for rr in referral.authority for rd in rr) == [
            "ns.elsewhere.net.",
            "ns1.sub.example.com.",
        ]
        again = m.loaders.modules.state.sls("nameserver")
        assert all(r.changes == {} for r in again), [r.id for r in again if r.changes]
