"""Zones rendered from the platform model: text, serials, record diffs, change safety, import.

Everything here is a pure function of its arguments (no Salt, no files): the Salt modules read the
live zone and the pillar, call these, and write the result.

- :func:`render` turns one zone of a :class:`~paphosting.model.Platform` into master-file text.
  Rotation names get the A/AAAA records of their member load balancers; ``members`` overrides the
  configured members (the DNS failover's input), so the same function serves the highstate and the
  failover.
- :func:`next_serial` is the serial policy (date based, RFC 1982, see ``docs/dns.md``).
- :func:`plan` compares a live zone with the wanted one: whether anything but the serial changed,
  the new serial, the record-by-record diff, and whether the change-safety rule refuses it.
- :func:`import_zone` reads an existing master file and returns the pillar YAML for it.
"""

import datetime
import re
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.serial
import dns.zone
import yaml

from paphosting import challenges, overlay
from paphosting.errors import ChangeRefused, InvalidPillar, PapError, PillarError
from paphosting.model import ROOT

SERIAL_MOD = 2**32
HEADER = "; {zone}: rendered by Salt from the paphosting pillar. Do not edit: every apply overwrites it.\n"
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


class ZoneError(PapError):
    """A zone cannot be rendered, parsed or imported."""


# --- serials -------------------------------------------------------------------------------------


def serial_gt(a, b):
    """``a`` is newer than ``b`` under RFC 1982 serial number arithmetic (32 bits)."""
    return dns.serial.Serial(a) > dns.serial.Serial(b)


def _day_number(today):
    if isinstance(today, (datetime.date, datetime.datetime)):
        return int(today.strftime("%Y%m%d"))
    text = str(today).replace("-", "")
    if not re.fullmatch(r"\d{8}", text):
        raise ValueError(f"{today!r} is not a date (YYYYMMDD)")
    return int(text)


def next_serial(old, today):
    """The serial that follows ``old`` on ``today`` (a date, or ``YYYYMMDD``).

    Date based, ``YYYYMMDDnn``: the first change of a day gets ``YYYYMMDD00`` when that is newer
    than ``old`` under RFC 1982; every other change gets ``old + 1`` (mod 2**32). So the serial
    never goes backwards, the 100th change of a day simply borrows the next day's numbers
    (``YYYYMMDD99 + 1``), and every step is a valid RFC 1982 increment (1 .. 2**31 - 1), even
    from a serial that is far ahead of today or at 2**32 - 1. ``old`` None (a new zone) gives
    ``YYYYMMDD00``.
    """
    base = _day_number(today) * 100
    if base >= SERIAL_MOD:
        raise ValueError(f"{today!r} does not fit a 32-bit YYYYMMDDnn serial")
    if old is None:
        return base
    old = int(old)
    if not 0 <= old < SERIAL_MOD:
        raise ValueError(f"{old} is not a 32-bit serial")
    if serial_gt(base, old):
        return base
    return (dns.serial.Serial(old) + 1).value


def newest_serial(*serials):
    """The newest of ``serials`` under RFC 1982, ignoring None; None when there is none."""
    best = None
    for s in serials:
        if s is not None and (best is None or serial_gt(s, best)):
            best = s
    return best


def today_utc():
    return datetime.datetime.now(datetime.UTC).date()


# --- building a zone ----------------------------------------------------------------------------


@dataclass
class Wanted:
    """A zone as data: origin, SOA and every other RRset, and the RRsets the rotations own."""

    origin: dns.name.Name
    soa: dns.rdataset.Rdataset
    rrsets: dict  # (relative dns.name.Name, rdtype) -> Rdataset (no SOA)
    exempt: set  # (relative name, rdtype) owned by rotations: exempt from the share rule


def _zone(platform, zone_name):
    key = zone_name.rstrip(".").lower()
    try:
        return platform.zones[key]
    except KeyError:
        raise ZoneError(f"zone {zone_name} is not in pillar {ROOT}:zones") from None


def _add(rrsets, name, rdtype, rdata, ttl):
    rds = rrsets.get((name, rdtype))
    if rds is None:
        rds = rrsets[(name, rdtype)] = dns.rdataset.Rdataset(dns.rdataclass.IN, rdtype)
    rds.add(rdata, ttl)  # several TTLs in one RRset: the lowest wins


def _address_rdata(address, origin):
    rdtype = dns.rdatatype.AAAA if ":" in address else dns.rdatatype.A
    return rdtype, dns.rdata.from_text(dns.rdataclass.IN, rdtype, address, origin=origin)


