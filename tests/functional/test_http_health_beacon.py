"""The http_health beacon through Salt's real beacon machinery (salt.beacons.Beacon), no daemons.

Targets are plain HTTP servers on loopback addresses; reports are verified with the public half
of the key the beacon signs with, exactly as the masters do.
"""

import http.server
import threading

import pytest
import salt.beacons
import salt.crypt

from paphosting import health, model, overlay
from tests.conftest import example_pillar


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Site:
    """An HTTP server on its own loopback address that can answer 200, 503, or be stopped."""

    def __init__(self, address):
        self.address = address
        self.server = http.server.ThreadingHTTPServer((address, 0), _Handler)
        self.server.status = 200
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://{self.address}:{self.port}/haproxy-health"

    def stop(self):
        if self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.thread = None


@pytest.fixture
def sites(loopback):
    made = [Site(loopback.address()), Site(loopback.address())]
    yield made
    for s in made:
        s.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    salt.crypt.write_keys(str(d), "minion", 2048)
    return d


@pytest.fixture
def beacons(minion_opts, loaders, pki):
    opts = dict(minion_opts, pki_dir=str(pki))
    return lambda: salt.beacons.Beacon(opts, loaders.modules)


_counter = iter(range(10**6))


@pytest.fixture
def name():
    """A fresh beacon name per test: the watch registry is per (minion id, beacon name)."""
    return f"http_health_{next(_counter)}"


def conf(name, sites, **over):
    items = [
        {"beacon_module": "http_health"},
        {"targets": {f"lb{i + 1}": s.url for i, s in enumerate(sites)}},
        {"probe_interval": 0.001},  # probe on every call
        {"probe_timeout": 0.5},
        {"fall": 2},
        {"rise": 1},
        {"heartbeat": 3600},
    ]
    items += [{k: v} for k, v in over.items()]
    return {name: items}


def run(beacon, config):
    return beacon.process(config, {})


def verified(event, pki):
    data = event["data"]
    pub = (pki / "minion.pub").read_bytes()
    assert health.verify(data["report"], data["sig"], pub)
    return health.parse_report(data["report"])


def test_transition_and_heartbeat_events(beacons, sites, pki, minion_opts, name):
    b = beacons()
    config = conf(name, sites)
    sites[1].stop()
    (ev,) = run(b, config)
    assert ev["tag"] == f"salt/beacon/{minion_opts['id']}/{name}/transition"
    body = verified(ev, pki)
    assert body["watcher"] == minion_opts["id"] and body["kind"] == "transition"
    assert body["changed"] == ["lb1"]
    assert body["lbs"]["lb1"]["state"] == "up" and body["lbs"]["lb1"]["detail"] == "HTTP 200 OK"
    assert body["lbs"]["lb2"]["state"] == "unknown"
    (ev,) = run(b, config)
    body = verified(ev, pki)
    assert body["changed"] == ["lb2"] and body["lbs"]["lb2"]["state"] == "down"
    assert "ConnectionRefused" in body["lbs"]["lb2"]["detail"]
    seq = body["seq"]
    assert run(b, config) == []  # nothing changed, heartbeat not due
    sites[0].server.status = 503
    assert run(b, config) == []  # one failure, fall is 2
    (ev,) = run(b, config)
    body = verified(ev, pki)
    assert body["changed"] == ["lb1"] and body["lbs"]["lb1"]["state"] == "down"
    assert body["lbs"]["lb1"]["detail"].startswith("HTTP 503")
    assert body["seq"] == seq + 1


def test_probes_at_most_every_probe_interval(beacons, sites, pki, name):
    b = beacons()
    config = conf(name, sites, probe_interval=3600)
    (ev,) = run(b, config)
    assert verified(ev, pki)["changed"] == ["lb1", "lb2"]
    sites[0].stop()
    assert run(b, config) == [] and run(b, config) == []  # not probed again: nothing seen
    assert health.watch((b.opts["id"], name), 0).trackers["lb1"].bad == 0


