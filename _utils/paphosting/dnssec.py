"""DNSSEC for the platform's zones: one key set per zone, signing, verification, rollovers.

Pure functions of their arguments (no Salt, no files); ``docs/dnssec.md`` explains the design.

- A zone's **key set** (:class:`KeySet`) is data: every key with its private key (PEM) and its
  timings (``publish``, ``activate``, ``inactive``, ``delete``: seconds since the epoch, None
  for "not scheduled"). The state of every key at a moment follows from those timings alone, so
  every nameserver that holds the same key set computes the same DNSKEY RRset at the same moment.
  Keys are made on a master (:func:`new_key`), never on a nameserver.
- :func:`sign` turns the unsigned master-file text that :mod:`paphosting.zone` renders into the
  signed text that the servers load: DNSKEY (and CDS/CDNSKEY) at the apex, one RRSIG per RRset,
  the NSEC or NSEC3 chain. Given the previous signed text it reuses every signature of an RRset
  that did not change and that is still fresh, so a failover re-signs only the rotation's A/AAAA
  RRsets and the SOA. Signatures are deterministic (RFC 6979) and their validity window is
  rounded to the hour: two nameservers signing the same zone in the same hour write the same text.
- The signed text is the unsigned text with the DNSSEC records added: :func:`unsigned_text`
  strips them again, so the zone planning (serials, diffs, change safety) is the same for signed
  and unsigned zones. Its first line (:data:`MARK`) records what the signer did: the keys, the
  earliest signature expiry and a digest of the rest, so :func:`resign_reason` knows without
  parsing when a zone must be signed again (a key changes state, signatures near expiry, a hand
  edit).
- :func:`verify_new` validates the signatures :func:`sign` made in Python (the fast path of a
  failover); a full signing is verified with ``dnssec-verify`` (:func:`verify_command`).
- Rollovers (RFC 7583): :func:`roll_zsk` (pre-publish, automatic when :func:`zsk_due`),
  :func:`start_ksk_rollover` / :func:`confirm_ds` (double-KSK with CDS/CDNSKEY, operator driven).
"""

import base64
import concurrent.futures
import datetime
import hashlib
import json
import re
import subprocess
import time
from dataclasses import dataclass, field, replace

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from paphosting.errors import PapError

ALGORITHMS = {13: "ECDSAP256SHA256", 14: "ECDSAP384SHA384", 15: "ED25519"}
DEFAULT_ALGORITHM = 13
MARK = "; dnssec: "
HOUR = 3600
DAY = 86400

_RRSIG = dns.rdatatype.RRSIG
_NSEC = dns.rdatatype.NSEC
_NSEC3 = dns.rdatatype.NSEC3
_NSEC3PARAM = dns.rdatatype.NSEC3PARAM
_DNSKEY = dns.rdatatype.DNSKEY
_CDS = dns.rdatatype.CDS
_CDNSKEY = dns.rdatatype.CDNSKEY
_SOA = dns.rdatatype.SOA
_NS = dns.rdatatype.NS
_DS = dns.rdatatype.DS
# What the signer adds; everything else in a signed zone is the rendered zone.
ADDED_TYPES = frozenset(("RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY"))


class DnssecError(PapError):
    """A zone cannot be signed, a key set is invalid, or a signed zone does not validate."""


# --- policy and timings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """How a zone is signed and how its keys roll; every duration in seconds.

    ``propagation`` is RFC 7583's Dprp: the longest a change takes to be served by every
    nameserver. Key states change with time, and a nameserver re-signs at its next apply (the
    drift schedule), so it is the highstate interval plus its splay.
    """

    algorithm: int = DEFAULT_ALGORITHM
    nsec3: bool = False
    validity: int = 14 * DAY  # signature lifetime
    refresh: int = 7 * DAY  # re-sign when a signature expires sooner than this
    zsk_lifetime: int = 90 * DAY
    propagation: int = 2100  # Dprp: highstate interval + splay (1800 + 300 by default)
    safety: int = HOUR  # RFC 7583's safety margins
    parent_ds_ttl: int = DAY  # the DS TTL at the parent (the registry), for the KSK rollover

    def publish_interval(self, dnskey_ttl):
        """Ipub (RFC 7583 3.2.1): a new key is in every cache's DNSKEY RRset after this."""
        return self.propagation + dnskey_ttl + self.safety

    def retire_interval(self, max_ttl):
        """Iret (RFC 7583 3.2.1, signatures all replaced at once): old signatures are gone from
        every cache after this."""
        return self.propagation + max_ttl + self.safety

    def ksk_retire_interval(self):
        """After the operator confirms the new DS at the registrar, the old DS leaves resolvers'
        caches after the parent's DS TTL (plus the parent's own propagation, one safety margin)."""
        return self.parent_ds_ttl + self.safety


def policy(zone_settings, dns_dnssec=None, schedule=None):
    """The :class:`Policy` of a zone from its pillar ``dnssec`` (``{"algorithm", "nsec3"}``),
    ``paphosting:dns:dnssec`` and ``paphosting:schedule`` (as :mod:`paphosting.model` parsed them)."""
    dns_dnssec = {k: v for k, v in (dns_dnssec or {}).items() if v is not None}
    schedule = schedule or {}
    if "propagation" not in dns_dnssec:
        dns_dnssec["propagation"] = int(schedule.get("highstate_interval", 1800)) + int(
            schedule.get("splay", 300)
        )
    return Policy(
        algorithm=int((zone_settings or {}).get("algorithm", DEFAULT_ALGORITHM)),
        nsec3=bool((zone_settings or {}).get("nsec3", False)),
        **dns_dnssec,
    )


