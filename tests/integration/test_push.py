"""Pushing the pillar from Subversion to a real master and real minions.

One svnserve on 127.0.0.1 and one salt master (the production configuration,
``tests/integration/conftest.py``) with three minions (lb1, ns1 and lb2 of the example platform,
each in its own ``paphosting_root``) serve the whole module. The master serves only what
``svnpillar.push`` validated and made live; its schedule runs ``svnpillar.sync`` every few
seconds, as in ``conf/master.d/svnpillar.conf``.
"""

import copy
import os

import pytest
import salt.runner
import yaml

from harness.svn import SHORT, USER, master_options, served
from paphosting import daemon, dnsserver, haproxy, model
from tests.integration.conftest import example_on_loopback

LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
NS1 = "ns1.paphosting.net"
MINIONS = (LB1, NS1, LB2)
TOP = "base:\n  '*':\n    - paphosting\n"


# --- the platform in Subversion ----------------------------------------------------------------


@pytest.fixture(scope="module")
def platform(loopback):
    """The example platform on fresh loopback addresses and ports (the value of ``paphosting``)."""
    pillar = example_on_loopback(loopback)
    pillar["zones"]["paphosting.nl"]["records"]["mail"] = [
        {"type": "A", "data": pillar["webservers"]["web3.paphosting.net"]["address"]}
    ]
    return pillar


def sls(pillar):
    return yaml.safe_dump({"paphosting": pillar}, sort_keys=False)


@pytest.fixture(scope="module")
def svn_server(tmp_path_factory, loopback):
    with served(tmp_path_factory.mktemp("svn"), loopback.port("127.0.0.1")) as server:
        yield server


@pytest.fixture
def svn_running(svn_server):
    """svnserve is up at the start and at the end of the test (a test may stop it)."""
    svn_server.start()
    try:
        yield svn_server
    finally:
        svn_server.start()


# --- a master and its minions ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(salt_platform, svn_server, platform, tmp_path_factory):
    """A master serving the pillar only through svnpillar, and lb1, ns1, lb2; the first valid
    revision committed, pushed and applied (the state every test starts from).

    The master's schedule runs svnpillar.sync every 3 seconds, as conf/master.d/svnpillar.conf
    does every 30.
    """
    overrides = master_options(tmp_path_factory.mktemp("svnpillar"), svn_server, **SHORT)
    with salt_platform(list(MINIONS), platform, master_overrides=overrides) as fleet:
        try:
            rev = svn_server.commit(
                {"pillar/top.sls": TOP, "pillar/paphosting.sls": sls(platform)},
                "the example platform",
            )
            ret = fleet.run_cli("svnpillar.push")
            assert ret.returncode == 0, ret.stdout + ret.stderr
            assert f"r{rev} is live" in ret.stdout
            yield fleet
        finally:
            _stop_services(fleet, platform)


def _stop_services(fleet, platform):
    """Stop what the highstates started under each minion's root (haproxy, the DNS server)."""
    parsed = model.parse(platform)
    for mid in MINIONS:
        root = str(fleet.root(mid))
        if mid in parsed.loadbalancers:
            haproxy.stop(root)
        if mid in parsed.nameservers:
            daemon.stop(dnsserver.daemon(parsed.nameservers[mid], root))


@pytest.fixture(scope="module")
def master(fleet):
    return fleet.master


@pytest.fixture(scope="module")
def roots(fleet):
    return {m: fleet.root(m) for m in MINIONS}


@pytest.fixture(scope="module")
def run(fleet):
    """``salt-run`` for real; returns ``(exit status, the report text)``."""

    def _run(fun, *args):
        ret = fleet.master.salt_run_cli(timeout=300).run(fun, *args)
        # A text return: saltfactories puts the decoded string in stdout. A failure: a dict.
        if isinstance(ret.data, dict) and "retcode" in ret.data:
            return ret.returncode, ret.data["comment"]
        return ret.returncode, ret.stdout

    return _run


def store_of(master):
    return master.config["paphosting_svn"]["store"]


def live_revision(master):
    path = os.path.join(store_of(master), "pillar", "live")
    return int(os.path.basename(os.readlink(path))[len("rev-") :])


