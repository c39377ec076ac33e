"""The platform's own metrics: computed from the rotation state, the push record and the bus."""

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from paphosting import decision, health, metrics, model
from tests.unit import platforms

LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
NS1, NS2, NS3 = "ns1.paphosting.net", "ns2.paphosting.net", "ns3.paphosting.net"
ROT = "http0.l.paphosting.nl"
NOW = 1_000_000.0


def samples(families):
    """``{(name, frozenset(labels)): value}`` of metric families (or a registry's text)."""
    if isinstance(families, (bytes, str)):
        families = text_string_to_metric_families(
            families.decode() if isinstance(families, bytes) else families
        )
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


@pytest.fixture
def config():
    return decision.config_of(
        model.parse(platforms.pillar(servers=platforms.EVERY_SERVER, metrics=True))
    )


def feed(state, config, watcher, seq, now=NOW, version=None, **lbs):
    views = {
        {"lb1": LB1, "lb2": LB2}[k]: {
            "state": "down" if v == "flapping" else v,
            "flapping": v == "flapping",
            "since": now,
        }
        for k, v in lbs.items()
    }
    rot = {"version": version, "digest": "x"} if version is not None else None
    text = health.report_text(watcher, seq, now, "transition", views, rotation=rot)
    decision.accept(state, health.parse_report(text), config, now)
    return decision.decide(state, config, now)


def test_a_dead_load_balancer_leaves_the_rotation(config):
    state = decision.new_state()
    feed(state, config, NS1, 1, lb1="down", lb2="up", version=0)
    change = feed(state, config, NS2, 1, lb1="down", lb2="up")
    assert change is not None
    got = samples(rotation_families := metrics.rotation_families(state, config, NOW, 30.0))
    assert rotation_families
    assert got[("paphosting_rotation_members", frozenset({("rotation", ROT)}))] == 1
    assert (
        got[("paphosting_rotation_member", frozenset({("rotation", ROT), ("loadbalancer", LB1)}))]
        == 0
    )
    assert got[("paphosting_loadbalancer_up", frozenset({("loadbalancer", LB1)}))] == 0
    assert got[("paphosting_loadbalancer_in_rotation", frozenset({("loadbalancer", LB1)}))] == 0
    assert got[("paphosting_loadbalancer_in_rotation", frozenset({("loadbalancer", LB2)}))] == 1
    assert got[("paphosting_rotation_version", frozenset())] == state["version"] == 1
    assert got[("paphosting_rotation_fail_open", frozenset({("rotation", ROT)}))] == 0
    view = frozenset({("loadbalancer", LB1), ("watcher", NS1), ("state", "down")})
    assert got[("paphosting_watcher_view", view)] == 1
    never = frozenset({("loadbalancer", LB1), ("watcher", NS3), ("state", "none")})
    assert got[("paphosting_watcher_view", never)] == 1
    assert (
        got[("paphosting_watcher_last_report_timestamp_seconds", frozenset({("watcher", NS1)}))]
        == NOW
    )
    # NS1 reported holding version 0; NS3 applied version 1 (its rotation.apply returned).
    served = metrics.rotation_families(state, config, NOW, 30.0, applied={NS3: 1})
    got = samples(served)
    assert got[("paphosting_nameserver_rotation_version", frozenset({("nameserver", NS1)}))] == 0
    assert got[("paphosting_nameserver_rotation_version", frozenset({("nameserver", NS3)}))] == 1


def test_both_down_is_fail_open_and_flapping_is_a_hold(config):
    state = decision.new_state()
    feed(state, config, NS1, 1, lb1="down", lb2="flapping")
    feed(state, config, NS2, 1, lb1="down", lb2="down")
    got = samples(metrics.rotation_families(state, config, NOW, 30.0))
    assert got[("paphosting_rotation_fail_open", frozenset({("rotation", ROT)}))] == 1
    assert got[("paphosting_rotation_members", frozenset({("rotation", ROT)}))] == 2
    assert got[("paphosting_rotation_healthy_members", frozenset({("rotation", ROT)}))] == 0
    assert got[("paphosting_flap_hold", frozenset({("loadbalancer", LB2), ("watcher", NS1)}))] == 1
    assert got[("paphosting_flap_hold", frozenset({("loadbalancer", LB2), ("watcher", NS2)}))] == 0


def test_a_stale_view_is_shown_stale(config):
    state = decision.new_state()
    feed(state, config, NS1, 1, lb1="up", lb2="up")
    later = NOW + config["stale_after"] + 1
    got = samples(metrics.rotation_families(state, config, later, 30.0))
    assert (
        got[
            (
                "paphosting_watcher_view",
                frozenset({("loadbalancer", LB1), ("watcher", NS1), ("state", "stale")}),
            )
        ]
        == 1
    )


def test_push_record():
    record = {
        "live": {"revision": 7},
        "last_push": {"time": "2026-01-31T12:00:00Z", "revision": 7, "outcome": "refused"},
    }
    got = samples(metrics.push_families(record))
    assert got[("paphosting_pillar_live_revision", frozenset())] == 7
    assert got[("paphosting_push_last_success", frozenset())] == 0
    assert got[("paphosting_push_last_result", frozenset({("outcome", "refused")}))] == 1
    assert got[("paphosting_push_last_timestamp_seconds", frozenset())] == 1769860800
    assert ("paphosting_push_last_success", frozenset()) not in samples(metrics.push_families({}))