# --- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One DNSSEC key of a zone. ``role`` is ``ksk`` (SEP flag, signs the DNSKEY RRset) or ``zsk``."""

    role: str
    algorithm: int
    private: str  # PKCS#8 PEM
    publish: int
    activate: int
    inactive: int | None = None
    delete: int | None = None
    ds_confirmed: int | None = None  # KSK: when the operator confirmed its DS at the registrar

    def __post_init__(self):
        if self.role not in ("ksk", "zsk"):
            raise DnssecError(f"key role must be ksk or zsk, not {self.role!r}")
        if self.algorithm not in ALGORITHMS:
            raise DnssecError(f"algorithm {self.algorithm} is not one of {sorted(ALGORITHMS)}")

    @property
    def private_key(self):
        return _load_private(self.private)

    @property
    def dnskey(self):
        return _dnskey(self.private, self.algorithm, self.role)

    @property
    def tag(self):
        return dns.dnssec.key_id(self.dnskey)

    def published(self, now):
        return self.publish <= now and (self.delete is None or now < self.delete)

    def signing(self, now):
        """Makes signatures at ``now``. A KSK signs the DNSKEY RRset as long as it is in it
        (double-KSK rollover: the new one from its publication); a ZSK from its activation until
        it is inactive."""
        if self.role == "ksk":
            return self.published(now)
        return self.activate <= now and (self.inactive is None or now < self.inactive)

    def state(self, now):
        """``future``, ``published`` (in the DNSKEY RRset, not yet in every cache), ``active``,
        ``active, retiring`` (a successor is under way), ``retired`` (published, no longer
        signing) or ``removed``."""
        if now < self.publish:
            return "future"
        if not self.published(now):
            return "removed"
        if now < self.activate:
            return "published"
        if self.signing(now):
            return "active" if self.inactive is None and self.delete is None else "active, retiring"
        return "retired"

    def to_dict(self):
        return {
            "role": self.role,
            "algorithm": self.algorithm,
            "private": self.private,
            "publish": self.publish,
            "activate": self.activate,
            "inactive": self.inactive,
            "delete": self.delete,
            "ds_confirmed": self.ds_confirmed,
        }


_DNSKEY_CACHE = {}
_PRIVATE_CACHE = {}


def _load_private(pem):
    key = _PRIVATE_CACHE.get(pem)
    if key is None:
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise DnssecError(f"not a private key in PEM: {exc}") from exc
        _PRIVATE_CACHE[pem] = key
    return key


def _dnskey(pem, algorithm, role):
    cache_key = (pem, algorithm, role)
    rd = _DNSKEY_CACHE.get(cache_key)
    if rd is None:
        flags = dns.dnssec.Flag.ZONE | (dns.dnssec.Flag.SEP if role == "ksk" else 0)
        rd = dns.dnssec.make_dnskey(_load_private(pem).public_key(), algorithm, flags=flags)
        _DNSKEY_CACHE[cache_key] = rd
    return rd


def generate_private(algorithm=DEFAULT_ALGORITHM):
    """A new private key (PKCS#8 PEM) for ``algorithm`` (13, 14 or 15)."""
    if algorithm == 13:
        key = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == 14:
        key = ec.generate_private_key(ec.SECP384R1())
    elif algorithm == 15:
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise DnssecError(f"algorithm {algorithm} is not one of {sorted(ALGORITHMS)}")
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def new_key(role, algorithm, publish, activate, private=None):
    """A new :class:`Key` (a fresh private key unless ``private`` is given)."""
    return Key(
        role=role,
        algorithm=algorithm,
        private=private or generate_private(algorithm),
        publish=int(publish),
        activate=int(activate),
    )


