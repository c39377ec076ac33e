"""Zone rendering, rotation membership, serials, record diffs and the change-safety rule (pure)."""

import datetime

import dns.name
import dns.rdatatype
import dns.zone
import pytest

from paphosting import model, overlay, zone
from paphosting.errors import ChangeRefused, InvalidPillar
from tests.unit import platforms

ROT = "http0.l.paphosting.nl"
LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
DAY = datetime.date(2026, 3, 14)
BASE = 2026031400


def zone_pillar():
    """BIND, NSD and Knot, and the services www and shop in paphosting.nl."""
    return platforms.pillar(servers=platforms.EVERY_SERVER, webservers=2, shop=True)


def platform(pillar=None):
    return model.parse(pillar or zone_pillar())


def rrsets(text, origin="paphosting.nl"):
    z = dns.zone.from_text(text, origin=origin, relativize=False)
    return {
        (name.to_text(), dns.rdatatype.to_text(rds.rdtype)): (
            rds.ttl,
            sorted(rd.to_text() for rd in rds),
        )
        for name, rds in z.iterate_rdatasets()
    }


# --- render -------------------------------------------------------------------------------------


def test_render_is_byte_identical_for_identical_input():
    a = zone.render(platform(), "paphosting.nl", BASE)
    pillar = zone_pillar()
    pillar["loadbalancers"] = dict(reversed(list(pillar["loadbalancers"].items())))
    pillar["zones"]["paphosting.nl"]["records"] = dict(
        reversed(list(pillar["zones"]["paphosting.nl"]["records"].items()))
    )
    b = zone.render(platform(pillar), "paphosting.nl", BASE)
    assert a == b
    assert a == zone.render(platform(), "paphosting.nl", BASE)


def test_rotation_name_gets_its_members_addresses_with_ttl_300():
    sets = rrsets(zone.render(platform(), "paphosting.nl", BASE))
    assert sets[(ROT + ".", "A")] == (300, ["127.0.1.1", "127.0.1.2"])
    assert (ROT + ".", "AAAA") not in sets


def test_service_hostnames_point_at_the_rotation_and_the_apex_gets_addresses():
    sets = rrsets(zone.render(platform(), "paphosting.nl", BASE))
    assert sets[("www.paphosting.nl.", "CNAME")] == (3600, [ROT + "."])
    assert sets[("shop.paphosting.nl.", "CNAME")] == (3600, [ROT + "."])
    assert sets[("paphosting.nl.", "A")] == (300, ["127.0.1.1", "127.0.1.2"])
    assert sets[("paphosting.nl.", "MX")] == (3600, ["10 mail.paphosting.nl."])
    assert sets[("paphosting.nl.", "NS")][1] == [
        "ns1.paphosting.net.",
        "ns2.paphosting.net.",
        "ns3.paphosting.net.",
    ]
    soa = sets[("paphosting.nl.", "SOA")][1][0].split()
    assert soa[:3] == ["ns1.paphosting.net.", "hostmaster.paphosting.nl.", str(BASE)]


def test_address6_gives_aaaa_and_rotation_ttl_is_configurable():
    pillar = zone_pillar()
    pillar["loadbalancers"][LB1]["address6"] = "2001:db8::1"
    pillar["rotations"][ROT]["ttl"] = 60
    sets = rrsets(zone.render(platform(pillar), "paphosting.nl", BASE))
    assert sets[(ROT + ".", "AAAA")] == (60, ["2001:db8::1"])
    assert sets[(ROT + ".", "A")] == (60, ["127.0.1.1", "127.0.1.2"])
    assert sets[("paphosting.nl.", "AAAA")] == (60, ["2001:db8::1"])


def test_members_override_changes_only_the_rotation_records():
    p = platform()
    full = rrsets(zone.render(p, "paphosting.nl", BASE))
    less = rrsets(zone.render(p, "paphosting.nl", BASE, members={ROT: [LB2]}))
    assert less[(ROT + ".", "A")] == (300, ["127.0.1.2"])
    assert less[("paphosting.nl.", "A")] == (300, ["127.0.1.2"])
    changed = {k for k in full if full[k] != less.get(k)}
    assert changed == {(ROT + ".", "A"), ("paphosting.nl.", "A")}


