"""The authoritative DNS servers (BIND 9, NSD, Knot): paths, configs, checkers, control.

Pure functions of the platform model and a root prefix (``paphosting_root``): the Salt modules call
them. Each nameserver in pillar names its server; every nameserver serves every zone of the
platform, as a primary that needs no transfers.

Secure defaults, for all three: no zone transfers (no ``allow-transfer``/``provide-xfr``, no
Knot ``remote``), no recursion, no dynamic updates but Knot's for the failover (signed with a
key of the nameserver's own, from its own address: :mod:`paphosting.dnsupdate`); control only on a local unix socket (NSD, Knot) or on 127.0.0.1
with a generated key (BIND's rndc, port ``control_port``, default 953), all under the root.
"""

import base64
import concurrent.futures
import ipaddress
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from paphosting import daemon as pdaemon
from paphosting import dnsupdate, waiting
from paphosting.errors import CheckFailed, PapError
from paphosting.paths import under

SERVERS = ("bind", "nsd", "knot")
UNITS = {"bind": "named", "nsd": "nsd", "knot": "knot"}
# bind9-utils everywhere: dnssec-verify checks every signed zone before it is served.
PACKAGES = {
    "bind": ["bind9", "bind9-utils"],
    "nsd": ["nsd", "bind9-utils"],
    "knot": ["knot", "knot-dnssecutils", "bind9-utils"],
}
DAEMONS = {"bind": "named", "nsd": "nsd", "knot": "knotd"}
CHECKCONF = {"bind": "named-checkconf", "nsd": "nsd-checkconf", "knot": "knotc"}
CHECKZONE = {"bind": "named-checkzone", "nsd": "nsd-checkzone", "knot": "kzonecheck"}
CONTROL = {"bind": "rndc", "nsd": "nsd-control", "knot": "knotc"}
RNDC_KEY_NAME = "rndc-key"
HEADER = "Rendered by Salt from the paphosting pillar for {name}. Do not edit: every apply overwrites it."


class ControlError(PapError):
    """A control command (rndc, nsd-control, knotc) failed."""


def binary(name):
    """The path of a server binary, or raise :class:`PapError` naming the missing package."""
    path = shutil.which(name)
    if path is None:
        for d in ("/usr/sbin", "/usr/bin", "/sbin"):
            if os.access(os.path.join(d, name), os.X_OK):
                return os.path.join(d, name)
        raise PapError(
            f"{name} is not installed (Debian packages: bind9 bind9-utils, nsd, knot knot-dnssecutils)"
        )
    return path


def installed(server):
    """True when the daemon of ``server`` (bind, nsd, knot) is installed."""
    try:
        binary(DAEMONS[server])
    except PapError:
        return False
    return True


def _kind(server):
    kind = getattr(server, "server", server)
    if kind not in SERVERS:
        raise PapError(f"{kind!r} is not a DNS server (one of {', '.join(SERVERS)})")
    return kind


def _loopback(address):
    return "::1" if ipaddress.ip_address(address).version == 6 else "127.0.0.1"


def layout(server, root="/"):
    """Where a server's files live under ``root``.

    ``server`` is a :class:`~paphosting.model.Nameserver` (or just ``"bind"``, ``"nsd"``,
    ``"knot"``). Keys: ``config``, ``zone_dir``, ``pidfile``, ``log``, ``dirs`` (to create),
    ``control`` (how the control channel is reached) and server-specific extras.
    """
    kind = _kind(server)
    u = lambda p: under(root, p)  # noqa: E731
    if kind == "bind":
        address = getattr(server, "address", "127.0.0.1")
        port = getattr(server, "control_port", None) or 953
        out = {
            "config": u("/etc/bind/named.conf"),
            "zone_dir": u("/etc/bind/zones"),
            "work_dir": u("/var/cache/bind"),
            "pidfile": u("/run/named/named.pid"),
            "log": u("/var/log/named/named.log"),
            "control": {
                "address": _loopback(address),
                "port": port,
                "key": u("/etc/bind/rndc.key"),
                "conf": u("/etc/bind/rndc.conf"),
            },
        }
        out["dirs"] = [out["zone_dir"], out["work_dir"], u("/run/named"), u("/var/log/named")]
    elif kind == "nsd":
        out = {
            "config": u("/etc/nsd/nsd.conf"),
            "zone_dir": u("/etc/nsd/zones"),
            "state_dir": u("/var/lib/nsd"),
            "pidfile": u("/run/nsd/nsd.pid"),
            "log": u("/var/log/nsd/nsd.log"),
            "control": {"socket": u("/run/nsd/nsd.ctl")},
        }
        out["dirs"] = [out["zone_dir"], out["state_dir"], u("/run/nsd"), u("/var/log/nsd")]
    else:
        out = {
            "config": u("/etc/knot/knot.conf"),
            "zone_dir": u("/var/lib/knot/zones"),
            "state_dir": u("/var/lib/knot"),
            "run_dir": u("/run/knot"),
            "pidfile": u("/run/knot/knot.pid"),
            "log": u("/var/log/knot/knot.log"),
            "control": {"socket": u("/run/knot/knot.sock")},
            # The failover's RFC 2136 updates are signed with it (paphosting.dnsupdate).
            "update_key": u("/etc/knot/paphosting-update.key"),
        }
        out["dirs"] = [out["zone_dir"], out["state_dir"], out["run_dir"], u("/var/log/knot")]
    out["server"] = kind
    out["unit"] = UNITS[kind]
    out["packages"] = list(PACKAGES[kind])
    return out


