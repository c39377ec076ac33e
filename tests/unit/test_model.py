"""The pillar model: every invalid value is rejected with its pillar path and a reason."""

import copy

import pytest
import salt.utils.yamlloader
import yaml

from paphosting import model
from paphosting.errors import InvalidPillar
from tests.conftest import EXAMPLE_PILLAR, example_pillar

LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
WEB1 = "web1.paphosting.net"


def test_example_pillar_is_valid():
    p = model.parse(example_pillar())
    assert sorted(p.loadbalancers) == [LB1, LB2]
    assert len(p.nameservers) == 3 and len(p.webservers) == 3
    assert {ns.server for ns in p.nameservers.values()} == {"bind", "nsd", "knot"}
    assert p.rotations["http0.l.paphosting.nl"].ttl == 300
    assert p.services["www"].type == "stateless" and len(p.services["www"].servers) >= 2
    shop = p.services["shop"]
    assert [s.role for s in shop.servers] == ["primary", "backup"]


def test_whole_pillar_or_value():
    assert model.parse({"paphosting": example_pillar()}) == model.parse(example_pillar())


def test_defaults_are_sane():
    p = model.parse(example_pillar())
    www = p.services["www"]
    assert (www.check.inter, www.check.fall, www.check.rise) == (2000, 3, 2)
    assert p.health.quorum == 2  # majority of 3 watchers
    assert p.loadbalancers[LB1].health_path == "/haproxy-health"


def test_cookie_value_depends_only_on_service_and_server():
    p = model.parse(example_pillar())
    cookies = {s.name: s.cookie for s in p.services["shop"].servers}
    assert cookies[WEB1] == model.cookie_value("shop", WEB1)
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
    (
        "cname at apex",
        _set(("zones", "paphosting.nl", "records", "@"), [{"type": "CNAME", "data": "x.example."}]),
        "paphosting:zones:paphosting.nl:records:@:0",
        "CNAME is not allowed at the zone apex",
    ),
    (
        "cname beside other data",
        _set(
            ("zones", "paphosting.nl", "records", "mail"),
            [{"type": "A", "data": "127.0.0.9"}, {"type": "CNAME", "data": "x.example."}],
        ),
        "paphosting:zones:paphosting.nl:records:mail",
        "CNAME cannot stand beside other data",
    ),
    (
        "out of zone owner",
        _set(
            ("zones", "paphosting.nl", "records", "www.example.com."),
            [{"type": "A", "data": "127.0.0.9"}],
        ),
        "paphosting:zones:paphosting.nl:records:www.example.com.",
        "out of zone",
    ),
    (
        "invalid owner",
        _set(
            ("zones", "paphosting.nl", "records", "bad owner"), [{"type": "A", "data": "127.0.0.9"}]
        ),
        "paphosting:zones:paphosting.nl:records:bad owner",
        "not a valid owner name",
    ),
    (
        "bad rdata",
        _set(("zones", "paphosting.nl", "records", "mail"), [{"type": "A", "data": "not-an-ip"}]),
        "paphosting:zones:paphosting.nl:records:mail:0:data",
        "not valid A data",
    ),
    (
        "unbalanced quotes",
        _set(("zones", "paphosting.nl", "records", "txt"), [{"type": "TXT", "data": '"abc'}]),
        "paphosting:zones:paphosting.nl:records:txt:0:data",
        "unbalanced quotes",
    ),
    (
        "newline in txt",
        _set(
            ("zones", "paphosting.nl", "records", "txt"),
            [{"type": "TXT", "data": '"a"\n@ NS evil.'}],
        ),
        "paphosting:zones:paphosting.nl:records:txt:0:data",
        "newline",
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
    data = example_pillar()
    mutate(data)
    with pytest.raises(InvalidPillar) as info:
        model.parse(data)
    messages = [str(e) for e in info.value.errors]
    assert any(path in m and reason in m for m in messages), messages


def test_all_errors_are_reported_at_once():
    data = example_pillar()
    data["services"]["www"]["port"] = 0
    data["loadbalancers"][LB1]["address"] = "nope"
    with pytest.raises(InvalidPillar) as info:
        model.parse(data)
    assert len(info.value.errors) == 2
    assert "invalid pillar (2 errors)" in str(info.value)


def test_input_is_not_modified():
    data = example_pillar()
    before = copy.deepcopy(data)
    model.parse(data)
    assert data == before


def test_salt_yaml_rejects_duplicate_names():
    """Duplicate mapping keys (two load balancers of one name) never reach the model: Salt's own
    SLS YAML loader refuses them, where plain PyYAML would silently keep the last one."""
    text = EXAMPLE_PILLAR.read_text().replace(
        "    lb2.paphosting.net:\n", "    lb1.paphosting.net:\n", 1
    )
    assert yaml.safe_load(text)  # plain PyYAML would swallow it
    with pytest.raises(
        yaml.constructor.ConstructorError, match="conflicting ID 'lb1.paphosting.net'"
    ):
        yaml.load(text, Loader=salt.utils.yamlloader.SaltYamlSafeLoader)  # noqa: S506


def test_roles_and_zone_of():
    p = model.parse(example_pillar())
    assert p.roles(LB1) == ["loadbalancer"]
    assert p.roles("ns1.paphosting.net") == ["nameserver"]
    assert p.roles("nobody") == []
    assert p.zone_of("http0.l.paphosting.nl") == "paphosting.nl"
    assert p.zone_of("www.example.com") is None


def test_digest_is_the_same_for_the_same_platform_only():
    pillar = example_pillar()
    again = copy.deepcopy(pillar)
    assert model.digest(pillar) == model.digest(again)
    # Key order does not matter; any value does.
    assert model.digest(dict(reversed(list(pillar.items())))) == model.digest(pillar)
    again["rotations"]["http0.l.paphosting.nl"]["ttl"] = 301
    assert model.digest(again) != model.digest(pillar)
    assert model.digest(None) != model.digest({})
