"""The failover's RFC 2136 updates (paphosting.dnsupdate): what they say, and their signature as
dnspython, an independent TSIG implementation, reads it."""

import base64

import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import pytest

from paphosting import dnsupdate

SECRET = base64.b64encode(b"k" * 32).decode()
TEXT = """; header
$ORIGIN shop.example.
$TTL 3600
@     3600 IN SOA    ns1.paphosting.nl. hostmaster.paphosting.nl. 2026120502 3600 900 604800 300
@     3600 IN NS     ns1.paphosting.nl.
@      300 IN A      198.18.0.2
@      300 IN AAAA   2001:db8::2
www   3600 IN CNAME  shop.example.
"""
RECORDS = {
    "removed": ["shop.example. 300 IN A 198.18.0.1", "shop.example. 300 IN AAAA 2001:db8::1"],
    "added": ["shop.example. 300 IN A 198.18.0.3"],
}


def _parse(wire, secret=SECRET):
    ring = dns.tsigkeyring.from_text({dnsupdate.KEY_NAME: (dnsupdate.ALGORITHM, secret)})
    return dns.message.from_wire(wire, keyring=ring)


def test_the_update_says_what_the_plan_changes_and_holds_to_the_live_soa():
    count, body = dnsupdate.rotation_update("shop.example", TEXT, 2026120501, 2026120502, RECORDS)
    msg = _parse(dnsupdate.sign(7, (1, 1, count), body, base64.b64decode(SECRET)))
    assert msg.id == 7 and msg.opcode() == dns.opcode.UPDATE
    zone, prereq, update = msg.sections[0], msg.sections[1], msg.sections[2]
    assert [(r.name.to_text(), r.rdtype) for r in zone] == [("shop.example.", dns.rdatatype.SOA)]
    (pre,) = prereq
    assert pre.rdclass == dns.rdataclass.IN and pre.ttl == 0
    assert pre[0].serial == 2026120501 and pre[0].rname.to_text() == "hostmaster.paphosting.nl."
    got = [
        (r.rdtype, r.deleting or r.rdclass, r.ttl, sorted(rd.to_text() for rd in r)) for r in update
    ]
    assert got == [
        (dns.rdatatype.A, dns.rdataclass.NONE, 0, ["198.18.0.1"]),
        (dns.rdatatype.AAAA, dns.rdataclass.NONE, 0, ["2001:db8::1"]),
        (dns.rdatatype.A, dns.rdataclass.IN, 300, ["198.18.0.3"]),
        (dns.rdatatype.SOA, dns.rdataclass.IN, 3600, [
            "ns1.paphosting.nl. hostmaster.paphosting.nl. 2026120502 3600 900 604800 300"]),
    ]  # fmt: skip


def test_a_message_signed_with_another_key_does_not_verify():
    count, body = dnsupdate.rotation_update("shop.example", TEXT, 1, 2, RECORDS)
    wire = dnsupdate.sign(1, (1, 1, count), body, b"x" * 32)
    with pytest.raises(dns.tsig.BadSignature):
        _parse(wire)


def test_records_it_cannot_express_are_refused_not_guessed():
    for bad in (["shop.example. 300 IN A 2001:db8::1"], ["shop.example. 300 IN TXT x"]):
        with pytest.raises(dnsupdate.UpdateError):
            dnsupdate.rotation_update("shop.example", TEXT, 1, 2, {"added": bad})
    with pytest.raises(dnsupdate.UpdateError, match="no SOA"):
        dnsupdate.rotation_update("shop.example", "@ 300 IN A 198.18.0.1\n", 1, 2, RECORDS)


def test_the_key_file_reads_back_and_a_damaged_one_reads_as_none(tmp_path):
    path = tmp_path / "update.key"
    path.write_text(dnsupdate.key_text(SECRET))
    assert dnsupdate.read_key(str(path)) == base64.b64decode(SECRET)
    path.write_text("key:\n  - id: x\n    secret: not*base64\n")
    assert dnsupdate.read_key(str(path)) is None
    assert dnsupdate.read_key(str(tmp_path / "missing")) is None


def test_an_unreachable_server_is_an_error_naming_it():
    count, body = dnsupdate.rotation_update("shop.example", TEXT, 1, 2, RECORDS)
    got = dnsupdate.apply("127.0.0.1", 9, b"k" * 32, {"shop.example": (TEXT, 1, 2, RECORDS)})
    assert "127.0.0.1 port 9" in got["shop.example"]
