"""The failover decision: authentication, quorum, fail open, minimums, drains, determinism, persistence."""

import itertools
import json
import os

import pytest

from paphosting import decision, health, model, overlay
from paphosting.errors import PapError
from tests.conftest import rsa_key_pair
from tests.unit import platforms

LB1, LB2, LB3 = "lb1.paphosting.net", "lb2.paphosting.net", "lb3.paphosting.net"
NS1, NS2, NS3 = "ns1.paphosting.net", "ns2.paphosting.net", "ns3.paphosting.net"
ROT = "http0.l.paphosting.nl"
NOW = 1_000_000.0


def platform(**health_over):
    """Three watchers (ns1, ns2, ns3: a quorum of 2) and the rotation of lb1 and lb2."""
    pillar = platforms.pillar(servers=platforms.EVERY_SERVER)
    pillar["health"].update(health_over)
    return model.parse(pillar)


@pytest.fixture
def config():
    return decision.config_of(platform())


def three_load_balancers(rotation_min=1, platform_min=None):
    """The config with lb3 added to the rotation, its min_members ``rotation_min`` and, if given,
    the platform's health:min_members ``platform_min``."""
    pillar = platforms.pillar(servers=platforms.EVERY_SERVER)
    pillar["loadbalancers"][LB3] = {"address": "127.0.1.3"}
    pillar["rotations"][ROT]["members"].append(LB3)
    pillar["rotations"][ROT]["min_members"] = rotation_min
    if platform_min is not None:
        pillar["health"]["min_members"] = platform_min
    return decision.config_of(model.parse(pillar))


def view(state="up", flapping=False, detail=""):
    return {"state": state, "flapping": flapping, "since": NOW - 5, "detail": detail}


def report(watcher, seq, ts=NOW, rot=None, **lbs):
    """A parsed report; ``lbs`` maps a short name (lb1) to a state or a view."""
    names = {"lb1": LB1, "lb2": LB2, "lb3": LB3}
    views = {names.get(k, k): (v if isinstance(v, dict) else view(v)) for k, v in lbs.items()}
    return health.parse_report(
        health.report_text(watcher, seq, ts, "heartbeat", views, rotation=rot)
    )


def feed(state, config, *reports, now=NOW):
    """Accept and decide each report in turn; return the changes (None for no change)."""
    out = []
    for r in reports:
        decision.accept(state, r, config, now)
        out.append(decision.decide(state, config, now))
    return out


def both_watchers(state, config, seq, **lbs):
    """ns1 and ns2 (a quorum) report the same views; the changes, as ``feed``."""
    return feed(state, config, report(NS1, seq, **lbs), report(NS2, seq, **lbs))


def members(state, config):
    return decision.publish(state, config)["rotations"][ROT]["members"]


# ------------------------------------------------------------------ authentication


@pytest.fixture(scope="module")
def keys():
    out = {}
    for name in (NS1, NS2, "web1.paphosting.net"):
        out[name] = rsa_key_pair()
    return out


def signed(keys, signer, watcher, **lbs):
    text = health.report_text(
        watcher, 1, NOW, "transition", {LB1: view(lbs.get("lb1", "down"))}, [LB1]
    )
    return text, health.sign(text, keys[signer][0])


def test_authenticate_accepts_a_watcher_signed_report(keys, config):
    text, sig = signed(keys, NS1, NS1)
    body = decision.authenticate(text, sig, config, lambda w: keys[w][1])
    assert body["watcher"] == NS1 and body["lbs"][LB1]["state"] == "down"


@pytest.mark.parametrize(
    "signer, watcher, sig, keyring, reason",
    [
        ("web1.paphosting.net", "web1.paphosting.net", None, None, "is not a watcher"),
        ("web1.paphosting.net", NS1, None, None, "bad signature"),  # a webserver forging ns1
        (NS2, NS1, None, None, "bad signature"),  # another watcher's key
        (NS1, NS1, "", None, "not signed"),
        (NS1, NS1, None, {}, "no accepted key"),
    ],
)
def test_authenticate_rejects(keys, config, signer, watcher, sig, keyring, reason):
    text, good = signed(keys, signer, watcher)
    ring = {k: v[1] for k, v in keys.items()} if keyring is None else keyring
    with pytest.raises(decision.Rejected, match=reason):
        decision.authenticate(text, good if sig is None else sig, config, ring.get)


