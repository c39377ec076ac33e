"""Two hot masters, NL and CH, every minion connected to both (issue 6).

One environment for the module (``tests/integration/multimaster.py``): NL and CH with the
production master configuration plus svnpillar (each its own store, sync every 3 s) against one
svnserve; two load balancers running real haproxy and two nameservers (NSD and Knot, both
watchers) running real DNS servers, all four minions connected to both masters. The first
revision is pushed from NL; CH follows by its own sync.

The failover timings are short (probe every second, fall and rise 2, heartbeat 3 s).
"""

import copy
import os
import subprocess
import sys
import time

import dns.rdatatype
import pytest
import yaml

from harness import services
from harness.svn import SHORT, master_options, served
from paphosting import dnsserver, haproxy, model
from tests.integration import multimaster
from tests.integration.multimaster import ROTATION, ZONE

DOMAIN = "mm.test"
LB1, LB2 = f"lb1.{DOMAIN}", f"lb2.{DOMAIN}"
NS1, NS2 = f"ns1.{DOMAIN}", f"ns2.{DOMAIN}"
MINIONS = [LB1, LB2, NS1, NS2]
TOP = "base:\n  '*':\n    - paphosting\n"
HEARTBEAT = 3


def sls(paphosting):
    return yaml.safe_dump({"paphosting": paphosting}, sort_keys=False)


# --- the environment ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paphosting(loopback, tmp_path_factory):
    value = multimaster.platform_pillar(loopback, DOMAIN, heartbeat=HEARTBEAT)
    with services.webservers(value, tmp_path_factory.mktemp("webapps")):
        yield value


@pytest.fixture(scope="module")
def parsed(paphosting):
    return model.parse(paphosting)


@pytest.fixture(scope="module")
def svn_server(tmp_path_factory, loopback):
    with served(tmp_path_factory.mktemp("svn"), loopback.port("127.0.0.1")) as server:
        yield server


@pytest.fixture(scope="module")
def pair(request, salt_factories, tmp_path_factory, loopback, svn_server, paphosting):
    stores = {name: tmp_path_factory.mktemp(f"svnpillar-{name}") for name in multimaster.NAMES}

    def overrides(name):
        conf = master_options(stores[name], svn_server, sync_seconds=HEARTBEAT, **SHORT)
        conf["paphosting_svn"]["name"] = name
        return conf

    # Committed before the masters start: they have something to sync from (nothing is pushed yet).
    rev = svn_server.commit(
        {"pillar/top.sls": TOP, "pillar/paphosting.sls": sls(paphosting)}, "the platform"
    )
    started = []
    try:
        with multimaster.environment(
            request, salt_factories, tmp_path_factory, loopback, MINIONS, master_overrides=overrides
        ) as pair:
            started.append(pair)
            ret = pair.nl.run_cli("svnpillar.push")
            assert ret.returncode == 0, ret.stdout + ret.stderr
            pair.nl.wait(
                lambda: revisions(pair) == {"nl": rev, "ch": rev}, f"both masters to serve r{rev}"
            )
            yield pair
    finally:
        # Once the minions are stopped: a highstate in flight could start a service again.
        for p in started:
            multimaster.stop_services(p, paphosting)


# --- what the masters and the nameservers say --------------------------------------------------


@pytest.fixture(scope="module")
def published(pair, paphosting):
    """``published()``: ``{master: (version, members)}`` of the rotation, for every running master."""
    return lambda: {
        name: view.published(paphosting, ROTATION) for name, view in pair.running().items()
    }


def revisions(pair):
    return {name: view.live_revision() for name, view in pair.running().items()}


def answers(parsed):
    """The addresses each nameserver hands out for the rotation name (None: no answer)."""
    out = {}
    for mid, ns in parsed.nameservers.items():
        resp = dnsserver.query(ns, ROTATION + ".", "A")
        out[mid] = (
            None
            if resp is None
            else sorted(
                rr.address
                for rrset in resp.answer
                if rrset.rdtype == dns.rdatatype.A
                for rr in rrset
            )
        )
    return out


