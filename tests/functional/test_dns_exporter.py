"""The nameserver's exporter through Salt's loaders: written, started with a pidfile, honest under
test=True, idempotent, stopped when the pillar gives it no listener. The server itself does not
run here: the exporter answers with ``paphosting_dns_up 0``."""

import shutil
import subprocess
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


# --- service mode systemd: enabling the unit at boot is part of the state ------------------------


@pytest.fixture
def exporter_in_systemd_mode(set_pillar, loaders, loopback, tmp_path, systemd_standin):
    """The pillar in service mode ``systemd`` with ``tests/functional/standin/service.py`` as
    systemd; the exporter's unit is "active" while a stand-in process runs. Yields ``(loaders,
    ns_id, systemd)`` (``systemd``: see the ``systemd_standin`` fixture)."""
    ns_id = loaders.opts["id"]
    pillar = exporter_pillar(ns_id, loopback)
    pillar["settings"]["service_mode"] = "systemd"
    set_pillar(pillar)
    active = subprocess.Popen(["sleep", "600"])
    try:
        pidfile = tmp_path / "exporter.pid"
        pidfile.write_text(f"{active.pid}\n")
        standin, systemd = systemd_standin(pidfile)
        yield standin, ns_id, systemd
    finally:
        active.kill()
        active.wait()


@pytest.mark.parametrize("test", [True, False])
def test_running_enables_the_unit_at_boot(exporter_in_systemd_mode, minion_root, test):
    loaders, ns_id, systemd = exporter_in_systemd_mode
    ret = loaders.states.dns_exporter.running(name=ns_id, test=test)
    assert ret.changes["enabled"] == {"old": False, "new": True}
    if test:
        assert ret.result is None, ret.comment
        assert systemd()["calls"] == [] and not systemd()["enabled"]
        return
    assert ret.result is True, ret.comment
    assert systemd()["enabled"] and ["enable", "paphosting-dns-exporter"] in systemd()["calls"]
    again = loaders.states.dns_exporter.running(name=ns_id)
    assert again.result is True and again.changes == {}, again.comment


@pytest.mark.parametrize("test", [True, False])
def test_running_fails_when_the_unit_cannot_be_enabled(exporter_in_systemd_mode, test):
    loaders, ns_id, systemd = exporter_in_systemd_mode
    systemd(enable_works=False)
    ret = loaders.states.dns_exporter.running(name=ns_id, test=test)
    if test:
        # Test mode cannot know that systemctl will refuse: it predicts the change.
        assert ret.result is None and ret.changes["enabled"] == {"old": False, "new": True}
        assert systemd()["calls"] == []
        return
    assert ret.result is False
    assert ret.comment == "systemctl enable paphosting-dns-exporter failed"
    assert not systemd()["enabled"]
    again = loaders.states.dns_exporter.running(name=ns_id)
    assert again.result is False and again.changes == {}
    assert again.comment == "systemctl enable paphosting-dns-exporter failed"