@dataclass(frozen=True)
class KeySet:
    """Every key of one zone (the secret the platform stores per zone)."""

    zone: str
    keys: tuple = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, zone, data, where="paphosting_secrets:dnssec"):
        """The key set stored as ``data`` (``{"keys": [...]}``); errors name ``where``."""
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise DnssecError(f"{where}:{zone}: must be a mapping with a list 'keys'")
        keys = []
        for i, item in enumerate(data["keys"]):
            try:
                if not isinstance(item, dict):
                    raise DnssecError("must be a mapping")
                keys.append(
                    Key(
                        role=item["role"],
                        algorithm=int(item["algorithm"]),
                        private=item["private"],
                        publish=int(item["publish"]),
                        activate=int(item["activate"]),
                        inactive=_opt_int(item.get("inactive")),
                        delete=_opt_int(item.get("delete")),
                        ds_confirmed=_opt_int(item.get("ds_confirmed")),
                    )
                )
                keys[-1].dnskey  # noqa: B018 (the private key must load)
            except (KeyError, TypeError, ValueError, DnssecError) as exc:
                raise DnssecError(f"{where}:{zone}:keys:{i}: invalid key: {exc}") from None
        return cls(zone=zone, keys=tuple(keys))

    def to_dict(self):
        return {"keys": [k.to_dict() for k in self.keys]}

    @classmethod
    def from_text(cls, zone, text, where="paphosting_secrets:dnssec"):
        """The key set stored as the secret text (JSON, :meth:`to_text`) or already as data."""
        if isinstance(text, dict):
            return cls.from_dict(zone, text, where)
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise DnssecError(f"{where}:{zone}: not a key set (JSON): {exc}") from None
        return cls.from_dict(zone, data, where)

    def to_text(self):
        """The secret's plaintext (encrypted before it is stored: :mod:`paphosting.secrets`)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    def published(self, now):
        return [k for k in self.keys if k.published(now)]

    def signers(self, now, role):
        return [k for k in self.keys if k.role == role and k.signing(now)]

    def check(self, now):
        """Raise :class:`DnssecError` unless the set can sign at ``now``: a signing KSK and ZSK."""
        for role in ("ksk", "zsk"):
            if not self.signers(now, role):
                raise DnssecError(
                    f"zone {self.zone}: no {role.upper()} is active at "
                    f"{_utc(now)} (keys: {', '.join(describe(k, now) for k in self.keys) or 'none'})"
                )

    def cds_keys(self, now):
        """The KSKs whose DS the parent should hold (RFC 7344): the KSKs in every cache
        (``activate`` passed) that are not being retired; during a KSK rollover, the old one
        until the new one is in every cache, then the new one alone."""
        ready = [k for k in self.keys if k.role == "ksk" and k.published(now) and k.activate <= now]
        staying = [k for k in ready if k.inactive is None and k.delete is None]
        return staying or ready

    def fingerprint(self, now):
        """What a signed zone records of the keys: published tags, signing tags, CDS tags."""
        return (
            "dnskey=" + ",".join(str(t) for t in sorted(k.tag for k in self.published(now))),
            "sign="
            + ",".join(
                str(t)
                for t in sorted(k.tag for k in self.signers(now, "ksk") + self.signers(now, "zsk"))
            ),
            "cds=" + ",".join(str(t) for t in sorted(k.tag for k in self.cds_keys(now))),
        )

    def next_event(self, now):
        """The next moment (after ``now``) at which a key changes state, or None."""
        times = [
            t
            for k in self.keys
            for t in (k.publish, k.activate, k.inactive, k.delete)
            if t is not None and t > now
        ]
        return min(times) if times else None


def _opt_int(value):
    return None if value is None else int(value)


def _utc(ts):
    return datetime.datetime.fromtimestamp(int(ts), datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe(key, now):
    """``ZSK 12345 active`` for people (never the private key)."""
    return f"{key.role.upper()} {key.tag} {key.state(now)}"


def initial_keyset(zone, now, algorithm=DEFAULT_ALGORITHM):
    """A first key set: one KSK and one ZSK, both active at once (a zone that was not signed has
    no cached DNSKEY RRset to wait for)."""
    now = int(now)
    return KeySet(
        zone=zone,
        keys=(new_key("ksk", algorithm, now, now), new_key("zsk", algorithm, now, now)),
    )


def zsk_due(keyset, now, policy):
    """Whether the ZSK rollover should start: the newest ZSK is older than its lifetime and no
    successor is under way."""
    zsks = [k for k in keyset.keys if k.role == "zsk" and k.published(now)]
    if not zsks or any(k.inactive is not None for k in zsks):
        return False
    newest = max(zsks, key=lambda k: k.activate)
    return now >= newest.activate + policy.zsk_lifetime


def roll_zsk(keyset, now, policy, dnskey_ttl, max_ttl, private=None):
    """The key set with a ZSK pre-publish rollover scheduled from ``now`` (RFC 7583 3.2.1): the new
    ZSK is published now and signs after Ipub; the old one stops signing then and leaves the
    DNSKEY RRset after Iret. ``dnskey_ttl``/``max_ttl``: the zone's DNSKEY TTL and largest TTL."""
    now = int(now)
    current = keyset.signers(now, "zsk")
    if not current:
        raise DnssecError(f"zone {keyset.zone}: no active ZSK to roll")
    if any(k.inactive is not None for k in current):
        raise DnssecError(f"zone {keyset.zone}: a ZSK rollover is already under way")
    old = max(current, key=lambda k: k.activate)
    activate = now + policy.publish_interval(dnskey_ttl)
    new = new_key("zsk", old.algorithm, now, activate, private)
    retired = replace(old, inactive=activate, delete=activate + policy.retire_interval(max_ttl))
    keys = tuple(retired if k is old else k for k in keyset.keys) + (new,)
    return replace(keyset, keys=_prune(keys, now))


def start_ksk_rollover(keyset, now, policy, dnskey_ttl, private=None):
    """Start a KSK rollover (double-KSK, RFC 7583 3.3.2): a new KSK is published and signs the
    DNSKEY RRset beside the old one; once it is in every cache (Ipub) the CDS/CDNSKEY records name
    it alone and the operator puts its DS at the registrar, then runs :func:`confirm_ds`."""
    now = int(now)
    ksks = [k for k in keyset.keys if k.role == "ksk" and k.published(now)]
    if not ksks:
        raise DnssecError(f"zone {keyset.zone}: no KSK to roll")
    if any(k.ds_confirmed is None and k.activate > now for k in ksks) or len(ksks) > 1:
        raise DnssecError(
            f"zone {keyset.zone}: a KSK rollover is already under way "
            f"({', '.join(describe(k, now) for k in ksks)})"
        )
    old = ksks[0]
    activate = now + policy.publish_interval(dnskey_ttl)
    new = new_key("ksk", old.algorithm, now, activate, private)
    # The old KSK keeps its DS until the operator confirms the new one: retiring, not removed.
    retiring = replace(old, inactive=activate)
    keys = tuple(retiring if k is old else k for k in keyset.keys) + (new,)
    return replace(keyset, keys=keys)


def confirm_ds(keyset, tag, now, policy):
    """The operator confirms that the parent serves the DS of KSK ``tag`` (and no longer the old
    one): the old KSK leaves the zone after the parent's DS TTL."""
    now = int(now)
    new = [k for k in keyset.keys if k.role == "ksk" and k.tag == int(tag) and k.published(now)]
    if not new:
        raise DnssecError(f"zone {keyset.zone}: no published KSK with tag {tag}")
    new = new[0]
    if now < new.activate:
        raise DnssecError(
            f"zone {keyset.zone}: KSK {tag} is not in every cache before {_utc(new.activate)}; "
            "its DS must not be at the registrar alone before then"
        )
    delete = now + policy.ksk_retire_interval()
    keys = []
    for k in keyset.keys:
        if k is new:
            keys.append(replace(k, ds_confirmed=now))
        elif k.role == "ksk" and k.published(now) and k.delete is None:
            keys.append(replace(k, delete=delete))
        else:
            keys.append(k)
    return replace(keyset, keys=_prune(tuple(keys), now))