def build(platform, zone_name, serial, members=None):
    """The wanted zone (a :class:`Wanted`) for ``zone_name``; see :func:`render`."""
    zone = _zone(platform, zone_name)
    origin = dns.name.from_text(zone.name)
    rel = lambda fqdn: dns.name.from_text(fqdn).relativize(origin)  # noqa: E731
    soa_text = f"{zone.soa.mname}. {zone.soa.rname}. {int(serial)} {zone.soa.refresh} {zone.soa.retry} {zone.soa.expire} {zone.soa.minimum}"
    soa = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.SOA)
    soa.add(
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, soa_text, origin=origin), zone.ttl
    )
    rrsets = {}
    exempt = set()
    apex = dns.name.empty
    for ns in zone.ns:
        _add(
            rrsets,
            apex,
            dns.rdatatype.NS,
            dns.rdata.from_text("IN", "NS", ns + ".", origin=origin),
            zone.ttl,
        )
    for r in zone.records:
        name = (
            apex
            if r.owner == "@"
            else dns.name.from_text(r.owner, origin=origin).relativize(origin)
        )
        rdtype = dns.rdatatype.from_text(r.type)
        rdata = r.rdata
        if rdata is None:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, r.data, origin=origin)
        _add(rrsets, name, rdtype, rdata, r.ttl if r.ttl is not None else zone.ttl)
    # Glue for in-zone nameserver names, from the nameservers' addresses in pillar.
    for i, ns in enumerate(zone.ns):
        nsname = dns.name.from_text(ns)
        if not nsname.is_subdomain(origin):
            continue
        owner = nsname.relativize(origin)
        if any((owner, t) in rrsets for t in _ADDRESS_TYPES):
            continue
        server = next((s for s in platform.nameservers.values() if s.fqdn == ns), None)
        if server is None:
            raise InvalidPillar(
                [
                    PillarError(
                        (ROOT, "zones", zone.name, "ns", i),
                        f"{ns} is inside the zone but has no address: make it the fqdn of a "
                        f"nameserver in {ROOT}:nameservers or give it an A record",
                    )
                ]
            )
        rdtype, rdata = _address_rdata(server.address, origin)
        _add(rrsets, owner, rdtype, rdata, zone.ttl)
    # Rotation names and apex service hostnames get the members' addresses; other service
    # hostnames are CNAMEs to their rotation name.
    current = overlay.members_for(platform.rotations, members)
    for fqdn, rotation in platform.address_owners.get(zone.name, ()):
        owner = apex if fqdn == zone.name else rel(fqdn)
        rot = platform.rotations[rotation]
        for lb_id in current[rotation]:
            lb = platform.loadbalancers[lb_id]
            for address in (lb.address, lb.address6):
                if address:
                    rdtype, rdata = _address_rdata(address, origin)
                    _add(rrsets, owner, rdtype, rdata, rot.ttl)
        exempt.update((owner, t) for t in _ADDRESS_TYPES)
    for host, rotation in platform.alias_owners.get(zone.name, ()):
        target = dns.rdata.from_text("IN", "CNAME", rotation + ".", origin=origin)
        _add(rrsets, rel(host), dns.rdatatype.CNAME, target, zone.ttl)
    return Wanted(origin=origin, soa=soa, rrsets=rrsets, exempt=exempt)


def _sorted_rdatas(rds, origin):
    return sorted(rds, key=lambda rd: rd.to_digestable(origin))


def _owner_text(name):
    return "@" if name == dns.name.empty else name.to_text()


def _type_order(rdtype):
    return {dns.rdatatype.SOA: 0, dns.rdatatype.NS: 1}.get(rdtype, 2), int(rdtype)


def to_text(wanted, zone_name=None):
    """Master-file text of a :class:`Wanted`: deterministic, one record per line, absolute targets."""
    origin = wanted.origin
    lines = []
    items = [((dns.name.empty, dns.rdatatype.SOA), wanted.soa)] + list(wanted.rrsets.items())
    items.sort(key=lambda kv: (kv[0][0].derelativize(origin), _type_order(kv[0][1])))
    width = max(len(_owner_text(name)) for (name, _), _ in items)
    for (name, rdtype), rds in items:
        for rd in _sorted_rdatas(rds, origin):
            lines.append(
                f"{_owner_text(name):<{width}} {rds.ttl:>7} IN {dns.rdatatype.to_text(rdtype):<6} "
                f"{rd.to_text(origin=origin, relativize=False)}\n"
            )
    name = origin.to_text(omit_final_dot=True)
    default_ttl = wanted.soa.ttl
    return (
        HEADER.format(zone=name)
        + f"$ORIGIN {origin.to_text()}\n$TTL {default_ttl}\n"
        + "".join(lines)
    )


