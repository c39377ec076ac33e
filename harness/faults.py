"""Faults as they happen on real networks, injected into a lab whose hosts are network namespaces
(``Lab(netns=...)``, :mod:`harness.netns`): the one fault library of the tests, ``make demo`` and
``make bench``.

Each fault is a :class:`Fault` (``heal()`` undoes it; ``with`` heals on exit):

- :meth:`Faults.power_off`: every packet to and from the host dropped, nothing answered (no
  reset, no ICMP): a power cut, a kernel panic, a cut cable. Its processes keep running, unheard.
- :meth:`Faults.kill`: a process killed (``SIGKILL``): haproxy, the web applications, or the
  whole machine's processes. The dead port answers with a reset (the loopback lab's only fault).
- :meth:`Faults.partition`: the packets of host A to host B dropped where B receives them, and
  (symmetric, the default) B's to A; every other host still reaches both.
- :meth:`Faults.loss`: ``percent`` of the packets on one host's link dropped at random
  (``numgen random mod 100 < N drop``), each direction.
- :meth:`Faults.master_unreachable`: a master still running, but no minion's packet reaches it
  (nor its packets them); the lab's own process still reaches it.

Added latency is not offered: ``tc netem`` is not in this kernel, and a delaying proxy would sit
in front of one port, not on a link (docs/bench.md says so).

The drops are nftables rules in the host's own namespace, in one table (``inet paphosting_fault``)
that holds every fault active on that host and is replaced atomically at each change.
"""

import copy
import threading

import yaml

from harness import REPO

TABLE = "paphosting_fault"
PRIORITY = -300  # before anything else could accept the packet


class FaultError(RuntimeError):
    """The fault could not be injected or healed; the message says which and where."""


class Fault:
    def __init__(self, faults, kind, host, rules=(), heal=None, detail=""):
        self.faults = faults
        self.kind = kind
        self.host = host
        self.rules = list(rules)  # [(host, chain, rule)]
        self._heal = heal
        self.detail = detail
        self.active = True

    def heal(self):
        if self.active:
            self.active = False
            self.faults._remove(self)
            if self._heal is not None:
                self._heal()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.heal()

    def __str__(self):
        return f"{self.kind} {self.host}{' ' + self.detail if self.detail else ''}"


