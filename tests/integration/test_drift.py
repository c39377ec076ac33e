"""Drift correction: a highstate on every minion's schedule puts hand edits and stopped services
right, reports what it changed, and the masters list it (issue 6).

Two masters (``tests/integration/multimaster.py``) serving one pillar folder; a load balancer
running real haproxy and two nameservers (NSD and Knot, the failover's watchers). The test pillar
schedules the drift highstate every 10 s without splay.
"""

import copy
import json
import os
import re
import time

import pytest

from harness import services
from paphosting import daemon, dnsserver, drift, haproxy, health, model
from tests.integration import multimaster
from tests.integration.multimaster import ROTATION, ZONE

DOMAIN = "drift.test"
LB1 = f"lb1.{DOMAIN}"
NS1, NS2 = f"ns1.{DOMAIN}", f"ns2.{DOMAIN}"
MINIONS = [LB1, NS1, NS2]
INTERVAL = 10  # the model's minimum


@pytest.fixture(scope="module")
def paphosting(loopback, tmp_path_factory):
    pillar = multimaster.platform_pillar(loopback, DOMAIN, lbs=1)
    pillar["schedule"] = {"enabled": False, "highstate_interval": INTERVAL, "splay": 0}
    with services.webservers(pillar, tmp_path_factory.mktemp("webapps")):
        yield pillar


@pytest.fixture(scope="module")
def parsed(paphosting):
    return model.parse(paphosting)


def serve_revision(store, number):
    """Make ``number`` the live pillar revision of a master's svnpillar store (as a push would;
    the pillar itself comes from the shared folder: only ``paphosting_revision`` differs)."""
    rev = store / "pillar" / f"rev-{number}"
    rev.mkdir(parents=True, exist_ok=True)
    tmp = store / "pillar" / "live.new"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(rev)
    tmp.replace(store / "pillar" / "live")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Each master's svnpillar store: NL serves r6, CH r5 (the ``svnpillar`` ext_pillar)."""
    out = {name: tmp_path_factory.mktemp(f"store-{name}") for name in multimaster.NAMES}
    serve_revision(out["nl"], 6)
    serve_revision(out["ch"], 5)
    return out


@pytest.fixture(scope="module")
def pair(request, salt_factories, tmp_path_factory, loopback, paphosting, stores):
    started = []
    try:
        with multimaster.environment(
            request,
            salt_factories,
            tmp_path_factory,
            loopback,
            MINIONS,
            paphosting,
            master_overrides=lambda name: {"paphosting_svn": {"store": str(stores[name])}},
        ) as pair:
            started.append(pair)
            pair.nl.highstate(MINIONS)
            yield pair
    finally:
        # Once the minions are stopped: a scheduled highstate would start the services again.
        for p in started:
            multimaster.stop_services(p, paphosting)


@pytest.fixture
def scheduled(pair, paphosting):
    """The drift highstate scheduled on every minion (by the minion SLS), removed afterwards."""

    def schedule(enabled):
        pillar = copy.deepcopy(paphosting)
        pillar["schedule"]["enabled"] = enabled
        pair.write_pillar(pillar)
        ret = pair.nl.salt(MINIONS, "state.apply", "minion")
        for mid, r in ret.items():
            (state,) = r.values()
            assert state["result"] is True, f"{mid}: {state}"

    schedule(True)
    try:
        yield
    finally:
        schedule(False)


def zone_path(pair, parsed, ns):
    return dnsserver.zone_path(parsed.nameservers[ns].server, ZONE, str(pair.root(ns)))


def served_mail(parsed, ns):
    resp = dnsserver.query(parsed.nameservers[ns], f"mail.{ZONE}.", "A")
    return None if resp is None else [rr.address for rrset in resp.answer for rr in rrset]


def test_schedule_is_configured_by_the_minion_sls(pair, scheduled):
    for view in pair.views.values():
        listed = view.salt(MINIONS, "schedule.list", return_yaml=False)
        for mid in MINIONS:
            job = listed[mid]["paphosting-drift"]
            assert job["function"] == "drift.highstate" and job["seconds"] == INTERVAL
            # Not at once when scheduled or when the minion starts: after one interval.
            assert job["run_on_start"] is False


