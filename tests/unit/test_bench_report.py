"""The promised shapes of build/demo/report.json and build/bench/results.json (harness/report.py).

``make demo`` and ``make bench`` check what they write with these functions; here they are checked
on documents written for the test: the shapes of issue 7, and every way a document can miss them.
"""

import copy
import json

import pytest

from harness import report


def demo_doc():
    return {
        "passed": True,
        "steps": [
            {"name": "the platform starts", "passed": True, "detail": "2 masters, 8 minions"},
            {"name": "a load balancer dies", "passed": True, "detail": "dropped in 5.1 s"},
        ],
        "lb_failover_s": 5.1,
        "detection_floor_s": 3.0,
        "client_errors": 0,
        "timeline": [{"t": 0.0, "event": "anything else is allowed"}],
    }


def bench_doc():
    latency = {"trials": 10, "p50_s": 4.8, "p95_s": 5.9, "floor_s": 3.0}
    return {
        "failover": dict(latency),
        "recovery": dict(latency, floor_s=2.0),
        "render": [
            {"services": 10000, "records": 10013, "seconds": 2.9, "peak_mb": 255.3, "parts_s": {}}
        ],
        "noop_highstate": [
            {"role": "loadbalancer", "services": 100, "seconds": 1.2, "floor_seconds": 0.9}
        ],
        "client_errors": {"backend_kill": 0, "lb_kill": 12},
        "peers": {
            "trials": 10,
            "systems": {
                name: {"failover": dict(latency), "recovery": dict(latency, floor_s=2.0)}
                for name in ("paphosting", "gdnsd", "pdns")
            },
        },
        "scale": {
            "sizes": [
                {
                    "zones": n,
                    "failover": {k: dict(latency) for k in ("bind", "nsd", "knot")},
                    "recovery": {k: dict(latency, floor_s=2.0) for k in ("bind", "nsd", "knot")},
                    "failover_rotation_name": dict(latency),
                    "noop": {"bind": {"seconds": 2.5, "floor_seconds": 1.4}},
                    "push_validation": {"compile_s": 1.0, "validate_s": 2.0, "total_s": 3.0},
                }
                for n in (0, 5000)
            ],
            "report_cpu": [{"services": 100, "first_report_cpu_s": 0.2, "report_cpu_p50_s": 0.004}],
        },
        "faults": {
            "power_off_failover": dict(latency, trials=6),
            "kill_failover": dict(latency, trials=6),
            "connect_timeout_s": 3.0,
            "window_s": 15.0,
            "clients_per_kind": 6,
            "clients": {
                "lb_power_off": {
                    "fault": "power-off lb2.paphosting.net",
                    **{
                        who: {
                            "requests": 200,
                            "failed": 40 if who == "one_address" else 0,
                            "p50_ms": 5.0,
                            "p99_ms": 3020.0,
                            "baseline_p50_ms": 4.0,
                            "baseline_p99_ms": 20.0,
                            "added_p50_ms": 1.0,
                            "added_p99_ms": 3000.0,
                        }
                        for who in ("browser", "one_address")
                    },
                },
            },
        },
        "dnssec": {
            "signing": [
                {
                    "services": 10000,
                    "records": 10013,
                    "sign_full_s": 40.0,
                    "verify_s": 5.0,
                    "failover_unsigned_s": 0.002,
                    "failover_signed_s": 0.2,
                    "failover_signatures": 3,
                }
            ]
        },
        "tls": {
            "issue_to_every_lb_s": 41.2,
            "renewals": [
                {"to_every_lb_s": 30.1, "handshakes": 800, "failed_handshakes": 0},
                {"to_every_lb_s": 29.0, "handshakes": 790, "failed_handshakes": 0},
            ],
            "swap_failed_handshakes": 0,
            "requests_per_s": {
                "lb1.paphosting.net": {"http": 400.0, "https": 150.0, "ratio": 0.38}
            },
        },
        "machine": {"cpus": 2},
    }


def test_demo_report_of_the_promised_shape_has_no_problem():
    assert report.demo_problems(demo_doc()) == []


def test_demo_report_whose_steps_failed_is_not_passed():
    doc = demo_doc()
    doc["steps"][1]["passed"] = False
    assert report.demo_problems(doc) == ["passed is True but not every step passed"]
    doc["passed"] = False
    assert report.demo_problems(doc) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("passed"), "passed is missing"),
        (lambda d: d.update(passed="yes"), "passed must be a boolean, got 'yes'"),
        (lambda d: d.update(steps={}), "steps must be a list, got {}"),
        (lambda d: d.update(steps=[]), "steps must not be empty"),
        (lambda d: d["steps"][0].pop("detail"), "steps[0].detail is missing"),
        (lambda d: d["steps"][1].update(passed=1), "steps[1].passed must be a boolean, got 1"),
        (lambda d: d["steps"][0].update(name=None), "steps[0].name must be a string, got None"),
        (lambda d: d.update(lb_failover_s="5 s"), "lb_failover_s must be a number, got '5 s'"),
        (lambda d: d.update(lb_failover_s=float("nan")), "lb_failover_s must be a number, got nan"),
        (
            lambda d: d.update(detection_floor_s=-1.0),
            "detection_floor_s must not be negative, got -1.0",
        ),
        (lambda d: d.update(client_errors=1.5), "client_errors must be an integer, got 1.5"),
        (lambda d: d.update(client_errors=True), "client_errors must be an integer, got True"),
        (lambda d: d.update(client_errors=-2), "client_errors must not be negative, got -2"),
    ],
)
def test_demo_report_of_another_shape_is_reported(change, problem):
    doc = demo_doc()
    change(doc)
    assert problem in report.demo_problems(doc)


