"""One watcher's view of the load balancers: fall/rise, flap damping, probes, signed reports."""

import http.server
import json
import socket
import threading

import pytest

from paphosting import health, model
from tests.conftest import rsa_key_pair
from tests.unit import platforms

FAST = health.Settings(fall=3, rise=2, flap_window=60, flap_max_transitions=3, flap_hold=10)


def feed(tracker, results, start=0.0, step=1.0):
    """Feed a string of probe results ('+' ok, '-' failed); return the reported states."""
    out = []
    for i, r in enumerate(results):
        tracker.observe(r == "+", "ok" if r == "+" else "refused", start + i * step)
        out.append(tracker.state)
    return out


def test_unknown_until_rise_or_fall():
    t = health.Tracker(FAST)
    assert feed(t, "+") == ["unknown"]
    assert feed(t, "+", start=1) == ["up"]
    t = health.Tracker(FAST)
    assert feed(t, "---") == ["unknown", "unknown", "down"]


def test_fall_needs_consecutive_failures():
    t = health.Tracker(FAST)
    feed(t, "++")
    assert feed(t, "--+--+", start=2) == ["up"] * 6
    assert feed(t, "---", start=8) == ["up", "up", "down"]
    assert t.since == 10
    assert t.detail == "refused"


def test_rise_needs_consecutive_successes():
    t = health.Tracker(FAST)
    feed(t, "---")
    assert feed(t, "+-+-", start=3) == ["down"] * 4
    assert feed(t, "++", start=7) == ["down", "up"]


def test_observe_returns_true_only_on_a_reported_change():
    t = health.Tracker(FAST)
    changes = [t.observe(True, "", float(i)) for i in range(4)]
    assert changes == [False, True, False, False]


def test_first_verdict_is_not_a_flap():
    t = health.Tracker(
        health.Settings(fall=1, rise=1, flap_window=60, flap_max_transitions=2, flap_hold=10)
    )
    feed(t, "+-+")  # unknown->up is the first verdict; then two switches: not more than 2
    assert not t.held


def test_a_load_balancer_coming_up_for_the_first_time_is_not_a_flap():
    t = health.Tracker(
        health.Settings(fall=1, rise=1, flap_window=60, flap_max_transitions=2, flap_hold=10)
    )
    # Down while the platform starts (its haproxy not yet running), then up, then two switches:
    # the first up is the load balancer's start; two switches are not more than 2.
    assert feed(t, "-+-+") == ["down", "up", "down", "up"]
    assert not t.held
    assert feed(t, "-", start=4) == ["down"]  # a third switch: more than 2
    assert t.held


def test_flapping_is_held_down_until_stable_for_hold():
    s = health.Settings(fall=1, rise=1, flap_window=60, flap_max_transitions=3, flap_hold=10)
    t = health.Tracker(s)
    states = feed(t, "+-+-+", start=0)  # 4 switches within the window: more than 3
    assert states[-1] == "down"
    assert t.held and t.view()["flapping"] is True
    # Stable up, but not yet for 10 s: still reported down.
    assert feed(t, "+" * 9, start=5) == ["down"] * 9
    # 10 s after the last switch (t=4): released.
    assert t.observe(True, "ok", 14.0) is True
    assert t.state == "up" and not t.held and t.since == 14.0


def test_flapping_not_released_while_down():
    s = health.Settings(fall=1, rise=1, flap_window=60, flap_max_transitions=3, flap_hold=5)
    t = health.Tracker(s)
    feed(t, "+-+-+-", start=0)
    assert feed(t, "-" * 20, start=6) == ["down"] * 20
    assert t.held


def test_hold_longer_than_window_still_releases():
    s = health.Settings(fall=1, rise=1, flap_window=5, flap_max_transitions=2, flap_hold=20)
    t = health.Tracker(s)
    feed(t, "+-+-", start=0)
    assert t.held
    feed(t, "+" * 10, start=4, step=2)  # last switch at t=4; window long past
    assert t.held  # t=22: 18 s since the switch
    t.observe(True, "ok", 24.0)
    assert not t.held and t.state == "up"


