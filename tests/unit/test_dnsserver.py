"""Server layouts, configs and control commands for BIND, NSD and Knot (pure: nothing is run)."""

import re

import pytest

from paphosting import dnsserver, model
from tests.conftest import output_with_hash_seed
from tests.unit import platforms

ROOT = "/srv/sandbox"
HASH_SEEDS = range(1, 7)


def three_servers():
    """One nameserver of each kind: ns1 BIND, ns2 NSD, ns3 Knot."""
    return platforms.pillar(servers=platforms.EVERY_SERVER)


def platform(**ns1):
    """Three servers and the zones paphosting.nl and paphosting.net; ``ns1`` updates BIND's entry
    (no control_port unless given)."""
    pillar = three_servers()
    pillar["nameservers"]["ns1.paphosting.net"].update(ns1)
    pillar["zones"]["paphosting.net"] = {}
    return model.parse(pillar)


NS = {"bind": "ns1.paphosting.net", "nsd": "ns2.paphosting.net", "knot": "ns3.paphosting.net"}


@pytest.mark.parametrize("server", ["bind", "nsd", "knot"])
def test_layout_lives_under_the_root(server):
    lay = dnsserver.layout(server, ROOT)
    for key in ("config", "zone_dir", "pidfile", "log"):
        assert lay[key].startswith(ROOT + "/"), key
    assert all(d.startswith(ROOT + "/") for d in lay["dirs"])
    assert all(
        v.startswith(ROOT + "/")
        for k, v in lay["control"].items()
        if k in ("socket", "key", "conf")
    )
    assert (
        dnsserver.layout(server)["config"]
        == {
            "bind": "/etc/bind/named.conf",
            "nsd": "/etc/nsd/nsd.conf",
            "knot": "/etc/knot/knot.conf",
        }[server]
    )
    assert lay["unit"] == {"bind": "named", "nsd": "nsd", "knot": "knot"}[server]


def test_bind_control_is_on_loopback_with_a_key():
    p = platform()
    ctl = dnsserver.layout(p.nameservers[NS["bind"]], ROOT)["control"]
    assert (ctl["address"], ctl["port"]) == ("127.0.0.1", 953)
    ctl = dnsserver.layout(platform(control_port=5301).nameservers[NS["bind"]], ROOT)["control"]
    assert ctl["port"] == 5301
    conf = dnsserver.render_config(platform(control_port=5301), NS["bind"], ROOT)
    assert 'inet 127.0.0.1 port 5301 allow { 127.0.0.0/8; ::1; } keys { "rndc-key"; };' in conf
    assert f'include "{ROOT}/etc/bind/rndc.key";' in conf
    rndc = dnsserver.rndc_conf(platform(control_port=5301).nameservers[NS["bind"]], ROOT)
    assert "default-server 127.0.0.1;" in rndc and "default-port 5301;" in rndc


def test_bind_config_is_closed_by_default():
    p = platform()
    conf = dnsserver.render_config(p, NS["bind"], ROOT)
    for line in (
        "allow-transfer { none; };",
        "allow-update { none; };",
        "recursion no;",
        "notify no;",
        f"listen-on port 5300 {{ {p.nameservers[NS['bind']].address}; }};",
        "listen-on-v6 port 5300 { none; };",
    ):
        assert f"\t{line}\n" in conf
    assert (
        f'zone "paphosting.nl" {{\n\ttype primary;\n\tfile "{ROOT}/etc/bind/zones/paphosting.nl.zone";\n}};'
        in conf
    )
    assert conf.index('zone "paphosting.net"') < conf.index('zone "paphosting.nl"')


def test_nsd_config_is_closed_by_default():
    conf = dnsserver.render_config(platform(), NS["nsd"], ROOT)
    assert "\tip-address: 127.0.3.2@5300\n" in conf
    assert "provide-xfr" not in conf and "allow-notify" not in conf
    assert f'\tcontrol-interface: "{ROOT}/run/nsd/nsd.ctl"\n' in conf
    assert f'\tzonefile: "{ROOT}/etc/nsd/zones/paphosting.nl.zone"\n' in conf
    assert '\tusername: ""\n' in conf  # process mode: no privilege drop


def test_knot_config_is_closed_by_default():
    conf = dnsserver.render_config(platform(), NS["knot"], ROOT)
    assert "    listen: 127.0.3.3@5300\n" in conf
    assert "remote" not in conf and "transfer" not in conf and "notify" not in conf
    # One acl: updates (the failover's, paphosting.dnsupdate), with the server's own key, from
    # its own address only.
    assert conf.count("  - id: ") == 2 and "    action: update\n" in conf
    assert "    address: 127.0.3.3\n    key: paphosting-update\n" in conf
    assert f'include: "{ROOT}/etc/knot/paphosting-update.key"\n' in conf
    assert f'    listen: "{ROOT}/run/knot/knot.sock"\n' in conf
    assert "    zonefile-sync: -1\n" in conf  # Knot never rewrites the zone files Salt owns
    assert '  - domain: "paphosting.nl"\n' in conf


