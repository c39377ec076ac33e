"""The pillar model: every invalid value is rejected with its pillar path and a reason."""

import copy
import datetime
import json

import pytest
import salt.utils.yamlloader
import yaml

from paphosting import haproxy, model
from paphosting.errors import InvalidPillar
from tests.conftest import example_pillar
from tests.unit import platforms

LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
WEB1 = "web1.paphosting.net"


def full_pillar():
    """BIND, NSD and Knot, three webservers, the services www and shop."""
    return platforms.pillar(servers=platforms.EVERY_SERVER, webservers=3, shop=True)


def test_the_shipped_example_pillar_is_valid_and_is_what_its_header_says():
    """The only unit test that reads pillar/paphosting.sls: the documented example parses, and
    holds what its header and docs/architecture.md describe. Every other test builds its own
    platform (tests/unit/platforms.py)."""
    p = model.parse(example_pillar())
    assert sorted(p.loadbalancers) == [LB1, LB2]
    assert len(p.nameservers) == 3 and len(p.webservers) == 3
    assert {ns.server for ns in p.nameservers.values()} == {"bind", "nsd", "knot"}
    assert p.rotations["http0.l.paphosting.nl"].ttl == 300
    assert p.services["www"].type == "stateless" and len(p.services["www"].servers) >= 2
    shop = p.services["shop"]
    assert [s.role for s in shop.servers] == ["primary", "backup"]


def test_whole_pillar_or_value():
    assert model.parse({"paphosting": full_pillar()}) == model.parse(full_pillar())


def test_defaults_are_sane():
    p = model.parse(full_pillar())
    www = p.services["www"]
    assert (www.check.inter, www.check.fall, www.check.rise) == (2000, 3, 2)
    assert p.health.quorum == 2  # majority of 3 watchers
    assert p.loadbalancers[LB1].health_path == "/haproxy-health"


def test_cookie_value_depends_only_on_service_and_server():
    p = model.parse(full_pillar())
    cookies = {s.name: haproxy.cookie_value("shop", s.name) for s in p.services["shop"].servers}
    assert cookies[WEB1] == "shop-web1_paphosting_net"
    assert len(set(cookies.values())) == len(cookies)


def _set(path, value):
    def mutate(d):
        *head, last = path
        for k in head:
            d = d[k]
        d[last] = value

    return mutate


def _delete(path):
    def mutate(d):
        *head, last = path
        for k in head:
            d = d[k]
        del d[last]

    return mutate


ZONE = "paphosting.nl"
ZP = f"paphosting:zones:{ZONE}:records"
A_RECORD = {"type": "A", "data": "127.0.0.9"}


def _bad_records(case, owner, records, under, reason):
    """A row of BAD: ``records`` at ``owner`` in paphosting.nl are refused, at the owner's pillar
    path followed by ``under``, for ``reason``."""
    return (case, _set(("zones", ZONE, "records", owner), records), f"{ZP}:{owner}{under}", reason)


