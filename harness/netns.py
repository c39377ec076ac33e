"""The lab's hosts as network namespaces: each host (master, load balancer, nameserver, webserver)
is a namespace of its own, with its addresses on ``eth0``, one end of a veth pair whose other end
sits on a bridge shared by the lab. The lab's own process (tests, demo, bench: the "admin's
workstation") stays in the root namespace and reaches every host through the bridge's address,
the subnet's first one.

Why: on loopback a dead port answers with a reset at once. A host in a namespace can be made to
fail like a real machine (:mod:`harness.faults`): packets dropped without an answer, a link that
loses packets, two hosts that cannot reach each other while the others can.

Every name carries the lab's tag ``pap<pid><letter>`` (the pid of the process that built it, a
letter per lab of that process), so two labs never collide, and :func:`sweep_stale` removes what a lab whose process is gone left behind
(a killed test): its namespaces (and the processes still in them), its bridge and veths.
Addresses: the lab's ``subnet`` (inside 198.18.0.0/15, the benchmarking range); a second lab on the
same subnet at the same time is refused with a message naming the bridge that has it.
"""

import contextlib
import ipaddress
import itertools
import os
import pathlib
import re
import signal
import subprocess

from harness.wait import wait_until
from paphosting import daemon

BENCHMARK_NET = ipaddress.ip_network("198.18.0.0/15")
NETNS_DIR = pathlib.Path("/run/netns")
PREFIX = "pap"
# pap<pid><letter>: the letter tells apart the labs of one process (itertools.count below).
_OWNED = re.compile(rf"^({PREFIX}(\d+)[a-z])[-bv]")
_LABS = itertools.count()
# The first host address of a subnet is the bridge's (the lab's own process); hosts start here.
FIRST_HOST = 10


class NetnsError(RuntimeError):
    """A namespace, link or address could not be made; the message says which and why."""


def ip(*args, check=True):
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {(res.stderr or res.stdout).strip()}")
    return res


def available():
    """``None`` when namespaces can be made here, else why not (not root, no ``ip``, no ``nft``)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if not any(
            os.access(os.path.join(d, tool), os.X_OK) for d in ("/usr/sbin", "/sbin", "/usr/bin")
        ):
            return f"`{tool}` is not installed (scripts/setup installs it)"
    return None


def namespace_pids(name):
    res = ip("netns", "pids", name, check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def _kill_all(name):
    for pid in namespace_pids(name):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not namespace_pids(name), 5, error=None)


def sweep_stale(mine=None):
    """Remove the namespaces, bridges and veths of labs whose process is gone, and those named
    ``mine`` (a tag this process is about to use: a dead process had the same pid); their names."""

    def stale(name):
        m = _OWNED.match(name)
        return m is not None and (m.group(1) == mine or not daemon.alive(int(m.group(2))))

    removed = []
    names = [p.name for p in NETNS_DIR.iterdir()] if NETNS_DIR.is_dir() else []
    for name in filter(stale, names):
        _kill_all(name)
        ip("netns", "del", name, check=False)
        removed.append(name)
    for line in ip("-o", "link", "show").stdout.splitlines():
        link = line.split(":")[1].strip().split("@")[0]
        if stale(link):
            ip("link", "del", link, check=False)
            removed.append(link)
    return removed


class Network:
    """The namespaces of one lab on ``subnet``: :meth:`add` plans a host with its addresses,
    :meth:`create` makes them all, :meth:`wrap` turns a command into one run inside a host,
    :meth:`delete` removes everything (processes still inside are killed)."""

    def __init__(self, subnet):
        self.subnet = ipaddress.ip_network(subnet)
        if not self.subnet.subnet_of(BENCHMARK_NET):
            raise NetnsError(f"subnet {subnet}: the lab's hosts live in {BENCHMARK_NET}")
        self.tag = f"{PREFIX}{os.getpid()}{'abcdefghijklmnopqrstuvwxyz'[next(_LABS) % 26]}"
        self.bridge = f"{self.tag}b"
        self.gateway = str(self.subnet.network_address + 1)
        self.hosts = {}  # host -> namespace name
        self.addresses = {}  # host -> [addresses]
        self.created = False

    def namespace(self, host):
        return self.hosts[host]

    def create(self):
        """Sweep stale labs' leftovers, then make the bridge and every planned host; the names of
        the leftovers removed."""
        removed = sweep_stale(mine=self.tag)
        taken = [
            line.split()[1]
            for line in ip("-o", "addr", "show").stdout.splitlines()
            if f"inet {self.gateway}/" in line
        ]
        if taken:
            raise NetnsError(
                f"{self.gateway} ({self.subnet}) is already on {taken[0]}: another lab uses this "
                "subnet (give this one another)"
            )
        self.created = True
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for index, host in enumerate(self.hosts):
            self._make(index, host)
        return removed

    def add(self, host, addresses):
        """Plan a namespace for ``host`` with ``addresses`` (each in the subnet) on its ``eth0``:
        :meth:`create` makes it. Its name."""
        for a in addresses:
            if ipaddress.ip_address(a) not in self.subnet:
                raise NetnsError(
                    f"host {host}: address {a} is not in the lab's subnet {self.subnet}"
                )
        index = len(self.hosts)
        short = re.sub(r"[^A-Za-z0-9_.-]", "_", host.split(".")[0])
        self.hosts[host] = f"{self.tag}-{index}-{short}"
        self.addresses[host] = list(addresses)
        return self.hosts[host]

    def _make(self, index, host):
        ns = self.hosts[host]
        veth = f"{self.tag}v{index}"
        ip("netns", "add", ns)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", veth, "master", self.bridge, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        for a in self.addresses[host]:
            ip("-n", ns, "addr", "add", f"{a}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")

    def wrap(self, host, argv):
        """``argv`` run inside ``host``'s namespace (the same pid: ``nsenter`` execs it)."""
        return ["nsenter", f"--net={NETNS_DIR / self.hosts[host]}", "--", *map(str, argv)]

    def run(self, host, argv, **kwargs):
        return subprocess.run(self.wrap(host, argv), check=False, **kwargs)

    def host_of(self, address):
        for host, addrs in self.addresses.items():
            if address in addrs:
                return host
        return None

    def delete(self):
        """Kill what still runs in the namespaces, delete them, their veths and the bridge."""
        if not self.created:
            return
        for ns in self.hosts.values():
            _kill_all(ns)
            ip("netns", "del", ns, check=False)
        ip("link", "del", self.bridge, check=False)
        self.created = False


