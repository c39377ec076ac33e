"""The platform's pillar model: schema, validation and typed objects.

Everything lives under one pillar key, ``paphosting`` (see ``docs/pillar.md`` and
``pillar/paphosting.sls``). :func:`parse` validates a whole tree and either returns a
:class:`Platform` or raises :class:`InvalidPillar` listing every error with its pillar path. Unknown
keys are errors: a typo must never be silently ignored.
"""

import dataclasses
import functools
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from cryptography import x509

from paphosting.errors import InvalidPillar, PillarError, path_text

ROOT = "paphosting"

# Minion ids and service names end up as haproxy identifiers, file names and DNS labels.
ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?$")
SERVICE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# An HTTP path for health checks: no white space, quotes, backslash or '#', which mean something
# in haproxy.cfg.
HTTP_PATH_RE = re.compile(r"^/[A-Za-z0-9._~%/+=,:@!$&*;-]*(?:\?[A-Za-z0-9._~%/+=,:@!$&*;-]*)?$")
COOKIE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# C0 and C1 controls and the Unicode line and paragraph separators: each can break a line.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

SERVICE_MODES = ("systemd", "process")
DNS_SERVERS = ("bind", "nsd", "knot")
SERVICE_TYPES = ("stateless", "stateful")
FAILBACK = ("auto", "manual")
BALANCE = ("roundrobin", "leastconn", "first", "source")
HTTPS_MODES = ("redirect", "both", "off")
PEM_CERT_RE = re.compile(
    r"^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$"
)
TTL_MAX = 2**31 - 1


@dataclass(frozen=True)
class Check:
    path: str = "/"
    inter: int = 2000
    fall: int = 3
    rise: int = 2
    timeout: int = 2000
    expect_status: str = "200-399"


@dataclass(frozen=True)
class LoadBalancer:
    name: str
    address: str
    address6: str | None
    http_port: int
    health_path: str
    service_mode: str
    https_port: int = 443


@dataclass(frozen=True)
class Webserver:
    name: str
    address: str


@dataclass(frozen=True)
class Nameserver:
    name: str
    address: str
    port: int
    server: str
    fqdn: str
    service_mode: str
    control_port: int | None = None  # BIND's rndc port on 127.0.0.1 (default 953)


@dataclass(frozen=True)
class BackendServer:
    name: str
    address: str
    port: int
    role: str  # "active" for stateless, "primary"/"backup" for stateful


@dataclass(frozen=True)
class Service:
    name: str
    type: str
    hostnames: tuple
    rotation: str
    balance: str
    check: Check
    servers: tuple
    failback: str | None
    cookie_name: str | None
    https: str = "redirect"  # redirect | both | off (docs/tls.md)
    hsts: "Hsts | None" = None

    @property
    def stateful(self):
        return self.type == "stateful"


@dataclass(frozen=True)
class Hsts:
    max_age: int
    include_subdomains: bool = False
    preload: bool = False

    def header(self):
        """The Strict-Transport-Security header value."""
        parts = [f"max-age={self.max_age}"]
        if self.include_subdomains:
            parts.append("includeSubDomains")
        if self.preload:
            parts.append("preload")
        return "; ".join(parts)


@dataclass(frozen=True)
class Rotation:
    name: str  # fully qualified, no trailing dot
    ttl: int
    members: tuple  # load balancer minion ids, as configured
    min_members: int


@dataclass(frozen=True)
class Record:
    owner: str  # relative to the zone, "@" for the apex
    type: str
    data: str
    ttl: int | None
    # The data as parsed once by validation (a dns.rdata.Rdata), so rendering does not parse again.
    rdata: object = field(default=None, compare=False, repr=False)

    def __getstate__(self):
        # Not kept when pickled (platformcache): reparsed on demand, and 20x the rest's size.
        return {k: v for k, v in self.__dict__.items() if k != "rdata"}


@dataclass(frozen=True)
class Soa:
    mname: str
    rname: str
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True)
class Zone:
    name: str
    ttl: int
    soa: Soa
    ns: tuple
    records: tuple
    dnssec: dict | None = None  # {"algorithm": 13, "nsec3": False} when signed (docs/dnssec.md)


@dataclass(frozen=True)
class Health:
    watchers: tuple
    interval: float
    timeout: float
    fall: int
    rise: int
    quorum: int
    min_members: int
    heartbeat: float
    flap_window: float
    flap_max_transitions: int
    flap_hold: float


@dataclass(frozen=True)
class Master:
    name: str
    address: str


@dataclass(frozen=True)
class Listener:
    """Where an exporter serves ``/metrics`` (``paphosting:metrics``)."""

    address: str
    port: int
    stats_port: int = 8053  # nameservers: BIND's statistics channel, on 127.0.0.1


@dataclass(frozen=True)
class Acme:
    """``paphosting:acme``: certificates from an ACME CA through DNS-01 on the platform's own
    nameservers (docs/tls.md)."""

    directory: str  # the CA's ACME directory URL
    email: str | None
    ca_bundle: str | None  # a CA file for the directory's own HTTPS (a test CA); None: the system's
    renew_fraction: float  # renew when less than this share of the lifetime is left
    retry_min: int  # seconds before the first retry after a failure; doubles up to retry_max
    retry_max: int
    lock_timeout: int  # seconds after which another master's issuance lock is taken over
    propagation_timeout: int  # seconds every nameserver has to serve the challenge records
    services: dict  # {service name: (certificate names, ...)}


# The exporters of paphosting:metrics, each with its default port.
METRICS_ROLES = {"loadbalancers": 8405, "nameservers": 9119, "masters": 9120}


@dataclass(frozen=True)
class Platform:
    loadbalancers: dict
    webservers: dict
    nameservers: dict
    services: dict
    rotations: dict
    zones: dict
    health: Health
    masters: dict
    dns: dict = field(default_factory=dict)
    haproxy: dict = field(default_factory=dict)
    schedule: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    tls: dict = field(default_factory=dict)
    acme: Acme | None = None

    def roles(self, minion_id):
        """The roles (``loadbalancer``, ``nameserver``, ``webserver``) of one minion."""
        roles = []
        if minion_id in self.loadbalancers:
            roles.append("loadbalancer")
        if minion_id in self.nameservers:
            roles.append("nameserver")
        if minion_id in self.webservers:
            roles.append("webserver")
        return roles

    def nameserver(self, minion_id):
        """The :class:`Nameserver` of ``minion_id``; :class:`PillarError` when it is none."""
        if minion_id not in self.nameservers:
            raise PillarError((ROOT, "nameservers"), f"{minion_id} is not a nameserver")
        return self.nameservers[minion_id]

    @functools.cached_property
    def address_owners(self):
        """``{zone: ((name, rotation), ...)}``: the names of each zone that hold a rotation's A/AAAA
        records: rotation names, and service hostnames at a zone's apex (an apex cannot be a
        CNAME). These are the only RRsets a failover changes. Computed once per platform."""
        out = {}
        for name in sorted(self.rotations):
            zname = self.zone_of(name)
            if zname is not None:
                out.setdefault(zname, []).append((name, name))
        for sname in sorted(self.services):
            svc = self.services[sname]
            if svc.rotation is None:
                continue
            for host in svc.hostnames:
                if host in self.zones:
                    out.setdefault(host, []).append((host, svc.rotation))
        return {z: tuple(v) for z, v in out.items()}

    @functools.cached_property
    def alias_owners(self):
        """``{zone: ((hostname, rotation), ...)}``: service hostnames below an apex, which are
        CNAMEs to their rotation name (a failover never changes them)."""
        out = {}
        for sname in sorted(self.services):
            svc = self.services[sname]
            if svc.rotation is None:
                continue
            for host in svc.hostnames:
                zname = self.zone_of(host)
                if zname is not None and host != zname:
                    out.setdefault(zname, []).append((host, svc.rotation))
        return {z: tuple(v) for z, v in out.items()}

    def zones_of_rotations(self, rotations):
        """The zones holding A/AAAA records of any of ``rotations``, sorted."""
        wanted = set(rotations)
        return sorted(
            z for z, owners in self.address_owners.items() if any(r in wanted for _, r in owners)
        )

    def zone_of(self, fqdn):
        """The managed zone holding ``fqdn`` (longest suffix), or None.

        Zone names are kept lower case without the final dot (:func:`_fqdn`), so the suffixes of
        the name are looked up directly: a few dict lookups, whatever the number of zones.
        """
        labels = str(fqdn).rstrip(".").lower().split(".")
        for i in range(len(labels)):
            candidate = ".".join(labels[i:])
            if candidate in self.zones:
                return candidate
        return None


class _Errors:
    def __init__(self):
        self.errors = []

    def add(self, path, reason):
        self.errors.append(PillarError(path, reason))