def zone_path(server, zone_name, root="/"):
    """The zone file of ``zone_name`` for ``server``."""
    return zone_paths(server, [zone_name], root)[zone_name]


def zone_paths(server, zone_names, root="/"):
    """``{zone: its file}`` for many zones of ``server`` (the layout worked out once)."""
    zone_dir = layout(server, root)["zone_dir"]
    return {z: os.path.join(zone_dir, f"{z}.zone") for z in zone_names}


# --- configs ------------------------------------------------------------------------------------


def _q(text):
    """A double-quoted config string (paths and names are validated; quote anyway)."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(platform, ns_id, root="/"):
    """The main config file of nameserver ``ns_id`` (its server chosen in pillar), as text."""
    ns = platform.nameservers[ns_id]
    lay = layout(ns, root)
    zones = sorted(platform.zones)
    process = ns.service_mode == "process"
    text = {"bind": _bind_conf, "nsd": _nsd_conf, "knot": _knot_conf}[ns.server](
        ns, lay, zones, process
    )
    listener = (platform.metrics or {}).get("nameservers", {}).get(ns_id)
    if listener is None:
        return text
    # The statistics the nameserver's exporter reads (paphosting.dnsmetrics): BIND's statistics
    # channel, on the loopback only; Knot's mod-stats counters for every query (knotc stats).
    # NSD counts without configuration (nsd-control stats_noreset).
    if ns.server == "bind":
        text += (
            f"\nstatistics-channels {{\n\tinet {_loopback(ns.address)} port {listener.stats_port}"
            f" allow {{ {_loopback(ns.address)}; }};\n}};\n"
        )
    elif ns.server == "knot":
        text = text.replace(
            "template:\n  - id: default\n",
            "template:\n  - id: default\n    global-module: mod-stats\n",
            1,
        )
    return text


def _bind_conf(ns, lay, zones, process):
    v6 = ipaddress.ip_address(ns.address).version == 6
    ctl = lay["control"]
    lines = [
        f"// {HEADER.format(name=ns.name)}",
        f"include {_q(ctl['key'])};",
        "",
        "options {",
        f"\tdirectory {_q(lay['work_dir'])};",
        f"\tpid-file {_q(lay['pidfile'])};",
        f"\tsession-keyfile {_q(os.path.join(os.path.dirname(lay['pidfile']), 'session.key'))};",
        f"\tlisten-on port {ns.port} {{ {'none' if v6 else ns.address}; }};",
        f"\tlisten-on-v6 port {ns.port} {{ {ns.address if v6 else 'none'}; }};",
        "\trecursion no;",
        "\tallow-recursion { none; };",
        "\tallow-query { any; };",
        "\tallow-transfer { none; };",
        "\tallow-update { none; };",
        "\tnotify no;",
        "\tdnssec-validation no;",
        "\tversion none;",
        "\thostname none;",
        "\tserver-id none;",
        "};",
        "",
        "controls {",
        f"\tinet {ctl['address']} port {ctl['port']} allow {{ 127.0.0.0/8; ::1; }} keys {{ {_q(RNDC_KEY_NAME)}; }};",
        "};",
        "",
    ]
    if process:
        lines += [
            "logging {",
            f"\tchannel paphosting {{ file {_q(lay['log'])}; severity info; print-time yes; print-category yes; print-severity yes; }};",
            "\tcategory default { paphosting; };",
            "\tcategory lame-servers { null; };",
            "};",
            "",
        ]
    for z in zones:
        lines += [
            f"zone {_q(z)} {{",
            "\ttype primary;",
            f"\tfile {_q(os.path.join(lay['zone_dir'], z + '.zone'))};",
            "};",
        ]
    return "\n".join(lines) + "\n"


def rndc_conf(ns, root="/"):
    """rndc's own config for a BIND nameserver: its key, address and port."""
    ctl = layout(ns, root)["control"]
    return (
        f"// {HEADER.format(name=ns.name)}\n"
        f"include {_q(ctl['key'])};\n"
        f"options {{\n\tdefault-key {_q(RNDC_KEY_NAME)};\n\tdefault-server {ctl['address']};\n"
        f"\tdefault-port {ctl['port']};\n}};\n"
    )