def test_members_override_never_adds_unconfigured_members_nor_empties_a_rotation():
    p = platform()
    full = zone.render(p, "paphosting.nl", BASE)
    assert zone.render(p, "paphosting.nl", BASE, members={ROT: []}) == full
    assert zone.render(p, "paphosting.nl", BASE, members={ROT: ["lb9.paphosting.net"]}) == full
    assert zone.render(p, "paphosting.nl", BASE, members={"other.l.paphosting.nl": [LB1]}) == full
    assert zone.render(p, "paphosting.nl", BASE, members={ROT + ".": [LB1, "gone"]}) == zone.render(
        p, "paphosting.nl", BASE, members={ROT: [LB1]}
    )


def test_glue_for_in_zone_nameservers_comes_from_their_addresses():
    pillar = zone_pillar()
    pillar["zones"]["paphosting.net"] = {"ns": ["ns1.paphosting.net", "ns2.paphosting.net"]}
    sets = rrsets(zone.render(platform(pillar), "paphosting.net", BASE), "paphosting.net")
    for ns in ("ns1.paphosting.net", "ns2.paphosting.net"):
        assert sets[(ns + ".", "A")] == (3600, [pillar["nameservers"][ns]["address"]])


def test_in_zone_ns_without_an_address_names_the_pillar_path():
    pillar = zone_pillar()
    pillar["zones"]["paphosting.net"] = {"ns": ["ns9.paphosting.net"]}
    with pytest.raises(
        InvalidPillar,
        match=r"pillar paphosting:zones:paphosting.net:ns:0: ns9.paphosting.net is inside the zone but has no address",
    ):
        zone.render(platform(pillar), "paphosting.net", BASE)


def test_unknown_zone():
    with pytest.raises(zone.ZoneError, match="zone example.org is not in pillar paphosting:zones"):
        zone.render(platform(), "example.org", BASE)


def test_rendered_text_is_escaped_canonically():
    pillar = zone_pillar()
    pillar["zones"]["paphosting.nl"]["records"]["txt"] = [
        {"type": "TXT", "data": r'"say \"hi\"; \\ done" "two"'}
    ]
    text = zone.render(platform(pillar), "paphosting.nl", BASE)
    assert 'txt        3600 IN TXT    "say \\"hi\\"; \\\\ done" "two"\n' in text
    assert rrsets(text)[("txt.paphosting.nl.", "TXT")][1] == ['"say \\"hi\\"; \\\\ done" "two"']


# --- serials ------------------------------------------------------------------------------------


def test_first_serial_of_a_zone_is_today_00():
    assert zone.next_serial(None, DAY) == BASE
    assert zone.next_serial(None, "20260314") == BASE


def test_serial_increments_within_a_day_and_jumps_to_a_new_day():
    assert zone.next_serial(BASE, DAY) == BASE + 1
    assert zone.next_serial(BASE + 5, datetime.date(2026, 3, 15)) == 2026031500
    assert zone.next_serial(2025010100, DAY) == BASE


def test_more_than_100_changes_in_one_day_stay_increasing_and_valid():
    serial = zone.next_serial(None, DAY)
    seen = [serial]
    for _ in range(250):
        new = zone.next_serial(serial, DAY)
        assert new > serial
        assert zone.serial_gt(new, serial)
        assert 0 <= new < 2**32
        serial = new
        seen.append(new)
    assert seen[100] == 2026031500  # the 100th change borrows the next day's first number
    assert len(set(seen)) == len(seen)
    # The next day continues from there: never backwards.
    assert zone.next_serial(serial, datetime.date(2026, 3, 15)) == serial + 1
    assert zone.next_serial(serial, datetime.date(2026, 3, 17)) == 2026031700


def test_serial_far_ahead_of_today_keeps_incrementing():
    assert zone.next_serial(2099123199, DAY) == 2099123200