def _mapping(value, path, errs, keys, required=()):
    """Check that ``value`` is a mapping with only ``keys`` and all ``required`` keys."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        errs.add(path, f"must be a mapping, got {type(value).__name__}")
        return {}
    for key in value:
        if key not in keys:
            hint = f" (known keys: {', '.join(sorted(keys))})"
            errs.add(path + (key,), "unknown key" + hint)
    for key in required:
        if key not in value:
            errs.add(path + (key,), "is required")
        elif value[key] is None:
            # YAML reads `key:` with nothing after it (or `~`, `null`) as null: the key is there
            # but says nothing, and every check below would take it for "not given".
            errs.add(path + (key,), "is required, and is empty here (null)")
    return value


def _int(value, path, errs, lo, hi, default=None):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        errs.add(path, f"must be an integer, got {value!r}")
        return default
    if not lo <= value <= hi:
        errs.add(path, f"{value} is out of range {lo}..{hi}")
        return default
    return value


def _number(value, path, errs, lo, hi, default=None):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errs.add(path, f"must be a number, got {value!r}")
        return default
    if not lo <= value <= hi:
        errs.add(path, f"{value} is out of range {lo}..{hi}")
        return default
    return float(value)


def _choice(value, path, errs, choices, default=None):
    if value is None:
        return default
    if value not in choices:
        errs.add(path, f"{value!r} is not one of {', '.join(choices)}")
        return default
    return value


def _str(value, path, errs, regex=None, what="value", default=None):
    if value is None:
        return default
    if not isinstance(value, str):
        errs.add(path, f"must be a string, got {type(value).__name__}")
        return default
    if CONTROL_RE.search(value):
        errs.add(path, f"{value!r} contains a newline or control character")
        return default
    if regex is not None and not regex.match(value):
        errs.add(path, f"{value!r} is not a valid {what}")
        return default
    return value


def _address(value, path, errs, version=None):
    text = _str(value, path, errs)
    if text is None:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        errs.add(path, f"{text!r} is not a valid IP address")
        return None
    if version and addr.version != version:
        errs.add(path, f"{text!r} is not an IPv{version} address")
        return None
    # Every address here is one machine's, which it listens on, others connect to and the zones
    # may hand out: not "any", a group or the broadcast, and without an IPv6 zone index
    # (fe80::1%eth0 names an interface of one host, and is no DNS data).
    if getattr(addr, "scope_id", None) is not None:
        errs.add(
            path, f"{text!r}: an IPv6 zone index (%...) names a local interface, not an address"
        )
        return None
    if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
        errs.add(
            path, f"{text!r} is not one machine's address (unspecified, multicast or broadcast)"
        )
        return None
    return str(addr)


# A host name label (RFC 952/1123): letters, digits and '-', not first or last. BIND refuses
# anything else (check-names) as the owner of an A, AAAA or MX record and in the names of NS, MX
# and SRV data; haproxy takes a host name that begins with '-' for an option.
HOST_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")


def _name_problem(labels, host=False, borders=True, wildcard=True):
    """Why a name (its labels as text, left to right, fully qualified) is not one a DNS server
    or haproxy takes as written, or None: a '*' that is not the whole first label (a wildcard,
    refused without ``wildcard``) is a plain character to DNS; with ``borders``, a label begins or ends with '-' (haproxy takes
    a host name that begins with '-' for an option); with ``host``, a label is not a host name
    label; an all-digit last label is an IP address written where a name belongs."""
    labels = [label for label in labels if label]
    for i, label in enumerate(labels):
        if label == "*" and i == 0:
            if wildcard:
                continue
            return "a wildcard is not a host name"
        if "*" in label:
            return "'*' is a wildcard only as the whole first label"
        if borders and (label.startswith("-") or label.endswith("-")):
            return f"the label {label!r} begins or ends with '-'"
        if host and not HOST_LABEL_RE.match(label):
            return (
                f"the label {label!r} is not a host name label (letters, digits and '-'; "
                "DNS servers refuse others here)"
            )
    if labels and labels[-1].isdigit():
        return "it ends in a number: an IP address where a name belongs?"
    return None


def _fqdn(value, path, errs, what="DNS name", key=False, host=False):
    text = _key(value, path, errs, what=what) if key else _str(value, path, errs)
    if text is None:
        return None
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        errs.add(path, f"{text!r} is not a valid {what}: {exc}")
        return None
    if not re.match(r"^[A-Za-z0-9*_.-]+\.?$", text):
        errs.add(path, f"{text!r} is not a valid {what}: only letters, digits, '-', '_', '.'")
        return None
    problem = _name_problem(text.split("."), host=host, wildcard=not host)
    if problem is not None:
        errs.add(path, f"{text!r} is not a valid {what}: {problem}")
        return None
    return name.to_text(omit_final_dot=True).lower()


def _list(value, path, errs):
    if value is None:
        return []
    if not isinstance(value, list):
        errs.add(path, f"must be a list, got {type(value).__name__}")
        return []
    return value


def _key(key, path, errs, regex=None, what="name"):
    """A mapping's key that names something (a server, a zone, an owner), or None. A key YAML
    read as null (``~:``, ``null:``, an empty key) is refused: :func:`_str` takes null for "not
    given", which would drop the entry without a word."""
    if key is None:
        errs.add(path, f"the key is empty (null), not a valid {what}")
        return None
    return _str(key, path, errs, regex, what)


def _named(value, path, errs, regex, what):
    """A mapping of name -> settings; names are checked against ``regex``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errs.add(path, f"must be a mapping of {what} names, got {type(value).__name__}")
        return {}
    out = {}
    for name, item in value.items():
        if _key(name, path + (name,), errs, regex, f"{what} name") is not None:
            out[name] = item
    return out


def _settings(raw, errs):
    path = (ROOT, "settings")
    raw = _mapping(raw, path, errs, {"service_mode"})
    return {
        "service_mode": _choice(
            raw.get("service_mode"), path + ("service_mode",), errs, SERVICE_MODES, "systemd"
        )
    }


def _haproxy_globals(raw, errs):
    path = (ROOT, "haproxy")
    keys = {
        "http_port",
        "health_path",
        "maxconn",
        "timeout_connect",
        "timeout_client",
        "timeout_server",
        "fd_limit",
        "https_port",
    }
    raw = _mapping(raw, path, errs, keys)
    return {
        "https_port": _int(raw.get("https_port"), path + ("https_port",), errs, 1, 65535, 443),
        # None: what each load balancer runs with (haproxy.default_fd_limit, docs/pillar.md).
        "fd_limit": _int(raw.get("fd_limit"), path + ("fd_limit",), errs, 1024, 2**31 - 1),
        "http_port": _int(raw.get("http_port"), path + ("http_port",), errs, 1, 65535, 80),
        "health_path": _str(
            raw.get("health_path"),
            path + ("health_path",),
            errs,
            HTTP_PATH_RE,
            "HTTP path",
            "/haproxy-health",
        ),
        "maxconn": _int(raw.get("maxconn"), path + ("maxconn",), errs, 1, 10_000_000, 4096),
        "timeout_connect": _int(
            raw.get("timeout_connect"), path + ("timeout_connect",), errs, 1, 3_600_000, 500
        ),
        "timeout_client": _int(
            raw.get("timeout_client"), path + ("timeout_client",), errs, 1, 3_600_000, 30000
        ),
        "timeout_server": _int(
            raw.get("timeout_server"), path + ("timeout_server",), errs, 1, 3_600_000, 30000
        ),
    }


def _machines(raw, role, errs, keys, required):
    """``(minion id, pillar path, mapping)`` of each machine under ``paphosting:<role>``."""
    path = (ROOT, role)
    for name, item in _named(raw, path, errs, ID_RE, "minion id").items():
        p = path + (name,)
        yield name, p, _mapping(item, p, errs, keys, required)


def _service_mode(item, p, errs, settings):
    """How a machine runs its daemon: its own ``service_mode``, else the platform's."""
    return _choice(
        item.get("service_mode"),
        p + ("service_mode",),
        errs,
        SERVICE_MODES,
        settings["service_mode"],
    )


def _loadbalancers(raw, errs, settings, hap):
    out = {}
    keys = {"address", "address6", "http_port", "https_port", "health_path", "service_mode"}
    for name, p, item in _machines(raw, "loadbalancers", errs, keys, ["address"]):
        out[name] = LoadBalancer(
            name=name,
            address=_address(item.get("address"), p + ("address",), errs, 4),
            address6=_address(item.get("address6"), p + ("address6",), errs, 6),
            http_port=_int(
                item.get("http_port"), p + ("http_port",), errs, 1, 65535, hap["http_port"]
            ),
            health_path=_str(
                item.get("health_path"),
                p + ("health_path",),
                errs,
                HTTP_PATH_RE,
                "HTTP path",
                hap["health_path"],
            ),
            service_mode=_service_mode(item, p, errs, settings),
            https_port=_int(
                item.get("https_port"), p + ("https_port",), errs, 1, 65535, hap["https_port"]
            ),
        )
        lb = out[name]
        if lb.https_port == lb.http_port:
            errs.add(p + ("https_port",), f"{lb.https_port} is already the http_port")
    if not out:
        errs.add((ROOT, "loadbalancers"), "at least one load balancer is required")
    return out


def _webservers(raw, errs):
    out = {}
    for name, p, item in _machines(raw, "webservers", errs, {"address"}, ["address"]):
        out[name] = Webserver(
            name=name, address=_address(item.get("address"), p + ("address",), errs)
        )
    return out


