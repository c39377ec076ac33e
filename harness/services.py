"""Real services for the tests and the demo: the demo webapp, haproxy, a small platform on loopback.

Every process started here is started in its own session and stopped by its ``stop()`` (tests call
it from fixture finalizers). Nothing here sleeps for a fixed time to let something happen: waits
poll a condition until a deadline (:func:`harness.wait.wait_until`) and fail with a message saying
what did not happen.
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import sys

from harness import REPO
from harness.client import http_get
from harness.wait import Timeout, wait_until
from paphosting import haproxy as hap
from paphosting import model

WEBAPP = REPO / "salt" / "webserver" / "files" / "webapp.py"


# --- the demo webapp --------------------------------------------------------------------------


class Webapp:
    """``salt/webserver/files/webapp.py`` on ``address:port``, answering as ``name``."""

    def __init__(self, name, address, port, log_dir):
        self.name = name
        self.address = address
        self.port = port
        self.log = pathlib.Path(log_dir) / f"webapp-{name}-{address}-{port}.log"
        self.proc = None

    def start(self, timeout=10.0):
        if self.running:
            return self
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(WEBAPP),
                    "--name",
                    self.name,
                    "--address",
                    self.address,
                    "--port",
                    str(self.port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def healthy():
            if self.proc.poll() is not None:
                raise Timeout(
                    f"webapp {self.name} exited with {self.proc.returncode}: {self.log.read_text()[-500:]}"
                )
            return http_get(self.address, self.port, "/health", timeout=1).status == 200

        wait_until(
            healthy, timeout, message=f"webapp {self.name} on {self.address}:{self.port} healthy"
        )
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """Die abruptly (``SIGKILL``), like a crashed server."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_webapp(name, address, port, log_dir, timeout=10.0):
    """Start a demo webapp and wait until its ``/health`` answers 200."""
    return Webapp(name, address, port, log_dir).start(timeout)


# --- haproxy ----------------------------------------------------------------------------------


class Haproxy:
    """haproxy in service mode ``process`` with its files under ``root``."""

    def __init__(self, root):
        self.root = str(root)
        self.paths = hap.layout(self.root)

    def write(self, text):
        path = pathlib.Path(self.paths["config"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def start(self, text=None):
        if text is not None:
            self.write(text)
        hap.start(self.root)
        return self

    def reload(self, text=None):
        if text is not None:
            self.write(text)
        return hap.reload(self.root)

    def stop(self):
        return hap.stop(self.root)

    @property
    def pid(self):
        return hap.status(self.root)["pid"]

    def workers(self):
        return hap.processes(self.paths["master_socket"])["workers"]

    def servers(self):
        return hap.servers(self.paths["admin_socket"])

    def server_status(self, backend, server):
        return self.servers().get(backend, {}).get(server, "")

    def wait_server(self, backend, server, status, timeout=15.0):
        """Wait until haproxy's health checks report ``server`` of ``backend`` as ``UP`` or ``DOWN``."""
        return wait_until(
            lambda: self.server_status(backend, server).startswith(status),
            timeout,
            message=f"{backend}/{server} {status} in haproxy {self.root}",
        )

    def log_tail(self, lines=30):
        try:
            return "".join(pathlib.Path(self.paths["log"]).read_text().splitlines(True)[-lines:])
        except FileNotFoundError:
            return ""


def start_haproxy(root, text):
    """Write ``text`` as the haproxy.cfg under ``root`` and start haproxy; wait until it serves."""
    return Haproxy(root).start(text)


# --- a small platform on loopback addresses ---------------------------------------------------


def platform_pillar(loopback, lbs=2, webservers=3, failback="manual", inter=200, fall=2, rise=2):
    """A ``paphosting`` pillar value on fresh loopback addresses and free ports, for real daemons.

    ``lbs`` load balancers ``lbN.test``, ``webservers`` webservers ``webN.test`` each with its own
    port; the stateless service ``www`` (``www.example.test``) over all webservers, and the
    stateful service ``shop`` (``shop.example.test``) with ``web1.test`` as primary and
    ``web2.test`` as backup, failback ``failback``. Health checks every ``inter`` ms.
    """
    lbs_ = {}
    for i in range(1, lbs + 1):
        addr = loopback.address()
        lbs_[f"lb{i}.test"] = {"address": addr, "http_port": loopback.port(addr)}
    webs = {}
    ports = {}
    for i in range(1, webservers + 1):
        addr = loopback.address()
        webs[f"web{i}.test"] = {"address": addr}
        ports[f"web{i}.test"] = loopback.port(addr)
    check = {
        "path": "/health",
        "inter": inter,
        "fall": fall,
        "rise": rise,
        "timeout": max(100, inter),
    }
    services = {
        "www": {
            "type": "stateless",
            "hostnames": ["www.example.test"],
            "check": dict(check),
            "servers": [{"name": n, "port": ports[n]} for n in webs],
        }
    }
    if webservers >= 2:
        services["shop"] = {
            "type": "stateful",
            "hostnames": ["shop.example.test"],
            "failback": failback,
            "cookie_name": "PAPSRV",
            "check": dict(check),
            "servers": [
                {"name": "web1.test", "role": "primary", "port": ports["web1.test"]},
                {"name": "web2.test", "role": "backup", "port": ports["web2.test"]},
            ],
        }
    return {
        "settings": {"service_mode": "process"},
        "haproxy": {"timeout_connect": 1000, "timeout_client": 10000, "timeout_server": 10000},
        "loadbalancers": lbs_,
        "webservers": webs,
        "services": services,
    }


def webapps_of(pillar, log_dir):
    """Start one webapp per webserver of ``pillar`` on the port its services use; return them by name."""
    ports = {}
    for name, svc in pillar["services"].items():
        for srv in svc["servers"]:
            port = srv.get("port", svc.get("port"))
            if port is None:
                raise ValueError(f"service {name}: server {srv['name']} has no port to run on")
            ports.setdefault(srv["name"], port)
    apps = {}
    try:
        for name, port in ports.items():
            apps[name] = start_webapp(name, pillar["webservers"][name]["address"], port, log_dir)
    except BaseException:
        for app in apps.values():
            app.stop()
        raise
    return apps


@contextlib.contextmanager
def webservers(pillar, log_dir):
    """The webservers of ``pillar`` running (:func:`webapps_of`) for the ``with`` block: a load
    balancer with no server up fails its health endpoint, so a failover test needs them."""
    apps = webapps_of(pillar, log_dir)
    try:
        yield apps
    finally:
        for app in apps.values():
            app.stop()


def clean_env():
    """``os.environ`` for a subprocess that should not inherit pytest's plugin settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


class LoadBalancer:
    """A real haproxy load balancer for the DNS failover tests: its address and port are chosen
    first (the pillar needs them), then :meth:`configure` renders its haproxy.cfg from that pillar
    with the project's own renderer. :meth:`stop` kills it (the health endpoint refuses
    connections, as when the machine dies), :meth:`start` brings it back."""

    def __init__(self, name, address, port, root):
        self.name = name
        self.address = address
        self.port = port
        self.haproxy = Haproxy(root)

    def configure(self, pillar):
        self.haproxy.write(hap.render(model.parse(pillar), self.name, self.haproxy.root))
        return self

    def start(self):
        if not self.running:
            self.haproxy.start()
        return self

    def stop(self):
        self.haproxy.stop()

    @property
    def running(self):
        return hap.status(self.haproxy.root)["running"]