def haproxy_cfg(roots, mid):
    return (roots[mid] / "etc" / "haproxy" / "haproxy.cfg").read_text()


def zone_file(roots, mid):
    candidates = list(roots[mid].rglob("paphosting.nl.zone"))
    assert len(candidates) == 1, candidates
    return candidates[0].read_text()


def snapshot(roots):
    """Every rendered config on every minion, to prove that nothing changed."""
    out = {}
    for root in roots.values():
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in (".cfg", ".conf", ".zone"):
                out[str(path)] = path.read_bytes()
    return out


# --- the tests ---------------------------------------------------------------------------------


def test_a_valid_commit_reaches_the_servers(fleet, svn_running, master, roots, platform, run):
    before_lb = haproxy_cfg(roots, LB1)
    before_zone = zone_file(roots, NS1)
    changed = copy.deepcopy(platform)
    changed["haproxy"]["timeout_client"] = 45000
    changed["zones"]["paphosting.nl"]["records"]["ftp"] = [
        {"type": "A", "data": platform["webservers"]["web1.paphosting.net"]["address"]}
    ]
    rev = svn_running.commit(
        {"pillar/paphosting.sls": sls(changed)}, "longer client timeout, an ftp name"
    )

    code, text = run("svnpillar.push")

    assert code == 0, text
    assert live_revision(master) == rev
    assert svn_running.pushed(rev).startswith(f"{master.id} ")
    for mid in (LB1, LB2):
        cfg = haproxy_cfg(roots, mid)
        assert "45000" in cfg and cfg != before_lb
    assert "ftp" in zone_file(roots, NS1) and zone_file(roots, NS1) != before_zone
    # The canary (one load balancer, one nameserver) went first, the rest after.
    assert text.index(f"canary: {LB1}, {NS1}") < text.index(f"rest: {LB2}")
    code, status = run("svnpillar.status")
    assert f"r{rev} by {USER}" in status
    assert "last push" in status and "applied" in status


def invalid_schema(platform):
    bad = copy.deepcopy(platform)
    bad["services"]["www"]["port"] = 70000
    return bad, "pillar/paphosting.sls", "paphosting:services:www:port", "70000 is out of range"


def invalid_haproxy(platform):
    bad = copy.deepcopy(platform)
    # The schema takes any two status codes; haproxy -c refuses a range that goes down.
    bad["services"]["www"]["check"]["expect_status"] = "399-200"
    return (
        bad,
        "pillar/paphosting.sls",
        "paphosting:services:www:check:expect_status",
        "invalid range of status codes",
    )


def invalid_zone(platform):
    bad = copy.deepcopy(platform)
    # A CDS that no DNSKEY of the zone matches: BIND's checker (for ns1) refuses the zone. (A
    # delegation without glue, the example before, is the schema's to refuse now.)
    bad["zones"]["paphosting.nl"]["records"]["@"].append(
        {"type": "CDS", "data": "12345 13 2 " + "ab" * 32}
    )
    return bad, "pillar/paphosting.sls", "paphosting:zones:paphosting.nl", "bad CDS"


@pytest.mark.parametrize(
    "invalid", [invalid_schema, invalid_haproxy, invalid_zone], ids=["schema", "haproxy", "zone"]
)
def test_an_invalid_commit_is_refused_and_nothing_changes(
    fleet, svn_running, master, roots, platform, run, invalid
):
    live = live_revision(master)
    before = snapshot(roots)
    content, path, key, words = invalid(platform)
    rev = svn_running.commit({"pillar/paphosting.sls": sls(content)}, f"broken: {key}")

    code, text = run("svnpillar.push")

    assert code != 0
    assert f"push refused: r{rev}" in text
    assert f"{path}: pillar {key}" in text
    assert words in text
    assert f"the live pillar stays r{live}" in text
    assert live_revision(master) == live
    assert svn_running.pushed(rev) is None
    assert snapshot(roots) == before
    # And a minion asking for its pillar now still gets the live revision.
    pillar = fleet.salt(LB1, "pillar.items", unmask=True)
    assert pillar["paphosting"]["services"]["www"] == platform["services"]["www"]