class Faults:
    """The faults of one lab. ``lab.net`` must be a :class:`harness.netns.Network` for every kind
    but :meth:`kill`."""

    def __init__(self, lab):
        self.lab = lab
        self._active = []
        self._lock = threading.Lock()

    @property
    def net(self):
        net = getattr(self.lab, "net", None)
        if net is None:
            raise FaultError(
                "network faults need the lab's hosts in network namespaces (Lab(netns=...)); "
                "the loopback lab only kills processes"
            )
        return net

    def address(self, host):
        addrs = self.net.addresses.get(host)
        if not addrs:
            raise FaultError(f"{host} is not a host of this lab")
        return addrs

    # --- the kinds -------------------------------------------------------------------------------

    def power_off(self, host):
        """All packets to and from ``host`` dropped (its loopback spared), no reset."""
        self.address(host)
        rules = [
            (host, "input", 'iifname != "lo" drop'),
            (host, "output", 'oifname != "lo" drop'),
        ]
        return self._add(Fault(self, "power-off", host, rules))

    def kill(self, host, what="haproxy"):
        """``SIGKILL`` ``what`` on ``host``: ``haproxy``, ``webapp`` (its web applications) or
        ``machine`` (its salt-minion and every service it runs). Healing restarts nothing: a
        highstate does (:meth:`harness.launcher.Lab.highstate`)."""
        actions = {
            "haproxy": self.lab.kill_haproxy,
            "webapp": self.lab.kill_webapp,
            "machine": self.lab.kill_machine,
        }
        if what not in actions:
            raise FaultError(f"kill {what!r}: one of {', '.join(actions)}")
        pids = actions[what](host)
        return self._add(Fault(self, "kill", host, detail=f"{what} (pids {pids})"))

    def partition(self, a, b, one_way=False):
        """``a``'s packets to ``b`` dropped on arrival at ``b``; and ``b``'s to ``a`` unless
        ``one_way``."""
        rules = [(b, "input", f"ip saddr {{ {', '.join(self.address(a))} }} drop")]
        if not one_way:
            rules.append((a, "input", f"ip saddr {{ {', '.join(self.address(b))} }} drop"))
        kind = "one-way partition" if one_way else "partition"
        return self._add(Fault(self, kind, a, rules, detail=f"{'->' if one_way else '<->'} {b}"))

    def loss(self, host, percent):
        """``percent`` % of the packets on ``host``'s link dropped at random, in each direction."""
        if not 0 < int(percent) <= 100:
            raise FaultError(f"loss of {percent} %: between 1 and 100")
        self.address(host)
        n = int(percent)
        # nftables compares numgen with 0-99: 100 % is every packet.
        pick = f"numgen random mod 100 < {n} " if n < 100 else ""
        rules = [
            (host, "input", f'iifname != "lo" {pick}drop'),
            (host, "output", f'oifname != "lo" {pick}drop'),
        ]
        return self._add(Fault(self, "loss", host, rules, detail=f"{n} %"))

    def master_unreachable(self, master):
        """Master ``master`` keeps running; every minion's packet to it, and its to them, dropped."""
        self.address(master)
        minions = [a for m in self.lab.minions for a in self.net.addresses.get(m, [])]
        if not minions:
            raise FaultError("no minion runs in a namespace of this lab")
        group = ", ".join(minions)
        rules = [
            (master, "input", f"ip saddr {{ {group} }} drop"),
            (master, "output", f"ip daddr {{ {group} }} drop"),
        ]
        return self._add(
            Fault(self, "master unreachable", master, rules, detail="from the minions")
        )

    # --- the rules -------------------------------------------------------------------------------

    def _add(self, fault):
        with self._lock:
            self._active.append(fault)
            try:
                self._apply({h for h, _c, _r in fault.rules})
            except FaultError:
                self._active.remove(fault)
                raise
        return fault

    def _remove(self, fault):
        with self._lock:
            if fault in self._active:
                self._active.remove(fault)
            self._apply({h for h, _c, _r in fault.rules})

    def _apply(self, hosts):
        for host in sorted(hosts):
            chains = {"input": [], "output": []}
            for f in self._active:
                for h, chain, rule in f.rules:
                    if h == host:
                        chains[chain].append(rule)
            self._nft(host, chains)

    def _nft(self, host, chains):
        # Declare, delete and recreate in one transaction: the table is never half there.
        text = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}"]
        if any(chains.values()):
            body = []
            for chain, rules in chains.items():
                body.append(
                    f"  chain {chain} {{ type filter hook {chain} priority {PRIORITY}; policy accept;"
                )
                body += [f"    {r}" for r in rules]
                body.append("  }")
            text += [f"table inet {TABLE} {{", *body, "}"]
        res = self.net.run(
            host, ["nft", "-f", "-"], input="\n".join(text) + "\n", capture_output=True, text=True
        )
        if res.returncode != 0:
            raise FaultError(f"nft on {host}: {res.stderr.strip()}\n" + "\n".join(text))

    @property
    def active(self):
        with self._lock:
            return list(self._active)

    def heal_all(self):
        for fault in reversed(self.active):
            fault.heal()


def rules_of(net, host):
    """The fault table of ``host`` as ``nft list`` prints it ('' when there is none)."""
    res = net.run(host, ["nft", "list", "table", "inet", TABLE], capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else ""


def platform_pillar(base=None):
    """The example platform (``pillar/paphosting.sls``) as the fault suite and the benchmark run
    it: three load balancers in the rotation (one per kind of fault, so that one fault's flap
    history does not hold another's load balancer), two webservers, no exporters, the failover's
    heartbeat at 10 s and its flap damping over 60 s (at most 4 switches, then held 20 s)."""
    pillar = copy.deepcopy(
        base
        if base is not None
        else yaml.safe_load((REPO / "pillar" / "paphosting.sls").read_text())["paphosting"]
    )
    pillar["loadbalancers"]["lb3.paphosting.net"] = {"address": "127.0.1.3"}
    for rotation in pillar["rotations"].values():
        rotation["members"] = sorted(pillar["loadbalancers"])
    pillar["webservers"].pop("web3.paphosting.net", None)
    for svc in pillar["services"].values():
        svc["servers"] = [s for s in svc["servers"] if s["name"] in pillar["webservers"]]
    pillar.pop("metrics", None)
    pillar["health"].update(
        {"heartbeat": 10, "flap": {"window": 60, "max_transitions": 4, "hold": 20}}
    )
    return pillar
