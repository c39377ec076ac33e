"""The whole platform on one machine, as plain processes under ``build/<name>/``.

:class:`Lab` starts, and always stops again:

- a Subversion repository (``svnadmin create``) served by ``svnserve`` on 127.0.0.1 (a free
  port): the pillar comes from it through ``salt-run svnpillar.push`` (``svn=False``: from a plain
  folder instead, for the benchmark);
- two salt-masters, NL and CH, on the masters' addresses of the pillar (``paphosting:masters``),
  sharing one master key pair and one set of accepted minion keys, configured with
  ``conf/master.d/*.conf`` (the checkout in place of ``/srv/paphosting``): the repository's
  ``salt://`` tree (symlinks, :mod:`harness.saltenv`), the reactor, the paphosting_rotation ext_pillar,
  the runners, the pillar from Subversion;
- one salt-minion per server of the pillar (load balancers, nameservers, webservers), each with
  its own ``paphosting_root`` sandbox under ``roots/`` and ``master: [NL, CH]`` (hot multi-master),
  its key generated here and accepted on both masters before anything starts.

Every daemon runs in its own session with a pidfile (:mod:`harness.processes`, on the product's
:mod:`paphosting.daemon`); :meth:`Lab.stop` stops the minions, the
masters, then everything a pidfile under the lab's folder names (haproxy, the DNS servers and the
web applications the highstates started, svnserve). It runs on exit, on failure and on Ctrl-C
(``with Lab(...) as lab``), and :meth:`Lab.start` first stops what an earlier run left behind.
"""

import concurrent.futures
import contextlib
import copy
import getpass
import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import salt.client
import salt.config
import salt.crypt
import salt.runner
import salt.utils.event
import yaml

from harness import REPO, processes
from harness import netns as harness_netns
from harness.pebble import Pebble
from harness.ports import free_port, port_in_use
from harness.prometheus import Prometheus
from harness.saltenv import file_root, platform_master_config, platform_minion_config
from harness.svn import SvnServer, master_options
from harness.wait import wait_until
from paphosting import daemon, dnsserver, haproxy, highstate, model, secrets
from paphosting.paths import under

BIN = pathlib.Path(sys.executable).parent
PUBLISH_PORT = 4505
RET_PORT = 4506
DEFAULT_MASTERS = {"nl": "127.0.4.1", "ch": "127.0.4.2"}
# Unix socket paths (Salt's, haproxy's) must stay short: a lab folder longer than this moves to /tmp.
MAX_BASE = 60

