"""The dns_zone execution and state modules through Salt's loaders (no server running: files only)."""

import re
import shutil

import dns.zone
import pytest
import yaml

from paphosting import challenges, model
from paphosting import zone as pzone
from tests.conftest import REPO, example_pillar

ZONE = "paphosting.nl"
ROT = "http0.l.paphosting.nl"
LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"


def dns_pillar(ns_id, server="knot", hosts=0):
    pillar = example_pillar()
    pillar.pop("metrics")  # the exporters of the example's own servers
    pillar["nameservers"] = {
        ns_id: {
            "address": "127.0.0.1",
            "port": 5399,
            "server": server,
            "fqdn": "ns1.paphosting.net",
        }
    }
    pillar["health"]["watchers"] = [ns_id]
    records = pillar["zones"][ZONE]["records"]
    for i in range(hosts):
        records[f"host{i:02d}"] = [{"type": "A", "data": f"192.0.2.{i + 1}"}]
    return pillar


@pytest.fixture
def ns_id(loaders):
    return loaders.opts["id"]


@pytest.fixture(autouse=True)
def clean_root(minion_root):
    for child in minion_root.iterdir():
        shutil.rmtree(child)
    yield


@pytest.fixture
def zone_file(minion_root):
    return minion_root / "var" / "lib" / "knot" / "zones" / f"{ZONE}.zone"


@pytest.fixture
def after_first_apply(set_pillar, ns_id, zone_file):
    """``change(pillar)`` made to the example's pillar once its zone is written: returns
    ``(loaders, the zone file's text before the change)``."""

    def _after(change):
        loaders = set_pillar(dns_pillar(ns_id))
        assert loaders.states.dns_zone.managed(name=ZONE).result is True
        before = zone_file.read_text()
        pillar = dns_pillar(ns_id)
        change(pillar)
        return set_pillar(pillar), before

    return _after


def serial(path):
    return pzone.serial_of(ZONE, path.read_text())


def rotation_addresses(path):
    z = dns.zone.from_text(path.read_text(), origin=ZONE, relativize=False)
    return sorted(rd.address for rd in z.find_rdataset(ROT + ".", "A"))


def today00():
    return pzone.next_serial(None, pzone.today_utc())


@pytest.mark.parametrize("test", [True, False])
def test_managed_creates_the_zone_then_changes_nothing(set_pillar, ns_id, zone_file, test):
    loaders = set_pillar(dns_pillar(ns_id))
    ret = loaders.states.dns_zone.managed(name=ZONE, test=test)
    if test:
        assert ret.result is None
        assert not zone_file.exists()
        assert "would be written" in ret.comment
    else:
        assert ret.result is True, ret.comment
        assert serial(zone_file) == today00()
        assert ret.comment.startswith(f"Zone {ZONE}: serial None -> {today00()}")
    assert ret.changes["serial"] == {"old": None, "new": today00()}
    assert f"+++ {zone_file}" in ret.changes["diff"]
    assert f"{ROT}. 300 IN A 127.0.1.1" in ret.changes["records"]["added"]
    if not test:
        before = zone_file.stat().st_mtime_ns
        again = loaders.states.dns_zone.managed(name=ZONE)
        assert again.result is True and again.changes == {}
        assert again.comment == f"Zone {ZONE} is up to date (serial {today00()})"
        assert zone_file.stat().st_mtime_ns == before


@pytest.mark.parametrize("test", [True, False])
def test_a_pillar_change_bumps_the_serial_record_by_record(after_first_apply, zone_file, test):
    loaders, first = after_first_apply(
        lambda p: p["zones"][ZONE]["records"].update(mail=[{"type": "A", "data": "127.0.2.2"}])
    )
    ret = loaders.states.dns_zone.managed(name=ZONE, test=test)
    assert ret.result is (None if test else True), ret.comment
    assert ret.changes["records"] == {
        "added": [f"mail.{ZONE}. 3600 IN A 127.0.2.2"],
        "removed": [f"mail.{ZONE}. 3600 IN A 127.0.2.3"],
    }
    assert ret.changes["serial"] == {"old": today00(), "new": today00() + 1}
    assert "-mail" in ret.changes["diff"] and "+mail" in ret.changes["diff"]
    if test:
        assert zone_file.read_text() == first
    else:
        assert serial(zone_file) == today00() + 1
        assert loaders.states.dns_zone.managed(name=ZONE).changes == {}


