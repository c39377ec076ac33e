"""A real Subversion server for the push tests and the lab: ``svnadmin create`` and ``svnserve``
on 127.0.0.1.

:class:`SvnServer` holds one repository (``<root>/platform``) served by ``svnserve -d`` on a free
port of 127.0.0.1: anonymous read, write for the user ``admin`` (password ``secret``), and the
``pre-revprop-change`` hook an admin installs (only ``paphosting:pushed`` may change).
:meth:`SvnServer.commit` commits files the way an admin does, from a working copy.

:func:`served` starts one and stops it on exit (for a module-scoped fixture);
:func:`master_options` is the master configuration that serves the pillar from it (the tests' and
the lab's masters alike).
"""

import contextlib
import os
import shutil
import subprocess

import yaml

from harness import REPO
from harness.wait import wait_until
from paphosting import daemon

BINARIES = ("svnadmin", "svnserve", "svn", "svnlook")
# The tests' svnpillar settings (master_options): fail fast, keep little.
SHORT = {"timeout": 5, "apply_timeout": 120, "keep": 3}
SVNPILLAR_CONF = REPO / "conf" / "master.d" / "svnpillar.conf"
USER = "admin"
PASSWORD = "secret"

HOOK = """#!/bin/sh
# Allow the masters to mark a revision pushed (svnpillar.push); refuse every other change.
# Arguments: REPOS REV USER PROPNAME ACTION
[ "$4" = "paphosting:pushed" ] && exit 0
echo "only the revision property paphosting:pushed may be changed" >&2
exit 1
"""


def _run(args, cwd=None, stdin=None):
    env = dict(os.environ, LC_ALL="C.UTF-8")
    res = subprocess.run(
        args, cwd=cwd, input=stdin, capture_output=True, text=True, env=env, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{res.stdout}{res.stderr}")
    return res.stdout


class SvnServer:
    """One repository under ``root``, served by svnserve on ``address:port`` (the lab in network
    namespaces: the bridge's address, which every host reaches)."""

    def __init__(self, root, port, name="platform", address="127.0.0.1"):
        self.root = str(root)
        self.port = port
        self.name = name
        self.address = address
        self.repo = os.path.join(self.root, name)
        self.url = f"svn://{address}:{port}/{name}"
        self.config_dir = os.path.join(self.root, "client-config")
        self.wc = os.path.join(self.root, "wc")
        self.daemon = daemon.Daemon(
            name="svnserve",
            command=(
                "svnserve",
                "-d",
                "--listen-host",
                address,
                "--listen-port",
                str(port),
                "-r",
                self.root,
                "--pid-file",
                os.path.join(self.root, "svnserve.pid"),
                "--log-file",
                os.path.join(self.root, "svnserve.log"),
            ),
            pidfile=os.path.join(self.root, "svnserve.pid"),
            log=os.path.join(self.root, "svnserve.out"),
        )

    def create(self):
        _run(["svnadmin", "create", self.repo])
        conf = os.path.join(self.repo, "conf")
        with open(os.path.join(conf, "svnserve.conf"), "w", encoding="utf-8") as fh:
            fh.write(
                "[general]\nanon-access = read\nauth-access = write\npassword-db = passwd\nrealm = paphosting\n"
            )
        with open(os.path.join(conf, "passwd"), "w", encoding="utf-8") as fh:
            fh.write(f"[users]\n{USER} = {PASSWORD}\n")
        hook = os.path.join(self.repo, "hooks", "pre-revprop-change")
        with open(hook, "w", encoding="utf-8") as fh:
            fh.write(HOOK)
        os.chmod(hook, 0o755)
        return self

    def start(self):
        daemon.start(self.daemon)
        wait_until(
            lambda: daemon.port_open(self.address, self.port, 1),
            10,
            message=f"svnserve to listen on {self.address}:{self.port}",
        )
        return self

    def stop(self):
        daemon.stop(self.daemon)

    def _svn(self, *args, cwd=None):
        return _run(
            [
                "svn",
                "--non-interactive",
                "--config-dir",
                self.config_dir,
                "--username",
                USER,
                "--password-from-stdin",
                "--no-auth-cache",
                *args,
            ],
            cwd=cwd,
            stdin=PASSWORD + "\n",
        )

    def commit(self, files, message="change", remove=()):
        """Commit ``files`` (``{repository path: text}``) and remove ``remove``; the new revision."""
        if not os.path.isdir(self.wc):
            self._svn("checkout", "--quiet", self.url, self.wc)
        self._svn("update", "--quiet", self.wc)
        for path, text in files.items():
            full = os.path.join(self.wc, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as fh:
                fh.write(text)
        for path in remove:
            self._svn("delete", "--quiet", os.path.join(self.wc, path))
        self._svn("add", "--quiet", "--force", "--parents", self.wc)
        out = self._svn("commit", "-m", message, self.wc)
        for line in out.splitlines():
            if line.startswith("Committed revision"):
                return int(line.split()[-1].rstrip("."))
        return self.head()

    def mark(self, rev, value):
        """Mark ``rev`` pushed, as a master does (``svn propset --revprop``)."""
        self._svn("propset", "--revprop", "-r", str(rev), "paphosting:pushed", value, self.url)

    def unmark(self, rev):
        self._svn("propdel", "--revprop", "-r", str(rev), "paphosting:pushed", self.url)

    def head(self):
        out = _run(["svnlook", "youngest", self.repo])
        return int(out.strip())

    def pushed(self, rev):
        """The ``paphosting:pushed`` mark of ``rev`` (None when unset), read on the server side."""
        res = subprocess.run(
            ["svnlook", "propget", "--revprop", "-r", str(rev), self.repo, "paphosting:pushed"],
            capture_output=True,
            text=True,
            check=False,
        )
        return res.stdout.strip() if res.returncode == 0 else None


@contextlib.contextmanager
def served(root, port):
    """A started :class:`SvnServer` with an empty repository under ``root``, stopped on exit.

    .. code-block:: python

        @pytest.fixture(scope="module")
        def svn_server(tmp_path_factory, loopback):
            with served(tmp_path_factory.mktemp("svn"), loopback.port("127.0.0.1")) as server:
                yield server
    """
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not installed: run scripts/setup (make test does)"
        )
    server = SvnServer(root, port).create().start()
    try:
        yield server
    finally:
        server.stop()


def master_options(store, server, sync_seconds=3, **settings):
    """``conf/master.d/svnpillar.conf`` for a master of the tests or the lab: revisions kept under
    ``store``, the repository of ``server`` with its admin user, svnpillar.sync every
    ``sync_seconds`` (30 in production); ``settings`` go over the rest of ``paphosting_svn``
    (the tests shorten the timeouts, the lab names each master)."""
    text = SVNPILLAR_CONF.read_text().replace("/var/cache/salt/master/paphosting", str(store))
    conf = yaml.safe_load(text)
    conf["paphosting_svn"].update(
        {
            "url": server.url,
            "username": USER,
            "password": PASSWORD,
            "config_dir": os.path.join(str(store), "svn-config"),
            "store": str(store),
            **settings,
        }
    )
    conf["schedule"]["paphosting_svnpillar_sync"]["seconds"] = sync_seconds
    return conf