def test_serial_wraps_under_rfc_1982_at_the_top_of_32_bits():
    top = 2**32 - 1
    new = zone.next_serial(top, DAY)
    # The date serial is ahead of 2**32-1 under RFC 1982: that is a valid increment.
    assert zone.serial_gt(new, top)
    assert new == BASE
    # When the date serial is behind (more than 2**31 back), old + 1 (mod 2**32) is used.
    old = BASE + 2**31 - 10
    assert zone.next_serial(old, DAY) == old + 1
    assert zone.serial_gt(zone.next_serial(old, DAY), old)


def test_serial_gt_follows_rfc_1982():
    assert zone.serial_gt(1, 0)
    assert zone.serial_gt(0, 2**32 - 1)
    assert not zone.serial_gt(0, 1)
    assert not zone.serial_gt(5, 5)
    assert not zone.serial_gt(2**31, 0)  # undefined distance: not "greater"
    assert zone.newest_serial(None, 7, 2**32 - 1, None) == 7


def test_bad_dates_and_serials():
    with pytest.raises(ValueError):
        zone.next_serial(None, "2026-3-1")
    with pytest.raises(ValueError):
        zone.next_serial(2**32, DAY)


# --- plan, diff, safety -------------------------------------------------------------------------


def test_plan_of_a_new_zone_creates_it():
    p = zone.plan(platform(), "paphosting.nl", None, today=DAY)
    assert p.changed and p.serial_new == BASE and p.serial_live is None and not p.problems
    assert p.records["added"][0].startswith("paphosting.nl. 3600 IN SOA")
    assert "www.paphosting.nl. 3600 IN CNAME http0.l.paphosting.nl." in p.records["added"]


def test_plan_changes_nothing_when_only_the_day_changed():
    live = zone.render(platform(), "paphosting.nl", BASE)
    p = zone.plan(platform(), "paphosting.nl", live, today=datetime.date(2027, 1, 1))
    assert not p.changed and not p.stale and p.text == live and p.serial_new == BASE


def test_plan_bumps_the_serial_and_lists_record_changes():
    live = zone.render(platform(), "paphosting.nl", BASE)
    pillar = zone_pillar()
    pillar["zones"]["paphosting.nl"]["records"]["mail"][0]["data"] = "127.0.2.2"
    p = zone.plan(platform(pillar), "paphosting.nl", live, today=DAY)
    assert p.changed and p.serial_new == BASE + 1
    assert p.records == {
        "added": ["mail.paphosting.nl. 3600 IN A 127.0.2.2"],
        "removed": ["mail.paphosting.nl. 3600 IN A 127.0.2.3"],
    }
    assert p.text == zone.render(platform(pillar), "paphosting.nl", BASE + 1)


def test_plan_never_goes_below_the_served_serial():
    live = zone.render(platform(), "paphosting.nl", BASE)
    p = zone.plan(platform(), "paphosting.nl", live, today=DAY, served_serial=BASE + 40)
    assert p.changed and p.serial_new == BASE + 41
    assert p.records == {"added": [], "removed": []}
    behind = zone.plan(platform(), "paphosting.nl", live, today=DAY, served_serial=BASE - 1)
    assert not behind.changed and behind.stale


def test_an_unreadable_live_file_is_replaced():
    p = zone.plan(platform(), "paphosting.nl", "garbage ((", today=DAY)
    assert p.changed and p.serial_live is None


def big_pillar(n=20):
    pillar = zone_pillar()
    records = pillar["zones"]["paphosting.nl"]["records"]
    for i in range(n):
        records[f"host{i:02d}"] = [{"type": "A", "data": f"192.0.2.{i + 1}"}]
    return pillar


