"""The platform seen through a real Prometheus (Debian's package) scraping the lab on loopback.

The whole lab of ``scripts/lab up`` runs (two masters, the load balancers, BIND, NSD and Knot,
the webservers; the pillar pushed from Subversion) with a Prometheus that scrapes every exporter
of ``paphosting:metrics`` and evaluates ``monitoring/prometheus/rules.yml``. Everything is read
through Prometheus's HTTP API: every target is up; a load balancer killed leaves the rotation in
the masters' metrics and fires ``LoadBalancerOutOfRotation``; the nameservers' exporters show the
new zone serials and the masters the failover's latency; once the load balancer is back, the
alert resolves. How long after DNS the metrics change is printed (the benchmark's business, not
an assertion).
"""

import json
import time

import pytest

from harness.launcher import Lab
from harness.wait import wait_until
from paphosting import dnsserver
from tests.conftest import REPO, require_binary

ROT = "http0.l.paphosting.nl"
LB1 = "lb1.paphosting.net"
ALERT = "LoadBalancerOutOfRotation"


@pytest.fixture(scope="module")
def lab():
    require_binary("prometheus")
    with Lab("metrics-test", prometheus=True) as lab:
        rev = lab.commit(lab.pillar_files(), "the example platform")
        res = lab.push("nl")
        assert res.returncode == 0, f"push of r{rev} failed:\n{res.stdout}{res.stderr}"
        yield lab


def values(prom, expr, label):
    """``{label value: sample value}`` of an instant query."""
    return {dict(k).get(label): v for k, v in prom.query(expr).items()}


def firing(prom, lb):
    return values(prom, f'ALERTS{{alertname="{ALERT}",alertstate="firing"}}', "loadbalancer").get(
        lb
    )


def served_addresses(ns):
    resp = dnsserver.query(ns, ROT + ".", "A")
    if resp is None:
        return None
    return sorted(r.address for rrset in resp.answer for r in rrset)


def test_every_target_is_up(lab):
    prom = lab.prometheus
    platform = lab.platform
    want = (
        {("paphosting-loadbalancers", lb) for lb in platform.metrics["loadbalancers"]}
        | {("paphosting-nameservers", ns) for ns in platform.metrics["nameservers"]}
        | {("paphosting-masters", m) for m in platform.metrics["masters"]}
    )
    wait_until(
        lambda: all(prom.targets().get(t) == "up" for t in want),
        timeout=60,
        interval=1,
        message=f"every target up ({sorted(want)})",
    )
    # The masters' engines load the platform pillar within seconds of the push.
    wait_until(
        lambda: values(prom, "paphosting_master_platform_loaded", "master") == {"nl": 1, "ch": 1},
        timeout=60,
        interval=1,
        message="both masters' exporters to know the platform",
    )
    # Each kind of target speaks its own metrics, under the common names.
    assert values(prom, "paphosting_dns_up", "software") == {"bind": 1, "nsd": 1, "knot": 1}
    serials = values(prom, "paphosting_dns_zone_serial", "instance")
    assert len(serials) == 3 and len(set(serials.values())) == 1
    assert len(values(prom, "haproxy_process_uptime_seconds", "instance")) == 2
    # The push is a master's own fact, read by its engine and scraped like the rest: it shows
    # within a few scrape intervals of the engine knowing the platform (it was absent at the
    # first look in a run on a loaded machine).
    wait_until(
        lambda: values(prom, "paphosting_push_last_success", "master").get("nl") == 1,
        timeout=20,
        interval=1,
        message="NL's last push to show as a success",
    )
    assert values(prom, "paphosting_master_platform_loaded", "master") == {"nl": 1, "ch": 1}
    # Every query of the Grafana dashboard is one this Prometheus evaluates.
    dashboard = json.loads((REPO / "monitoring" / "grafana" / "paphosting.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m")
            assert prom.api("query", query=expr)["resultType"] in ("vector", "scalar"), expr


def test_a_dead_load_balancer_shows_in_the_metrics_and_fires_the_alert(lab):
    prom = lab.prometheus
    lb_address = lab.platform.loadbalancers[LB1].address
    in_rotation = f'min(paphosting_loadbalancer_in_rotation{{loadbalancer="{LB1}"}})'
    # Every watcher has seen the load balancer up, and the masters keep it in rotation.
    wait_until(
        lambda: values(
            prom, f'paphosting_watcher_view{{loadbalancer="{LB1}",state="up"}}', "watcher"
        ).keys()
        >= set(lab.platform.health.watchers),
        timeout=90,
        interval=1,
        message="every watcher's view of lb1 up",
    )
    assert prom.query(in_rotation) and list(prom.query(in_rotation).values()) == [1]
    # While the lab started, lb1 may have been out of rotation for a moment (its health endpoint
    # fails until a webserver behind it answers), and the alert fired: it resolves at Prometheus's
    # next rule evaluation after lb1 is back, not at once.
    wait_until(
        lambda: firing(prom, LB1) is None, timeout=60, interval=0.5, message=f"{ALERT} not firing"
    )
    serial_before = values(prom, "paphosting_dns_zone_serial", "nameserver")

    lab.kill_haproxy(LB1)
    t0 = time.monotonic()
    wait_until(
        lambda: all(
            (a := served_addresses(ns)) is not None and lb_address not in a
            for ns in lab.nameservers
        ),
        timeout=60,
        interval=0.1,
        message="every nameserver to stop handing out lb1",
    )
    t_dns = time.monotonic()
    wait_until(
        lambda: list(prom.query(in_rotation).values()) == [0],
        timeout=60,
        interval=0.1,
        message="Prometheus to show lb1 out of rotation",
    )
    t_metric = time.monotonic()
    print(
        f"lb1 out of DNS {t_dns - t0:.2f} s after the kill; out in Prometheus "
        f"{t_metric - t0:.2f} s after it ({t_metric - t_dns:+.2f} s after DNS; scrape interval "
        f"{lab.platform.metrics['scrape_interval']:g} s)"
    )
    wait_until(lambda: firing(prom, LB1) == 1, timeout=60, interval=0.5, message=f"{ALERT} firing")
    members = prom.query(f'min(paphosting_rotation_members{{rotation="{ROT}"}})')
    assert list(members.values()) == [1]
    # The nameservers serve a new serial, hold the masters' version, and the latency was measured.
    wait_until(
        lambda: all(
            v > serial_before[ns]
            for ns, v in values(prom, "paphosting_dns_zone_serial", "nameserver").items()
        ),
        timeout=30,
        interval=0.5,
        message="a new zone serial on every nameserver",
    )
    wait_until(
        lambda: not prom.query(
            "scalar(max(paphosting_rotation_version))"
            " - max by (nameserver) (paphosting_nameserver_rotation_version) > 0"
        ),
        timeout=30,
        interval=0.5,
        message="no nameserver lagging the rotation",
    )
    applied = prom.query("sum(paphosting_failover_detection_to_applied_seconds_count)")
    assert list(applied.values())[0] >= 1

    # Back: haproxy started again by its state, the rotation and the alert recover.
    ret = lab.highstate([LB1], sls="loadbalancer")
    assert not ret[LB1]["failed"], ret
    wait_until(
        lambda: list(prom.query(in_rotation).values()) == [1],
        timeout=90,
        interval=0.5,
        message="lb1 back in rotation in Prometheus",
    )
    wait_until(
        lambda: firing(prom, LB1) is None, timeout=60, interval=0.5, message=f"{ALERT} resolved"
    )
