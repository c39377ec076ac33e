"""Real haproxy load balancers in front of real webapps, configured and driven through Salt.

Each test builds a small platform on fresh loopback addresses: webapps (``salt/webserver``'s demo
app), and load balancers whose haproxy is configured and started by the ``loadbalancer`` SLS
through Salt's loaders (one minion per load balancer, each with its own ``paphosting_root``).
Health checks run every 200 ms so that failures are noticed quickly; every wait is bounded.
"""

import itertools
import pathlib
import pwd
import shutil
import tempfile
import threading

import pytest
import yaml
from salt.exceptions import CommandExecutionError

from harness import services
from harness.client import Client, http_get
from harness.saltenv import file_root
from harness.wait import wait_until
from paphosting import haproxy as hap
from paphosting import model
from tests.conftest import require_binary
from tests.integration.conftest import masterless

SHOP, WWW = "shop.example.test", "www.example.test"
WEB1, WEB2, WEB3 = "web1.test", "web2.test", "web3.test"
COUNTER = itertools.count(1)


class Lab:
    """Webapps and load balancers of one test; ``close()`` stops every process."""

    def __init__(self, salt_factories, tmp_path, loopback, lbs, failback):
        require_binary("haproxy")
        tag = next(COUNTER)
        pillar = services.platform_pillar(loopback, lbs=lbs, webservers=3, failback=failback)
        pillar["loadbalancers"] = {
            f"lb{i}-{tag}.test": v for i, v in enumerate(pillar["loadbalancers"].values(), 1)
        }
        self.pillar = pillar
        self.names = list(pillar["loadbalancers"])
        self.tmp = tmp_path
        self.apps = {}
        self.roots = {}
        self.loaders = {}
        pillar_dir = tmp_path / "pillar"
        pillar_dir.mkdir(parents=True)
        (pillar_dir / "top.sls").write_text("base:\n  '*':\n    - paphosting\n")
        (pillar_dir / "paphosting.sls").write_text(yaml.safe_dump({"paphosting": pillar}))
        files = file_root(tmp_path / "file_root")
        # haproxy's unix sockets live under each root: keep those paths short.
        self.short = pathlib.Path(tempfile.mkdtemp(prefix="hap-", dir="/tmp"))
        for i, name in enumerate(self.names, 1):
            root = self.short / f"lb{i}"
            root.mkdir()
            self.roots[name] = str(root)
            self.loaders[name] = masterless(salt_factories, name, pillar_dir, files, root)

    def start_webapps(self):
        self.apps = services.webapps_of(self.pillar, self.tmp / "webapps")

    def apply(self, name):
        """``state.sls loadbalancer`` on a load balancer: config, haproxy started or reloaded."""
        ret = self.loaders[name].modules.state.sls("loadbalancer")
        assert not ret.failed, ret.raw
        assert all(r.result is True for r in ret), [r.comment for r in ret]
        return ret

    def haproxy(self, name):
        return services.Haproxy(self.roots[name])

    def lb(self, name):
        entry = self.pillar["loadbalancers"][name]
        return entry["address"], entry["http_port"]

    def get(self, name, host=SHOP, client=None):
        return http_get(*self.lb(name), "/", host, cookies=client)

    def wait_server(self, name, backend, server, status, client=None):
        """Wait until haproxy reports ``server`` ``status``; with ``client``, a request per poll."""

        def seen():
            if client is not None:
                self.get(name, SHOP, client)
            return self.haproxy(name).server_status(backend, server).startswith(status)

        wait_until(seen, 15, message=f"{backend}/{server} {status} on {name}")

    def close(self):
        for name in self.names:
            hap.stop(self.roots[name])
        for app in self.apps.values():
            app.stop()
        for loaders in self.loaders.values():
            loaders.reset_state()
        shutil.rmtree(self.short, ignore_errors=True)


@pytest.fixture
def lab(salt_factories, tmp_path, loopback):
    labs = []

    def make(lbs=1, failback="manual"):
        created = Lab(salt_factories, tmp_path / f"lab{len(labs)}", loopback, lbs, failback)
        labs.append(created)
        created.start_webapps()
        return created

    yield make
    for created in labs:
        created.close()


def served_by(lab, name, client, n=5):
    return {lab.get(name, SHOP, client).server for _ in range(n)}


# --- stateless --------------------------------------------------------------------------------


