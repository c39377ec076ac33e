"""Integration harness: a real salt-master and real minions, configured as in production.

The master runs with ``conf/master.d/paphosting.conf`` (the checkout substituted for
``/srv/paphosting``), serves ``salt://`` from the repository (``harness.saltenv``) and the
pillar a test writes; minions load the project's modules straight from the repository and each
get their own ``paphosting_root`` sandbox. Use it from a module-scoped fixture:

.. code-block:: python

    @pytest.fixture(scope="module")
    def platform(salt_platform):
        with salt_platform(["ns1.t.test", "ns2.t.test"], pillar) as p:
            yield p

    def test_something(platform):
        platform.salt("ns1.t.test", "state.apply", "watcher")
        platform.run("rotation.status")
        platform.wait(lambda: ..., "what we wait for")

Every daemon is started with its own root directory under pytest's tmp_path and stopped when the
``with`` block ends.
"""

import concurrent.futures
import contextlib
import functools
import http.server
import os
import pathlib
import shutil
import tempfile
import threading

import pytest
import salt.client
import salt.runner
import yaml
from saltfactories.utils.functional import Loaders

from harness.saltenv import file_root, loader_dirs, master_config
from harness.wait import wait_until
from tests.conftest import example_pillar

MINION_LOOP_INTERVAL = 0.05


def wait(predicate, what, timeout=30.0, interval=0.25):
    """:func:`harness.wait.wait_until` with the integration tests' argument order and defaults:
    ``predicate``'s first truthy value; the test fails after ``timeout`` s."""
    return wait_until(predicate, timeout, interval, what)


class SaltPlatform:
    """One master and its minions. ``minions`` maps a minion id to its saltfactories daemon."""

    def __init__(self, master, minions, pillar_dir, roots):
        self.master = master
        self.minions = minions
        self.pillar_dir = pillar_dir
        self.roots = roots
        self._local = None
        self._runners = None

    # -- pillar and files
    def write_pillar(self, paphosting):
        """Make ``paphosting`` (the value of the ``paphosting`` key) every minion's pillar."""
        (self.pillar_dir / "paphosting.sls").write_text(yaml.safe_dump({"paphosting": paphosting}))

    def root(self, minion_id):
        """The minion's ``paphosting_root`` sandbox."""
        return self.roots[minion_id]

    def master_log(self):
        return pathlib.Path(self.master.config["log_file"]).read_text(errors="replace")

    # -- commands
    @property
    def local(self):
        if self._local is None:
            self._local = salt.client.get_local_client(mopts=self.master.config.copy())
        return self._local

    def salt(self, tgt, fun, *args, timeout=120, **kwargs):
        """Run ``fun`` on one minion id or a list of ids; the return (of the one) or ``{id: return}``."""
        many = isinstance(tgt, (list, tuple))
        ret = self.local.cmd(
            list(tgt) if many else tgt,
            fun,
            list(args),
            timeout=timeout,
            tgt_type="list" if many else "glob",
            kwarg=kwargs,
        )
        missing = [m for m in (tgt if many else [tgt]) if m not in ret]
        if missing:
            pytest.fail(f"no return from {', '.join(missing)} for {fun}: {ret!r}")
        return ret if many else ret[tgt]

    def run(self, fun, **kwargs):
        """Call a runner function in this process with the master's configuration; its return.

        (Straight through the runner loader: ``RunnerClient.cmd`` adds about two seconds of job
        bookkeeping per call, too slow to poll with.)
        """
        if self._runners is None:
            self._runners = salt.runner.RunnerClient(self.master.config.copy()).functions
        return self._runners[fun](**kwargs)

    def run_cli(self, *args):
        """Run ``salt-run`` for real (what an operator types); the ProcessResult."""
        return self.master.salt_run_cli(timeout=120).run(*args)

    def highstate(self, minion_ids):
        """A highstate on each minion; fail with the failed states if any failed."""
        ret = self.salt(list(minion_ids), "state.apply")
        failed = {
            m: {
                k: v.get("comment")
                for k, v in r.items()
                if isinstance(v, dict) and v.get("result") is False
            }
            if isinstance(r, dict)
            else r
            for m, r in ret.items()
        }
        failed = {m: f for m, f in failed.items() if f}
        assert not failed, f"highstate failed: {failed}"
        return ret

    def restart_master(self):
        self.master.terminate()
        self.master.start()
        self._local = None
        self._runners = None
        for m in self.minions.values():
            wait(
                lambda m=m: self._ping(m.id),
                f"{m.id} to answer the restarted master",
                timeout=60,
                interval=0.5,
            )

    def _ping(self, minion_id):
        try:
            return self.local.cmd(minion_id, "test.ping", timeout=5).get(minion_id)
        except Exception:  # noqa: BLE001 - the master may still be starting
            self._local = None
            return False

    wait = staticmethod(wait)