def test_bulk_deletion_is_refused_with_what_and_how_much():
    live = zone.render(platform(big_pillar()), "paphosting.nl", BASE)
    pillar = big_pillar(12)  # drops host12..host19: 8 of 32 records (25%): allowed
    assert not zone.plan(platform(pillar), "paphosting.nl", live, today=DAY).problems
    pillar = big_pillar(8)  # drops 12 of 32 (38%)
    p = zone.plan(platform(pillar), "paphosting.nl", live, today=DAY)
    assert len(p.problems) == 1
    assert (
        "deletes or changes 12 of its 32 records (38%, more than the allowed 30%)" in p.problems[0]
    )
    assert "host08.paphosting.nl. 3600 IN A 192.0.2.9" in p.problems[0]
    with pytest.raises(ChangeRefused, match=r"refusing to change zone paphosting.nl: .*force=True"):
        p.check()
    p.check(force=True)


def test_share_rule_applies_only_to_zones_of_at_least_min_records():
    live = zone.render(platform(big_pillar(4)), "paphosting.nl", BASE)  # 16 records
    pillar = zone_pillar()
    pillar["zones"]["paphosting.nl"]["records"] = {}  # deletes 7 of them
    pillar["dns"] = {"min_records_for_share": 17}
    assert not zone.plan(platform(pillar), "paphosting.nl", live, today=DAY).problems
    pillar["dns"]["min_records_for_share"] = 16
    assert (
        "deletes or changes 7 of its 16 records"
        in zone.plan(platform(pillar), "paphosting.nl", live, today=DAY).problems[0]
    )


def test_rotation_membership_changes_are_exempt_from_the_share_rule():
    pillar = big_pillar(0)
    pillar["loadbalancers"].update(
        {f"lb{i}.paphosting.net": {"address": f"127.0.1.{i}"} for i in range(3, 9)}
    )
    pillar["rotations"][ROT]["members"] = sorted(pillar["loadbalancers"])
    live = zone.render(platform(pillar), "paphosting.nl", BASE)
    p = zone.plan(platform(pillar), "paphosting.nl", live, today=DAY, members={ROT: [LB1]})
    assert p.changed and not p.problems
    assert len(p.records["removed"]) == 14  # 7 addresses at the rotation name and at the apex


def test_ns_and_soa_changes_are_refused():
    live = zone.render(platform(), "paphosting.nl", BASE)
    pillar = zone_pillar()
    pillar["zones"]["paphosting.nl"]["ns"] = ["ns1.paphosting.net", "ns2.paphosting.net"]
    p = zone.plan(platform(pillar), "paphosting.nl", live, today=DAY)
    assert (
        len(p.problems) == 1
        and "changes the zone's NS records from ns1.paphosting.net., ns2.paphosting.net., ns3.paphosting.net."
        in p.problems[0]
    )
    pillar = zone_pillar()
    pillar["zones"]["paphosting.nl"]["soa"]["refresh"] = 7200
    p = zone.plan(platform(pillar), "paphosting.nl", live, today=DAY)
    assert p.problems == ["it changes the zone's SOA (refresh 3600 -> 7200)"]
    assert (
        p.records["removed"][0].startswith("paphosting.nl. 3600 IN SOA")
        and "3600 600" in p.records["removed"][0]
    )


def test_max_change_share_is_configurable():
    live = zone.render(platform(big_pillar()), "paphosting.nl", BASE)
    pillar = big_pillar(12)
    pillar["dns"] = {"max_change_share": 0.2}
    assert zone.plan(platform(pillar), "paphosting.nl", live, today=DAY).problems


# --- failover input -----------------------------------------------------------------------------


def test_members_from_pillar():
    published = {"version": 3, "rotations": {ROT: {"members": [LB1]}}}
    assert overlay.members_of(None) is None
    assert overlay.members_of({"paphosting": {}}) is None
    assert overlay.members_of({"version": 1, "rotations": {}}) == {}
    assert overlay.members_of(published) == {ROT: [LB1]}
    assert overlay.members_of({"paphosting_rotation": published, "paphosting": {}}) == {ROT: [LB1]}
    assert overlay.members_of({"paphosting_rotation": None}) is None


