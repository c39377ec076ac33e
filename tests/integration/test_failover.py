"""DNS failover end to end: beacons on three watcher nameservers, the reactor and runner on a real
master, real DNS servers (BIND, NSD, Knot) answering for the rotation names.

The load balancers are real haproxy processes, their configs rendered from the test pillar by the
project's own renderer; a dead load balancer is a killed haproxy (connection refused). Timings are short (probe every second, fall and
rise 2, heartbeat 3 s) so a failover takes a few seconds.
"""

import json
import pathlib
import time

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest

from harness import services
from harness.services import LoadBalancer
from paphosting import dnsserver, health, model
from paphosting import zone as pzone
from tests.conftest import require_binary

NS = ["ns1.fo.test", "ns2.fo.test", "ns3.fo.test"]
WEB = "web1.fo.test"
LB1, LB2, LB3 = "lb1.fo.test", "lb2.fo.test", "lb3.fo.test"
ROT = "http0.l.paphosting.nl"
ROT3 = "http1.l.paphosting.nl"  # lb3 and lb1: the flapping test's rotation
FLAP = {"window": 30, "max_transitions": 3, "hold": 6}


@pytest.fixture(scope="module")
def lbs(loopback, tmp_path_factory):
    """Three real haproxy load balancers; configured and started by ``platform``."""
    require_binary("haproxy")
    made = {}
    for name in (LB1, LB2, LB3):
        address = loopback.address()
        made[name] = LoadBalancer(
            name, address, loopback.port(address), tmp_path_factory.mktemp(name)
        )
    yield made
    for lb in made.values():
        lb.stop()


@pytest.fixture(scope="module")
def pillar(lbs, loopback, tmp_path_factory):
    """The platform, with its webserver running: a load balancer with no server up fails its
    health endpoint (docs/haproxy.md), and these tests are about the load balancers."""
    value = platform_pillar(lbs, loopback)
    with services.webservers(value, tmp_path_factory.mktemp("webapps")):
        yield value


def platform_pillar(lbs, loopback):
    for b in ("named", "nsd", "knotd"):
        require_binary(b)
    nameservers = {}
    for mid, server in zip(NS, ("bind", "nsd", "knot"), strict=True):
        # BIND only listens on addresses configured on an interface: 127.0.0.1 with its own port.
        addr = "127.0.0.1" if server == "bind" else loopback.address()
        nameservers[mid] = {
            "address": addr,
            "port": loopback.udp_tcp_port(addr),
            "server": server,
            "fqdn": mid.replace(".fo.test", ".paphosting.net"),
        }
    nameservers[NS[0]]["control_port"] = loopback.port("127.0.0.1")
    web = loopback.address()
    return {
        "settings": {"service_mode": "process"},
        "loadbalancers": {
            name: {"address": s.address, "http_port": s.port} for name, s in lbs.items()
        },
        "webservers": {WEB: {"address": web}},
        "nameservers": nameservers,
        "rotations": {
            ROT: {"ttl": 60, "members": [LB1, LB2]},
            ROT3: {"ttl": 60, "members": [LB3, LB1]},
        },
        "services": {
            "www": {
                "type": "stateless",
                "hostnames": ["www.paphosting.nl"],
                "rotation": ROT,
                "servers": [{"name": WEB, "port": loopback.port(web)}],
            },
        },
        "zones": {"paphosting.nl": {"ns": [n["fqdn"] for n in nameservers.values()]}},
        "health": {
            "watchers": NS,
            "interval": 1,
            "timeout": 0.5,
            "fall": 2,
            "rise": 2,
            "heartbeat": 3,
            "flap": FLAP,
        },
        "schedule": {"enabled": False},
    }


def show(platform):
    return platform.run("rotation.show")


def members(platform, name=ROT):
    return show(platform)["rotations"][name]["members"]


def all_views(platform, wanted):
    """Every watcher's latest view is ``wanted`` ({lb: state}) for those load balancers."""
    views = show(platform)["views"]
    return all(
        w in views and all(views[w]["lbs"].get(lb) == s for lb, s in wanted.items()) for w in NS
    )