def _nameservers(raw, errs, settings):
    out = {}
    keys = {"address", "port", "server", "fqdn", "service_mode", "control_port"}
    for name, p, item in _machines(raw, "nameservers", errs, keys, ["address", "server"]):
        fqdn = name
        if item.get("fqdn") is not None:  # empty (null): the default, as for every optional key
            fqdn = _fqdn(item.get("fqdn"), p + ("fqdn",), errs, "host name", host=True)
        control_port = _int(item.get("control_port"), p + ("control_port",), errs, 1, 65535)
        if control_port is not None and control_port == item.get("port", 53):
            errs.add(p + ("control_port",), f"{control_port} is already the DNS port")
        server = _choice(item.get("server"), p + ("server",), errs, DNS_SERVERS)
        if control_port is not None and server not in (None, "bind"):
            # NSD and Knot are controlled through a local socket: the port would be ignored.
            errs.add(p + ("control_port",), f"applies to BIND only, not to {server}")
        out[name] = Nameserver(
            name=name,
            address=_address(item.get("address"), p + ("address",), errs),
            port=_int(item.get("port"), p + ("port",), errs, 1, 65535, 53),
            server=server,
            fqdn=fqdn,
            service_mode=_service_mode(item, p, errs, settings),
            control_port=control_port,
        )
    return out


def _unique_addresses(platform_parts, errs):
    """One minion id is one machine with one address (per family), whatever its roles; two
    different ids never share an address, except nameservers on different ports."""
    first = {}  # (id, attr) -> (role, address)
    owners = {}  # address -> [(role, id, server)]
    for role, servers in platform_parts:
        for name, server in servers.items():
            for attr in ("address", "address6"):
                addr = getattr(server, attr, None)
                if addr is None:
                    continue
                prev_role, prev_addr = first.setdefault((name, attr), (role, addr))
                if prev_addr != addr:
                    errs.add(
                        (ROOT, role, name, attr),
                        f"{addr} is not the {attr} {prev_addr} that {ROOT}:{prev_role}:{name} "
                        "gives the same minion id: one id is one machine, with one address",
                    )
                    continue
                for orole, oname, other in owners.get(addr, []):
                    if oname == name:
                        continue
                    # Several nameservers on one address: each on its own port (BIND, NSD and
                    # Knot on 127.0.0.1 of a test machine).
                    if role == orole == "nameservers" and server.port != other.port:
                        continue
                    errs.add(
                        (ROOT, role, name, attr),
                        f"{addr} is already the address of {orole} {oname!r}",
                    )
                    break
                owners.setdefault(addr, []).append((role, name, server))


def _listeners(loadbalancers, nameservers, errs):
    """No load balancer listens on an address and port a nameserver listens on (its DNS port,
    or BIND's rndc port on 127.0.0.1): one of the two daemons would not start."""
    taken = {}
    for name, ns in nameservers.items():
        if ns.address is not None and ns.port is not None:
            taken[(ns.address, ns.port)] = (name, "port")
        if ns.server == "bind":
            taken.setdefault(("127.0.0.1", ns.control_port or 953), (name, "control_port"))
    for name, lb in loadbalancers.items():
        for attr in ("address", "address6"):
            addr = getattr(lb, attr)
            for key, port in (("http_port", lb.http_port), ("https_port", lb.https_port)):
                owner = taken.get((addr, port))
                if addr is not None and owner is not None:
                    errs.add(
                        (ROOT, "loadbalancers", name, key),
                        f"{addr}:{port} is where nameserver {owner[0]!r} listens "
                        f"({ROOT}:nameservers:{owner[0]}:{owner[1]})",
                    )


def _check(raw, path, errs):
    raw = _mapping(raw, path, errs, {"path", "inter", "fall", "rise", "timeout", "expect_status"})
    d = Check()
    status = _str(
        raw.get("expect_status"),
        path + ("expect_status",),
        errs,
        re.compile(r"^[1-5]\d\d(-[1-5]\d\d)?$"),
        "HTTP status or range",
        d.expect_status,
    )
    return Check(
        path=_str(raw.get("path"), path + ("path",), errs, HTTP_PATH_RE, "HTTP path", d.path),
        inter=_int(raw.get("inter"), path + ("inter",), errs, 100, 3_600_000, d.inter),
        fall=_int(raw.get("fall"), path + ("fall",), errs, 1, 100, d.fall),
        rise=_int(raw.get("rise"), path + ("rise",), errs, 1, 100, d.rise),
        timeout=_int(raw.get("timeout"), path + ("timeout",), errs, 100, 3_600_000, d.timeout),
        expect_status=status,
    )


SERVICE_KEYS = {
    "type",
    "hostnames",
    "rotation",
    "balance",
    "check",
    "servers",
    "failback",
    "cookie_name",
    "port",
    "https",
    "hsts",
}


def _services(raw, errs, webservers, rotations):
    path = (ROOT, "services")
    out = {}
    hostnames_seen = {}  # hostname -> the service that has it
    for name, item in _named(raw, path, errs, SERVICE_RE, "service").items():
        p = path + (name,)
        item = _mapping(item, p, errs, SERVICE_KEYS, ["type", "hostnames", "servers"])
        stype = _choice(item.get("type"), p + ("type",), errs, SERVICE_TYPES)
        default_port = _int(item.get("port"), p + ("port",), errs, 1, 65535, 80)
        hostnames = _service_hostnames(item, p, errs, name, hostnames_seen)
        rotation = _service_rotation(item, p, errs, rotations)
        failback, cookie_name = _service_persistence(item, p, errs, stype)
        servers = _service_servers(item, p, errs, stype, webservers, default_port)
        if stype == "stateful" and servers:
            _stateful_roles(servers, p, errs)
        out[name] = Service(
            name=name,
            type=stype,
            hostnames=tuple(hostnames),
            rotation=rotation,
            balance=_choice(item.get("balance"), p + ("balance",), errs, BALANCE, "roundrobin"),
            check=_check(item.get("check"), p + ("check",), errs),
            servers=tuple(servers),
            failback=failback,
            cookie_name=cookie_name,
            https=_choice(item.get("https"), p + ("https",), errs, HTTPS_MODES, "redirect"),
            hsts=_hsts(item.get("hsts"), p + ("hsts",), errs),
        )
        if out[name].hsts is not None and out[name].https == "off":
            errs.add(p + ("hsts",), "needs HTTPS: this service has https: off")
    return out


def _service_hostnames(item, p, errs, name, hostnames_seen):
    """A service's hostnames: fully qualified, no wildcard, each in one service only."""
    hostnames = []
    for i, h in enumerate(_list(item.get("hostnames"), p + ("hostnames",), errs)):
        fq = _fqdn(h, p + ("hostnames", i), errs, "hostname")
        if fq is None:
            continue
        if "*" in fq:
            errs.add(p + ("hostnames", i), f"{h!r}: wildcards are not allowed in service hostnames")
            continue
        other = hostnames_seen.setdefault(fq, name)
        if other != name or fq in hostnames:
            errs.add(p + ("hostnames", i), f"{fq} is already a hostname of service {other!r}")
            continue
        hostnames.append(fq)
    if item.get("hostnames") == []:
        errs.add(p + ("hostnames",), "at least one hostname is required")
    return hostnames


def _service_rotation(item, p, errs, rotations):
    """The rotation a service is in: the one named, or the only one there is."""
    if item.get("rotation") is not None:
        rotation = _fqdn(item.get("rotation"), p + ("rotation",), errs, host=True)
        if rotation is not None and rotation not in rotations:
            errs.add(p + ("rotation",), f"{rotation!r} is not a rotation in {ROOT}:rotations")
            return None
        return rotation
    if len(rotations) == 1:
        return next(iter(rotations))
    if rotations:
        errs.add(p + ("rotation",), "is required when there is more than one rotation")
    return None


def _service_persistence(item, p, errs, stype):
    """``(failback, cookie_name)``: set for a stateful service, refused for a stateless one."""
    if stype == "stateful":
        failback = _choice(item.get("failback"), p + ("failback",), errs, FAILBACK, "auto")
        cookie_name = _str(
            item.get("cookie_name"), p + ("cookie_name",), errs, COOKIE_RE, "cookie name", "PAPSRV"
        )
        return failback, cookie_name
    for key in ("failback", "cookie_name"):
        if key in item:
            errs.add(p + (key,), "only applies to a stateful service")
    return None, None


def _service_servers(item, p, errs, stype, webservers, default_port):
    """A service's servers, a list or a mapping by name: webservers, each listed once."""
    servers = []
    rawservers = item.get("servers")
    if isinstance(rawservers, dict):
        rawservers = [
            dict(v or {}, name=k) if isinstance(v, (dict, type(None))) else {"name": k, "_bad": v}
            for k, v in rawservers.items()
        ]
        # In the mapping form the key names the server: a name inside would silently send the
        # traffic to another webserver than the one the key says.
        for v, srv in zip(item["servers"].values(), rawservers, strict=True):
            if isinstance(v, dict) and "name" in v and v["name"] != srv["name"]:
                srv["_bad_name"] = v["name"]
    for i, srv in enumerate(_list(rawservers, p + ("servers",), errs)):
        named = isinstance(srv, dict) and isinstance(srv.get("name"), str)
        sp = p + ("servers", srv["name"] if named else i)
        if isinstance(srv, dict) and "_bad" in srv:
            errs.add(sp, f"must be a mapping, got {type(srv['_bad']).__name__}")
            continue
        if isinstance(srv, dict) and "_bad_name" in srv:
            errs.add(
                sp + ("name",),
                f"{srv.pop('_bad_name')!r} is not the server the key names ({srv['name']!r})",
            )
            continue
        server = _backend_server(srv, sp, errs, stype, webservers, default_port, servers)
        if server is not None:
            servers.append(server)
    if not servers and rawservers is not None:
        errs.add(p + ("servers",), "at least one server is required")
    return servers