def test_authenticate_rejects_malformed_and_invalid_ids(keys, config):
    with pytest.raises(decision.Rejected, match="malformed"):
        decision.authenticate("{", "x", config, lambda w: None)
    text = health.report_text("../../etc/passwd", 1, NOW, "heartbeat", {LB1: view()})
    with pytest.raises(decision.Rejected, match="invalid minion id"):
        decision.authenticate(
            text, "x", config, lambda w: pytest.fail("no key lookup for a bad id")
        )


def test_accept_refuses_stale_future_replayed_and_duplicate(config):
    state = decision.new_state()
    limit = config["stale_after"]
    assert limit == 3 * 30 + 1 * 3
    with pytest.raises(decision.Rejected, match="stale"):
        decision.accept(state, report(NS1, 5, ts=NOW - limit - 1, lb1="down"), config, NOW)
    with pytest.raises(decision.Rejected, match="future"):
        decision.accept(state, report(NS1, 5, ts=NOW + limit + 1, lb1="down"), config, NOW)
    decision.accept(state, report(NS1, 5, lb1="down"), config, NOW)
    with pytest.raises(decision.Rejected, match="duplicate"):
        decision.accept(state, report(NS1, 5, lb1="down"), config, NOW)
    with pytest.raises(decision.Rejected, match="replayed or out-of-order"):
        decision.accept(state, report(NS1, 4, lb1="up"), config, NOW)
    assert state["views"][NS1]["seq"] == 5


def test_accept_drops_unknown_load_balancers(config):
    state = decision.new_state()
    dropped = decision.accept(
        state, report(NS1, 1, lb1="down", **{"lb9.example": "down"}), config, NOW
    )
    assert dropped == ["lb9.example"]
    assert list(state["views"][NS1]["lbs"]) == [LB1]
    with pytest.raises(decision.Rejected, match="no known load balancer"):
        decision.accept(state, report(NS2, 1, **{"lb9.example": "down"}), config, NOW)


# ------------------------------------------------------------------ quorum


def test_one_of_three_watchers_changes_nothing(config):
    state = decision.new_state()
    assert feed(state, config, report(NS1, 1, lb1="down", lb2="up")) == [None]
    assert members(state, config) == [LB1, LB2]
    assert state["version"] == 0
    assert state["verdicts"][LB1]["verdict"] == "up"
    assert "undecided" in state["verdicts"][LB1]["reason"]


def test_quorum_takes_out_and_puts_back(config):
    state = decision.new_state()
    changes = feed(
        state,
        config,
        report(NS1, 1, lb1="down", lb2="up"),
        report(NS2, 1, lb1=view("down", detail="ConnectionRefusedError"), lb2="up"),
        report(NS3, 1, lb1="down", lb2="up"),
    )
    assert changes[0] is None and changes[2] is None
    ch = changes[1]
    assert ch["version"] == 1
    assert ch["changes"] == {ROT: {"added": [], "removed": [LB1], "members": [LB2]}}
    assert ch["reasons"][LB1].startswith(f"down for 2 of 3 watchers ({NS1}, {NS2})")
    assert members(state, config) == [LB2]
    # One watcher sees it back: not enough to return (2 still say down).
    assert feed(state, config, report(NS1, 2, lb1="up", lb2="up")) == [None]
    # Two see it back: only one could still say down, below the quorum: back in.
    ch = feed(state, config, report(NS2, 2, lb1="up", lb2="up"))[0]
    assert ch["changes"][ROT]["added"] == [LB1] and ch["version"] == 2
    assert members(state, config) == [LB1, LB2]


def test_explicit_quorum_of_one(keys):
    config = decision.config_of(platform(quorum=1))
    state = decision.new_state()
    assert feed(state, config, report(NS1, 1, lb1="down", lb2="up"))[0]["changes"][ROT][
        "removed"
    ] == [LB1]


def test_undecided_keeps_the_previous_verdict(config):
    state = decision.new_state()
    both_watchers(state, config, 1, lb1="down", lb2="up")
    assert members(state, config) == [LB2]
    # ns2 changes its mind; ns3 never reported: 1 down, 1 up, 1 silent: stays down.
    assert feed(state, config, report(NS2, 2, lb1="up", lb2="up")) == [None]
    assert members(state, config) == [LB2]
    assert "stays down" in state["verdicts"][LB1]["reason"]