def test_members_from_pillar_rejects_bad_shapes_with_their_path():
    with pytest.raises(InvalidPillar, match=r"pillar paphosting_rotation: must be a mapping"):
        overlay.members_of(["x"])
    with pytest.raises(
        InvalidPillar,
        match=r"pillar paphosting_rotation:rotations:http0.l.paphosting.nl:members: must be a list",
    ):
        overlay.members_of({"rotations": {ROT: {"members": "lb1"}}})


def test_serial_of():
    assert zone.serial_of("paphosting.nl", zone.render(platform(), "paphosting.nl", BASE)) == BASE
    assert zone.serial_of("paphosting.nl", None) is None
    assert zone.serial_of("paphosting.nl", "nonsense (") is None


def test_record_diff_of_identical_zones_is_empty():
    text = zone.render(platform(), "paphosting.nl", BASE)
    live = zone.parse_text("paphosting.nl", text)
    wanted = zone.parse_text("paphosting.nl", zone.render(platform(), "paphosting.nl", BASE + 7))
    assert zone.record_diff(live, wanted) == {"added": [], "removed": []}
    assert dns.name.from_text("paphosting.nl") == live.origin


def _hoster(customers=12):
    """A small platform of its own: two rotations, customer zones with their apex on either, a
    zone with nothing on a rotation, IPv6 on one load balancer, several TTLs."""
    pillar = zone_pillar()
    pillar["loadbalancers"]["lb2.paphosting.net"]["address6"] = "2001:db8::2"
    pillar["loadbalancers"]["lb3.paphosting.net"] = {"address": "127.0.1.3"}
    pillar["rotations"]["http1.l.paphosting.nl"] = {
        "ttl": 60,
        "members": ["lb2.paphosting.net", "lb3.paphosting.net", "lb1.paphosting.net"],
    }
    for s in pillar["services"].values():
        s["rotation"] = ROT
    for i in range(customers):
        name = f"c{i}.example"
        pillar["zones"][name] = {
            "ttl": 600 + i,
            "records": {
                "@": [{"type": "MX", "data": f"10 mail.{name}."}],
                "mail": [
                    {"type": "A", "data": f"198.18.0.{i + 1}"},
                    {"type": "AAAA", "data": "2001:db8::53"},
                ],
                "zz": [{"type": "TXT", "data": '"x"'}],
                "a": [{"type": "TXT", "data": '"y"', "ttl": 5}],
            },
        }
        pillar["services"][f"c{i}"] = {
            "type": "stateless",
            "hostnames": [name, f"www.{name}"],
            "rotation": ROT if i % 2 else "http1.l.paphosting.nl",
            "servers": [{"name": "web1.paphosting.net"}],
        }
    pillar["zones"]["static.example"] = {"records": {"www": [{"type": "A", "data": "198.19.0.1"}]}}
    return model.parse(pillar)


@pytest.mark.parametrize(
    "members",
    [
        None,
        {ROT: [LB1]},
        {ROT: [LB2], "http1.l.paphosting.nl": ["lb3.paphosting.net"]},
        {"http1.l.paphosting.nl": ["lb2.paphosting.net", "lb1.paphosting.net"]},
        {ROT: []},  # fail open: the configured members
    ],
)
def test_the_renderer_gives_the_reference_text_for_every_zone(members):
    platform = _hoster()
    renderer = zone.Renderer(platform)
    for name in sorted(platform.zones):
        for serial in (1, 2026120400):
            assert renderer.render(name, serial, members) == zone.render(
                platform, name, serial, members
            ), name


def test_a_failover_change_is_planned_without_the_safety_rule_and_only_its_records():
    platform = _hoster()
    renderer = zone.Renderer(platform)
    name = "c1.example"  # its apex is on ROT
    live = renderer.render(name, 2026120400)
    plan = zone.plan(
        platform, name, live, today="20261204", members={ROT: [LB2]}, renderer=renderer
    )
    assert plan.changed and plan.rotation_only and plan.problems == []
    assert plan.records == {"added": [], "removed": [f"{name}. 300 IN A 127.0.1.1"]}
    # A hand edit of the SOA beside it is no failover: planned in full, and refused.
    edited = live.replace(" 1209600 ", " 604800 ")
    plan = zone.plan(
        platform, name, edited, today="20261204", members={ROT: [LB2]}, renderer=renderer
    )
    assert not plan.rotation_only and any("SOA" in p for p in plan.problems)
    # Unchanged: nothing to do, whatever the renderer.
    plan = zone.plan(
        platform, "static.example", renderer.render("static.example", 5), renderer=renderer
    )
    assert not plan.changed


