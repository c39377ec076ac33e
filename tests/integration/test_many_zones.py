"""A hoster's nameserver: hundreds of customer zones with their apex on the rotation, on real
BIND 9, NSD and Knot, through a failover and a recovery.

Three masterless minions (Salt's loaders), one per server, each with its own ``paphosting_root``.
The failover runs the very function ``rotation.apply`` runs (``dns_zone.apply_all`` with the
rotation's new members); every zone is then asked of every server with dnspython.
"""

import os

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import pytest
import yaml

from harness.saltenv import file_root
from paphosting import daemon as pdaemon
from paphosting import dnsserver, dnsupdate, model
from paphosting import zone as pzone
from tests.conftest import example_pillar, require_binary
from tests.integration.conftest import masterless

SERVERS = ("bind", "nsd", "knot")
IDS = {s: f"nsz-{s}.paphosting.test" for s in SERVERS}
FQDN = {"bind": "ns1.paphosting.net", "nsd": "ns2.paphosting.net", "knot": "ns3.paphosting.net"}
ROT = "http0.l.paphosting.nl"
LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
CUSTOMERS = 300
STATIC = 5  # zones with nothing on the rotation: a failover must not touch them


def customer_zone(i):
    name = f"customer{i:04d}.example"
    return name, {
        "records": {
            "@": [
                {"type": "MX", "data": f"10 mail.{name}."},
                {"type": "TXT", "data": '"v=spf1 mx -all"'},
            ],
            "mail": [{"type": "A", "data": f"198.18.{i >> 8}.{i & 255}"}],
            "ftp": [{"type": "CNAME", "data": f"www.{name}."}],
            "_dmarc": [{"type": "TXT", "data": '"v=DMARC1; p=none"'}],
        }
    }


def platform_pillar(net):
    pillar = example_pillar()
    pillar.pop("metrics")  # the exporters of the example's own servers
    pillar["nameservers"] = {IDS[s]: dict(v) for s, v in net.items()}
    pillar["health"]["watchers"] = list(pillar["nameservers"])
    for i in range(CUSTOMERS):
        name, value = customer_zone(i)
        pillar["zones"][name] = value
        pillar["services"][f"c{i:04d}"] = {
            "type": "stateless",
            "hostnames": [name, f"www.{name}"],
            "rotation": ROT,
            "port": 8000,
            "servers": [{"name": "web1.paphosting.net"}],
        }
    for i in range(STATIC):
        pillar["zones"][f"static{i}.example"] = {
            "records": {"www": [{"type": "A", "data": "198.19.0.1"}]}
        }
    return pillar


@pytest.fixture(scope="module")
def net(loopback):
    out = {}
    for server in SERVERS:
        address = "127.0.0.1" if server == "bind" else loopback.address()
        out[server] = {
            "address": address,
            "port": loopback.udp_tcp_port(address),
            "server": server,
            "fqdn": FQDN[server],
        }
    out["bind"]["control_port"] = loopback.port("127.0.0.1")
    return out


@pytest.fixture(scope="module")
def minions(salt_factories, tmp_path_factory, net):
    for binary in ("named", "nsd", "knotd", "rndc", "nsd-control", "knotc"):
        require_binary(binary)
    pillar_dir = tmp_path_factory.mktemp("many-pillar")
    (pillar_dir / "top.sls").write_text("base:\n  '*':\n    - paphosting\n")
    (pillar_dir / "paphosting.sls").write_text(yaml.safe_dump({"paphosting": platform_pillar(net)}))
    fileroot = file_root(tmp_path_factory.mktemp("many-fileroot"))
    out = {}
    for server in SERVERS:
        root = tmp_path_factory.mktemp(f"z-{server}")
        loaders = masterless(
            salt_factories, IDS[server], pillar_dir, fileroot, root, f"salt.loaded.many{server}"
        )
        out[server] = (loaders, root)
    platform = model.parse(platform_pillar(net))
    try:
        for loaders, _ in out.values():
            ret = loaders.modules.state.sls("nameserver")
            assert not ret.failed, [(r.id, r.comment) for r in ret if r.result is False]
        yield out
    finally:
        for server, (_, root) in out.items():
            pdaemon.stop(dnsserver.daemon(platform.nameservers[IDS[server]], str(root)))


def apex_addresses(ns, zone):
    query = dns.message.make_query(zone + ".", "A")
    query.flags &= ~dns.flags.RD
    resp = dns.query.udp(query, ns["address"], port=ns["port"], timeout=2)
    return sorted(rd.to_text() for rr in resp.answer if rr.rdtype == dns.rdatatype.A for rd in rr)


def snapshot(root, server, zones):
    """{zone: (serial, inode, mtime)} of the zone files."""
    lay = dnsserver.layout(server, str(root))
    out = {}
    for z in zones:
        path = os.path.join(lay["zone_dir"], f"{z}.zone")
        st = os.stat(path)
        with open(path, encoding="utf-8") as fh:
            out[z] = (pzone.serial_of(z, fh.read()), st.st_ino, st.st_mtime_ns)
    return out


