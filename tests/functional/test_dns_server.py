"""The dns_server config state and checkers through Salt's loaders; one real NSD for ``running``."""

import shutil
import stat

import pytest

from paphosting import daemon as pdaemon
from paphosting import dnsserver, model
from paphosting.errors import CheckFailed
from tests.conftest import example_pillar, require_binary

CONFIG = {"bind": "etc/bind/named.conf", "nsd": "etc/nsd/nsd.conf", "knot": "etc/knot/knot.conf"}


def server_pillar(ns_id, server):
    pillar = example_pillar()
    pillar.pop("metrics")  # the exporters of the example's own servers
    pillar["nameservers"] = {ns_id: {"address": "127.0.0.1", "port": 5399, "server": server}}
    if server == "bind":  # rndc's port; NSD and Knot are controlled through a local socket
        pillar["nameservers"][ns_id]["control_port"] = 5398
    pillar["health"]["watchers"] = [ns_id]
    return pillar


@pytest.fixture(autouse=True)
def clean_root(minion_root):
    for child in minion_root.iterdir():
        shutil.rmtree(child)
    yield


# The key file each server's config includes (made once, never shown).
KEYS = {"bind": "etc/bind/rndc.key", "knot": "etc/knot/paphosting-update.key"}


@pytest.mark.parametrize("test", [True, False])
@pytest.mark.parametrize("server", ["bind", "nsd", "knot"])
def test_managed_writes_a_checked_config_once(set_pillar, loaders, minion_root, server, test):
    require_binary(dnsserver.CHECKCONF[server])
    ns_id = loaders.opts["id"]
    loaders = set_pillar(server_pillar(ns_id, server))
    config = minion_root / CONFIG[server]
    ret = loaders.states.dns_server.managed(name=ns_id, test=test)
    assert ret.result is (None if test else True), ret.comment
    assert f"+++ {config}" in ret.changes["diff"]
    if server in KEYS:
        assert ret.changes["key"] == {"old": None, "new": str(minion_root / KEYS[server])}
        assert "secret" not in ret.changes["diff"]
    else:
        assert "key" not in ret.changes
    if test:
        assert not config.exists()
        return
    text = config.read_text()
    assert text == loaders.modules.dns_server.render()
    assert "127.0.0.1" in text and "5399" in text
    again = loaders.states.dns_server.managed(name=ns_id)
    assert again.result is True and again.changes == {}
    assert again.comment == "DNS server config is up to date"
    if server in KEYS:
        key = minion_root / KEYS[server]
        assert stat.S_IMODE(key.stat().st_mode) == 0o640
    if server == "bind":
        assert "default-port 5398;" in (minion_root / "etc/bind/rndc.conf").read_text()


@pytest.mark.parametrize("server", ["bind", "nsd", "knot"])
def test_a_pillar_change_shows_a_diff(set_pillar, loaders, minion_root, server):
    ns_id = loaders.opts["id"]
    loaders = set_pillar(server_pillar(ns_id, server))
    assert loaders.states.dns_server.managed(name=ns_id).result is True
    pillar = server_pillar(ns_id, server)
    pillar["zones"]["paphosting.net"] = {}
    loaders = set_pillar(pillar)
    ret = loaders.states.dns_server.managed(name=ns_id)
    assert ret.result is True
    assert "paphosting.net" in "".join(
        line for line in ret.changes["diff"].splitlines() if line.startswith("+")
    )
    assert "key" not in ret.changes


def test_invalid_pillar_writes_no_config(set_pillar, loaders, minion_root):
    ns_id = loaders.opts["id"]
    pillar = server_pillar(ns_id, "nsd")
    pillar["nameservers"][ns_id]["port"] = 70000
    loaders = set_pillar(pillar)
    ret = loaders.states.dns_server.managed(name=ns_id)
    assert ret.result is False
    assert (
        f"pillar paphosting:nameservers:{ns_id}:port: 70000 is out of range 1..65535" in ret.comment
    )
    assert list(minion_root.iterdir()) == []


def test_check_and_info(set_pillar, loaders, minion_root):
    ns_id = loaders.opts["id"]
    loaders = set_pillar(server_pillar(ns_id, "bind"))
    assert loaders.modules.dns_server.check() is True
    info = loaders.modules.dns_server.info()
    assert info["server"] == "bind" and info["mode"] == "process" and info["unit"] == "named"
    assert info["config"] == str(minion_root / CONFIG["bind"])
    status = loaders.modules.dns_server.status()
    assert status == {
        "running": False,
        "pid": None,
        "mode": "process",
        "server": "bind",
        "answering": False,
    }


@pytest.mark.parametrize("server", ["bind", "nsd", "knot"])
def test_the_real_checkers_reject_a_broken_config(tmp_path, server):
    with pytest.raises(CheckFailed) as info:
        dnsserver.check_config_text(server, "this is { not a config\n")
    assert (
        info.value.tool
        == {"bind": "named-checkconf", "nsd": "nsd-checkconf", "knot": "knotc conf-check"}[server]
    )