def test_switches_outside_the_window_do_not_count():
    s = health.Settings(fall=1, rise=1, flap_window=10, flap_max_transitions=3, flap_hold=5)
    t = health.Tracker(s)
    feed(t, "+-+-+-+", start=0, step=6)  # a switch every 6 s: at most 2 in any 10 s
    assert not t.held and t.state == "up"


def test_watch_keeps_trackers_across_configure():
    w = health.Watch(seq_start=100)
    targets = {"lb1": "http://127.0.0.1:1/", "lb2": "http://127.0.0.1:2/"}
    w.configure(targets, FAST)
    assert w.observe({"lb1": (True, ""), "lb2": (False, "")}, 0) == []
    assert w.observe({"lb1": (True, ""), "lb2": (False, "")}, 1) == ["lb1"]
    w.configure(dict(targets), FAST)
    assert w.trackers["lb1"].state == "up"
    w.configure({"lb1": "http://127.0.0.1:9/", "lb2": targets["lb2"]}, FAST)
    assert w.trackers["lb1"].state == "unknown"
    assert w.trackers["lb2"].bad == 2
    w.configure({"lb2": targets["lb2"]}, health.Settings(fall=5))
    assert list(w.trackers) == ["lb2"] and w.trackers["lb2"].bad == 0


def test_watch_reports_transitions_and_heartbeats():
    w = health.Watch(seq_start=100)
    w.configure({"lb1": "http://x/"}, FAST)
    assert w.due([], 0.0, heartbeat=5) == "heartbeat"  # the first run announces the watcher
    text = w.report("ns1", "heartbeat", [], 0.0)
    assert w.due([], 4.9, heartbeat=5) is None
    assert w.due(["lb1"], 4.9, heartbeat=5) == "transition"
    assert w.due([], 5.0, heartbeat=5) == "heartbeat"
    body = health.parse_report(text)
    assert (
        body["seq"] == 101 and body["watcher"] == "ns1" and body["lbs"]["lb1"]["state"] == "unknown"
    )
    assert health.parse_report(w.report("ns1", "transition", ["lb1"], 1.0))["seq"] == 102


def test_probe_due_keeps_its_own_clock():
    w = health.Watch(0)
    assert w.probe_due(10.0, 1.0) is True
    assert w.probe_due(10.5, 1.0) is False
    assert w.probe_due(10.95, 1.0) is True  # a tick that comes a little early still probes
    assert w.probe_due(11.5, 5.0) is False
    assert w.probe_due(15.5, 5.0) is True


def test_watch_registry_is_per_key_and_persistent():
    a = health.watch(("test-registry", "one"), 10.0)
    assert health.watch(("test-registry", "one"), 99.0) is a
    assert a.seq == 10_000_000
    assert health.watch(("test-registry", "two"), 11.0) is not a


# ------------------------------------------------------------------ probes against real sockets


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        code = self.server.status
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(loopback):
    addr = loopback.address()
    server = http.server.ThreadingHTTPServer((addr, 0), _Handler)
    server.status = 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _url(server, path="/health"):
    host, port = server.server_address
    return f"http://{host}:{port}{path}"


def test_probe_ok_and_failed_status(http_server):
    assert health.probe(_url(http_server), 2) == (True, "HTTP 200 OK")
    http_server.status = 503
    ok, detail = health.probe(_url(http_server), 2)
    assert not ok and detail.startswith("HTTP 503")


def test_probe_refused(loopback):
    addr = loopback.address()
    port = loopback.port(addr)
    ok, detail = health.probe(f"http://{addr}:{port}/", 1)
    assert not ok and "ConnectionRefused" in detail


def test_probe_times_out_on_a_silent_server(loopback):
    addr = loopback.address()
    with socket.socket() as s:
        s.bind((addr, 0))
        s.listen(1)  # accepts the connection, never answers
        ok, detail = health.probe(f"http://{addr}:{s.getsockname()[1]}/", 0.2)
    assert not ok and "timed out" in detail