def key_file(server, root="/"):
    """``(path, make)`` of the key file the server's config includes (BIND's rndc key, Knot's
    update key), ``make()`` giving a new one; None for NSD. Made once, never rewritten."""
    lay = layout(server, root)
    if lay["server"] == "bind":
        return lay["control"]["key"], rndc_key
    if lay["server"] == "knot":
        return lay["update_key"], dnsupdate.key_text
    return None


def rndc_key(secret=None):
    """A new rndc key file (hmac-sha256, 256 random bits unless ``secret`` is given)."""
    secret = secret or base64.b64encode(os.urandom(32)).decode("ascii")
    return f'key "{RNDC_KEY_NAME}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n'


def _nsd_conf(ns, lay, zones, process):
    addr = f"{ns.address}@{ns.port}"
    lines = [
        f"# {HEADER.format(name=ns.name)}",
        "server:",
        f"\tip-address: {addr}",
        f"\tport: {ns.port}",
        "\tserver-count: 1",
        f"\tzonesdir: {_q(lay['zone_dir'])}",
        '\tdatabase: ""',
        f"\tzonelistfile: {_q(os.path.join(lay['state_dir'], 'zone.list'))}",
        f"\txfrdfile: {_q(os.path.join(lay['state_dir'], 'xfrd.state'))}",
        f"\txfrdir: {_q(lay['state_dir'])}",
        f"\tpidfile: {_q(lay['pidfile'])}",
        "\thide-version: yes",
        "\thide-identity: yes",
        "\tverbosity: 1",
    ]
    if process:
        lines += ['\tusername: ""', f"\tlogfile: {_q(lay['log'])}"]
    lines += [
        "",
        "remote-control:",
        "\tcontrol-enable: yes",
        f"\tcontrol-interface: {_q(lay['control']['socket'])}",
        "",
    ]
    for z in zones:
        lines += [
            "zone:",
            f"\tname: {_q(z)}",
            f"\tzonefile: {_q(os.path.join(lay['zone_dir'], z + '.zone'))}",
            "",
        ]
    return "\n".join(lines)


def _knot_conf(ns, lay, zones, process):
    lines = [
        f"# {HEADER.format(name=ns.name)}",
        "server:",
        f"    rundir: {_q(lay['run_dir'])}",
        f"    pidfile: {_q(lay['pidfile'])}",
        f"    listen: {ns.address}@{ns.port}",
        '    identity: ""',
        '    version: ""',
        "",
        "log:",
        f"  - target: {_q(lay['log']) if process else 'syslog'}",
        "    any: info",
        "",
        "database:",
        f"    storage: {_q(lay['state_dir'])}",
        "",
        "control:",
        f"    listen: {_q(lay['control']['socket'])}",
        "",
        # The failover's updates (paphosting.dnsupdate): signed with this server's own key, from
        # its own address. Knot never writes a zone file (zonefile-sync -1) nor keeps a journal:
        # the failover writes the same text to the file once the update is served.
        f"include: {_q(lay['update_key'])}",
        "",
        "acl:",
        f"  - id: {dnsupdate.KEY_NAME}",
        f"    address: {ns.address}",
        f"    key: {dnsupdate.KEY_NAME}",
        "    action: update",
        "",
        "template:",
        "  - id: default",
        f"    storage: {_q(lay['zone_dir'])}",
        '    file: "%s.zone"',
        "    zonefile-sync: -1",
        "    zonefile-load: whole",
        "    journal-content: none",
        "    semantic-checks: on",
        f"    acl: {dnsupdate.KEY_NAME}",
        "",
    ]
    if zones:
        lines.append("zone:")
        lines += [f"  - domain: {_q(z)}" for z in zones]
    return "\n".join(lines) + "\n"