@pytest.mark.parametrize(
    "change, path",
    [
        (
            lambda p: p["zones"][ZONE]["records"].update(
                {"@": [{"type": "CNAME", "data": "x.example."}]}
            ),
            f"paphosting:zones:{ZONE}:records:@:0: a CNAME is not allowed at the zone apex",
        ),
        (
            lambda p: p["zones"][ZONE]["records"]["mail"].append({"type": "TXT", "data": '"open'}),
            f"paphosting:zones:{ZONE}:records:mail:1:data: '\"open' has unbalanced quotes",
        ),
        (
            lambda p: p["rotations"][ROT]["members"].append("lb7.paphosting.net"),
            f"paphosting:rotations:{ROT}:members:2: 'lb7.paphosting.net' is not a load balancer",
        ),
        # Served cut at the ';' (a comment in a zone file) before: refused with the path.
        (
            lambda p: p["zones"][ZONE]["records"].update(
                {"k._domainkey": [{"type": "TXT", "data": "v=DKIM1; k=rsa; p=MIGf"}]}
            ),
            f"paphosting:zones:{ZONE}:records:k._domainkey:0:data: 'v=DKIM1; k=rsa; p=MIGf': "
            "';' starts a comment in a zone file",
        ),
        # Dropped before: the model compared owners case-sensitively.
        (
            lambda p: p["zones"][ZONE]["records"].update(
                {"MAIL": [{"type": "CNAME", "data": "web.paphosting.nl."}]}
            ),
            f"paphosting:zones:{ZONE}:records:MAIL: a CNAME cannot stand beside other data",
        ),
    ],
)
def test_invalid_pillar_writes_nothing_and_names_the_path(
    after_first_apply, zone_file, change, path
):
    loaders, before = after_first_apply(change)
    ret = loaders.states.dns_zone.managed(name=ZONE)
    assert ret.result is False
    assert f"pillar {path}" in ret.comment
    assert ret.changes == {}
    assert zone_file.read_text() == before
    assert sorted(p.name for p in zone_file.parent.iterdir()) == [zone_file.name]


@pytest.mark.parametrize("test", [True, False])
def test_the_checker_refuses_what_it_rejects_and_nothing_is_written(
    after_first_apply, zone_file, test
):
    # A delegation whose DS names a digest type that does not exist (9): the pillar's checks
    # accept it, kzonecheck does not ("invalid algorithm in DS").
    loaders, before = after_first_apply(
        lambda p: p["zones"][ZONE]["records"].update(
            sub=[
                {"type": "NS", "data": "ns.other.example."},
                {"type": "DS", "data": "12345 13 9 abab"},
            ]
        )
    )
    ret = loaders.states.dns_zone.managed(name=ZONE, test=test)
    # Under test=True too: kzonecheck ran on a temporary copy, and a prediction that would fail
    # is a failure.
    assert ret.result is False
    assert ret.changes == {}
    if test:
        assert f"but kzonecheck would reject zone {ZONE}:" in ret.comment
    else:
        assert ret.comment.startswith(
            f"zone {ZONE} was not written: kzonecheck rejected zone {ZONE}"
        )
    assert zone_file.read_text() == before
    assert sorted(p.name for p in zone_file.parent.iterdir()) == [zone_file.name]


def test_more_than_100_changes_in_one_day_keep_the_serial_increasing(set_pillar, ns_id, zone_file):
    loaders = set_pillar(dns_pillar(ns_id))
    assert loaders.states.dns_zone.managed(name=ZONE).result is True
    serials = [serial(zone_file)]
    choices = [[LB1], [LB2], [LB1, LB2]]
    # The write path of the state (render, plan, kzonecheck, atomic rename), 105 times...
    for i in range(105):
        out = loaders.modules.dns_zone.write(ZONE, members={ROT: choices[i % 3]})
        assert out["written"] is True
        serials.append(serial(zone_file))
    # ... and the state itself across the same day.
    for i in range(3):
        ret = loaders.states.dns_zone.managed(name=ZONE, members={ROT: choices[(i + 1) % 3]})
        assert ret.result is True, ret.comment
        assert ret.changes["serial"] == {"old": serials[-1], "new": serials[-1] + 1}
        serials.append(serial(zone_file))
    for old, new in zip(serials, serials[1:], strict=False):
        assert pzone.serial_gt(new, old) and new > old and new < 2**32
    assert serials[-1] >= serials[0] + 108
    assert re.fullmatch(r"\d{10}", str(serials[-1]))


