"""A nameserver's statistics for Prometheus, with the same metric names whatever its server.

Each server keeps its own counters and has its own way to read them: BIND's statistics channel
(JSON over HTTP on the loopback), Knot's ``mod-stats`` module (``knotc stats``), NSD's
``nsd-control stats_noreset``. :func:`parse_bind`, :func:`parse_knot` and :func:`parse_nsd` turn
each into ``{"queries": n, "responses": {rcode: n}}``; :class:`Collector` reads them at every
scrape, asks the server for the SOA serial of every zone it should serve, and reports:

``paphosting_dns_up{software}``
    1 when the server's statistics could be read; ``software`` is bind, nsd or knot.
``paphosting_dns_queries_total``, ``paphosting_dns_responses_total{rcode}``
    Since the server started (a restart resets them; Prometheus's ``rate`` handles that).
``paphosting_dns_zone_serial{zone}``
    The SOA serial served (absent for a zone the server does not answer for).
``paphosting_dns_rotation_version``
    The rotation version the nameserver holds (:mod:`paphosting.overlay`).
``paphosting_dnssec_signature_expiry_seconds{zone}``
    For each signed zone, the seconds until the earliest signature in the zone file the server
    loaded expires (the signer's first line, :mod:`paphosting.dnssec`); renewal keeps it above
    the refresh margin (7 days by default), so an alert well above zero catches a stalled signer.

The exporter is a small process (:func:`main`, ``python -m paphosting.dnsmetrics CONFIG``)
started by the ``dns_exporter`` state: with a pidfile in service mode ``process``
(:func:`daemon`), as a systemd unit otherwise (:func:`systemd_unit`). See docs/monitoring.md.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from paphosting import daemon as pdaemon
from paphosting import dnssec, dnsserver, overlay
from paphosting.errors import PapError
from paphosting.paths import under

PREFIX = "paphosting_dns"
UNIT = "paphosting-dns-exporter"
TIMEOUT = 5.0
KNOT_LINE = re.compile(r"^mod-stats\.(?P<section>[a-z-]+)\[(?P<key>[^\]]+)\]\s*=\s*(?P<value>\d+)")
NSD_LINE = re.compile(r"^(?P<key>[A-Za-z0-9_.]+)=(?P<value>\d+)\s*$")


class StatsError(PapError):
    """The server's statistics could not be read."""


def parse_bind(doc):
    """BIND's ``/json/v1/server`` document: queries are the QUERY opcodes received, responses
    the rcodes sent."""
    if not isinstance(doc, dict):
        raise StatsError("BIND's statistics channel did not answer a JSON object")
    queries = (doc.get("opcodes") or {}).get("QUERY", 0)
    responses = {k: int(v) for k, v in (doc.get("rcodes") or {}).items() if int(v)}
    return {"queries": int(queries), "responses": responses}


def _matching_lines(text, line_re):
    """The matches of ``line_re`` on the lines of a statistics dump, the others skipped."""
    for line in text.splitlines():
        m = line_re.match(line.strip())
        if m:
            yield m


def parse_knot(text):
    """``knotc stats`` with ``mod-stats``: ``server-operation[query]`` and ``response-code[X]``."""
    queries, responses = 0, {}
    for m in _matching_lines(text, KNOT_LINE):
        if m["section"] == "server-operation" and m["key"] == "query":
            queries += int(m["value"])
        elif m["section"] == "response-code":
            responses[m["key"]] = responses.get(m["key"], 0) + int(m["value"])
    return {"queries": queries, "responses": responses}


def parse_nsd(text):
    """``nsd-control stats_noreset``: ``num.queries`` and ``num.rcode.X``."""
    queries, responses = 0, {}
    for m in _matching_lines(text, NSD_LINE):
        if m["key"] == "num.queries":
            queries = int(m["value"])
        elif m["key"].startswith("num.rcode."):
            value = int(m["value"])
            if value:
                responses[m["key"][len("num.rcode.") :]] = value
    return {"queries": queries, "responses": responses}