@pytest.mark.parametrize("server", ["bind", "nsd", "knot"])
def test_the_real_zone_checkers_reject_a_broken_zone(server):
    text = "$ORIGIN t.test.\n@ 300 IN SOA ns.t.test. h.t.test. 1 2 3 4 5\n@ 300 IN NS ns.t.test.\nwww 300 IN A 1.2.3\n"
    with pytest.raises(CheckFailed) as info:
        dnsserver.check_zone_text(server, "t.test", text)
    assert info.value.tool == dnsserver.CHECKZONE[server]
    assert info.value.output


WATCHING_MANAGED = """
paphosting-test-trigger:
  test.succeed_with_changes: []

nameserver-config:
  dns_server.managed:
    - name: {ns_id}
    - watch:
      - test: paphosting-test-trigger
"""


@pytest.mark.parametrize("test", [True, False])
def test_a_watch_on_managed_fails_and_starts_nothing(set_pillar, loaders, minion_root, test):
    ns_id = loaders.opts["id"]
    loaders = set_pillar(server_pillar(ns_id, "nsd"))
    assert loaders.states.dns_server.managed(name=ns_id).result is True
    ret = loaders.modules.state.template_str(WATCHING_MANAGED.format(ns_id=ns_id), test=test)
    config = ret["nameserver-config"]
    # A watch the state cannot trigger is a mistake in the SLS: said, never silently passed.
    assert config.result is False
    assert config.changes == {}
    assert config.comment == (
        "dns_server.managed does not react to watch: nothing was reloaded "
        "(put the watch on dns_server.running)"
    )
    assert loaders.modules.dns_server.status()["running"] is False


# --- running in systemd mode: enabling the unit is part of the state -----------------------------


@pytest.fixture
def nsd_in_systemd_mode(set_pillar, loaders, minion_root, loopback, systemd_standin):
    """NSD running for real (started in mode ``process``), then the pillar switched to mode
    ``systemd`` with ``tests/functional/standin/service.py`` as systemd. Yields
    ``(loaders, ns_id, systemd)`` (``systemd``: see the ``systemd_standin`` fixture)."""
    require_binary("nsd")
    ns_id = loaders.opts["id"]
    pillar = server_pillar(ns_id, "nsd")
    pillar["nameservers"][ns_id]["port"] = loopback.udp_tcp_port("127.0.0.1")
    loaders = set_pillar(pillar)
    assert loaders.states.dns_server.managed(name=ns_id).result is True
    server = dnsserver.daemon(model.parse(pillar).nameservers[ns_id], str(minion_root))
    try:
        started = loaders.states.dns_server.running(name=ns_id)
        assert started.result is True, started.comment
        pillar["settings"]["service_mode"] = "systemd"
        set_pillar(pillar)
        standin, systemd = systemd_standin(server.pidfile)
        yield standin, ns_id, systemd
    finally:
        pdaemon.stop(server)


@pytest.mark.parametrize("test", [True, False])
def test_running_enables_the_unit_at_boot(nsd_in_systemd_mode, test):
    loaders, ns_id, systemd = nsd_in_systemd_mode
    ret = loaders.states.dns_server.running(name=ns_id, test=test)
    assert ret.changes == {"enabled": {"old": False, "new": True}}
    if test:
        assert ret.result is None and ret.comment == "nsd would be enabled at boot"
        assert systemd() == {**systemd(), "enabled": False, "calls": []}
        return
    assert ret.result is True and ret.comment == "nsd is running; nsd enabled at boot"
    assert systemd()["calls"] == [["enable", "nsd"]]
    again = loaders.states.dns_server.running(name=ns_id)
    assert again.result is True and again.changes == {} and again.comment == "nsd is running"
    assert systemd()["calls"] == [["enable", "nsd"]]


@pytest.mark.parametrize("test", [True, False])
def test_running_fails_when_the_unit_cannot_be_enabled(nsd_in_systemd_mode, test):
    loaders, ns_id, systemd = nsd_in_systemd_mode
    systemd(enable_works=False)
    ret = loaders.states.dns_server.running(name=ns_id, test=test)
    if test:
        # Test mode cannot know that systemctl will refuse: it predicts the change.
        assert ret.result is None and ret.changes == {"enabled": {"old": False, "new": True}}
        assert systemd()["calls"] == []
        return
    assert ret.result is False
    assert ret.changes == {}
    assert ret.comment == "nsd is running, but systemctl enable nsd failed"
    again = loaders.states.dns_server.running(name=ns_id)
    assert again.result is False and again.changes == {}
    assert systemd()["calls"] == [["enable", "nsd"], ["enable", "nsd"]]