def render(platform, zone_name, serial, members=None):
    """The master-file text of ``zone_name`` with SOA serial ``serial``.

    ``members`` (``{rotation: [lb ids]}``) overrides the configured members of those rotations,
    see :func:`paphosting.overlay.members_for`; None renders the configured members. Identical input gives
    byte-identical output. Raises :class:`ZoneError` for an unknown zone and
    :class:`InvalidPillar` for an in-zone NS name without an address.
    """
    return to_text(build(platform, zone_name, serial, members))


class Renderer:
    """Renders the zones of one platform, fast enough for thousands of zones per failover.

    Everything of a zone that a failover cannot change (SOA but its serial, NS, the records, glue,
    CNAMEs) is formatted once per zone, the first time the zone is rendered; a render then only
    formats the rotation owners' A/AAAA lines (:attr:`paphosting.model.Platform.address_owners`)
    and the serial. The text is byte-identical to :func:`render` (a test holds it to that). Made
    once per platform and kept with it (:mod:`paphosting.platformcache`).
    """

    def __init__(self, platform):
        self._platform = platform
        self._load_platform = None
        # What rendering needs of the platform, small enough to load from disk in milliseconds
        # (the whole platform takes seconds at a hoster's size).
        self.rotations = platform.rotations
        self.loadbalancers = platform.loadbalancers
        self.nameservers = platform.nameservers
        self.address_owners = platform.address_owners
        self.zone_names = tuple(sorted(platform.zones))
        # The signed zones and how they are signed (paphosting.dnssec.policy), for the signer.
        self.dnssec = {
            name: z.dnssec for name, z in platform.zones.items() if getattr(z, "dnssec", None)
        }
        self.dnssec_settings = {
            "dnssec": (platform.dns or {}).get("dnssec") or {},
            "schedule": platform.schedule or {},
        }
        self._templates = {}
        self._address_text = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_platform"] = state["_load_platform"] = None
        return state

    @property
    def platform(self):
        """The whole :class:`~paphosting.model.Platform` (loaded on demand after unpickling)."""
        if self._platform is None:
            if self._load_platform is None:
                raise ZoneError("the platform of this renderer is not available")
            self._platform = self._load_platform()
        return self._platform

    def templates(self):
        """How many zones are prepared."""
        return len(self._templates)

    def prepare(self):
        """Format every zone's fixed part now (so a copy on disk needs no platform to render)."""
        for name in self.zone_names:
            self._template(name)

    def zone(self, zone_name):
        """The canonical name of a zone of the platform; :class:`ZoneError` when it is none."""
        key = str(zone_name).rstrip(".").lower()
        if key not in self._templates and key not in self.zone_names:
            raise ZoneError(f"zone {zone_name} is not in pillar {ROOT}:zones")
        return key

    def _template(self, zone_name):
        tpl = self._templates.get(zone_name)
        if tpl is None:
            tpl = self._templates[zone_name] = self._make(zone_name)
        return tpl

    def _make(self, zone_name):
        """``(head, soa prefix, soa suffix, items)``; items are ``(static line text)`` or
        ``(owner text, rdtype, rotations)`` for a rotation owner's A or AAAA, in output order.
        None when the zone cannot be templated (a static record at a rotation owner): such a zone
        is rendered by :func:`render`."""
        platform = self.platform
        wanted = build(platform, zone_name, 0, None)
        origin = wanted.origin
        dynamic = {}
        for fqdn, rotation in self.address_owners.get(zone_name, ()):
            owner = (
                dns.name.empty if fqdn == zone_name else dns.name.from_text(fqdn).relativize(origin)
            )
            for rdtype in _ADDRESS_TYPES:
                dynamic.setdefault((owner, rdtype), []).append(rotation)
        static = dict(wanted.rrsets)
        for key in dynamic:
            rds = static.pop(key, None)
            if rds is not None and len(rds) != len(self._addresses(key[1], dynamic[key], None)):
                return None  # a record of its own beside the rotation's: not templated
        # Every key a render may hold, in to_text's order; an empty rotation RRset is skipped.
        keys = [(dns.name.empty, dns.rdatatype.SOA)] + list(static) + list(dynamic)
        keys.sort(key=lambda k: (k[0].derelativize(origin), _type_order(k[1])))
        width = max(len(_owner_text(name)) for name, _ in keys)
        items = []
        for name, rdtype in keys[1:]:
            if (name, rdtype) in dynamic:
                owner = f"{_owner_text(name):<{width}}"
                items.append((owner, rdtype, tuple(dynamic[(name, rdtype)])))
                continue
            rds = static[(name, rdtype)]
            items.append(
                "".join(
                    f"{_owner_text(name):<{width}} {rds.ttl:>7} IN {dns.rdatatype.to_text(rdtype):<6} "
                    f"{rd.to_text(origin=origin, relativize=False)}\n"
                    for rd in _sorted_rdatas(rds, origin)
                )
            )
        soa = wanted.soa
        rd = soa[0]
        head = HEADER.format(zone=zone_name) + f"$ORIGIN {origin.to_text()}\n$TTL {soa.ttl}\n"
        prefix = (
            f"{_owner_text(dns.name.empty):<{width}} {soa.ttl:>7} IN {'SOA':<6} "
            f"{rd.mname.choose_relativity(origin, False)} {rd.rname.choose_relativity(origin, False)} "
        )
        suffix = f" {rd.refresh} {rd.retry} {rd.expire} {rd.minimum}\n"
        return head, prefix, suffix, items

    def _addresses(self, rdtype, rotations, members):
        """``(ttl, [address text, ...])`` sorted as dnspython sorts them, for one owner."""
        found = {}
        ttl = None
        for rotation in rotations:
            rot = self.rotations[rotation]
            for lb_id in members[rotation] if members else rot.members:
                lb = self.loadbalancers[lb_id]
                address = lb.address if rdtype == dns.rdatatype.A else lb.address6
                if address:
                    found[address] = self._rdata(rdtype, address)
                    ttl = rot.ttl if ttl is None else min(ttl, rot.ttl)
        ordered = sorted(found.values(), key=lambda pair: pair[0])
        return [(ttl, text) for _, text in ordered]

    def _rdata(self, rdtype, address):
        pair = self._address_text.get(address)
        if pair is None:
            rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, address)
            pair = self._address_text[address] = (rd.to_digestable(), rd.to_text())
        return pair

    def render(self, zone_name, serial, members=None):
        """The text :func:`render` gives for these arguments."""
        return str(int(serial)).join(self.around_serial(zone_name, members))

    def rotation_change(self, zone_name, text, members=None):
        """What a failover changes in ``text``, found without rendering or parsing the zone.

        When ``text`` is exactly what :meth:`render` gives for this zone with some membership of
        its rotations and some serial (the file of an earlier apply), ``(serial, records)``: the
        text's serial, and ``{"added": [...], "removed": [...]}``, the record lines (absolute
        names, as :class:`Plan` lists them) that make it the render with ``members``; both empty
        when it is that render already. None for any other text (a hand edit, another format, a
        signed zone) and for a zone that is not templated: the caller plans those in full.
        """
        zone_name = self.zone(zone_name)
        tpl = self._template(zone_name)
        if tpl is None or not text:
            return None
        head, prefix, suffix, items = tpl
        pos = len(head) + len(prefix)
        if not text.startswith(head + prefix):
            return None
        end = pos
        while end < len(text) and text[end].isdigit():
            end += 1
        if end == pos or end - pos > 10 or not text.startswith(suffix, end):
            return None
        serial = int(text[pos:end])
        pos = end + len(suffix)
        current = overlay.members_for(self.rotations, members)
        origin = zone_name + "."
        old, new = set(), set()
        for item in items:
            if isinstance(item, str):
                if not text.startswith(item, pos):
                    return None
                pos += len(item)
                continue
            owner, rdtype, rotations = item
            type_text = dns.rdatatype.to_text(rdtype)
            kind = f"IN {type_text:<6} "
            name = owner.rstrip()
            fqdn = origin if name == "@" else f"{name}.{origin}"
            rr = f" IN {type_text} "
            ttls = set()
            while text.startswith(owner + " ", pos):
                eol = text.find("\n", pos)
                if eol < 0:
                    return None
                fields = text[pos + len(owner) : eol].split()
                if len(fields) != 4 or fields[1:3] != ["IN", type_text]:
                    break  # the owner's next record type: the next item's
                if (
                    not fields[0].isdigit()
                    or text[pos:eol] != f"{owner} {int(fields[0]):>7} {kind}{fields[3]}"
                ):
                    return None
                ttls.add(fields[0])
                old.add(f"{fqdn} {fields[0]}{rr}{fields[3]}")
                pos = eol + 1
            if len(ttls) > 1:
                return None  # one RRset, one TTL: not a text render() writes
            for ttl, address in self._addresses(rdtype, rotations, current):
                new.add(f"{fqdn} {ttl}{rr}{address}")
        if pos != len(text):
            return None
        return serial, {"added": sorted(new - old), "removed": sorted(old - new)}

    def around_serial(self, zone_name, members=None):
        """``(before, after)``: the zone's text is ``before + serial + after`` (one render for
        several serials: :func:`plan` compares the live text and makes the new one from it)."""
        zone_name = self.zone(zone_name)
        tpl = self._template(zone_name)
        if tpl is None:
            text = render(self.platform, zone_name, 0, members)
            match = _SOA_SERIAL_RE.search(text)
            return text[: match.start(1)], text[match.end(1) :]
        head, prefix, suffix, items = tpl
        current = overlay.members_for(self.rotations, members)
        out = [suffix]
        for item in items:
            if isinstance(item, str):
                out.append(item)
                continue
            owner, rdtype, rotations = item
            kind = f"IN {dns.rdatatype.to_text(rdtype):<6} "
            for ttl, text in self._addresses(rdtype, rotations, current):
                out.append(f"{owner} {ttl:>7} {kind}{text}\n")
        return head + prefix, "".join(out)