def test_unknown_views_abstain(config):
    state = decision.new_state()
    feed(
        state,
        config,
        report(NS1, 1, lb1="down", lb2="up"),
        report(NS2, 1, lb1="unknown", lb2="up"),
        report(NS3, 1, lb1="unknown", lb2="up"),
    )
    assert members(state, config) == [LB1, LB2]


def test_stale_views_do_not_vote(config):
    state = decision.new_state()
    both_watchers(state, config, 1, lb1="down", lb2="up")
    assert members(state, config) == [LB2]
    later = NOW + config["stale_after"] + 1
    # ns1 and ns2 went silent; ns3 alone says up: it cannot bring lb1 back by itself.
    feed(state, config, report(NS3, 1, ts=later, lb1="up", lb2="up"), now=later)
    assert members(state, config) == [LB2]
    # ns1 comes back and says up: 2 of 3, back in.
    feed(state, config, report(NS1, 2, ts=later, lb1="up", lb2="up"), now=later)
    assert members(state, config) == [LB1, LB2]


def test_reports_from_watchers_no_longer_configured_do_not_vote(config):
    state = decision.new_state()
    both_watchers(state, config, 1, lb1="down", lb2="up")
    smaller = dict(config, watchers=[NS2, NS3], quorum=2)
    decision.decide(state, smaller, NOW)
    assert state["verdicts"][LB1]["verdict"] == "down"  # ns2 down, ns3 silent: undecided, stays
    feed(state, smaller, report(NS3, 1, lb1="up", lb2="up"))
    assert members(state, smaller) == [LB1, LB2]  # ns1's vote no longer counts


# ------------------------------------------------------------------ fail open and minimums


def test_all_down_keeps_them_all(config):
    state = decision.new_state()
    changes = both_watchers(state, config, 1, lb1="down", lb2="up")
    assert members(state, config) == [LB2]
    changes = both_watchers(state, config, 2, lb1="down", lb2="down")
    assert changes[0] is None  # lb2 down for one watcher only
    ch = changes[1]
    assert ch["changes"][ROT]["added"] == [LB1]
    assert "fail open" in ch["changes"][ROT]["note"]
    assert "(fail open)" in ch["reasons"][LB1]
    assert members(state, config) == [LB1, LB2]
    # lb2 recovers: lb1 leaves again.
    ch = both_watchers(state, config, 3, lb1="down", lb2="up")[1]
    assert ch["changes"][ROT]["removed"] == [LB1]


@pytest.mark.parametrize(
    ("minimum", "after_lb1_down", "note"),
    [
        pytest.param({"rotation_min": 2}, [LB2, LB3], "below the minimum of 2", id="rotation"),
        # Three is every member: the rotation never changes, so nothing is published.
        pytest.param({"platform_min": 3}, [LB1, LB2, LB3], None, id="platform floor"),
    ],
)
def test_a_rotation_keeps_its_minimum(minimum, after_lb1_down, note):
    """Below its minimum (the rotation's min_members, or the platform's health:min_members when
    that is larger) a rotation fails open: it keeps every member."""
    config = three_load_balancers(**minimum)
    state = decision.new_state()
    both_watchers(state, config, 1, lb1="down", lb2="up", lb3="up")
    assert members(state, config) == after_lb1_down
    both_watchers(state, config, 2, lb1="down", lb2="down", lb3="up")
    assert members(state, config) == [LB1, LB2, LB3]  # 1 up < minimum: fail open
    if note is None:
        assert state["last_change"] is None
    else:
        assert note in state["last_change"]["changes"][ROT]["note"]


def test_flapping_views_count_as_down(config):
    state = decision.new_state()
    ch = feed(
        state,
        config,
        report(NS1, 1, lb1=view("down", True), lb2="up"),
        report(NS2, 1, lb1=view("down", True), lb2="up"),
    )[1]
    assert ch["reasons"][LB1].startswith("flapping for 2 of 3 watchers")
    assert members(state, config) == [LB2]


def _switch_lb1(state, config, states, start=NOW):
    """ns1 and ns2 report lb1 in each of ``states`` in turn, 10 s apart (lb2 up); the changes."""
    changes = []
    for i, st in enumerate(states):
        t = start + 10 * i
        changes += feed(
            state,
            config,
            report(NS1, 10 + i, t, lb1=st, lb2="up"),
            report(NS2, 10 + i, t, lb1=st, lb2="up"),
            now=t,
        )
    return changes


