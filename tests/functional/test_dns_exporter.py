"""The nameserver's exporter through Salt's loaders: written, started with a pidfile, honest under
test=True, idempotent, stopped when the pillar gives it no listener. The server itself does not
run here: the exporter answers with ``paphosting_dns_up 0``."""

import shutil
import urllib.request

import pytest

from harness.wait import wait_until
from paphosting import daemon as pdaemon
from paphosting import dnsmetrics
from tests.conftest import example_pillar


@pytest.fixture(autouse=True)
def clean_root(minion_root):
    for child in minion_root.iterdir():
        shutil.rmtree(child)
    yield
    pdaemon.stop(dnsmetrics.daemon(str(minion_root)))


def exporter_pillar(ns_id, loopback, listen=True):
    pillar = example_pillar()
    address = loopback.address()
    pillar["nameservers"] = {
        ns_id: {"address": address, "port": loopback.udp_tcp_port(address), "server": "nsd"}
    }
    pillar["health"]["watchers"] = [ns_id]
    pillar["metrics"] = {"nameservers": {}}
    if listen:
        metrics_address = loopback.address()
        pillar["metrics"]["nameservers"][ns_id] = {
            "address": metrics_address,
            "port": loopback.port(metrics_address),
        }
    return pillar


def scrape(listener):
    url = f"http://{listener['address']}:{listener['port']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


@pytest.mark.parametrize("test", [True, False])
def test_running_starts_the_exporter_once(set_pillar, loaders, minion_root, loopback, test):
    ns_id = loaders.opts["id"]
    pillar = exporter_pillar(ns_id, loopback)
    loaders = set_pillar(pillar)
    config = minion_root / "etc/paphosting/dns-exporter.json"
    ret = loaders.states.dns_exporter.running(name=ns_id, test=test)
    assert ret.result is (None if test else True), ret.comment
    assert f"+++ {config}" in ret.changes["diff"]
    assert ret.changes["service"] == {"old": "stopped", "new": "running"}
    if test:
        assert not config.exists()
        assert not loaders.modules.dns_exporter.status()["running"]
        return
    listener = pillar["metrics"]["nameservers"][ns_id]
    text = wait_until(lambda: scrape(listener), timeout=15, message="the exporter to answer")
    assert 'paphosting_dns_up{software="nsd"} 0.0' in text
    assert "paphosting_dns_zones_unanswered 1.0" in text
    again = loaders.states.dns_exporter.running(name=ns_id)
    assert again.result is True and again.changes == {}, again.comment


def test_no_listener_stops_it(set_pillar, loaders, loopback):
    ns_id = loaders.opts["id"]
    loaders = set_pillar(exporter_pillar(ns_id, loopback))
    assert loaders.states.dns_exporter.running(name=ns_id).result is True
    loaders = set_pillar(exporter_pillar(ns_id, loopback, listen=False))
    ret = loaders.states.dns_exporter.running(name=ns_id)
    assert ret.result is True and ret.changes == {"service": {"old": "running", "new": "stopped"}}
    assert not loaders.modules.dns_exporter.status()["running"]
    again = loaders.states.dns_exporter.running(name=ns_id)
    assert again.changes == {} and "no exporter configured" in again.comment
