"""The platform's pillar model: schema, validation and typed objects.

Everything lives under one pillar key, ``paphosting`` (see ``docs/pillar.md`` and
``pillar/paphosting.sls``). :func:`parse` validates a whole tree and either returns a
:class:`Platform` or raises :class:`InvalidPillar` listing every error with its pillar path. Unknown
keys are errors: a typo must never be silently ignored.
"""

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

from paphosting.errors import InvalidPillar, PillarError

ROOT = "paphosting"

# Minion ids and service names end up as haproxy identifiers, file names and DNS labels.
ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?$")
SERVICE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# An HTTP path for health checks: no white space, quotes, backslash or '#', which mean something
# in haproxy.cfg.
HTTP_PATH_RE = re.compile(r"^/[A-Za-z0-9._~%/+=,:@!$&*;-]*(?:\?[A-Za-z0-9._~%/+=,:@!$&*;-]*)?$")
COOKIE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

SERVICE_MODES = ("systemd", "process")
DNS_SERVERS = ("bind", "nsd", "knot")
SERVICE_TYPES = ("stateless", "stateful")
FAILBACK = ("auto", "manual")
BALANCE = ("roundrobin", "leastconn", "first", "source")
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
    cookie: str | None


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

    @property
    def stateful(self):
        return self.type == "stateful"


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

    def zone_of(self, fqdn):
        """The managed zone holding ``fqdn`` (longest suffix), or None."""
        name = dns.name.from_text(fqdn)
        best = None
        for zname in self.zones:
            zone = dns.name.from_text(zname)
            if name.is_subdomain(zone) and (best is None or len(zone) > len(best[1])):
                best = (zname, zone)
        return best[0] if best else None


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
    return str(addr)


def _fqdn(value, path, errs, what="DNS name"):
    text = _str(value, path, errs)
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
    return name.to_text(omit_final_dot=True).lower()


def _list(value, path, errs):
    if value is None:
        return []
    if not isinstance(value, list):
        errs.add(path, f"must be a list, got {type(value).__name__}")
        return []
    return value