log = logging.getLogger("lab")


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says what and where to look."""


def short_name(minion_id, taken):
    name = minion_id.split(".")[0]
    return minion_id if name in taken else name


def _dump(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def state_summary(ret):
    """``(changed, failed, details, durations)`` of one minion's ``state.apply`` return, read
    through the product's one reader (:mod:`paphosting.highstate`): the state ids that changed,
    ``(state id, comment)`` of those that failed, ``{state id: comment and changes}`` of the
    changed ones and ``{state id: milliseconds}``. A return that is not a state result (an error
    list or string) is one failure."""
    problem = highstate.failure(ret)
    if problem is not None:
        return [], [("highstate", problem[:300])], {}, {}
    changed, failed, details, durations = [], [], {}, {}
    failed += [(key, str(item)[:300]) for key, item in ret.items() if not isinstance(item, dict)]
    for run in highstate.states(ret):
        sid = run.id or run.key
        if isinstance(run.duration, (int, float)):
            durations[sid] = durations.get(sid, 0.0) + run.duration
        if run.result is False:
            failed.append((sid, run.comment[:300]))
        elif run.changes:
            changed.append(sid)
            changes = {k: v for k, v in run.changes.items() if k != "diff"}
            first = run.comment.splitlines()[0] if run.comment else ""
            details[sid] = f"{first} {changes if changes else ''}".strip()[:300]
    return changed, failed, details, durations


class Events:
    """The events of one master's bus whose tag starts with one of ``prefixes``, kept with the
    time they arrived (``time.monotonic()``), read by a background thread until :meth:`stop`."""

    def __init__(self, master, prefixes):
        self.master = master
        self.prefixes = tuple(prefixes)
        self.seen = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        opts = master.opts()
        self._bus = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"events-{master.name}")
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                ev = self._bus.get_event(wait=0.2, full=True, auto_reconnect=True)
            except Exception:  # noqa: BLE001 - the master went away: stop listening
                return
            if ev and ev.get("tag", "").startswith(self.prefixes):
                with self._lock:
                    self.seen.append((time.monotonic(), ev["tag"], ev.get("data") or {}))

    def since(self, t0, prefix=""):
        """``[(seconds after t0, tag, data)]`` of the events since ``t0`` whose tag starts with ``prefix``."""
        with self._lock:
            return [
                (t - t0, tag, data)
                for t, tag, data in self.seen
                if t >= t0 and tag.startswith(prefix)
            ]

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self._bus.destroy()


class _SaltDaemon:
    """A salt-master or salt-minion of the lab (``kind``), its folders under ``root``, run by
    :mod:`harness.processes` on the host ``host`` (a network namespace with ``netns``)."""

    kind = None

    def __init__(self, lab, host, salt_id, root, pidfile):
        self.lab = lab
        self.root = root
        self.conf_dir = root / "conf"
        self.cachedir = root / "cache"
        self.process = processes.Process(
            f"salt-{self.kind} {salt_id}",
            lab.host_command(
                host, [BIN / f"salt-{self.kind}", "-c", self.conf_dir, "-l", "warning"]
            ),
            pidfile,
            root / "log" / "stdout.log",
        )

    @property
    def conf_file(self):
        return self.conf_dir / self.kind

    @property
    def log_file(self):
        return self.root / "log" / self.kind

    @property
    def salt_pidfile(self):
        return self.root / "run" / f"salt-{self.kind}.pid"

    def folders(self):
        """The configuration options that put everything this daemon writes under its root."""
        return {
            "root_dir": str(self.root),
            "conf_file": str(self.conf_file),
            "pki_dir": str(self.root / "pki"),
            "cachedir": str(self.cachedir),
            "sock_dir": str(self.root / "s"),
            "pidfile": str(self.salt_pidfile),
            "log_file": str(self.log_file),
            "log_level_logfile": "info",
            "user": getpass.getuser(),
        }

    @property
    def running(self):
        return self.process.running

    def start(self):
        """Start it. Salt refuses to start while the pid of its own pidfile exists, and the
        worker of a killed daemon (not our child) stays a zombie until init reaps it: wait for
        that first."""
        pid = daemon.read_pid(self.salt_pidfile)
        if pid and not self.process.running:
            wait_until(
                lambda: not os.path.exists(f"/proc/{pid}"),
                10,
                message=f"pid {pid} of {self.salt_pidfile} to be gone",
                interval=0.1,
                error=LabError,
            )
        try:
            self.process.start()
        except daemon.DaemonError as exc:
            raise LabError(str(exc)) from None

    def stop(self, timeout=20):
        return self.process.stop(timeout)


class Master(_SaltDaemon):
    """One salt-master of the lab."""

    kind = "master"

    def __init__(self, lab, name, address):
        super().__init__(
            lab, name, name, lab.base / "masters" / name, lab.base / "pids" / f"master-{name}.pid"
        )
        self.name = name
        self.address = address
        self._opts = None

    @property
    def gpg_keydir(self):
        """Where this master holds the platform's GPG key (docs/tls.md, "Secrets")."""
        return self.root / "gpgkeys"

    def config(self):
        lab = self.lab
        conf = platform_master_config(
            self.address,
            RET_PORT,
            PUBLISH_PORT,
            [lab.file_root, *lab.extra_file_roots],
            lab.worker_threads,
        )
        conf.update(
            {
                "id": self.name,
                **self.folders(),
                "key_logfile": str(self.root / "log" / "key"),
                "auto_accept": False,
                "paphosting_rotation_state": str(self.cachedir / "paphosting" / "rotation.json"),
                "gpg_keydir": str(self.gpg_keydir),
            }
        )
        if lab.svn is not None:
            svn = master_options(
                self.cachedir / "paphosting",
                lab.svn,
                lab.sync_seconds,
                config_dir=str(self.root / "svn-config"),
                name=self.name,
                timeout=10,
            )
            # Both files of conf/master.d have a schedule: the svnpillar sync joins the drift
            # heal and the operator sync of paphosting.conf, as Salt's own include would merge
            # them (a plain update dropped those two from every lab master).
            svn["schedule"] = {**conf.get("schedule", {}), **svn.get("schedule", {})}
            conf.update(svn)
        else:
            conf.update({"pillar_roots": {"base": [str(lab.pillar_dir)]}, "pillar_cache": False})
        conf.update(lab.master_overrides)
        return conf

    def write(self):
        _dump(self.conf_file, self.config())

    def opts(self):
        if self._opts is None:
            self._opts = salt.config.master_config(str(self.conf_file))
        return dict(self._opts)

    @contextlib.contextmanager
    def client(self):
        """A LocalClient of this master, fresh for each use: Salt's loader keeps module state per
        process, so a client made for one master after one for another master finds its jobs in
        the wrong job cache ("jid does not exist")."""
        local = salt.client.LocalClient(mopts=self.opts())
        try:
            yield local
        finally:
            local.destroy()

    def wait_ready(self, timeout=90):
        def ready():
            if not self.process.running:
                raise LabError(
                    f"salt-master {self.name} exited:\n{self.process.tail()}{_tail(self.log_file)}"
                )
            with socket.create_connection((self.address, RET_PORT), timeout=1):
                pass
            return (self.root / "s" / "master_event_pub.ipc").exists()

        wait_until(
            ready,
            timeout,
            message=f"salt-master {self.name} to listen on {self.address}:{RET_PORT}",
            interval=0.2,
            error=LabError,
        )