def test_a_lost_drift_schedule_is_found_and_scheduled_again(pair, scheduled):
    """The drift job disappears from one minion (as Salt 3008 loses it on some minions when a
    master restarts): ``drift.heal`` on either master finds it and schedules it again; where
    nothing is missing it does nothing."""
    gone = pair.nl.salt(LB1, "schedule.delete", "paphosting-drift", persist=True)
    assert gone["result"] is True, gone
    assert pair.nl.salt(LB1, "drift.scheduled") == {"present": False}
    healed = pair.ch.run("drift.heal")
    assert healed["missing"] == [LB1] and healed["repaired"] == {LB1: "scheduled again"}, healed
    for view in pair.views.values():
        assert view.salt(LB1, "drift.scheduled") == {"present": True}
    assert pair.nl.run("drift.heal")["missing"] == []


def test_scheduled_highstate_restores_edits_and_services(
    pair, parsed, paphosting, scheduled, event_listener
):
    published = {name: view.published(paphosting, ROTATION) for name, view in pair.views.items()}
    rotation_answers = {
        ns: dnsserver.query(parsed.nameservers[ns], ROTATION + ".", "A").answer for ns in (NS1, NS2)
    }
    cfg_path = haproxy.layout(str(pair.root(LB1)))["config"]
    with open(cfg_path, encoding="utf-8") as fh:
        cfg = fh.read()
    zone = zone_path(pair, parsed, NS1)
    with open(zone, encoding="utf-8") as fh:
        zone_text = fh.read()
    right = served_mail(parsed, NS1)
    assert right and served_mail(parsed, NS2) == right

    start = time.time()
    # A load balancer's haproxy.cfg edited by hand (not reloaded), a zone edited by hand and
    # reloaded, a DNS server stopped.
    edited_cfg = cfg.replace("timeout client 30000", "timeout client 1234")
    assert edited_cfg != cfg
    with open(cfg_path, "w", encoding="utf-8") as fh:
        fh.write(edited_cfg)
    wrong = "127.0.0.99"
    edited_zone = re.sub(r"(\nmail\s+\d+\s+IN\s+A\s+)\S+", rf"\g<1>{wrong}", zone_text)
    assert edited_zone != zone_text
    with open(zone, "w", encoding="utf-8") as fh:
        fh.write(edited_zone)
    dnsserver.run_control(
        dnsserver.zone_reload_command(parsed.nameservers[NS1], ZONE, str(pair.root(NS1)))
    )
    pair.nl.wait(lambda: served_mail(parsed, NS1) == [wrong], "ns1 to serve the hand-edited zone")
    daemon.stop(dnsserver.daemon(parsed.nameservers[NS2], str(pair.root(NS2))))
    assert dnsserver.served_serial(parsed.nameservers[NS2], ZONE) is None

    def restored():
        with open(cfg_path, encoding="utf-8") as fh:
            if fh.read() != cfg:
                return False
        return served_mail(parsed, NS1) == right and served_mail(parsed, NS2) == right

    pair.nl.wait(restored, "the scheduled highstates to restore all three", timeout=4 * INTERVAL)

    # Each minion reported what it changed, to both masters.
    tags = {mid: f"paphosting/drift/{mid}" for mid in MINIONS}

    def reported():
        seen = {}
        for name, master in pair.masters.items():
            for mid, tag in tags.items():
                events = event_listener.get_events([(master.id, tag)], after_time=start)
                if not events:
                    return None
                seen[(name, mid)] = max(events, key=lambda e: e.stamp).data
        return seen

    events = pair.nl.wait(reported, "a drift event from every minion at both masters")
    reports = {mid: json.loads(events[("nl", mid)]["data"]["report"]) for mid in MINIONS}
    assert {mid: r["minion"] for mid, r in reports.items()} == {mid: mid for mid in MINIONS}
    changed = {mid: {i["state"] for i in reports[mid]["summary"]["changed"]} for mid in MINIONS}
    assert "haproxy_cfg.managed" in changed[LB1]
    assert "dns_zone.managed" in changed[NS1]
    assert "dns_server.running" in changed[NS2]

    # Both masters recorded it; drift.report lists who drifted, what changed and when.
    for view in pair.views.values():
        history = view.run("drift.history")
        recent = [h for h in history if h["time"] >= start - 1]
        assert {h["minion"] for h in recent} >= set(MINIONS), json.dumps(recent, indent=1)
        ret = view.run_cli("drift.report")
        assert ret.returncode == 0
        text = ret.stdout
        # Every minion's last run is listed, the ones that changed nothing too.
        for mid in MINIONS:
            assert re.search(rf"^{re.escape(mid)}\s+\d{{4}}-\d\d-\d\d .*\bok$", text, re.M), text
        assert re.search(
            rf"{re.escape(LB1)}\s+changed\s+haproxy_cfg.managed loadbalancer-haproxy-config", text
        ), text
        assert re.search(
            rf"{re.escape(NS1)}\s+changed\s+dns_zone.managed nameserver-zones \({re.escape(ZONE)}\)",
            text,
        ), text
        assert re.search(
            rf"{re.escape(NS2)}\s+changed\s+dns_server.running nameserver-service", text
        ), text

    # The failover's rotation is untouched: same version and members, same answers.
    assert {
        name: view.published(paphosting, ROTATION) for name, view in pair.views.items()
    } == published
    for ns in (NS1, NS2):
        assert (
            dnsserver.query(parsed.nameservers[ns], ROTATION + ".", "A").answer
            == rotation_answers[ns]
        )