@pytest.mark.parametrize("test", [True, False])
def test_a_bulk_deletion_is_refused_without_force(set_pillar, ns_id, zone_file, test):
    loaders = set_pillar(dns_pillar(ns_id, hosts=20))
    assert loaders.states.dns_zone.managed(name=ZONE).result is True
    before = zone_file.read_text()
    loaders = set_pillar(dns_pillar(ns_id, hosts=5))
    ret = loaders.states.dns_zone.managed(name=ZONE, test=test)
    assert ret.result is False
    assert ret.comment.startswith(
        f"refusing to change zone {ZONE}: it deletes or changes 15 of its 32 records (47%, more than the allowed 30%)"
    )
    assert "force=True" in ret.comment
    assert zone_file.read_text() == before
    forced = loaders.states.dns_zone.managed(name=ZONE, force=True, test=test)
    assert forced.result is (None if test else True), forced.comment
    assert len(forced.changes["records"]["removed"]) == 15
    assert (zone_file.read_text() == before) is test


def test_ns_and_soa_changes_need_force(after_first_apply):
    def change(pillar):
        pillar["zones"][ZONE]["ns"] = ["ns1.paphosting.net"]
        pillar["zones"][ZONE]["soa"]["expire"] = 604800

    loaders, _ = after_first_apply(change)
    ret = loaders.states.dns_zone.managed(name=ZONE)
    assert ret.result is False
    assert (
        "it changes the zone's NS records from ns1.paphosting.net., ns2.paphosting.net., ns3.paphosting.net. (TTL 3600) to ns1.paphosting.net. (TTL 3600)"
        in ret.comment
    )
    assert "it changes the zone's SOA (expire 1209600 -> 604800)" in ret.comment
    assert loaders.states.dns_zone.managed(name=ZONE, force=True).result is True


def test_rotation_membership_comes_from_the_failover_pillar_key(
    loaders, pillar_dir, ns_id, zone_file
):
    def pillar_with(overlay):
        data = {"paphosting": dns_pillar(ns_id)}
        if overlay is not None:
            data["paphosting_rotation"] = overlay
        (pillar_dir / "paphosting.sls").write_text(yaml.safe_dump(data))
        loaders.reload_all()

    pillar_with({"version": 7, "rotations": {ROT: {"members": [LB2]}}})
    ret = loaders.states.dns_zone.managed(name=ZONE)
    assert ret.result is True, ret.comment
    assert rotation_addresses(zone_file) == ["127.0.1.2"]
    # Only the rotation records differ from the configured rendering.
    assert loaders.modules.dns_zone.diff(ZONE, members={ROT: [LB1, LB2]})["records"] == {
        "added": sorted([f"{ROT}. 300 IN A 127.0.1.1", f"{ZONE}. 300 IN A 127.0.1.1"]),
        "removed": [],
    }
    # An explicit members argument wins over the pillar key.
    assert loaders.states.dns_zone.managed(name=ZONE, members={ROT: [LB1]}).result is True
    assert rotation_addresses(zone_file) == ["127.0.1.1"]
    pillar_with(None)
    assert loaders.states.dns_zone.managed(name=ZONE).result is True
    assert rotation_addresses(zone_file) == ["127.0.1.1", "127.0.1.2"]


def test_held_acme_challenges_are_in_every_render_until_taken_back_or_expired(
    set_pillar, ns_id, zone_file
):
    loaders = set_pillar(dns_pillar(ns_id, hosts=10))
    assert loaders.states.dns_zone.managed(name=ZONE).result is True
    held = challenges.held_path(loaders.opts["cachedir"])
    owner = f"_acme-challenge.www.{ZONE}"

    def txt():
        z = dns.zone.from_text(zone_file.read_text(), origin=ZONE, relativize=False)
        rds = z.get_rdataset(owner + ".", "TXT")
        return sorted(s.decode() for rd in rds for s in rd.strings) if rds else []

    challenges.hold(held, challenges.value({owner: ["tok-a", "tok-b"]}, version=10))
    ret = loaders.states.dns_zone.managed(name=ZONE)  # a highstate during an issuance
    assert ret.result is True, ret.comment
    assert txt() == ["tok-a", "tok-b"]
    assert loaders.states.dns_zone.managed(name=ZONE).changes == {}
    # Taken back by the issuing master (a newer, empty set): removed, never refused by the
    # change-safety share rule.
    challenges.hold(held, challenges.value({}, version=11))
    ret = loaders.states.dns_zone.managed(name=ZONE)
    assert ret.result is True, ret.comment
    assert txt() == []
    # A set whose master died mid-issuance expires by itself.
    challenges.hold(held, challenges.value({owner: ["tok-c"]}, version=12, ttl_seconds=3600))
    assert loaders.states.dns_zone.managed(name=ZONE).result is True
    assert txt() == ["tok-c"]
    challenges.hold(held, dict(challenges.load_held(held), version=13, expires=0.0))
    assert loaders.states.dns_zone.managed(name=ZONE).result is True
    assert txt() == []