def _backend_server(srv, sp, errs, stype, webservers, default_port, servers):
    """One server of a service, or None: a webserver not already in ``servers``, with a role
    its service type allows."""
    srv = _mapping(srv, sp, errs, {"name", "port", "role"}, ["name"])
    sname = _str(srv.get("name"), sp + ("name",), errs, ID_RE, "minion id")
    if sname is None:
        return None
    if sname not in webservers:
        errs.add(sp + ("name",), f"{sname!r} is not a webserver in {ROOT}:webservers")
        return None
    if any(s.name == sname for s in servers):
        errs.add(sp + ("name",), f"{sname!r} is listed twice")
        return None
    stateful = stype == "stateful"
    roles = ("primary", "backup") if stateful else ("active",)
    role = _choice(srv.get("role"), sp + ("role",), errs, roles, None if stateful else "active")
    if stateful and role is None and "role" not in srv:
        errs.add(sp + ("role",), "is required for a stateful service (primary or backup)")
    return BackendServer(
        name=sname,
        address=webservers[sname].address,
        port=_int(srv.get("port"), sp + ("port",), errs, 1, 65535, default_port),
        role=role,
    )


def _stateful_roles(servers, p, errs):
    """A stateful service has one primary and at least one backup."""
    primaries = [s for s in servers if s.role == "primary"]
    if len(primaries) != 1:
        errs.add(
            p + ("servers",),
            f"a stateful service needs exactly one primary, found {len(primaries)}",
        )
    if not any(s.role == "backup" for s in servers):
        errs.add(
            p + ("servers",),
            "a stateful service needs at least one server with role: backup, found none "
            "(without one, its sessions have nowhere to go when the primary dies)",
        )


def _hsts(raw, path, errs):
    """``hsts: <max-age seconds>`` or ``{max_age, include_subdomains, preload}``; None: off."""
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"max_age": raw}
    raw = _mapping(raw, path, errs, {"max_age", "include_subdomains", "preload"}, ["max_age"])
    flags = {}
    for key in ("include_subdomains", "preload"):
        value = raw.get(key, False)
        if not isinstance(value, bool):
            errs.add(path + (key,), f"must be true or false, got {value!r}")
            value = False
        flags[key] = value
    max_age = _int(raw.get("max_age"), path + ("max_age",), errs, 0, 2**31 - 1)
    if max_age is None:
        return None
    if flags["preload"] and max_age < 31536000:
        errs.add(path + ("max_age",), "preload needs a max_age of at least 31536000 (a year)")
    return Hsts(max_age=max_age, **flags)


def _tls(raw, errs):
    """``paphosting:tls``: ``trusted_roots``, extra root certificates (PEM) a certificate's chain
    may end at, beside the system's (a private CA, a test CA). See docs/tls.md."""
    path = (ROOT, "tls")
    raw = _mapping(raw, path, errs, {"trusted_roots"})
    roots = []
    for i, pem in enumerate(_list(raw.get("trusted_roots"), path + ("trusted_roots",), errs)):
        if not isinstance(pem, str) or not PEM_CERT_RE.match(pem.strip() + "\n"):
            errs.add(path + ("trusted_roots", i), "must be one PEM certificate")
            continue
        try:
            # Shaped like PEM is not a certificate: what the load balancers and the push load
            # (paphosting.tls.load_roots) must load, or they fail with a traceback.
            x509.load_pem_x509_certificate(pem.strip().encode() + b"\n")
        except ValueError as exc:
            errs.add(path + ("trusted_roots", i), f"is not a PEM certificate that loads: {exc}")
            continue
        roots.append(pem.strip() + "\n")
    return {"trusted_roots": tuple(roots)}


def _rotations(raw, errs, loadbalancers):
    path = (ROOT, "rotations")
    out = {}
    if raw is not None and not isinstance(raw, dict):
        errs.add(path, f"must be a mapping of rotation names, got {type(raw).__name__}")
        return out
    for key, item in (raw or {}).items():
        p = path + (key,)
        name = _fqdn(key, p, errs, "rotation name", key=True, host=True)
        if name is None:
            continue
        item = _mapping(item, p, errs, {"ttl", "members", "min_members"})
        members = []
        rawmembers = item.get("members")
        for i, m in enumerate(
            _list(rawmembers, p + ("members",), errs)
            if rawmembers is not None
            else list(loadbalancers)
        ):
            mname = _str(m, p + ("members", i), errs, ID_RE, "minion id")
            if mname is None:
                continue
            if mname not in loadbalancers:
                errs.add(
                    p + ("members", i), f"{mname!r} is not a load balancer in {ROOT}:loadbalancers"
                )
            elif mname in members:
                errs.add(p + ("members", i), f"{mname!r} is listed twice")
            else:
                members.append(mname)
        if rawmembers == []:
            errs.add(p + ("members",), "a rotation needs at least one member")
        min_members = _int(item.get("min_members"), p + ("min_members",), errs, 1, 1000, 1)
        if members and min_members and min_members > len(members):
            errs.add(p + ("min_members",), f"{min_members} is more than the {len(members)} members")
        if name in out:
            errs.add(p, f"{name} is listed twice")
        out[name] = Rotation(
            name=name,
            ttl=_int(item.get("ttl"), p + ("ttl",), errs, 0, TTL_MAX, 300),
            members=tuple(members),
            min_members=min_members,
        )
    return out


# A label of a name inside record data: what a host name, a service label (_sip) or a wildcard
# may hold. Anything else ('@' inside a name, '$', escapes) is a typo served as an odd label.
DATA_LABEL_RE = re.compile(r"^(?:[A-Za-z0-9_-]+|\*)$")
TEXT_TYPES = ("TXT", "SPF")
# The types whose owner (HOST_OWNER_TYPES) or whose names in the data (HOST_DATA_TYPES) a DNS
# server checks as host names (BIND's check-names, on by default for a primary zone).
HOST_OWNER_TYPES = ("A", "AAAA", "MX")
HOST_DATA_TYPES = ("NS", "MX", "SRV")


def _data_specials(rtype, data):
    """Why ``data`` (master-file syntax) would not be served as written, or None.

    In a zone file ``;`` starts a comment (the rest is dropped), ``(`` and ``)`` group lines (and
    are dropped), a backslash escapes the next character (``\\p`` is ``p``), and unquoted words
    of a TXT record are separate strings (SPF and DKIM readers join them without the space).
    Quoted text keeps ``;``, parentheses and spaces; inside quotes only ``\\"``, ``\\\\`` and
    ``\\DDD`` (a byte, as zone files and :func:`dns_zone.import_zone` write them) are accepted.
    """
    quoted = False
    words, word = [], None
    i = 0
    while i < len(data):
        c = data[i]
        if c == "\\":
            nxt = data[i + 1 : i + 2]
            if quoted and (nxt in ('"', "\\") or re.match(r"\d{3}", data[i + 1 : i + 4])):
                i += 2 if nxt in ('"', "\\") else 4
                continue
            return (
                f"the backslash in {data[i : i + 2]!r} is an escape in a zone file and would not "
                'be served: write the character itself (inside quotes, \\" \\\\ and \\DDD '
                "are accepted)"
            )
        if c == '"':
            if not quoted:
                word = [True]
                words.append(word)
            else:
                word = None  # a character right after the closing quote starts another string
            quoted = not quoted
        elif not quoted and c == ";":
            hint = f": quote it, data: '\"{data}\"'" if rtype in TEXT_TYPES else ""
            return f"';' starts a comment in a zone file, so {data[i:]!r} would be dropped{hint}"
        elif not quoted and c in "()":
            return f"{c!r} groups lines in a zone file and would be dropped: quote the text"
        elif not quoted and c.isspace():
            word = None
        elif not quoted and word is None:
            word = [False]
            words.append(word)
        i += 1
    if rtype in TEXT_TYPES and len(words) > 1 and not all(w[0] for w in words):
        return (
            "unquoted words of a TXT record are separate strings, which SPF and DKIM readers "
            f"join without the spaces: quote the text, data: '\"{data}\"'"
        )
    return None


def _data_names(rdata):
    """The names inside parsed record data (targets, exchanges, ...)."""
    for slot in getattr(type(rdata), "__slots__", ()):
        value = getattr(rdata, slot, None)
        if isinstance(value, dns.name.Name):
            yield value