# --- live zones: parse, serial, diff ------------------------------------------------------------


def parse_text(zone_name, text):
    """Parse master-file ``text`` of ``zone_name`` into a :class:`Wanted` (raises ZoneError)."""
    origin = dns.name.from_text(zone_name)
    try:
        zone = dns.zone.from_text(text, origin=origin, relativize=True, check_origin=False)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ZoneError(f"cannot parse zone {zone_name}: {exc}") from exc
    soa = None
    rrsets = {}
    for name, rds in zone.iterate_rdatasets():
        if rds.rdclass != dns.rdataclass.IN:
            continue
        if rds.rdtype == dns.rdatatype.SOA and name == dns.name.empty:
            soa = rds
        else:
            rrsets[(name, rds.rdtype)] = rds
    if soa is None:
        raise ZoneError(f"zone {zone_name} has no SOA record at its apex")
    return Wanted(origin=origin, soa=soa, rrsets=rrsets, exempt=set())


def serial_of(zone_name, text):
    """The SOA serial of a zone's master-file text, or None when there is no (valid) text."""
    if not text:
        return None
    try:
        return parse_text(zone_name, text).soa[0].serial
    except ZoneError:
        return None


def _record_lines(wanted, key=None):
    origin = wanted.origin
    out = {}
    for (name, rdtype), rds in wanted.rrsets.items():
        if key is not None and (name, rdtype) != key:
            continue
        owner = name.derelativize(origin).to_text()
        for rd in rds:
            line = f"{owner} {rds.ttl} IN {dns.rdatatype.to_text(rdtype)} {rd.to_text(origin=origin, relativize=False)}"
            out[line] = (name, rdtype)
    return out


