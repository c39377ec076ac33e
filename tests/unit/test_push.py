"""The pure part of a push: the revision store, locating pillar paths, validation, outcomes, texts
(:mod:`paphosting.pushstore`, ``pushproblems``, ``pushcheck``, ``pushapply``, ``pushreport``)."""

import datetime
import json
import os
import pathlib
import threading

import pytest

from paphosting import errors, model, pushapply, pushcheck, pushproblems, pushreport, pushstore
from tests.unit import platforms

LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
NS1, NS2, NS3 = "ns1.paphosting.net", "ns2.paphosting.net", "ns3.paphosting.net"
WEB = ["web1.paphosting.net", "web2.paphosting.net", "web3.paphosting.net"]


# --- the store ---------------------------------------------------------------------------------


def _tree(store, number, text="x: 1\n"):
    tree = store.staging(number)
    with open(os.path.join(tree, "top.sls"), "w") as fh:
        fh.write(text)
    return store.install(tree, number)


def test_live_is_a_symlink_swapped_atomically(tmp_path):
    store = pushstore.Store(tmp_path / "paphosting")
    assert store.live_revision() is None
    _tree(store, 3)
    store.make_live(3)
    assert store.live_revision() == 3
    assert os.readlink(store.live) == "rev-3"
    assert pathlib.Path(store.live, "top.sls").read_text() == "x: 1\n"
    _tree(store, 5, "x: 2\n")
    store.make_live(5)
    assert store.live_revision() == 5
    assert pathlib.Path(store.live, "top.sls").read_text() == "x: 2\n"
    assert not [n for n in os.listdir(store.pillar) if ".new-" in n]


def test_make_live_refuses_a_revision_not_held(tmp_path):
    store = pushstore.Store(tmp_path / "paphosting")
    _tree(store, 1)
    store.make_live(1)
    with pytest.raises(errors.PapError, match="revision 2 is not in"):
        store.make_live(2)
    assert store.live_revision() == 1


def test_install_keeps_an_existing_revision(tmp_path):
    store = pushstore.Store(tmp_path / "paphosting")
    _tree(store, 4, "first\n")
    _tree(store, 4, "second\n")  # same svn revision exported again
    assert pathlib.Path(store.rev_dir(4), "top.sls").read_text() == "first\n"
    assert [n for n in os.listdir(store.pillar) if n.startswith(".export-")] == []


def test_prune_keeps_the_newest_and_the_live_one(tmp_path):
    store = pushstore.Store(tmp_path / "paphosting")
    for n in (1, 2, 3, 4, 5, 6):
        _tree(store, n)
    store.make_live(2)
    removed = store.prune(keep=3)
    assert removed == [1, 3]
    assert store.revisions() == [2, 4, 5, 6]
    assert store.live_revision() == 2


def test_record_parts_are_replaced_and_kept(tmp_path):
    store = pushstore.Store(tmp_path / "paphosting")
    assert store.record() == {}
    store.update_record(live={"revision": 3})
    store.update_record(last_push={"outcome": "refused"})
    data = json.loads(pathlib.Path(store.record_path).read_text())
    assert data == {"live": {"revision": 3}, "last_push": {"outcome": "refused"}}


def test_one_push_or_sync_at_a_time(tmp_path):
    store = pushstore.Store(tmp_path / "paphosting")
    inside = threading.Event()
    release = threading.Event()

    def hold():
        with pushstore.Store(tmp_path / "paphosting").lock():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert inside.wait(10)
        with pytest.raises(pushstore.Busy, match="another push or sync"), store.lock():
            pass
    finally:
        release.set()
        t.join()
    with store.lock():
        pass


def test_candidate_link(tmp_path):
    store = pushstore.Store(tmp_path / "paphosting")
    tree = store.staging(7)
    pathlib.Path(tree, "top.sls").write_text("base: {}\n")
    pushstore.prepare_candidate(tree)
    store.set_candidate(tree)
    assert sorted(os.listdir(store.candidate)) == ["top.orig.sls", "top.sls"]
    assert pushstore.CANDIDATE_ENV in pathlib.Path(store.candidate, "top.sls").read_text()
    store.clear_candidate()
    assert not os.path.lexists(store.candidate)