def _rdata_ok(rtype, data, origin, path, errs):
    try:
        rdtype = dns.rdatatype.from_text(rtype)
    except dns.exception.DNSException:
        errs.add(path + ("type",), f"{rtype!r} is not a DNS record type")
        return None
    if rdtype in (dns.rdatatype.SOA,):
        errs.add(path + ("type",), "SOA is set with the zone's 'soa' key, not as a record")
        return None
    if len(re.findall(r'(?<!\\)(?:\\\\)*"', data)) % 2:
        errs.add(path + ("data",), f"{data!r} has unbalanced quotes")
        return None
    special = _data_specials(rtype, data)
    if special is not None:
        errs.add(path + ("data",), f"{data!r}: {special}")
        return None
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, data, origin=origin)
    except (dns.exception.DNSException, ValueError) as exc:
        errs.add(path + ("data",), f"{data!r} is not valid {rtype} data: {exc}")
        return None
    for name in _data_names(rdata):
        bad = [label for label in name.labels if label and not DATA_LABEL_RE.match(label.decode())]
        if bad:
            errs.add(
                path + ("data",),
                f"{data!r}: {bad[0].decode()!r} in {name.to_text()!r} is not a host name label "
                "(letters, digits, '-', '_'; '@' alone is the zone's apex)",
            )
            return None
        labels = [label.decode() for label in name.labels]
        if rtype in HOST_DATA_TYPES and labels != [""]:  # "." alone: a null MX (RFC 7505)
            problem = _name_problem(labels, host=True)
            if problem is not None:
                errs.add(
                    path + ("data",), f"{data!r}: {name.to_text()!r} is not a host name: {problem}"
                )
                return None
    return rdata


def _zones(raw, errs, nameservers, owner_keys=None):
    """The zones. ``owner_keys`` (filled when given): ``{(zone, owner): [the pillar keys]}``, the
    keys under ``records`` that name each owner. Owners are lower case (DNS names are
    case-insensitive: ``MAIL`` and ``mail`` are one name), errors name the key as written."""
    path = (ROOT, "zones")
    out = {}
    owner_keys = {} if owner_keys is None else owner_keys
    if raw is not None and not isinstance(raw, dict):
        errs.add(path, f"must be a mapping of zone names, got {type(raw).__name__}")
        return out
    for key, item in (raw or {}).items():
        p = path + (key,)
        zname = _fqdn(key, p, errs, "zone name", key=True)
        if zname is None:
            continue
        if zname in out:
            errs.add(p, f"zone {zname} is listed twice")
            continue
        item = _mapping(item, p, errs, {"ttl", "soa", "ns", "records", "dnssec"})
        ttl = _int(item.get("ttl"), p + ("ttl",), errs, 0, TTL_MAX, 3600)
        ns = _zone_ns(item.get("ns"), p + ("ns",), errs, nameservers)
        soa = _zone_soa(item.get("soa"), p + ("soa",), errs, zname, ns)
        records = _zone_records(item.get("records"), p + ("records",), errs, zname, owner_keys)
        out[zname] = Zone(
            name=zname,
            ttl=ttl,
            soa=soa,
            ns=tuple(ns),
            records=tuple(records),
            dnssec=_zone_dnssec(item.get("dnssec"), p + ("dnssec",), errs, records),
        )
    return out


def _zone_ns(rawns, path, errs, nameservers):
    """A zone's NS names: those given, or by default every nameserver's; at least one."""
    ns = []
    default_ns = [n.fqdn for n in nameservers.values()]
    for i, n in enumerate(_list(rawns, path, errs) if rawns is not None else default_ns):
        fq = _fqdn(n, path + (i,), errs, "nameserver name", host=True)
        if fq is not None and fq in ns:  # NS1.example.net and ns1.example.net. are one name
            errs.add(path + (i,), f"{fq} is listed twice")
        elif fq is not None:
            ns.append(fq)
    if not ns:
        errs.add(path, "a zone needs at least one NS (none given and no nameservers defined)")
    return ns


def _zone_soa(raw, sp, errs, zname, ns):
    """A zone's SOA: the keys given, the others from defaults (mname: the first NS)."""
    soa = _mapping(raw, sp, errs, {"mname", "rname", "refresh", "retry", "expire", "minimum"})
    return Soa(
        mname=_fqdn(soa.get("mname"), sp + ("mname",), errs, host=True)
        if "mname" in soa
        else (ns[0] if ns else ""),
        rname=_fqdn(soa.get("rname"), sp + ("rname",), errs)
        if "rname" in soa
        else f"hostmaster.{zname}",
        refresh=_int(soa.get("refresh"), sp + ("refresh",), errs, 0, TTL_MAX, 3600),
        retry=_int(soa.get("retry"), sp + ("retry",), errs, 0, TTL_MAX, 600),
        expire=_int(soa.get("expire"), sp + ("expire",), errs, 0, TTL_MAX, 1209600),
        minimum=_int(soa.get("minimum"), sp + ("minimum",), errs, 0, TTL_MAX, 300),
    )


def _zone_records(rawrecords, path, errs, zname, owner_keys):
    """A zone's ``records``, ``{owner: [{type, data, ttl}]}``: valid owners and data, and no
    CNAME beside other data."""
    origin = dns.name.from_text(zname)
    records = []
    by_owner = {}  # owner -> [(type, pillar key)]
    if rawrecords is not None and not isinstance(rawrecords, dict):
        errs.add(path, f"must be a mapping of owner names, got {type(rawrecords).__name__}")
        rawrecords = {}
    for owner, rrs in (rawrecords or {}).items():
        op = path + (owner,)
        rel = _record_owner(owner, op, errs, zname, origin)
        if rel is None:
            continue
        keys = owner_keys.setdefault((zname, rel), [])
        if owner not in keys:
            keys.append(owner)
        for i, rr in enumerate(_list(rrs, op, errs)):
            record = _record(rr, op + (i,), errs, rel, origin)
            if record is not None:
                records.append(record)
                by_owner.setdefault(rel, []).append((record.type, owner))
    _cnames_alone(by_owner, path, errs, owner_keys, zname)
    return records


def _record_owner(owner, op, errs, zname, origin):
    """The owner name of a ``records`` key, relative to its zone and lower case, or None."""
    owner_text = _key(owner, op, errs, what="owner name")
    if owner_text is None:
        return None
    try:
        oname = origin if owner_text == "@" else dns.name.from_text(owner_text, origin=origin)
    except dns.exception.DNSException as exc:
        errs.add(op, f"{owner_text!r} is not a valid owner name: {exc}")
        return None
    if owner_text != "@" and not re.match(r"^[A-Za-z0-9*_.-]+\.?$", owner_text):
        errs.add(
            op,
            f"{owner_text!r} is not a valid owner name: only letters, digits, '-', '_', '.', '*'",
        )
        return None
    if not oname.is_subdomain(origin):
        errs.add(op, f"{oname} is out of zone {zname}")
        return None
    return "@" if oname == origin else oname.relativize(origin).to_text().lower()


def _record(rr, rp, errs, rel, origin):
    """One record ``{type, data, ttl}`` of owner ``rel``, or None: data its type accepts, and
    no CNAME or NS at the apex."""
    rr = _mapping(rr, rp, errs, {"type", "data", "ttl"}, ["type", "data"])
    rtype = _str(rr.get("type"), rp + ("type",), errs)
    data = rr.get("data")
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        # YAML has already turned it into a number: 0x10 is 16, 010 is 8, 1_000 is 1000 and
        # 12:30 is 750, so what was written can no longer be served. Quoted, it is kept.
        errs.add(
            rp + ("data",),
            f"must be a string, got the number {data!r} (YAML reads 0x10, 010, 1_000 or 12:30 as "
            "numbers): quote it as it should be served",
        )
        return None
    data = _str(data, rp + ("data",), errs)
    rttl = _int(rr.get("ttl"), rp + ("ttl",), errs, 0, TTL_MAX)
    if rtype is None or data is None:
        return None
    rtype = rtype.upper()
    rdata = _rdata_ok(rtype, data, origin, rp, errs)
    if rdata is None:
        return None
    if rtype == "CNAME" and rel == "@":
        errs.add(rp, "a CNAME is not allowed at the zone apex")
        return None
    if rel != "@":
        host = rtype in HOST_OWNER_TYPES
        labels = rel.split(".") + origin.to_text().split(".")
        problem = _name_problem(labels, host=host, borders=host)
        if problem is not None:
            what = f"the owner of an {rtype} record" if rtype in HOST_OWNER_TYPES else "an owner"
            errs.add(rp, f"{rel!r} is not a valid name for {what}: {problem}")
            return None
    if rtype == "NS" and rel == "@":
        errs.add(rp, "the apex NS records are set with the zone's 'ns' key")
        return None
    return Record(owner=rel, type=rtype, data=data, ttl=rttl, rdata=rdata)


def _cnames_alone(by_owner, path, errs, owner_keys, zname):
    """An owner with a CNAME has no other data (``by_owner``: ``{owner: [(type, key)]}``)."""
    for owner, kinds in by_owner.items():
        types = [t for t, _ in kinds]
        if "CNAME" in types and len(types) > 1:
            keys = owner_keys[(zname, owner)]
            cname_key = next(k for t, k in kinds if t == "CNAME")
            same = (
                f"; {', '.join(repr(k) for k in keys)} are one name (DNS names are "
                "case-insensitive)"
                if len(keys) > 1
                else ""
            )
            errs.add(
                path + (cname_key,),
                f"a CNAME cannot stand beside other data ({', '.join(sorted(set(types)))})" + same,
            )


DNSSEC_ALGORITHMS = (13, 14, 15)
DNSSEC_TYPES = {"DNSKEY", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "CDS", "CDNSKEY"}