def test_certificate_expiry_per_service():
    got = samples(
        metrics.tls_families({"www": {"not_after": 1954183963.0, "names": []}, "shop": None})
    )
    key = ("paphosting_tls_certificate_not_after_seconds", frozenset({("service", "www")}))
    assert got[key] == 1954183963.0
    assert got[("paphosting_tls_certificate_missing", frozenset({("service", "shop")}))] == 1
    assert (
        "paphosting_tls_certificate_not_after_seconds",
        frozenset({("service", "shop")}),
    ) not in got


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("malformed report: not JSON", "malformed"),
        ("'web1.paphosting.net' is not a watcher (paphosting:health:watchers)", "not_a_watcher"),
        ("bad signature on the report claiming to come from 'ns1'", "bad_signature"),
        ("stale report from 'ns1': 200.0s old (limit 93s)", "stale"),
        ("replayed or out-of-order report from 'ns1' (seq 3, last 5)", "replayed"),
        ("duplicate report from 'ns1' (seq 5, last 5)", "replayed"),
        ("something new", "other"),
    ],
)
def test_refusal_reasons(reason, label):
    assert metrics.refusal_reason(reason) == label


def test_observer_latencies_refusals_and_drift(tmp_path):
    obs = metrics.Observer(drift_path=str(tmp_path / "drift.json"), nameservers=[NS1], now=NOW)
    obs.event(
        metrics.CHANGED_TAG,
        {"at": NOW + 0.5, "detected": NOW, "jid": "j1", "cause": "report from ns2"},
    )
    ret = {
        "fun": "rotation.apply",
        "success": True,
        "retcode": 0,
        "return": {"held": {"version": 4}},
    }
    obs.event("salt/job/j1/ret/" + NS1, ret, now=NOW + 2.0)
    obs.event(metrics.REJECTED_TAG, {"reason": "bad signature on the report"})
    # A flood is fired once a second with how many refusals it stands for; a bad count is one.
    obs.event(metrics.REJECTED_TAG, {"reason": "bad signature on the report", "count": 40})
    obs.event(metrics.REJECTED_TAG, {"reason": "bad signature on the report", "count": "x"})
    drift = {
        "fun": "drift.highstate",
        "return": {"changed": [{"state": "file.managed"}], "failed": []},
    }
    obs.event("salt/job/j2/ret/" + LB1, drift, now=NOW + 3)
    obs.event("salt/job/j3/ret/" + LB1, {"fun": "drift.highstate", "return": {"skipped": "busy"}})
    got = samples(generate_latest(obs.registry))
    assert got[("paphosting_rotation_decisions_total", frozenset({("cause", "report")}))] == 1
    assert got[("paphosting_failover_detection_to_decision_seconds_sum", frozenset())] == 0.5
    assert (
        got[
            (
                "paphosting_failover_decision_to_applied_seconds_sum",
                frozenset({("nameserver", NS1)}),
            )
        ]
        == 1.5
    )
    assert (
        got[
            (
                "paphosting_failover_detection_to_applied_seconds_count",
                frozenset({("nameserver", NS1)}),
            )
        ]
        == 1
    )
    assert (
        got[("paphosting_rotation_refused_reports_total", frozenset({("reason", "bad_signature")}))]
        == 42
    )
    assert got[("paphosting_drift_runs_total", frozenset({("minion", LB1)}))] == 1
    assert got[("paphosting_drift_changes_total", frozenset({("minion", LB1)}))] == 1
    assert obs.applied() == {NS1: 4}
    # The last run survives a restart; a minion never seen counts from the exporter's start.
    again = metrics.Observer(drift_path=str(tmp_path / "drift.json"), now=NOW + 10)
    got = samples(again.drift_families([LB1, LB2], 2100))
    assert (
        got[("paphosting_drift_last_run_timestamp_seconds", frozenset({("minion", LB1)}))]
        == NOW + 3
    )
    assert (
        got[("paphosting_drift_last_run_timestamp_seconds", frozenset({("minion", LB2)}))]
        == NOW + 10
    )
    assert got[("paphosting_drift_interval_seconds", frozenset())] == 2100


def test_collector_before_and_after_the_platform_is_known(config):
    obs = metrics.Observer()
    src = {"value": None}
    collector = metrics.MasterCollector(obs, lambda: src["value"])
    got = samples(collector.collect())
    assert got[("paphosting_master_platform_loaded", frozenset())] == 0
    src["value"] = {
        "state": decision.new_state(),
        "config": config,
        "heartbeat": 30.0,
        "record": {},
        "minions": [LB1],
        "drift_interval": 2100,
    }
    got = samples(collector.collect())
    assert got[("paphosting_master_platform_loaded", frozenset())] == 1
    assert got[("paphosting_rotation_members", frozenset({("rotation", ROT)}))] == 2


def test_scrape_configs_name_every_exporter():
    jobs = {
        j["job_name"]: j
        for j in metrics.scrape_configs(
            model.parse(platforms.pillar(servers=platforms.EVERY_SERVER, metrics=True))
        )
    }
    assert sorted(jobs) == [
        "paphosting-loadbalancers",
        "paphosting-masters",
        "paphosting-nameservers",
    ]
    assert jobs["paphosting-masters"]["scrape_interval"] == "2s"
    targets = [c["targets"][0] for c in jobs["paphosting-loadbalancers"]["static_configs"]]
    assert targets == ["127.0.5.1:8405", "127.0.5.2:8405"]