def test_test_mode_shows_changes_and_changes_nothing(
    fleet, svn_running, master, roots, platform, run
):
    live = live_revision(master)
    before = snapshot(roots)
    changed = copy.deepcopy(platform)
    changed["haproxy"]["timeout_server"] = 47000
    rev = svn_running.commit({"pillar/paphosting.sls": sls(changed)}, "longer server timeout")

    code, text = run("svnpillar.push", "test=True")

    assert code == 0, text
    assert f"test: r{rev} is valid" in text
    assert f"{LB1}: would change" in text and f"{LB2}: would change" in text
    assert f"{NS1}: " in text
    assert text.count("+    timeout server 47000") == 2  # the diff of each haproxy.cfg
    assert live_revision(master) == live
    assert svn_running.pushed(rev) is None
    assert snapshot(roots) == before
    assert not os.path.lexists(os.path.join(store_of(master), "pillar", "candidate"))


def test_subversion_down_push_fails_and_highstate_still_works(
    fleet, svn_running, master, roots, run
):
    live = live_revision(master)
    good = haproxy_cfg(roots, LB1)
    svn_running.stop()

    code, text = run("svnpillar.push")

    assert code != 0
    assert "Subversion server unreachable" in text and "Connection refused" in text
    assert f"the live pillar stays r{live}" in text
    assert live_revision(master) == live
    # A highstate still applies the last validated revision: a hand edit is put right.
    cfg = roots[LB1] / "etc" / "haproxy" / "haproxy.cfg"
    cfg.write_text(good + "# hand edit\n")
    fleet.highstate([LB1])
    assert cfg.read_text() == good


def test_clear_errors_for_a_missing_revision_and_a_wrong_url(fleet, svn_running, master, run):
    code, text = run("svnpillar.push", "rev=9999")
    assert code != 0
    assert "No such revision 9999" in text
    other = other_master(master, svn_running, "wrong-url")
    other["paphosting_svn"]["url"] = svn_running.url + "-nope"
    text = call(other, "svnpillar.push")
    assert (
        "No repository found" in text["comment"] and "check the repository URL" in text["comment"]
    )


def other_master(master, svn_server, name):
    """The options of a second master: same minions and keys, its own store, so its own live."""
    opts = master.config.copy()
    opts.update(
        master_options(
            os.path.join(os.path.dirname(store_of(master)), f"other-{name}"), svn_server, **SHORT
        )
    )
    opts["id"] = name
    return opts


def call(opts, fun, **kwargs):
    return salt.runner.RunnerClient(opts).cmd(fun, kwarg=kwargs, print_event=False)


def test_sync_follows_the_newest_pushed_revision_and_never_goes_back(
    fleet, svn_running, master, platform, run
):
    # A second master (its own cachedir) catches up with what this one pushed.
    ch = other_master(master, svn_running, "ch")
    live = live_revision(master)
    assert call(ch, "svnpillar.sync").startswith(f"r{live} is live")
    assert call(ch, "svnpillar.revision")["revision"] == live
    # "ch" pushes a new revision (marks it pushed in Subversion): the running master's schedule
    # makes it live without anyone acting.
    changed = copy.deepcopy(platform)
    changed["haproxy"]["maxconn"] = 5000
    rev = svn_running.commit({"pillar/paphosting.sls": sls(changed)}, "more connections")
    svn_running.mark(rev, "ch 2026-01-01T00:00:00Z")
    fleet.wait(
        lambda: live_revision(master) == rev,
        f"the master's scheduled sync to make r{rev} live",
        timeout=60,
    )
    # Unmarking it (so that the newest pushed revision is older) never takes a master back.
    svn_running.unmark(rev)
    assert run("svnpillar.sync") == (0, f"up to date: r{rev} is live")
    assert live_revision(master) == rev
    # A push of an older revision is refused: the masters would disagree.
    svn_running.mark(rev, "ch 2026-01-01T00:00:00Z")
    code, text = run("svnpillar.push", f"rev={live}")
    assert code != 0 and f"r{live} is older than r{rev}" in text