def _prune(keys, now, keep=30 * DAY):
    """Drop keys removed from the zone long ago (their private keys are no use any more)."""
    return tuple(k for k in keys if k.delete is None or now < k.delete + keep)


def ds_records(keyset, zone, now, digest="SHA256"):
    """The DS records (text) for the registrar: of the KSKs that :meth:`KeySet.cds_keys` names."""
    origin = dns.name.from_text(zone)
    return [dns.dnssec.make_ds(origin, k.dnskey, digest).to_text() for k in keyset.cds_keys(now)]


# --- the signed text ------------------------------------------------------------------------------


def is_signed(text):
    return bool(text) and text.startswith(MARK)


_ADDED_RE = re.compile(
    r"^\S+[ \t]+\d+[ \t]+IN[ \t]+(?:" + "|".join(sorted(ADDED_TYPES)) + r")[ \t].*\n?", re.MULTILINE
)


def unsigned_text(text):
    """The rendered zone inside a signed zone text (the text itself when it is not signed)."""
    if not is_signed(text):
        return text
    return _ADDED_RE.sub("", _body(text))


def _body(text):
    """A signed text without its first line (the signer's record)."""
    end = text.find("\n")
    return text[end + 1 :] if end >= 0 else ""


def header(text):
    """The signer's record in a signed zone's first line: ``{key: value}`` (empty when unsigned)."""
    if not is_signed(text):
        return {}
    end = text.find("\n")
    first = text[len(MARK) : end if end >= 0 else len(text)]  # no copy of a big zone
    return dict(item.split("=", 1) for item in first.split() if "=" in item)


def _digest(body):
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def intact(text):
    """Whether a signed zone text is what the signer wrote (no hand edit since)."""
    head = header(text)
    return bool(head) and head.get("digest") == _digest(_body(text))


def window(now, policy):
    """``(inception, expiration)`` of new signatures: rounded down to the hour (so that servers
    signing in the same hour agree byte for byte), inception one hour back for clock skew."""
    start = int(now) // HOUR * HOUR - HOUR
    return start, start + policy.validity


def resign_reason(signed_text, keyset, now, policy):
    """Why a current zone must be signed again at ``now`` (None: it need not). Read from the
    first line only (plus a digest of the text)."""
    if not is_signed(signed_text):
        return "the zone is not signed yet"
    head = header(signed_text)
    if head.get("algorithm") != str(policy.algorithm) or head.get("denial") != _denial(policy):
        return f"the zone is signed with {head.get('algorithm')}/{head.get('denial')}"
    try:
        expires = int(head.get("expires", 0))
    except ValueError:
        expires = 0
    if expires - now < policy.refresh:
        return f"signatures expire at {_utc(expires)}"
    for item in keyset.fingerprint(now):
        k, v = item.split("=", 1)
        if head.get(k) != v:
            return f"the keys changed state ({k} {head.get(k)} -> {v})"
    if not intact(signed_text):
        return "the signed zone was edited by hand"
    return None


def _denial(policy):
    return "nsec3" if policy.nsec3 else "nsec"


@dataclass
class _Block:
    """One RRset of the rendered text: its lines (as written) and what signing needs."""

    key: tuple  # (absolute owner text, type text)
    name: dns.name.Name  # absolute
    rdtype: int
    ttl: int
    lines: list
    body: tuple  # the lines without the owner column: the RRset's identity


def _parse_blocks(text, origin):
    """``(prefix lines, blocks)`` of a rendered zone text: directives and comments before the first
    record, then one :class:`_Block` per RRset (records of one RRset are consecutive, as
    :mod:`paphosting.zone` writes them; a set split in two is merged)."""
    prefix, blocks, index = [], [], {}
    origin_text = origin.to_text()
    current_origin = origin
    last_owner = None
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if not stripped or stripped.startswith(";"):
            if not blocks:
                prefix.append(line)
            continue
        if stripped.startswith("$"):
            if stripped.upper().startswith("$ORIGIN"):
                current_origin = dns.name.from_text(stripped.split()[1], origin)
            if not blocks:
                prefix.append(line)
            continue
        fields = line.split(None, 4)
        if line[0] in " \t":
            fields = [last_owner] + line.split(None, 3)
        if len(fields) != 5 or fields[2] != "IN":
            raise DnssecError(f"zone {origin_text}: cannot sign the line {line.strip()!r}")
        owner, ttl, _, rtype, rdata = fields
        last_owner = owner
        if owner == "@":
            abs_owner = current_origin.to_text()
        elif owner.endswith("."):
            abs_owner = owner
        else:
            abs_owner = f"{owner}.{current_origin.to_text()}"
        abs_owner = abs_owner.lower()
        rtype = rtype.upper()
        if rtype in ADDED_TYPES:
            continue
        key = (abs_owner, rtype)
        body_line = f"{ttl} {rtype} {rdata.strip()}"
        block = index.get(key)
        if block is None:
            block = index[key] = _Block(
                key=key,
                name=dns.name.from_text(abs_owner),
                rdtype=dns.rdatatype.from_text(rtype),
                ttl=int(ttl),
                lines=[],
                body=(),
            )
            blocks.append(block)
        block.lines.append(line if line.endswith("\n") else line + "\n")
        block.body = block.body + (body_line,)
        block.ttl = min(block.ttl, int(ttl))
    return prefix, blocks


def _rdataset(block, origin):
    rds = dns.rdataset.Rdataset(dns.rdataclass.IN, block.rdtype)
    for body in block.body:
        _, _, rdata = body.split(" ", 2)
        rds.add(
            dns.rdata.from_text(
                dns.rdataclass.IN, block.rdtype, rdata, origin=origin, relativize=False
            )
        )
    rds.update_ttl(block.ttl)
    return rds