def test_heartbeat_when_due(beacons, sites, pki, name):
    b = beacons()
    config = conf(name, sites, heartbeat=0.01)
    first = verified(run(b, config)[0], pki)
    assert first["kind"] == "transition"
    (ev,) = run(b, config)
    assert ev["tag"].endswith("/heartbeat")
    body = verified(ev, pki)
    assert body["kind"] == "heartbeat" and body["changed"] == [] and body["seq"] == first["seq"] + 1
    assert {v["state"] for v in body["lbs"].values()} == {"up"}


def test_state_survives_a_beacon_reload(beacons, sites, pki, name):
    """Salt rebuilds the beacon loader on every pillar refresh: the views must not start over."""
    config = conf(name, sites)
    first = verified(run(beacons(), config)[0], pki)
    assert run(beacons(), config) == []  # same views, no heartbeat due: nothing to send
    sites[0].server.status = 500
    run(beacons(), config)
    body = verified(run(beacons(), config)[0], pki)
    assert body["lbs"]["lb1"]["state"] == "down" and body["seq"] == first["seq"] + 1


def test_report_carries_the_held_rotation(minion_opts, loaders, pki, sites, name):
    published = {"version": 4, "rotations": {"http0.l.paphosting.nl": {"members": ["lb2", "lb1"]}}}
    opts = dict(minion_opts, pki_dir=str(pki), pillar={"paphosting_rotation": published})
    b = salt.beacons.Beacon(opts, loaders.modules)
    body = verified(run(b, conf(name, sites))[0], pki)
    assert body["rotation"] == {"version": 4, "digest": overlay.digest(published["rotations"])}


def test_signs_with_the_configured_key(beacons, sites, tmp_path, name):
    salt.crypt.write_keys(str(tmp_path), "other", 2048)
    (ev,) = run(beacons(), conf(name, sites, key=str(tmp_path / "other.pem")))
    assert health.verify(
        ev["data"]["report"], ev["data"]["sig"], (tmp_path / "other.pub").read_bytes()
    )


@pytest.mark.parametrize(
    "items, message",
    [
        ([{"targets": {}}], "'targets' must be"),
        ([{"targets": {"lb1": "ftp://x/"}}], "is not an http"),
        (
            [{"targets": {"lb1": "http://127.0.0.1/"}}, {"fall": 0}],
            "'fall' must be a positive integer",
        ),
        (
            [{"targets": {"lb1": "http://127.0.0.1/"}}, {"probe_timeout": "1"}],
            "'probe_timeout' must be",
        ),
        ([{"targets": {"lb1": "http://127.0.0.1/"}}, {"flap": {"window": 0}}], "'flap:window'"),
        ([{"targets": {"lb1": "http://127.0.0.1/"}}, {"flap": {"often": 1}}], "'flap' must be"),
        ([{"targets": {"lb1": "http://127.0.0.1/"}}, {"timeout": 1}], "unknown option"),
        ({"targets": {"lb1": "http://127.0.0.1/"}}, "must be a list"),
    ],
)
def test_validate_refuses(beacons, items, message):
    valid, comment = beacons().beacons["http_health.validate"](items)
    assert valid is False and message in comment


def test_invalid_config_is_not_run(beacons, name):
    assert (
        run(
            beacons(),
            {name: [{"beacon_module": "http_health"}, {"targets": {"lb1": "gopher://x"}}]},
        )
        == []
    )


def test_validate_accepts_the_watcher_configuration(beacons, set_pillar):
    pillar = example_pillar()
    loaders = set_pillar(pillar)
    assert loaders.modules.paphosting.watcher_beacon() is None  # this minion is not a watcher
    pillar["health"]["watchers"] = [loaders.opts["id"]]
    pillar["nameservers"][loaders.opts["id"]] = {"address": "127.0.3.9", "server": "bind"}
    config = set_pillar(pillar).modules.paphosting.watcher_beacon()
    assert config == health.beacon_config(model.parse(pillar), loaders.opts["id"])
    # A watcher that is a nameserver also asks its own DNS server what it hands out.
    assert config[0]["serves"]["server"] == "127.0.3.9@53"
    assert beacons().beacons["http_health.validate"](config) == (True, "valid")