def test_stateless_no_request_fails_when_a_backend_dies(lab):
    lab = lab(lbs=1)
    (lb1,) = lab.names
    lab.apply(lb1)
    results = {t: [] for t in range(2)}
    killed = threading.Event()

    def client(t):
        # A bounded loop: at most 400 requests, or until 40 have been answered after the kill.
        after = 0
        for _ in range(400):
            try:
                r = lab.get(lb1, WWW)
                results[t].append((killed.is_set(), r.status, r.server))
            except Exception as exc:  # noqa: BLE001 - any failure is a failed request
                results[t].append((killed.is_set(), repr(exc), None))
            if killed.is_set():
                after += 1
                if after >= 40:
                    return

    threads = [threading.Thread(target=client, args=(t,)) for t in results]
    for th in threads:
        th.start()
    wait_until(lambda: len(results[0]) >= 30, 20, message="requests before the kill")
    lab.apps[WEB2].kill()
    killed.set()
    for th in threads:
        th.join(60)
    everything = [r for rs in results.values() for r in rs]
    assert [r for r in everything if r[1] != 200] == []
    assert {r[2] for r in everything if not r[0]} == {WEB1, WEB2, WEB3}
    assert sum(1 for r in everything if r[0]) >= 80
    lab.wait_server(lb1, "www", WEB2, "DOWN")
    assert {lab.get(lb1, WWW).server for _ in range(10)} == {WEB1, WEB3}


# --- stateful: two load balancers, one cookie ------------------------------------------------


def test_a_cookie_from_one_load_balancer_is_honoured_by_the_other(lab):
    lab = lab(lbs=2, failback="manual")
    lb1, lb2 = lab.names
    for name in (lb1, lb2):
        lab.apply(name)
    client = Client()
    first = lab.get(lb1, SHOP, client)
    assert (first.server, first.json()["count"]) == (WEB1, 1)
    assert client.cookies["PAPSRV"] == "shop-web1_test"
    second = lab.get(lb2, SHOP, client)
    assert (second.server, second.json()["count"]) == (WEB1, 2)  # same server, same session

    # The primary dies; only lb1 gets traffic while it is down: lb1 fails over, lb2 never does.
    lab.apps[WEB1].kill()
    lab.wait_server(lb1, "shop", WEB1, "DOWN", client)
    lab.wait_server(lb2, "shop", WEB1, "DOWN")
    assert lab.get(lb1, SHOP, client).server == WEB2
    assert client.cookies["PAPSRV"] == "shop-web2_test"
    lab.apps[WEB1].start()
    lab.wait_server(lb1, "shop", WEB1, "UP")
    lab.wait_server(lb2, "shop", WEB1, "UP")
    count = lab.get(lb1, SHOP, client).json()["count"]

    # lb2, which never saw this client fail over, sends it where its cookie says: its session.
    again = lab.get(lb2, SHOP, client)
    assert (again.server, again.json()["count"]) == (WEB2, count + 1)
    assert lab.get(lb2, SHOP).server == WEB1  # a new client on lb2: the primary
    assert lab.get(lb1, SHOP).server == WEB2  # a new client on lb1: failed over, manual failback

    assert lab.get(lb2, "unknown.example.test").status == 503
    health = http_get(*lab.lb(lb2), "/haproxy-health")
    assert health.status == 200


# --- stateful: failover, failback manual and automatic ---------------------------------------


def test_health_fails_only_while_the_load_balancer_can_serve_nothing(lab):
    """The DNS failover keeps a load balancer out while its health endpoint fails: it fails while
    every backend has every server down (after a cut-off from the webservers its checks need
    ``rise`` x ``inter`` to pass again), and not for one service down everywhere."""
    lab = lab(lbs=1)
    (lb1,) = lab.names

    def health():
        return http_get(*lab.lb(lb1), "/haproxy-health").status

    lab.apply(lb1)
    assert health() == 200
    for web in (WEB1, WEB2):  # shop's primary and backup: shop has no server left
        lab.apps[web].kill()
    lab.wait_server(lb1, "shop", WEB1, "DOWN")
    lab.wait_server(lb1, "shop", WEB2, "DOWN")
    assert lab.get(lb1, SHOP).status == 503
    assert health() == 200, "www is still served: the load balancer is healthy"
    lab.apps[WEB3].kill()
    lab.wait_server(lb1, "www", WEB3, "DOWN")
    assert health() == 503, "no backend has a server up: nothing to serve"
    lab.apps[WEB3].start()
    lab.wait_server(lb1, "www", WEB3, "UP")
    assert health() == 200


def fail_over(lab, name, client):
    """Kill the primary: the service moves to the backup (requests flow while it happens)."""
    assert served_by(lab, name, client) == {WEB1}
    lab.apps[WEB1].kill()
    lab.wait_server(name, "shop", WEB1, "DOWN", client)
    assert served_by(lab, name, client) == {WEB2}
    assert client.cookies["PAPSRV"] == "shop-web2_test"
    lab.apps[WEB1].start()
    lab.wait_server(name, "shop", WEB1, "UP", client)