# --- checkers -----------------------------------------------------------------------------------


def _run(argv, timeout=60):
    try:
        res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return res.returncode, (res.stdout + res.stderr).strip()


def check_config_file(server, path):
    """Validate a config file with the server's own checker; raise :class:`CheckFailed`."""
    kind = _kind(server)
    tool = CHECKCONF[kind]
    argv = {
        "bind": [binary(tool), path],
        "nsd": [binary(tool), path],
        "knot": [binary(tool), "-c", path, "conf-check"],
    }[kind]
    code, out = _run(argv)
    if code != 0:
        raise CheckFailed(
            "knotc conf-check" if kind == "knot" else tool, path, out or f"exit status {code}"
        )


def check_zone_file(server, zone_name, path):
    """Validate a zone file with the server's own zone checker; raise :class:`CheckFailed`."""
    kind = _kind(server)
    tool = CHECKZONE[kind]
    argv = {
        "bind": [binary(tool), zone_name, path],
        "nsd": [binary(tool), zone_name, path],
        "knot": [binary(tool), "-o", zone_name, path],
    }[kind]
    code, out = _run(argv)
    if code != 0:
        raise CheckFailed(tool, f"zone {zone_name}", out or f"exit status {code}")


def check_zone_text(server, zone_name, text):
    """Validate zone ``text`` with the server's checker on a temporary file; raise CheckFailed."""
    with tempfile.TemporaryDirectory(prefix="paphosting-zone-") as d:
        path = os.path.join(d, f"{zone_name}.zone")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        check_zone_file(server, zone_name, path)