def _old_signatures(signed_text):
    """``{(owner, type): (rrset body, [RRSIG lines])}`` and ``{owner: [NSEC line]}`` /
    ``{hashed owner: NSEC3 line + RRSIG}`` of a previous signed text, for reuse."""
    sigs, current = {}, {}
    if not is_signed(signed_text) or not intact(signed_text):
        return sigs
    origin_text = None
    for line in signed_text.splitlines(keepends=True)[1:]:
        fields = line.split(None, 4)
        if len(fields) != 5 or fields[2] != "IN":
            if line.startswith("$ORIGIN"):
                origin_text = line.split()[1].lower()
            continue
        owner, ttl, _, rtype, rdata = fields
        if owner == "@":
            owner = origin_text
        elif not owner.endswith("."):
            owner = f"{owner}.{origin_text}"
        owner = owner.lower()
        if rtype == "RRSIG":
            covered = rdata.split(None, 1)[0]
            key = (owner, covered)
            entry = sigs.setdefault(key, [current.get(key, ()), []])
            entry[1].append(line)
        else:
            key = (owner, rtype)
            body = f"{ttl} {rtype} {rdata.strip()}"
            current[key] = current.get(key, ()) + (body,)
            if key in sigs:
                sigs[key][0] = current[key]
    return {k: (tuple(v[0]), v[1]) for k, v in sigs.items()}


def _sig_fresh(line, tags, now, policy):
    """Whether an RRSIG line (as written) may be kept: made by a key that signs now, and not
    expiring within the refresh interval. ``(fresh, expiration)``."""
    fields = line.split()
    # owner ttl IN RRSIG covered alg labels origttl expiration inception tag signer sig
    try:
        expiration = int(
            datetime.datetime.strptime(fields[8], "%Y%m%d%H%M%S")
            .replace(tzinfo=datetime.UTC)
            .timestamp()
        )
        tag = int(fields[10])
    except (IndexError, ValueError):
        return False, 0
    return tag in tags and expiration - now >= policy.refresh, expiration


def _rrsig_line(name, ttl, rrsig):
    return f"{name.to_text()} {ttl} IN RRSIG {rrsig.to_text()}\n"


@dataclass
class Signed:
    """The outcome of :func:`sign`: the text, and the signatures made (for :func:`verify_new`)."""

    text: str
    made: list  # [(dns.rrset.RRset, rrsig rdata)]
    reused: int
    full: bool  # no signature was reused: verify with the real tool


