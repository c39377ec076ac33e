"""Two hot masters, NL and CH, and minions connected to both: the harness of issue 6.

Built like production (docs/masters.md): NL starts with ``conf/master.d/paphosting.conf``; CH gets
the same configuration on its own loopback address (the same ports), and is provisioned from NL
with ``scripts/provision-second-master`` (NL's key pair before CH first starts, the accepted
minion keys once NL accepted them). Only NL accepts keys (saltfactories' auto-accept, as an admin
would with ``salt-key``); CH accepts nothing by itself. Each minion runs with
``conf/minion.d/paphosting.conf`` pointing at both masters, NL first.

.. code-block:: python

    @pytest.fixture(scope="module")
    def pair(request, salt_factories, tmp_path_factory, loopback):
        with multimaster.environment(request, salt_factories, tmp_path_factory, loopback,
                                     ["lb1.t.test", "ns1.t.test"], pillar) as pair:
            yield pair

    def test_something(pair):
        pair.nl.salt("ns1.t.test", "test.ping")      # a job published by NL
        pair.ch.run("rotation.show")                 # a runner with CH's configuration
        pair.stop("nl"); ...; pair.start("nl")

The masters and minions are configured exactly as the lab's (:mod:`harness.launcher`): both
launchers take their configuration from :func:`harness.saltenv.platform_master_config` and
:func:`harness.saltenv.platform_minion_config`, and wait for idle minions with
:func:`harness.launcher.minions_idle`. What differs is who runs the processes: here
salt-factories (its event listener and ``salt-run`` wrapper are what the tests assert on, and CH
is provisioned with the production ``scripts/provision-second-master``); in the lab plain
processes that outlive pytest, in network namespaces when asked, with keys laid in advance.

``pair.nl`` and ``pair.ch`` are :class:`MasterView` (a :class:`tests.integration.conftest.SaltPlatform`)
views of each master over the same minions. Every daemon is stopped when the ``with`` block ends.
"""

import concurrent.futures
import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import salt.client
import yaml

from harness import REPO
from harness.launcher import minions_idle
from harness.saltenv import file_root, platform_master_config, platform_minion_config
from paphosting import daemon, decision, dnsserver, haproxy, model
from tests.integration.conftest import SaltPlatform, wait

PROVISION = REPO / "scripts" / "provision-second-master"
NAMES = ("nl", "ch")


