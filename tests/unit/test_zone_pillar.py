"""Bad zone input in pillar: each case is an error that names its pillar path (nothing renders)."""

import pytest

from paphosting import model
from paphosting.errors import InvalidPillar
from tests.unit import platforms

Z = "paphosting:zones:paphosting.nl"


def records(**owners):
    pillar = platforms.pillar()
    pillar["zones"]["paphosting.nl"]["records"].update(owners)
    return pillar


def errors_of(pillar):
    with pytest.raises(InvalidPillar) as info:
        model.parse(pillar)
    return [str(e) for e in info.value.errors]


def set_path(pillar, path, value):
    node = pillar
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return pillar


CASES = [
    # invalid owner names
    (
        records(**{"bad name": [{"type": "A", "data": "192.0.2.1"}]}),
        f"{Z}:records:bad name: 'bad name' is not a valid owner name",
    ),
    (
        records(**{"a$b": [{"type": "A", "data": "192.0.2.1"}]}),
        f"{Z}:records:a$b: 'a$b' is not a valid owner name",
    ),
    (
        records(**{"x" * 64: [{"type": "A", "data": "192.0.2.1"}]}),
        f"{Z}:records:{'x' * 64}: '{'x' * 64}' is not a valid owner name",
    ),
    # CNAME at the apex, and beside other data
    (
        records(**{"@": [{"type": "CNAME", "data": "elsewhere.example."}]}),
        f"{Z}:records:@:0: a CNAME is not allowed at the zone apex",
    ),
    (
        records(
            mail=[
                {"type": "A", "data": "192.0.2.1"},
                {"type": "CNAME", "data": "elsewhere.example."},
            ]
        ),
        f"{Z}:records:mail: a CNAME cannot stand beside other data (A, CNAME)",
    ),
    # out-of-zone data
    (
        records(**{"www.example.org.": [{"type": "A", "data": "192.0.2.1"}]}),
        f"{Z}:records:www.example.org.: www.example.org. is out of zone paphosting.nl",
    ),
    # TTLs outside 0..2**31-1
    (
        records(x=[{"type": "A", "data": "192.0.2.1", "ttl": 2**31}]),
        f"{Z}:records:x:0:ttl: 2147483648 is out of range 0..2147483647",
    ),
    (
        records(x=[{"type": "A", "data": "192.0.2.1", "ttl": -1}]),
        f"{Z}:records:x:0:ttl: -1 is out of range 0..2147483647",
    ),
    (
        set_path(platforms.pillar(), ["zones", "paphosting.nl", "ttl"], 2**31),
        f"{Z}:ttl: 2147483648 is out of range",
    ),
    (
        set_path(platforms.pillar(), ["rotations", "http0.l.paphosting.nl", "ttl"], -5),
        "paphosting:rotations:http0.l.paphosting.nl:ttl: -5 is out of range",
    ),
    (
        set_path(platforms.pillar(), ["zones", "paphosting.nl", "soa", "minimum"], 2**32),
        f"{Z}:soa:minimum: 4294967296 is out of range",
    ),
    # a rotation naming an unknown load balancer
    (
        set_path(
            platforms.pillar(),
            ["rotations", "http0.l.paphosting.nl", "members"],
            ["lb1.paphosting.net", "lb9.paphosting.net"],
        ),
        "paphosting:rotations:http0.l.paphosting.nl:members:1: 'lb9.paphosting.net' is not a load balancer",
    ),
    # newlines, control characters, unbalanced quotes
    (
        records(t=[{"type": "TXT", "data": '"a"\n$INCLUDE /etc/shadow'}]),
        f"{Z}:records:t:0:data: " + repr('"a"\n$INCLUDE /etc/shadow') + " contains a newline",
    ),
    (
        records(t=[{"type": "TXT", "data": '"a\x00b"'}]),
        f"{Z}:records:t:0:data: " + repr('"a\x00b"') + " contains a newline or control character",
    ),
    (
        records(t=[{"type": "TXT", "data": '"unbalanced'}]),
        f"{Z}:records:t:0:data: '\"unbalanced' has unbalanced quotes",
    ),
    (
        records(t=[{"type": "TXT", "data": r'"escaped \" only'}]),
        f"{Z}:records:t:0:data: " + repr(r'"escaped \" only') + " has unbalanced quotes",
    ),
    # bad record data and types
    (
        records(x=[{"type": "A", "data": "300.1.1.1"}]),
        f"{Z}:records:x:0:data: '300.1.1.1' is not valid A data",
    ),
    (
        records(x=[{"type": "BOGUS", "data": "1"}]),
        f"{Z}:records:x:0:type: 'BOGUS' is not a DNS record type",
    ),
    (
        records(x=[{"type": "SOA", "data": "a. b. 1 2 3 4 5"}]),
        f"{Z}:records:x:0:type: SOA is set with the zone's 'soa' key",
    ),
    (
        records(**{"@": [{"type": "NS", "data": "ns9.example."}]}),
        f"{Z}:records:@:0: the apex NS records are set with the zone's 'ns' key",
    ),
    # rotation names and service hostnames cannot have their own addresses
    (
        records(**{"http0.l": [{"type": "CNAME", "data": "elsewhere.example."}]}),
        "paphosting:rotations:http0.l.paphosting.nl: http0.l.paphosting.nl also has records in paphosting:zones:paphosting.nl:records:http0.l (CNAME)",
    ),
    (
        records(www=[{"type": "A", "data": "192.0.2.1"}]),
        "paphosting:services:www:hostnames:0: www.paphosting.nl also has records in paphosting:zones:paphosting.nl:records:www (A)",
    ),
    (
        set_path(
            platforms.pillar(webservers=2, shop=True),
            ["services", "shop", "hostnames"],
            ["http0.l.paphosting.nl"],
        ),
        "paphosting:services:shop:hostnames:0: http0.l.paphosting.nl is a rotation name, not a service hostname",
    ),
    (
        set_path(
            platforms.pillar(),
            ["rotations", "http0.l.example.org"],
            {"members": ["lb1.paphosting.net"]},
        ),
        "paphosting:rotations:http0.l.example.org: http0.l.example.org is not inside any zone in paphosting:zones",
    ),
    # BIND's control port
    (
        set_path(platforms.pillar(), ["nameservers", "ns1.paphosting.net", "control_port"], 5300),
        "paphosting:nameservers:ns1.paphosting.net:control_port: 5300 is already the DNS port",
    ),
]


