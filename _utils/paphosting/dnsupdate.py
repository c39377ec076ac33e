"""A failover's change as RFC 2136 dynamic updates, for the servers that apply them faster than
they reload a file (Knot: 1,000 zones in about 0.1 s, against 0.5 s for writing the files and
``knotc zone-reload``; BIND takes 0.5-0.9 s for the same updates, no faster than its files, so
BIND and NSD, which has no updates, stay on files: docs/failover.md).

Only a rotation-only change of an unsigned zone is sent this way (:func:`rotation_update`): the
rotation owners' A/AAAA records that the plan removes and adds, and the SOA with the plan's new
serial. A prerequisite holds the update to the SOA the zone's live file has, serial included,
so it applies only to a server that serves exactly that file; any other answer leaves the zone
to the file path. The files are written after the server serves the change, with the same text,
so the server and its files agree again without a reload.

Messages are built here, not with dnspython's message classes: at thousands of zones those
cost 0.3 ms a zone (the TSIG signature most of it), more than the server's work. They are signed
with TSIG (HMAC-SHA256, RFC 8945) with the nameserver's own update key, which only root and the
server can read (:func:`key_text`, made with the config by ``dns_server.write``).
"""

import base64
import hashlib
import hmac
import ipaddress
import itertools
import os
import re
import select
import socket
import struct
import time

import dns.name

from paphosting import zone as pzone
from paphosting.errors import PapError

KEY_NAME = "paphosting-update"
ALGORITHM = "hmac-sha256"

_TYPES = {"A": 1, "AAAA": 28, "SOA": 6}
_IN, _NONE, _ANY = 1, 254, 255
_TSIG = 250
_UPDATE = 5 << 11
_FUDGE = 300
_RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
           7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}  # fmt: skip
_SECRET_RE = re.compile(r"^\s*secret:\s*(\S+)\s*$", re.MULTILINE)


class UpdateError(PapError):
    """An update could not be built (a record this module cannot express)."""


def key_text(secret=None):
    """A new update key file in Knot's config syntax (included by its config): 256 random bits
    unless ``secret`` (base64) is given."""
    secret = secret or base64.b64encode(os.urandom(32)).decode("ascii")
    return f"key:\n  - id: {KEY_NAME}\n    algorithm: {ALGORITHM}\n    secret: {secret}\n"


def read_key(path):
    """The secret (bytes) of the update key file at ``path``; None when there is none or it
    cannot be read as one (the failover then writes files)."""
    try:
        with open(path, encoding="utf-8") as fh:
            match = _SECRET_RE.search(fh.read())
    except OSError:
        return None
    if match is None:
        return None
    try:
        return base64.b64decode(match.group(1), validate=True)
    except ValueError:
        return None


_name_cache = {}


def _name(text):
    wire = _name_cache.get(text)
    if wire is None:
        wire = dns.name.from_text(text).canonicalize().to_wire()
        if len(_name_cache) < 100_000:
            _name_cache[text] = wire
    return wire


def _rr(owner, rdtype, rdclass, ttl, rdata):
    return owner + struct.pack("!HHIH", rdtype, rdclass, ttl, len(rdata)) + rdata


def _address(rdtype, text):
    try:
        addr = ipaddress.ip_address(text)
    except ValueError as exc:
        raise UpdateError(f"not an address: {text!r}") from exc
    if (rdtype == "A") != (addr.version == 4):
        raise UpdateError(f"{rdtype} record with address {text}")
    return addr.packed


def _soa_rdata(fields, serial):
    mname, rname, _, refresh, retry, expire, minimum = fields
    return (
        _name(mname)
        + _name(rname)
        + struct.pack("!IIIII", int(serial), int(refresh), int(retry), int(expire), int(minimum))
    )


def _record(line):
    """``(owner, ttl, type, address)`` of a record line ``owner. ttl IN A|AAAA address``."""
    fields = line.split()
    if len(fields) != 5 or fields[2] != "IN" or fields[3] not in ("A", "AAAA"):
        raise UpdateError(f"not an address record line: {line!r}")
    return fields[0], int(fields[1]), fields[3], fields[4]


def rotation_update(zone_name, text, serial_live, serial_new, records):
    """The unsigned body of the update for one zone's rotation-only change: ``text`` is the new
    zone text (its SOA but the serial is the live one's), ``records`` the plan's ``{"added":
    [...], "removed": [...]}`` record lines. Prerequisite: the SOA is the live one."""
    soa = pzone.soa_line(text)
    if soa is None:
        raise UpdateError("the zone text has no SOA line in the expected format")
    ttl, fields = soa
    zone = _name(zone_name + ".")
    body = [
        zone + struct.pack("!HH", _TYPES["SOA"], _IN),
        _rr(zone, _TYPES["SOA"], _IN, 0, _soa_rdata(fields, serial_live)),
    ]
    updates = 0
    for line in records.get("removed", ()):
        owner, _, rdtype, address = _record(line)
        body.append(_rr(_name(owner), _TYPES[rdtype], _NONE, 0, _address(rdtype, address)))
        updates += 1
    for line in records.get("added", ()):
        owner, rr_ttl, rdtype, address = _record(line)
        body.append(_rr(_name(owner), _TYPES[rdtype], _IN, rr_ttl, _address(rdtype, address)))
        updates += 1
    body.append(_rr(zone, _TYPES["SOA"], _IN, ttl, _soa_rdata(fields, serial_new)))
    return updates + 1, b"".join(body)