def check_zone_files(server, paths):
    """Validate many zone files with the server's own checker, as few processes as it allows.

    ``paths`` is ``{zone name: file}``. BIND: one ``named-checkconf -z`` over a throw-away config
    naming every zone; Knot: one offline ``knotc zone-check`` over a throw-away config; NSD, whose
    checker takes one zone, ``nsd-checkzone`` per zone, two at a time. Returns ``{zone: message}``
    for the zones refused (empty: all good); the message is the checker's output for that zone.
    """
    kind = _kind(server)
    if not paths:
        return {}
    if kind == "nsd":
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            runs = dict(
                zip(
                    paths,
                    pool.map(
                        lambda item: _run([binary("nsd-checkzone"), item[0], item[1]]),
                        paths.items(),
                    ),
                    strict=True,
                )
            )
        return {z: out or f"exit status {code}" for z, (code, out) in runs.items() if code != 0}
    with tempfile.TemporaryDirectory(prefix="paphosting-zones-") as d:
        conf = os.path.join(d, "check.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            if kind == "bind":
                fh.write(f"options {{ directory {_q(d)}; }};\n")
                for z, path in paths.items():
                    fh.write(f"zone {_q(z)} {{ type primary; file {_q(path)}; }};\n")
                argv = [binary("named-checkconf"), "-z", conf]
            else:
                fh.write(
                    f"server:\n    rundir: {_q(d)}\ndatabase:\n    storage: {_q(d)}\n"
                    "template:\n  - id: default\n    semantic-checks: on\nzone:\n"
                )
                for z, path in paths.items():
                    fh.write(f"  - domain: {_q(z)}\n    file: {_q(path)}\n")
                argv = [binary("knotc"), "-c", conf, "zone-check", "-f"]
        code, out = _run(argv, timeout=600)
    if code == 0:
        return {}
    return _refused_zones(kind, paths, out or f"exit status {code}")


def _refused_zones(kind, paths, output):
    """``{zone: lines}`` of a bulk checker's output naming the zones it refused."""
    pattern = (
        re.compile(r"zone ([^/\s]+)/IN:|_default/([^/\s]+)/IN:|^[^:]*?([^/\s]+)\.zone:\d+:")
        if kind == "bind"
        else re.compile(r"\[([^\]]+?)\.?\]")
    )
    found = {}
    for line in output.splitlines():
        m = pattern.search(line)
        zone = next((g for g in m.groups() if g), None) if m else None
        if zone is not None:
            zone = zone.rstrip(".").lower()
        if zone in paths and ("loaded serial" not in line):
            found.setdefault(zone, []).append(line.strip())
    if not found:
        # Refused without naming a zone we know: every zone is suspect.
        return dict.fromkeys(paths, output)
    return {z: "\n".join(lines) for z, lines in found.items()}


def check_config_text(server, text):
    """Validate config ``text`` with the server's checker on a temporary file; raise CheckFailed."""
    with tempfile.TemporaryDirectory(prefix="paphosting-conf-") as d:
        path = os.path.join(d, "server.conf")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        check_config_file(server, path)


def check_config_before_write(ns, text, root="/"):
    """Validate rendered config ``text`` of ``ns`` before anything exists on disk.

    ``named-checkconf`` insists that the working directory and the included rndc key exist, and
    ``knotc conf-check`` that the included update key does; until the first write they don't, so
    a throw-away directory and key stand in for them.
    """
    lay = layout(ns, root)
    with tempfile.TemporaryDirectory(prefix="paphosting-conf-") as d:
        key = key_file(ns, root)
        if key is not None and not os.path.exists(key[0]):
            stand_in = os.path.join(d, os.path.basename(key[0]))
            with open(stand_in, "w", encoding="utf-8") as fh:
                fh.write(key[1]())
            text = text.replace(_q(key[0]), _q(stand_in))
        if ns.server == "bind" and not os.path.isdir(lay["work_dir"]):
            text = text.replace(_q(lay["work_dir"]), _q(d))
        check_config_text(ns, text)


# --- process mode and control -------------------------------------------------------------------


def daemon(ns, root="/"):
    """The :class:`~paphosting.daemon.Daemon` of a nameserver in service mode ``process``."""
    lay = layout(ns, root)
    kind = ns.server
    command = {
        "bind": (binary("named"), "-c", lay["config"]),
        "nsd": (binary("nsd"), "-c", lay["config"]),
        "knot": (binary("knotd"), "-c", lay["config"], "-d"),
    }[kind]
    return pdaemon.Daemon(
        name=f"{DAEMONS[kind]} ({ns.name})",
        command=command,
        pidfile=lay["pidfile"],
        foreground=False,
        reload_signal=signal.SIGHUP,
        reload_command=reload_commands(ns, root)[0],
        stop_signal=signal.SIGTERM,
        log=lay["log"],
    )


def running(ns, root="/", service_status=None):
    """True when the server of ``ns`` runs: its process (pidfile) in service mode ``process``;
    in mode ``systemd``, what ``service_status(unit)`` says (Salt's ``service.status``)."""
    if ns.service_mode == "systemd":
        return bool(service_status(UNITS[ns.server])) if service_status else False
    return pdaemon.running(daemon(ns, root))


def _control(ns, root):
    lay = layout(ns, root)
    if ns.server == "bind":
        return [binary("rndc"), "-c", lay["control"]["conf"]]
    if ns.server == "nsd":
        return [binary("nsd-control"), "-c", lay["config"]]
    return [binary("knotc"), "-s", lay["control"]["socket"]]


def reload_commands(ns, root="/"):
    """The commands that reload a running server's config and every zone (run in order)."""
    ctl = _control(ns, root)
    if ns.server == "bind":
        return [tuple(ctl + ["reload"])]
    if ns.server == "nsd":
        return [tuple(ctl + ["reconfig"]), tuple(ctl + ["reload"])]
    return [tuple(ctl + ["reload"])]


def zone_reload_command(ns, zone_name, root="/"):
    """The command that reloads one zone: ``rndc reload``, ``nsd-control reload``, ``knotc zone-reload``."""
    ctl = _control(ns, root)
    return tuple(
        ctl
        + {
            "bind": ["reload", zone_name],
            "nsd": ["reload", zone_name],
            "knot": ["-b", "zone-reload", zone_name],
        }[ns.server]
    )


def zones_reload_commands(ns, zone_names, root="/"):
    """The commands that make a running server load many changed zone files, in as few
    operations as it allows: ``rndc reload`` (BIND reloads the zones whose files changed),
    ``nsd-control reload`` (NSD likewise), ``knotc zone-reload`` naming every zone (Knot)."""
    zone_names = list(zone_names)
    if len(zone_names) == 1:
        return [zone_reload_command(ns, zone_names[0], root)]
    ctl = _control(ns, root)
    if ns.server == "knot":
        return [tuple(ctl + ["-b", "zone-reload"] + zone_names)]
    return [tuple(ctl + ["reload"])]


def _children(pid):
    """Every descendant of ``pid`` (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 1:
            parents[int(entry)] = int(fields[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - out
        out |= frontier
    return out


def server_processes(ns, root="/"):
    """NSD's child processes now (empty for BIND and Knot, which reload in place): pass them to
    :func:`wait_reloaded_processes` after a reload."""
    if ns.server != "nsd":
        return set()
    main = pdaemon.read_pid(layout(ns, root)["pidfile"])
    return _children(main) if main else set()


def wait_reloaded_processes(ns, before, root="/", timeout=5.0):
    """Wait until NSD's serve processes from before a reload have exited.

    NSD reloads by forking new serve processes; the old ones finish what they were doing and
    exit, and until they have, they read queries from the same sockets and answer from the old
    zones. So "the server answers the new serial" once is not yet "every answer is new" (a test
    saw the new serial, then the old one). Below the pidfile's process one process outlives a
    reload (the parent of the serve processes), so at most one of ``before`` may remain. True
    when that is reached within ``timeout``.
    """
    if ns.server != "nsd" or not before:
        return True
    main = pdaemon.read_pid(layout(ns, root)["pidfile"])
    return bool(
        waiting.until(lambda: main is None or len(before & _children(main)) <= 1, timeout, 0.02)
    )


def run_control(argv):
    """Run a control command; return its output, raise :class:`ControlError` on failure."""
    code, out = _run(list(argv), timeout=30)
    if code != 0:
        raise ControlError(f"{' '.join(argv)} failed (exit status {code}): {out}")
    return out


# --- queries ------------------------------------------------------------------------------------


def query(ns, qname, rdtype="A", timeout=1.0):
    """Ask nameserver ``ns`` (its pillar address and port) over UDP; the response or None."""
    msg = dns.message.make_query(qname, rdtype)
    msg.flags &= ~dns.flags.RD
    try:
        return dns.query.udp(msg, ns.address, port=ns.port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return None


def served_serial(ns, zone_name, timeout=1.0):
    """The SOA serial ``ns`` serves for ``zone_name``, or None (not answering, not loaded)."""
    resp = query(ns, zone_name + ".", "SOA", timeout)
    if resp is None or resp.rcode() != dns.rcode.NOERROR:
        return None
    for rrset in resp.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset[0].serial
    return None


def _pipelined(ns, names, build, read, done, timeout, tries, window, arrived=None):
    """Ask ``ns`` one UDP query per name over one socket, ``window`` in flight: ``build(qid,
    name)`` makes a query's wire form, ``read(wire)`` returns ``(qid, value)`` of a response;
    names whose value is not ``done(value)`` are asked again, ``tries`` times in all. Thousands of
    names take a fraction of a second. Returns ``{name: last value or None}``.

    A query not answered within a fraction of ``timeout`` is sent again at once (and the window
    halves, down to 16): a server that drops part of a burst (BIND does, its socket buffer full)
    would otherwise hold the lost queries' slots until the round's ``timeout`` ran out, a second
    per round for a handful of lost answers.

    ``arrived``: a dict to fill with the time (``time.monotonic()``) each name's answer arrived."""
    out = dict.fromkeys(names)
    family = socket.AF_INET6 if ":" in ns.address else socket.AF_INET
    pending = list(out)
    qid = 0
    resend_after = max(0.1, timeout / 5)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for _ in range(tries):
            if not pending:
                break
            waiting = {}
            queue = list(pending)
            deadline = time.monotonic() + timeout
            while (queue or waiting) and time.monotonic() < deadline:
                while queue and len(waiting) < window:
                    name = queue.pop()
                    qid = (qid + 1) % 65536
                    try:
                        sock.sendto(build(qid, name), (ns.address, ns.port))
                    except OSError:
                        queue.clear()
                        break
                    waiting[qid] = (name, time.monotonic())
                ready, _, _ = select.select([sock], [], [], 0.02)
                if ready:
                    while True:
                        try:
                            wire, _ = sock.recvfrom(65535)
                        except OSError:
                            break
                        rid, value = read(wire)
                        entry = waiting.pop(rid, None)
                        if entry is not None:
                            out[entry[0]] = value
                            if arrived is not None:
                                arrived[entry[0]] = time.monotonic()
                now = time.monotonic()
                late = [q for q, (_n, at) in waiting.items() if now - at > resend_after]
                if late:
                    queue.extend(waiting.pop(q)[0] for q in late)
                    window = max(16, window // 2)
            pending = [n for n in pending if not done(out[n])]
    return out


def query_many(ns, names, rdtype="SOA", timeout=1.0, tries=3, window=256):
    """``{name: response or None}``: ask ``ns`` for each of ``names`` (``rdtype``, no recursion),
    pipelined (:func:`_pipelined`); names without a NOERROR answer are asked again."""

    def build(qid, name):
        msg = dns.message.make_query(name.rstrip(".") + ".", rdtype, id=qid)
        msg.flags &= ~dns.flags.RD
        return msg.to_wire()

    def read(wire):
        try:
            resp = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None, None
        return resp.id, resp

    def done(resp):
        return resp is not None and resp.rcode() == dns.rcode.NOERROR

    return _pipelined(ns, names, build, read, done, timeout, tries, window)


def _skip_name(wire, pos):
    """The offset just after the (possibly compressed) domain name at ``pos``."""
    while True:
        length = wire[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + length


def soa_serial_from_wire(wire):
    """``(id, serial or None)`` of a response to a SOA query, read straight off the wire: the
    first answer record when it is a SOA, in a NOERROR response. A thousand responses parsed by
    dnspython take seconds; this takes milliseconds. ``(None, None)`` when it is no such message."""
    if len(wire) < 12:
        return None, None
    qid = int.from_bytes(wire[0:2], "big")
    rcode = wire[3] & 0x0F
    qdcount = int.from_bytes(wire[4:6], "big")
    ancount = int.from_bytes(wire[6:8], "big")
    if rcode != 0 or qdcount != 1 or ancount < 1:
        return qid, None
    try:
        pos = _skip_name(wire, 12) + 4  # the question: name, type, class
        pos = _skip_name(wire, pos)
        rtype = int.from_bytes(wire[pos : pos + 2], "big")
        if rtype != dns.rdatatype.SOA:
            return qid, None
        pos += 10  # type, class, ttl, rdlength
        pos = _skip_name(wire, _skip_name(wire, pos))  # mname, rname
        return qid, int.from_bytes(wire[pos : pos + 4], "big")
    except IndexError:
        return qid, None


def soa_query_wire(qid, zone_name):
    """The wire form of a SOA query for ``zone_name`` (no recursion), built without dnspython:
    zone names are validated ASCII (``paphosting.model``)."""
    qname = b"".join(
        len(label).to_bytes(1, "big") + label
        for label in zone_name.rstrip(".").encode("ascii").split(b".")
    )
    return (
        qid.to_bytes(2, "big")
        + b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + qname
        + b"\x00\x00\x06\x00\x01"
    )


def served_serials(ns, zone_names, timeout=1.0, tries=3, window=256, arrived=None):
    """``{zone: serial or None}``: the SOA serial ``ns`` serves for each zone, pipelined
    (:func:`_pipelined`, which fills ``arrived``) with queries built and answers read without
    dnspython (:func:`soa_query_wire`, :func:`soa_serial_from_wire`)."""
    return _pipelined(
        ns,
        zone_names,
        soa_query_wire,
        soa_serial_from_wire,
        lambda serial: serial is not None,
        timeout,
        tries,
        window,
        arrived,
    )


def wait_serials(ns, want, timeout, interval=0.02):
    """Ask ``ns`` again and again (:func:`served_serials`) until it serves the serial
    ``want[zone]`` for every zone, at most ``timeout`` seconds; ``{zone: serial served last}``
    of the zones it does not serve so by then (empty: every one)."""
    pending = dict(want)
    got = {}

    def served():
        nonlocal got, pending
        got = served_serials(ns, list(pending), timeout=0.5, tries=1)
        pending = {z: s for z, s in pending.items() if got.get(z) != s}
        return not pending

    if pending:
        waiting.until(served, timeout, interval=interval)
    return {z: got.get(z) for z in pending}


def answering(ns, timeout=0.5):
    """True when ``ns`` answers DNS queries at all (any response code)."""
    return query(ns, ".", "SOA", timeout) is not None