def test_the_masters_hold_a_load_balancer_whose_verdict_switches_too_often(config):
    state = decision.new_state()  # window 300 s, more than 4 switches hold it for 120 s
    _switch_lb1(state, config, ["up", "down", "up", "down", "up", "down", "up"])
    assert state["verdicts"][LB1]["verdict"] == "down"
    assert state["verdicts"][LB1]["reason"].startswith("flapping: the watchers' verdict switched")
    assert members(state, config) == [LB2]


def test_a_load_balancer_coming_up_for_the_first_time_is_no_switch_for_the_masters(config):
    state = decision.new_state()
    # Down at the platform's start (no webserver yet), up, then four switches: not more than 4.
    _switch_lb1(state, config, ["down", "up", "down", "up", "down", "up"])
    assert state["verdicts"][LB1]["verdict"] == "up"
    assert members(state, config) == [LB1, LB2]


# ------------------------------------------------------------------ drain and restore


def test_drain_and_restore(config):
    state = decision.new_state()
    ch = decision.drain(state, config, LB1, NOW, reason="kernel upgrade")
    assert ch["changes"][ROT]["removed"] == [LB1]
    assert ch["reasons"][LB1] == "drained: kernel upgrade"
    assert ch["cause"] == f"drain {LB1}" and ch["version"] == 1
    assert decision.drain(state, config, LB1, NOW) is None  # already drained
    # Reports that say lb1 is up do not bring it back.
    feed(state, config, *(report(w, 1, lb1="up", lb2="up") for w in (NS1, NS2, NS3)))
    assert members(state, config) == [LB2]
    ch = decision.restore(state, config, LB1, NOW)
    assert ch["changes"][ROT]["added"] == [LB1] and ch["version"] == 2
    assert decision.restore(state, config, LB1, NOW) is None


def test_a_drain_knows_when_the_last_cached_answer_naming_it_expires(config):
    state = decision.new_state()
    decision.drain(state, config, LB1, NOW)
    ttl = config["rotations"][ROT]["ttl"]
    assert ttl == 300
    stopped = {NS1: NOW + 0.4, NS2: NOW + 1.5, NS3: NOW + 0.9}
    d = decision.note_drain_expiry(state, config, LB1, stopped, NOW + 2)
    # The last nameserver to stop, plus the TTL: a client may have cached its answer just before.
    assert d["stopped"] == NOW + 1.5 and d["expires"] == NOW + 1.5 + ttl
    assert "(in 300 s)" in decision.drain_expiry_text(d, NOW + 2)
    assert "safe to power off" in decision.drain_expiry_text(d, NOW + 1.5 + ttl)
    text = decision.status_text(state, config, NOW + 2)
    assert f"Drained: {LB1}" in text and "expire at" in text


def test_a_drain_still_served_somewhere_has_no_expiry_yet(config):
    state = decision.new_state()
    decision.drain(state, config, LB1, NOW)
    d = decision.note_drain_expiry(state, config, LB1, {NS1: NOW, NS2: None, NS3: None}, NOW + 30)
    assert d["pending"] == [NS2, NS3] and "expires" not in d
    assert f"still served by {NS2}, {NS3}" in decision.status_text(state, config, NOW + 31)
    # A later check that sees every nameserver stopped gives the expiry.
    d = decision.note_drain_expiry(
        state, config, LB1, {NS1: NOW, NS2: NOW + 40, NS3: NOW + 41}, NOW + 42
    )
    assert "pending" not in d and d["expires"] == NOW + 41 + 300
    assert decision.note_drain_expiry(state, config, LB2, {NS1: NOW}, NOW) is None


def test_drain_refused_below_minimum_unless_forced(config):
    state = decision.new_state()
    both_watchers(state, config, 1, lb1="down", lb2="up")
    with pytest.raises(decision.Rejected, match="below its minimum"):
        decision.drain(state, config, LB2, NOW)
    assert state["drains"] == {}
    ch = decision.drain(state, config, LB2, NOW, force=True)
    # lb2 drained, lb1 down: the pool is lb1 alone, kept by fail open.
    assert members(state, config) == [LB1]
    assert ch["changes"][ROT] == {
        "added": [LB1],
        "removed": [LB2],
        "members": [LB1],
        "note": ch["changes"][ROT]["note"],
    }