def test_manual_failback_stays_on_the_backup_until_the_operator_acts(lab):
    lab = lab(lbs=1, failback="manual")
    (lb1,) = lab.names
    lab.apply(lb1)
    module = lab.loaders[lb1].modules.haproxy_cfg
    assert module.failover_status() == {"shop": "normal"}
    client = Client()
    fail_over(lab, lb1, client)

    assert served_by(lab, lb1, client, 10) == {WEB2}
    assert lab.get(lb1, SHOP).server == WEB2  # new clients too
    assert lab.get(lb1, SHOP, Client({"PAPSRV": "shop-web1_test"})).server == WEB2
    assert module.failover_status() == {"shop": "failed-over"}

    # A configuration change reloads haproxy: the failover state survives the reload.
    lab.pillar["services"]["shop"]["check"]["rise"] = 3
    (lab.tmp / "pillar" / "paphosting.sls").write_text(yaml.safe_dump({"paphosting": lab.pillar}))
    lab.loaders[lb1].reload_all()
    workers = lab.haproxy(lb1).workers()
    ret = lab.apply(lb1)
    assert ret["loadbalancer-haproxy-running"].changes["workers"]["old"] == sorted(workers)
    assert module.failover_status() == {"shop": "failed-over"}
    assert served_by(lab, lb1, client) == {WEB2}

    assert module.failback("shop") == {
        "service": "shop",
        "primary": WEB1,
        "old": "failed-over",
        "new": "failed-back",
    }
    assert served_by(lab, lb1, client) == {WEB1}
    assert client.cookies["PAPSRV"] == "shop-web1_test"
    assert lab.get(lb1, SHOP).server == WEB1
    assert module.failover_status() == {"shop": "failed-back"}


def test_failback_is_refused_while_the_primary_is_down(lab):
    lab = lab(lbs=1, failback="manual")
    (lb1,) = lab.names
    lab.apply(lb1)
    client = Client()
    lab.apps[WEB1].kill()
    lab.wait_server(lb1, "shop", WEB1, "DOWN", client)
    with pytest.raises(
        CommandExecutionError, match=r"the primary web1.test is DOWN .*traffic stays on the backup"
    ):
        lab.loaders[lb1].modules.haproxy_cfg.failback("shop")
    with pytest.raises(
        CommandExecutionError, match=r"'www' is not a stateful service with failback manual"
    ):
        lab.loaders[lb1].modules.haproxy_cfg.failback("www")
    assert served_by(lab, lb1, client) == {WEB2}


def test_automatic_failback_returns_to_the_primary(lab):
    lab = lab(lbs=1, failback="auto")
    (lb1,) = lab.names
    lab.apply(lb1)
    client = Client()
    fail_over(lab, lb1, client)
    assert served_by(lab, lb1, client) == {WEB1}
    assert client.cookies["PAPSRV"] == "shop-web1_test"
    assert lab.get(lb1, SHOP).server == WEB1


def test_systemd_mode_config_drops_to_user_haproxy_and_keeps_the_failover_state(loopback, tmp_path):
    """The service_mode systemd configuration, run as a plain process (no systemd here): haproxy's
    workers run as user haproxy and still hand the failover table to the next worker on a reload."""
    require_binary("haproxy")
    pillar = services.platform_pillar(loopback, lbs=1, webservers=2, failback="manual")
    pillar["settings"]["service_mode"] = "systemd"
    root = pathlib.Path(tempfile.mkdtemp(prefix="hap-", dir="/tmp"))
    root.chmod(0o755)  # the workers (user haproxy) reach the peers socket under it
    haproxy = services.Haproxy(root)
    try:
        text = hap.render(model.parse(pillar), "lb1.test", str(root))
        assert "\n    user haproxy\n" in text
        haproxy.start(text)
        workers = haproxy.workers()
        owners = {
            pathlib.Path(f"/proc/{pid}/status").read_text().split("\nUid:")[1].split()[0]
            for pid in workers
        }
        assert owners == {str(pwd.getpwnam("haproxy").pw_uid)}
        admin = haproxy.paths["admin_socket"]
        assert hap.cli(admin, f"set table shop key 1 data.gpt0 {hap.FAILED_OVER}").strip() == ""
        new = haproxy.reload()
        assert set(new).isdisjoint(workers)
        assert hap.failover_state(admin, "shop") == hap.FAILED_OVER
    finally:
        haproxy.stop()
        shutil.rmtree(root, ignore_errors=True)