def sign(qid, counts, body, secret, now=None):
    """The whole message: header with ``qid`` and the section ``counts`` (zone, prerequisite,
    update), ``body``, and a TSIG record (RFC 8945) made with ``secret``."""
    zo, pr, up = counts
    unsigned = struct.pack("!HHHHHH", qid, _UPDATE, zo, pr, up, 0) + body
    key = _name(KEY_NAME + ".")
    alg = _name(ALGORITHM + ".")
    signed_at = int(time.time() if now is None else now)
    timers = struct.pack("!HIH", signed_at >> 32, signed_at & 0xFFFFFFFF, _FUDGE)
    variables = key + struct.pack("!HI", _ANY, 0) + alg + timers + struct.pack("!HH", 0, 0)
    mac = hmac.new(secret, unsigned + variables, hashlib.sha256).digest()
    rdata = alg + timers + struct.pack("!H", len(mac)) + mac + struct.pack("!HHH", qid, 0, 0)
    header = struct.pack("!HHHHHH", qid, _UPDATE, zo, pr, up, 1)
    return header + body + _rr(key, _TSIG, _ANY, 0, rdata)


def send(address, port, messages, timeout=10.0, chunk=64):
    """Send ``messages`` (an iterable of ``(qid, wire)``, at most 65,536, qids unique) over one
    TCP connection, pipelined; ``{qid: None or the error}`` (``"REFUSED"``, ``"no answer"``...).
    Raises :class:`UpdateError` when the server cannot be reached.

    Sending, reading the answers and making the next messages interleave (``chunk`` messages at
    a time, the socket non-blocking): the server applies the first updates while the last are
    still being built and signed, and neither side's buffers can fill while the other waits (a
    client that wrote every message before reading any answer would stall once the server's
    answers filled its send buffer)."""
    out = {}
    pending = set()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    deadline = time.monotonic() + timeout
    source = iter(messages)
    outgoing = b""
    more = True
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # From the server's own address, the only one its acl lets update (connecting from
            # an unbound socket to 127.0.0.5 would leave from 127.0.0.1).
            sock.bind((address, 0))
            sock.connect((address, port))
            sock.setblocking(False)
            buf = b""
            while (more or outgoing or pending) and time.monotonic() < deadline:
                if more and len(outgoing) < 65536:
                    batch = list(itertools.islice(source, chunk))
                    more = len(batch) == chunk
                    for qid, wire in batch:
                        if qid in out:
                            raise UpdateError(f"message id {qid} used twice in one batch")
                        if len(out) >= 65536:
                            raise UpdateError("more than 65,536 updates in one batch")
                        out[qid] = "no answer"
                        pending.add(qid)
                        outgoing += struct.pack("!H", len(wire)) + wire
                readable, writable, _ = select.select(
                    [sock], [sock] if outgoing else [], [], max(0.0, deadline - time.monotonic())
                )
                if writable:
                    try:
                        sent = sock.send(outgoing)
                    except BlockingIOError:
                        sent = 0
                    outgoing = outgoing[sent:]
                if not readable:
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    break
                buf += data
                while len(buf) >= 2:
                    (size,) = struct.unpack("!H", buf[:2])
                    if len(buf) < 2 + size:
                        break
                    wire, buf = buf[2 : 2 + size], buf[2 + size :]
                    if size < 12:
                        continue
                    qid = struct.unpack("!H", wire[:2])[0]
                    if qid in pending:
                        rcode = wire[3] & 0x0F
                        out[qid] = None if rcode == 0 else _RCODES.get(rcode, f"rcode {rcode}")
                        pending.discard(qid)
    except OSError as exc:
        raise UpdateError(f"cannot send updates to {address} port {port}: {exc}") from exc
    for qid, _ in source:  # not sent before the deadline
        out.setdefault(qid, "no answer")
    return out


def apply(address, port, secret, changes, timeout=10.0):
    """Send one update per zone; ``changes`` is ``{zone: (text, serial_live, serial_new,
    records)}``. Returns ``{zone: None or why it was not applied}``; a zone that could not be
    expressed as an update says so and is not sent. Each message is built and signed just
    before it is sent (:func:`send`)."""
    result = {}
    zones = list(changes)
    for start in range(0, len(zones), 65536):
        names = {}

        def messages(batch=zones[start : start + 65536], names=names):
            for qid, zone in enumerate(batch):
                text, serial_live, serial_new, records = changes[zone]
                try:
                    count, body = rotation_update(zone, text, serial_live, serial_new, records)
                except UpdateError as exc:
                    result[zone] = str(exc)
                    continue
                names[qid] = zone
                yield qid, sign(qid, (1, 1, count), body, secret)

        try:
            answers = send(address, port, messages(), timeout)
        except UpdateError as exc:
            for zone in zones[start : start + 65536]:
                result.setdefault(zone, str(exc))
            continue
        for qid, why in answers.items():
            result[names[qid]] = why
    return result