def test_execution_functions(set_pillar, ns_id, zone_file):
    loaders = set_pillar(dns_pillar(ns_id))
    mod = loaders.modules.dns_zone
    assert mod.names() == [ZONE]
    text = mod.render(ZONE, serial=2026010100)
    assert text == mod.render(ZONE, serial=2026010100)
    assert text == pzone.render(pzone_platform(ns_id), ZONE, 2026010100)
    assert mod.render(ZONE) == mod.render(ZONE, serial=today00())
    for server in ("bind", "nsd", "knot"):
        assert mod.check(ZONE, server=server) is True
    d = mod.diff(ZONE)
    assert (
        d["changed"]
        and d["serial"] == {"live": None, "served": None, "new": today00()}
        and d["refused"] is None
    )
    assert mod.write(ZONE)["written"] is True
    assert mod.write(ZONE)["written"] is False
    assert mod.diff(ZONE)["changed"] is False


def pzone_platform(ns_id):
    return model.parse(dns_pillar(ns_id))


def test_import_zone_prints_pillar_yaml(set_pillar, ns_id, tmp_path):
    loaders = set_pillar(dns_pillar(ns_id))
    path = REPO / "tests" / "data" / "zones" / "example.com.zone"
    out = loaders.modules.dns_zone.import_zone(str(path))
    assert out == loaders.modules.dns_zone.import_zone(
        text=path.read_text(), dest=str(tmp_path / "ex.sls")
    )
    assert (tmp_path / "ex.sls").read_text() == out
    assert yaml.safe_load(out)["paphosting"]["zones"]["example.com"]["ns"] == [
        "ns1.example.com",
        "ns2.example.net",
    ]


def test_the_zones_sls_applies_every_zone(loaders, set_pillar, ns_id, minion_root):
    pillar = dns_pillar(ns_id)
    pillar["zones"]["paphosting.net"] = {"ns": ["ns1.paphosting.net"]}
    loaders = set_pillar(pillar)
    ret = loaders.modules.state.sls("nameserver.zones")
    assert not ret.failed
    # One state for every zone (checked, written and reloaded together); changes per zone.
    assert [r.name for r in ret] == ["nameserver-zones"]
    assert sorted(next(iter(ret)).changes) == ["paphosting.net", ZONE]
    zones = minion_root / "var" / "lib" / "knot" / "zones"
    assert sorted(p.name for p in zones.iterdir()) == ["paphosting.net.zone", "paphosting.nl.zone"]
    again = loaders.modules.state.sls("nameserver.zones")
    assert all(r.changes == {} for r in again)
    assert "2 of 2 zones up to date" in next(iter(again)).comment


def test_a_minion_that_is_no_nameserver_is_told_so(set_pillar):
    loaders = set_pillar(example_pillar())
    ret = loaders.states.dns_zone.managed(name=ZONE)
    assert ret.result is False
    assert "pillar paphosting:nameservers: " in ret.comment and "is not a nameserver" in ret.comment


def test_the_second_copy_of_a_failover_that_waited_for_the_first_does_nothing(
    set_pillar, ns_id, zone_file, loaders
):
    """Both masters send every failover to every nameserver. The copy that waited for the zone
    lock while the other applied the same change returns without planning a zone; a copy sent
    later (a master repairing this nameserver) is applied in full."""
    import os
    import threading

    from paphosting import files

    mod = set_pillar(dns_pillar(ns_id)).modules.dns_zone
    members = {ROT: [LB2]}
    lock = os.path.join(loaders.opts["cachedir"], "paphosting", "zones.lock")
    results = []

    def copy():
        results.append(mod.apply_all(members=members, failover=True, timings={}))

    with files.locked(lock):
        threads = [threading.Thread(target=copy) for _ in range(2)]
        for t in threads:
            t.start()
        threads[0].join(1.0)  # both copies read the last record, then wait for the lock
        assert not results
    for t in threads:
        t.join(60)
    assert len(results) == 2
    applied = [r for r in results if r]
    skipped = [r for r in results if not r]
    assert len(applied) == 1 and len(skipped) == 1, results
    assert applied[0][ZONE]["written"] is True
    assert rotation_addresses(zone_file) == ["127.0.1.2"]
    # Sent again later, the same failover is planned in full (nothing to write: current).
    again = mod.apply_all(members=members, failover=True)
    assert again[ZONE]["written"] is False and again[ZONE]["changed"] is False
    # Another change is never taken for the same one.
    other = mod.apply_all(members={ROT: [LB1]}, failover=True)
    assert other[ZONE]["written"] is True
    assert rotation_addresses(zone_file) == ["127.0.1.1"]
