"""The peers' configuration (harness/peers.py), rendered from the platform pillar: what each
server serves and probes comes from the pillar, and each is tuned to ``paphosting:health`` as
closely as its options allow."""

import dataclasses

import pytest

from harness import peers
from paphosting import model
from tests.unit import platforms

ROT = "http0.l.paphosting.nl"


@pytest.fixture
def platform():
    return model.parse(platforms.pillar())


def test_gdnsd_config_probes_each_member_with_the_beacons_thresholds(platform):
    files = peers.gdnsd_files(platform, "127.0.6.1", 5353, "/srv/peers/gdnsd")
    assert sorted(files) == ["config", "zones/paphosting.nl"]
    config = files["config"]
    assert "listen => [ 127.0.6.1:5353 ]" in config
    assert 'run_dir => "/srv/peers/gdnsd/run"' in config
    for line in (
        "plugin => http_status",
        "port => 8080",
        'url_path => "/haproxy-health"',
        "interval => 2",
        "timeout => 1",
        "down_thresh => 3",
        "ok_thresh => 1",
        "up_thresh => 2",
        "rot_lb1_paphosting_net => 127.0.1.1",
        "rot_lb2_paphosting_net => 127.0.1.2",
        # min_members 1 of 2: ceil(0.25 x 2) = 1 member kept.
        "up_thresh => 0.250000",
    ):
        assert line in config


def test_pdns_config_enables_lua_records_and_checks_every_second(platform):
    files = peers.pdns_files(platform, "127.0.6.2", 5354, "/srv/peers/pdns")
    assert sorted(files) == ["named.conf", "pdns.conf", "zones/paphosting.nl.zone"]
    conf = files["pdns.conf"].splitlines()
    for line in (
        "launch=bind",
        "bind-config=/srv/peers/pdns/named.conf",
        "local-address=127.0.6.2",
        "local-port=5354",
        "enable-lua-records=yes",
        "lua-health-checks-interval=1",
        "cache-ttl=0",
    ):
        assert line in conf
    assert 'file "/srv/peers/pdns/zones/paphosting.nl.zone"' in files["named.conf"]


def test_both_serve_the_platform_zone_with_the_rotation_made_dynamic(platform):
    gdnsd = peers.gdnsd_files(platform, "127.0.6.1", 53, "/g")["zones/paphosting.nl"]
    pdns = peers.pdns_files(platform, "127.0.6.2", 53, "/p")["zones/paphosting.nl.zone"]
    lua = (
        "\"ifurlup('http://http0.l.paphosting.nl:8080/haproxy-health', "
        "{{'127.0.1.1', '127.0.1.2'}}, {selector='all', backupSelector='all', timeout='1'})\""
    )
    for text, dynamic in (
        (gdnsd, "300 IN DYNA multifo!rot_http0_l_paphosting_nl"),
        (pdns, f"300 IN LUA A {lua}"),
    ):
        lines = text.splitlines()
        # The rotation name and the apex (a service hostname) are dynamic, nothing else.
        assert f"{ROT}. {dynamic}" in lines
        assert f"paphosting.nl. {dynamic}" in lines
        assert not [line for line in lines if " IN A " in line and "127.0.1." in line]
        # The rest of the zone is the platform's own.
        assert "www     3600 IN CNAME  http0.l.paphosting.nl." in lines
        assert "mail    3600 IN A      127.0.2.3" in lines
        assert any(" IN SOA " in line and "hostmaster.paphosting.nl." in line for line in lines)


def test_the_pillar_decides_what_is_served_and_probed():
    pillar = platforms.pillar()
    pillar["loadbalancers"]["lb2.paphosting.net"]["address"] = "127.0.1.9"
    pillar["haproxy"] = {"http_port": 8181, "health_path": "/up"}
    pillar["rotations"][ROT]["ttl"] = 60
    platform = model.parse(pillar)
    config = peers.gdnsd_files(platform, "127.0.6.1", 53, "/g")["config"]
    assert "rot_lb2_paphosting_net => 127.0.1.9" in config
    assert "port => 8181" in config and 'url_path => "/up"' in config
    zone = peers.pdns_files(platform, "127.0.6.2", 53, "/p")["zones/paphosting.nl.zone"]
    assert f"{ROT}. 60 IN LUA A \"ifurlup('http://{ROT}:8181/up', " in zone
    assert "'127.0.1.9'" in zone


def test_members_probed_on_different_ports_are_refused_naming_the_pillar_path(platform):
    lb2 = platform.loadbalancers["lb2.paphosting.net"]
    platform.loadbalancers["lb2.paphosting.net"] = dataclasses.replace(lb2, http_port=9090)
    with pytest.raises(peers.PeerError, match=f"paphosting:rotations:{ROT}:members"):
        peers.gdnsd_files(platform, "127.0.6.1", 53, "/g")


def test_tunings_say_where_they_differ_from_the_beacons(platform):
    health = platform.health  # interval 1 s, timeout 0.5 s, fall 3, rise 2
    g = peers.gdnsd_tuning(health)
    assert (g.interval, g.timeout, g.down_after, g.up_after) == (2, 1, 3, 2)
    assert (g.failover_floor, g.recovery_floor) == (6, 4)
    assert any("interval below 2 s" in n for n in g.notes)
    p = peers.pdns_tuning(health)
    assert (p.interval, p.timeout, p.down_after, p.up_after) == (1, 1, 1, 1)
    assert (p.failover_floor, p.recovery_floor) == (1, 1)
    assert any("minimumFailures" in n for n in p.notes)
    same = dataclasses.replace(health, interval=2.0, timeout=1.0)
    assert peers.gdnsd_tuning(same).notes == ()


def test_multifo_keeps_min_members_like_the_failover():
    pillar = platforms.pillar()
    pillar["loadbalancers"]["lb3.paphosting.net"] = {"address": "127.0.1.3"}
    pillar["rotations"][ROT]["members"].append("lb3.paphosting.net")
    pillar["rotations"][ROT]["min_members"] = 2
    config = peers.gdnsd_files(model.parse(pillar), "127.0.6.1", 53, "/g")["config"]
    # gdnsd keeps the addresses up while ceil(up_thresh x 3) = 2 are, else answers all three.
    assert "up_thresh => 0.500000" in config
