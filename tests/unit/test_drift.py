"""Drift reports: what a highstate changed, recorded and listed."""

import socket

from paphosting import drift

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
    drift.record(path, "ns1", {"changed": [], "failed": []}, when=3600)
    history = drift.load(path)
    assert [h["minion"] for h in history] == ["lb1", "ns1"]
    text = drift.table(history)
    assert "1970-01-01 00:00:00  lb1" in text
    assert "file.managed lb-config (diff)" in text and "FAILED" in text
    assert drift.table(history, minion="web9") == "no drift recorded"
    assert "lb1" not in drift.table(history, since=1800)


def test_history_is_bounded(tmp_path):
    path = str(tmp_path / "drift.json")
    for i in range(drift.HISTORY_LIMIT + 5):
        drift.record(path, f"m{i}", {"changed": [], "failed": []}, when=i)
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
    procs = [
        ctx.Process(target=drift.record, args=(path, f"m{i}", {"changed": [], "failed": []}))
        for i in range(12)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sorted(h["minion"] for h in drift.load(path)) == sorted(f"m{i}" for i in range(12))