def read_stats(conf):
    """The server's counters, through its own interface (``conf``: :func:`exporter_config`)."""
    kind = conf["server"]
    try:
        if kind == "bind":
            with urllib.request.urlopen(conf["stats_url"], timeout=TIMEOUT) as resp:
                return parse_bind(json.load(resp))
        out = subprocess.run(
            conf["stats_command"], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise StatsError(f"{kind}: {exc}") from exc
    if out.returncode != 0:
        raise StatsError(f"{' '.join(conf['stats_command'])}: {(out.stdout + out.stderr).strip()}")
    return (parse_knot if kind == "knot" else parse_nsd)(out.stdout)


class Collector:
    """Reads the server's statistics and its zones' serials at every scrape."""

    def __init__(self, conf):
        self.conf = conf
        self.target = SimpleNamespace(address=conf["dns"][0], port=conf["dns"][1])

    def describe(self):
        return []

    def collect(self):
        # The nameserver's name is the scrape target's label (paphosting.metrics.scrape_configs).
        labels = ["software"]
        ident = [self.conf["server"]]
        up = GaugeMetricFamily(f"{PREFIX}_up", "1 when the statistics were read.", labels=labels)
        try:
            stats = read_stats(self.conf)
        except StatsError as exc:
            up.add_metric(ident, 0)
            yield up
            print(f"dnsmetrics: {exc}", file=sys.stderr, flush=True)
            stats = None
        else:
            up.add_metric(ident, 1)
            yield up
        if stats is not None:
            queries = CounterMetricFamily(
                f"{PREFIX}_queries", "DNS queries received.", labels=labels
            )
            queries.add_metric(ident, stats["queries"])
            yield queries
            responses = CounterMetricFamily(
                f"{PREFIX}_responses", "DNS responses sent, by rcode.", labels=[*labels, "rcode"]
            )
            for rcode, n in sorted(stats["responses"].items()):
                responses.add_metric([*ident, rcode], n)
            yield responses
        serial = GaugeMetricFamily(
            f"{PREFIX}_zone_serial", "The SOA serial served for the zone.", labels=["zone"]
        )
        served = dnsserver.served_serials(self.target, self.conf["zones"], timeout=1.0)
        for zone, value in sorted(served.items()):
            if value is not None:
                serial.add_metric([zone], value)
        yield serial
        missing = GaugeMetricFamily(
            f"{PREFIX}_zones_unanswered", "Zones of the platform the server does not answer for."
        )
        missing.add_metric([], sum(1 for v in served.values() if v is None))
        yield missing
        held = overlay.load_held(self.conf["held"]) or {}
        version = GaugeMetricFamily(
            f"{PREFIX}_rotation_version", "The rotation version this nameserver holds."
        )
        version.add_metric([], held.get("version", 0))
        yield version
        expiry = GaugeMetricFamily(
            "paphosting_dnssec_signature_expiry_seconds",
            "Seconds until the earliest signature of the signed zone expires.",
            labels=["zone"],
        )
        for zone, seconds in sorted(signature_expiry(self.conf.get("signed") or {}).items()):
            expiry.add_metric([zone], seconds)
        yield expiry


def signature_expiry(paths, now=None):
    """``{zone: seconds until its earliest signature expires}`` for the signed zone files
    ``{zone: path}``; a file that is missing or not signed is left out."""
    now = dnssec.now_epoch() if now is None else now
    out = {}
    for zone, path in paths.items():
        try:
            with open(path, encoding="utf-8") as fh:
                expires = dnssec.header(fh.readline()).get("expires", "")
        except OSError:
            continue
        if expires.isdigit():
            out[zone] = int(expires) - int(now)
    return out


# --- the exporter process ---------------------------------------------------------------------


def exporter_config(platform, ns_id, root="/", cachedir=None):
    """What the exporter of nameserver ``ns_id`` needs, as JSON data; None without a listener
    (``paphosting:metrics:nameservers``)."""
    listener = (platform.metrics or {}).get("nameservers", {}).get(ns_id)
    if listener is None:
        return None
    ns = platform.nameservers[ns_id]
    lay = dnsserver.layout(ns, root)
    conf = {
        "nameserver": ns_id,
        "server": ns.server,
        "listen": [listener.address, listener.port],
        "dns": [ns.address, ns.port],
        "zones": sorted(platform.zones),
        "signed": {
            z: dnsserver.zone_path(ns, z, root)
            for z in sorted(platform.zones)
            if platform.zones[z].dnssec
        },
        "held": overlay.held_path(cachedir or under(root, "/var/cache/salt/minion")),
    }
    if ns.server == "bind":
        conf["stats_url"] = (
            f"http://{dnsserver._loopback(ns.address)}:{listener.stats_port}/json/v1/server"
        )
    elif ns.server == "nsd":
        conf["stats_command"] = [
            dnsserver.binary("nsd-control"),
            "-c",
            lay["config"],
            "stats_noreset",
        ]
    else:
        conf["stats_command"] = [
            dnsserver.binary("knotc"),
            "-s",
            lay["control"]["socket"],
            "stats",
        ]
    return conf


def layout(root="/"):
    """Where the exporter's files live under ``root``."""
    return {
        "config": under(root, "/etc/paphosting/dns-exporter.json"),
        "pidfile": under(root, "/run/paphosting/dns-exporter.pid"),
        "log": under(root, "/var/log/paphosting/dns-exporter.log"),
        "unit": under(root, f"/etc/systemd/system/{UNIT}.service"),
    }


def _command(config_path):
    # The package as it sits on the minion (its extension modules), not an installed copy.
    return (sys.executable, "-m", "paphosting.dnsmetrics", config_path)


def _pythonpath():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def daemon(root="/"):
    """The :class:`~paphosting.daemon.Daemon` of the exporter in service mode ``process``."""
    lay = layout(root)
    return pdaemon.Daemon(
        name="paphosting DNS exporter",
        command=_command(lay["config"]),
        pidfile=lay["pidfile"],
        foreground=True,
        stop_signal=signal.SIGTERM,
        log=lay["log"],
        env={"PYTHONPATH": _pythonpath()},
    )


def systemd_unit(root="/"):
    """The systemd unit of the exporter (service mode ``systemd``)."""
    lay = layout(root)
    return "\n".join(
        [
            f"# {dnsserver.HEADER.format(name=UNIT)}",
            "[Unit]",
            "Description=paphosting: the nameserver's statistics for Prometheus",
            "After=network-online.target named.service nsd.service knot.service",
            "",
            "[Service]",
            f"Environment=PYTHONPATH={_pythonpath()}",
            f"ExecStart={' '.join(_command(lay['config']))}",
            "Restart=always",
            "RestartSec=5",
            "NoNewPrivileges=yes",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="paphosting.dnsmetrics", description=__doc__)
    parser.add_argument("config", help="the exporter's JSON config (dns_exporter.managed)")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as fh:
        conf = json.load(fh)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(conf))
    address, port = conf["listen"]
    server, _ = start_http_server(int(port), address, registry=registry)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"dnsmetrics: /metrics on {address}:{port} for {conf['nameserver']}", flush=True)
    done.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