def sign(unsigned, zone_name, keyset, now, policy, previous=None):
    """Sign the rendered zone text ``unsigned`` with ``keyset`` at ``now`` (a :class:`Signed`).

    ``previous``: the live signed text; a signature in it is reused when its RRset is unchanged,
    its key still signs and it does not expire within ``policy.refresh``.
    """
    now = int(now)
    keyset.check(now)
    wrong = sorted({k.algorithm for k in keyset.keys} - {policy.algorithm})
    if wrong:
        raise DnssecError(
            f"zone {zone_name}: its keys are of algorithm {', '.join(map(str, wrong))}, the pillar "
            f"asks for {policy.algorithm}: an algorithm rollover is not supported (docs/dnssec.md)"
        )
    origin = dns.name.from_text(zone_name)
    if previous:
        fast = _patch_signed(previous, unsigned, origin, keyset, now, policy)
        if fast is not None:
            return fast
    prefix, blocks = _parse_blocks(unsigned, origin)
    if not blocks or blocks[0].rdtype != _SOA or blocks[0].name != origin:
        raise DnssecError(f"zone {zone_name}: the rendered zone does not start with its SOA")
    soa_block = blocks[0]
    soa = _rdataset(soa_block, origin)[0]
    dnskey_ttl = soa_block.ttl
    denial_ttl = min(soa.minimum, soa_block.ttl)
    inception, expiration = window(now, policy)
    ksks = keyset.signers(now, "ksk")
    zsks = keyset.signers(now, "zsk")
    tags_ksk = {k.tag for k in ksks}
    tags_zsk = {k.tag for k in zsks}
    old = _old_signatures(previous) if previous else {}

    # The apex records the signer adds: DNSKEY, CDS/CDNSKEY, NSEC3PARAM.
    apex_text = origin.to_text()
    added = []
    published = sorted(keyset.published(now), key=lambda k: k.tag)
    added.append(_made_block(apex_text, origin, _DNSKEY, dnskey_ttl, [k.dnskey for k in published]))
    cds_keys = keyset.cds_keys(now)
    if cds_keys:
        added.append(
            _made_block(
                apex_text, origin, _CDNSKEY, dnskey_ttl, [_cdnskey(k.dnskey) for k in cds_keys]
            )
        )
        added.append(
            _made_block(
                apex_text,
                origin,
                _CDS,
                dnskey_ttl,
                [_cds(origin, k.dnskey) for k in cds_keys],
            )
        )
    nsec3param = None
    if policy.nsec3:
        nsec3param = dns.rdata.from_text(dns.rdataclass.IN, _NSEC3PARAM, "1 0 0 -")
        added.append(_made_block(apex_text, origin, _NSEC3PARAM, 0, [nsec3param]))

    # Which names are delegations (NS below the apex) and which are below one (glue, not signed).
    delegations = sorted(b.name for b in blocks if b.rdtype == _NS and b.name != origin)
    types_at = {}
    for b in blocks + added:
        types_at.setdefault(b.name, set()).add(b.rdtype)

    def below_cut(name):
        return any(name != d and name.is_subdomain(d) for d in delegations)

    def at_cut(name):
        return name != origin and _NS in types_at.get(name, ())

    made, reused = [], 0
    earliest = None
    out_blocks = {}  # name -> [lines] in output order

    def signature_lines(block, role_tags, keys):
        nonlocal reused, earliest
        entry = old.get(block.key)
        if entry is not None and entry[0] == block.body:
            kept = []
            for line in entry[1]:
                fresh, exp = _sig_fresh(line, role_tags, now, policy)
                if not fresh:
                    kept = None
                    break
                kept.append((line, exp))
            if kept is not None and {int(line.split()[10]) for line, _ in kept} == role_tags:
                reused += len(kept)
                for _, exp in kept:
                    earliest = exp if earliest is None else min(earliest, exp)
                return [line for line, _ in kept]
        lines = _sign_block(block, keys, origin, inception, expiration, made)
        if lines:
            earliest = expiration if earliest is None else min(earliest, expiration)
        return lines

    for block in blocks + added:
        if below_cut(block.name):
            out_blocks.setdefault(block.name, []).extend(block.lines)
            continue
        lines = list(block.lines)
        if not at_cut(block.name) or block.rdtype == _DS:
            if block.rdtype in (_DNSKEY, _CDS, _CDNSKEY):
                lines += signature_lines(block, tags_ksk, ksks)
            else:
                lines += signature_lines(block, tags_zsk, zsks)
        out_blocks.setdefault(block.name, []).extend(lines)

    # Denial of existence.
    names = sorted(n for n in types_at if not below_cut(n))
    denial_lines = {}
    nsec3_tail = []
    if not policy.nsec3:
        for i, name in enumerate(names):
            nxt = names[(i + 1) % len(names)]
            types = set(types_at[name]) | {_NSEC, _RRSIG}  # the NSEC itself is signed
            block = _text_block(name, _NSEC, denial_ttl, f"{nxt.to_text()} {_types(types)}")
            denial_lines[name] = list(block.lines) + signature_lines(block, tags_zsk, zsks)
    else:
        # Every name and every empty non-terminal, hashed (RFC 5155, no opt-out; RFC 9276
        # parameters: SHA-1, no extra iterations, no salt).
        all_names = set(names)
        for name in names:
            parent = name
            while parent != origin:
                parent = parent.parent()
                all_names.add(parent)
        hashed = []
        for name in all_names:
            h = dns.dnssec.nsec3_hash(name, salt=None, iterations=0, algorithm=1)
            hashed.append((h.lower(), name))
        hashed.sort()
        for i, (h, name) in enumerate(hashed):
            nxt = hashed[(i + 1) % len(hashed)][0]
            types = set(types_at.get(name, ()))
            if types and (not at_cut(name) or _DS in types):
                types.add(_RRSIG)
            owner = dns.name.from_text(h, origin)
            block = _text_block(owner, _NSEC3, denial_ttl, f"1 0 0 - {nxt.upper()} {_types(types)}")
            nsec3_tail += list(block.lines) + signature_lines(block, tags_zsk, zsks)

    body = list(prefix)
    for name in sorted(out_blocks):
        body += out_blocks[name]
        body += denial_lines.get(name, [])
    body += nsec3_tail
    text_body = "".join(body)
    fp = " ".join(keyset.fingerprint(now))
    head = (
        f"{MARK}zone={origin.to_text()} algorithm={policy.algorithm} denial={_denial(policy)} "
        f"{fp} expires={earliest} signed={now} digest={_digest(text_body)}\n"
    )
    return Signed(text=head + text_body, made=made, reused=reused, full=reused == 0)


def _cdnskey(dnskey):
    return dns.rdata.from_text(dns.rdataclass.IN, _CDNSKEY, dnskey.to_text())


def _cds(origin, dnskey):
    ds = dns.dnssec.make_ds(origin, dnskey, "SHA256")
    return dns.rdata.from_text(dns.rdataclass.IN, _CDS, ds.to_text())


FAST_MAX_LINES = 2000  # changed lines beyond which signing it all is no slower


def _patch_signed(previous, unsigned, origin, keyset, now, policy):
    """The fast path of :func:`sign` (a :class:`Signed`, or None to sign in full): ``unsigned``
    differs from the zone inside ``previous`` only in the records of RRsets that exist in both
    (a failover's A/AAAA, the SOA serial), the keys are in the same state and no signature is due
    for renewal. Only those RRsets are signed, and spliced into the previous text in place of
    theirs: no parsing of the rest, whatever the size of the zone. The NSEC/NSEC3 chain is
    unchanged (no name gains or loses a type)."""
    if resign_reason(previous, keyset, now, policy) is not None:
        return None
    head = header(previous)
    old_unsigned = unsigned_text(previous)
    old_lines = old_unsigned.splitlines(keepends=True)
    new_lines = unsigned.splitlines(keepends=True)
    old_set, new_set = set(old_lines), set(new_lines)
    changed = [ln for ln in old_lines if ln not in new_set] + [
        ln for ln in new_lines if ln not in old_set
    ]
    if not changed or len(changed) > FAST_MAX_LINES:
        return None
    keys = set()
    for line in changed:
        fields = line.split(None, 4)
        if len(fields) != 5 or fields[2] != "IN" or line[0] in " \t;$":
            return None  # a directive, a comment or a continuation changed
        keys.add((fields[0], fields[3].upper()))
    owners = tuple({k[0] + " " for k in keys} | {k[0] + "\t" for k in keys})
    old_blocks, new_blocks = {}, {}
    for lines, blocks in ((old_lines, old_blocks), (new_lines, new_blocks)):
        for line in lines:
            if line.startswith(owners):
                fields = line.split(None, 4)
                key = (fields[0], fields[3].upper())
                if key in keys:
                    blocks.setdefault(key, []).append(line)
    if set(old_blocks) != keys or set(new_blocks) != keys:
        return None  # an RRset appears or disappears: the chain changes
    inception, expiration = window(now, policy)
    zsks = keyset.signers(now, "zsk")
    if any(k[1] in ("DNSKEY", "CDS", "CDNSKEY", "NS") and k[0] != "@" for k in keys):
        return None  # key material or a delegation: sign in full
    origin_text = origin.to_text()
    text = _body(previous)
    made = []
    replaced = 0
    for key in sorted(keys):
        old_text = "".join(old_blocks[key])
        at = text.find(old_text) if text.startswith(old_text) else text.find("\n" + old_text) + 1
        if at <= 0 and not text.startswith(old_text):
            return None
        end = at + len(old_text)
        owner, rtype = key
        abs_owner = (
            origin_text
            if owner == "@"
            else (owner if owner.endswith(".") else f"{owner}.{origin_text}")
        )
        sig_prefix = f"{abs_owner} "
        while True:  # the RRSIG lines right after the RRset
            nl = text.find("\n", end)
            line = text[end : nl + 1 if nl >= 0 else len(text)]
            if not (line.startswith(sig_prefix) and f" IN RRSIG {rtype} " in line):
                break
            end += len(line)
            replaced += 1
        _, blocks = _parse_blocks("".join(new_blocks[key]), origin)
        if len(blocks) != 1:
            return None
        sig_lines = _sign_block(blocks[0], zsks, origin, inception, expiration, made)
        text = text[:at] + "".join(new_blocks[key]) + "".join(sig_lines) + text[end:]
    expires = min(int(head.get("expires") or expiration), expiration)
    fp = " ".join(keyset.fingerprint(now))
    first = (
        f"{MARK}zone={origin_text} algorithm={policy.algorithm} denial={_denial(policy)} "
        f"{fp} expires={expires} signed={now} digest={_digest(text)}\n"
    )
    reused = text.count(" IN RRSIG ") - len(made)
    return Signed(text=first + text, made=made, reused=reused, full=False)