def test_bench_results_of_the_promised_shape_have_no_problem():
    assert report.bench_problems(bench_doc()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("failover"), "failover is missing"),
        (
            lambda d: d["scale"]["sizes"][1]["failover"].pop("knot"),
            "scale.sizes[1].failover.knot is missing",
        ),
        (
            lambda d: d["scale"]["sizes"][0]["push_validation"].update(total_s="3"),
            "scale.sizes[0].push_validation.total_s must be a number, got '3'",
        ),
        (
            lambda d: d["faults"]["clients"]["lb_power_off"]["browser"].pop("added_p99_ms"),
            "faults.clients.lb_power_off.browser.added_p99_ms is missing",
        ),
        (
            lambda d: d["faults"]["clients"].pop("lb_power_off"),
            "faults.clients needs at least one fault kind",
        ),
        (
            lambda d: d["faults"]["power_off_failover"].pop("p50_s"),
            "faults.power_off_failover.p50_s is missing",
        ),
        (lambda d: d["recovery"].pop("floor_s"), "recovery.floor_s is missing"),
        (
            lambda d: d["failover"].update(trials=10.0),
            "failover.trials must be an integer, got 10.0",
        ),
        (
            lambda d: d["failover"].update(p95_s=4.0),
            "failover.p95_s (4.0) is below failover.p50_s (4.8)",
        ),
        (lambda d: d.update(render=[]), "render must not be empty"),
        (
            lambda d: d["render"][0].update(records="many"),
            "render[0].records must be an integer, got 'many'",
        ),
        (lambda d: d["render"][0].pop("peak_mb"), "render[0].peak_mb is missing"),
        (
            lambda d: d["noop_highstate"][0].update(role=1),
            "noop_highstate[0].role must be a string, got 1",
        ),
        (
            lambda d: d["noop_highstate"][0].pop("floor_seconds"),
            "noop_highstate[0].floor_seconds is missing",
        ),
        (lambda d: d["client_errors"].pop("lb_kill"), "client_errors.lb_kill is missing"),
        (lambda d: d.update(client_errors=[0, 0]), "client_errors must be a mapping, got [0, 0]"),
        (lambda d: d.pop("peers"), "peers is missing"),
        (lambda d: d.pop("dnssec"), "dnssec is missing"),
        (lambda d: d["dnssec"].update(signing=[]), "signing must not be empty"),
        (
            lambda d: d["dnssec"]["signing"][0].update(failover_signatures=3.0),
            "signing[0].failover_signatures must be an integer, got 3.0",
        ),
        (lambda d: d["peers"]["systems"].pop("gdnsd"), "peers.systems.gdnsd is missing"),
        (
            lambda d: d["peers"]["systems"]["pdns"]["recovery"].pop("p95_s"),
            "peers.systems.pdns.recovery.p95_s is missing",
        ),
        (
            lambda d: d["peers"]["systems"]["pdns"]["failover"].update(trials=9),
            "peers.systems.pdns.failover.trials is 9, not the 10 trials run",
        ),
        (lambda d: d.pop("tls"), "tls is missing"),
        (lambda d: d["tls"].update(renewals=[]), "tls.renewals is empty"),
        (
            lambda d: d["tls"]["renewals"][1].update(failed_handshakes=3),
            "tls.swap_failed_handshakes is 0, the renewals add up to 3",
        ),
        (
            lambda d: d["tls"]["requests_per_s"]["lb1.paphosting.net"].pop("ratio"),
            "tls.requests_per_s.lb1.paphosting.net.ratio is missing",
        ),
    ],
)
def test_bench_results_of_another_shape_are_reported(change, problem):
    doc = bench_doc()
    change(doc)
    assert problem in report.bench_problems(doc)


def test_a_partial_bench_run_may_leave_lists_empty():
    doc = bench_doc()
    doc["noop_highstate"] = []
    assert report.bench_problems(doc, complete=False) == []
    assert report.bench_problems(doc) == ["noop_highstate must not be empty"]
    doc.pop("peers")
    doc.pop("scale")
    doc.pop("faults")
    doc.pop("dnssec")
    doc.pop("tls")
    assert report.bench_problems(doc, complete=False) == []


def test_files_are_checked_by_name_from_the_command_line(tmp_path, capsys):
    demo = tmp_path / "demo" / "report.json"
    bench = tmp_path / "bench" / "results.json"
    demo.parent.mkdir()
    bench.parent.mkdir()
    demo.write_text(json.dumps(demo_doc()))
    broken = copy.deepcopy(bench_doc())
    del broken["render"]
    bench.write_text(json.dumps(broken))
    assert report.main([str(demo)]) == 0
    assert report.main([str(demo), str(bench)]) == 1
    out = capsys.readouterr().out
    assert f"{bench}: WRONG SHAPE" in out
    assert "render is missing" in out
    assert report.check_file(tmp_path / "missing" / "report.json")[0].startswith("cannot read")