def _zone_dnssec(raw, path, errs, records):
    """A zone's ``dnssec``: None (not signed, the default), or ``{"algorithm", "nsec3"}`` for
    ``true`` or a mapping of those keys."""
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        errs.add(path, f"must be true, false or a mapping (algorithm, nsec3), got {raw!r}")
        return None
    raw = _mapping(raw, path, errs, {"algorithm", "nsec3"})
    algorithm = raw.get("algorithm", 13)
    if algorithm not in DNSSEC_ALGORITHMS or isinstance(algorithm, bool):
        errs.add(
            path + ("algorithm",),
            f"{algorithm!r} is not one of {', '.join(map(str, DNSSEC_ALGORITHMS))} "
            "(13 ECDSAP256SHA256, 14 ECDSAP384SHA384, 15 ED25519)",
        )
        algorithm = 13
    nsec3 = raw.get("nsec3", False)
    if not isinstance(nsec3, bool):
        errs.add(
            path + ("nsec3",), f"must be true (NSEC3, no opt-out) or false (NSEC), got {nsec3!r}"
        )
        nsec3 = False
    for r in records:
        if r.type in DNSSEC_TYPES:
            errs.add(
                path[:-1] + ("records", r.owner),
                f"a {r.type} record is made by the signer of a signed zone, not by the pillar",
            )
    return {"algorithm": algorithm or 13, "nsec3": nsec3}


def _record_key(owner_keys, zname, rel):
    """The pillar path of the records of owner ``rel`` in zone ``zname``, as the admin wrote it."""
    keys = (owner_keys or {}).get((zname, rel)) or [rel]
    return path_text((ROOT, "zones", zname, "records", keys[0]))


def _rotation_zones(rotations, services, zones, platform_zone_of, errs, owner_keys=None):
    """Rotation names and service hostnames must live in a managed zone and not clash with records.

    Owners are compared in lower case, as DNS compares names (``SHOP`` is ``shop``)."""
    for name in rotations:
        if zones and platform_zone_of(name) is None:
            errs.add((ROOT, "rotations", name), f"{name} is not inside any zone in {ROOT}:zones")
        elif zones:
            zname = platform_zone_of(name)
            rel = (
                "@"
                if name == zname
                else dns.name.from_text(name).relativize(dns.name.from_text(zname)).to_text()
            )
            clash = [
                r.type
                for r in zones[zname].records
                if r.owner == rel and r.type in ("A", "AAAA", "CNAME")
            ]
            if clash:
                errs.add(
                    (ROOT, "rotations", name),
                    f"{name} also has records in {_record_key(owner_keys, zname, rel)} ({', '.join(clash)}); "
                    "a rotation name takes its addresses from its members",
                )
    for sname, svc in services.items():
        for i, host in enumerate(svc.hostnames):
            zname = platform_zone_of(host)
            if host in rotations:
                errs.add(
                    (ROOT, "services", sname, "hostnames", i),
                    f"{host} is a rotation name, not a service hostname",
                )
                continue
            if zones and zname is None:
                errs.add(
                    (ROOT, "services", sname, "hostnames", i),
                    f"{host} is not inside any zone in {ROOT}:zones",
                )
                continue
            if zname is None:
                continue
            zone = zones[zname]
            origin = dns.name.from_text(zname)
            rel = "@" if host == zname else dns.name.from_text(host).relativize(origin).to_text()
            # A hostname is a CNAME to its rotation, except at an apex, where it gets the
            # rotation's A/AAAA records beside the apex's other data.
            forbidden = {"A", "AAAA", "CNAME"} if rel == "@" else None
            clash = [
                r.type
                for r in zone.records
                if r.owner == rel and (forbidden is None or r.type in forbidden)
            ]
            if clash:
                errs.add(
                    (ROOT, "services", sname, "hostnames", i),
                    f"{host} also has records in {_record_key(owner_keys, zname, rel)} ({', '.join(clash)}); "
                    "a service hostname takes its addresses from its rotation and cannot have its own",
                )


def _shadowed_records(zones, platform_zone_of, errs, owner_keys):
    """A record of a zone at or below the apex of another managed zone (``www.sub`` in
    ``example.nl`` beside the zone ``sub.example.nl``) is never served: the child zone answers
    for those names. Only a delegation (NS, DS at the child's apex) and glue for its name
    servers (A, AAAA) belong there."""
    for zname, zone in zones.items():
        origin = dns.name.from_text(zname)
        glue = set()
        for r in zone.records:
            if r.type == "NS" and r.rdata is not None:
                glue.add(r.rdata.target.derelativize(origin).to_text(omit_final_dot=True).lower())
        for child, czone in zones.items():
            if child != zname:
                glue.update(czone.ns)
        for r in zone.records:
            fqdn = zname if r.owner == "@" else f"{r.owner}.{zname}"
            child = platform_zone_of(fqdn)
            if child is None or child == zname:
                continue
            if fqdn == child and r.type in ("NS", "DS"):
                continue
            if r.type in ("A", "AAAA") and fqdn in glue:
                continue
            key = (owner_keys.get((zname, r.owner)) or [r.owner])[0]
            errs.add(
                (ROOT, "zones", zname, "records", key),
                f"{fqdn} lies in the managed zone {child}, which answers for it: this {r.type} "
                f"record would never be served (put it under {ROOT}:zones:{child}:records)",
            )


def _delegations(platform, errs, owner_keys):
    """Below an NS record inside a zone (a delegation, ``sub`` NS ``ns.other.net.``) the child's
    servers answer: a record there, or beside the NS at the cut, is never served. Only DS at the
    cut and A/AAAA glue for the delegation's name servers belong there, and a name server below
    the cut needs that glue (without it no resolver can reach it). Service hostnames and
    rotation names are not served there either. Below a DNAME no name is served at all."""
    served = {}  # zone -> [(fqdn, its pillar path)]: the names the rotations give records
    for rname in platform.rotations:
        served.setdefault(platform.zone_of(rname), []).append((rname, (ROOT, "rotations", rname)))
    for sname, svc in platform.services.items():
        for i, host in enumerate(svc.hostnames):
            where = (ROOT, "services", sname, "hostnames", i)
            served.setdefault(platform.zone_of(host), []).append((host, where))
    for zname, zone in platform.zones.items():
        origin = dns.name.from_text(zname)

        def path_of(name, zname=zname, origin=origin):
            rel = "@" if name == origin else name.relativize(origin).to_text().lower()
            return (ROOT, "zones", zname, "records", (owner_keys.get((zname, rel)) or [rel])[0])

        cuts = {}  # the delegated name -> its NS targets
        dnames = set()  # a DNAME redirects every name below its owner: nothing may stand there
        for r in zone.records:
            if r.type == "NS" and r.owner != "@" and r.rdata is not None:
                cut = dns.name.from_text(r.owner, origin)
                cuts.setdefault(cut, set()).add(r.rdata.target.derelativize(origin))
            elif r.type == "DNAME":
                dnames.add(origin if r.owner == "@" else dns.name.from_text(r.owner, origin))
        for r in zone.records:
            name = origin if r.owner == "@" else dns.name.from_text(r.owner, origin)
            above = next((d for d in dnames if name != d and name.is_subdomain(d)), None)
            if above is not None:
                errs.add(
                    path_of(name),
                    f"{name.to_text(omit_final_dot=True)} lies below the DNAME of "
                    f"{path_text(path_of(above))}, which redirects every name below it: this "
                    f"{r.type} record would never be served",
                )
        if not cuts:
            continue
        glue = set().union(*cuts.values())
        # The names of this zone that get an address: A/AAAA records, the zone's own in-zone
        # name servers (glue from their pillar address), rotation names and apex hostnames.
        fqdns = {s.fqdn for s in platform.nameservers.values()} & set(zone.ns)
        fqdns.update(name for name, _ in platform.address_owners.get(zname, ()))
        addressed = {dns.name.from_text(n) for n in fqdns}
        for r in zone.records:
            name = origin if r.owner == "@" else dns.name.from_text(r.owner, origin)
            cut = next((c for c in cuts if name.is_subdomain(c)), None)
            if r.type in ("A", "AAAA"):
                addressed.add(name)
            if cut is None or (name == cut and r.type in ("NS", "DS")):
                continue
            if r.type in ("A", "AAAA") and name in glue:
                continue
            errs.add(
                path_of(name),
                f"{name.to_text(omit_final_dot=True)} is delegated by the NS records of "
                f"{path_text(path_of(cut))}: this {r.type} record would never be served (only "
                "DS at the delegation and A/AAAA glue for its name servers stand there)",
            )
        for fqdn, where in served.get(zname, ()):
            cut = next((c for c in cuts if dns.name.from_text(fqdn).is_subdomain(c)), None)
            if cut is not None:
                errs.add(
                    where,
                    f"{fqdn} is delegated by the NS records of {path_text(path_of(cut))}: its "
                    "records would never be served",
                )
        for cut, targets in cuts.items():
            for t in sorted(t for t in targets if t.is_subdomain(origin) and t not in addressed):
                errs.add(
                    path_of(cut),
                    f"name server {t.to_text(omit_final_dot=True)} lies in zone {zname} and has "
                    "no A or AAAA record there (glue): no resolver could reach it",
                )