def provision(nl, ch):
    """Run ``scripts/provision-second-master`` from NL's pki_dir to CH's; its output."""
    res = subprocess.run(
        [sys.executable, str(PROVISION), nl.config["pki_dir"], ch.config["pki_dir"]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, f"provision-second-master failed:\n{res.stdout}{res.stderr}"
    return res.stdout


def _ports_free_on(addresses, loopback):
    """Two ports free on every address in ``addresses`` (the masters share ret and publish ports)."""
    ports = []
    while len(ports) < 2:
        port = loopback.port(addresses[0])
        if port in ports:
            continue
        try:
            for address in addresses[1:]:
                with socket.socket() as s:
                    s.bind((address, port))
        except OSError:
            continue
        ports.append(port)
    return ports


class MasterView(SaltPlatform):
    """A :class:`SaltPlatform` of one of the two masters.

    Salt's clients do not take two masters in one process: a LocalClient stops seeing job
    returns once a LocalClient of the other master (another ``sock_dir``) has been used, and the
    runner loaders of two RunnerClients end up sharing one master's options. So each command
    gets a LocalClient of its own, :meth:`run` is ``salt-run`` itself, and what the tests poll
    (the published rotation, the live revision) is read from the master's own files.
    """

    @property
    def local(self):
        if self._local is not None:
            self._local.destroy()
        self._local = salt.client.get_local_client(mopts=self.master.config.copy())
        return self._local

    def run(self, fun, **kwargs):
        """``salt-run fun key=value ...`` on this master; its return (parsed JSON)."""
        ret = self.master.salt_run_cli(timeout=120).run(
            fun, *(f"{k}={v}" for k, v in kwargs.items())
        )
        assert ret.returncode == 0, (
            f"salt-run {fun} on {self.master.id} failed:\n{ret.stdout}{ret.stderr}"
        )
        return ret.data

    def failover_state(self):
        """The failover's state file on this master (``rotation.show`` reads the same)."""
        return decision.load(decision.state_path(self.master.config))

    def published(self, paphosting, name):
        """``(version, members)`` this master publishes for rotation ``name`` (the ext_pillar's value)."""
        shown = decision.publish(self.failover_state(), decision.config_of(model.parse(paphosting)))
        return shown["version"], shown["rotations"][name]["members"]

    def views_of(self, watcher):
        """``{load balancer: state}`` of a watcher's latest report held here (``{}``: none yet)."""
        view = self.failover_state()["views"].get(watcher)
        return (
            {lb: ("flapping" if v.get("flapping") else v["state"]) for lb, v in view["lbs"].items()}
            if view
            else {}
        )

    def live_revision(self):
        """The pillar revision this master serves (svnpillar's ``live`` symlink), or None."""
        store = self.master.config.get("paphosting_svn", {}).get("store")
        try:
            return int(
                os.path.basename(os.readlink(os.path.join(store, "pillar", "live")))[len("rev-") :]
            )
        except (OSError, TypeError):
            return None


class TwoMasters:
    """NL and CH (saltfactories daemons in ``masters``) and the minions connected to both."""

    def __init__(self, masters, minions, pillar_dir, roots, addresses):
        self.masters = masters
        self.minions = minions
        self.addresses = addresses
        self.views = {
            name: MasterView(m, minions, pillar_dir, roots) for name, m in masters.items()
        }

    @property
    def nl(self):
        return self.views["nl"]

    @property
    def ch(self):
        return self.views["ch"]

    def running(self):
        """The views of the masters that run now."""
        return {name: view for name, view in self.views.items() if self.masters[name].is_running()}

    def root(self, minion_id):
        return self.nl.root(minion_id)

    def write_pillar(self, paphosting):
        """The ``paphosting`` pillar of every minion, on both masters (they share the pillar folder)."""
        self.nl.write_pillar(paphosting)

    def stop(self, name):
        """Stop one master (as if its host went down)."""
        self.masters[name].terminate()
        self.views[name]._local = None

    def start(self, name, wait_minions=True):
        """Start one master again; with ``wait_minions``, wait until every minion answers it."""
        self.masters[name].start()
        self.views[name]._local = None
        if wait_minions:
            self.wait_connected(name)

    def quiesce(self, timeout=90):
        """Wait until no minion runs a job or holds one in its state queue (from either master).

        Stop a master only then (:func:`harness.launcher.minions_idle`, which the lab's
        ``wait_idle`` uses too).
        """
        view = next(iter(self.running().values()))
        cachedirs = {mid: m.config["cachedir"] for mid, m in self.minions.items()}
        wait(
            lambda: minions_idle(cachedirs, view.salt(list(self.minions), "saltutil.running")),
            "every minion to finish its jobs",
            timeout=timeout,
            interval=0.5,
        )

    def wait_connected(self, name, timeout=90):
        view = self.views[name]
        for mid in self.minions:
            wait(
                lambda mid=mid: view._ping(mid),
                f"{mid} to answer {name}",
                timeout=timeout,
                interval=0.5,
            )


@contextlib.contextmanager
def environment(
    request,
    salt_factories,
    tmp_path_factory,
    loopback,
    minion_ids,
    paphosting=None,
    master_overrides=None,
    minion_overrides=None,
):
    """Start NL, CH and the minions; yield a :class:`TwoMasters`; stop them all on exit.

    paphosting
        The ``paphosting`` pillar written to the pillar folder both masters serve (unless
        ``master_overrides`` gives them other ``pillar_roots``, as svnpillar does).
    master_overrides
        ``callable(name) -> dict`` merged over each master's configuration (``name`` is ``nl`` or
        ``ch``), e.g. a store of its own for svnpillar.
    minion_overrides
        Merged over every minion's configuration.
    """
    tag = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    base = tmp_path_factory.mktemp(tag)
    # Salt's unix sockets live under each daemon's root: keep those paths short.
    daemons = pathlib.Path(tempfile.mkdtemp(prefix="pap2-", dir="/tmp"))
    pillar_dir = base / "pillar"
    pillar_dir.mkdir()
    (pillar_dir / "top.sls").write_text("base:\n  '*':\n    - paphosting\n")
    if paphosting is not None:
        (pillar_dir / "paphosting.sls").write_text(yaml.safe_dump({"paphosting": paphosting}))
    addresses = {name: loopback.address() for name in NAMES}
    ret_port, publish_port = _ports_free_on(list(addresses.values()), loopback)
    files = file_root(base / "file_root")

    masters = {}
    for name in NAMES:
        overrides = platform_master_config(addresses[name], ret_port, publish_port, [files], 3)
        overrides.update({"pillar_roots": {"base": [str(pillar_dir)]}, "log_level_logfile": "info"})
        overrides.update(master_overrides(name) if master_overrides else {})
        kwargs = {}
        if name == "ch":
            # CH never accepts a key by itself: it trusts what was copied from NL.
            kwargs["on_auth_event_callback"] = lambda master, payload: None
        masters[name] = salt_factories.salt_master_daemon(
            f"{name}-{tag}",
            defaults={"root_dir": str(daemons / name)},
            overrides=overrides,
            **kwargs,
        )

    roots = {}
    minions = {}
    for i, mid in enumerate(minion_ids):
        roots[mid] = base / "roots" / mid
        roots[mid].mkdir(parents=True)
        conf = platform_minion_config(
            [addresses["nl"], addresses["ch"]], ret_port, publish_port, roots[mid]
        )
        conf.update({"log_level_logfile": "info", **(minion_overrides or {})})
        minions[mid] = masters["nl"].salt_minion_daemon(
            mid, defaults={"root_dir": str(daemons / f"m{i}")}, overrides=conf
        )

    pair = TwoMasters(masters, minions, pillar_dir, roots, addresses)
    with contextlib.ExitStack() as stack:
        if not os.environ.get("PAPHOSTING_KEEP_DAEMONS"):
            stack.callback(shutil.rmtree, daemons, ignore_errors=True)
        # NL first; CH gets NL's key pair before its first start (else it makes its own).
        stack.enter_context(masters["nl"].started())
        os.makedirs(masters["ch"].config["pki_dir"], exist_ok=True)
        provision(masters["nl"], masters["ch"])
        stack.enter_context(masters["ch"].started())
        for m in minions.values():
            stack.callback(m.terminate)
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(minions) or 1) as pool:
            for f in [pool.submit(m.start) for m in minions.values()]:
                f.result()
        # NL accepted the minions; CH holds them pending until they are copied over.
        provision(masters["nl"], masters["ch"])
        pair.wait_connected("nl")
        pair.wait_connected("ch")
        # The minions load the project's modules only when synced (autoload_dynamic_modules:
        # False in conf/minion.d/paphosting.conf), as the push and the minion-start reactor do.
        synced = pair.views["nl"].salt(sorted(minions), "saltutil.sync_all", timeout=180)
        assert sorted(synced) == sorted(minions), f"saltutil.sync_all: {synced}"
        yield pair


# --- a small platform for two-master tests ----------------------------------------------------

ROTATION = "http0.l.paphosting.nl"
ZONE = "paphosting.nl"


def platform_pillar(loopback, domain, lbs=2, nameservers=("nsd", "knot"), heartbeat=3):
    """A ``paphosting`` pillar value on fresh loopback addresses: load balancers ``lbN.<domain>``
    (real haproxy), nameservers ``nsN.<domain>`` (one per server kind in ``nameservers``; BIND
    on 127.0.0.1, NSD and Knot on addresses of their own), all watchers, one rotation over every
    load balancer, one zone, short failover timings (probe every second, fall and rise 2,
    ``heartbeat`` seconds) and drift correction off (a test turns it on)."""
    loadbalancers = {}
    for i in range(1, lbs + 1):
        address = loopback.address()
        loadbalancers[f"lb{i}.{domain}"] = {"address": address, "http_port": loopback.port(address)}
    servers = {}
    for i, kind in enumerate(nameservers, start=1):
        address = "127.0.0.1" if kind == "bind" else loopback.address()
        servers[f"ns{i}.{domain}"] = {
            "address": address,
            "port": loopback.udp_tcp_port(address),
            "server": kind,
            "fqdn": f"ns{i}.paphosting.net",
        }
        if kind == "bind":
            servers[f"ns{i}.{domain}"]["control_port"] = loopback.port("127.0.0.1")
    web = loopback.address()
    return {
        "settings": {"service_mode": "process"},
        "loadbalancers": loadbalancers,
        "webservers": {f"web1.{domain}": {"address": web}},
        "nameservers": servers,
        "rotations": {ROTATION: {"ttl": 60, "members": sorted(loadbalancers), "min_members": 1}},
        "services": {
            "www": {
                "type": "stateless",
                "hostnames": [f"www.{ZONE}"],
                "rotation": ROTATION,
                "port": loopback.port(web),
                "servers": [{"name": f"web1.{domain}"}],
            },
        },
        "zones": {
            ZONE: {
                "ns": [s["fqdn"] for s in servers.values()],
                "records": {"mail": [{"type": "A", "data": web}]},
            }
        },
        # Flap damping off in effect: the tests kill and restart the same load balancer often.
        "health": {
            "interval": 1,
            "timeout": 0.5,
            "fall": 2,
            "rise": 2,
            "heartbeat": heartbeat,
            "flap": {"window": 60, "max_transitions": 1000, "hold": 0},
        },
        "schedule": {"enabled": False},
    }


def stop_services(pair, paphosting):
    """Stop what the highstates started under each minion's root (haproxy, the DNS servers)."""
    parsed = model.parse(paphosting)
    for mid in pair.minions:
        root = str(pair.root(mid))
        if mid in parsed.loadbalancers:
            haproxy.stop(root)
        if mid in parsed.nameservers:
            daemon.stop(dnsserver.daemon(parsed.nameservers[mid], root))