def test_probe_all_probes_every_target(http_server, loopback):
    addr = loopback.address()
    w = health.Watch(0)
    w.configure({"good": _url(http_server), "dead": f"http://{addr}:{loopback.port(addr)}/"}, FAST)
    results = w.probe_all(1)
    assert results["good"][0] is True and results["dead"][0] is False


# ------------------------------------------------------------------ reports and signatures


@pytest.fixture(scope="module")
def keys():
    return rsa_key_pair(), rsa_key_pair()


def _text(**over):
    body = dict(
        watcher="ns1",
        seq=1,
        ts=100.0,
        kind="heartbeat",
        views={"lb1": {"state": "up", "flapping": False, "since": 99.0, "detail": "HTTP 200 OK"}},
    )
    body.update(over)
    return health.report_text(**body)


def test_sign_and_verify(keys):
    (priv, pub), (_, other_pub) = keys
    text = _text()
    sig = health.sign(text, priv)
    assert health.verify(text, sig, pub)
    assert not health.verify(text.replace('"up"', '"down"'), sig, pub)
    assert not health.verify(text, sig, other_pub)
    assert not health.verify(text, "not base64!", pub)
    assert not health.verify(text, "", pub)
    assert not health.verify(None, sig, pub)


def test_report_text_is_canonical():
    a = _text(
        views={
            "b": {"state": "up", "flapping": False, "since": None, "detail": ""},
            "a": {"state": "down", "flapping": True, "since": 1.0, "detail": "x"},
        },
        changed=["b", "a"],
    )
    body = json.loads(a)
    assert list(body["lbs"]) == ["a", "b"] and body["changed"] == ["a", "b"]
    assert a == json.dumps(body, sort_keys=True, separators=(",", ":"))
    with pytest.raises(ValueError):
        _text(kind="gossip")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: "not json", "not JSON"),
        (lambda b: json.dumps([1]), "format"),
        (lambda b: json.dumps(dict(b, format=2)), "format"),
        (lambda b: json.dumps(dict(b, watcher="")), "no watcher"),
        (lambda b: json.dumps(dict(b, seq=-1)), "sequence"),
        (lambda b: json.dumps(dict(b, seq=True)), "sequence"),
        (lambda b: json.dumps(dict(b, ts="now")), "timestamp"),
        (lambda b: json.dumps(dict(b, kind="gossip")), "kind"),
        (lambda b: json.dumps(dict(b, lbs=[])), "views"),
        (
            lambda b: json.dumps(dict(b, lbs={"lb1": {"state": "sideways", "flapping": False}})),
            "valid state",
        ),
        (lambda b: json.dumps(dict(b, lbs={"lb1": {"state": "up", "flapping": "no"}})), "flapping"),
        (lambda b: json.dumps(dict(b, changed="lb1")), "changed"),
        (lambda b: json.dumps(dict(b, rotation={"version": "7"})), "rotation"),
    ],
)
def test_parse_report_refuses_malformed(mutate, message):
    body = json.loads(_text())
    with pytest.raises(health.BadReport, match=message):
        health.parse_report(mutate(body))


def test_parse_report_accepts_rotation():
    body = health.parse_report(_text(rotation={"version": 3, "digest": "abc"}))
    assert body["rotation"] == {"version": 3, "digest": "abc"}


def test_beacon_config_from_the_platform():
    platform = model.parse(platforms.pillar())
    conf = health.beacon_config(platform)
    merged = {k: v for item in conf for k, v in item.items()}
    assert merged["targets"] == {
        "lb1.paphosting.net": "http://127.0.1.1:8080/haproxy-health",
        "lb2.paphosting.net": "http://127.0.1.2:8080/haproxy-health",
    }
    assert (
        merged["probe_interval"] == 1
        and merged["probe_timeout"] == 0.5
        and merged["fall"] == 3
        and merged["rise"] == 2
    )
    assert merged["flap"] == {"window": 300, "max_transitions": 4, "hold": 120}