class Minion(_SaltDaemon):
    """One salt-minion of the lab, connected to every master."""

    kind = "minion"

    def __init__(self, lab, minion_id, short):
        super().__init__(
            lab,
            minion_id,
            minion_id,
            lab.base / "minions" / short,
            lab.base / "pids" / f"minion-{short}.pid",
        )
        self.id = minion_id
        self.short = short
        self.sandbox = lab.base / "roots" / short

    def config(self):
        """``conf/minion.d/paphosting.conf`` (every master, NL first, hot multi-master), with this
        minion's folders and the lab's shorter waits."""
        lab = self.lab
        conf = platform_minion_config(
            [m.address for m in lab.masters.values()], RET_PORT, PUBLISH_PORT, self.sandbox
        )
        conf.update(
            {
                "id": self.id,
                **self.folders(),
                # Salt's beacons tick once a second whatever this says; the scheduler (drift
                # correction, docs/demo.md) checks its jobs every loop_interval seconds.
                "loop_interval": lab.loop_interval,
            }
        )
        conf.update(lab.minion_overrides)
        return conf

    def write(self, private, public, master_public):
        _dump(self.conf_dir / "minion", self.config())
        pki = self.root / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        (pki / "minion.pem").write_text(private)
        (pki / "minion.pem").chmod(0o400)
        (pki / "minion.pub").write_text(public)
        (pki / "minion_master.pub").write_text(master_public)


def minions_idle(cachedirs, running):
    """True when no minion runs a job or holds a queued state run: ``cachedirs`` maps each minion
    to its ``cachedir`` (where Salt 3008 queues state runs, ``queues/*/state_queue/queued_*``),
    ``running`` is ``saltutil.running``'s return (``{minion: [jobs]}``; one missing: not idle).

    Stop a master only then: a state job the stopped master published, still running or queued
    on a minion, can hold that minion's state queue until its requests to the dead master give
    up, and the other master's pushes queue behind it (docs/masters.md)."""
    for cachedir in cachedirs.values():
        if any(pathlib.Path(cachedir, "queues").glob("*/state_queue/queued_*")):
            return False
    return all(
        isinstance(running.get(m), list)
        and not [j for j in running[m] if j.get("fun") != "saltutil.running"]
        for m in cachedirs
    )