def _soa_fields(soa):
    rd = soa[0]
    return {
        "ttl": soa.ttl,
        "mname": rd.mname.to_text(),
        "rname": rd.rname.to_text(),
        "refresh": rd.refresh,
        "retry": rd.retry,
        "expire": rd.expire,
        "minimum": rd.minimum,
    }


def record_diff(live, wanted):
    """Record-by-record changes from ``live`` to ``wanted`` (both :class:`Wanted`; live may be None).

    Returns ``{"added": [...], "removed": [...]}`` with one sorted master-file line per record
    (absolute names). The SOA counts only when something other than its serial changed.
    """
    new = _record_lines(wanted)
    old = _record_lines(live) if live is not None else {}
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    soa_new = _soa_line(wanted)
    if live is None:
        added.insert(0, soa_new)
    elif _soa_fields(live.soa) != _soa_fields(wanted.soa):
        removed.insert(0, _soa_line(live))
        added.insert(0, soa_new)
    return {"added": added, "removed": removed}


def _soa_line(zone):
    return f"{zone.origin.to_text()} {zone.soa.ttl} IN SOA {zone.soa[0].to_text(origin=zone.origin, relativize=False)}"


# --- change safety ------------------------------------------------------------------------------


def safety_problems(live, wanted, max_share=0.3, min_records=10):
    """Why the change from ``live`` to ``wanted`` needs ``force``: a list of sentences (empty: safe).

    - any change of the apex NS RRset or of the SOA (other than its serial);
    - deleting or changing more than ``max_share`` of the live zone's records (SOA not counted),
      for zones of at least ``min_records`` records. RRsets that rotations own (``wanted.exempt``:
      the rotation names and apex service hostnames) are exempt: the failover bounds those itself.
      So are ACME challenge TXT records (:mod:`paphosting.challenges`): they come and go with
      every certificate issuance.
    A new zone (``live`` None) is always safe.
    """
    if live is None:
        return []
    problems = []
    apex_ns = (dns.name.empty, dns.rdatatype.NS)
    old_ns = sorted(
        rd.to_text(origin=live.origin, relativize=False) for rd in live.rrsets.get(apex_ns, ())
    )
    new_ns = sorted(
        rd.to_text(origin=wanted.origin, relativize=False) for rd in wanted.rrsets.get(apex_ns, ())
    )
    old_ns_ttl = live.rrsets[apex_ns].ttl if apex_ns in live.rrsets else None
    new_ns_ttl = wanted.rrsets[apex_ns].ttl if apex_ns in wanted.rrsets else None
    if old_ns != new_ns or old_ns_ttl != new_ns_ttl:
        problems.append(
            f"it changes the zone's NS records from {', '.join(old_ns) or 'none'} (TTL {old_ns_ttl}) "
            f"to {', '.join(new_ns) or 'none'} (TTL {new_ns_ttl})"
        )
    old_soa, new_soa = _soa_fields(live.soa), _soa_fields(wanted.soa)
    if old_soa != new_soa:
        what = ", ".join(
            f"{k} {old_soa[k]} -> {new_soa[k]}" for k in old_soa if old_soa[k] != new_soa[k]
        )
        problems.append(f"it changes the zone's SOA ({what})")
    old = _record_lines(live)
    new = _record_lines(wanted)
    total = len(old)
    if total >= min_records and total:
        gone = sorted(
            line
            for line, key in old.items()
            if line not in new
            and key not in wanted.exempt
            and key != apex_ns
            and not (key[1] == dns.rdatatype.TXT and challenges.is_owner(key[0]))
        )
        share = len(gone) / total
        if share > max_share:
            shown = "; ".join(gone[:10]) + ("; ..." if len(gone) > 10 else "")
            problems.append(
                f"it deletes or changes {len(gone)} of its {total} records ({share:.0%}, more than "
                f"the allowed {max_share:.0%}): {shown}"
            )
    return problems