def test_drift_highstate_from_ch_while_nl_is_down(pair, event_listener):
    """With NL down, an operator runs ``salt '*' drift.highstate`` from CH (at once, instead of
    waiting for the schedule): it corrects the drift and reports to CH."""
    cfg_path = haproxy.layout(str(pair.root(LB1)))["config"]
    with open(cfg_path, encoding="utf-8") as fh:
        cfg = fh.read()
    pair.quiesce()
    pair.stop("nl")
    try:
        start = time.time()
        edited = cfg.replace("timeout client 30000", "timeout client 4321")
        assert edited != cfg
        with open(cfg_path, "w", encoding="utf-8") as fh:
            fh.write(edited)
        ret = pair.ch.salt([LB1], "drift.highstate")
        summary = ret[LB1]
        assert summary["master"] == pair.addresses["ch"], summary
        assert "haproxy_cfg.managed" in {i["state"] for i in summary["changed"]}, summary
        with open(cfg_path, encoding="utf-8") as fh:
            assert fh.read() == cfg
        ch = pair.masters["ch"]
        pair.ch.wait(
            lambda: event_listener.get_events(
                [(ch.id, f"paphosting/drift/{LB1}")], after_time=start
            ),
            "lb1's drift report at CH",
        )
        recorded = pair.ch.wait(
            lambda: [h for h in pair.ch.run("drift.history", minion=LB1) if h["time"] >= start - 1],
            "CH to record lb1's drift",
        )
        assert recorded[-1]["master"] == pair.addresses["ch"], recorded
    finally:
        pair.start("nl")