def _sign_block(block, keys, origin, inception, expiration, made):
    """The RRSIG lines of one RRset, one per key (deterministic ECDSA); each signature is
    appended to ``made`` with its RRset (for :func:`verify_new`)."""
    rds = getattr(block, "rds", None) or _rdataset(block, origin)  # parsed only to sign
    rrset = dns.rrset.RRset(block.name, dns.rdataclass.IN, block.rdtype)
    rrset.update(rds)
    rrset.ttl = block.ttl
    lines = []
    for key in keys:
        rrsig = dns.dnssec.sign(
            rrset,
            key.private_key,
            origin,
            key.dnskey,
            inception=inception,
            expiration=expiration,
            origin=origin,
            deterministic=True,
        )
        made.append((rrset, rrsig))
        lines.append(_rrsig_line(block.name, block.ttl, rrsig))
    return lines


def _types(types):
    return " ".join(dns.rdatatype.to_text(t) for t in sorted(types))


def _text_block(name, rdtype, ttl, rdata_text):
    """A one-record :class:`_Block` from its rdata text (parsed only if it must be signed)."""
    rtype = dns.rdatatype.to_text(rdtype)
    owner = name.to_text()
    return _Block(
        key=(owner.lower(), rtype),
        name=name,
        rdtype=rdtype,
        ttl=ttl,
        lines=[f"{owner} {ttl} IN {rtype} {rdata_text}\n"],
        body=(f"{ttl} {rtype} {rdata_text}",),
    )


def _made_block(owner_text, origin, rdtype, ttl, rdatas):
    """A :class:`_Block` for records the signer adds (absolute owner, one line per record)."""
    name = dns.name.from_text(owner_text)
    rds = dns.rdataset.Rdataset(dns.rdataclass.IN, rdtype)
    for rd in rdatas:
        rds.add(rd, ttl)
    rtype = dns.rdatatype.to_text(rdtype)
    lines, body = [], []
    for rd in sorted(rds, key=lambda r: r.to_digestable(origin)):
        text = rd.to_text(origin=origin, relativize=False)
        lines.append(f"{name.to_text()} {ttl} IN {rtype} {text}\n")
        body.append(f"{ttl} {rtype} {text}")
    block = _Block(
        key=(name.to_text().lower(), rtype),
        name=name,
        rdtype=rdtype,
        ttl=ttl,
        lines=lines,
        body=tuple(body),
    )
    block.rds = rds
    return block


# --- verification ---------------------------------------------------------------------------------


def verify_new(signed, zone_name, keyset, now):
    """Validate every signature :func:`sign` made against the zone's DNSKEY RRset, in Python; a
    :class:`DnssecError` names the first that does not validate."""
    origin = dns.name.from_text(zone_name)
    keys = {
        origin: dns.rrset.from_rdata_list(origin, 3600, [k.dnskey for k in keyset.published(now)])
    }
    for rrset, rrsig in signed.made:
        sigset = dns.rrset.from_rdata(rrset.name, rrset.ttl, rrsig)
        try:
            dns.dnssec.validate(rrset, sigset, keys, now=now, policy=dns.dnssec.allow_all_policy)
        except dns.dnssec.ValidationFailure as exc:
            raise DnssecError(
                f"zone {zone_name}: the new signature of {rrset.name} "
                f"{dns.rdatatype.to_text(rrset.rdtype)} does not validate: {exc}"
            ) from exc


def verify_command(zone_name, path):
    """The ``dnssec-verify`` command that checks a signed zone file completely (every RRset
    signed by an active key of every algorithm, the NSEC/NSEC3 chain, the DNSKEY RRset signed by
    a KSK)."""
    return ["dnssec-verify", "-q", "-o", zone_name.rstrip(".") + ".", path]