def test_drain_everything_forced_keeps_the_rotation_non_empty(config):
    state = decision.new_state()
    decision.drain(state, config, LB1, NOW)
    decision.drain(state, config, LB2, NOW, force=True)
    assert members(state, config) == [LB1, LB2]


def test_drain_unknown_load_balancer(config):
    with pytest.raises(decision.Rejected, match="not a load balancer"):
        decision.drain(decision.new_state(), config, "lb9.example", NOW)
    with pytest.raises(decision.Rejected, match="not a load balancer"):
        decision.restore(decision.new_state(), config, "lb9.example", NOW)


# ------------------------------------------------------------------ determinism and versions


STORY = [
    report(NS1, 1, ts=NOW - 3, lb1="down", lb2="up"),
    report(NS2, 1, ts=NOW - 2, lb1="down", lb2="up"),
    report(NS3, 1, ts=NOW - 2, lb1="up", lb2="up"),
    report(NS3, 2, ts=NOW - 1, lb1="down", lb2="down"),
    report(NS1, 2, ts=NOW, lb1="down", lb2="up"),
    report(NS2, 2, ts=NOW, lb1=view("down", True), lb2="up"),
]


def _final(order, config):
    state = decision.new_state()
    for r in order:
        try:
            decision.accept(state, r, config, NOW)
        except decision.Rejected:
            continue  # an older report after a newer one from the same watcher
        decision.decide(state, config, NOW)
    return decision.publish(state, config)["rotations"], {
        lb: v["verdict"] for lb, v in state["verdicts"].items()
    }


def test_same_reports_in_any_order_give_the_same_outcome(config):
    expected = _final(STORY, config)
    assert expected == ({ROT: {"members": [LB2]}}, {LB1: "down", LB2: "up"})
    for order in itertools.permutations(STORY):
        assert _final(order, config) == expected


def test_two_masters_agree_on_membership_and_version(config):
    a, b = decision.new_state(), decision.new_state()
    reports = [report(w, 1, lb1="down", lb2="up") for w in (NS1, NS2, NS3)]
    feed(a, config, *reports)
    feed(b, config, *reversed(reports))
    assert (
        decision.publish(a, config)
        == decision.publish(b, config)
        == {"version": 1, "rotations": {ROT: {"members": [LB2]}}}
    )


def test_version_only_moves_on_a_membership_change(config):
    state = decision.new_state()
    for seq in range(1, 4):
        feed(state, config, *(report(w, seq, lb1="up", lb2="up") for w in (NS1, NS2, NS3)))
    assert state["version"] == 0 and state["last_change"] is None


def test_version_continues_from_what_the_watchers_hold(config):
    """A master that missed changes publishes a newer number than the fleet's, never an older one."""
    state = decision.new_state()
    held = {"version": 41, "digest": "somethingelse"}
    ch = both_watchers(state, config, 1, rot=held, lb1="down", lb2="up")[1]
    assert ch["version"] == 42


def test_version_adopted_when_the_watchers_hold_the_same_membership(config):
    state = decision.new_state()
    same = {"version": 7, "digest": overlay.digest({ROT: {"members": [LB2, LB1]}})}
    assert feed(state, config, report(NS1, 1, rot=same, lb1="up", lb2="up")) == [None]
    assert decision.publish(state, config)["version"] == 7


def test_publish_without_state_is_the_configured_rotation(config):
    assert decision.publish(decision.new_state(), config) == {
        "version": 0,
        "rotations": {ROT: {"members": [LB1, LB2]}},
    }


def test_publish_follows_the_current_pillar(config):
    state = decision.new_state()
    both_watchers(state, config, 1, lb1="down", lb2="up")
    smaller = json.loads(json.dumps(config))
    smaller["rotations"][ROT]["members"] = [LB2]
    assert decision.publish(state, smaller)["rotations"][ROT]["members"] == [LB2]
    # lb1 back in the pillar's rotation: still out while down.
    assert decision.publish(state, config)["rotations"][ROT]["members"] == [LB2]


def test_pillar_change_is_a_recorded_change(config):
    state = decision.new_state()
    decision.decide(state, config, NOW)
    smaller = json.loads(json.dumps(config))
    smaller["rotations"][ROT]["members"] = [LB2]
    ch = decision.decide(state, smaller, NOW)
    assert ch["changes"][ROT]["removed"] == [LB1]
    assert ch["reasons"][LB1] == "no longer a member in the pillar"