# --- planning an apply --------------------------------------------------------------------------


@dataclass
class Plan:
    zone: str
    changed: bool  # content other than the serial differs: write, bump, reload
    text: str  # the text to write (the live text when nothing changed)
    serial_live: int | None  # the live file's serial
    serial_served: int | None  # what the running server answers, None when unknown
    serial_new: int  # the serial after the apply
    records: dict  # {"added": [...], "removed": [...]}
    problems: list  # change-safety reasons; empty when safe
    rotation_only: bool = False  # the change is confined to the rotation owners' A/AAAA records
    signed_live: str | None = None  # the live file when it is DNSSEC-signed (``live`` is unsigned)
    verify: bool = False  # the signed text must pass dnssec-verify before it is written

    @property
    def stale(self):
        """Nothing to write, but the server serves another serial than its file: reload it."""
        return (
            not self.changed
            and self.serial_served is not None
            and self.serial_served != self.serial_live
        )

    def refusal(self):
        """The message of a refused change, or None."""
        if not self.problems:
            return None
        return (
            f"refusing to change zone {self.zone}: "
            + "; and ".join(self.problems)
            + ". Nothing was written. Apply with force=True if this is intended."
        )

    def check(self, force=False):
        """Raise :class:`ChangeRefused` unless the change is safe or ``force`` is set."""
        if self.problems and not force:
            raise ChangeRefused(self.refusal())


_SOA_SERIAL_RE = re.compile(r"^\S+\s+\d+\s+IN\s+SOA\s+\S+\s+\S+\s+(\d+)\s", re.MULTILINE)


def soa_line(text):
    """``(ttl, [mname, rname, serial, refresh, retry, expire, minimum])`` of the SOA line of a
    zone text in the format this module writes (the line :func:`quick_serial` reads the serial
    off), or None without one."""
    match = _SOA_SERIAL_RE.search(text or "")
    if match is None:
        return None
    end = text.find("\n", match.start())
    fields = text[match.start() : None if end < 0 else end].split()
    if len(fields) != 11:
        return None
    return int(fields[1]), fields[4:]


def with_serial(text, serial):
    """``text`` (a zone text in the format this module writes) with its SOA serial set to
    ``serial``, everything else byte for byte; None when it has no SOA line of that format."""
    match = _SOA_SERIAL_RE.search(text or "")
    if match is None:
        return None
    return text[: match.start(1)] + str(int(serial)) + text[match.end(1) :]


def quick_serial(zone_name, text):
    """The serial of a zone's master-file text: read off the first SOA line when the file is in
    the format this module writes, else parsed in full (:func:`serial_of`); None without one."""
    if not text:
        return None
    match = _SOA_SERIAL_RE.search(text)
    if match is not None:
        return int(match.group(1))
    return serial_of(zone_name, text)