def _fd_budget(platform, errs):
    """haproxy refuses to start when it cannot raise its file descriptor limit to what its
    config needs (two per connection up to maxconn, one per checked server): check each load
    balancer's need against the limit it runs under (``haproxy:fd_limit``, else its default)."""
    # haproxy renders from this module's objects, so it is imported when it is needed.
    from paphosting import haproxy  # noqa: PLC0415

    hap = platform.haproxy
    if hap.get("maxconn") is None:
        return
    for name in sorted(platform.loadbalancers):
        lb = platform.loadbalancers[name]
        limit = hap.get("fd_limit") or haproxy.default_fd_limit(lb.service_mode)
        need = haproxy.fd_need(platform, name)
        if need > limit:
            where = (
                f"{ROOT}:haproxy:fd_limit"
                if hap.get("fd_limit")
                else f"the default of {ROOT}:haproxy:fd_limit for service_mode {lb.service_mode}"
            )
            errs.add(
                (ROOT, "haproxy", "maxconn"),
                f"maxconn {hap['maxconn']} needs {need} file descriptors on {name} (2 per "
                f"connection, 1 per checked server, {haproxy.FD_RESERVE} for listeners and "
                f"threads), more than the {limit} haproxy may open there ({where}): haproxy "
                "would not start. Lower maxconn or raise the limit.",
            )


def _health(raw, errs, nameservers, loadbalancers):
    path = (ROOT, "health")
    keys = {
        "watchers",
        "interval",
        "timeout",
        "fall",
        "rise",
        "quorum",
        "min_members",
        "heartbeat",
        "flap",
    }
    raw = _mapping(raw, path, errs, keys)
    watchers = []
    rawwatchers = raw.get("watchers")
    for i, w in enumerate(
        _list(rawwatchers, path + ("watchers",), errs)
        if rawwatchers is not None
        else list(nameservers)
    ):
        wname = _str(w, path + ("watchers", i), errs, ID_RE, "minion id")
        if wname is not None and wname in watchers:
            errs.add(path + ("watchers", i), f"{wname!r} is listed twice")
        elif wname is not None:
            watchers.append(wname)
    quorum_raw = raw.get("quorum", "majority")
    if quorum_raw == "majority":
        quorum = len(watchers) // 2 + 1 if watchers else 1
    else:
        quorum = _int(quorum_raw, path + ("quorum",), errs, 1, max(len(watchers), 1), 1)
    fp = path + ("flap",)
    flap = _mapping(raw.get("flap"), fp, errs, {"window", "max_transitions", "hold"})
    interval = _number(raw.get("interval"), path + ("interval",), errs, 0.05, 3600, 1.0)
    timeout = _number(raw.get("timeout"), path + ("timeout",), errs, 0.01, 60, min(0.5, interval))
    return Health(
        watchers=tuple(watchers),
        interval=interval,
        timeout=timeout,
        fall=_int(raw.get("fall"), path + ("fall",), errs, 1, 100, 3),
        rise=_int(raw.get("rise"), path + ("rise",), errs, 1, 100, 2),
        quorum=quorum,
        min_members=_int(raw.get("min_members"), path + ("min_members",), errs, 1, 1000, 1),
        heartbeat=_number(raw.get("heartbeat"), path + ("heartbeat",), errs, 1, 86400, 30.0),
        flap_window=_number(flap.get("window"), fp + ("window",), errs, 1, 86400, 300.0),
        flap_max_transitions=_int(
            flap.get("max_transitions"), fp + ("max_transitions",), errs, 2, 1000, 4
        ),
        flap_hold=_number(flap.get("hold"), fp + ("hold",), errs, 0, 86400, 120.0),
    )


def _masters(raw, errs):
    path = (ROOT, "masters")
    out = {}
    for name, item in _named(raw, path, errs, ID_RE, "master").items():
        p = path + (name,)
        item = _mapping(item, p, errs, {"address"}, ["address"])
        out[name] = Master(name=name, address=_address(item.get("address"), p + ("address",), errs))
    return out


def _dns_settings(raw, errs):
    path = (ROOT, "dns")
    raw = _mapping(raw, path, errs, {"max_change_share", "min_records_for_share", "dnssec"})
    return {
        "dnssec": _dnssec_policy(raw.get("dnssec"), path + ("dnssec",), errs),
        "max_change_share": _number(
            raw.get("max_change_share"), path + ("max_change_share",), errs, 0, 1, 0.3
        ),
        "min_records_for_share": _int(
            raw.get("min_records_for_share"), path + ("min_records_for_share",), errs, 0, 10**9, 10
        ),
    }


DNSSEC_POLICY = {  # seconds; paphosting.dnssec.Policy's fields (docs/dnssec.md)
    "validity": (3600, 366 * 86400, 14 * 86400),
    "refresh": (600, 365 * 86400, 7 * 86400),
    "zsk_lifetime": (3600, 10 * 366 * 86400, 90 * 86400),
    "parent_ds_ttl": (0, 7 * 86400, 86400),
    "propagation": (0, 7 * 86400, None),  # None: the drift schedule's interval + splay
    "safety": (0, 7 * 86400, 3600),  # RFC 7583's safety margins
}


def _dnssec_policy(raw, path, errs):
    raw = _mapping(raw, path, errs, set(DNSSEC_POLICY))
    out = {
        k: _int(raw.get(k), path + (k,), errs, lo, hi, default)
        for k, (lo, hi, default) in DNSSEC_POLICY.items()
    }
    if (
        out["refresh"] is not None
        and out["validity"] is not None
        and out["refresh"] >= out["validity"]
    ):
        errs.add(
            path + ("refresh",),
            f"must be shorter than the signature validity ({out['validity']} s): signatures "
            "are renewed when they expire sooner than this",
        )
    return out


def _dnssec_schedule_check(platform, errs):
    """Signatures are renewed by drift correction: its interval (with splay) must come round
    well within the refresh margin, or a signature could expire before the next run."""
    if not any(z.dnssec for z in platform.zones.values()):
        return
    policy = (platform.dns or {}).get("dnssec") or {}
    refresh = policy.get("refresh")
    sched = platform.schedule or {}
    every = (sched.get("highstate_interval") or 0) + (sched.get("splay") or 0)
    if refresh is not None and sched.get("enabled", True) and refresh < 2 * every:
        errs.add(
            (ROOT, "dns", "dnssec", "refresh"),
            f"{refresh} s is less than twice the drift schedule ({every} s: "
            f"{ROOT}:schedule highstate_interval + splay): a signature could expire before the "
            "run that renews it",
        )


def _schedule(raw, errs):
    path = (ROOT, "schedule")
    raw = _mapping(raw, path, errs, {"highstate_interval", "splay", "enabled"})
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        errs.add(path + ("enabled",), f"must be true or false, got {enabled!r}")
        enabled = True
    return {
        "enabled": enabled,
        "highstate_interval": _int(
            raw.get("highstate_interval"), path + ("highstate_interval",), errs, 10, 86400 * 7, 1800
        ),
        "splay": _int(raw.get("splay"), path + ("splay",), errs, 0, 86400, 300),
    }


def _metrics(raw, errs, loadbalancers, nameservers, masters):
    """``paphosting:metrics``: where each exporter listens (docs/monitoring.md).

    ``{"scrape_interval": s, "loadbalancers": {id: Listener}, "nameservers": {id: Listener},
    "masters": {name: Listener}}``; a server left out runs no exporter. Every listener's address
    and port are its own: two exporters never share one, nor one a load balancer's public frontend.
    """
    path = (ROOT, "metrics")
    raw = _mapping(raw, path, errs, {"scrape_interval", *METRICS_ROLES})
    out = {
        "scrape_interval": _number(
            raw.get("scrape_interval"), path + ("scrape_interval",), errs, 1, 3600, 15.0
        )
    }
    known = {"loadbalancers": loadbalancers, "nameservers": nameservers, "masters": masters}
    taken = {(lb.address, lb.http_port): ("loadbalancers", n) for n, lb in loadbalancers.items()}
    taken.update(
        {(lb.address, lb.https_port): ("loadbalancers", n) for n, lb in loadbalancers.items()}
    )
    taken.update({(ns.address, ns.port): ("nameservers", n) for n, ns in nameservers.items()})
    for role, default_port in METRICS_ROLES.items():
        rpath = path + (role,)
        out[role] = {}
        for name, item in _named(raw.get(role), rpath, errs, ID_RE, "server").items():
            p = rpath + (name,)
            if name not in known[role]:
                errs.add(p, f"{name!r} is not defined under {ROOT}:{role}")
                continue
            keys = {"address", "port"} | ({"stats_port"} if role == "nameservers" else set())
            item = _mapping(item, p, errs, keys, ["address"])
            listener = Listener(
                address=_address(item.get("address"), p + ("address",), errs),
                port=_int(item.get("port"), p + ("port",), errs, 1, 65535, default_port),
                stats_port=_int(item.get("stats_port"), p + ("stats_port",), errs, 1, 65535, 8053),
            )
            where = (listener.address, listener.port)
            if listener.address is not None and where in taken:
                other = ":".join(taken[where])
                errs.add(p, f"{listener.address}:{listener.port} is already used by {other}")
            taken[where] = (role, name)
            out[role][name] = listener
            if role == "nameservers":
                _nameserver_local_ports(nameservers[name], listener, item, p, errs)
    return out