def test_sls_names(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("top.sls", "paphosting.sls", "a/init.sls", "a/b.sls", "README"):
        (tmp_path / name).write_text("{}\n")
    files = pushcheck.sls_files(str(tmp_path))
    assert files == ["a/b.sls", "a/init.sls", "paphosting.sls", "top.sls"]
    assert [pushcheck.sls_name(f) for f in files] == ["a.b", "a", "paphosting", "top"]


# --- locating a pillar path --------------------------------------------------------------------


SOURCES = {
    "pillar/top.sls": {"base": {"*": ["paphosting", "zones"]}},
    "pillar/paphosting.sls": {
        "paphosting": {"services": {"www": {"servers": [{"name": "web1"}], "port": 8000}}}
    },
    "pillar/zones.sls": {"paphosting": {"zones": {"paphosting.nl": {"ttl": 3600}}}},
}


@pytest.mark.parametrize(
    "path, files",
    [
        (("paphosting", "services", "www", "port"), ["pillar/paphosting.sls"]),
        (("paphosting", "services", "www", "servers", "0", "port"), ["pillar/paphosting.sls"]),
        (("paphosting", "zones", "paphosting.nl", "soa", "mname"), ["pillar/zones.sls"]),
        (("paphosting", "loadbalancers"), ["pillar/paphosting.sls", "pillar/zones.sls"]),
        (("elsewhere",), []),
    ],
)
def test_locate_names_the_file_that_defines_the_path(path, files):
    assert pushproblems.locate(SOURCES, path) == files


# --- validation with the real checkers ---------------------------------------------------------


def push_pillar():
    """BIND, NSD and Knot (each server's checker runs), three webservers, www and shop, and the
    masters nl and ch."""
    return platforms.pillar(servers=platforms.EVERY_SERVER, webservers=3, shop=True, masters=True)


def _compiled(pillar, minions=None):
    minions = minions or [LB1, LB2, NS1, NS2, NS3, *WEB]
    return {m: pushcheck.Compiled(m, {"paphosting": pillar}) for m in minions}


def _sources(pillar):
    return {
        "pillar/top.sls": {"base": {"*": ["paphosting"]}},
        "pillar/paphosting.sls": {"paphosting": pillar},
    }


def test_a_valid_platform_passes_every_checker():
    pillar = push_pillar()
    done = pushcheck.validate(
        12, _compiled(pillar), _sources(pillar), "pillar", ["top.sls", "paphosting.sls"]
    )
    assert done.minions == sorted([LB1, LB2, NS1, NS2, NS3, *WEB])
    assert f"haproxy.cfg of {LB1}" in done.checked and f"haproxy.cfg of {LB2}" in done.checked
    assert {
        "zone paphosting.nl (bind)",
        "zone paphosting.nl (nsd)",
        "zone paphosting.nl (knot)",
    } <= set(done.checked)
    assert f"knot config of {NS3}" in done.checked
    assert done.roles()[LB1] == ["loadbalancer"]


def test_a_schema_error_names_file_and_pillar_path():
    pillar = push_pillar()
    pillar["services"]["www"]["port"] = 70000
    with pytest.raises(pushcheck.Rejected) as exc:
        pushcheck.validate(
            13, _compiled(pillar), _sources(pillar), "pillar", ["top.sls", "paphosting.sls"]
        )
    (problem,) = exc.value.problems
    assert problem.files == ("pillar/paphosting.sls",)
    assert problem.path == "paphosting:services:www:port"
    assert "70000 is out of range" in problem.message
    assert str(problem).startswith(
        "pillar/paphosting.sls: pillar paphosting:services:www:port: 70000 is out of range"
    )


@pytest.mark.parametrize("key", [None, 1, datetime.date(2026, 1, 1)], ids=repr)
def test_a_key_yaml_reads_as_null_a_number_or_a_date_is_a_schema_error(key):
    """``~:``, ``1:`` or ``2026-01-01:`` beside string keys: the push names the key, where the
    pillar's digest (JSON cannot sort an int beside a string) raised a TypeError before."""
    pillar = push_pillar()
    pillar["zones"]["paphosting.nl"]["records"][key] = [{"type": "A", "data": "192.0.2.1"}]
    with pytest.raises(pushcheck.Rejected) as exc:
        pushcheck.validate(
            13, _compiled(pillar), _sources(pillar), "pillar", ["top.sls", "paphosting.sls"]
        )
    (problem,) = exc.value.problems
    assert problem.path == f"paphosting:zones:paphosting.nl:records:{key}"


def test_a_zone_the_checker_rejects_names_zone_checker_and_minion():
    pillar = push_pillar()
    # A CDS that no DNSKEY of the zone matches: NSD and Knot load it, BIND's checker refuses it.
    pillar["zones"]["paphosting.nl"]["records"]["@"].append(
        {"type": "CDS", "data": "12345 13 2 " + "ab" * 32}
    )
    with pytest.raises(pushcheck.Rejected) as exc:
        pushcheck.validate(14, _compiled(pillar), _sources(pillar), "pillar", ["paphosting.sls"])
    (problem,) = exc.value.problems
    assert problem.files == ("pillar/paphosting.sls",)
    assert problem.path == "paphosting:zones:paphosting.nl"
    assert "named-checkzone rejected zone paphosting.nl (bind)" in problem.message
    assert "bad CDS" in problem.message
    assert problem.minions == (NS1,)


def test_a_config_haproxy_rejects_names_the_key_and_the_line():
    pillar = push_pillar()
    # The schema takes any two status codes; haproxy wants a range that goes up.
    pillar["services"]["www"]["check"]["expect_status"] = "399-200"
    with pytest.raises(pushcheck.Rejected) as exc:
        pushcheck.validate(19, _compiled(pillar), _sources(pillar), "pillar", ["paphosting.sls"])
    (problem,) = exc.value.problems
    assert problem.files == ("pillar/paphosting.sls",)
    assert problem.path == "paphosting:services:www:check:expect_status"
    assert problem.message.startswith("haproxy -c rejected haproxy.cfg:")
    assert "invalid range of status codes '399-200'" in problem.message
    assert "http-check expect status 399-200" in problem.message
    assert "[NOTICE]" not in problem.message
    assert problem.minions == (LB1, LB2)
    assert str(problem).startswith(
        "pillar/paphosting.sls: pillar paphosting:services:www:check:expect_status: "
        f"haproxy -c rejected haproxy.cfg [{LB1}, {LB2}]:"
    )


@pytest.mark.parametrize(
    "line, path",
    [
        ("    server web2.paphosting.net 127.0.2.2:8000 cookie x backup", ("servers", "1", "name")),
        ("    http-check expect status 200-399", ("check", "expect_status")),
        ("    balance roundrobin", ()),
    ],
)
def test_narrow_finds_the_key_whose_value_is_on_the_line(line, path):
    pillar = {"paphosting": push_pillar()}
    pillar["paphosting"]["services"]["shop"]["check"]["expect_status"] = "200-399"
    base = ("paphosting", "services", "shop")
    assert pushproblems.narrow(pillar, base, line) == base + path


def test_render_errors_name_the_sls_file():
    pillar = push_pillar()
    compiled = _compiled(pillar, [LB1])
    compiled[LB1].errors = [
        "Rendering SLS 'zones.extra' failed, render error:\nmapping values are not allowed here"
    ]
    with pytest.raises(pushcheck.Rejected) as exc:
        pushcheck.validate(
            15, compiled, {}, "pillar", ["top.sls", "paphosting.sls", "zones/extra.sls"]
        )
    (problem,) = exc.value.problems
    assert problem.files == ("pillar/zones/extra.sls",)
    assert "mapping values are not allowed here" in problem.message


def test_a_server_without_pillar_is_a_top_file_problem():
    pillar = push_pillar()
    compiled = _compiled(pillar, [LB1, NS1, NS2, NS3, *WEB])
    compiled[LB2] = pushcheck.Compiled(LB2, {})  # the top file forgot it
    with pytest.raises(pushcheck.Rejected) as exc:
        pushcheck.validate(16, compiled, _sources(pillar), "pillar", ["top.sls", "paphosting.sls"])
    (problem,) = exc.value.problems
    assert problem.files == ("pillar/top.sls",)
    assert (
        f"{LB2} is a loadbalancer of the platform but the top file gives it no paphosting pillar"
        in problem.message
    )


def test_minions_outside_the_platform_are_not_checked():
    pillar = push_pillar()
    compiled = _compiled(pillar, [LB1])
    compiled["build.paphosting.net"] = pushcheck.Compiled("build.paphosting.net", {"other": 1})
    done = pushcheck.validate(17, compiled, _sources(pillar))
    assert done.minions == [LB1]


def test_the_same_problem_on_many_minions_is_reported_once():
    pillar = push_pillar()
    del pillar["loadbalancers"]
    with pytest.raises(pushcheck.Rejected) as exc:
        pushcheck.validate(
            18, _compiled(pillar, [NS1, NS2]), _sources(pillar), "pillar", ["paphosting.sls"]
        )
    texts = [str(p) for p in exc.value.problems]
    assert len(texts) == len(set(texts))
    assert any("paphosting:loadbalancers" in t for t in texts)


# --- the fleet ---------------------------------------------------------------------------------


def test_canary_is_one_load_balancer_and_one_nameserver():
    pillar = push_pillar()
    done = pushcheck.validate(1, _compiled(pillar), _sources(pillar))
    first, rest = pushapply.canary(done, [NS2, LB2, NS1, LB1, WEB[0]])
    assert first == [LB1, NS1]
    assert rest == [LB2, NS2, WEB[0]]


STATE_RET = {
    "file_|-haproxy-config_|-/etc/haproxy/haproxy.cfg_|-managed": {
        "result": True,
        "changes": {"diff": "--- a\n+++ b\n-old\n+new\n"},
        "comment": "File updated",
        "__id__": "haproxy-config",
        "__run_num__": 0,
    },
    "service_|-haproxy_|-haproxy_|-running": {
        "result": True,
        "changes": {},
        "comment": "running",
        "__id__": "haproxy",
        "__run_num__": 1,
    },
}


def test_state_outcome_of_a_good_highstate():
    out = pushapply.state_outcome(LB1, {"ret": STATE_RET, "retcode": 0})
    assert out.ok
    assert [c[0] for c in out.changed] == ["file.managed haproxy-config"]
    assert out.changed[0][2].endswith("+new\n")
    assert out.line() == f"{LB1}: changed 1: file.managed haproxy-config"


def test_state_outcome_failures():
    bad = dict(STATE_RET)
    bad["service_|-haproxy_|-haproxy_|-running"] = dict(
        bad["service_|-haproxy_|-haproxy_|-running"],
        result=False,
        comment="haproxy did not start\nmore",
    )
    out = pushapply.state_outcome(LB1, {"ret": bad, "retcode": 2})
    assert not out.ok
    assert out.line() == f"{LB1}: FAILED: service.running haproxy: haproxy did not start"
    assert not pushapply.state_outcome(LB1, None).ok
    assert "no answer" in pushapply.state_outcome(LB1, None).line()
    rendered = pushapply.state_outcome(
        LB1, {"ret": ["Rendering SLS 'base:loadbalancer' failed"], "retcode": 1}
    )
    assert not rendered.ok and "Rendering SLS" in rendered.line()


def test_state_outcome_in_test_mode_counts_predicted_changes():
    pred = {k: dict(v, result=None, changes={}) for k, v in STATE_RET.items()}
    pred["service_|-haproxy_|-haproxy_|-running"]["result"] = True
    out = pushapply.state_outcome(LB1, {"ret": pred, "retcode": 0}, test=True)
    assert out.ok
    assert out.line(test=True) == f"{LB1}: would change 1: file.managed haproxy-config"


# --- texts -------------------------------------------------------------------------------------


def test_refusal_text_says_what_was_kept():
    problem = pushproblems.Problem(
        ("pillar/paphosting.sls",), "paphosting:services:www:port", "70000 is out of range 1..65535"
    )
    text = pushreport.refusal_text(13, [problem], 12)
    assert text.splitlines() == [
        "push refused: r13 has 1 problem:",
        "  - pillar/paphosting.sls: pillar paphosting:services:www:port: 70000 is out of range 1..65535",
        "Nothing was changed: the live pillar stays r12 and no minion was touched.",
    ]


def test_status_text_is_a_table():
    record = {
        "live": {
            "revision": 12,
            "author": "alice",
            "date": "2026-01-31T12:00:00.123Z",
            "message": "raise www port\nmore",
            "since": "2026-01-31T12:01:00Z",
            "by": "push from nl",
        },
        "last_push": {
            "time": "2026-01-31T12:01:00Z",
            "revision": 12,
            "outcome": "applied",
            "minions": [f"{LB1}: no changes"],
        },
        "last_sync": {"time": "2026-01-31T12:02:00Z", "outcome": "up to date: r12 is live"},
    }
    text = pushreport.status_text("nl", record, 12, [11, 12])
    assert text.splitlines() == [
        "master     nl",
        'live       r12 by alice, 2026-01-31 12:00:00 UTC: "raise www port"',
        "since      2026-01-31 12:01:00 UTC (push from nl)",
        "held       r11, r12",
        "last push  2026-01-31 12:01:00 UTC r12: applied",
        f"           {LB1}: no changes",
        "last sync  2026-01-31 12:02:00 UTC: up to date: r12 is live",
    ]


# Salt's render errors as they reach a pillar's _errors (pillar_safe_render_error: False).
YAML_PARSER_ERROR = (
    "Rendering SLS 'paphosting' failed, render error:\nwhile parsing a flow sequence\n"
    "  in \"<unicode string>\", line 22, column 8\ndid not find expected ',' or ']'\n"
    '  in "<unicode string>", line 23, column 23'
)
JINJA_ERROR = (
    "Rendering SLS 'paphosting' failed, render error:\nJinja syntax error: expected token "
    "'end of print statement', got 'lb1'; line 23\n\n---\n[...]\n  loadbalancers:\n  {{ foo \n"
    "    lb1.paphosting.net:    <======================\n[...]\n---"
)
YAML_SCANNER_ERROR = "Rendering SLS 'paphosting' failed, render error:\nmapping values are not allowed in this context"


@pytest.mark.parametrize(
    "message, line, expected",
    [
        (
            YAML_PARSER_ERROR,
            None,
            (
                23,
                "while parsing a flow sequence (line 22, column 8); "
                "did not find expected ',' or ']' (line 23, column 23)",
            ),
        ),
        (
            JINJA_ERROR,
            None,
            (23, "Jinja syntax error: expected token 'end of print statement', got 'lb1'"),
        ),
        (YAML_SCANNER_ERROR, 7, (7, "mapping values are not allowed in this context")),
        (YAML_SCANNER_ERROR, None, (None, "mapping values are not allowed in this context")),
    ],
)
def test_render_cause_is_the_line_and_the_cause_without_salts_excerpt(message, line, expected):
    assert pushproblems.render_cause(message, line) == expected


def test_a_pillar_that_does_not_render_is_refused_for_the_file_and_line_only():
    """The part that did render lacks the rest: its schema errors (loadbalancers is required)
    would be a wrong diagnosis. The refusal names the file, the line and the cause."""
    pillar = push_pillar()
    del pillar["loadbalancers"]  # as if the file defining them did not render
    compiled = _compiled(pillar, [LB1, NS1])
    for item in compiled.values():
        item.errors = [YAML_SCANNER_ERROR]
    with pytest.raises(pushcheck.Rejected) as exc:
        pushcheck.validate(
            19,
            compiled,
            _sources(pillar),
            "pillar",
            ["top.sls", "paphosting.sls"],
            render_lines={"paphosting.sls": 31},
        )
    (problem,) = exc.value.problems
    assert str(problem) == (
        "pillar/paphosting.sls: line 31: cannot render: mapping values are not allowed in this context"
    )


# --- jobs a dead master left (issue 11) ---------------------------------------------------------


def test_the_other_masters_are_those_not_on_this_host():
    platform = model.parse(push_pillar())
    addresses = {n: m.address for n, m in platform.masters.items()}
    assert pushapply.other_masters(platform, {addresses["nl"], "10.0.0.1"}) == {
        "ch": addresses["ch"]
    }
    assert pushapply.other_masters(platform, set(), own_name="ch") == {"nl": addresses["nl"]}
    assert pushapply.other_masters(platform, set(addresses.values())) == {}


def test_only_state_jobs_this_master_did_not_publish_are_orphans():
    running = {
        "ns1": [
            {"jid": "1", "fun": "state.apply", "pid": 10},
            {"jid": "2", "fun": "state.single", "pid": 11},
            {"jid": "3", "fun": "rotation.apply", "pid": 12},  # not a state job
        ],
        "ns2": [{"jid": "4", "fun": "state.highstate", "pid": 13}],
        "lb1": [],
        "lb2": False,  # no answer
    }
    mine = {"2", "4"}
    assert pushapply.orphaned_state_jobs(running, lambda jid: jid in mine) == {"ns1": ["1"]}
    assert pushapply.orphaned_state_jobs(running, lambda jid: True) == {}


# --- the fleet, through injected Salt functions ------------------------------------------------


class FakeSalt:
    """``cmd`` of a :class:`pushapply.Fleet`: records each call, answers ``state.apply`` with
    ``highstates[minion]`` and ``saltutil.running`` with ``running``."""

    def __init__(self, highstates, running=None):
        self.highstates = highstates
        self.running = running or {}
        self.calls = []

    def cmd(self, minions, fun, arg=(), kwarg=None, timeout=None, full_return=False):
        self.calls.append((fun, list(minions), list(arg)))
        if fun == "state.apply":
            return {m: {"ret": self.highstates[m], "retcode": 0} for m in minions}
        if fun == "saltutil.running":
            return {m: self.running.get(m, []) for m in minions}
        return {m: True for m in minions}


def _fleet(salt, published=(), own=()):
    return pushapply.Fleet(
        cmd=salt.cmd,
        accepted=lambda: [LB1, LB2, NS1, NS2],
        published_here=lambda jid: jid in published,
        own_addresses=set(own),
        progress=lambda line: None,
    )


def test_waves_apply_the_canary_first_then_the_rest():
    done = pushcheck.validate(1, _compiled(push_pillar()), _sources(push_pillar()))
    salt = FakeSalt(dict.fromkeys([LB1, LB2, NS1, NS2], STATE_RET))
    ok, outcomes, lines = _fleet(salt, own=["0.0.0.0"]).waves(done, 60)
    applies = [minions for fun, minions, _ in salt.calls if fun == "state.apply"]
    assert ok and applies == [[LB1, NS1], [LB2, NS2]]
    assert sorted(outcomes) == [LB1, LB2, NS1, NS2]  # web servers not accepted: not targeted
    assert lines[0] == f"canary: {LB1}, {NS1}"


def test_a_failed_canary_stops_the_rest():
    done = pushcheck.validate(1, _compiled(push_pillar()), _sources(push_pillar()))
    bad = {k: dict(v, result=False) for k, v in STATE_RET.items()}
    salt = FakeSalt({LB1: bad, NS1: STATE_RET, LB2: STATE_RET, NS2: STATE_RET})
    ok, outcomes, lines = _fleet(salt).waves(done, 60, test=True)
    assert not ok and sorted(outcomes) == [LB1, NS1]
    assert lines[-1] == f"rest: NOT tested, the canary failed: {LB2}, {NS2}"


def test_orphans_are_ended_only_when_no_other_master_answers(monkeypatch):
    platform = model.parse(push_pillar())
    own = {platform.masters["nl"].address}
    running = {NS1: [{"jid": "7", "fun": "state.apply"}, {"jid": "8", "fun": "state.apply"}]}
    monkeypatch.setattr(pushapply.daemon, "port_open", lambda *a, **k: True)
    salt = FakeSalt({}, running)
    assert _fleet(salt, published={"8"}, own=own).clear_orphans([NS1], platform, 60) == []
    assert salt.calls == []  # the other master answers: its jobs are its own
    monkeypatch.setattr(pushapply.daemon, "port_open", lambda *a, **k: False)
    (line,) = _fleet(salt, published={"8"}, own=own).clear_orphans([NS1], platform, 60)
    assert line == f"{NS1}: ended state job(s) 7 left by a master that is not reachable (ch)"
    assert ("saltutil.term_job", [NS1], ["7"]) in salt.calls
