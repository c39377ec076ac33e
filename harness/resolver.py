"""A validating resolver for the lab and the tests: Unbound on loopback, trusting our KSKs.

:class:`Unbound` writes a configuration that validates (``validator iterator``), trusts the DNSKEY
records it is given as trust anchors (the platform's KSKs, as a registry's DS would) and sends
every query for the platform's zones to the nameservers it is given (``stub-zone``), then runs
``unbound -d`` under :mod:`harness.processes`. TTLs are capped (``cache-max-ttl``) so a test sees
changes within seconds, while the cache still behaves as a resolver's does.
"""

import pathlib

import dns.flags
import dns.message
import dns.query
import dns.rcode

from harness.processes import Process
from harness.wait import port_open, wait_until


class Unbound:
    """One Unbound on ``address``:``port``; ``stubs`` is ``{zone: [(address, port), ...]}``,
    ``anchors`` master-file DNSKEY (or DS) lines."""

    def __init__(self, folder, address, port, stubs, anchors, max_ttl=5):
        self.folder = pathlib.Path(folder)
        self.address = address
        self.port = port
        self.stubs = stubs
        self.anchors = list(anchors)
        self.max_ttl = max_ttl
        self.folder.mkdir(parents=True, exist_ok=True)
        self.conf = self.folder / "unbound.conf"
        self.process = Process(
            f"unbound-{port}",
            ["unbound", "-d", "-c", self.conf],
            self.folder / "unbound.pid",
            self.folder / "unbound.out",
        )

    def config(self):
        stubs = "".join(
            f'stub-zone:\n  name: "{zone}"\n'
            + "".join(f"  stub-addr: {a}@{p}\n" for a, p in servers)
            for zone, servers in sorted(self.stubs.items())
        )
        return (
            "server:\n"
            f"  interface: {self.address}\n"
            f"  port: {self.port}\n"
            "  do-ip6: no\n"
            "  do-daemonize: no\n"
            '  username: ""\n'
            '  chroot: ""\n'
            f'  directory: "{self.folder}"\n'
            f'  pidfile: "{self.folder}/unbound-own.pid"\n'
            f'  logfile: "{self.folder}/unbound.log"\n'
            "  use-syslog: no\n"
            "  verbosity: 1\n"
            "  val-log-level: 2\n"
            "  num-threads: 1\n"
            "  so-reuseport: no\n"
            "  do-not-query-localhost: no\n"
            "  access-control: 127.0.0.0/8 allow\n"
            '  module-config: "validator iterator"\n'
            f'  trust-anchor-file: "{self.folder}/anchors"\n'
            f"  cache-max-ttl: {self.max_ttl}\n"
            f"  cache-max-negative-ttl: {self.max_ttl}\n"
            "  infra-host-ttl: 5\n"
            "  serve-expired: no\n"
            "  prefetch: no\n"
            "\n" + stubs
        )

    def start(self):
        (self.folder / "anchors").write_text("".join(a.rstrip("\n") + "\n" for a in self.anchors))
        self.conf.write_text(self.config())
        self.process.start()
        wait_until(
            lambda: port_open(self.address, self.port),
            timeout=20,
            message=f"unbound on {self.address}:{self.port}",
        )
        return self

    def stop(self):
        self.process.stop()

    def ask(self, name, rdtype="A", timeout=3.0):
        """Unbound's response to one recursive query with the DO bit."""
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        return dns.query.udp(query, self.address, port=self.port, timeout=timeout)

    def log(self):
        try:
            return (self.folder / "unbound.log").read_text(errors="replace")
        except OSError:
            return ""


def authenticated(resp):
    """Whether a response is validated (AD) and not SERVFAIL."""
    return resp.rcode() != dns.rcode.SERVFAIL and bool(resp.flags & dns.flags.AD)