# ------------------------------------------------------------------ persistence and status


def test_persistence_round_trip(tmp_path, config):
    path = str(tmp_path / "state" / "rotation.json")
    assert decision.load(path) == decision.new_state()
    state = decision.new_state()
    both_watchers(state, config, 1, lb1="down", lb2="up")
    decision.drain(state, config, LB2, NOW, reason="maint", force=True)
    with decision.locked(path):
        decision.save(path, state)
    assert sorted(os.listdir(tmp_path / "state")) == ["rotation.json", "rotation.json.lock"]
    again = decision.load(path)
    assert again == state
    # The loaded state decides exactly as the original.
    r = report(NS3, 1, lb1="up", lb2="up")
    feed(state, config, r)
    feed(again, config, r)
    assert again == state


def test_load_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "rotation.json"
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(PapError, match="not a rotation state"):
        decision.load(str(path))


def test_status_text_is_a_table(config):
    state = decision.new_state()
    feed(
        state,
        config,
        report(NS1, 1, lb1=view("down", detail="ConnectionRefusedError"), lb2="up"),
        report(NS2, 1, lb1=view("down", True), lb2="up"),
    )
    decision.drain(state, config, LB2, NOW, reason="maint", force=True)
    text = decision.status_text(state, config, NOW + 1)
    lines = text.splitlines()
    assert lines[0].split() == [
        "LOAD",
        "BALANCER",
        NS1,
        NS2,
        NS3,
        "VERDICT",
        "SINCE",
        "IN",
        "ROTATION",
    ]
    assert lines[1].split()[:5] == [LB1, "down", "flapping", "-", "down"]
    assert lines[2].split()[:5] == [LB2, "up", "up", "-", "drained"]
    assert any(
        line.startswith("Drained: lb2.paphosting.net") and "(maint)" in line for line in lines
    )
    assert f"Last change: version {state['version']}" in text
    assert f"  {LB2}: drained: maint" in lines
    assert any(line.startswith(NS3) and "never reported" in line for line in lines)


def test_state_path():
    assert (
        decision.state_path({"cachedir": "/var/cache/salt/master"})
        == "/var/cache/salt/master/paphosting/rotation.json"
    )
    assert (
        decision.state_path({"cachedir": "/x", "paphosting_rotation_state": "/srv/r.json"})
        == "/srv/r.json"
    )


def test_claimed_watcher():
    assert (
        decision.claimed_watcher(health.report_text(NS1, 1, NOW, "heartbeat", {LB1: view()})) == NS1
    )
    with pytest.raises(decision.Rejected, match="malformed"):
        decision.claimed_watcher(None)


def test_describe(config):
    state = decision.new_state()
    ch = decision.drain(state, config, LB1, NOW, reason="maint")
    assert decision.describe(ch) == f"{ROT}: -{LB1} (version 1): {LB1}: drained: maint"


def test_a_master_that_missed_a_change_catches_up_without_a_new_version(config):
    """CH took lb1 out (version 5) while NL was down; NL comes back with its old state."""
    nl = decision.new_state()
    nl["version"] = 4
    held = {"version": 5, "digest": overlay.digest({ROT: {"members": [LB2]}})}
    changes = feed(
        nl, config, *(report(w, 1, rot=held, lb1="down", lb2="up") for w in (NS1, NS2, NS3))
    )
    ch = changes[1]
    assert ch["version"] == 5 and "catching up with version 5" in ch["cause"]
    assert decision.publish(nl, config) == {"version": 5, "rotations": {ROT: {"members": [LB2]}}}


def test_no_catching_up_with_a_version_older_than_the_newest_held(config):
    """The watchers hold version 5 for lb2 alone, but one already holds version 6 (both back):
    a master now taking lb1 out publishes version 7, not 5 again."""
    nl = decision.new_state()
    nl["version"] = 4
    old = {"version": 5, "digest": overlay.digest({ROT: {"members": [LB2]}})}
    newer = {"version": 6, "digest": overlay.digest({ROT: {"members": [LB1, LB2]}})}
    changes = feed(
        nl,
        config,
        report(NS1, 1, rot=old, lb1="down", lb2="up"),
        report(NS2, 1, rot=newer, lb1="down", lb2="up"),
    )
    assert changes[1]["version"] == 7 and "catching up" not in changes[1]["cause"]


