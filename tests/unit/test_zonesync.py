"""zonesync's record of the last sync (the same failover sent by both masters is applied once),
and the priority of its work after serving."""

import os

import pytest

from paphosting import zonesync


class R:
    digest = "abc"


def key(**kw):
    args = dict(
        renderer=R(),
        names=None,
        members={"http0.l.paphosting.nl": ["lb2", "lb1"]},
        force=False,
        failover=True,
        keysets={},
    )
    args.update(kw)
    return zonesync.run_key(**args)


def test_the_key_is_what_decides_the_outcome():
    assert key() == key(members={"http0.l.paphosting.nl": ["lb1", "lb2"]})  # order is no change
    other = type("R2", (), {"digest": "def"})()
    for changed in (
        key(members={"http0.l.paphosting.nl": ["lb1"]}),
        key(renderer=other),
        key(names=["paphosting.nl"]),
        key(force=True),
        key(failover=False),
        key(members=None),
    ):
        assert changed != key()


def test_only_a_sync_that_finished_while_this_one_waited_counts(tmp_path):
    path = str(tmp_path / "zone_sync.json")
    assert zonesync.last_run(path) is None
    seen = zonesync.last_run(path)
    zonesync.record_run(path, key(), {"z": {"error": None}})
    last = zonesync.last_run(path)
    assert zonesync.done_meanwhile(seen, last, key())
    # The same record seen before waiting: a failover sent again is applied in full.
    assert not zonesync.done_meanwhile(last, last, key())
    # Another change, or a sync that failed somewhere, is never taken for this one.
    assert not zonesync.done_meanwhile(seen, last, key(force=True))
    zonesync.record_run(path, key(), {"z": {"error": "not served"}})
    assert not zonesync.done_meanwhile(seen, zonesync.last_run(path), key())


def test_an_unreadable_record_is_no_record(tmp_path):
    path = tmp_path / "zone_sync.json"
    path.write_text("{not json")
    assert zonesync.last_run(str(path)) is None
    path.write_text("[1, 2]")
    assert zonesync.last_run(str(path)) is None


def test_the_work_after_serving_runs_at_a_lower_priority_then_it_is_restored():
    before = os.getpriority(os.PRIO_PROCESS, 0)
    with zonesync.unhurried():
        inside = os.getpriority(os.PRIO_PROCESS, 0)
    assert inside == min(19, before + 10)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
    with pytest.raises(ValueError), zonesync.unhurried():
        raise ValueError("the block failed")
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