def _rotation_lines(address_owners, zone_name, text):
    """``(masked, owned)`` lines of a zone text in this module's format: ``owned`` are the rotation
    owners' A/AAAA lines (as absolute record lines), ``masked`` every other line with the SOA
    serial blanked. Two texts whose ``masked`` agree differ only in what a failover changes."""
    owners = {
        "@" if f == zone_name else f[: -len(zone_name) - 1]
        for f, _ in address_owners.get(zone_name, ())
    }
    masked, owned = [], []
    origin = zone_name + "."
    for line in text.splitlines():
        fields = line.split(None, 4)
        if len(fields) == 5 and fields[2] == "IN":
            if fields[3] in ("A", "AAAA") and fields[0] in owners:
                name = origin if fields[0] == "@" else f"{fields[0]}.{origin}"
                owned.append(f"{name} {fields[1]} IN {fields[3]} {fields[4].strip()}")
                continue
            if fields[3] == "SOA":
                rdata = fields[4].split()
                if len(rdata) == 7:
                    rdata[2] = "*"
                line = " ".join(fields[:4] + rdata)
        masked.append(line)
    return masked, owned


def plan(
    platform,
    zone_name,
    live_text,
    today=None,
    members=None,
    served_serial=None,
    renderer=None,
):
    """What applying ``zone_name`` over ``live_text`` (None: no zone yet) would do.

    The serial is bumped only when content other than the serial changes, from the newest of the
    live file's serial and ``served_serial`` (what the running server answers), so it never goes
    backwards whichever master triggered the apply.

    With a :class:`Renderer` (``renderer``) the common cases cost no parsing: a zone whose text is
    current is recognised by comparing texts, and a change confined to the rotation owners' A/AAAA
    lines (a failover) is recognised line by line and needs no change-safety check (those RRsets
    are exempt). Anything else (a pillar change, a hand edit) is parsed and checked in full.
    """
    renderer = renderer or Renderer(platform)
    name = renderer.zone(zone_name)
    live_serial = quick_serial(name, live_text)
    old_serial = newest_serial(live_serial, served_serial)
    before, after = renderer.around_serial(name, members)  # one render, compared and reused
    if (
        live_text
        and live_serial is not None
        and old_serial == live_serial
        and len(live_text) == len(before) + len(str(live_serial)) + len(after)
        and live_text.startswith(before)
        and live_text.endswith(after)
        and live_text[len(before) : len(live_text) - len(after)] == str(live_serial)
    ):
        nothing = {"added": [], "removed": []}
        return Plan(name, False, live_text, live_serial, served_serial, live_serial, nothing, [])
    serial = next_serial(old_serial, today or today_utc())
    text = before + str(int(serial)) + after
    if live_text:
        owners = renderer.address_owners
        old_masked, old_owned = _rotation_lines(owners, name, live_text)
        new_masked, new_owned = _rotation_lines(owners, name, text)
        if old_masked == new_masked:
            records = {
                "added": sorted(set(new_owned) - set(old_owned)),
                "removed": sorted(set(old_owned) - set(new_owned)),
            }
            return Plan(name, True, text, live_serial, served_serial, serial, records, [], True)
    live = None
    if live_text:
        try:
            live = parse_text(name, live_text)
        except ZoneError:
            live = None  # an unreadable live file is replaced; its serial is unknown
    platform = renderer.platform
    wanted = build(platform, name, serial, members)
    limits = platform.dns or {}
    problems = safety_problems(
        live, wanted, limits.get("max_change_share", 0.3), limits.get("min_records_for_share", 10)
    )
    return Plan(
        name,
        True,
        text,
        live_serial,
        served_serial,
        serial,
        record_diff(live, wanted),
        problems,
    )