def serials(parsed):
    return {mid: dnsserver.served_serial(ns, ZONE) for mid, ns in parsed.nameservers.items()}


def addresses(parsed, *lbs):
    return sorted(parsed.loadbalancers[lb].address for lb in lbs)


def everywhere(parsed, *lbs):
    """Every nameserver hands out exactly the addresses of ``lbs``."""
    return all(a == addresses(parsed, *lbs) for a in answers(parsed).values())


def agreed(published):
    """The ``(version, members)`` every running master publishes, or None when they differ."""
    values = list(published().values())
    return values[0] if all(v == values[0] for v in values) else None


def haproxy_running(pair, lb):
    return haproxy.status(str(pair.root(lb)))["running"]


@pytest.fixture
def healthy(pair, parsed, published):
    """Every load balancer up and in the rotation, the same on every running master."""

    def settle():
        view = next(iter(pair.running().values()))
        down = [lb for lb in (LB1, LB2) if not haproxy_running(pair, lb)]
        if down:
            view.salt(down, "state.apply", "loadbalancer.service")
        for name, v in pair.running().items():
            v.wait(
                lambda v=v: all(v.views_of(w) == {LB1: "up", LB2: "up"} for w in (NS1, NS2)),
                f"every watcher's report on {name} to say every load balancer is up",
            )
        pair.nl.wait(
            lambda: (agreed(published) or (None, None))[1] == [LB1, LB2],
            "the running masters to agree on every load balancer in",
            timeout=60,
        )
        pair.nl.wait(
            lambda: everywhere(parsed, LB1, LB2), "every nameserver to hand out both load balancers"
        )

    settle()
    yield
    settle()


def changed_events(event_listener, pair, after):
    """The ``paphosting/rotation/changed`` events of both masters since ``after``."""
    events = event_listener.get_events(
        [(m.id, "paphosting/rotation/changed") for m in pair.masters.values()], after_time=after
    )
    return [e.data for e in events]


def zone_results(view, jid, nameservers):
    """``{nameserver: what rotation.apply did to the zone}`` of a push job once every nameserver
    returned, else None."""
    ret = view.run("jobs.lookup_jid", jid=jid)
    if not isinstance(ret, dict) or not all(ns in ret for ns in nameservers):
        return None
    out = {}
    for ns in nameservers:
        assert isinstance(ret[ns], dict) and "zones" in ret[ns], (
            f"push job {jid} failed on {ns}: {ret[ns]!r}"
        )
        # rotation.apply lists the zones it wrote, reloaded or failed (thousands of zones: not the
        # current ones); a zone it found current is not listed.
        out[ns] = ret[ns]["zones"].get(ZONE, {"written": False, "error": None})
    return out


class Answers:
    """Each nameserver's answers for the rotation name, recorded whenever one changes."""

    def __init__(self, parsed):
        self.parsed = parsed
        self.seen = {ns: [] for ns in parsed.nameservers}

    def poll(self):
        for ns, a in answers(self.parsed).items():
            if not self.seen[ns] or self.seen[ns][-1] != a:
                self.seen[ns].append(a)

    def wait(self, pair, predicate, what, timeout=30):
        """Wait for ``predicate``, polling the answers meanwhile."""
        return pair.nl.wait(lambda: self.poll() or predicate(), what, timeout=timeout, interval=0.1)


# --- the provisioning script -------------------------------------------------------------------


