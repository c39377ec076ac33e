"""Operator actions that hold platform-wide: records, signatures, the newest-wins journal, and
applying a relayed drain or restore to a master's failover state."""

import json

import pytest

from paphosting import actions, decision, model
from tests.conftest import rsa_key_pair
from tests.unit import platforms

LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
ROT = "http0.l.paphosting.nl"
NOW = 1_000_000.0


@pytest.fixture(scope="module")
def masters_key():
    return rsa_key_pair()


@pytest.fixture
def config():
    return decision.config_of(model.parse(platforms.pillar()))


def entry(key, kind, target, at, master="nl", reason="", force=False, nonce=None):
    text = actions.record_text(kind, target, master, at, reason, force, nonce)
    return {"record": text, "sig": actions.sign(text, key[0])}


def test_a_record_signed_by_the_masters_key_verifies(masters_key):
    e = entry(masters_key, "drain", LB1, NOW, reason="kernel")
    record = actions.verify(e["record"], e["sig"], masters_key[1])
    assert (record["kind"], record["target"], record["master"], record["reason"]) == (
        "drain",
        LB1,
        "nl",
        "kernel",
    )


def test_a_record_signed_by_another_key_or_altered_is_refused(masters_key):
    other = rsa_key_pair()
    forged = entry(other, "restore", LB1, NOW)
    with pytest.raises(actions.BadRecord, match="bad signature on the restore of lb1"):
        actions.verify(forged["record"], forged["sig"], masters_key[1])
    good = entry(masters_key, "drain", LB1, NOW)
    altered = good["record"].replace("drain", "restore")
    with pytest.raises(actions.BadRecord, match="bad signature"):
        actions.verify(altered, good["sig"], masters_key[1])
    with pytest.raises(actions.BadRecord, match="not signed"):
        actions.verify(good["record"], "", masters_key[1])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b.update(kind="reboot"), "kind 'reboot'"),
        (lambda b: b.update(target="lb1\nx"), "target"),
        (lambda b: b.update(at=True), "time True"),
        (lambda b: b.update(at=-3), "time -3"),
        (lambda b: b.update(id="../x"), "id"),
        (lambda b: b.update(force="yes"), "force 'yes'"),
        (lambda b: b.update(extra=1), "has the fields"),
        (lambda b: b.pop("master"), "has the fields"),
        (lambda b: b.update(format=2), "format 2"),
        (lambda b: b.update(reason="x" * 501), "reason"),
    ],
)
def test_malformed_records_are_refused_naming_the_field(mutate, message):
    body = json.loads(actions.record_text("drain", LB1, "nl", NOW))
    mutate(body)
    with pytest.raises(actions.BadRecord, match=message):
        actions.parse(json.dumps(body))


@pytest.mark.parametrize("text", [None, "", "[1]", "{", "x" * 5000])
def test_non_records_are_refused(text):
    with pytest.raises(actions.BadRecord):
        actions.parse(text)


def test_the_newest_record_per_load_balancer_wins_in_any_order(masters_key):
    drain = entry(masters_key, "drain", LB1, NOW, nonce="aa" * 8)
    restore = entry(masters_key, "restore", LB1, NOW + 5, nonce="bb" * 8)
    other_lb = entry(masters_key, "drain", LB2, NOW + 1)
    orders = [(drain, restore, other_lb), (restore, other_lb, drain), (other_lb, restore, drain)]
    journals = []
    for order in orders:
        journal = {}
        for e in order:
            actions.merge(journal, e["record"], e["sig"])
        journals.append(journal)
    assert journals[0] == journals[1] == journals[2]
    assert [(r["kind"], r["target"]) for r in actions.records(journals[0])] == [
        ("drain", LB2),
        ("restore", LB1),
    ]
    # A record replayed later (the old drain) changes nothing; the same record twice neither.
    assert not actions.merge(journals[0], drain["record"], drain["sig"])
    assert not actions.merge(journals[0], restore["record"], restore["sig"])


def test_equal_times_are_ordered_by_id_the_same_everywhere(masters_key):
    a = entry(masters_key, "drain", LB1, NOW, master="nl", nonce="01" * 8)
    b = entry(masters_key, "restore", LB1, NOW, master="ch", nonce="02" * 8)
    one, two = {}, {}
    for e in (a, b):
        actions.merge(one, e["record"], e["sig"])
    for e in (b, a):
        actions.merge(two, e["record"], e["sig"])
    assert one == two and actions.records(one)[0]["kind"] == "restore"