def _nameserver_local_ports(ns, listener, item, p, errs):
    """What listens on one nameserver's machine: its DNS port, BIND's rndc and statistics
    channel on the loopback of its address's family (as :func:`paphosting.dnsserver.layout`
    writes them) and its exporter. Two on one address and port, and one of them would not
    start. NSD and Knot are read through their control socket: a ``stats_port`` is refused."""
    if ns.server != "bind":
        if "stats_port" in item:
            errs.add(p + ("stats_port",), f"applies to BIND only, not to {ns.server}")
        return
    if ns.address is None or listener.address is None:
        return
    loopback = "::1" if ipaddress.ip_address(ns.address).version == 6 else "127.0.0.1"
    own = {
        (ns.address, ns.port): f"{ROOT}:nameservers:{ns.name}:port",
        (loopback, ns.control_port or 953): f"{ROOT}:nameservers:{ns.name}:control_port",
    }
    where = (listener.address, listener.port)
    if where in own and where != (ns.address, ns.port):  # the DNS port: reported by the caller
        errs.add(p, f"{where[0]}:{where[1]} is already used by {own[where]}")
    own.setdefault(where, path_text(p))
    stats = (loopback, listener.stats_port)
    if stats in own:
        errs.add(p + ("stats_port",), f"{stats[0]}:{stats[1]} is already used by {own[stats]}")


ACME_NAME_RE = re.compile(r"^(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}$")


def _covers(name, host):
    """Whether certificate name ``name`` (possibly ``*.zone``) covers hostname ``host``."""
    if name.startswith("*."):
        return host.split(".", 1)[-1] == name[2:] and "." in host
    return name == host


def _acme(raw, errs, services, zone_of):
    """``paphosting:acme`` as an :class:`Acme`, or None when absent. Every certificate name must
    lie in a managed zone (the CA's DNS-01 query must reach our nameservers), and a service's
    names must cover each of its hostnames."""
    if raw is None:
        return None
    path = (ROOT, "acme")
    keys = {
        "directory", "email", "ca_bundle", "renew_fraction", "retry", "lock_timeout",
        "propagation_timeout", "services",
    }  # fmt: skip
    raw = _mapping(raw, path, errs, keys, ["directory"])
    directory = _str(
        raw.get("directory"), path + ("directory",), errs, re.compile(r"^https?://\S+$"), "URL"
    )
    retry = _mapping(raw.get("retry"), path + ("retry",), errs, {"min", "max"})
    retry_min = _int(retry.get("min"), path + ("retry", "min"), errs, 1, 86400, 300)
    retry_max = _int(retry.get("max"), path + ("retry", "max"), errs, 1, 7 * 86400, 6 * 3600)
    if retry_min is not None and retry_max is not None and retry_max < retry_min:
        errs.add(path + ("retry", "max"), f"must be at least retry:min ({retry_min})")
    chosen = {}
    for name, item in _named(
        raw.get("services"), path + ("services",), errs, SERVICE_RE, "service"
    ).items():
        p = path + ("services", name)
        if name not in services:
            errs.add(p, f"{name!r} is not a service in {ROOT}:services")
            continue
        item = _mapping(item, p, errs, {"names"})
        hosts = services[name].hostnames
        names = []
        for i, n in enumerate(
            _list(item.get("names"), p + ("names",), errs) if "names" in item else hosts
        ):
            text = _str(n, p + ("names", i), errs)
            if text is None:
                continue
            text = text.rstrip(".").lower()
            if not ACME_NAME_RE.match(text):
                errs.add(p + ("names", i), f"{n!r} is not a hostname or a wildcard (*.name)")
                continue
            base = text[2:] if text.startswith("*.") else text
            if zone_of(base) is None:
                errs.add(
                    p + ("names", i) if "names" in item else p,
                    f"service {name}: {text} is in no zone of {ROOT}:zones, so our nameservers "
                    "cannot answer its ACME DNS-01 challenge",
                )
                continue
            if text not in names:
                names.append(text)
        for host in hosts:
            if names and not any(_covers(n, host) for n in names):
                errs.add(p + ("names",), f"service {name}: no name covers its hostname {host}")
        if not names and not any(e.path[: len(p)] == p for e in errs.errors):
            errs.add(p + ("names",), f"service {name}: at least one name is required")
        chosen[name] = tuple(names)
    return Acme(
        directory=directory,
        email=_str(
            raw.get("email"),
            path + ("email",),
            errs,
            re.compile(r"^[^@\s]+@[^@\s]+$"),
            "e-mail address",
        ),
        ca_bundle=_str(raw.get("ca_bundle"), path + ("ca_bundle",), errs),
        renew_fraction=_number(
            raw.get("renew_fraction"), path + ("renew_fraction",), errs, 0.01, 0.99, 1 / 3
        ),
        retry_min=retry_min,
        retry_max=retry_max,
        lock_timeout=_int(raw.get("lock_timeout"), path + ("lock_timeout",), errs, 5, 86400, 900),
        propagation_timeout=_int(
            raw.get("propagation_timeout"), path + ("propagation_timeout",), errs, 1, 3600, 120
        ),
        services=chosen,
    )


TOP_KEYS = {
    "acme",
    "metrics",
    "settings",
    "haproxy",
    "loadbalancers",
    "webservers",
    "nameservers",
    "services",
    "rotations",
    "zones",
    "health",
    "masters",
    "dns",
    "schedule",
    "tls",
}


def parse(pillar):
    """Validate the ``paphosting`` pillar value and return a :class:`Platform`.

    ``pillar`` may be the whole pillar (a mapping with the ``paphosting`` key) or just its value.
    Raises :class:`InvalidPillar` with every error found.
    """
    errs = _Errors()
    if isinstance(pillar, dict) and ROOT in pillar:
        pillar = pillar[ROOT]
    raw = _mapping(pillar, (ROOT,), errs, TOP_KEYS, ["loadbalancers"])
    settings = _settings(raw.get("settings"), errs)
    hap = _haproxy_globals(raw.get("haproxy"), errs)
    loadbalancers = _loadbalancers(raw.get("loadbalancers"), errs, settings, hap)
    webservers = _webservers(raw.get("webservers"), errs)
    nameservers = _nameservers(raw.get("nameservers"), errs, settings)
    _unique_addresses(
        [
            ("loadbalancers", loadbalancers),
            ("webservers", webservers),
            ("nameservers", nameservers),
        ],
        errs,
    )
    _listeners(loadbalancers, nameservers, errs)
    rotations = _rotations(raw.get("rotations"), errs, loadbalancers)
    services = _services(raw.get("services"), errs, webservers, rotations)
    owner_keys = {}
    zones = _zones(raw.get("zones"), errs, nameservers, owner_keys)
    health = _health(raw.get("health"), errs, nameservers, loadbalancers)
    masters = _masters(raw.get("masters"), errs)
    platform = Platform(
        loadbalancers=loadbalancers,
        webservers=webservers,
        nameservers=nameservers,
        services=services,
        rotations=rotations,
        zones=zones,
        health=health,
        masters=masters,
        dns=_dns_settings(raw.get("dns"), errs),
        haproxy=hap,
        schedule=_schedule(raw.get("schedule"), errs),
        metrics=_metrics(raw.get("metrics"), errs, loadbalancers, nameservers, masters),
        tls=_tls(raw.get("tls"), errs),
    )
    if raw.get("acme") is not None:
        platform = dataclasses.replace(
            platform, acme=_acme(raw.get("acme"), errs, services, platform.zone_of)
        )
    _rotation_zones(rotations, services, zones, platform.zone_of, errs, owner_keys)
    _shadowed_records(zones, platform.zone_of, errs, owner_keys)
    _delegations(platform, errs, owner_keys)
    _fd_budget(platform, errs)
    _dnssec_schedule_check(platform, errs)
    for rname in sorted(rotations):
        members = rotations[rname].members
        if members and health.min_members > len(members):
            # The floor is the larger of the two minimums: above the members, the failover
            # could never take one out (fail open), as a rotation's own min_members above them.
            errs.add(
                (ROOT, "health", "min_members"),
                f"{health.min_members} is more than the {len(members)} members of rotation "
                f"{rname}: the failover could never take one of them out",
            )
    for i, w in enumerate(health.watchers):
        if w not in nameservers and w not in loadbalancers and w not in webservers:
            errs.add(
                (ROOT, "health", "watchers", i), f"{w!r} is not a server defined in this pillar"
            )
    if errs.errors:
        raise InvalidPillar(errs.errors)
    return platform


def _canonical(value):
    """``value`` as JSON can hold it, every type kept apart: a key that is not a string (YAML
    reads ``1:``, ``yes:``, ``~:`` and ``2026-01-01:`` as an int, a bool, null and a date) and a
    value JSON has no type for become strings tagged with their type and a NUL, which no valid
    pillar holds. So a pillar with mixed keys has a digest (JSON cannot sort an int beside a
    string), and ``{1: x}`` is not the valid ``{"1": x}`` that a cache holds."""
    if isinstance(value, dict):
        return {
            k if isinstance(k, str) else f"\x00{type(k).__name__}:{k!r}": _canonical(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    return f"\x00{type(value).__name__}:{value!r}"


def digest(paphosting):
    """A digest of a ``paphosting`` pillar value as compiled (canonical JSON, SHA-256): two
    minions, or a minion and a master, hold the same platform exactly when their digests match."""
    text = json.dumps(_canonical(paphosting), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
