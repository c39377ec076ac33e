"""Import of master files: import -> pillar YAML -> model.parse -> render gives the same RRsets."""

import dns.rdatatype
import dns.zone
import pytest
import yaml

from paphosting import model, zone
from tests.conftest import REPO

ZONES = REPO / "tests" / "data" / "zones"
FILES = {
    "example.com.zone": None,  # $ORIGIN in the file
    "2.0.192.in-addr.arpa.zone": "2.0.192.in-addr.arpa",  # no $ORIGIN: given to the importer
    "shop.test.zone": None,
}


def semantic(text, origin):
    """{(name, type): (ttl, rdatas)} of every RRset, and the SOA without its serial."""
    z = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=True)
    out = {}
    for name, rds in z.iterate_rdatasets():
        key = (name.to_text().lower(), dns.rdatatype.to_text(rds.rdtype))
        if rds.rdtype == dns.rdatatype.SOA:
            soa = rds[0]
            out[key] = (
                rds.ttl,
                [soa.mname, soa.rname, soa.refresh, soa.retry, soa.expire, soa.minimum],
            )
        else:
            out[key] = (rds.ttl, sorted(rd.to_digestable(z.origin) for rd in rds))
    return out


def round_trip(text, origin=None):
    imported = yaml.safe_load(zone.import_zone(text, origin))
    zones = imported["paphosting"]["zones"]
    pillar = {"loadbalancers": {"lb1.example.net": {"address": "127.0.0.1"}}, "zones": zones}
    platform = model.parse(pillar)
    (name,) = zones
    return name, zone.render(platform, name, 1)


@pytest.mark.parametrize("filename", sorted(FILES))
def test_import_then_render_gives_the_same_rrsets(filename):
    text = (ZONES / filename).read_text()
    name, rendered = round_trip(text, FILES[filename])
    original = semantic(text, FILES[filename])
    assert semantic(rendered, name + ".") == original
    assert len(original) > 5


def test_imported_yaml_is_what_the_admin_pastes():
    out = zone.import_zone((ZONES / "example.com.zone").read_text())
    data = yaml.safe_load(out)["paphosting"]["zones"]["example.com"]
    assert data["ttl"] == 86400
    assert data["ns"] == ["ns1.example.com", "ns2.example.net"]
    assert data["soa"] == {
        "mname": "ns1.example.com",
        "rname": "hostmaster.example.com",
        "refresh": 7200,
        "retry": 3600,
        "expire": 1209600,
        "minimum": 300,
    }
    assert data["records"]["txt"] == [
        {
            "type": "TXT",
            "data": r'"quoted \"word\"" "semi;colon" "back\\slash" "tab\009and\010newline"',
        }
    ]
    assert data["records"]["*"] == [{"type": "A", "data": "192.0.2.80", "ttl": 600}]
    assert data["records"]["host1.lab"] == [{"type": "A", "data": "198.51.100.1"}]
    assert data["records"]["fast.lab"] == [{"type": "A", "data": "198.51.100.3", "ttl": 60}]
    assert data["records"]["sub"] == [
        {"type": "NS", "data": "ns.elsewhere.net."},
        {"type": "NS", "data": "ns1.sub.example.com."},
    ]
    assert "serial" not in data["soa"]
    assert "  - {type:" in out or "- {type:" in out  # one record per line


def test_import_is_deterministic():
    text = (ZONES / "shop.test.zone").read_text()
    assert zone.import_zone(text) == zone.import_zone(text)


def test_a_differing_apex_ns_ttl_is_noted():
    text = "$ORIGIN t.test.\n@ 300 IN SOA ns.t.test. h.t.test. 1 2 3 4 5\n@ 900 IN NS ns.t.test.\nns 300 IN A 192.0.2.1\n"
    out = zone.import_zone(text)
    assert out.startswith("# note: the apex NS TTL 900 becomes the zone TTL 300\n")


@pytest.mark.parametrize(
    "text, message",
    [
        ("$ORIGIN t.test.\n@ 300 IN NS ns.t.test.\n", "has no SOA record"),
        ("$ORIGIN t.test.\n@ 300 IN SOA ns.t.test. h.t.test. 1 2 3 4 5\n", "has no NS records"),
        (
            "$ORIGIN t.test.\n@ 300 IN SOA ns.t.test. h.t.test. 1 2 3 4 (\n",
            "cannot parse the zone file",
        ),
        ("www 300 IN A 192.0.2.1\n", "cannot parse the zone file"),
    ],
)
def test_bad_zone_files_are_reported(text, message):
    with pytest.raises(zone.ZoneError, match=message):
        zone.import_zone(text)