def _tail(path, lines=15):
    try:
        return "".join(pathlib.Path(path).read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return ""


class Lab(processes.Started):
    """The platform of ``pillar`` (the ``paphosting`` value; default: the example platform).

    name
        The folder under ``build/`` (or under ``parent``).
    parent
        Where the lab's runtime folder goes instead of ``build/`` (the processes' files, the
        zones, the caches); its report stays under ``build/<name>``. The benchmark puts its labs
        on the machine's temporary file system, as a real host keeps its zones under /var or
        /etc rather than in a source checkout (docs/bench.md, "Where the labs run").
    svn
        Serve the pillar from Subversion through ``svnpillar.push`` (True), or from a plain folder
        the lab writes (False: :meth:`write_pillar`).
    minions
        The minion ids to run (default: every server the pillar names).
    masters
        The names of the masters to run (default: every one of ``paphosting:masters``).
    sync_seconds
        The masters' ``svnpillar.sync`` schedule (30 s in production; shorter here so that the
        other master follows a push within a few seconds).
    loop_interval
        The minions' ``loop_interval`` (their scheduler's tick).
    say
        Where progress lines go (a callable taking one string).
    extra_file_roots
        Folders served after the repository's ``salt://`` tree (the benchmark's empty SLS).
    netns
        A subnet of 198.18.0.0/15 (``"198.18.17.0/24"``): every host (master, load balancer,
        nameserver, webserver) runs in a network namespace of its own on an address of that
        subnet (the pillar's addresses moved there: :func:`harness.netns.relocate`), for the
        faults of :mod:`harness.faults`. Needs root and nftables; ``None`` (the default): loopback.
    prometheus
        Also run a Prometheus scraping every exporter of ``paphosting:metrics`` with the alert
        rules (:mod:`harness.prometheus`), on 127.0.0.1 and a free port: :attr:`prometheus`.
    acme
        ``(address, port)``: also run Pebble, the ACME test CA (:mod:`harness.pebble`), there,
        validating DNS-01 against the lab's first NSD or Knot nameserver: :attr:`pebble`;
        :meth:`acme_pillar` adds ``paphosting:acme`` and Pebble's root to a pillar.
    """

    def __init__(
        self,
        name="demo",
        pillar=None,
        top=None,
        svn=True,
        minions=None,
        masters=None,
        sync_seconds=5,
        loop_interval=1,
        worker_threads=4,
        say=None,
        master_overrides=None,
        minion_overrides=None,
        extra_file_roots=(),
        prometheus=False,
        netns=None,
        acme=None,
        parent=None,
    ):
        base = (pathlib.Path(parent) if parent is not None else REPO / "build") / name
        if len(str(base)) > MAX_BASE:
            base = pathlib.Path(tempfile.gettempdir()) / f"paphosting-{name}"
        self.base = base
        self.report_dir = REPO / "build" / name
        self.example = pillar is None
        self.pillar = (
            pillar
            if pillar is not None
            else yaml.safe_load((REPO / "pillar" / "paphosting.sls").read_text())["paphosting"]
        )
        self.top = top if top is not None else (REPO / "pillar" / "top.sls").read_text()
        self.net = None
        if netns is not None:
            # Every host on an address of its own in the subnet, in a namespace of its own.
            self.pillar = harness_netns.relocate(self.pillar, netns)[0]
            self.example = False
            self.net = harness_netns.Network(netns)
        self.platform = model.parse(self.pillar)
        self.use_svn = svn
        self.svn = None
        self.sync_seconds = sync_seconds
        self.loop_interval = loop_interval
        self.worker_threads = worker_threads
        self.say = say or (lambda message: None)
        self.master_overrides = master_overrides or {}
        self.minion_overrides = minion_overrides or {}
        self.file_root = self.base / "file_root"
        self.pillar_dir = self.base / "pillar"
        self.extra_file_roots = [str(p) for p in extra_file_roots]
        addresses = {n: m.address for n, m in self.platform.masters.items()} or DEFAULT_MASTERS
        self.masters = {
            n: Master(self, n, a) for n, a in addresses.items() if masters is None or n in masters
        }
        ids = (
            minions
            if minions is not None
            else sorted(
                {
                    *self.platform.loadbalancers,
                    *self.platform.nameservers,
                    *self.platform.webservers,
                }
            )
        )
        taken = set()
        self.minions = {}
        for mid in ids:
            short = short_name(mid, taken)
            taken.add(short)
            self.minions[mid] = Minion(self, mid, short)
        self.want_prometheus = prometheus
        self.prometheus = None
        self.want_acme = acme
        self.pebble = None
        self.started = False

    def host_command(self, host, argv):
        """``argv`` as ``host`` runs it: inside its namespace when the lab has them (planned here,
        made by :meth:`start`), as it is on loopback."""
        if self.net is None:
            return argv
        if host not in self.net.hosts:
            addresses = harness_netns.host_addresses(self.platform).get(host)
            if not addresses:
                raise LabError(f"{host} has no address in the pillar: it cannot have a namespace")
            self.net.add(host, addresses)
        return self.net.wrap(host, argv)

    @property
    def admin_address(self):
        """Where the lab's own services (svnserve, Prometheus) listen: every host reaches it."""
        return self.net.gateway if self.net is not None else "127.0.0.1"

    # --- the platform's data ---------------------------------------------------------------------

    @property
    def nameservers(self):
        return [
            self.platform.nameservers[n]
            for n in sorted(self.platform.nameservers)
            if n in self.minions
        ]

    def root(self, minion_id):
        """The minion's ``paphosting_root`` sandbox."""
        return str(self.minions[minion_id].sandbox)

    def master(self, name=None):
        """A master by name, or the first running one."""
        if name is not None:
            return self.masters[name]
        for m in self.masters.values():
            if m.running:
                return m
        raise LabError("no salt-master is running")

    # --- start and stop ----------------------------------------------------------------------------

    def _ports(self):
        wanted = [(m.address, p) for m in self.masters.values() for p in (PUBLISH_PORT, RET_PORT)]
        p = self.platform
        wanted += [
            (p.loadbalancers[m].address, p.loadbalancers[m].http_port)
            for m in self.minions
            if m in p.loadbalancers
        ]
        wanted += [
            (p.nameservers[m].address, p.nameservers[m].port)
            for m in self.minions
            if m in p.nameservers
        ]
        # BIND's rndc port, on 127.0.0.1.
        wanted += [
            ("127.0.0.1", p.nameservers[m].control_port)
            for m in self.minions
            if m in p.nameservers and p.nameservers[m].control_port
        ]
        for svc in p.services.values():
            wanted += [(s.address, s.port) for s in svc.servers if s.name in self.minions]
        if self.want_acme:
            address, port = self.want_acme
            wanted += [(address, port), (address, port + 1)]  # Pebble: ACME, management
        # The exporters (paphosting:metrics) and BIND's statistics channel.
        for role, listeners in p.metrics.items():
            if not isinstance(listeners, dict):
                continue
            for name, listener in listeners.items():
                if name in self.minions or name in self.masters:
                    wanted.append((listener.address, listener.port))
                    if role == "nameservers" and p.nameservers[name].server == "bind":
                        wanted.append(("127.0.0.1", listener.stats_port))
        return sorted(set(wanted))

    def _check_ports(self):
        if self.net is not None:
            return  # fresh namespaces: nothing else listens there (Network.create checks the subnet)
        busy = [f"{a}:{p}" for a, p in self._ports() if port_in_use(a, p)]
        if busy:
            raise LabError(
                f"in use by another process: {', '.join(busy)} (is another demo, bench or a system "
                "daemon running? `ss -ltnp` shows who)"
            )

    def cleanup_previous(self):
        """Stop what an earlier run left running under this lab's folder."""
        return processes.sweep(self.base)

    def start(self):
        leftovers = self.cleanup_previous()
        for _pidfile, pid, cmd in leftovers:
            self.say(f"stopped a leftover of an earlier run: pid {pid} ({cmd[:80]})")
        self._check_ports()
        if self.net is not None:
            problem = harness_netns.available()
            if problem:
                raise LabError(f"the lab in network namespaces cannot run here: {problem}")
            self.started = True
            for name in self.net.create():
                self.say(f"removed a leftover of a dead lab: {name}")
            self.say(
                f"{len(self.net.hosts)} hosts, each in its own network namespace on "
                f"{self.net.subnet} (bridge {self.net.bridge} at {self.net.gateway})"
            )
        shutil.rmtree(self.base, ignore_errors=True)
        self.base.mkdir(parents=True)
        self.report_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.base / "lab.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root_logger = logging.getLogger()
        root_logger.addHandler(handler)
        root_logger.setLevel(logging.INFO)
        # Salt's console handler would print its log records between the narration's lines.
        for h in list(root_logger.handlers):
            if type(h).__name__ == "DeferredStreamHandler":
                root_logger.removeHandler(h)
        self.started = True
        file_root(self.file_root)
        if self.use_svn:
            (self.base / "svn").mkdir()
            addr = self.admin_address
            self.svn = SvnServer(self.base / "svn", free_port(addr), address=addr).create().start()
            self.say(f"Subversion repository {self.svn.url} (svnadmin create, svnserve on {addr})")
        else:
            self.write_pillar(self.pillar)
        self._keys()
        self._gpg_keys()
        for m in self.masters.values():
            m.write()
            m.start()
        for m in self.masters.values():
            m.wait_ready()
        self.say(
            "salt-masters "
            + ", ".join(
                f"{m.name.upper()} on {m.address}:{RET_PORT}" for m in self.masters.values()
            )
            + " (one master key pair, the same accepted minion keys)"
        )
        for minion in self.minions.values():
            minion.start()
        self.wait_minions(timeout=180)
        self.sync_modules()
        self.say(
            f"{len(self.minions)} salt-minions connected to every master, the project's modules "
            f"synced: {', '.join(m.short for m in self.minions.values())}"
        )
        if self.want_acme:
            # Not BIND: it listens on 127.0.0.1 only, which Pebble's address may not be.
            ns = next(n for n in self.nameservers if n.server in ("nsd", "knot"))
            self.pebble = Pebble(
                self.base / "pebble", self.want_acme[0], (ns.address, ns.port), self.want_acme[1]
            ).start()
            self.say(
                f"Pebble, the ACME test CA, on {self.pebble.directory}, validating DNS-01 "
                f"against {ns.name} ({ns.server}, {ns.address}:{ns.port})"
            )
        if self.want_prometheus:
            addr = self.admin_address
            self.prometheus = Prometheus(
                self.base / "prometheus", self.platform, addr, free_port(addr)
            ).start()
            self.say(
                f"Prometheus on {self.prometheus.url} (targets: {self.prometheus.url}/targets, "
                f"alerts: {self.prometheus.url}/alerts; docs/monitoring.md)"
            )
        return self

    def _keys(self):
        """One master key pair for every master; each minion's key pair, accepted on every master."""
        master_private, master_public = salt.crypt.gen_keys(2048)
        for m in self.masters.values():
            pki = m.root / "pki"
            (pki / "minions").mkdir(parents=True, exist_ok=True)
            (pki / "master.pem").write_text(master_private)
            (pki / "master.pem").chmod(0o400)
            (pki / "master.pub").write_text(master_public)
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            pairs = dict(
                zip(
                    self.minions,
                    pool.map(lambda _: salt.crypt.gen_keys(2048), self.minions),
                    strict=True,
                )
            )
        for mid, (private, public) in pairs.items():
            self.minions[mid].write(private, public, master_public)
            for m in self.masters.values():
                (m.root / "pki" / "minions" / mid).write_text(public)

    def _gpg_keys(self):
        """One platform GPG key pair (the secrets' key), made once and held by every master, as
        ``scripts/provision-second-master`` copies it in production."""
        first, *others = self.masters.values()
        self.gpg_fingerprint = secrets.generate_key(str(first.gpg_keydir))
        secrets.stop_agent(str(first.gpg_keydir))
        for m in others:
            shutil.copytree(
                first.gpg_keydir,
                m.gpg_keydir,
                ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*"),
            )

    def encrypt(self, text):
        """``text`` encrypted to the platform key: what a secret's file in Subversion holds."""
        return secrets.encrypt(text, str(next(iter(self.masters.values())).gpg_keydir))

    def wait_minions(self, masters=None, minions=None, timeout=120):
        """Wait until every minion answers ``test.ping`` from every (running) master."""
        ids = sorted(minions or self.minions)
        for m in masters or [m for m in self.masters.values() if m.running]:

            def answered(m=m):
                for minion in ids:
                    if not self.minions[minion].running:
                        raise LabError(
                            f"salt-minion {minion} exited:\n{self.minions[minion].process.tail()}{_tail(self.minions[minion].log_file)}"
                        )
                with m.client() as local:
                    ret = local.cmd(ids, "test.ping", tgt_type="list", timeout=5)
                missing = [i for i in ids if not ret.get(i)]
                return not missing or None

            wait_until(
                answered,
                timeout,
                message=f"every minion to answer master {m.name}",
                interval=1,
                error=LabError,
            )

    def stop(self):
        """Stop everything this lab started; return the lines saying what was stopped."""
        lines = []
        if not self.started:
            return lines
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            stopped = [
                m.id
                for m, ran in zip(
                    self.minions.values(),
                    pool.map(lambda m: m.stop(), self.minions.values()),
                    strict=True,
                )
                if ran
            ]
        if stopped:
            lines.append(f"stopped {len(stopped)} salt-minions")
        for m in self.masters.values():
            if m.stop():
                lines.append(f"stopped salt-master {m.name}")
        if self.svn is not None:
            with contextlib.suppress(Exception):
                self.svn.stop()
                lines.append("stopped svnserve")
        if self.prometheus is not None and self.prometheus.stop():
            lines.append("stopped prometheus")
        if self.pebble is not None and self.pebble.stop():
            lines.append("stopped pebble")
        for m in self.masters.values():
            if m.gpg_keydir.is_dir():
                secrets.stop_agent(str(m.gpg_keydir))
        for pidfile, pid, cmd in processes.sweep(self.base):
            lines.append(
                f"stopped pid {pid}: {os.path.basename(cmd.split()[0]) if cmd else '?'} ({os.path.relpath(pidfile, self.base)})"
            )
        if self.net is not None and self.net.created:
            self.net.delete()
            lines.append(f"deleted {len(self.net.hosts)} network namespaces and {self.net.bridge}")
        self.started = False
        return lines

    # --- the pillar ---------------------------------------------------------------------------------

    def pillar_files(self, pillar=None, top=None):
        """``{path in the repository: text}`` of a pillar tree holding ``pillar`` (default: this
        lab's pillar; the example platform's own file, comments and all, when that is it)."""
        if pillar is None and self.example:
            text = (REPO / "pillar" / "paphosting.sls").read_text()
        else:
            data = {"paphosting": pillar if pillar is not None else self.pillar}
            text = "# The platform pillar (docs/pillar.md).\n" + yaml.safe_dump(
                data, sort_keys=False
            )
        return {"pillar/top.sls": top or self.top, "pillar/paphosting.sls": text}

    def acme_pillar(self, pillar=None, services=None, **settings):
        """A copy of ``pillar`` (default: the lab's) with ``paphosting:acme`` pointing at the lab's
        Pebble for ``services`` (``{name: None or {"names": [...]}}``; default: every service)
        and Pebble's current root in ``paphosting:tls:trusted_roots``; ``settings`` go over the
        rest of ``paphosting:acme``."""
        out = copy.deepcopy(pillar if pillar is not None else self.pillar)
        out["acme"] = {
            "directory": self.pebble.directory,
            "ca_bundle": str(self.pebble.server_ca),
            "services": services or dict.fromkeys(sorted(out["services"])),
            **settings,
        }
        tls = out.setdefault("tls", {})
        root = self.pebble.root()
        tls["trusted_roots"] = [r for r in tls.get("trusted_roots", []) if r != root] + [root]
        return out

    def write_pillar(self, pillar):
        """``svn=False``: make ``pillar`` what the masters serve (read at every request)."""
        self.pillar = pillar
        self.platform = model.parse(pillar)
        self.pillar_dir.mkdir(parents=True, exist_ok=True)
        for path, text in self.pillar_files(pillar).items():
            (self.pillar_dir / pathlib.Path(path).name).write_text(text)

    def commit(self, files, message):
        """Commit ``files`` (``{repository path: text}``) as an admin; the new revision."""
        return self.svn.commit(files, message)

    # --- Salt ---------------------------------------------------------------------------------------

    def sync_modules(self, minions=None, master=None):
        """``saltutil.sync_all`` on ``minions`` (default: every one): the minions do not load the
        project's modules at each highstate (``autoload_dynamic_modules: False``,
        conf/minion.d/paphosting.conf), a sync brings them, as the push does."""
        ids = sorted(minions or self.minions)
        ret = self.salt(ids, "saltutil.sync_all", master=master, timeout=180)
        missing = [mid for mid in ids if not isinstance(ret.get(mid), dict)]
        if missing:
            raise RuntimeError(f"saltutil.sync_all did not return on {missing}: {ret}")
        return ret

    def salt(self, tgt, fun, *args, master=None, timeout=120, **kwargs):
        """``fun`` on one minion id or a list of ids, through ``master``; ``{id: return}``."""
        many = isinstance(tgt, (list, tuple))
        with self.master(master).client() as local:
            return local.cmd(
                list(tgt) if many else tgt,
                fun,
                list(args),
                timeout=timeout,
                tgt_type="list" if many else "glob",
                kwarg=kwargs or None,
            )

    def highstate(self, minions, master=None, sls=None, timeout=600):
        """``state.apply`` (of ``sls``, or the highstate) on ``minions``, queued behind a state run
        in progress (the scheduled drift correction, a failover's zone apply).

        Returns ``{minion: {"changed": [state ids], "failed": [(state id, comment)]}}``; a minion
        that did not return is a failure.
        """
        ids = sorted(minions)
        args = [sls] if sls else []
        ret = self.salt(ids, "state.apply", *args, master=master, timeout=timeout, queue=True)
        out = {}
        for mid in ids:
            if mid not in ret:
                out[mid] = {
                    "changed": [],
                    "failed": [("return", f"no return within {timeout} s")],
                    "details": {},
                    "durations": {},
                }
                continue
            changed, failed, details, durations = state_summary(ret[mid])
            out[mid] = {
                "changed": changed,
                "failed": failed,
                "details": details,
                "durations": durations,
            }
        return out

    def wait_idle(self, minions=None, master=None, timeout=120):
        """Wait until no job runs on ``minions`` (default: every running one); return the seconds.

        A master stopped while one of its state runs waits in a minion's queue leaves that run
        hanging on the dead master, and every later state run on that minion queued behind it
        (docs/demo.md): the demo stops a master only when the minions are idle."""
        ids = sorted(minions or [m for m, x in self.minions.items() if x.running])
        t0 = time.monotonic()

        def idle():
            ret = self.salt(ids, "saltutil.running", master=master, timeout=10)
            return minions_idle({m: self.minions[m].cachedir for m in ids}, ret)

        wait_until(
            idle,
            timeout,
            message=f"no job running on {', '.join(ids)}",
            interval=0.5,
            error=LabError,
        )
        return time.monotonic() - t0

    def run(self, fun, *args, master=None, timeout=120):
        """A runner function through ``salt-run --out=json`` (in this process, Salt's loader would
        mix the two masters' configurations up); its return."""
        res = self.salt_run("--out=json", fun, *args, master=master, timeout=timeout)
        try:
            return json.loads(res.stdout)
        except ValueError:
            raise LabError(
                f"salt-run {fun} on {self.master(master).name}: exit status {res.returncode}: {(res.stdout + res.stderr).strip()[-800:]}"
            ) from None

    def salt_run(self, *args, master=None, timeout=600):
        """``salt-run`` for real (what an operator types); the CompletedProcess."""
        m = self.master(master)
        return subprocess.run(
            [str(BIN / "salt-run"), "-c", str(m.conf_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def push(self, master=None, rev=None, test=False):
        args = ["svnpillar.push"]
        if rev is not None:
            args.append(f"rev={rev}")
        if test:
            args.append("test=True")
        return self.salt_run(*args, master=master)

    # --- the servers --------------------------------------------------------------------------------

    def haproxy_layout(self, lb):
        return haproxy.layout(self.root(lb))

    def haproxy_servers(self, lb):
        """``{backend: {server: status}}`` from the running haproxy of ``lb``."""
        return haproxy.servers(self.haproxy_layout(lb)["admin_socket"])

    def haproxy_pid(self, lb):
        pid = daemon.read_pid(self.haproxy_layout(lb)["pidfile"])
        return pid if daemon.alive(pid) else None

    def kill_machine(self, minion):
        """SIGKILL the salt-minion of ``minion`` and every service it runs (haproxy, the DNS
        server, the web applications): the machine dies. Returns the pids."""
        pids = []
        m = self.minions[minion]
        pid = m.process.pid
        if pid and processes.kill(pid, group=True):
            pids.append(pid)
        for pidfile in sorted(m.sandbox.rglob("*.pid")):
            pid = daemon.read_pid(pidfile)
            if pid and str(m.sandbox) in processes.cmdline(pid) and processes.kill(pid):
                pids.append(pid)
        return pids

    def boot_machine(self, minion, timeout=180):
        """Start the salt-minion of a machine :meth:`kill_machine` killed; wait until every running
        master reaches it. Its services stay down until a highstate starts them."""
        self.minions[minion].start()
        self.wait_minions(minions=[minion], timeout=timeout)

    def kill_haproxy(self, lb):
        """SIGKILL haproxy on ``lb`` (master and workers): the load balancer dies. Its pid."""
        pid = self.haproxy_pid(lb)
        if pid is None:
            raise LabError(f"haproxy does not run on {lb}")
        processes.kill(pid, group=True)
        return pid

    def webapp_pidfiles(self, web):
        return sorted((self.minions[web].sandbox / "run" / "paphosting").glob("webapp-*.pid"))

    def kill_webapp(self, web):
        """SIGKILL every demo web application of ``web``: the backend dies. The pids."""
        pids = [daemon.read_pid(p) for p in self.webapp_pidfiles(web)]
        pids = [p for p in pids if daemon.alive(p)]
        if not pids:
            raise LabError(f"no web application runs on {web}")
        for pid in pids:
            processes.kill(pid, group=False)
        return pids

    def dns_daemon(self, ns):
        return dnsserver.daemon(self.platform.nameservers[ns], self.root(ns))

    def file_text(self, minion, path):
        """A managed file's text under ``minion``'s sandbox (``path`` as on a real host)."""
        try:
            return pathlib.Path(under(self.root(minion), path)).read_text()
        except OSError:
            return None
