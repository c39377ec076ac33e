"""Drift reports: what a highstate changed, recorded and listed."""

import importlib.util
import json
import re
import socket
import time

import pytest

from paphosting import drift, health
from tests.conftest import REPO, rsa_key_pair

HIGHSTATE = {
    "file_|-lb-config_|-/etc/haproxy/haproxy.cfg_|-managed": {
        "__id__": "lb-config",
        "name": "/etc/haproxy/haproxy.cfg",
        "result": True,
        "changes": {"diff": "..."},
        "comment": "restored",
        "__run_num__": 1,
    },
    "cmd_|-noop_|-true_|-run": {
        "__id__": "noop",
        "name": "true",
        "result": True,
        "changes": {},
        "comment": "",
        "__run_num__": 0,
    },
    "haproxy_cfg_|-lb-service_|-haproxy_|-running": {
        "__id__": "lb-service",
        "name": "haproxy",
        "result": True,
        "changes": {"haproxy": {"old": "stopped", "new": "running"}},
        "comment": "started",
        "__run_num__": 2,
    },
    "dns_zone_|-zone_|-paphosting.nl_|-managed": {
        "__id__": "zone",
        "name": "paphosting.nl",
        "result": False,
        "changes": {},
        "comment": "checker said no",
        "__run_num__": 3,
    },
}


def test_summarize_lists_changed_and_failed_in_run_order():
    s = drift.summarize(HIGHSTATE)
    assert [i["id"] for i in s["changed"]] == ["lb-config", "lb-service"]
    assert s["changed"][0]["state"] == "file.managed"
    assert s["changed"][1]["state"] == "haproxy_cfg.running"
    assert s["changed"][1]["changes"] == ["haproxy"]
    assert [i["id"] for i in s["failed"]] == ["zone"]


def test_summarize_no_change_is_no_drift():
    s = drift.summarize({k: v for k, v in HIGHSTATE.items() if k.startswith("cmd")})
    assert s == {"changed": [], "failed": []}


def test_summarize_render_error_is_a_failure():
    s = drift.summarize(["Rendering SLS 'base:loadbalancer' failed: ..."])
    assert s["changed"] == [] and "Rendering SLS" in s["failed"][0]["comment"]


def test_record_load_table(tmp_path):
    path = str(tmp_path / "cache" / "drift.json")
    drift.record(path, "lb1", drift.summarize(HIGHSTATE), when=0)
    # A run that changed nothing is a run, not drift: kept as ns1's last run only.
    assert drift.record(path, "ns1", {"changed": [], "failed": []}, when=3600) is None
    history = drift.load(path)
    assert [h["minion"] for h in history] == ["lb1"]
    assert sorted(drift.load_runs(path)) == ["lb1", "ns1"]
    text = drift.table(history)
    assert "1970-01-01 00:00:00  lb1" in text
    assert "file.managed lb-config (diff)" in text and "FAILED" in text
    assert drift.table(history, minion="web9") == "no drift recorded"
    assert "lb1" not in drift.table(history, since=1800)


def test_history_is_bounded(tmp_path):
    path = str(tmp_path / "drift.json")
    changed = {"changed": [{"state": "file.managed", "id": "x"}], "failed": []}
    for i in range(drift.HISTORY_LIMIT + 5):
        drift.record(path, f"m{i}", changed, when=i)
    history = drift.load(path)
    assert (
        len(history) == drift.HISTORY_LIMIT
        and history[-1]["minion"] == f"m{drift.HISTORY_LIMIT + 4}"
    )


def test_corrupt_history_reads_as_empty(tmp_path):
    path = tmp_path / "drift.json"
    path.write_text("{not json")
    assert drift.load(str(path)) == []


def test_master_candidates_current_first_then_configured_order():
    assert drift.master_candidates("ch.example", ["nl.example", "ch.example:4506"], 4506) == [
        ("ch.example", 4506),
        ("nl.example", 4506),
    ]
    assert drift.master_candidates(
        "127.0.4.1", ["127.0.4.1:5506", "127.0.4.2:5506", "[::1]:5506"], 5506
    ) == [("127.0.4.1", 5506), ("127.0.4.2", 5506), ("::1", 5506)]
    assert drift.master_candidates("salt", "salt", 4506) == [("salt", 4506)]
    assert drift.master_candidates(None, None, 4506) == []