@pytest.fixture(scope="module")
def salt_platform(salt_factories, tmp_path_factory, request):
    """Factory: ``with salt_platform(minion_ids, paphosting_pillar, ...) as platform``.

    master_overrides / minion_overrides
        Extra configuration (merged over the production configuration).
    extra_file_roots
        Folders served after the repository's ``salt/`` (test-only SLS).
    """

    @contextlib.contextmanager
    def make(
        minion_ids, paphosting, master_overrides=None, minion_overrides=None, extra_file_roots=()
    ):
        tag = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
        base = tmp_path_factory.mktemp(tag)
        # Salt's unix sockets live under each daemon's root: keep those paths short.
        daemons = pathlib.Path(tempfile.mkdtemp(prefix="pap-", dir="/tmp"))
        # PAPHOSTING_KEEP_DAEMONS=1 keeps them (logs under <dir>/master/logs, <dir>/m<i>/logs).
        keep = os.environ.get("PAPHOSTING_KEEP_DAEMONS")
        stack_cleanup = (
            (lambda: None)
            if keep
            else functools.partial(shutil.rmtree, daemons, ignore_errors=True)
        )
        pillar_dir = base / "pillar"
        pillar_dir.mkdir()
        (pillar_dir / "top.sls").write_text("base:\n  '*':\n    - paphosting\n")
        overrides = master_config()
        overrides.update(
            {
                "file_roots": {
                    "base": [file_root(base / "file_root"), *map(str, extra_file_roots)]
                },
                "pillar_roots": {"base": [str(pillar_dir)]},
                "log_level_logfile": "info",
            }
        )
        overrides.update(master_overrides or {})
        master = salt_factories.salt_master_daemon(
            f"master-{tag}", defaults={"root_dir": str(daemons / "master")}, overrides=overrides
        )
        roots = {}
        minions = {}
        for i, mid in enumerate(minion_ids):
            roots[mid] = base / "roots" / mid
            roots[mid].mkdir(parents=True)
            minions[mid] = master.salt_minion_daemon(
                mid,
                defaults={"root_dir": str(daemons / f"m{i}")},
                overrides={
                    "paphosting_root": str(roots[mid]),
                    **loader_dirs(),
                    "loop_interval": MINION_LOOP_INTERVAL,
                    # Reconnect fast after a master restart (the tests restart masters).
                    "recon_default": 100,
                    "recon_max": 1000,
                    "recon_randomize": False,
                    "random_reauth_delay": 0,
                    "log_level_logfile": "info",
                    **(minion_overrides or {}),
                },
            )
        platform = SaltPlatform(master, minions, pillar_dir, roots)
        platform.write_pillar(paphosting)
        with contextlib.ExitStack() as stack:
            stack.callback(stack_cleanup)
            stack.enter_context(master.started())
            # Minions start in parallel (each start waits a few seconds for its key dance).
            for m in minions.values():
                stack.callback(m.terminate)
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(minions) or 1) as pool:
                for f in [pool.submit(m.start) for m in minions.values()]:
                    f.result()
            yield platform

    return make


class Site:
    """A plain HTTP server on one loopback address: a stand-in load balancer health endpoint.

    ``status`` is the answer (200 by default); :meth:`stop` closes the socket (connections are
    refused), :meth:`start` opens it again on the same address and port.
    """

    def __init__(self, address, port=0):
        self.address = address
        self.port = port
        self.status = 200
        self._server = None
        self._thread = None
        self.start()

    def start(self):
        if self._server is not None:
            return
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(site.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer((self.address, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    @property
    def running(self):
        return self._server is not None


@pytest.fixture(scope="module")
def sites(loopback):
    """Factory of :class:`Site` objects, all stopped at the end of the module."""
    made = []

    def make():
        site = Site(loopback.address())
        made.append(site)
        return site

    yield make
    for s in made:
        s.stop()


def masterless(salt_factories, minion_id, pillar_dir, fileroot, root, base_name=None, **overrides):
    """Salt's loaders (saltfactories' ``Loaders``) of a masterless minion ``minion_id``:
    ``file_client: local`` over the pillar folder ``pillar_dir`` and the ``salt://`` tree
    ``fileroot``, the project's modules from the checkout, ``root`` its ``paphosting_root``;
    ``overrides`` go over that. Several minions in one process: give each a ``base_name`` of its
    own, or the modules of one run with another's ``__opts__``."""
    config = salt_factories.salt_minion_daemon(
        minion_id,
        overrides={
            "file_client": "local",
            "pillar_roots": {"base": [str(pillar_dir)]},
            "file_roots": {"base": [str(fileroot)]},
            **loader_dirs(),
            "paphosting_root": str(root),
            **overrides,
        },
    ).config.copy()
    return Loaders(config, loaded_base_name=base_name)


def example_on_loopback(loopback):
    """The example platform (the value of ``paphosting``) on fresh loopback addresses and ports,
    without its exporters and without the drift schedule (tests apply when they mean to)."""
    pillar = example_pillar()
    pillar.pop("metrics")  # the exporters of the example's own servers
    for lb in pillar["loadbalancers"].values():
        lb["address"] = loopback.address()
        lb["http_port"] = loopback.port(lb["address"])
    for web in pillar["webservers"].values():
        web["address"] = loopback.address()
    for ns in pillar["nameservers"].values():
        # BIND listens only on addresses of an interface: 127.0.0.1, with a port of its own.
        ns["address"] = "127.0.0.1" if ns["server"] == "bind" else loopback.address()
        ns["port"] = loopback.udp_tcp_port(ns["address"])
        if ns["server"] == "bind":
            ns["control_port"] = loopback.port("127.0.0.1")
    for master in pillar["masters"].values():
        master["address"] = loopback.address()
    pillar["schedule"]["enabled"] = False
    return pillar
