"""A nameserver's statistics under common metric names, whatever its server."""

import json
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from paphosting import dnsmetrics, dnsserver, model, overlay
from tests.unit import platforms

# As the servers print them (BIND 9.18, Knot 3.2 with mod-stats, NSD 4.6), trimmed.
BIND = {
    "opcodes": {"QUERY": 8, "NOTIFY": 0},
    "rcodes": {"NOERROR": 2, "SERVFAIL": 0, "REFUSED": 6},
    "nsstats": {"Requestv4": 8},
}
KNOT = """server.zone-count = 1
mod-stats.request-protocol[udp4] = 10
mod-stats.server-operation[query] = 10
mod-stats.request-bytes[query] = 268
mod-stats.response-code[NOERROR] = 1
mod-stats.response-code[SERVFAIL] = 6
mod-stats.response-code[REFUSED] = 3
"""
NSD = """server0.queries=10
num.queries=10
time.boot=48.722774
num.type.SOA=10
num.opcode.QUERY=10
num.rcode.NOERROR=7
num.rcode.FORMERR=0
num.rcode.REFUSED=3
"""


@pytest.mark.parametrize(
    ("parse", "data", "want"),
    [
        (dnsmetrics.parse_bind, BIND, {"queries": 8, "responses": {"NOERROR": 2, "REFUSED": 6}}),
        (
            dnsmetrics.parse_knot,
            KNOT,
            {"queries": 10, "responses": {"NOERROR": 1, "SERVFAIL": 6, "REFUSED": 3}},
        ),
        (dnsmetrics.parse_nsd, NSD, {"queries": 10, "responses": {"NOERROR": 7, "REFUSED": 3}}),
    ],
)
def test_each_server_in_common_terms(parse, data, want):
    assert parse(data) == want


def test_bind_without_json_is_an_error():
    with pytest.raises(dnsmetrics.StatsError):
        dnsmetrics.parse_bind(["not", "a", "document"])


@pytest.fixture
def platform():
    return model.parse(platforms.pillar(servers=platforms.EVERY_SERVER, metrics=True))


def test_exporter_config_per_server(platform, tmp_path):
    root = str(tmp_path)
    bind = dnsmetrics.exporter_config(platform, "ns1.paphosting.net", root, "/cache")
    assert bind["stats_url"] == "http://127.0.0.1:8053/json/v1/server"
    assert bind["listen"] == ["127.0.6.1", 9119] and bind["dns"] == ["127.0.0.1", 5300]
    assert bind["zones"] == ["paphosting.nl"]
    assert bind["held"] == "/cache/paphosting/rotation_held.json"
    nsd = dnsmetrics.exporter_config(platform, "ns2.paphosting.net", root)
    assert nsd["stats_command"][-1] == "stats_noreset"
    knot = dnsmetrics.exporter_config(platform, "ns3.paphosting.net", root)
    assert knot["stats_command"][-2:] == [f"{root}/run/knot/knot.sock", "stats"]
    json.dumps(knot)


def test_server_configs_enable_the_statistics(platform, tmp_path):
    bind = dnsserver.render_config(platform, "ns1.paphosting.net", str(tmp_path))
    assert "statistics-channels {\n\tinet 127.0.0.1 port 8053 allow { 127.0.0.1; };" in bind
    knot = dnsserver.render_config(platform, "ns3.paphosting.net", str(tmp_path))
    assert "  - id: default\n    global-module: mod-stats\n" in knot


def test_no_listener_no_exporter_and_no_statistics(tmp_path):
    pillar = platforms.pillar(servers=platforms.EVERY_SERVER, metrics=True)
    del pillar["metrics"]
    platform = model.parse(pillar)
    assert dnsmetrics.exporter_config(platform, "ns1.paphosting.net", str(tmp_path)) is None
    assert "statistics-channels" not in dnsserver.render_config(platform, "ns1.paphosting.net")
    assert "mod-stats" not in dnsserver.render_config(platform, "ns3.paphosting.net")


def test_collector_reads_stats_serials_and_held_version(platform, tmp_path, monkeypatch):
    held = tmp_path / "held.json"
    held.write_text(json.dumps({"version": 7, "digest": overlay.digest({}), "rotations": {}}))
    conf = dnsmetrics.exporter_config(platform, "ns2.paphosting.net", str(tmp_path))
    conf["held"] = str(held)
    monkeypatch.setattr(dnsmetrics, "read_stats", lambda c: dnsmetrics.parse_nsd(NSD))
    monkeypatch.setattr(
        dnsserver, "served_serials", lambda ns, zones, timeout: dict.fromkeys(zones, 2026120401)
    )
    text = "".join(
        f"{s.name}{s.labels} {s.value}\n"
        for f in dnsmetrics.Collector(conf).collect()
        for s in f.samples
    )
    assert "paphosting_dns_up{'software': 'nsd'} 1" in text
    assert "paphosting_dns_queries_total" in text and "'rcode': 'REFUSED'" in text
    assert "paphosting_dns_zone_serial{'zone': 'paphosting.nl'} 2026120401" in text
    assert "paphosting_dns_rotation_version{} 7" in text


def test_systemd_unit_runs_the_exporter():
    unit = dnsmetrics.systemd_unit("/")
    assert (
        "ExecStart=" in unit
        and "-m paphosting.dnsmetrics /etc/paphosting/dns-exporter.json" in unit
    )
    assert "[Install]" in unit


def test_exposition_parses():
    # The collector's families go through prometheus_client's own writer and parser unchanged.
    fam = list(text_string_to_metric_families("paphosting_dns_queries_total 3\n"))
    assert fam[0].samples[0].value == 3


def test_the_collector_reports_how_long_until_a_signed_zone_expires(tmp_path, monkeypatch):
    from paphosting import dnssec, zone  # noqa: PLC0415

    pillar = platforms.pillar(servers=platforms.EVERY_SERVER, metrics=True)
    pillar["zones"]["paphosting.nl"]["dnssec"] = True
    platform = model.parse(pillar)
    conf = dnsmetrics.exporter_config(platform, "ns2.paphosting.net", str(tmp_path))
    path = conf["signed"]["paphosting.nl"]
    now = dnssec.now_epoch()
    text = zone.Renderer(platform).render("paphosting.nl", 2026120400)
    signed = dnssec.sign(
        text, "paphosting.nl", dnssec.initial_keyset("paphosting.nl", now), now, dnssec.Policy()
    )
    os.makedirs(os.path.dirname(path))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(signed.text)
    expires = int(dnssec.header(signed.text)["expires"])
    assert dnsmetrics.signature_expiry(conf["signed"], now) == {"paphosting.nl": expires - now}
    assert dnsmetrics.signature_expiry({"x.nl": str(tmp_path / "missing")}, now) == {}
    monkeypatch.setattr(dnsmetrics, "read_stats", lambda c: dnsmetrics.parse_nsd(NSD))
    monkeypatch.setattr(dnsserver, "served_serials", lambda ns, zones, timeout: {})
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for f in dnsmetrics.Collector(conf).collect()
        for s in f.samples
    }
    seconds = samples[("paphosting_dnssec_signature_expiry_seconds", (("zone", "paphosting.nl"),))]
    assert 13 * 86400 < seconds <= 14 * 86400