def _named(value, path, errs, regex, what):
    """A mapping of name -> settings; names are checked against ``regex``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errs.add(path, f"must be a mapping of {what} names, got {type(value).__name__}")
        return {}
    out = {}
    for name, item in value.items():
        if _str(name, path + (name,), errs, regex, f"{what} name") is not None:
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
    }
    raw = _mapping(raw, path, errs, keys)
    return {
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
            raw.get("timeout_connect"), path + ("timeout_connect",), errs, 1, 3_600_000, 5000
        ),
        "timeout_client": _int(
            raw.get("timeout_client"), path + ("timeout_client",), errs, 1, 3_600_000, 30000
        ),
        "timeout_server": _int(
            raw.get("timeout_server"), path + ("timeout_server",), errs, 1, 3_600_000, 30000
        ),
    }


def _loadbalancers(raw, errs, settings, hap):
    path = (ROOT, "loadbalancers")
    out = {}
    for name, item in _named(raw, path, errs, ID_RE, "minion id").items():
        p = path + (name,)
        item = _mapping(
            item,
            p,
            errs,
            {"address", "address6", "http_port", "health_path", "service_mode"},
            ["address"],
        )
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
            service_mode=_choice(
                item.get("service_mode"),
                p + ("service_mode",),
                errs,
                SERVICE_MODES,
                settings["service_mode"],
            ),
        )
    if not out:
        errs.add(path, "at least one load balancer is required")
    return out


def _webservers(raw, errs):
    path = (ROOT, "webservers")
    out = {}
    for name, item in _named(raw, path, errs, ID_RE, "minion id").items():
        p = path + (name,)
        item = _mapping(item, p, errs, {"address"}, ["address"])
        out[name] = Webserver(
            name=name, address=_address(item.get("address"), p + ("address",), errs)
        )
    return out


def _nameservers(raw, errs, settings):
    path = (ROOT, "nameservers")
    out = {}
    for name, item in _named(raw, path, errs, ID_RE, "minion id").items():
        p = path + (name,)
        item = _mapping(
            item,
            p,
            errs,
            {"address", "port", "server", "fqdn", "service_mode", "control_port"},
            ["address", "server"],
        )
        fqdn = _fqdn(item.get("fqdn"), p + ("fqdn",), errs) if "fqdn" in item else name
        control_port = _int(item.get("control_port"), p + ("control_port",), errs, 1, 65535)
        if control_port is not None and control_port == item.get("port", 53):
            errs.add(p + ("control_port",), f"{control_port} is already the DNS port")
        out[name] = Nameserver(
            name=name,
            address=_address(item.get("address"), p + ("address",), errs),
            port=_int(item.get("port"), p + ("port",), errs, 1, 65535, 53),
            server=_choice(item.get("server"), p + ("server",), errs, DNS_SERVERS),
            fqdn=fqdn,
            service_mode=_choice(
                item.get("service_mode"),
                p + ("service_mode",),
                errs,
                SERVICE_MODES,
                settings["service_mode"],
            ),
            control_port=control_port,
        )
    return out


def _unique_addresses(platform_parts, errs):
    """Two different machines must not share an address (one machine may hold several roles)."""
    seen = {}
    for role, servers in platform_parts:
        for name, server in servers.items():
            for attr in ("address", "address6"):
                addr = getattr(server, attr, None)
                if addr is None:
                    continue
                # A nameserver may share an address with another of its own ports; key by port too.
                port = getattr(server, "port", None) if role == "nameservers" else None
                key = (addr, port)
                owner = seen.setdefault(key, (role, name))
                if owner[1] != name:
                    errs.add(
                        (ROOT, role, name, attr),
                        f"{addr} is already the address of {owner[0]} {owner[1]!r}",
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


def cookie_value(service, server):
    """The persistence cookie value of ``server`` in ``service``.

    A pure function of the pillar, so every load balancer writes the same value and any of them
    sends a client holding it to the same backend. Readable on purpose: operators read cookies.
    """
    return f"{service}-{server}".replace(".", "_")


def _services(raw, errs, webservers, rotations):
    path = (ROOT, "services")
    out = {}
    hostnames_seen = {}
    for name, item in _named(raw, path, errs, SERVICE_RE, "service").items():
        p = path + (name,)
        keys = {
            "type",
            "hostnames",
            "rotation",
            "balance",
            "check",
            "servers",
            "failback",
            "cookie_name",
            "port",
        }
        item = _mapping(item, p, errs, keys, ["type", "hostnames", "servers"])
        stype = _choice(item.get("type"), p + ("type",), errs, SERVICE_TYPES)
        default_port = _int(item.get("port"), p + ("port",), errs, 1, 65535, 80)
        hostnames = []
        for i, h in enumerate(_list(item.get("hostnames"), p + ("hostnames",), errs)):
            fq = _fqdn(h, p + ("hostnames", i), errs, "hostname")
            if fq is None:
                continue
            if "*" in fq:
                errs.add(
                    p + ("hostnames", i), f"{h!r}: wildcards are not allowed in service hostnames"
                )
                continue
            other = hostnames_seen.setdefault(fq, name)
            if other != name or fq in hostnames:
                errs.add(p + ("hostnames", i), f"{fq} is already a hostname of service {other!r}")
                continue
            hostnames.append(fq)
        if item.get("hostnames") == []:
            errs.add(p + ("hostnames",), "at least one hostname is required")
        rotation = None
        if item.get("rotation") is not None:
            rotation = _fqdn(item.get("rotation"), p + ("rotation",), errs)
            if rotation is not None and rotation not in rotations:
                errs.add(p + ("rotation",), f"{rotation!r} is not a rotation in {ROOT}:rotations")
                rotation = None
        elif len(rotations) == 1:
            rotation = next(iter(rotations))
        elif rotations:
            errs.add(p + ("rotation",), "is required when there is more than one rotation")
        failback = None
        cookie_name = None
        if stype == "stateful":
            failback = _choice(item.get("failback"), p + ("failback",), errs, FAILBACK, "auto")
            cookie_name = _str(
                item.get("cookie_name"),
                p + ("cookie_name",),
                errs,
                COOKIE_RE,
                "cookie name",
                "PAPSRV",
            )
        else:
            for key in ("failback", "cookie_name"):
                if key in item:
                    errs.add(p + (key,), "only applies to a stateful service")
        servers = []
        rawservers = item.get("servers")
        if isinstance(rawservers, dict):
            rawservers = [
                dict({"name": k}, **(v or {}))
                if isinstance(v, (dict, type(None)))
                else {"name": k, "_bad": v}
                for k, v in rawservers.items()
            ]
        for i, srv in enumerate(_list(rawservers, p + ("servers",), errs)):
            sp = p + ("servers", srv.get("name", i) if isinstance(srv, dict) else i)
            if isinstance(srv, dict) and "_bad" in srv:
                errs.add(sp, f"must be a mapping, got {type(srv['_bad']).__name__}")
                continue
            srv = _mapping(srv, sp, errs, {"name", "port", "role"}, ["name"])
            sname = _str(srv.get("name"), sp + ("name",), errs, ID_RE, "minion id")
            if sname is None:
                continue
            if sname not in webservers:
                errs.add(sp + ("name",), f"{sname!r} is not a webserver in {ROOT}:webservers")
                continue
            if any(s.name == sname for s in servers):
                errs.add(sp + ("name",), f"{sname!r} is listed twice")
                continue
            roles = ("primary", "backup") if stype == "stateful" else ("active",)
            role = _choice(
                srv.get("role"),
                sp + ("role",),
                errs,
                roles,
                None if stype == "stateful" else "active",
            )
            if stype == "stateful" and role is None and "role" not in srv:
                errs.add(sp + ("role",), "is required for a stateful service (primary or backup)")
            servers.append(
                BackendServer(
                    name=sname,
                    address=webservers[sname].address,
                    port=_int(srv.get("port"), sp + ("port",), errs, 1, 65535, default_port),
                    role=role,
                    cookie=cookie_value(name, sname) if stype == "stateful" else None,
                )
            )
        if not servers and "servers" in item:
            errs.add(p + ("servers",), "at least one server is required")
        if stype == "stateful" and servers:
            primaries = [s for s in servers if s.role == "primary"]
            if len(primaries) != 1:
                errs.add(
                    p + ("servers",),
                    f"a stateful service needs exactly one primary, found {len(primaries)}",
                )
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
        )
    return out


def _rotations(raw, errs, loadbalancers):
    path = (ROOT, "rotations")
    out = {}
    if raw is not None and not isinstance(raw, dict):
        errs.add(path, f"must be a mapping of rotation names, got {type(raw).__name__}")
        return out
    for key, item in (raw or {}).items():
        p = path + (key,)
        name = _fqdn(key, p, errs, "rotation name")
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
    try:
        return dns.rdata.from_text(dns.rdataclass.IN, rdtype, data, origin=origin)
    except (dns.exception.DNSException, ValueError) as exc:
        errs.add(path + ("data",), f"{data!r} is not valid {rtype} data: {exc}")
        return None


def _zones(raw, errs, nameservers):
    path = (ROOT, "zones")
    out = {}
    if raw is not None and not isinstance(raw, dict):
        errs.add(path, f"must be a mapping of zone names, got {type(raw).__name__}")
        return out
    for key, item in (raw or {}).items():
        p = path + (key,)
        zname = _fqdn(key, p, errs, "zone name")
        if zname is None:
            continue
        if zname in out:
            errs.add(p, f"zone {zname} is listed twice")
            continue
        origin = dns.name.from_text(zname)
        item = _mapping(item, p, errs, {"ttl", "soa", "ns", "records"})
        ttl = _int(item.get("ttl"), p + ("ttl",), errs, 0, TTL_MAX, 3600)
        ns = []
        rawns = item.get("ns")
        default_ns = [n.fqdn for n in nameservers.values()]
        for i, n in enumerate(_list(rawns, p + ("ns",), errs) if rawns is not None else default_ns):
            fq = _fqdn(n, p + ("ns", i), errs, "nameserver name")
            if fq is not None:
                ns.append(fq)
        if not ns:
            errs.add(
                p + ("ns",), "a zone needs at least one NS (none given and no nameservers defined)"
            )
        sp = p + ("soa",)
        soa = _mapping(
            item.get("soa"), sp, errs, {"mname", "rname", "refresh", "retry", "expire", "minimum"}
        )
        soa = Soa(
            mname=_fqdn(soa.get("mname"), sp + ("mname",), errs)
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
        records = []
        rawrecords = item.get("records")
        if rawrecords is not None and not isinstance(rawrecords, dict):
            errs.add(
                p + ("records",),
                f"must be a mapping of owner names, got {type(rawrecords).__name__}",
            )
            rawrecords = {}
        for owner, rrs in (rawrecords or {}).items():
            op = p + ("records", owner)
            owner_text = _str(owner, op, errs)
            if owner_text is None:
                continue
            try:
                oname = (
                    origin if owner_text == "@" else dns.name.from_text(owner_text, origin=origin)
                )
            except dns.exception.DNSException as exc:
                errs.add(op, f"{owner_text!r} is not a valid owner name: {exc}")
                continue
            if owner_text != "@" and not re.match(r"^[A-Za-z0-9*_.-]+\.?$", owner_text):
                errs.add(
                    op,
                    f"{owner_text!r} is not a valid owner name: only letters, digits, '-', '_', '.', '*'",
                )
                continue
            if not oname.is_subdomain(origin):
                errs.add(op, f"{oname} is out of zone {zname}")
                continue
            rel = "@" if oname == origin else oname.relativize(origin).to_text()
            for i, rr in enumerate(_list(rrs, op, errs)):
                rp = op + (i,)
                rr = _mapping(rr, rp, errs, {"type", "data", "ttl"}, ["type", "data"])
                rtype = _str(rr.get("type"), rp + ("type",), errs)
                data = rr.get("data")
                if isinstance(data, (int, float)) and not isinstance(data, bool):
                    data = str(data)
                data = _str(data, rp + ("data",), errs)
                rttl = _int(rr.get("ttl"), rp + ("ttl",), errs, 0, TTL_MAX)
                if rtype is None or data is None:
                    continue
                rtype = rtype.upper()
                if _rdata_ok(rtype, data, origin, rp, errs) is None:
                    continue
                if rtype == "CNAME" and rel == "@":
                    errs.add(rp, "a CNAME is not allowed at the zone apex")
                    continue
                if rtype == "NS" and rel == "@":
                    errs.add(rp, "the apex NS records are set with the zone's 'ns' key")
                    continue
                records.append(Record(owner=rel, type=rtype, data=data, ttl=rttl))
        by_owner = {}
        for r in records:
            by_owner.setdefault(r.owner, []).append(r.type)
        for owner, types in by_owner.items():
            if "CNAME" in types and len(types) > 1:
                errs.add(
                    p + ("records", owner),
                    f"a CNAME cannot stand beside other data ({', '.join(sorted(set(types)))})",
                )
        out[zname] = Zone(name=zname, ttl=ttl, soa=soa, ns=tuple(ns), records=tuple(records))
    return out


def _rotation_zones(rotations, services, zones, platform_zone_of, errs):
    """Rotation names and service hostnames must live in a managed zone and not clash with records."""
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
                    f"{name} also has records in {ROOT}:zones:{zname}:records:{rel} ({', '.join(clash)}); "
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
                    f"{host} also has records in {ROOT}:zones:{zname}:records:{rel} ({', '.join(clash)}); "
                    "a service hostname takes its addresses from its rotation and cannot have its own",
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
    raw = _mapping(raw, path, errs, {"max_change_share", "min_records_for_share"})
    return {
        "max_change_share": _number(
            raw.get("max_change_share"), path + ("max_change_share",), errs, 0, 1, 0.3
        ),
        "min_records_for_share": _int(
            raw.get("min_records_for_share"), path + ("min_records_for_share",), errs, 0, 10**9, 10
        ),
    }


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


TOP_KEYS = {
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
    rotations = _rotations(raw.get("rotations"), errs, loadbalancers)
    services = _services(raw.get("services"), errs, webservers, rotations)
    zones = _zones(raw.get("zones"), errs, nameservers)
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
    )
    _rotation_zones(rotations, services, zones, platform.zone_of, errs)
    for i, w in enumerate(health.watchers):
        if w not in nameservers and w not in loadbalancers and w not in webservers:
            errs.add(
                (ROOT, "health", "watchers", i), f"{w!r} is not a server defined in this pillar"
            )
    if errs.errors:
        raise InvalidPillar(errs.errors)
    return platform


def digest(paphosting):
    """A digest of a ``paphosting`` pillar value as compiled (canonical JSON, SHA-256): two
    minions, or a minion and a master, hold the same platform exactly when their digests match."""
    text = json.dumps(paphosting, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
