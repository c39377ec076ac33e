"""Pebble, the ACME test CA (Debian's ``pebble``), for the tests, the demo and the benchmark.

:class:`Pebble` runs it on one loopback address with its own HTTPS certificate (from a test CA of
:mod:`harness.tlsca`: :attr:`Pebble.server_ca` is the root a client verifies the ACME server with,
``paphosting:acme:ca_bundle``), validating DNS-01 against one of the platform's own nameservers
(``-dnsserver``). ``PEBBLE_VA_NOSLEEP=1`` takes out the artificial validation delays; nothing
makes validation always succeed, and ``PEBBLE_AUTHZREUSE=0`` has every order validated afresh
through our nameservers. Pebble makes a new root at every start: :meth:`Pebble.root` reads
it from the management API, to verify issued chains with.

.. code-block:: python

    with Pebble(folder, "127.0.14.1", dns=("127.0.14.21", 5300)) as ca:
        pillar["acme"] = {"directory": ca.directory, "ca_bundle": str(ca.server_ca)}
"""

import json
import pathlib
import shutil
import ssl
import urllib.request

from harness import processes, tlsca
from harness.wait import port_open, wait_until


def _server_certificate(address, folder):
    """Pebble's own HTTPS certificate for ``address``, from a test CA of ours
    (:mod:`harness.tlsca`); ``(chain path, key path, that CA's root path)``."""
    ca = tlsca.Authority("pebble server")
    chain, key = ca.issue([address, "localhost"], days=7)
    paths = folder / "server.pem", folder / "server.key", folder / "server-ca.pem"
    paths[0].write_text(chain)
    paths[1].write_text(key)
    paths[1].chmod(0o600)
    paths[2].write_text(ca.root_pem)
    return paths


class Pebble(processes.Started):
    """Pebble on ``address``: ACME on ``port``, management on ``port + 1``; DNS-01 answered by
    the nameserver at ``dns`` (``(address, port)``)."""

    def __init__(self, folder, address, dns, port=14000, env=None):
        self.folder = pathlib.Path(folder)
        self.address = address
        self.port = port
        self.management_port = port + 1
        self.dns = dns
        # Every order is validated afresh (Pebble otherwise reuses a valid authorization half the
        # time, and an issuance would not always go through our nameservers).
        self.env = {
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
            **(env or {}),
        }
        self.process = None
        self.server_ca = self.folder / "server-ca.pem"

    @property
    def directory(self):
        return f"https://{self.address}:{self.port}/dir"

    def _config(self):
        cert, key, _ = _server_certificate(self.address, self.folder)
        config = {
            "pebble": {
                "listenAddress": f"{self.address}:{self.port}",
                "managementListenAddress": f"{self.address}:{self.management_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                # HTTP-01 and TLS-ALPN-01 are not used (DNS-01 only): ports nobody listens on.
                "httpPort": self.port + 2,
                "tlsPort": self.port + 3,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        path = self.folder / "pebble-config.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout=20):
        if shutil.which("pebble") is None:
            raise RuntimeError("pebble is not installed: run scripts/setup (make test does)")
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.server_ca.exists():
            self._config()
        self.process = processes.Process(
            "pebble",
            [
                "pebble",
                "-config",
                self.folder / "pebble-config.json",
                "-dnsserver",
                f"{self.dns[0]}:{self.dns[1]}",
                "-strict",
            ],
            self.folder / "pebble.pid",
            self.folder / "pebble.log",
            env=self.env,
        )
        self.process.start()
        try:
            wait_until(
                lambda: port_open(self.address, self.port)
                and port_open(self.address, self.management_port),
                timeout,
                message=f"pebble to listen on {self.address}:{self.port}",
            )
        except AssertionError as exc:
            raise RuntimeError(f"{exc}\n{self.process.tail()}") from None
        return self

    def stop(self):
        return self.process is not None and self.process.stop()

    @property
    def running(self):
        return self.process is not None and self.process.running

    def _get(self, path):
        ctx = ssl.create_default_context(cafile=str(self.server_ca))
        url = f"https://{self.address}:{self.management_port}{path}"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:  # noqa: S310
            return resp.read().decode()

    def root(self):
        """The PEM of the root this Pebble signs with now (new at every start)."""
        return self._get("/roots/0")

    def write_root(self, path):
        """Write :meth:`root` to ``path``; the path."""
        path = pathlib.Path(path)
        path.write_text(self.root())
        return path
