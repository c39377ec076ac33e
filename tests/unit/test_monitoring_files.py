"""The alert rules and the Grafana dashboard: checked by promtool, and naming only metrics the
platform exports (or haproxy's own, or the two expiry metrics nothing exports yet)."""

import json
import re
import subprocess

import pytest

from paphosting import decision, dnsmetrics, metrics, model
from tests.conftest import REPO, require_binary
from tests.unit import platforms

RULES = REPO / "monitoring" / "prometheus" / "rules.yml"
RULES_TEST = REPO / "monitoring" / "prometheus" / "rules_test.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "paphosting.json"
NOT_YET = set()  # metrics the rules or the dashboard may name before anything exports them
# PromQL words that look like metric names.
WORDS = {
    "by",
    "without",
    "on",
    "group_left",
    "group_right",
    "unless",
    "and",
    "or",
    "time",
    "scalar",
    "min",
    "max",
    "sum",
    "rate",
    "increase",
    "histogram_quantile",
    "le",
    "bool",
}


def promtool(*args):
    res = subprocess.run(
        [require_binary("promtool"), *args], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_promtool_checks_the_rules():
    assert "SUCCESS" in promtool("check", "rules", str(RULES))


def test_promtool_unit_tests_of_the_rules():
    assert "SUCCESS" in promtool("test", "rules", str(RULES_TEST))


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def exported_names(monkeypatch):
    """Every metric name the masters' engine and the nameservers' exporter can export."""
    platform = model.parse(platforms.pillar(metrics=True))
    config = decision.config_of(platform)
    observer = metrics.Observer()
    conf = dnsmetrics.exporter_config(platform, "ns2.paphosting.net")
    conf["held"] = "/nonexistent"
    # The statistics need a running server; their names are in the parsed form of any answer.
    monkeypatch.setattr(dnsmetrics, "read_stats", lambda c: {"queries": 1, "responses": {"X": 1}})
    families = [
        *metrics.rotation_families(decision.new_state(), config, 0, 30),
        *metrics.push_families({"last_push": {"outcome": "applied"}}),
        *metrics.tls_families({"www": {"not_after": 1.0}, "shop": None}),
        *observer.drift_families([], 1),
        *observer.registry.collect(),
        *metrics.MasterCollector(observer, lambda: None).collect(),
        *dnsmetrics.Collector(conf).collect(),
    ]
    return {f.name + suffix for f in families for suffix in ("", *SUFFIXES.get(f.type, ()))}


def names_in(expr):
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\([^()]*\b(?:by|without|on)\b", "(", expr)
    found = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    by = set(re.findall(r"\b(?:by|without|on|group_left|group_right)\s*\(([^)]*)\)", expr))
    labels = {w.strip() for group in by for w in group.split(",")}
    return {n for n in found - WORDS - labels if "_" in n}


def rule_exprs():
    import yaml

    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs():
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_only_metrics_that_exist(source, monkeypatch):
    known = exported_names(monkeypatch) | NOT_YET | {"ALERTS"}
    exprs = rule_exprs() if source == "rules" else dashboard_exprs()
    unknown = {
        n
        for e in exprs
        for n in names_in(e)
        if n not in known
        and not n.startswith("haproxy_")
        and not n.endswith("_bucket")
        and n not in {"up", "humanizeDuration"}
    }
    assert not unknown, f"{source} name metrics nobody exports: {sorted(unknown)}"


def test_dashboard_shape():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "paphosting"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}"