def answer(ns, name):
    """The A addresses one nameserver answers for ``name`` (sorted), or None when it does not answer."""
    query = dns.message.make_query(name, "A")
    try:
        resp = dns.query.udp(query, ns["address"], port=ns["port"], timeout=1)
    except (dns.exception.Timeout, OSError):
        return None
    return sorted(
        rr.address for rrset in resp.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset
    )


def answers(pillar, name=ROT):
    return {mid: answer(ns, name) for mid, ns in pillar["nameservers"].items()}


def addresses(pillar, *lbs):
    return sorted(pillar["loadbalancers"][lb]["address"] for lb in lbs)


def wait_answers(platform, pillar, lbs, name=ROT, timeout=30):
    """Wait until every nameserver answers exactly the addresses of ``lbs`` for ``name``."""
    want = addresses(pillar, *lbs)
    platform.wait(
        lambda: all(a == want for a in answers(pillar, name).values()),
        f"every nameserver to answer {want} for {name} (answers: {answers(pillar, name)})",
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def platform(salt_platform, pillar, lbs):
    for lb in lbs.values():
        lb.configure(pillar).start()
    with salt_platform([*NS, WEB], pillar) as p:
        try:
            p.highstate(NS)
            wait_answers(p, pillar, [LB1, LB2])
            p.wait(
                lambda: all_views(p, {LB1: "up", LB2: "up", LB3: "up"}),
                "every watcher to report every lb up",
            )
            yield p
        finally:
            p.salt(NS, "dns_server.stop")


@pytest.fixture
def healthy(platform, pillar, lbs):
    """Every load balancer up and in its rotations, before and after the test."""

    def settle():
        for lb in lbs.values():
            lb.start()
        for lb in list(show(platform)["drains"]):
            platform.run("rotation.restore", lb=lb)
        platform.wait(
            lambda: all_views(platform, {LB1: "up", LB2: "up", LB3: "up"}),
            "every lb up for every watcher",
        )
        platform.wait(
            lambda: members(platform) == [LB1, LB2] and members(platform, ROT3) == [LB3, LB1],
            "every lb back in its rotations",
        )
        wait_answers(platform, pillar, [LB1, LB2])

    settle()
    yield
    settle()


def test_watcher_sls_saves_the_beacon(platform, pillar):
    ret = platform.salt(NS[0], "state.apply", "watcher")
    beacon = next(v for k, v in ret.items() if "paphosting-watcher-beacon" in k)
    assert beacon["result"] is True and beacon["changes"] == {}
    listed = platform.salt(NS[0], "beacons.list", return_yaml=False, include_pillar=False)
    targets = next(i["targets"] for i in listed["http_health"] if "targets" in i)
    assert (
        targets[LB1]
        == f"http://{pillar['loadbalancers'][LB1]['address']}:{pillar['loadbalancers'][LB1]['http_port']}/haproxy-health"
    )
    saved = platform.salt(
        NS[0],
        "cp.get_file_str",
        "file://"
        + platform.minions[NS[0]].config["conf_file"].rsplit("/", 1)[0]
        + "/minion.d/beacons.conf",
    )
    assert "http_health" in saved and LB1 in saved


def change_event(platform, event_listener, start, version):
    """The master's ``paphosting/rotation/changed`` event of ``version`` since ``start``, waited
    for: the zones can be served before the event reaches the listener."""
    return platform.wait(
        lambda: next(
            (
                e.data
                for e in event_listener.get_events(
                    [(platform.master.id, "paphosting/rotation/changed")], after_time=start
                )
                if e.data.get("version") == version
            ),
            None,
        ),
        f"the change event of version {version}",
    )


def test_kill_a_load_balancer_and_restart_it(platform, pillar, lbs, healthy, event_listener):
    start = time.time()
    version = show(platform)["version"]
    lbs[LB1].stop()
    wait_answers(platform, pillar, [LB2])
    st = show(platform)
    assert st["verdicts"][LB1]["verdict"] == "down"
    assert st["version"] == version + 1
    assert st["rotations"][ROT3]["members"] == [LB3]
    change = change_event(platform, event_listener, start, version + 1)
    assert change["changes"][ROT]["removed"] == [LB1]
    assert "down for" in change["reasons"][LB1] and "ConnectionRefused" in change["reasons"][LB1]
    lbs[LB1].start()
    wait_answers(platform, pillar, [LB1, LB2])
    assert show(platform)["version"] == version + 2
    # The first push prepared the platform the master decided with in each nameserver's cache
    # (platformcache): the second applies from it, without compiling or even hashing the pillar
    # (the master sends the digest of what it decided with).
    back = change_event(platform, event_listener, start, version + 2)
    ret = platform.wait(
        lambda: (lambda r: r if all(ns in r for ns in NS) else None)(
            platform.run("jobs.lookup_jid", jid=back["jid"])
        ),
        "every nameserver to return the second push",
    )
    assert {ns: ret[ns]["pillar"] for ns in NS} == {ns: "cached" for ns in NS}, ret


def test_all_load_balancers_down_keeps_them_all(platform, pillar, lbs, healthy):
    lbs[LB1].stop()
    wait_answers(platform, pillar, [LB2])
    lbs[LB2].stop()
    platform.wait(
        lambda: show(platform)["verdicts"][LB2]["verdict"] == "down", "lb2 to be judged down"
    )
    st = show(platform)
    assert st["rotations"][ROT]["members"] == [LB1, LB2]
    assert "fail open" in st["last_change"]["changes"][ROT]["note"]
    wait_answers(platform, pillar, [LB1, LB2])


def test_one_watcher_of_three_changes_nothing(platform, pillar, lbs, healthy):
    """ns1 alone cannot reach lb1 (its beacon probes a dead port): lb1 stays in everywhere."""
    version = show(platform)["version"]
    listed = platform.salt(NS[0], "beacons.list", return_yaml=False, include_pillar=False)[
        "http_health"
    ]
    cut = [dict(i) for i in listed]
    for item in cut:
        if "targets" in item:
            item["targets"] = dict(item["targets"], **{LB1: "http://127.0.0.1:9/haproxy-health"})
    assert platform.salt(NS[0], "beacons.modify", "http_health", cut)["result"] is True
    try:
        platform.wait(
            lambda: show(platform)["views"][NS[0]]["lbs"][LB1] == "down", "ns1 to report lb1 down"
        )
        st = show(platform)
        assert st["views"][NS[1]]["lbs"][LB1] == "up" and st["views"][NS[2]]["lbs"][LB1] == "up"
        assert st["rotations"][ROT]["members"] == [LB1, LB2]
        assert st["verdicts"][LB1]["verdict"] == "up" and st["version"] == version
        assert answers(pillar) == {ns: addresses(pillar, LB1, LB2) for ns in NS}
    finally:
        platform.salt(NS[0], "state.apply", "watcher")


def _forge(platform, report, sig, claimed):
    """web1 fires a fake beacon return: the minion sends it to the master as beacon events do."""
    event = {
        "tag": f"salt/beacon/{claimed}/http_health/transition",
        "data": {"report": report, "sig": sig, "id": claimed},
    }
    assert platform.salt(WEB, "event.fire", {"beacons": [event]}, "__beacons_return") is True


def test_forged_health_events_change_nothing_and_are_logged(
    platform, pillar, healthy, event_listener, tmp_path
):
    version = show(platform)["version"]
    web_key = platform.minions[WEB].config["pki_dir"] + "/minion.pem"
    down = {
        LB1: {"state": "down", "flapping": False, "since": 1.0, "detail": "forged"},
        LB2: {"state": "down", "flapping": False, "since": 1.0, "detail": "forged"},
    }
    start = time.time()
    forged_ns = [
        health.report_text(ns, 2**62, time.time(), "transition", down, [LB1, LB2]) for ns in NS
    ]
    with open(web_key, "rb") as fh:
        pem = fh.read()
    # Claims to be each watcher, signed with web1's own key.
    for ns, text in zip(NS, forged_ns, strict=True):
        _forge(platform, text, health.sign(text, pem), ns)
    # Claims to be each watcher, not signed at all.
    for ns, text in zip(NS, forged_ns, strict=True):
        _forge(platform, text, "", ns)
    # Honest about who it is, but web1 is not a watcher.
    mine = health.report_text(WEB, 1, time.time(), "transition", down, [LB1, LB2])
    _forge(platform, mine, health.sign(mine, pem), WEB)
    reasons = platform.wait(
        lambda: (lambda r: r if len(r) >= 7 else None)(
            [
                e.data["reason"]
                for e in event_listener.get_events(
                    [(platform.master.id, "paphosting/rotation/rejected")], after_time=start
                )
            ]
        ),
        "seven rejections",
    )
    assert sum("bad signature" in r for r in reasons) >= 3
    assert sum("is not signed" in r for r in reasons) >= 3
    assert any(f"'{WEB}' is not a watcher" in r for r in reasons)
    log = platform.master_log()
    assert (
        f"ignored a health report (event from {NS[0]}): bad signature on the report claiming to come from '{NS[0]}'"
        in log
    )
    assert f"'{WEB}' is not a watcher" in log
    st = show(platform)
    assert st["version"] == version and st["rotations"][ROT]["members"] == [LB1, LB2]
    assert st["verdicts"][LB1]["verdict"] == "up"
    assert answers(pillar) == {ns: addresses(pillar, LB1, LB2) for ns in NS}


def test_replayed_report_is_refused(platform, healthy, event_listener):
    start = time.time()
    events = event_listener.get_events(
        [(platform.master.id, f"salt/beacon/{NS[1]}/http_health/*")], after_time=start - 60
    )
    with open(platform.minions[NS[1]].config["pki_dir"] + "/minion.pub", "rb") as fh:
        pub = fh.read()
    genuine = [
        e.data for e in events if health.verify(e.data.get("report"), e.data.get("sig"), pub)
    ]
    real = max(genuine, key=lambda d: json.loads(d["report"])["seq"])
    platform.wait(
        lambda: show(platform)["views"][NS[1]]["seq"] >= json.loads(real["report"])["seq"],
        "the real report to land",
    )
    _forge(platform, real["report"], real["sig"], NS[1])
    platform.wait(
        lambda: any(
            "replayed or out-of-order" in e.data["reason"] or "duplicate" in e.data["reason"]
            for e in event_listener.get_events(
                [(platform.master.id, "paphosting/rotation/rejected")], after_time=start
            )
            if NS[1] in e.data["reason"]
        ),
        "the replay to be refused",
    )


def test_highstate_after_a_failover_keeps_the_dead_lb_out(platform, pillar, lbs, healthy):
    lbs[LB2].stop()
    wait_answers(platform, pillar, [LB1])
    platform.highstate(NS)
    assert answers(pillar) == {ns: addresses(pillar, LB1) for ns in NS}
    # What the master publishes (what its highstates render, compiled afresh) leaves lb2 out.
    held = platform.salt(NS, "pillar.items", unmask=True)
    for ns in NS:
        assert held[ns]["paphosting_rotation"]["rotations"][ROT]["members"] == [LB1]


def test_drain_highstate_restart_master_restore(platform, pillar, healthy):
    ret = platform.run("rotation.drain", lb=LB2, reason="maintenance")
    assert ret["result"] is True and f"-{LB2}" in ret["comment"]
    # It returns once no nameserver serves lb2, with when the last cached answer expires.
    assert ret["pending"] == [] and ret["expires"] is not None, ret
    assert answers(pillar) == {ns: addresses(pillar, LB1) for ns in NS}
    wait_answers(platform, pillar, [LB1])
    platform.highstate(NS)
    assert answers(pillar) == {ns: addresses(pillar, LB1) for ns in NS}
    platform.restart_master()
    st = show(platform)
    assert LB2 in st["drains"] and st["rotations"][ROT]["members"] == [LB1]
    # What the restarted master publishes (what its highstates render) still leaves lb2 out.
    held = platform.salt(NS, "pillar.items", unmask=True)
    assert {ns: held[ns]["paphosting_rotation"]["rotations"][ROT]["members"] for ns in NS} == {
        ns: [LB1] for ns in NS
    }
    # It keeps taking reports, and reports of lb2 being up do not undo the drain.
    seq = st["views"][NS[0]]["seq"]
    platform.wait(lambda: show(platform)["views"][NS[0]]["seq"] > seq, "a report after the restart")
    assert show(platform)["rotations"][ROT]["members"] == [LB1]
    status = platform.run_cli("rotation.status")
    assert status.returncode == 0
    assert "Drained: lb2.fo.test" in status.stdout and "(maintenance)" in status.stdout
    # When the last answer a client may have cached naming lb2 expires (or that it has).
    assert "cached answer" in status.stdout.split("Drained: lb2.fo.test")[1].splitlines()[0]
    ret = platform.run("rotation.restore", lb=LB2)
    assert ret["result"] is True and f"+{LB2}" in ret["comment"]
    wait_answers(platform, pillar, [LB1, LB2])


def test_flapping_lb_is_held_out_until_stable(platform, pillar, lbs, healthy):
    site = lbs[LB3]

    def views():
        st = show(platform)["views"]
        return {st[w]["lbs"][LB3] for w in NS}

    def held_while_up():
        """The master keeps lb3 out for flapping although it answers: the snapshot, or None."""
        st = show(platform)
        v = st["verdicts"][LB3]
        if (
            v["verdict"] == "down"
            and v["reason"].startswith("flapping for")
            and v["reason"].endswith("HTTP 200 OK")
        ):
            return st
        return None

    # Down and up again, as the watchers see it, until a quorum of them holds lb3: more than 3
    # switches within the 30 s window.
    for _ in range(4):
        site.stop()
        platform.wait(lambda: views() <= {"down", "flapping"}, "every watcher to see lb3 down")
        site.start()
        platform.wait(lambda: views() <= {"up", "flapping"}, "every watcher to see lb3 up or held")
        if "flapping" in views():
            break
    # lb3 answers again, yet the watchers hold it and the master keeps it out...
    st = platform.wait(held_while_up, "lb3 to be kept out for flapping while it answers")
    assert LB3 not in st["rotations"][ROT3]["members"]
    assert health.probe(f"http://{site.address}:{site.port}/haproxy-health", 1)[0]
    # ... until it has been stable for `hold` seconds: then it is back everywhere.
    wait_answers(platform, pillar, [LB3, LB1], name=ROT3)
    st = show(platform)
    assert st["verdicts"][LB3]["verdict"] == "up"
    assert st["last_change"]["changes"][ROT3]["added"] == [LB3]


def test_a_nameserver_that_missed_a_failover_is_brought_up_to_date_when_it_starts(
    platform, pillar, lbs, healthy
):
    late = NS[2]
    minion = platform.minions[late]
    minion.terminate()
    try:
        lbs[LB1].stop()
        platform.wait(
            lambda: all(
                answer(pillar["nameservers"][ns], ROT) == addresses(pillar, LB2) for ns in NS[:2]
            ),
            "the other nameservers to drop lb1",
        )
        # It missed the push: its server still hands out the dead load balancer.
        assert answer(pillar["nameservers"][late], ROT) == addresses(pillar, LB1, LB2)
    finally:
        minion.start()
    # The minion's start event makes the master push the current rotation to it (anti-entropy).
    wait_answers(platform, pillar, [LB2], timeout=20)
    assert f"pushed again to {late}" in platform.master_log()


def test_a_hand_edit_of_the_rotation_is_undone_within_a_heartbeat(platform, pillar, lbs, healthy):
    lbs[LB1].stop()
    wait_answers(platform, pillar, [LB2])
    ns = NS[1]
    zone_file = dnsserver.zone_path(
        model.parse(pillar).nameservers[ns], "paphosting.nl", str(platform.root(ns))
    )
    text = pathlib.Path(zone_file).read_text()
    serial = pzone.quick_serial("paphosting.nl", text)
    lb1 = pillar["loadbalancers"][LB1]["address"]
    edited = text.replace(f" {serial} ", f" {serial + 1} ") + f"http0.l 60 IN A {lb1}\n"
    pathlib.Path(zone_file).write_text(edited)
    platform.salt(ns, "dns_server.reload_zone", "paphosting.nl", serial=serial + 1)
    assert answer(pillar["nameservers"][ns], ROT) == addresses(pillar, LB1, LB2)
    # Its next heartbeat says what it serves; the masters push the rotation again; the failover
    # rewrites the rotation's records (and nothing else) although the zone was edited by hand.
    wait_answers(platform, pillar, [LB2], timeout=3 * pillar["health"]["heartbeat"] + 10)
    status = platform.run("rotation.status")
    assert ns in status and "NAMESERVER" in status