def verify_file(zone_name, path, now=None):
    """Why the signed zone file at ``path`` must not be served (None: it may): ``dnssec-verify``
    rejects it, or a signature in it has expired or expires within the hour (the signer's own
    record, checked against the clock)."""
    now = now_epoch() if now is None else int(now)
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
        expires = int(header(first).get("expires", 0))
    except (OSError, ValueError):
        return f"{path} is not a zone signed by the platform"
    if expires <= now + HOUR:
        return f"a signature of zone {zone_name} expires at {_utc(expires)}"
    try:
        res = subprocess.run(
            verify_command(zone_name, path),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"dnssec-verify could not run: {exc}"
    if res.returncode != 0:
        return (res.stdout + res.stderr).strip() or f"dnssec-verify exited {res.returncode}"
    return None


def verify_files(paths, now=None, workers=2):
    """``{zone: why}`` for the signed zone files (``{zone: path}``) that must not be served."""
    if not paths:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        found = dict(
            zip(paths, pool.map(lambda z: verify_file(z, paths[z], now), paths), strict=True)
        )
    return {z: why for z, why in found.items() if why}


def earliest_expiry_of(rrsigs):
    """The earliest expiration (epoch seconds) of RRSIG rdatas, or None."""
    times = [int(rd.expiration) for rd in rrsigs]
    return min(times) if times else None


def now_epoch():
    return int(time.time())


def key_digest(keyset):
    """A short digest of the public parts and timings of a key set (never the private keys)."""
    parts = sorted(
        f"{k.role}:{k.tag}:{k.publish}:{k.activate}:{k.inactive}:{k.delete}:{k.ds_confirmed}"
        for k in keyset.keys
    )
    return base64.b32encode(hashlib.sha256("|".join(parts).encode()).digest()[:10]).decode()


# --- status ---------------------------------------------------------------------------------------


def _when(ts, now):
    if ts is None:
        return "-"
    days = (int(ts) - now) / DAY
    return f"{_utc(ts)} ({days:+.1f} d)"


def next_rollover(keyset, now, policy):
    """A sentence: the next ZSK rollover (automatic) and the KSK's (operator started)."""
    zsks = [k for k in keyset.keys if k.role == "zsk" and k.published(now)]
    rolling = [k for k in zsks if k.inactive is not None]
    if rolling:
        zsk = f"ZSK rollover under way: the new ZSK signs from {_utc(max(k.inactive for k in rolling))}"
    elif zsks:
        due = max(k.activate for k in zsks) + policy.zsk_lifetime
        zsk = f"ZSK rollover starts {_utc(max(due, now))} (automatic: salt-run dnssec.maintain)"
    else:
        zsk = "no ZSK"
    ksks = [k for k in keyset.keys if k.role == "ksk" and k.published(now)]
    waiting = [k for k in ksks if k.ds_confirmed is None and len(ksks) > 1 and k.inactive is None]
    if waiting:
        new = waiting[0]
        if now < new.activate:
            ksk = f"KSK rollover: KSK {new.tag} is in every cache from {_utc(new.activate)}"
        else:
            ksk = (
                f"KSK rollover: put the DS of KSK {new.tag} at the registrar, then "
                f"salt-run dnssec.confirm_ds zone={keyset.zone} tag={new.tag}"
            )
    else:
        ksk = "KSK: operator started (salt-run dnssec.ksk_rollover)"
    return f"{zsk}; {ksk}"


def status_text(zones, keysets, served, now, policies):
    """The table of ``salt-run dnssec.status``: per signed zone its keys and their states, the
    next rollovers, the DS records for the registrar, and per nameserver the serial it serves and
    the earliest expiry of the signatures in the zone it serves.

    ``zones``: the signed zone names; ``keysets``: ``{zone: KeySet or None}``; ``served``:
    ``{zone: {nameserver: {"serial", "served", "expires", "dnskey"} or an error text}}``;
    ``policies``: ``{zone: Policy}``.
    """
    if not zones:
        return "No zone is signed (set dnssec: true on a zone in paphosting:zones)."
    out = []
    for zone in sorted(zones):
        pol = policies[zone]
        out.append(
            f"ZONE {zone}  (algorithm {pol.algorithm} {ALGORITHMS.get(pol.algorithm, '')}, "
            f"{'NSEC3' if pol.nsec3 else 'NSEC'})"
        )
        keyset = keysets.get(zone)
        if keyset is None:
            out.append("  no keys yet: salt-run dnssec.keygen")
        else:
            out.append(
                f"  {'KEY':<4} {'TAG':>5}  {'STATE':<17} {'PUBLISHED':<29} {'ACTIVE':<29} "
                f"{'INACTIVE':<29} {'REMOVED':<29}"
            )
            for k in sorted(keyset.keys, key=lambda k: (k.role, k.publish)):
                out.append(
                    f"  {k.role.upper():<4} {k.tag:>5}  {k.state(now):<17} "
                    f"{_when(k.publish, now):<29} {_when(k.activate, now):<29} "
                    f"{_when(k.inactive if k.role == 'zsk' else None, now):<29} "
                    f"{_when(k.delete, now):<29}"
                )
            out.append(f"  next: {next_rollover(keyset, now, pol)}")
            for ds in ds_records(keyset, zone, now):
                out.append(f"  DS for the registrar: {zone}. IN DS {ds}")
        rows = served.get(zone) or {}
        if rows:
            out.append(
                f"  {'NAMESERVER':<28} {'SERIAL':>10}  {'EARLIEST SIGNATURE EXPIRY':<29} KEYS"
            )
        for ns in sorted(rows):
            row = rows[ns]
            if isinstance(row, str):
                out.append(f"  {ns:<28} {'?':>10}  {row}")
                continue
            serial = row.get("served") or row.get("serial")
            expires = row.get("expires")
            note = "" if row.get("served") == row.get("serial") else f" (file {row.get('serial')})"
            out.append(
                f"  {ns:<28} {serial!s:>10}  "
                f"{_when(int(expires), now) if expires else 'not signed':<29} "
                f"{row.get('dnskey', '-')}{note}"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"