@pytest.mark.parametrize("pillar, message", CASES, ids=[str(i) for i in range(len(CASES))])
def test_bad_zone_input_names_the_pillar_path(pillar, message):
    errors = errors_of(pillar)
    assert any(e.startswith("pillar " + message) for e in errors), errors


def test_quotes_escaped_inside_strings_are_balanced():
    pillar = records(t=[{"type": "TXT", "data": r'"say \"hi\"" "a\\" "b\"c"'}])
    zone = model.parse(pillar).zones["paphosting.nl"]
    assert any(r.owner == "t" and r.type == "TXT" for r in zone.records)


def test_wildcards_underscores_and_relative_targets_are_accepted():
    pillar = records(
        **{
            "*": [{"type": "A", "data": "192.0.2.1"}],
            "*.dev": [{"type": "CNAME", "data": "www"}],
            "_sip._tcp": [{"type": "SRV", "data": "10 60 5060 sip"}],
            "sip.paphosting.nl.": [{"type": "A", "data": "192.0.2.2", "ttl": 0}],
        }
    )
    zone = model.parse(pillar).zones["paphosting.nl"]
    owners = {r.owner for r in zone.records}
    assert {"*", "*.dev", "_sip._tcp", "sip"} <= owners


def test_control_port_is_optional():
    pillar = platforms.pillar()
    pillar["nameservers"]["ns1.paphosting.net"].pop("control_port", None)
    assert model.parse(pillar).nameservers["ns1.paphosting.net"].control_port is None
    pillar["nameservers"]["ns1.paphosting.net"]["control_port"] = 5301
    assert model.parse(pillar).nameservers["ns1.paphosting.net"].control_port == 5301