def test_reachable_only_when_the_port_accepts(loopback):
    address = loopback.address()
    port = loopback.port(address)
    assert drift.reachable(address, port, timeout=1) is None  # nothing listens
    with socket.socket() as server:
        server.bind((address, port))
        server.listen()
        assert drift.reachable(address, port, timeout=1) == address
    assert drift.reachable("no-such-host.invalid", port, timeout=1) is None


def test_choose_the_master_serving_the_newest_revision():
    assert drift.choose([5, 6]) == 1
    assert drift.choose([6, 5]) == 0
    assert drift.choose([6, 6]) == 0  # equals: the current master
    assert drift.choose([None, 4]) == 1
    assert drift.choose([4, None]) == 0
    assert drift.choose([None, None]) == 0
    assert drift.choose([3]) == 0


def test_concurrent_records_are_all_kept(tmp_path):
    """The reactor runs one runner per report, in parallel processes: none may be lost."""
    import multiprocessing

    path = str(tmp_path / "drift.json")
    ctx = multiprocessing.get_context("fork")
    changed = {"changed": [{"state": "file.managed", "id": "x"}], "failed": []}
    procs = [
        ctx.Process(
            target=drift.record,
            args=(path, f"m{i}", changed if i % 2 else {"changed": [], "failed": []}),
        )
        for i in range(12)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sorted(h["minion"] for h in drift.load(path)) == sorted(f"m{i}" for i in range(1, 12, 2))
    assert sorted(drift.load_runs(path)) == sorted(f"m{i}" for i in range(12))


# ------------------------------------------------------------------ signed reports


@pytest.fixture(scope="module")
def keys():
    """Two minions' key pairs: ``{id: (private pem, public pem)}``."""
    out = {}
    for minion in ("lb1", "web1"):
        out[minion] = rsa_key_pair()
    return out


SUMMARY = {"changed": [{"state": "file.managed", "id": "cfg"}], "failed": [], "master": "nl"}


def _public(keys):
    return lambda minion: keys[minion][1] if minion in keys else None


def test_authenticate_takes_the_minion_from_the_signed_report(keys):
    data = drift.signed_report("lb1", dict(SUMMARY, revision=7), keys["lb1"][0], now=1000.0)
    minion, ts, summary = drift.authenticate(data["report"], data["sig"], _public(keys), 1001.0)
    assert (minion, ts) == ("lb1", 1000.0)
    assert summary == dict(SUMMARY, revision=7)


def _forged(keys, text=None):
    """web1 writes a report naming lb1 and signs it with its own key."""
    text = text or json.dumps(
        {"format": 1, "minion": "lb1", "ts": 1000.0, "summary": SUMMARY}, sort_keys=True
    )
    return text, health.sign(text, keys["web1"][0])


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda k: _forged(k), "bad signature on the report claiming to come from 'lb1'"),
        (lambda k: (_forged(k)[0], None), "is not signed"),
        (
            lambda k: _forged(k, json.dumps({"format": 1, "minion": "db9", "ts": 1000.0})),
            "no accepted key for 'db9'",
        ),
        (
            lambda k: _forged(k, json.dumps({"format": 1, "minion": "../../etc/x", "ts": 1.0})),
            "no valid minion id",
        ),
        (lambda k: ("{not json", "x"), "not a format 1 drift report"),
        (
            lambda k: tuple(
                drift.signed_report("lb1", SUMMARY, k["lb1"][0], now=1000.0 - 2 * 3600).values()
            ),
            "s old",
        ),
        (
            lambda k: tuple(
                drift.signed_report("lb1", {"changed": "x"}, k["lb1"][0], now=1000.0).values()
            ),
            "malformed drift summary",
        ),
    ],
)
def test_authenticate_refuses(keys, make, reason):
    text, sig = make(keys)
    with pytest.raises(drift.Rejected, match=re.escape(reason)):
        drift.authenticate(text, sig, _public(keys), 1000.0)