BAD = [
    # (id, mutation, pillar path expected in the message, reason fragment)
    (
        "malformed address",
        _set(("loadbalancers", LB1, "address"), "127.0.1.300"),
        f"paphosting:loadbalancers:{LB1}:address",
        "not a valid IP address",
    ),
    (
        "ipv6 in address",
        _set(("loadbalancers", LB1, "address"), "::1"),
        f"paphosting:loadbalancers:{LB1}:address",
        "not an IPv4 address",
    ),
    (
        "ipv6 zone index",
        _set(("loadbalancers", LB1, "address6"), "fe80::1%eth0"),
        f"paphosting:loadbalancers:{LB1}:address6",
        "an IPv6 zone index (%...) names a local interface",
    ),
    (
        "unspecified address",
        _set(("nameservers", "ns2.paphosting.net", "address"), "0.0.0.0"),
        "paphosting:nameservers:ns2.paphosting.net:address",
        "'0.0.0.0' is not one machine's address",
    ),
    (
        "multicast address",
        _set(("webservers", WEB1, "address"), "224.0.0.1"),
        f"paphosting:webservers:{WEB1}:address",
        "is not one machine's address",
    ),
    (
        "broadcast address",
        _set(("loadbalancers", LB1, "address"), "255.255.255.255"),
        f"paphosting:loadbalancers:{LB1}:address",
        "is not one machine's address",
    ),
    (
        "control_port on a server that is not BIND",
        _set(("nameservers", "ns3.paphosting.net", "control_port"), 9953),
        "paphosting:nameservers:ns3.paphosting.net:control_port",
        "applies to BIND only, not to knot",
    ),
    (
        "record data YAML read as a number",
        _set(("zones", ZONE, "records", "t"), [{"type": "TXT", "data": 0x10}]),
        f"{ZP}:t:0:data",
        "must be a string, got the number 16",
    ),
    (
        "zone NS listed twice",
        _set(("zones", ZONE, "ns"), ["ns1.paphosting.net", "NS1.paphosting.net."]),
        f"paphosting:zones:{ZONE}:ns:1",
        "ns1.paphosting.net is listed twice",
    ),
    (
        "duplicate address",
        _set(("webservers", "web2.paphosting.net", "address"), "127.0.2.1"),
        "paphosting:webservers:web2.paphosting.net:address",
        "already the address of webservers",
    ),
    (
        "address shared across roles",
        _set(("loadbalancers", LB2, "address"), "127.0.2.3"),
        "address",
        "already the address of",
    ),
    (
        "port out of range",
        _set(("services", "www", "port"), 70000),
        "paphosting:services:www:port",
        "70000 is out of range 1..65535",
    ),
    (
        "port zero",
        _set(("haproxy", "http_port"), 0),
        "paphosting:haproxy:http_port",
        "out of range",
    ),
    (
        "port as string",
        _set(("nameservers", "ns1.paphosting.net", "port"), "53"),
        "paphosting:nameservers:ns1.paphosting.net:port",
        "must be an integer",
    ),
    (
        "unknown webserver",
        _set(("services", "www", "servers", 0, "name"), "web9.paphosting.net"),
        "paphosting:services:www:servers:web9.paphosting.net:name",
        "not a webserver",
    ),
    (
        "server listed twice",
        _set(("services", "www", "servers", 1, "name"), WEB1),
        f"paphosting:services:www:servers:{WEB1}:name",
        "listed twice",
    ),
    (
        "hostname used by two services",
        _set(("services", "shop", "hostnames"), ["www.paphosting.nl"]),
        "paphosting:services:shop:hostnames:0",
        "already a hostname of service 'www'",
    ),
    (
        "rotation member twice",
        _set(("rotations", "http0.l.paphosting.nl", "members"), [LB1, LB1]),
        "paphosting:rotations:http0.l.paphosting.nl:members:1",
        "listed twice",
    ),
    (
        "a name inside the mapping form of servers that is not its key",
        _set(("services", "www", "servers"), {WEB1: {"name": "web2.paphosting.net"}}),
        f"paphosting:services:www:servers:{WEB1}:name",
        f"'web2.paphosting.net' is not the server the key names ('{WEB1}')",
    ),
    (
        "stateful without primary",
        _set(("services", "shop", "servers", 0, "role"), "backup"),
        "paphosting:services:shop:servers",
        "exactly one primary, found 0",
    ),
    (
        "stateful with two primaries",
        _set(("services", "shop", "servers", 1, "role"), "primary"),
        "paphosting:services:shop:servers",
        "exactly one primary, found 2",
    ),
    (
        "stateful server without role",
        _delete(("services", "shop", "servers", 1, "role")),
        "paphosting:services:shop:servers:web2.paphosting.net:role",
        "is required",
    ),
    ("unknown top key", _set(("loadbalancer",), {}), "paphosting:loadbalancer", "unknown key"),
    (
        "typo in service key",
        _set(("services", "www", "helthcheck"), {}),
        "paphosting:services:www:helthcheck",
        "unknown key",
    ),
    (
        "typo in check key",
        _set(("services", "www", "check", "intervall"), 5),
        "paphosting:services:www:check:intervall",
        "unknown key",
    ),
    (
        "newline in check path",
        _set(("services", "www", "check", "path"), "/health\n  server evil 1.2.3.4:80"),
        "paphosting:services:www:check:path",
        "newline or control character",
    ),
    (
        "space in check path",
        _set(("services", "www", "check", "path"), "/health HTTP/1.1"),
        "paphosting:services:www:check:path",
        "not a valid HTTP path",
    ),
    (
        "hash in check path",
        _set(("services", "www", "check", "path"), "/x#y"),
        "paphosting:services:www:check:path",
        "not a valid HTTP path",
    ),
    (
        "quote in cookie name",
        _set(("services", "shop", "cookie_name"), 'SRV"x'),
        "paphosting:services:shop:cookie_name",
        "not a valid cookie name",
    ),
    (
        "control char in hostname",
        _set(("services", "www", "hostnames", 0), "www\x00.paphosting.nl"),
        "paphosting:services:www:hostnames:0",
        "control character",
    ),
    (
        "space in hostname",
        _set(("services", "www", "hostnames", 0), "www paphosting.nl"),
        "paphosting:services:www:hostnames:0",
        "not a valid hostname",
    ),
    (
        "bad service name",
        lambda d: d["services"].__setitem__("bad name", d["services"].pop("www")),
        "paphosting:services:bad name",
        "not a valid service name",
    ),
    (
        "uppercase minion id",
        lambda d: d["webservers"].__setitem__("Web4", {"address": "127.0.2.9"}),
        "paphosting:webservers:Web4",
        "not a valid minion id",
    ),
    (
        "bad service type",
        _set(("services", "www", "type"), "sticky"),
        "paphosting:services:www:type",
        "not one of stateless, stateful",
    ),
    (
        "failback on stateless",
        _set(("services", "www", "failback"), "manual"),
        "paphosting:services:www:failback",
        "only applies to a stateful service",
    ),
    (
        "bad failback",
        _set(("services", "shop", "failback"), "never"),
        "paphosting:services:shop:failback",
        "not one of auto, manual",
    ),
    (
        "rotation with unknown lb",
        _set(("rotations", "http0.l.paphosting.nl", "members"), ["lb9"]),
        "paphosting:rotations:http0.l.paphosting.nl:members:0",
        "not a load balancer",
    ),
    (
        "service with unknown rotation",
        _set(("services", "www", "rotation"), "http9.l.paphosting.nl"),
        "paphosting:services:www:rotation",
        "not a rotation",
    ),
    (
        "bad dns server",
        _set(("nameservers", "ns1.paphosting.net", "server"), "powerdns"),
        "paphosting:nameservers:ns1.paphosting.net:server",
        "not one of bind, nsd, knot",
    ),
    (
        "ttl too large",
        _set(("rotations", "http0.l.paphosting.nl", "ttl"), 2**31),
        "paphosting:rotations:http0.l.paphosting.nl:ttl",
        "out of range 0..2147483647",
    ),
    (
        "negative ttl",
        _set(("zones", "paphosting.nl", "ttl"), -1),
        "paphosting:zones:paphosting.nl:ttl",
        "out of range",
    ),
    _bad_records(
        "cname at apex",
        "@",
        [{"type": "CNAME", "data": "x.example."}],
        ":0",
        "CNAME is not allowed at the zone apex",
    ),
    _bad_records(
        "cname beside other data",
        "mail",
        [A_RECORD, {"type": "CNAME", "data": "x.example."}],
        "",
        "CNAME cannot stand beside other data",
    ),
    _bad_records("out of zone owner", "www.example.com.", [A_RECORD], "", "out of zone"),
    _bad_records("invalid owner", "bad owner", [A_RECORD], "", "not a valid owner name"),
    _bad_records(
        "bad rdata", "mail", [{"type": "A", "data": "not-an-ip"}], ":0:data", "not valid A data"
    ),
    _bad_records(
        "unbalanced quotes",
        "txt",
        [{"type": "TXT", "data": '"abc'}],
        ":0:data",
        "unbalanced quotes",
    ),
    _bad_records(
        "newline in txt", "txt", [{"type": "TXT", "data": '"a"\n@ NS evil.'}], ":0:data", "newline"
    ),
    (
        "hostname outside zones",
        _set(("services", "www", "hostnames"), ["www.example.com"]),
        "paphosting:services:www:hostnames:0",
        "not inside any zone",
    ),
    (
        "unknown watcher",
        _set(("health", "watchers"), ["ns9"]),
        "paphosting:health:watchers:0",
        "not a server",
    ),
    (
        "quorum too big",
        _set(("health", "quorum"), 4),
        "paphosting:health:quorum",
        "out of range 1..3",
    ),
    (
        "min_members above members",
        _set(("rotations", "http0.l.paphosting.nl", "min_members"), 3),
        "paphosting:rotations:http0.l.paphosting.nl:min_members",
        "more than the 2 members",
    ),
    (
        "platform-wide min_members above a rotation's members",
        _set(("health", "min_members"), 3),
        "paphosting:health:min_members",
        "3 is more than the 2 members of rotation http0.l.paphosting.nl",
    ),
    (
        "no load balancers",
        _set(("loadbalancers",), {}),
        "paphosting:loadbalancers",
        "at least one load balancer",
    ),
    (
        "no hostnames",
        _set(("services", "www", "hostnames"), []),
        "paphosting:services:www:hostnames",
        "at least one hostname",
    ),
    (
        "empty rotation",
        _set(("rotations", "http0.l.paphosting.nl", "members"), []),
        "paphosting:rotations:http0.l.paphosting.nl:members",
        "at least one member",
    ),
    (
        "list instead of mapping",
        _set(("webservers",), ["web1"]),
        "paphosting:webservers",
        "must be a mapping",
    ),
]