def test_scheduled_highstate_goes_through_ch_while_nl_is_down(pair, paphosting, event_listener):
    """Salt runs a minion's schedule with the first master's options: with NL down, the drift
    highstate runs through CH (``drift.highstate`` picks the master that answers) and reports to
    CH. The schedule is set through CH after NL stopped: a scheduled highstate in flight when NL
    dies would wait for NL (docs/masters.md)."""
    cfg_path = haproxy.layout(str(pair.root(LB1)))["config"]
    with open(cfg_path, encoding="utf-8") as fh:
        cfg = fh.read()

    def schedule(enabled):
        pillar = copy.deepcopy(paphosting)
        pillar["schedule"]["enabled"] = enabled
        pair.write_pillar(pillar)
        (state,) = pair.ch.salt([LB1], "state.apply", "minion")[LB1].values()
        assert state["result"] is True, state

    pair.quiesce()
    pair.stop("nl")
    try:
        schedule(True)
        start = time.time()
        edited = cfg.replace("timeout client 30000", "timeout client 2345")
        assert edited != cfg
        with open(cfg_path, "w", encoding="utf-8") as fh:
            fh.write(edited)

        def restored():
            with open(cfg_path, encoding="utf-8") as fh:
                return fh.read() == cfg

        pair.ch.wait(
            restored, "the scheduled highstate to restore haproxy.cfg with NL down", 4 * INTERVAL
        )
        ch = pair.masters["ch"]
        events = pair.ch.wait(
            lambda: event_listener.get_events(
                [(ch.id, f"paphosting/drift/{LB1}")], after_time=start
            ),
            "lb1's drift report at CH",
        )
        signed = json.loads(max(events, key=lambda e: e.stamp).data["data"]["report"])
        assert signed["minion"] == LB1, signed
        report = signed["summary"]
        # CH serves an older revision than NL, but NL is down.
        assert report["master"] == pair.addresses["ch"] and report["revision"] is None, report
        assert "haproxy_cfg.managed" in {i["state"] for i in report["changed"]}, report
    finally:
        schedule(False)
        pair.start("nl")


def test_drift_highstate_goes_through_the_master_serving_the_newest_revision(pair, stores):
    """A revision pushed from CH is live on NL only after NL's next sync: meanwhile a drift
    highstate (even one NL sends) goes through CH, which serves the newer revision."""
    ret = pair.nl.salt([LB1], "drift.highstate")[LB1]
    assert (ret["master"], ret["revision"]) == (pair.addresses["nl"], 6), ret
    serve_revision(stores["ch"], 7)
    try:
        ret = pair.nl.salt([LB1], "drift.highstate")[LB1]
        assert (ret["master"], ret["revision"]) == (pair.addresses["ch"], 7), ret
        assert ret["failed"] == [], ret
    finally:
        serve_revision(stores["ch"], 5)


def test_drift_reports_cannot_be_forged_through_the_batched_events_path(pair):
    """Salt's batched ``events`` path hands the event data through as the sender wrote it, ``id``
    included. ns1 sends, that way, an unsigned report and a report signed with its own key, both
    in lb1's name: neither master records anything for lb1. ns1's own signed report, sent the
    same way under lb1's event id, is recorded as ns1's."""
    start = time.time()
    with open(os.path.join(pair.minions[NS1].config["pki_dir"], "minion.pem"), "rb") as fh:
        ns1_key = fh.read()
    summary = {"changed": [{"state": "file.managed", "id": "forged"}], "failed": []}
    forged_text = json.dumps(
        {"format": 1, "minion": LB1, "ts": time.time(), "summary": summary}, sort_keys=True
    )
    payloads = [
        dict(summary, id=LB1),  # the old, unsigned shape
        {"report": forged_text, "sig": health.sign(forged_text, ns1_key)},
        drift.signed_report(NS1, summary, ns1_key),
    ]
    events = [
        {"tag": f"{drift.TAG_PREFIX}{LB1}", "data": {"id": LB1, "data": data}} for data in payloads
    ]
    # preload makes event.fire_master send a raw load: with "events" in it, the master takes
    # the batched path and fires each event's data as is. It goes to the master the job came
    # from: once through each.
    for view in pair.views.values():
        assert view.salt(NS1, "event.fire_master", {}, "drift-test", preload={"events": events})

    def recorded():
        found = {}
        for name, view in pair.views.items():
            found[name] = [h for h in view.run("drift.history") if h["time"] >= start - 1]
            if not found[name]:
                return None
        return found

    found = pair.nl.wait(recorded, "the signed report at both masters")
    time.sleep(3)  # the refused ones went through the same reactor: give them the same time
    for name, view in pair.views.items():
        history = [h for h in view.run("drift.history") if h["time"] >= start - 1]
        assert [(h["minion"], h["changed"][0]["id"]) for h in history] == [(NS1, "forged")], (
            name,
            history,
            found,
        )
