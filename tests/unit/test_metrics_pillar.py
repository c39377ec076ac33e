"""paphosting:metrics: where the exporters listen, validated like every other pillar key."""

import pytest

from paphosting import haproxy, model
from paphosting.errors import InvalidPillar
from tests.unit import platforms

LB1 = "lb1.paphosting.net"


def _errors(mutate):
    pillar = platforms.pillar(metrics=True)
    mutate(pillar["metrics"])
    with pytest.raises(InvalidPillar) as exc:
        model.parse(pillar)
    return str(exc.value)


def test_listeners_are_parsed():
    metrics = model.parse(platforms.pillar(metrics=True)).metrics
    assert metrics["loadbalancers"][LB1] == model.Listener("127.0.5.1", 8405)
    assert metrics["nameservers"]["ns1.paphosting.net"].stats_port == 8053
    assert sorted(metrics["masters"]) == ["ch", "nl"]
    assert metrics["scrape_interval"] == 2.0


def test_no_metrics_key_means_no_exporter():
    pillar = platforms.pillar(metrics=True)
    del pillar["metrics"]
    platform = model.parse(pillar)
    assert platform.metrics["loadbalancers"] == {}
    assert "frontend metrics" not in haproxy.render(platform, LB1)


@pytest.mark.parametrize(
    ("mutate", "path", "reason"),
    [
        (lambda m: m.update(typo=1), "paphosting:metrics:typo", "unknown key"),
        (
            lambda m: m["loadbalancers"].update({"lb9.paphosting.net": {"address": "127.0.5.9"}}),
            "paphosting:metrics:loadbalancers:lb9.paphosting.net",
            "is not defined under paphosting:loadbalancers",
        ),
        (
            lambda m: m["masters"]["nl"].update(address="nowhere"),
            "paphosting:metrics:masters:nl:address",
            "not a valid IP address",
        ),
        (
            lambda m: m["loadbalancers"][LB1].update(address="127.0.1.1", port=8080),
            f"paphosting:metrics:loadbalancers:{LB1}",
            f"127.0.1.1:8080 is already used by loadbalancers:{LB1}",
        ),
        (
            lambda m: m["loadbalancers"][LB1].update(stats_port=1),
            f"paphosting:metrics:loadbalancers:{LB1}:stats_port",
            "unknown key",
        ),
        (
            lambda m: m["nameservers"]["ns2.paphosting.net"].update(port=0),
            "paphosting:metrics:nameservers:ns2.paphosting.net:port",
            "out of range",
        ),
        # NSD's statistics come through its control socket: a stats_port was silently ignored.
        (
            lambda m: m["nameservers"]["ns2.paphosting.net"].update(stats_port=8054),
            "paphosting:metrics:nameservers:ns2.paphosting.net:stats_port",
            "applies to BIND only, not to nsd",
        ),
        # BIND's statistics channel on its own DNS port (on 127.0.0.1), its rndc port, or its
        # exporter's address and port: BIND or the exporter would not start.
        (
            lambda m: m["nameservers"]["ns1.paphosting.net"].update(stats_port=5300),
            "paphosting:metrics:nameservers:ns1.paphosting.net:stats_port",
            "127.0.0.1:5300 is already used by paphosting:nameservers:ns1.paphosting.net:port",
        ),
        (
            lambda m: m["nameservers"]["ns1.paphosting.net"].update(stats_port=953),
            "paphosting:metrics:nameservers:ns1.paphosting.net:stats_port",
            "127.0.0.1:953 is already used by paphosting:nameservers:ns1.paphosting.net:control_port",
        ),
        (
            lambda m: m["nameservers"]["ns1.paphosting.net"].update(address="127.0.0.1", port=953),
            "paphosting:metrics:nameservers:ns1.paphosting.net",
            "127.0.0.1:953 is already used by paphosting:nameservers:ns1.paphosting.net:control_port",
        ),
        (
            lambda m: m["nameservers"]["ns1.paphosting.net"].update(address="127.0.0.1", port=8053),
            "paphosting:metrics:nameservers:ns1.paphosting.net:stats_port",
            "127.0.0.1:8053 is already used by paphosting:metrics:nameservers:ns1.paphosting.net",
        ),
    ],
)
def test_invalid_metrics_name_path_and_reason(mutate, path, reason):
    text = _errors(mutate)
    assert path in text and reason in text


def test_haproxy_exporter_on_the_management_listener_only():
    cfg = haproxy.render(model.parse(platforms.pillar(metrics=True)), LB1)
    public, _, metrics = cfg.partition("frontend metrics")
    assert "prometheus-exporter" not in public
    assert "bind 127.0.5.1:8405" in metrics.split("backend")[0]
    assert "use-service prometheus-exporter if { path /metrics }" in metrics


def test_two_bind_nameservers_each_have_their_own_loopback():
    """The statistics channel and rndc are on each machine's own loopback: two BIND nameservers
    (two machines) on the default stats_port and control_port do not clash."""
    pillar = platforms.pillar(metrics=True)
    pillar["nameservers"]["ns2.paphosting.net"]["server"] = "bind"
    model.parse(pillar)
