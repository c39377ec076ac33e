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


def _answering_server(refuse, limit):
    """A TCP server on 127.0.0.1 that answers each DNS message it reads with its header, rcode
    REFUSED for the ids ``refuse(id)`` says, NOERROR otherwise, until ``limit`` answers."""
    import socket
    import struct
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    seen = []

    def run():
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        with conn:
            while len(seen) < limit:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                answers = []
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                    size = struct.unpack("!H", buf[:2])[0]
                    wire, buf = buf[2 : 2 + size], buf[2 + size :]
                    qid = struct.unpack("!H", wire[:2])[0]
                    seen.append(qid)
                    flags = 0x8000 | (5 if refuse(qid) else 0)
                    answer = wire[:2] + struct.pack("!H", flags) + b"\0" * 8
                    answers.append(struct.pack("!H", len(answer)) + answer)
                conn.sendall(b"".join(answers))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return srv, thread, seen


def test_thousands_of_updates_each_get_their_own_answer_while_the_next_are_built():
    zones = [f"c{i}.example" for i in range(3000)]
    refused = {z for i, z in enumerate(zones) if i % 7 == 3}
    srv, thread, seen = _answering_server(lambda qid: zones[qid] in refused, len(zones))
    with srv:
        text = TEXT.replace("shop.example", "{z}")
        changes = {
            z: (
                text.replace("{z}", z),
                1,
                2,
                {k: [r.replace("shop.example", z) for r in v] for k, v in RECORDS.items()},
            )
            for z in zones
        }
        got = dnsupdate.apply("127.0.0.1", srv.getsockname()[1], b"k" * 32, changes, timeout=30)
        thread.join(10)
    assert len(seen) == len(zones)
    assert {z for z, why in got.items() if why == "REFUSED"} == refused
    assert all(why is None for z, why in got.items() if z not in refused)