def test_a_replayed_report_is_recorded_once(tmp_path, keys):
    path = str(tmp_path / "drift.json")
    drift.record(path, "lb1", SUMMARY, when=1000.0)
    with pytest.raises(drift.Rejected, match="replay"):
        drift.record(path, "lb1", SUMMARY, when=1000.0)
    drift.record(path, "lb1", SUMMARY, when=1001.0)
    assert len(drift.load(path)) == 2
    # An older report of the same minion, replayed after a newer one, is refused too.
    with pytest.raises(drift.Rejected, match="replay"):
        drift.record(path, "lb1", SUMMARY, when=1000.5)


def test_the_schedule_table_flags_overdue_and_silent_minions(tmp_path):
    path = str(tmp_path / "drift.json")
    nothing = {"changed": [], "failed": []}
    drift.record(path, "lb1", {**nothing, "schedule": {"interval": 1800, "splay": 300}}, when=0.0)
    drift.record(path, "ns1", {**nothing, "schedule": {"interval": 60, "splay": 0}}, when=0.0)
    runs = drift.load_runs(path)
    rows = {m: state for m, _, _, state in drift.schedule_rows(runs, ["lb1", "ns1", "web1"], 1000)}
    # lb1 is due by 1800 + 300 + grace; ns1 by 60 + grace; web1 never reported.
    assert rows == {"lb1": "ok", "ns1": "OVERDUE", "web1": "no run yet"}
    text = drift.schedule_table(runs, ["lb1", "ns1", "web1"], now=1000)
    assert "ns1" in text and "OVERDUE" in text and "no run yet" in text


def test_a_schedule_that_is_not_two_counts_is_dropped(keys):
    bad = {"changed": [], "failed": [], "schedule": {"interval": "1800", "splay": 300}}
    data = drift.signed_report("lb1", bad, keys["lb1"][0], now=1000.0)
    _, _, summary = drift.authenticate(data["report"], data["sig"], _public(keys), 1000.0)
    assert "schedule" not in summary
    good = {"changed": [], "failed": [], "schedule": {"interval": 1800, "splay": 300}}
    data = drift.signed_report("lb1", good, keys["lb1"][0], now=1000.0)
    _, _, summary = drift.authenticate(data["report"], data["sig"], _public(keys), 1000.0)
    assert summary["schedule"] == {"interval": 1800, "splay": 300}


def _runner(tmp_path, keys):
    """The drift runner loaded with this master's options: accepted keys in pki_dir/minions."""
    spec = importlib.util.spec_from_file_location("drift_runner", REPO / "_runners" / "drift.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    (tmp_path / "pki" / "minions").mkdir(parents=True)
    for minion, (_, pub) in keys.items():
        (tmp_path / "pki" / "minions" / minion).write_bytes(pub)
    runner.__opts__ = {"pki_dir": str(tmp_path / "pki"), "cachedir": str(tmp_path / "cache")}
    return runner


def test_runner_records_the_signer_never_the_event_id(tmp_path, keys):
    """The reactor hands over data['id'] as ``sender``: on the batched events path it is the
    sender's claim. web1 claiming to be lb1 (event id and report) gets nothing recorded; lb1's
    own report is recorded as lb1 whatever the event id says."""
    runner = _runner(tmp_path, keys)
    text, sig = _forged(keys, None)
    forged = json.loads(text)
    forged["ts"] = time.time()
    text = json.dumps(forged, sort_keys=True)
    assert runner.record(report=text, sig=health.sign(text, keys["web1"][0]), sender="lb1") is False
    assert runner.history() == []
    own = drift.signed_report("lb1", SUMMARY, keys["lb1"][0])
    assert runner.record(sender="web1", **own) is True
    assert runner.record(sender="lb1", **own) is False  # the same report again: a replay
    assert [h["minion"] for h in runner.history()] == ["lb1"]