def test_held_rotation_file_keeps_the_newest(tmp_path):
    path = overlay.held_path(str(tmp_path / "cache"))
    assert overlay.load_held(path) is None
    v5 = overlay.held_of({"version": 5, "rotations": {ROT: {"members": [LB2]}}})
    assert v5 == {
        "version": 5,
        "digest": overlay.digest({ROT: {"members": [LB2]}}),
        "rotations": {ROT: {"members": [LB2]}},
    }
    assert overlay.hold(path, v5) == v5
    v4 = overlay.held_of({"version": 4, "rotations": {ROT: {"members": [LB1, LB2]}}})
    assert overlay.hold(path, v4) == v5 and overlay.load_held(path) == v5
    assert overlay.hold(path, None) == v5
    v6 = {"version": 6, "digest": "abc"}
    assert overlay.hold(path, v6) == v6 and overlay.load_held(path) == v6
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("{not json")
    assert overlay.load_held(path) is None


def test_held_rotation_with_members_that_do_not_match_its_digest_keeps_only_the_version(tmp_path):
    path = overlay.held_path(str(tmp_path / "cache"))
    held = overlay.held_of({"version": 5, "rotations": {ROT: {"members": [LB2]}}})
    overlay.hold(path, dict(held, rotations={ROT: {"members": [LB1, LB2]}}))
    assert overlay.load_held(path) == {"version": 5, "digest": held["digest"]}


def test_effective_rotation_is_the_newer_of_pillar_and_held(config):
    configured = {n: r["members"] for n, r in config["rotations"].items()}
    pillar = {"version": 4, "rotations": {ROT: {"members": [LB1, LB2]}}}
    newer = overlay.held_of({"version": 5, "rotations": {ROT: {"members": [LB2]}}})
    older = overlay.held_of({"version": 3, "rotations": {ROT: {"members": [LB1]}}})
    assert overlay.effective(pillar, newer, configured) == {
        "version": 5,
        "rotations": {ROT: {"members": [LB2]}},
    }
    assert overlay.effective(pillar, older, configured) is pillar
    assert overlay.effective(pillar, None, configured) is pillar
    assert overlay.effective(None, newer, configured)["version"] == 5
    # Same version: the pillar's (both masters publish the same membership for one version).
    same = overlay.held_of({"version": 4, "rotations": {ROT: {"members": [LB2]}}})
    assert overlay.effective(pillar, same, configured) is pillar
    # A held rotation without members (older file format) or that no longer fits the platform
    # (a rotation or a member the pillar dropped) is ignored.
    assert overlay.effective(pillar, {"version": 9, "digest": "x"}, configured) is pillar
    gone = overlay.held_of({"version": 9, "rotations": {"gone.l.example": {"members": [LB2]}}})
    assert overlay.effective(pillar, gone, configured) is pillar
    stranger = overlay.held_of({"version": 9, "rotations": {ROT: {"members": ["lb9.example"]}}})
    assert overlay.effective(pillar, stranger, configured) is pillar


def test_held_of_and_newest_held():
    assert overlay.held_of(None) is None
    assert overlay.held_of({"version": "7", "rotations": {}}) is None
    assert overlay.held_of({"version": 7}) is None
    a, b = {"version": 3, "digest": "a"}, {"version": 8, "digest": "b"}
    assert overlay.newest_held(a, None, b) == b
    assert overlay.newest_held(None, None) is None


def test_a_lagging_nameserver_is_pushed_again_at_most_once_per_heartbeat(config):
    state = decision.new_state()
    now = NOW
    for w in config["watchers"]:
        decision.accept(state, report(w, 1, now, lb1="up", lb2="up"), config, now)
    decision.decide(state, config, now)
    state["version"] = 4
    ns = config["nameservers"][0]
    current = overlay.digest(decision.publish(state, config)["rotations"])
    state["views"][ns]["rotation"] = {"version": 3, "digest": "x"}
    assert "holds version 3" in decision.lagging(state, config, ns, now)
    state["resyncs"][ns] = now
    assert decision.lagging(state, config, ns, now + 1) is None  # just pushed
    state["views"][ns]["rotation"] = {"version": 4, "digest": current}
    state["views"][ns]["serving"] = {"digest": "another"}
    later = now + config["stale_after"]
    assert "serves another membership" in decision.lagging(state, config, ns, later)
    state["views"][ns]["serving"] = {"digest": current}
    assert decision.lagging(state, config, ns, later) is None
    assert decision.lagging(state, config, "lb1.paphosting.net", later) is None  # no nameserver
    text = decision.status_text(state, config, later)
    assert "NAMESERVER" in text and ns in text


