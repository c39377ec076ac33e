"""The haproxy_cfg execution and state modules through Salt's loaders, with a real haproxy.

haproxy runs in service mode ``process`` under this module's ``paphosting_root``, in front of two
demo webapps on loopback addresses; every test leaves it stopped or running as the next expects
and the module's finalizer stops it.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import threading

import pytest
import yaml
from salt.exceptions import CommandExecutionError

from harness import services
from harness.client import http_get
from harness.wait import wait_until
from paphosting import haproxy as hap
from paphosting import model
from tests.conftest import REPO, example_pillar, require_binary

WWW, SHOP = "www.example.test", "shop.example.test"


@pytest.fixture(scope="module", autouse=True)
def haproxy_binary():
    require_binary("haproxy")


@pytest.fixture(scope="module")
def me(loaders):
    return loaders.opts["id"]


@pytest.fixture(scope="module")
def site(loopback, tmp_path_factory, me):
    """A pillar whose load balancer is this minion, and its two webservers, running."""
    pillar = services.platform_pillar(loopback, lbs=1, webservers=2, failback="auto")
    pillar["loadbalancers"] = {me: pillar["loadbalancers"].pop("lb1.test")}
    apps = services.webapps_of(pillar, tmp_path_factory.mktemp("webapps"))
    yield pillar
    for app in apps.values():
        app.stop()


@pytest.fixture(scope="module")
def paths(minion_root):
    return hap.layout(str(minion_root))


@pytest.fixture(scope="module", autouse=True)
def stop_haproxy(minion_root):
    yield
    hap.stop(str(minion_root))


@pytest.fixture
def stopped(minion_root, paths):
    """No haproxy running and no configuration: a fresh load balancer."""
    hap.stop(str(minion_root))
    pathlib.Path(paths["config"]).unlink(missing_ok=True)


def lb_of(pillar, me):
    lb = pillar["loadbalancers"][me]
    return lb["address"], lb["http_port"]


def changed(pillar, **check):
    new = json.loads(json.dumps(pillar))
    new["services"]["www"]["check"].update(check)
    return new


# --- execution module -------------------------------------------------------------------------


def test_render_defaults_to_this_minion(set_pillar, site, me, paths):
    loaders = set_pillar(site)
    text = loaders.modules.haproxy_cfg.render()
    assert text == hap.render(model.parse(site), me, loaders.opts["paphosting_root"])
    address, port = lb_of(site, me)
    assert f"bind {address}:{port}" in text
    assert f"stats socket {paths['admin_socket']} " in text


def test_render_any_load_balancer_from_any_minion(set_pillar):
    loaders = set_pillar(example_pillar())
    text = loaders.modules.haproxy_cfg.render(lb="lb2.paphosting.net")
    assert "bind 127.0.1.2:8080" in text
    with pytest.raises(
        CommandExecutionError,
        match=r"pillar paphosting:loadbalancers: 'nope.test' is not a load balancer",
    ):
        loaders.modules.haproxy_cfg.render(lb="nope.test")


def test_render_on_a_minion_that_is_no_load_balancer(set_pillar):
    loaders = set_pillar(example_pillar())
    with pytest.raises(
        CommandExecutionError,
        match=r"pillar paphosting:loadbalancers: 'fn-.*' is not a load balancer",
    ):
        loaders.modules.haproxy_cfg.render()


def test_check_uses_the_real_haproxy(set_pillar, site, tmp_path):
    loaders = set_pillar(site)
    assert loaders.modules.haproxy_cfg.check(text=loaders.modules.haproxy_cfg.render()) is True
    with pytest.raises(CommandExecutionError, match=r"unknown keyword 'bogus'"):
        loaders.modules.haproxy_cfg.check(text="global\n    bogus\n")
    bad = tmp_path / "bad.cfg"
    bad.write_text("defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:notaport\n")
    with pytest.raises(CommandExecutionError, match=re.escape(str(bad))):
        loaders.modules.haproxy_cfg.check(path=str(bad))


def test_every_example_load_balancer_gets_a_valid_config_with_the_same_cookies(set_pillar):
    loaders = set_pillar(example_pillar())
    platform = model.parse(example_pillar())
    assert loaders.modules.haproxy_cfg.validate() == {
        lb: f"valid ({len(hap.render(platform, lb, loaders.opts['paphosting_root']).splitlines())} lines, haproxy -c accepts it)"
        for lb in platform.loadbalancers
    }
    shops = [
        loaders.modules.haproxy_cfg.render(lb=lb).split("\nbackend shop\n")[1].split("\n\n")[0]
        for lb in platform.loadbalancers
    ]
    for srv in platform.services["shop"].servers:
        lines = [
            [
                line.strip()
                for line in shop.splitlines()
                if line.strip().startswith(f"server {srv.name} ")
            ]
            for shop in shops
        ]
        assert len(lines[0]) == 1 and lines[0][0].endswith(
            f" cookie {hap.cookie_value('shop', srv.name)}"
            + (" backup" if srv.role == "backup" else "")
        )
        assert all(found == lines[0] for found in lines)


def test_unusual_but_valid_pillars_give_valid_configs(set_pillar):
    """Several backups, manual failback, IPv6, another rotation: haproxy -c agrees. (A stateful
    service without a backup is refused by the model: docs/pillar.md.)"""
    pillar = example_pillar()
    pillar["services"]["shop"]["servers"].append({"name": "web3.paphosting.net", "role": "backup"})
    pillar["services"]["solo"] = {
        "type": "stateful",
        "hostnames": ["solo.paphosting.nl"],
        "rotation": "http0.l.paphosting.nl",
        "failback": "manual",
        "servers": [
            {"name": "web3.paphosting.net", "role": "primary", "port": 8001},
            {"name": "web1.paphosting.net", "role": "backup", "port": 8001},
        ],
    }
    pillar["loadbalancers"]["lb2.paphosting.net"]["address6"] = "::1"
    pillar["rotations"]["http1.l.paphosting.nl"] = {"members": ["lb2.paphosting.net"]}
    pillar["services"]["www"]["rotation"] = "http1.l.paphosting.nl"
    loaders = set_pillar(pillar)
    assert sorted(loaders.modules.haproxy_cfg.validate()) == [
        "lb1.paphosting.net",
        "lb2.paphosting.net",
    ]
    pillar["services"]["shop"]["failback"] = "auto"
    loaders = set_pillar(pillar)
    assert sorted(loaders.modules.haproxy_cfg.validate()) == [
        "lb1.paphosting.net",
        "lb2.paphosting.net",
    ]


# --- haproxy_cfg.managed ----------------------------------------------------------------------


@pytest.mark.parametrize("test", [True, False])
def test_managed_writes_the_config_then_changes_nothing(set_pillar, site, paths, stopped, test):
    loaders = set_pillar(site)
    config = pathlib.Path(paths["config"])
    ret = loaders.states.haproxy_cfg.managed(name="haproxy.cfg", test=test)
    assert f"+++ {config}" in ret.changes["diff"]
    if test:
        assert ret.result is None, ret.comment
        assert "would be created" in ret.comment
        assert not config.exists()
        return
    assert ret.result is True, ret.comment
    assert ret.comment == f"{config} created; haproxy -c accepted it"
    assert config.read_text() == loaders.modules.haproxy_cfg.render()
    assert config.stat().st_mode & 0o7777 == 0o644
    for again_test in (True, False):
        again = loaders.states.haproxy_cfg.managed(name="haproxy.cfg", test=again_test)
        assert again.result is True and again.changes == {}
        assert again.comment == f"{config} is up to date"


def test_managed_takes_an_explicit_path_and_mode(set_pillar, site, tmp_path):
    loaders = set_pillar(site)
    target = tmp_path / "etc" / "haproxy.cfg"
    ret = loaders.states.haproxy_cfg.managed(name=str(target), mode="0640")
    assert ret.result is True, ret.comment
    assert target.stat().st_mode & 0o7777 == 0o640
    target.chmod(0o600)
    ret = loaders.states.haproxy_cfg.managed(name=str(target), mode="0640")
    assert ret.result is True
    assert ret.changes == {"mode": {"old": "0600", "new": "0640"}}
    assert target.stat().st_mode & 0o7777 == 0o640


def test_managed_shows_a_pillar_change_as_a_diff(set_pillar, site, paths, stopped):
    loaders = set_pillar(site)
    assert loaders.states.haproxy_cfg.managed(name="haproxy.cfg").result is True
    loaders = set_pillar(changed(site, inter=300))
    ret = loaders.states.haproxy_cfg.managed(name="haproxy.cfg", test=True)
    assert ret.result is None
    diff = ret.changes["diff"]
    assert (
        "-    default-server check inter 200 " in diff
        and "+    default-server check inter 300 " in diff
    )
    assert "inter 200" in pathlib.Path(paths["config"]).read_text()


# --- the SLS: config, service, reload only on change --------------------------------------------


def run_sls(loaders, test=False):
    ret = loaders.modules.state.sls("loadbalancer", test=test)
    assert not ret.failed, ret.raw
    return ret["loadbalancer-haproxy-config"], ret["loadbalancer-haproxy-running"]


class Traffic(threading.Thread):
    """Requests through the load balancer, back to back, until stopped; counts failures."""

    def __init__(self, address, port, host):
        super().__init__(daemon=True)
        self.target = (address, port, host)
        self.halt = threading.Event()
        self.ok = 0
        self.failures = []

    def run(self):
        address, port, host = self.target
        while not self.halt.is_set():
            try:
                r = http_get(address, port, "/", host, timeout=5)
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(r.status)
            except Exception as exc:  # noqa: BLE001 - any failure is a failed request
                self.failures.append(repr(exc))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.join(10)


def test_sls_starts_haproxy_and_reloads_it_only_when_the_config_changed(
    set_pillar, site, me, minion_root, stopped
):
    loaders = set_pillar(site)
    address, port = lb_of(site, me)
    config, service = run_sls(loaders)
    assert config.changes["diff"]
    assert service.changes == {"running": {"old": False, "new": True}}, service.comment
    master = hap.status(str(minion_root))["pid"]
    workers = hap.status(str(minion_root))["workers"]
    assert http_get(address, port, "/", WWW).status == 200

    config, service = run_sls(loaders)
    assert config.changes == {} and service.changes == {}
    assert hap.status(str(minion_root))["workers"] == workers

    loaders = set_pillar(changed(site, inter=300))
    with Traffic(address, port, WWW) as traffic:
        wait_until(lambda: traffic.ok > 5, 10, message="traffic flows")
        config, service = run_sls(loaders)
        seen = traffic.ok
        wait_until(lambda: traffic.ok > seen + 5, 10, message="traffic flows after the reload")
    assert config.changes["diff"]
    assert service.changes["workers"]["old"] == workers
    assert service.comment.startswith("haproxy reloaded: its configuration changed")
    after = hap.status(str(minion_root))
    assert after["pid"] == master
    assert after["reloads"] == 1
    assert set(service.changes["workers"]["new"]) - set(workers)
    assert traffic.failures == []

    reloaded = hap.status(str(minion_root))["workers"]
    config, service = run_sls(loaders)
    assert config.changes == {} and service.changes == {}
    assert hap.status(str(minion_root))["reloads"] == 1
    assert set(hap.status(str(minion_root))["workers"]) <= set(reloaded)


def test_sls_in_test_mode_predicts_and_changes_nothing(
    set_pillar, site, minion_root, paths, stopped
):
    loaders = set_pillar(site)
    config, service = run_sls(loaders, test=True)
    assert config.result is None and service.result is None
    assert service.changes == {"running": {"old": False, "new": True}}
    assert not pathlib.Path(paths["config"]).exists()
    assert not hap.status(str(minion_root))["running"]

    run_sls(loaders)
    before = hap.status(str(minion_root))
    text = pathlib.Path(paths["config"]).read_text()
    loaders = set_pillar(changed(site, inter=400))
    config, service = run_sls(loaders, test=True)
    assert (
        config.result is None and "+    default-server check inter 400 " in config.changes["diff"]
    )
    assert (
        service.result is None
        and service.comment == "haproxy would be reloaded: its configuration changed"
    )
    assert pathlib.Path(paths["config"]).read_text() == text
    assert hap.status(str(minion_root)) == before


# --- invalid input: a clear error, nothing written, haproxy untouched and serving ---------------

WEB1, WEB2 = "web1.test", "web2.test"


def _lb(p, me):
    return p["loadbalancers"][me]


INVALID = {
    "malformed address": (
        lambda p, me: _lb(p, me).update(address="127.0.0.300"),
        r"pillar paphosting:loadbalancers:{me}:address: '127.0.0.300' is not a valid IP address",
    ),
    "duplicate address": (
        lambda p, me: p["webservers"][WEB2].update(address=p["webservers"][WEB1]["address"]),
        r"pillar paphosting:webservers:web2.test:address: \S+ is already the address of webservers 'web1.test'",
    ),
    "port out of range": (
        lambda p, me: p["services"]["www"]["servers"][0].update(port=70000),
        r"pillar paphosting:services:www:servers:web1.test:port: 70000 is out of range 1..65535",
    ),
    "listening port out of range": (
        lambda p, me: _lb(p, me).update(http_port=0),
        r"pillar paphosting:loadbalancers:{me}:http_port: 0 is out of range 1..65535",
    ),
    "unknown server": (
        lambda p, me: p["services"]["www"]["servers"].append({"name": "web9.test", "port": 80}),
        r"pillar paphosting:services:www:servers:web9.test:name: 'web9.test' is not a webserver in paphosting:webservers",
    ),
    "duplicate server": (
        lambda p, me: p["services"]["www"]["servers"].append(
            dict(p["services"]["www"]["servers"][0])
        ),
        r"pillar paphosting:services:www:servers:web1.test:name: 'web1.test' is listed twice",
    ),
    "duplicate hostname": (
        lambda p, me: p["services"]["shop"]["hostnames"].append(WWW),
        # The pillar file is YAML with sorted keys: shop comes first, www's hostname is the repeat.
        r"pillar paphosting:services:www:hostnames:0: www.example.test is already a hostname of service 'shop'",
    ),
    "no primary": (
        lambda p, me: p["services"]["shop"]["servers"][0].update(role="backup"),
        r"pillar paphosting:services:shop:servers: a stateful service needs exactly one primary, found 0",
    ),
    "two primaries": (
        lambda p, me: p["services"]["shop"]["servers"][1].update(role="primary"),
        r"pillar paphosting:services:shop:servers: a stateful service needs exactly one primary, found 2",
    ),
    "unknown key": (
        lambda p, me: _lb(p, me).update(adress="127.0.0.1"),
        r"pillar paphosting:loadbalancers:{me}:adress: unknown key",
    ),
    "newline": (
        lambda p, me: p["services"]["www"]["hostnames"].__setitem__(
            0, "www.example.test\n    bind 127.0.0.1:1"
        ),
        r"pillar paphosting:services:www:hostnames:0: .* contains a newline or control character",
    ),
    "control character": (
        lambda p, me: p["services"]["shop"].update(cookie_name="PAP\x1bSRV"),
        r"pillar paphosting:services:shop:cookie_name: .* contains a newline or control character",
    ),
    "comment sign": (
        lambda p, me: p["services"]["www"]["check"].update(path="/health#x"),
        r"pillar paphosting:services:www:check:path: '/health#x' is not a valid HTTP path",
    ),
    "space": (
        lambda p, me: _lb(p, me).update(health_path="/up check"),
        r"pillar paphosting:loadbalancers:{me}:health_path: '/up check' is not a valid HTTP path",
    ),
    "quote": (
        lambda p, me: p["services"]["shop"].update(cookie_name='PAP"SRV'),
        r"pillar paphosting:services:shop:cookie_name: 'PAP\"SRV' is not a valid cookie name",
    ),
    "brace": (
        lambda p, me: p["services"]["www"]["check"].update(expect_status="200 }"),
        r"pillar paphosting:services:www:check:expect_status: '200 }' is not a valid HTTP status or range",
    ),
}


@pytest.fixture(scope="module")
def serving(loaders, pillar_dir, site, minion_root, paths, me):
    """haproxy running with the site's valid configuration (started once for every invalid case)."""
    (pillar_dir / "paphosting.sls").write_text(yaml.safe_dump({"paphosting": site}))
    loaders.reload_all()
    hap.stop(str(minion_root))
    pathlib.Path(paths["config"]).unlink(missing_ok=True)
    run_sls(loaders)
    return lb_of(site, me)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_pillar_is_refused_and_haproxy_keeps_serving(
    set_pillar, site, me, minion_root, paths, serving, case
):
    config = pathlib.Path(paths["config"])
    text = config.read_text()
    stat = config.stat()
    before = hap.status(str(minion_root))
    assert before["running"]
    mutate, message = INVALID[case]
    bad = json.loads(json.dumps(site))
    mutate(bad, me)
    loaders = set_pillar(bad)
    expected = message.replace("{me}", re.escape(me))

    ret = loaders.states.haproxy_cfg.managed(name="haproxy.cfg")
    assert ret.result is False
    assert re.search(expected, ret.comment), ret.comment
    assert "The haproxy configuration in place was left unchanged." in ret.comment
    assert ret.changes == {}
    with pytest.raises(CommandExecutionError, match=expected):
        loaders.modules.haproxy_cfg.validate()

    assert config.read_text() == text
    assert config.stat().st_mtime_ns == stat.st_mtime_ns
    assert not [
        p for p in config.parent.iterdir() if p.name != config.name
    ]  # no temporary file left
    assert hap.status(str(minion_root)) == before
    address, port = serving
    assert http_get(address, port, "/", WWW).status == 200
    assert http_get(address, port, "/", SHOP).server == WEB1