def provision(*args):
    return subprocess.run(
        [sys.executable, str(multimaster.PROVISION), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_provision_second_master_copies_keys_and_mirrors_accepted(tmp_path):
    nl, ch = tmp_path / "nl", tmp_path / "ch"
    (nl / "minions").mkdir(parents=True)
    (nl / "master.pem").write_text("NL PRIVATE")
    (nl / "master.pub").write_text("NL PUBLIC")
    (nl / "minions" / "lb1").write_text("lb1 key")
    (nl / "minions" / "ns1").write_text("ns1 key")
    for folder in ("minions", "minions_pre", "minions_rejected"):
        (ch / folder).mkdir(parents=True)
    (ch / "minions" / "old").write_text("revoked on NL")
    (ch / "minions" / "ns1").write_text("another ns1 key")
    (ch / "minions_pre" / "lb1").write_text("lb1 key")
    (ch / "minions_rejected" / "ns1").write_text("ns1 key")

    dry = provision("--dry-run", nl, ch)
    assert dry.returncode == 0, dry.stderr
    assert "would change: master.pem: copied" in dry.stdout
    assert not (ch / "master.pem").exists() and (ch / "minions" / "old").exists()

    done = provision(nl, ch)
    assert done.returncode == 0, done.stderr
    assert (ch / "master.pem").read_text() == "NL PRIVATE" and oct(
        (ch / "master.pem").stat().st_mode
    )[-3:] == "400"
    assert (ch / "master.pub").read_text() == "NL PUBLIC"
    assert sorted(p.name for p in (ch / "minions").iterdir()) == ["lb1", "ns1"]
    assert (ch / "minions" / "ns1").read_text() == "ns1 key"
    assert (
        not (ch / "minions_pre" / "lb1").exists() and not (ch / "minions_rejected" / "ns1").exists()
    )
    for line in (
        "lb1: accepted",
        "ns1: updated",
        "old: removed",
        "lb1: removed from minions_pre",
        "ns1: removed from minions_rejected",
        "restart salt-master",
    ):
        assert line in done.stdout

    again = provision(nl, ch)
    assert again.returncode == 0 and "nothing to do" in again.stdout

    (ch / "master.pem").chmod(0o600)
    (ch / "master.pem").write_text("CH OWN PRIVATE")
    refused = provision(nl, ch)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert (ch / "master.pem").read_text() == "CH OWN PRIVATE"
    assert provision("--force", nl, ch).returncode == 0
    assert (ch / "master.pem").read_text() == "NL PRIVATE"


def test_second_master_is_provisioned_from_the_first(pair):
    nl, ch = (pair.masters[n].config["pki_dir"] for n in multimaster.NAMES)
    for name in ("master.pem", "master.pub"):
        with open(os.path.join(nl, name), "rb") as a, open(os.path.join(ch, name), "rb") as b:
            assert a.read() == b.read()
    assert sorted(os.listdir(os.path.join(ch, "minions"))) == sorted(MINIONS)
    assert os.listdir(os.path.join(ch, "minions_pre")) == []
    # Every minion takes jobs from both.
    for name, view in pair.views.items():
        assert view.salt(MINIONS, "test.ping") == {m: True for m in MINIONS}, name


# --- the behaviours of issue 6 ----------------------------------------------------------------


def test_both_masters_up_a_dead_lb_is_dropped_once(
    pair, parsed, published, healthy, event_listener
):
    """Each master decides and pushes on its own: one version, one serial bump per nameserver, no flip-flop."""
    version, _ = agreed(published)
    before = serials(parsed)
    watched = Answers(parsed)
    start = time.time()
    haproxy.stop(str(pair.root(LB1)))

    watched.wait(pair, lambda: everywhere(parsed, LB2), "every nameserver to drop lb1")
    watched.wait(
        pair,
        lambda: published() == {"nl": (version + 1, [LB2]), "ch": (version + 1, [LB2])},
        f"both masters to publish version {version + 1} without lb1",
    )
    masters = {m.id: name for name, m in pair.masters.items()}
    events = watched.wait(
        pair,
        lambda: (lambda ev: ev if {e["master"] for e in ev} == set(masters) else None)(
            changed_events(event_listener, pair, start)
        ),
        "a change event from each master (each decides on its own)",
    )
    assert [(e["version"], e["changes"][ROTATION]["members"]) for e in events] == [
        (version + 1, [LB2])
    ] * 2
    results = [
        watched.wait(
            pair,
            lambda e=e: zone_results(
                pair.views[masters[e["master"]]], e["jid"], list(parsed.nameservers)
            ),
            f"the push job of {e['master']} to return on every nameserver",
            timeout=60,
        )
        for e in events
    ]
    after = serials(parsed)
    for ns in parsed.nameservers:
        bumps = [
            {"old": r[ns]["serial"]["live"], "new": r[ns]["serial"]["new"]}
            for r in results
            if r[ns]["written"]
        ]
        assert all(r[ns]["error"] is None for r in results), results
        assert bumps == [{"old": before[ns], "new": after[ns]}], (
            f"{ns}: {bumps} (served {before[ns]} -> {after[ns]})"
        )
    # No flip-flop: each nameserver went from both load balancers to lb2 alone, once.
    watched.poll()
    for ns, sequence in watched.seen.items():
        assert sequence in (
            [addresses(parsed, LB1, LB2), addresses(parsed, LB2)],
            [addresses(parsed, LB2)],
        ), ns
    assert published() == {"nl": (version + 1, [LB2]), "ch": (version + 1, [LB2])}


def nl_down_ch_alone(pair, parsed, published, event_listener):
    """Stop NL and kill lb2: CH alone takes it out. CH's change event."""
    version, _ = agreed(published)
    pair.quiesce()
    pair.stop("nl")
    start = time.time()
    haproxy.stop(str(pair.root(LB2)))
    pair.ch.wait(
        lambda: everywhere(parsed, LB1), "every nameserver to drop lb2, on CH's decision alone"
    )
    assert published() == {"ch": (version + 1, [LB1])}
    # The zones can be served before the change event reaches the listener: wait for it.
    events = pair.ch.wait(lambda: changed_events(event_listener, pair, start), "CH's change event")
    assert [(e["master"], e["version"], e["changes"][ROTATION]["removed"]) for e in events] == [
        (pair.masters["ch"].id, version + 1, [LB2])
    ]
    return events[0]


def push_from_ch(pair, parsed, svn_server, paphosting):
    """Commit a new name and push it from CH: validated, live on CH, applied. The revision."""
    changed = copy.deepcopy(paphosting)
    ftp = parsed.webservers[f"web1.{DOMAIN}"].address
    changed["zones"][ZONE]["records"]["ftp"] = [{"type": "A", "data": ftp}]
    rev = svn_server.commit({"pillar/paphosting.sls": sls(changed)}, "an ftp name")
    ret = pair.ch.run_cli("svnpillar.push")
    assert ret.returncode == 0, ret.stdout + ret.stderr
    assert f"r{rev} is live on ch" in ret.stdout
    assert svn_server.pushed(rev).startswith("ch ")
    assert revisions(pair)["ch"] == rev
    for ns in parsed.nameservers.values():
        resp = dnsserver.query(ns, f"ftp.{ZONE}.", "A")
        assert resp is not None and [rr.address for rrset in resp.answer for rr in rrset] == [ftp]
    return rev


def test_nl_down_ch_alone_fails_over_and_pushes(
    pair, parsed, published, svn_server, paphosting, healthy, event_listener
):
    try:
        nl_down_ch_alone(pair, parsed, published, event_listener)
        push_from_ch(pair, parsed, svn_server, paphosting)
    finally:
        if not pair.masters["nl"].is_running():
            pair.start("nl")


def test_nl_comes_back_and_converges_without_anyone_acting(
    pair, parsed, published, svn_server, paphosting, healthy, event_listener
):
    nl_down_ch_alone(pair, parsed, published, event_listener)
    rev = push_from_ch(pair, parsed, svn_server, paphosting)
    # The push's highstate started lb2's haproxy again: CH alone puts it back.
    pair.ch.wait(
        lambda: published()["ch"][1] == [LB1, LB2] and everywhere(parsed, LB1, LB2),
        "CH to put lb2 back",
    )
    current = published()["ch"]
    before = serials(parsed)
    watched = Answers(parsed)
    start = time.time()
    pair.start("nl", wait_minions=False)
    started = time.time()
    nl_seen = []

    def converged():
        nl_seen.append(pair.nl.published(paphosting, ROTATION))
        return nl_seen[-1] == current and pair.nl.live_revision() == rev

    watched.wait(pair, converged, f"NL to publish {current} and serve r{rev}, like CH", timeout=60)
    print(f"NL converged {time.time() - started:.1f} s after it started (heartbeat {HEARTBEAT} s)")
    # NL never published other members than CH, and nothing changed on the nameservers.
    assert all(members == current[1] for _, members in nl_seen), nl_seen
    nl_id = pair.masters["nl"].id
    assert [
        e
        for e in changed_events(event_listener, pair, start)
        if e["master"] == nl_id and e["version"] < current[0]
    ] == []
    assert published() == {"nl": current, "ch": current}
    assert serials(parsed) == before
    watched.poll()
    assert all(seq == [addresses(parsed, LB1, LB2)] for seq in watched.seen.values()), watched.seen


# --- operator actions hold on both masters (issue 11) -------------------------------------------


def drains(view):
    return sorted(view.failover_state()["drains"])


def test_a_drain_on_one_master_holds_on_both_and_a_restore_on_the_other_undoes_it(
    pair, parsed, published, healthy
):
    version, _ = agreed(published)
    ret = pair.nl.run("rotation.drain", lb=LB2, reason="kernel upgrade", wait=10)
    assert ret["result"] is True and f"-{LB2}" in ret["comment"], ret
    # CH takes it from the record the minions relay: the same drain, the same members.
    pair.ch.wait(lambda: drains(pair.ch) == [LB2], "CH to hold NL's drain of lb2", timeout=30)
    pair.ch.wait(lambda: published()["ch"][1] == [LB1], "CH to publish lb1 alone", timeout=30)
    assert published()["nl"][1] == [LB1]
    assert pair.ch.failover_state()["drains"][LB2]["reason"] == "kernel upgrade"
    status = pair.ch.run_cli("rotation.status")
    assert f"drain {LB2} at" in status.stdout and "kernel upgrade" in status.stdout, status.stdout
    # Reports saying lb2 is up change nothing on either master.
    time.sleep(HEARTBEAT + 1)
    assert {m: p[1] for m, p in published().items()} == {"nl": [LB1], "ch": [LB1]}
    assert everywhere(parsed, LB1)
    # The operator restores it on the other master.
    ret = pair.ch.run("rotation.restore", lb=LB2)
    assert ret["result"] is True, ret
    pair.nl.wait(lambda: drains(pair.nl) == [], "NL to take CH's restore", timeout=30)
    pair.nl.wait(
        lambda: agreed(published) is not None and agreed(published)[1] == [LB1, LB2],
        "both masters to publish both load balancers again",
        timeout=30,
    )
    pair.nl.wait(lambda: everywhere(parsed, LB1, LB2), "every nameserver to hand out both")
    assert agreed(published)[0] > version


def test_a_master_that_was_down_takes_the_drain_it_missed(pair, parsed, published, healthy):
    pair.quiesce()
    pair.stop("ch")
    try:
        ret = pair.nl.run("rotation.drain", lb=LB1, reason="while CH was down", wait=10)
        assert ret["result"] is True, ret
        pair.nl.wait(lambda: everywhere(parsed, LB2), "every nameserver to drop lb1")
    finally:
        pair.start("ch")
    # The watchers' heartbeats carry their journal's digest: CH, whose journal differs, compares.
    pair.ch.wait(lambda: drains(pair.ch) == [LB1], "CH to take the drain it missed", timeout=90)
    pair.ch.wait(lambda: published()["ch"][1] == [LB2], "CH to publish lb2 alone", timeout=30)
    assert everywhere(parsed, LB2)
    ret = pair.nl.run("rotation.restore", lb=LB1)
    assert ret["result"] is True, ret
    pair.ch.wait(lambda: drains(pair.ch) == [], "CH to take the restore", timeout=30)


def test_a_forged_operator_action_is_refused_and_changes_nothing(pair, parsed, published, healthy):
    """A minion fires an action signed with its own key (not the masters'), and replays a real
    drain older than the restore that followed it: both masters refuse or ignore them."""
    from paphosting import actions

    with open(os.path.join(pair.minions[NS1].config["pki_dir"], "minion.pem"), "rb") as fh:
        minion_key = fh.read()
    text = actions.record_text("drain", LB1, "nl", time.time(), "forged")
    forged = {"record": text, "sig": actions.sign(text, minion_key)}
    pair.nl.run("rotation.drain", lb=LB2, reason="then restored", wait=5)
    old = pair.nl.failover_state()["actions"][f"loadbalancer:{LB2}"]
    pair.nl.run("rotation.restore", lb=LB2)
    for name in ("nl", "ch"):
        pair.views[name].wait(
            lambda name=name: drains(pair.views[name]) == [], f"{name} to hold no drain"
        )
    before = published()
    pair.nl.salt(NS1, "event.send", "paphosting/operator/action", data=forged)
    pair.nl.salt(NS1, "event.send", "paphosting/operator/action", data=old)
    # Through the minion's own journal too: it refuses what the masters' key did not sign.
    ret = pair.nl.local.cmd(
        NS1, "rotation.keep_actions", [], kwarg={"entries": {"x": forged}, "fire": True}
    )
    assert "bad signature on the drain of lb1" in str(ret[NS1]), ret
    for name in ("nl", "ch"):
        status = pair.views[name]
        status.wait(
            lambda status=status: "operator action [" in status.run_cli("rotation.status").stdout,
            f"{name} to count the forged action among the refused",
            timeout=30,
        )
    assert published() == before
    assert drains(pair.nl) == drains(pair.ch) == []
    assert everywhere(parsed, LB1, LB2)


# --- a master that dies leaves no job in the way (issue 11) -----------------------------------


def test_a_state_job_left_by_a_dead_master_does_not_hold_the_other_masters_push(
    pair, parsed, svn_server, paphosting
):
    """NL starts a state job on a nameserver and dies: the job would hold that minion's state
    queue (and fail CH's push there: "state.single is running as PID ...") until its requests
    to NL gave up. CH's push ends it, says so, and applies."""
    with_masters = copy.deepcopy(paphosting)
    with_masters["masters"] = {
        name: {"address": pair.masters[name].config["interface"]} for name in multimaster.NAMES
    }
    rev = svn_server.commit({"pillar/paphosting.sls": sls(with_masters)}, "the masters")
    pair.quiesce()
    jid = pair.nl.local.cmd_async(NS1, "state.single", ["cmd.run"], kwarg={"name": "sleep 300"})
    assert jid
    pair.nl.wait(
        lambda: any(j.get("jid") == jid for j in pair.nl.salt(NS1, "saltutil.running")),
        "NL's state job to run on ns1",
    )
    pair.stop("nl")
    try:
        ret = pair.ch.run_cli("svnpillar.push")
        assert ret.returncode == 0, ret.stdout + ret.stderr
        assert f"r{rev} is live on ch" in ret.stdout
        assert f"{NS1}: ended state job(s) {jid} left by a master that is not reachable (nl)" in (
            ret.stdout
        ), ret.stdout
        assert not [j for j in pair.ch.salt(NS1, "saltutil.running") if j.get("jid") == jid]
    finally:
        pair.start("nl")
    # With both masters up, another master's job is never ended: it is not this master's to end.
    jid = pair.ch.local.cmd_async(NS2, "state.single", ["cmd.run"], kwarg={"name": "sleep 30"})
    pair.ch.wait(
        lambda: any(j.get("jid") == jid for j in pair.ch.salt(NS2, "saltutil.running")),
        "CH's state job to run on ns2",
    )
    ret = pair.nl.run_cli("svnpillar.push")
    assert "ended state job" not in ret.stdout, ret.stdout
    assert "running as PID" in ret.stdout, ret.stdout  # the push reached ns2, which was busy
    assert any(j.get("jid") == jid for j in pair.ch.salt(NS2, "saltutil.running"))
    pair.ch.salt(NS2, "saltutil.term_job", jid)