def test_systemd_mode_logs_to_the_system_log():
    pillar = three_servers()
    pillar["settings"]["service_mode"] = "systemd"
    p = model.parse(pillar)
    assert "logging {" not in dnsserver.render_config(p, NS["bind"], "/")
    nsd = dnsserver.render_config(p, NS["nsd"], "/")
    assert "logfile" not in nsd and "username" not in nsd
    assert "  - target: syslog\n" in dnsserver.render_config(p, NS["knot"], "/")


def test_ipv6_nameserver():
    conf = dnsserver.render_config(platform(address="2001:db8::53"), NS["bind"], ROOT)
    assert "\tlisten-on port 5300 { none; };\n\tlisten-on-v6 port 5300 { 2001:db8::53; };\n" in conf
    assert (
        dnsserver.layout(platform(address="2001:db8::53").nameservers[NS["bind"]])["control"][
            "address"
        ]
        == "::1"
    )


def test_configs_do_not_depend_on_the_pillar_order():
    pillar = three_servers()
    pillar["zones"]["paphosting.net"] = {}
    for key in ("nameservers", "zones", "loadbalancers"):
        pillar[key] = dict(reversed(list(pillar[key].items())))
    reordered = model.parse(pillar)
    for ns in NS.values():
        assert dnsserver.render_config(reordered, ns, ROOT) == dnsserver.render_config(
            platform(), ns, ROOT
        )


def test_configs_do_not_depend_on_the_hash_seed():
    """Fresh interpreters with different hash seeds render the same configs: compared with each
    other (a fixed set of seeds, so the verdict does not hang on this process's random seed) and
    with this process."""
    code = (
        "from paphosting import dnsserver\n"
        "from tests.unit.test_dnsserver import NS, ROOT, platform\n"
        "p = platform()\n"
        "print({s: dnsserver.render_config(p, ns, ROOT) for s, ns in NS.items()}, end='')\n"
    )
    here = repr({s: dnsserver.render_config(platform(), ns, ROOT) for s, ns in NS.items()})
    renders = {seed: output_with_hash_seed(code, seed) for seed in HASH_SEEDS}
    assert renders == dict.fromkeys(HASH_SEEDS, here)


def test_control_commands(monkeypatch):
    monkeypatch.setattr(dnsserver, "binary", lambda name: f"/usr/sbin/{name}")
    p = platform()
    bind, nsd, knot = (p.nameservers[NS[s]] for s in ("bind", "nsd", "knot"))
    assert dnsserver.zone_reload_command(bind, "paphosting.nl", ROOT) == (
        "/usr/sbin/rndc",
        "-c",
        f"{ROOT}/etc/bind/rndc.conf",
        "reload",
        "paphosting.nl",
    )
    assert dnsserver.zone_reload_command(nsd, "paphosting.nl", ROOT) == (
        "/usr/sbin/nsd-control",
        "-c",
        f"{ROOT}/etc/nsd/nsd.conf",
        "reload",
        "paphosting.nl",
    )
    assert dnsserver.zone_reload_command(knot, "paphosting.nl", ROOT) == (
        "/usr/sbin/knotc",
        "-s",
        f"{ROOT}/run/knot/knot.sock",
        "-b",
        "zone-reload",
        "paphosting.nl",
    )
    assert [c[-1] for c in dnsserver.reload_commands(nsd, ROOT)] == ["reconfig", "reload"]
    d = dnsserver.daemon(knot, ROOT)
    assert d.command == ("/usr/sbin/knotd", "-c", f"{ROOT}/etc/knot/knot.conf", "-d")
    assert d.pidfile == f"{ROOT}/run/knot/knot.pid" and not d.foreground


def test_rndc_key_is_random_and_well_formed():
    a, b = dnsserver.rndc_key(), dnsserver.rndc_key()
    assert a != b
    assert re.fullmatch(
        r'key "rndc-key" \{\n\talgorithm hmac-sha256;\n\tsecret "[A-Za-z0-9+/]{43}=";\n\};\n', a
    )


def test_unknown_server_kind():
    with pytest.raises(Exception, match="'powerdns' is not a DNS server"):
        dnsserver.layout("powerdns")


def test_the_soa_query_and_serial_are_read_off_the_wire_as_dnspython_would():
    import dns.message
    import dns.rrset

    query = dnsserver.soa_query_wire(4711, "Customer00001.example")
    expected = dns.message.make_query("Customer00001.example.", "SOA", id=4711)
    expected.flags = 0
    assert query == expected.to_wire()
    for compress in (True, False):
        resp = dns.message.make_response(dns.message.from_wire(query))
        resp.answer.append(
            dns.rrset.from_text(
                "customer00001.example.",
                300,
                "IN",
                "SOA",
                "ns1.paphosting.net. hostmaster.customer00001.example. 2026120417 3600 600 1209600 300",
            )
        )
        wire = resp.to_wire() if compress else resp.to_wire(max_size=65535, origin=None)
        assert dnsserver.soa_serial_from_wire(wire) == (4711, 2026120417)
    refused = dns.message.make_response(dns.message.from_wire(query))
    refused.set_rcode(5)
    assert dnsserver.soa_serial_from_wire(refused.to_wire()) == (4711, None)
    assert dnsserver.soa_serial_from_wire(b"\x00") == (None, None)