def test_invalid_pillar_fails_the_whole_sls_without_a_reload(
    set_pillar, site, me, minion_root, paths, serving
):
    before = hap.status(str(minion_root))
    text = pathlib.Path(paths["config"]).read_text()
    bad = json.loads(json.dumps(site))
    bad["services"]["www"]["servers"][0]["port"] = 70000
    loaders = set_pillar(bad)
    ret = loaders.modules.state.sls("loadbalancer")
    config = ret["loadbalancer-haproxy-config"]
    assert config.result is False and "port: 70000 is out of range" in config.comment
    service = ret["loadbalancer-haproxy-running"]
    assert service.result is False and service.changes == {}
    assert pathlib.Path(paths["config"]).read_text() == text
    assert hap.status(str(minion_root)) == before
    assert http_get(*serving, "/", WWW).status == 200


# --- the masterless command of docs/haproxy.md ---------------------------------------------------


def masterless(tmp_path, minion_id, pillar_root, *args):
    """docs/haproxy.md's command: salt-call --local on the repository, nothing outside tmp_path."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "minion").write_text(f"root_dir: {tmp_path}\n")
    cmd = [
        str(REPO / ".venv" / "bin" / "salt-call"),
        "--local",
        "-c",
        str(tmp_path),
        "--id",
        minion_id,
        f"--module-dirs={REPO}",
        f"--file-root={REPO / 'salt'}",
        f"--pillar-root={pillar_root}",
        "--retcode-passthrough",
        *args,
    ]
    env = services.clean_env()
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, check=False, cwd=REPO, env=env
    )


def test_masterless_command_renders_and_validates_any_minion(tmp_path):
    etc_salt = os.path.exists("/etc/salt")
    res = masterless(
        tmp_path, "lb2.paphosting.net", REPO / "pillar", "--out=json", "haproxy_cfg.render"
    )
    assert res.returncode == 0, res.stderr
    platform = model.parse(example_pillar())
    assert json.loads(res.stdout)["local"] == hap.render(platform, "lb2.paphosting.net")

    res = masterless(tmp_path, "anything", REPO / "pillar", "--out=json", "haproxy_cfg.validate")
    assert res.returncode == 0, res.stderr
    assert sorted(json.loads(res.stdout)["local"]) == sorted(platform.loadbalancers)
    assert os.path.exists("/etc/salt") == etc_salt  # the system's Salt configuration is not touched
    assert (tmp_path / "var" / "cache" / "salt").is_dir()


def test_masterless_command_names_the_pillar_error(tmp_path):
    pillar = tmp_path / "pillar"
    pillar.mkdir()
    (pillar / "top.sls").write_text("base:\n  '*':\n    - paphosting\n")
    bad = example_pillar()
    bad["services"]["shop"]["servers"][1]["role"] = "primary"
    (pillar / "paphosting.sls").write_text(yaml.safe_dump({"paphosting": bad}))
    res = masterless(tmp_path / "salt", "lb1.paphosting.net", pillar, "haproxy_cfg.validate")
    assert res.returncode != 0
    assert (
        "pillar paphosting:services:shop:servers: a stateful service needs exactly one primary, found 2"
        in res.stdout + res.stderr
    )


def test_reload_refuses_a_broken_file_and_haproxy_keeps_serving(
    set_pillar, site, minion_root, paths, serving
):
    loaders = set_pillar(site)
    before = hap.status(str(minion_root))
    config = pathlib.Path(paths["config"])
    good = config.read_text()
    try:
        config.write_text(good.replace("    maxconn ", "    maxconnections "))
        with pytest.raises(CommandExecutionError, match=r"unknown keyword 'maxconnections'"):
            loaders.modules.haproxy_cfg.reload()
        assert hap.status(str(minion_root)) == before
        assert http_get(*serving, "/", WWW).status == 200
    finally:
        config.write_text(good)


# --- the demo backends (salt/webserver) ---------------------------------------------------------


def test_webserver_sls_runs_the_demo_webapp_on_each_service_port(
    set_pillar, site, me, loopback, minion_root
):
    pillar = json.loads(json.dumps(site))
    address = loopback.address()
    ports = [loopback.port(address), loopback.port(address)]
    pillar["webservers"][me] = {"address": address}
    pillar["services"]["www"]["servers"].append({"name": me, "port": ports[0]})
    pillar["services"]["shop"]["servers"].append({"name": me, "role": "backup", "port": ports[1]})
    loaders = set_pillar(pillar)
    pidfiles = [minion_root / "run" / "paphosting" / f"webapp-{port}.pid" for port in sorted(ports)]
    try:
        ret = loaders.modules.state.sls("webserver")
        assert not ret.failed, ret.raw
        assert all(r.result is True for r in ret), [r.comment for r in ret]
        for port in ports:
            answer = http_get(address, port, "/", WWW)
            assert answer.status == 200 and answer.server == me
        pids = [int(p.read_text()) for p in pidfiles]

        again = loaders.modules.state.sls("webserver")
        assert all(r.result is True for r in again)
        assert [r.changes for r in again if r.id.endswith("-running")] == [{}, {}]
        assert [int(p.read_text()) for p in pidfiles] == pids
    finally:
        for pidfile in pidfiles:
            if pidfile.exists():
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
        wait_until(lambda: not any(p.exists() for p in pidfiles), 10, message="webapps stopped")


# --- mod_watch: only haproxy_cfg.running reloads ------------------------------------------------

WATCHING_MANAGED = """
paphosting-test-trigger:
  test.succeed_with_changes: []

loadbalancer-haproxy-config:
  haproxy_cfg.managed:
    - watch:
      - test: paphosting-test-trigger
"""


@pytest.mark.parametrize("test", [True, False])
def test_a_watch_on_managed_fails_and_does_not_reload_haproxy(
    set_pillar, site, minion_root, stopped, test
):
    loaders = set_pillar(site)
    run_sls(loaders)
    before = hap.status(str(minion_root))
    assert before["running"]

    ret = loaders.modules.state.template_str(WATCHING_MANAGED, test=test)
    config = ret["loadbalancer-haproxy-config"]
    # A watch the state cannot trigger is a mistake in the SLS: said, never silently passed.
    assert config.result is False
    assert config.changes == {}
    assert config.comment == (
        "haproxy_cfg.managed does not react to watch: nothing was reloaded "
        "(put the watch on haproxy_cfg.running)"
    )
    assert hap.status(str(minion_root)) == before