@pytest.mark.parametrize("mutate,path,reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_invalid_pillar_names_path_and_reason(mutate, path, reason):
    data = full_pillar()
    mutate(data)
    with pytest.raises(InvalidPillar) as info:
        model.parse(data)
    messages = [str(e) for e in info.value.errors]
    assert any(path in m and reason in m for m in messages), messages


def test_all_errors_are_reported_at_once():
    data = full_pillar()
    data["services"]["www"]["port"] = 0
    data["loadbalancers"][LB1]["address"] = "nope"
    with pytest.raises(InvalidPillar) as info:
        model.parse(data)
    assert len(info.value.errors) == 2
    assert "invalid pillar (2 errors)" in str(info.value)


def test_input_is_not_modified():
    data = full_pillar()
    before = copy.deepcopy(data)
    model.parse(data)
    assert data == before


def test_salt_yaml_rejects_duplicate_names():
    """Duplicate mapping keys (two load balancers of one name) never reach the model: Salt's own
    SLS YAML loader refuses them, where plain PyYAML would silently keep the last one."""
    text = yaml.safe_dump({"paphosting": platforms.pillar()}, sort_keys=False).replace(
        "    lb2.paphosting.net:\n", "    lb1.paphosting.net:\n", 1
    )
    assert yaml.safe_load(text)  # plain PyYAML would swallow it
    with pytest.raises(
        yaml.constructor.ConstructorError, match="conflicting ID 'lb1.paphosting.net'"
    ):
        yaml.load(text, Loader=salt.utils.yamlloader.SaltYamlSafeLoader)  # noqa: S506


def test_roles_and_zone_of():
    p = model.parse(full_pillar())
    assert p.roles(LB1) == ["loadbalancer"]
    assert p.roles("ns1.paphosting.net") == ["nameserver"]
    assert p.roles("nobody") == []
    assert p.zone_of("http0.l.paphosting.nl") == "paphosting.nl"
    assert p.zone_of("www.example.com") is None


def test_digest_is_the_same_for_the_same_platform_only():
    pillar = full_pillar()
    again = copy.deepcopy(pillar)
    assert model.digest(pillar) == model.digest(again)
    # Key order does not matter; any value does.
    assert model.digest(dict(reversed(list(pillar.items())))) == model.digest(pillar)
    again["rotations"]["http0.l.paphosting.nl"]["ttl"] = 301
    assert model.digest(again) != model.digest(pillar)
    assert model.digest(None) != model.digest({})


# --- record data: what is written is served exactly, or refused with its path ------------------


def _records(**owners):
    data = full_pillar()
    data["zones"][ZONE].setdefault("records", {}).update(owners)
    return data


def _errors(data):
    with pytest.raises(InvalidPillar) as info:
        model.parse(data)
    return [str(e) for e in info.value.errors]


@pytest.mark.parametrize(
    "rtype, data, reason",
    [
        # ';' starts a comment: the DKIM key would be cut at "v=DKIM1"
        ("TXT", "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEB", "';' starts a comment"),
        ("TXT", '"v=DKIM1" k=rsa; p=x', "';' starts a comment"),
        ("MX", "10 mail ; backup", "';' starts a comment"),
        # parentheses group lines and vanish
        ("TXT", "hello (world)", "'(' groups lines"),
        ("SRV", "0 1 443 (mail)", "'(' groups lines"),
        ("TXT", '"a")', "')' groups lines"),
        # a backslash escapes: \p is p, \. is a dot inside a label
        ("TXT", r'"C:\path"', "backslash"),
        ("TXT", r"C:\path", "backslash"),
        ("CNAME", r"www\.example.nl.", "backslash"),
        # unquoted words are separate strings, joined without spaces by SPF and DKIM readers
        ("TXT", "v=spf1 mx -all", "unquoted words"),
        ("TXT", '"v=spf1" mx', "unquoted words"),
        # '@', '$' and other specials inside a name are odd labels, not what was meant
        ("MX", "10 mail@paphosting.nl.", "not a host name label"),
        ("CNAME", "$ORIGIN", "not a host name label"),
        ("NS", "ns@", "not a host name label"),
        ("SRV", '0 1 443 "mail"', "not valid SRV data"),
    ],
)
def test_record_data_that_would_not_be_served_as_written_is_refused(rtype, data, reason):
    messages = _errors(_records(x=[{"type": rtype, "data": data}]))
    assert any(m.startswith(f"pillar {ZP}:x:0:data: {data!r}") and reason in m for m in messages), (
        messages
    )


def test_a_refused_txt_says_how_to_quote_it():
    (message,) = _errors(_records(dkim=[{"type": "TXT", "data": "v=DKIM1; k=rsa; p=AB"}]))
    assert "quote it, data: '\"v=DKIM1; k=rsa; p=AB\"'" in message


@pytest.mark.parametrize(
    "rtype, data",
    [
        ("TXT", '"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEB"'),
        ("TXT", '"v=spf1 mx -all"'),
        ("TXT", '"part one; (x)" "part two"'),
        ("TXT", r'"say \"hi\" \\ \009"'),
        ("TXT", "single-word"),
        ("MX", "10 @"),
        ("MX", "0 ."),
        ("MX", "10 mail.paphosting.nl."),
        ("SRV", "0 1 443 sip.paphosting.nl."),
        ("CNAME", "www"),
        ("CAA", '0 issue "letsencrypt.org"'),
    ],
)
def test_record_data_served_as_written_is_accepted(rtype, data):
    model.parse(_records(x=[{"type": rtype, "data": data}]))


# --- owner names are case-insensitive -----------------------------------------------------------


def test_an_owner_beside_a_service_hostname_clashes_whatever_its_case():
    """SHOP and the service hostname shop.paphosting.nl are one name: the record would be dropped."""
    messages = _errors(_records(SHOP=[{"type": "A", "data": "192.0.2.1"}]))
    assert any(
        m.startswith("pillar paphosting:services:shop:hostnames:0: shop.paphosting.nl also has")
        and f"{ZP}:SHOP (A)" in m
        for m in messages
    ), messages


def test_an_owner_beside_a_rotation_name_clashes_whatever_its_case():
    data = full_pillar()
    data["zones"][ZONE]["records"]["HTTP0.L"] = [{"type": "A", "data": "192.0.2.1"}]
    messages = _errors(data)
    assert any(f"{ZP}:HTTP0.L (A)" in m and "rotation name" in m for m in messages), messages


def test_a_cname_beside_the_same_name_in_another_case_is_refused_with_the_path():
    data = _records(
        MAIL=[{"type": "CNAME", "data": "web.paphosting.nl."}],
    )
    data["zones"][ZONE]["records"].setdefault("mail", []).append({"type": "A", "data": "192.0.2.9"})
    messages = _errors(data)
    assert any(
        m.startswith(f"pillar {ZP}:")
        and "a CNAME cannot stand beside other data" in m
        and "'MAIL'" in m
        and "'mail'" in m
        for m in messages
    ), messages


def test_owners_are_kept_in_lower_case():
    p = model.parse(_records(WWW2=[{"type": "A", "data": "192.0.2.1"}]))
    assert [r.owner for r in p.zones[ZONE].records if r.data == "192.0.2.1"] == ["www2"]


def test_zone_and_rotation_names_are_compared_in_lower_case():
    data = full_pillar()
    data["zones"]["PAPHOSTING.NL"] = {}
    assert any("zone paphosting.nl is listed twice" in m for m in _errors(data))
    data = full_pillar()
    data["rotations"]["HTTP0.L.paphosting.nl"] = {}
    assert any("http0.l.paphosting.nl is listed twice" in m for m in _errors(data))


# --- docs and code agree ------------------------------------------------------------------------


def test_a_stateful_service_needs_a_backup():
    data = full_pillar()
    data["services"]["shop"]["servers"] = [
        s for s in data["services"]["shop"]["servers"] if s.get("role") != "backup"
    ]
    assert any(
        m.startswith("pillar paphosting:services:shop:servers: a stateful service needs at least")
        for m in _errors(data)
    )


def test_one_minion_id_has_one_address_whatever_its_roles():
    data = full_pillar()
    data["webservers"][LB1] = {"address": "127.0.9.9"}
    assert any(
        m.startswith(f"pillar paphosting:webservers:{LB1}:address: 127.0.9.9 is not the address")
        for m in _errors(data)
    )
    data = full_pillar()
    data["webservers"][LB1] = {"address": data["loadbalancers"][LB1]["address"]}
    model.parse(data)  # one machine, two roles, one address: fine


def test_a_load_balancer_may_not_listen_where_a_nameserver_does():
    data = full_pillar()
    ns = data["nameservers"]["ns2.paphosting.net"]
    data["nameservers"][LB1] = {"address": "127.0.1.1", "port": 8080, "server": "nsd"}
    messages = _errors(data)
    assert any(
        m.startswith(f"pillar paphosting:loadbalancers:{LB1}:http_port: 127.0.1.1:8080 is where")
        for m in messages
    ), messages
    # a load balancer of another id on a nameserver's address
    data = full_pillar()
    data["loadbalancers"][LB2]["address"] = ns["address"]
    messages = _errors(data)
    assert messages == [
        f"pillar paphosting:nameservers:ns2.paphosting.net:address: {ns['address']} is already "
        f"the address of loadbalancers {LB2!r}"
    ]
    # BIND's rndc port on 127.0.0.1
    data = full_pillar()
    data["nameservers"]["ns1.paphosting.net"]["control_port"] = 9953
    data["loadbalancers"][LB2]["address"] = "127.0.0.1"
    data["loadbalancers"][LB2]["http_port"] = 9953
    messages = _errors(data)
    assert any("127.0.0.1:9953 is where nameserver" in m for m in messages), messages


def test_a_record_shadowed_by_a_managed_child_zone_is_refused():
    data = full_pillar()
    data["zones"]["sub.paphosting.nl"] = {}
    data["zones"][ZONE]["records"]["www.sub"] = [{"type": "A", "data": "192.0.2.1"}]
    messages = _errors(data)
    assert any(
        m.startswith(f"pillar {ZP}:www.sub: www.sub.paphosting.nl lies in the managed zone")
        for m in messages
    ), messages


def test_a_delegation_and_its_glue_are_not_shadowed():
    data = full_pillar()
    data["zones"]["sub.paphosting.nl"] = {"ns": ["ns1.sub.paphosting.nl"]}
    data["zones"][ZONE]["records"]["sub"] = [{"type": "NS", "data": "ns1.sub"}]
    data["zones"][ZONE]["records"]["ns1.sub"] = [{"type": "A", "data": "192.0.2.53"}]
    model.parse(data)


@pytest.mark.parametrize("key", ["evil\n  - pillar paphosting:ok: forged", "x\u2028y", "a\x85b"])
def test_a_key_with_a_line_break_is_shown_escaped(key):
    data = full_pillar()
    data["haproxy"][key] = 1
    data["zones"][ZONE]["records"][key] = [{"type": "A", "data": "192.0.2.1"}]
    text = str(pytest.raises(InvalidPillar, model.parse, data).value)
    assert repr(key) in text
    assert not any(sep in text for sep in ("\u2028", "\x85", "\n  - pillar paphosting:ok"))


# --- haproxy's file descriptors -----------------------------------------------------------------


def test_maxconn_beyond_the_file_descriptor_limit_is_refused():
    data = full_pillar()
    data["haproxy"]["maxconn"] = 600_000
    data["haproxy"]["fd_limit"] = 65536
    messages = _errors(data)
    assert any(
        m.startswith(
            "pillar paphosting:haproxy:maxconn: maxconn 600000 needs 1200261 file descriptors on "
            f"{LB1}"
        )
        and "more than the 65536 haproxy may open there (paphosting:haproxy:fd_limit)" in m
        for m in messages
    ), messages
    data["haproxy"]["maxconn"] = 32000
    model.parse(data)


def test_the_default_limit_is_what_the_load_balancer_runs_with(monkeypatch):
    import resource
    import subprocess
    import sys

    from paphosting import haproxy
    from tests.conftest import REPO

    # In process mode haproxy inherits the hard limit of whoever starts it: a process of its own
    # with a known finite limit (this machine's may be unlimited), so the check always runs.
    hard = 4096
    code = (
        "import json, sys; sys.path[:0] = sys.argv[1:3];"
        "from tests.unit import platforms; from paphosting import model;"
        "from paphosting.errors import InvalidPillar;"
        "data = platforms.pillar(servers=platforms.EVERY_SERVER, webservers=3, shop=True);"
        "data['haproxy']['maxconn'] = int(sys.argv[3]);"
        "data['settings'] = {'service_mode': 'process'};"
        "\ntry:\n    model.parse(data); print('[]')"
        "\nexcept InvalidPillar as exc:\n    print(json.dumps([str(e) for e in exc.errors]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "_utils"), str(REPO), str(hard // 2)],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)),
    )
    messages = json.loads(run.stdout)
    assert any(
        f"more than the {hard} haproxy may open there (the default of "
        "paphosting:haproxy:fd_limit for service_mode process)" in m
        for m in messages
    ), messages
    # No finite hard limit: as much as the kernel lets a root process raise itself to.
    monkeypatch.setattr(
        resource, "getrlimit", lambda _: (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    )
    assert haproxy.default_fd_limit("process") == haproxy.NR_OPEN_DEFAULT
    # The same platform under systemd: haproxy raises its own limit, the pillar is valid.
    data = full_pillar()
    data["haproxy"]["maxconn"] = hard // 2
    data["settings"] = {"service_mode": "systemd"}
    for lb in data["loadbalancers"].values():
        lb.pop("service_mode", None)
    assert haproxy.default_fd_limit("systemd") == 1048576
    model.parse(data)


# --- bad input (#11): what YAML makes of a slip, refused with its path -------------------------


@pytest.mark.parametrize(
    "path",
    [
        ("loadbalancers", LB1, "address"),
        ("nameservers", "ns2.paphosting.net", "address"),
        ("nameservers", "ns2.paphosting.net", "server"),
        ("services", "www", "type"),
        ("services", "www", "hostnames"),
        ("services", "www", "servers"),
        ("services", "www", "servers", 0, "name"),
        ("zones", ZONE, "records", "mail", 0, "type"),
        ("zones", ZONE, "records", "mail", 0, "data"),
    ],
    ids=lambda p: ":".join(map(str, p)),
)
def test_a_required_key_left_empty_is_refused(path):
    """``address:`` with nothing after it is null in YAML: the key is there but says nothing.
    Before, the required check saw the key and every later check took null for "not given"
    (a nameserver without an address, a service without a type, a record dropped)."""
    data = full_pillar()
    _set(path, None)(data)
    where = "paphosting:" + ":".join(map(str, path))
    messages = _errors(data)
    assert f"pillar {where}: is required, and is empty here (null)" in messages, messages


@pytest.mark.parametrize(
    "where",
    [("loadbalancers",), ("services",), ("zones",), ("rotations",), ("zones", ZONE, "records")],
    ids=":".join,
)
def test_a_key_left_empty_is_refused_not_dropped(where):
    """``~:`` (or an empty key) is null in YAML: a server, service, zone, rotation or owner of
    that name was dropped without a word before."""
    data = full_pillar()
    node = data
    for k in where:
        node = node[k]
    node[None] = copy.deepcopy(next(iter(node.values())))
    messages = _errors(data)
    assert any(
        m.startswith(f"pillar paphosting:{':'.join(where)}:None: the key is empty (null)")
        for m in messages
    ), messages


def test_the_digest_keeps_key_and_value_types_apart():
    """YAML reads ``1:``, ``yes:`` and ``2026-01-01:`` as an int, a bool and a date: a pillar
    with such keys beside strings has a digest, and a different one from its all-string twin
    (the platform cache must never serve the valid twin's platform for the invalid one)."""
    pillar = full_pillar()
    records = pillar["zones"][ZONE]["records"]
    twin = copy.deepcopy(pillar)
    records[1] = twin["zones"][ZONE]["records"]["1"] = [A_RECORD]
    assert model.digest(pillar) != model.digest(twin)
    for key in (None, True, datetime.date(2026, 1, 1)):
        again, plain = full_pillar(), full_pillar()
        again["zones"][ZONE]["records"][key] = plain["zones"][ZONE]["records"][str(key)] = [
            A_RECORD
        ]
        assert model.digest(again) != model.digest(plain)
    dated = copy.deepcopy(twin)
    dated["zones"][ZONE]["records"]["1"] = [{"type": "TXT", "data": datetime.date(2026, 1, 1)}]
    twin["zones"][ZONE]["records"]["1"] = [{"type": "TXT", "data": "2026-01-01"}]
    assert model.digest(dated) != model.digest(twin)


NS_AWAY = {"type": "NS", "data": "ns.other.net."}


@pytest.mark.parametrize(
    "records, key, reason",
    [
        # below an NS delegation inside the zone the child's servers answer
        (
            {"sub": [NS_AWAY], "x.sub": [A_RECORD]},
            "x.sub",
            "x.sub.paphosting.nl is delegated by the NS records of "
            f"{ZP}:sub: this A record would never be served",
        ),
        # beside the NS at the cut: an A that is not glue for one of its name servers
        ({"Sub": [NS_AWAY, A_RECORD]}, "Sub", f"delegated by the NS records of {ZP}:Sub"),
        # a name server inside the zone without an address (glue)
        (
            {"sub": [{"type": "NS", "data": "ns.sub"}]},
            "sub",
            "name server ns.sub.paphosting.nl lies in zone paphosting.nl and has no A or AAAA",
        ),
        # below a DNAME every name is redirected
        (
            {"g": [{"type": "DNAME", "data": "other.net."}], "x.g": [A_RECORD]},
            "x.g",
            f"lies below the DNAME of {ZP}:g",
        ),
    ],
    ids=["below a delegation", "beside a delegation", "no glue", "below a DNAME"],
)
def test_a_record_a_delegation_hides_is_refused(records, key, reason):
    """The child zone's servers answer below an NS record inside a zone: before, such records
    were accepted (never served), or refused by a checker naming the zone only."""
    messages = _errors(_records(**records))
    assert any(m.startswith(f"pillar {ZP}:{key}: ") and reason in m for m in messages), messages


def test_a_delegation_with_its_glue_and_ds_is_valid():
    ds = {"type": "DS", "data": "12345 13 2 " + "ab" * 32}
    model.parse(
        _records(
            sub=[{"type": "NS", "data": "ns.sub"}, NS_AWAY, ds],
            **{"ns.sub": [A_RECORD]},
            other=[{"type": "NS", "data": "ns1.paphosting.net."}],
        )
    )


def test_a_rotation_name_below_a_delegation_is_refused():
    messages = _errors(_records(l=[NS_AWAY]))
    assert any(
        m.startswith("pillar paphosting:rotations:http0.l.paphosting.nl: ")
        and f"delegated by the NS records of {ZP}:l" in m
        for m in messages
    ), messages


@pytest.mark.parametrize(
    "mutate, path, reason",
    [
        # BIND's check-names: the owner of an A, AAAA or MX record is a host name
        (_set(("zones", ZONE, "records", "_x"), [A_RECORD]), f"{ZP}:_x:0", "'_x' is not a host"),
        (_set(("zones", ZONE, "records", "x-"), [A_RECORD]), f"{ZP}:x-:0", "begins or ends with"),
        # ... and so are the names in NS, MX and SRV data
        (
            _set(("zones", ZONE, "records", "x"), [{"type": "MX", "data": "10 -mail"}]),
            f"{ZP}:x:0:data",
            "'-mail' is not a host name",
        ),
        (
            _set(("zones", ZONE, "records", "y"), [{"type": "SRV", "data": "0 0 1 _t.b.nl."}]),
            f"{ZP}:y:0:data",
            "'_t.b.nl.' is not a host name",
        ),
        # a '*' is a wildcard only as the first label
        (
            _set(("zones", ZONE, "records", "a.*"), [{"type": "TXT", "data": '"x"'}]),
            f"{ZP}:a.*:0",
            "'*' is a wildcard only as the whole first label",
        ),
        # haproxy takes a host name that begins with '-' for an option
        (
            _set(("services", "www", "hostnames"), ["-www.paphosting.nl"]),
            "paphosting:services:www:hostnames:0",
            "the label '-www' begins or ends with '-'",
        ),
        # an IP address where a name belongs, a wildcard as a name server
        (
            _set(("zones", ZONE, "ns"), ["127.0.0.1"]),
            f"paphosting:zones:{ZONE}:ns:0",
            "an IP address where a name belongs",
        ),
        (
            _set(("nameservers", "ns2.paphosting.net", "fqdn"), "*.paphosting.net"),
            "paphosting:nameservers:ns2.paphosting.net:fqdn",
            "a wildcard is not a host name",
        ),
    ],
    ids=[
        "A at _x",
        "A at x-",
        "MX to -mail",
        "SRV to _t",
        "wildcard not first",
        "hostname -www",
        "NS an address",
        "fqdn wildcard",
    ],
)
def test_a_name_a_dns_server_or_haproxy_would_refuse_is_refused_with_its_path(mutate, path, reason):
    """Before, these passed the schema and a checker refused them naming only the zone or the
    load balancer (BIND's "bad name (check-names)" without a line), or they were served as
    written (an NS named 127.0.0.1)."""
    data = full_pillar()
    mutate(data)
    messages = _errors(data)
    assert any(m.startswith(f"pillar {path}: ") and reason in m for m in messages), messages


def test_underscores_and_wildcards_where_dns_takes_them_are_accepted():
    model.parse(
        _records(
            **{
                "_dmarc": [{"type": "TXT", "data": '"v=DMARC1; p=none"'}],
                "*": [A_RECORD],
                "-odd": [{"type": "TXT", "data": '"x"'}],
                "_sip._tcp": [{"type": "SRV", "data": "0 1 5060 sip.paphosting.nl."}],
                "nomail": [{"type": "MX", "data": "0 ."}],
            }
        )
    )
