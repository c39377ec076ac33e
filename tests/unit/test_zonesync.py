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


def test_the_quick_plan_takes_exactly_the_zones_an_update_can_serve(tmp_path, monkeypatch):
    """Knot's failover plans without rendering (``quick_plan``) only zones whose file is an
    earlier render that the server serves, unsigned; their records are the full plan's."""
    from paphosting import dnsserver, files
    from paphosting import zone as pzone
    from tests.unit.test_zone import LB2, ROT, _hoster

    platform = _hoster()
    renderer = pzone.Renderer(platform)
    renderer.dnssec = {"c3.example": {"algorithm": 13}}  # as if c3 were signed
    ns = platform.nameservers["ns3.paphosting.net"]
    assert ns.server == "knot"
    names = list(renderer.zone_names)
    paths = dnsserver.zone_paths(ns, names, str(tmp_path))
    os.makedirs(os.path.dirname(paths[names[0]]), exist_ok=True)
    for z in names:
        files.write_checked(paths[z], renderer.render(z, 2026120400))
    edited = "c1.example"
    files.write_checked(paths[edited], files.read(paths[edited]).replace(" 1209600 ", " 604800 "))
    served = {z: 2026120400 for z in names}
    served["c2.example"] = 2026120399  # serves another version than its file
    monkeypatch.setattr(
        dnsserver, "served_serials", lambda ns_, zones, **kw: {z: served[z] for z in zones}
    )
    members = {ROT: [LB2]}
    plans, entries = zonesync.quick_plan(renderer, ns, str(tmp_path), names, members, "20261204")
    on_rotation = {z for z in names if z in platform.address_owners}
    assert set(plans) == on_rotation - {edited, "c2.example", "c3.example"}
    assert "static.example" not in plans
    for z, plan in plans.items():
        full = pzone.plan(
            platform, z, files.read(paths[z]), today="20261204", members=members, renderer=renderer
        )
        assert (plan.changed, plan.records, plan.serial_new) == (
            full.changed,
            full.records,
            full.serial_new,
        ), z
        assert entries[z]["path"] == paths[z] and entries[z]["changed"] == plan.changed
    assert any(p.changed for p in plans.values()) and any(not p.changed for p in plans.values())