def test_a_failover_and_recovery_reach_every_zone_on_every_server(minions, net):
    platform = model.parse(platform_pillar(net))
    customers = sorted(z for z in platform.zones if z.startswith("customer"))
    static = sorted(z for z in platform.zones if z.startswith("static"))
    addr = {lb: platform.loadbalancers[lb].address for lb in (LB1, LB2)}
    before = {s: snapshot(root, s, platform.zones) for s, (_, root) in minions.items()}
    steps = [([LB2], [addr[LB2]]), ([LB1, LB2], sorted(addr.values()))]
    for members, answer in steps:
        for server, (loaders, _) in minions.items():
            out = loaders.modules.dns_zone.apply_all(members={ROT: members})
            errors = {z: e["error"] for z, e in out.items() if e["error"]}
            assert errors == {}, (server, errors)
            written = sorted(z for z, e in out.items() if e["written"])
            # Every zone holding the rotation's records, and nothing else.
            assert written == sorted(customers + ["paphosting.nl"]), server
        for server, ns in net.items():
            wrong = {z: got for z in customers + [ROT] if (got := apex_addresses(ns, z)) != answer}
            assert wrong == {}, (server, members, list(wrong.items())[:3])
        after = {s: snapshot(root, s, platform.zones) for s, (_, root) in minions.items()}
        for server in SERVERS:
            for z in customers:
                assert pzone.serial_gt(after[server][z][0], before[server][z][0]), (server, z)
            for z in static:
                assert after[server][z] == before[server][z], (server, z, "rewritten")
        before = after


def test_a_no_change_apply_of_every_zone_writes_nothing(minions, net):
    platform = model.parse(platform_pillar(net))
    before = {s: snapshot(root, s, platform.zones) for s, (_, root) in minions.items()}
    for server, (loaders, root) in minions.items():
        ret = loaders.states.dns_zone.managed(name="nameserver-zones", zones="all")
        assert ret.result is True, ret.comment
        assert ret.changes == {}
        assert snapshot(root, server, platform.zones) == before[server]


def file_view(root, zone):
    """``(serial, apex addresses)`` of a zone's file."""
    with open(dnsserver.zone_path("knot", zone, str(root)), encoding="utf-8") as fh:
        wanted = pzone.parse_text(zone, fh.read())
    apex = wanted.rrsets.get((dns.name.empty, dns.rdatatype.A))
    return wanted.soa[0].serial, sorted(rd.to_text() for rd in apex or ())


def test_knot_takes_a_failover_as_updates_and_its_files_then_say_the_same(minions, net):
    """Knot serves a rotation change through RFC 2136 updates (paphosting.dnsupdate), then the
    files get the same content: a reload from them changes nothing. Where an update cannot be
    used (no key; the server does not serve what the file holds) the zone goes the file way."""
    loaders, root = minions["knot"]
    ns = net["knot"]
    platform = model.parse(platform_pillar(net))
    knot = platform.nameservers[IDS["knot"]]
    rotated = sorted(z for z in platform.zones if z.startswith("customer")) + ["paphosting.nl"]
    lb1 = [platform.loadbalancers[LB1].address]
    out = loaders.modules.dns_zone.apply_all(members={ROT: [LB1]})
    assert {z: out[z]["reloaded"] for z in rotated} == dict.fromkeys(
        rotated, "updated (RFC 2136)"
    ), out[rotated[0]]
    assert [z for z in rotated if not out[z]["written"] or out[z]["error"]] == []
    views = {z: file_view(root, z) for z in rotated}
    assert {v[1][0] for v in views.values()} == set(lb1) and all(
        len(v[1]) == 1 for v in views.values()
    )
    served = dnsserver.served_serials(knot, rotated)
    assert served == {z: v[0] for z, v in views.items()}
    for argv in dnsserver.zones_reload_commands(knot, rotated, str(root)):
        dnsserver.run_control(argv)
    assert dnsserver.served_serials(knot, rotated) == served
    assert {z: apex_addresses(ns, z) for z in rotated[:20]} == dict.fromkeys(rotated[:20], lb1)

    # The server serves something else than the file (a newer serial for one zone, as a restored
    # backup of the file would leave it): that zone is reloaded from its new file, the serial
    # still goes up; the others are updated.
    odd = rotated[0]
    key = dnsupdate.read_key(dnsserver.layout(knot, str(root))["update_key"])
    with open(dnsserver.zone_path(knot, odd, str(root)), encoding="utf-8") as fh:
        text = fh.read()
    bumped = served[odd] + 5
    assert dnsupdate.apply(
        ns["address"], ns["port"], key, {odd: (text, served[odd], bumped, {})}
    ) == {odd: None}
    both = sorted(platform.loadbalancers[lb].address for lb in (LB1, LB2))
    out = loaders.modules.dns_zone.apply_all(members={ROT: [LB1, LB2]})
    assert out[odd]["reloaded"] == "reloaded" and "update" not in out[odd]
    assert (
        out[odd]["serial"]["new"] > bumped
        and dnsserver.served_serial(knot, odd) == out[odd]["serial"]["new"]
    )
    assert {out[z]["reloaded"] for z in rotated[1:]} == {"updated (RFC 2136)"}
    assert {z: apex_addresses(ns, z) for z in rotated} == dict.fromkeys(rotated, both)

    # Without its update key the failover still reaches every zone, from the files, and says why.
    key_path = dnsserver.layout(knot, str(root))["update_key"]
    os.rename(key_path, key_path + ".away")
    try:
        out = loaders.modules.dns_zone.apply_all(members={ROT: [LB2]})
    finally:
        os.rename(key_path + ".away", key_path)
    assert {out[z]["reloaded"] for z in rotated} == {"reloaded"}
    assert (
        out[rotated[1]]["update"]
        == f"not updated (no update key in {key_path}): reloaded from its file instead"
    )
    lb2 = [platform.loadbalancers[LB2].address]
    assert {z: apex_addresses(ns, z) for z in rotated} == dict.fromkeys(rotated, lb2)
    out = loaders.modules.dns_zone.apply_all(members={ROT: [LB1, LB2]})
    assert {out[z]["reloaded"] for z in rotated} == {"updated (RFC 2136)"}