def patch_rotation(zone_name, live_text, wanted_text, address_owners, serial):
    """``live_text`` with the rotation owners' A/AAAA RRsets taken from ``wanted_text`` and the
    SOA serial set to ``serial``; every other record as it is live (hand edits included).

    What a failover writes into a zone whose live file differs from the pillar in more than the
    rotation's records (a hand edit, a restored backup): the failover must not wait for that to
    be repaired (drift correction does it, through the change-safety rule). None when the live
    rotation records are already the wanted ones. Raises :class:`ZoneError` when the live text
    cannot be parsed.
    """
    origin = dns.name.from_text(zone_name)
    try:
        live = dns.zone.from_text(live_text, origin=origin, relativize=True, check_origin=False)
        wanted = dns.zone.from_text(wanted_text, origin=origin, relativize=True, check_origin=False)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ZoneError(f"cannot parse zone {zone_name}: {exc}") from exc
    same = True
    for fqdn, _ in address_owners.get(zone_name, ()):
        name = dns.name.from_text(fqdn).relativize(origin)
        for rdtype in _ADDRESS_TYPES:
            old = live.get_rdataset(name, rdtype)
            rds = wanted.get_rdataset(name, rdtype)
            if (old is None) != (rds is None) or (
                old is not None and (old != rds or old.ttl != rds.ttl)
            ):
                same = False
            live.delete_rdataset(name, rdtype)
            if rds is not None:
                live.replace_rdataset(name, rds)
    if same:
        return None
    soa = live.get_rdataset(dns.name.empty, dns.rdatatype.SOA)
    if soa is None:
        raise ZoneError(f"zone {zone_name} has no SOA record at its apex")
    new_soa = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.SOA, ttl=soa.ttl)
    new_soa.add(soa[0].replace(serial=int(serial)))
    live.replace_rdataset(dns.name.empty, new_soa)
    body = live.to_text(sorted=True, relativize=False, nl="\n")
    return (
        f"; {zone_name}: the rotation's records as the failover set them, the rest as found "
        "(it differs from the pillar: drift correction repairs it).\n"
        f"$ORIGIN {origin.to_text()}\n{body}\n"
    )


# --- import -------------------------------------------------------------------------------------


def _name_text(name):
    return name.to_text(omit_final_dot=True).lower()


def import_dict(text, origin=None):
    """The pillar value (``{zone_name: {...}}``) for a zone in master-file format.

    Reads ``$ORIGIN``, ``$TTL``, relative names and any record type dnspython knows. The zone TTL
    becomes the SOA's TTL; records with another TTL keep theirs explicitly. The apex NS records
    become the ``ns`` list, the SOA the ``soa`` mapping (its serial is not imported: serials are
    managed), everything else (glue included) goes into ``records``.
    """
    try:
        zone = dns.zone.from_text(text, origin=origin, relativize=True, check_origin=False)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ZoneError(f"cannot parse the zone file: {exc}") from exc
    zorigin = zone.origin
    apex = dns.name.empty
    soa_rds = zone.get_rdataset(apex, dns.rdatatype.SOA)
    if soa_rds is None:
        raise ZoneError(f"zone {zorigin} has no SOA record at its apex")
    soa = soa_rds[0]
    zttl = soa_rds.ttl
    ns_rds = zone.get_rdataset(apex, dns.rdatatype.NS)
    if ns_rds is None:
        raise ZoneError(f"zone {zorigin} has no NS records at its apex")
    out = {
        "ttl": zttl,
        "ns": sorted(_name_text(rd.target.derelativize(zorigin)) for rd in ns_rds),
        "soa": {
            "mname": _name_text(soa.mname.derelativize(zorigin)),
            "rname": _name_text(soa.rname.derelativize(zorigin)),
            "refresh": soa.refresh,
            "retry": soa.retry,
            "expire": soa.expire,
            "minimum": soa.minimum,
        },
    }
    notes = []
    if ns_rds.ttl != zttl:
        notes.append(f"the apex NS TTL {ns_rds.ttl} becomes the zone TTL {zttl}")
    records = {}
    names = sorted(zone.keys(), key=lambda n: n.derelativize(zorigin))
    for name in names:
        node = zone[name]
        for rds in sorted(node.rdatasets, key=lambda r: int(r.rdtype)):
            if rds.rdclass != dns.rdataclass.IN:
                continue
            if name == apex and rds.rdtype in (dns.rdatatype.SOA, dns.rdatatype.NS):
                continue
            owner = _owner_text(name)
            for rd in _sorted_rdatas(rds, zorigin):
                item = {
                    "type": dns.rdatatype.to_text(rds.rdtype),
                    "data": rd.to_text(origin=zorigin, relativize=False),
                }
                if rds.ttl != zttl:
                    item["ttl"] = rds.ttl
                records.setdefault(owner, []).append(item)
    if records:
        out["records"] = records
    return {_name_text(zorigin): out}, notes


def import_zone(text, origin=None):
    """The pillar YAML (under ``paphosting:zones``) for a zone in master-file format.

    Paste the result into the platform pillar; rendering it gives the same RRsets as the file
    (the SOA serial excepted: the platform manages serials).
    """
    zones, notes = import_dict(text, origin)
    body = yaml.safe_dump(
        {ROOT: {"zones": zones}},
        default_flow_style=None,
        sort_keys=False,
        width=10_000,
        allow_unicode=False,
    )
    head = "".join(f"# note: {n}\n" for n in notes)
    return head + body