# --- the masters' own flap damping ---------------------------------------------------------------


def test_a_quorum_verdict_that_switches_too_often_is_held_out_until_stable():
    """Watchers whose own damping does not trip (each sees few switches) can still switch the
    quorum's verdict back and forth: more than max_transitions switches within the window hold
    the load balancer out until its verdict has been up for ``hold`` seconds."""
    config = decision.config_of(platform(flap={"window": 60, "max_transitions": 3, "hold": 20}))
    state = decision.new_state()
    seq = itertools.count(1)
    changes = []
    t = NOW
    for i in range(9):  # up (the watchers' first verdict), down, up, down, ... every 2 s
        s = "up" if i % 2 == 0 else "down"
        t += 2
        reports = [report(w, next(seq), ts=t, lb1=s) for w in (NS1, NS2, NS3)]
        changes += [c for c in feed(state, config, *reports, now=t) if c]
    members = [c["changes"][ROT]["members"] for c in changes]
    # Out, in, out; the fourth switch (in) is one more than max_transitions: held, it stays out.
    assert len(members) == 3, members
    assert LB1 not in state["rotations"][ROT]["members"]
    assert state["verdicts"][LB1]["reason"].startswith("flapping: the watchers' verdict switched")
    # Up without a switch for less than `hold`: still out; then back in.
    t += 10
    feed(state, config, *[report(w, next(seq), ts=t, lb1="up") for w in (NS1, NS2, NS3)], now=t)
    assert LB1 not in state["rotations"][ROT]["members"]
    t += 11
    ch = feed(
        state, config, *[report(w, next(seq), ts=t, lb1="up") for w in (NS1, NS2, NS3)], now=t
    )
    assert any(c and LB1 in c["changes"][ROT]["added"] for c in ch), ch
    assert state["verdicts"][LB1]["verdict"] == "up"


def test_a_load_balancer_that_goes_down_is_never_held_in():
    """The damping only ever keeps a load balancer out: a down verdict always takes effect."""
    config = decision.config_of(platform(flap={"window": 60, "max_transitions": 2, "hold": 30}))
    state = decision.new_state()
    seq = itertools.count(1)
    t = NOW
    for i in range(7):
        s = "down" if i % 2 == 0 else "up"
        t += 1
        feed(state, config, *[report(w, next(seq), ts=t, lb1=s) for w in (NS1, NS2, NS3)], now=t)
        if s == "down":
            assert LB1 not in state["rotations"][ROT]["members"]


def nameserver_row(text, ns):
    """``ns``'s row of the NAMESERVER table of a status text."""
    table = text.split("NAMESERVER", 1)[1]
    return next(line for line in table.splitlines() if line.startswith(ns))


def test_status_does_not_call_lagging_a_nameserver_whose_last_report_predates_the_change(config):
    """Right after a change every nameserver's last report still holds the previous version: the
    status says the report is older than the change (the next heartbeat shows it), and LAGS only
    for a report made after the change that still holds an older version."""
    state = decision.new_state()
    for w in config["watchers"]:
        decision.accept(state, report(w, 1, NOW, lb1="up", lb2="up"), config, NOW)
    decision.decide(state, config, NOW)
    ns = config["nameservers"][0]
    state["version"] = 4
    state["last_change"] = {
        "version": 4,
        "at": NOW + 5,
        "cause": "test",
        "changes": {},
        "reasons": {},
    }
    state["views"][ns]["rotation"] = {"version": 3, "digest": "x"}
    state["views"][ns]["ts"] = NOW + 1  # before the change
    row = nameserver_row(decision.status_text(state, config, NOW + 6), ns)
    assert "from before version 4" in row and "LAGS" not in row, row
    state["views"][ns]["ts"] = NOW + 10  # after it, still holding 3
    row = nameserver_row(decision.status_text(state, config, NOW + 11), ns)
    assert "LAGS: holds 3 of 4" in row, row