# --- the platform's hosts and their addresses --------------------------------------------------------


def _platform_paths(pillar):
    """``[(host, (pillar path...))]`` of every address field of a ``paphosting`` pillar value that
    belongs to a host: each server's address and its metrics listener's."""
    out = []
    for role in ("loadbalancers", "webservers", "nameservers", "masters"):
        for host, item in (pillar.get(role) or {}).items():
            if isinstance(item, dict) and "address" in item:
                out.append((host, (role, host, "address")))
    for role, listeners in (pillar.get("metrics") or {}).items():
        if isinstance(listeners, dict):
            for host, item in listeners.items():
                if isinstance(item, dict) and "address" in item:
                    out.append((host, ("metrics", role, host, "address")))
    return out


def relocate(pillar, subnet):
    """``pillar`` (a ``paphosting`` value) with every host on one address of its own in
    ``subnet`` (from its 10th address on, in pillar order), every listener of a host (its metrics
    exporter) on that address, and every other mention of an old address (a zone record) replaced
    by the new one. Returns ``(new pillar, {host: address})``."""
    net = ipaddress.ip_network(subnet)
    hosts = {}
    for host, _path in _platform_paths(pillar):
        if host not in hosts:
            hosts[host] = str(net.network_address + FIRST_HOST + len(hosts))
    old = {}
    for host, path in _platform_paths(pillar):
        item = pillar
        for key in path:
            item = item[key]
        old[item] = hosts[host]

    def swap(value):
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, str):
            if value in old:
                return old[value]
            for a, b in old.items():
                value = re.sub(rf"(?<![\d.]){re.escape(a)}(?![\d.])", b, value)
        return value

    return swap(pillar), hosts


def host_addresses(platform):
    """``{host: [addresses]}`` of a parsed platform: each server's address and its metrics
    listener's (the masters by name)."""
    out = {}

    def add(host, address):
        if address and address not in out.setdefault(host, []):
            out[host].append(address)

    for role in ("loadbalancers", "webservers", "nameservers", "masters"):
        for host, item in getattr(platform, role).items():
            add(host, item.address)
    for listeners in platform.metrics.values():
        if isinstance(listeners, dict):
            for host, listener in listeners.items():
                add(host, listener.address)
    return out