def test_a_failback_has_its_own_slot_per_service(masters_key):
    journal = {}
    for e in (entry(masters_key, "drain", LB1, NOW), entry(masters_key, "failback", "shop", NOW)):
        actions.merge(journal, e["record"], e["sig"])
    assert sorted(journal) == ["failback:shop", f"loadbalancer:{LB1}"]


def test_missing_lists_what_the_other_journal_lacks_or_holds_older(masters_key):
    mine, theirs = {}, {}
    old = entry(masters_key, "drain", LB1, NOW)
    new = entry(masters_key, "restore", LB1, NOW + 1)
    fb = entry(masters_key, "failback", "shop", NOW)
    for e in (new, fb):
        actions.merge(mine, e["record"], e["sig"])
    actions.merge(theirs, old["record"], old["sig"])
    assert sorted(actions.missing(mine, theirs)) == ["failback:shop", f"loadbalancer:{LB1}"]
    actions.merge(theirs, new["record"], new["sig"])
    actions.merge(theirs, fb["record"], fb["sig"])
    assert actions.missing(mine, theirs) == {}


def test_a_relayed_drain_is_applied_even_below_the_minimum_and_restore_undoes_it(config):
    """The minimum was checked on the master the operator used: the other one follows (forced),
    so both end with the same drains whatever their verdicts were at that moment."""
    state = decision.new_state()
    state["verdicts"][LB2] = {"verdict": "down", "since": NOW}
    drain = actions.parse(actions.record_text("drain", LB1, "nl", NOW, reason="disk", force=True))
    change = decision.apply_action(state, config, drain, NOW)
    assert LB1 in state["drains"] and state["drains"][LB1]["reason"] == "disk"
    assert change is not None
    # Applied again (the second master's copy of the event): nothing changes.
    assert decision.apply_action(state, config, drain, NOW + 1) is None
    restore = actions.parse(actions.record_text("restore", LB1, "ch", NOW + 2))
    assert decision.apply_action(state, config, restore, NOW + 2) is not None
    assert LB1 not in state["drains"]
    assert decision.apply_action(state, config, restore, NOW + 3) is None


def test_a_relayed_action_on_an_unknown_load_balancer_is_refused(config):
    record = actions.parse(actions.record_text("drain", "lb9.example.net", "nl", NOW))
    with pytest.raises(decision.Rejected, match="'lb9.example.net' is not a load balancer"):
        decision.apply_action(decision.new_state(), config, record, NOW)


def test_status_lists_the_operator_actions(config, masters_key):
    state = decision.new_state()
    e = entry(masters_key, "drain", LB1, NOW, master="ch", reason="kernel")
    actions.merge(state["actions"], e["record"], e["sig"])
    decision.apply_action(state, config, actions.parse(e["record"]), NOW)
    text = decision.status_text(state, config, NOW)
    assert "drain lb1.paphosting.net at" in text and "on ch (kernel)" in text


def test_a_heartbeat_carries_the_journal_digest_and_a_bad_one_is_refused(masters_key):
    from paphosting import health

    journal = {}
    empty = actions.digest(journal)
    e = entry(masters_key, "drain", LB1, NOW)
    actions.merge(journal, e["record"], e["sig"])
    assert actions.digest(journal) != empty
    # The same records in any order: the same digest (both masters compare against it).
    assert actions.digest(dict(reversed(list(journal.items())))) == actions.digest(journal)
    text = health.report_text(
        "ns1.paphosting.net", 1, NOW, "heartbeat", {}, actions={"digest": empty}
    )
    assert health.parse_report(text)["actions"] == {"digest": empty}
    bad = json.loads(text)
    bad["actions"] = {"digest": 5}
    with pytest.raises(health.BadReport, match="actions is not"):
        health.parse_report(json.dumps(bad))


def test_a_journal_file_round_trips_and_damage_is_named(tmp_path):
    path = actions.journal_path(str(tmp_path))
    assert actions.load_journal(path) == {}
    (tmp_path / "paphosting").mkdir()
    (tmp_path / "paphosting" / "operator_actions.json").write_text("{not json")
    with pytest.raises(actions.BadRecord, match="operator_actions.json: unreadable"):
        actions.load_journal(path)


@pytest.mark.parametrize("bad", [None, "text", ["record", "sig"]])
def test_a_journal_entry_that_is_no_mapping_is_refused(masters_key, bad):
    with pytest.raises(actions.BadRecord, match="a journal entry must be a mapping"):
        actions.verify_entry(bad, masters_key[1])