def test_with_serial_changes_the_soa_serial_and_nothing_else():
    text = zone.render(platform(), "paphosting.nl", BASE)
    new = zone.with_serial(text, BASE + 7)
    assert zone.serial_of("paphosting.nl", new) == BASE + 7
    assert new.replace(str(BASE + 7), str(BASE)) == text
    assert zone.with_serial(new, BASE) == text
    assert zone.with_serial("not a zone\n", 1) is None


MEMBER_SETS = [
    None,
    {ROT: [LB1]},
    {ROT: [LB2], "http1.l.paphosting.nl": ["lb3.paphosting.net"]},
    {"http1.l.paphosting.nl": ["lb2.paphosting.net", "lb1.paphosting.net"]},
]


def test_a_failover_change_found_without_a_render_is_the_full_plans():
    """``Renderer.rotation_change`` (Knot's failover: no render before the update) finds, from
    the file of any earlier membership, the serial and exactly the records the full plan finds."""
    platform = _hoster()
    renderer = zone.Renderer(platform)
    for name in sorted(platform.zones):
        for before in MEMBER_SETS:
            live = renderer.render(name, 2026120400 + 3, before)
            for after in MEMBER_SETS:
                found = renderer.rotation_change(name, live, after)
                plan = zone.plan(
                    platform, name, live, today="20261204", members=after, renderer=renderer
                )
                assert found is not None, (name, before)
                serial, records = found
                assert serial == 2026120403
                if plan.changed:
                    assert plan.rotation_only and records == plan.records, (name, before, after)
                    assert records["added"] or records["removed"]
                else:
                    assert records == {"added": [], "removed": []}, (name, before, after)


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t + "extra 300 IN A 198.18.0.9\n",  # a record added at the end
        lambda t: t.replace(" 1209600 ", " 604800 "),  # the SOA
        lambda t: t.replace("IN MX     10 mail", "IN MX     20 mail"),  # a static record
        lambda t: t.replace("    300 IN A      127.0.1.1", "   300 IN A      127.0.1.1"),  # format
        lambda t: t.replace("    300 IN A      127.0.1.2", "     60 IN A      127.0.1.2"),  # TTLs
        lambda t: t[:-1],  # the last newline
        lambda t: "; a comment\n" + t,
        lambda t: "",
    ],
)
def test_any_other_text_is_left_to_the_full_plan(edit):
    platform = _hoster()
    renderer = zone.Renderer(platform)
    name = "c1.example"  # its apex and www on ROT: lb1 127.0.1.1, lb2 127.0.1.2
    live = renderer.render(name, 2026120400)
    assert renderer.rotation_change(name, live, {ROT: [LB2]}) is not None
    edited = edit(live)
    assert edited != live
    assert renderer.rotation_change(name, edited, {ROT: [LB2]}) is None


def test_an_address_added_by_hand_at_a_rotation_owner_is_removed_as_the_full_plan_does():
    platform = _hoster()
    renderer = zone.Renderer(platform)
    name = "c1.example"
    live = renderer.render(name, 2026120400)
    edited = live.replace("127.0.1.2\n", "127.0.1.2\n@        300 IN A      198.18.0.7\n", 1)
    assert edited != live
    plan = zone.plan(
        platform, name, edited, today="20261204", members={ROT: [LB2]}, renderer=renderer
    )
    found = renderer.rotation_change(name, edited, {ROT: [LB2]})
    assert found == (2026120400, plan.records)
    assert f"{name}. 300 IN A 198.18.0.7" in plan.records["removed"]
