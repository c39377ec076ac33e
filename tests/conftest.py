"""Shared test support: the repository layout, real binaries, loopback addresses, the example pillar.

No test here skips for a missing binary: ``make test`` installs them first (scripts/setup), so a
missing one is a failure, in CI and everywhere else.
"""

import logging
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from harness.ports import free_port, udp_tcp_port

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "_utils"))

EXAMPLE_PILLAR = REPO / "pillar" / "paphosting.sls"

# Salt's log handlers flush at interpreter exit, after pytest closed the captured streams; without
# this every run ends with pages of "--- Logging error ---" that hide the summary.
logging.raiseExceptions = False


def require_binary(name):
    """The path of a binary from the Debian packages; a missing one fails the test."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None
    )
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/setup (make test does)", pytrace=False)
    return path


def output_with_hash_seed(code, seed):
    """The standard output of ``code`` run by a fresh interpreter with ``PYTHONHASHSEED=seed``
    (the repository and ``_utils`` importable). Two renders in one process share one hash seed,
    so they cannot catch an output that follows the iteration order of a set."""
    env = dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=f"{REPO / '_utils'}:{REPO}")
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert res.returncode == 0, f"python -c {code!r} failed:\n{res.stderr}"
    return res.stdout


def rsa_key_pair():
    """A fresh RSA key pair as Salt keeps its keys: ``(private PEM, public PEM)``, bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def example_pillar():
    """The example platform pillar (the value of the ``paphosting`` key), freshly loaded."""
    return yaml.safe_load(EXAMPLE_PILLAR.read_text())["paphosting"]


class Loopback:
    """Hands out distinct 127.0.0.0/8 addresses, and free ports on them.

    The second octet comes from the pid so that two test runs on one machine do not collide.
    """

    def __init__(self):
        self.base = 64 + os.getpid() % 128
        self.count = 0

    def address(self):
        self.count += 1
        return f"127.{self.base}.{self.count // 250}.{self.count % 250 + 1}"

    port = staticmethod(free_port)
    udp_tcp_port = staticmethod(udp_tcp_port)


@pytest.fixture(scope="session")
def loopback():
    return Loopback()


@pytest.fixture(scope="module")
def gpghome():
    """A GPG home holding a platform key (``paphosting.secrets``), its agent stopped at the end.
    Short: gpg-agent's socket lives in it (there is no /run/user here), 108 bytes at most."""
    import tempfile  # noqa: PLC0415

    from paphosting import secrets  # noqa: PLC0415

    home = tempfile.mkdtemp(prefix="pap-gpg-", dir="/tmp")
    secrets.generate_key(home)
    yield home
    secrets.stop_agent(home)
    shutil.rmtree(home, ignore_errors=True)


def master_opts(tmp_path, **extra):
    """A master's options that load the repository's ext_pillars (``salt.loader.pillars``)."""
    import salt.config  # noqa: PLC0415

    opts = salt.config.master_config(None)
    opts.update(
        cachedir=str(tmp_path / "cache"),
        pillar_dirs=[str(REPO / "_pillar")],
        utils_dirs=[str(REPO / "_utils")],
        extension_modules=str(tmp_path / "extmods"),
        **extra,
    )
    return opts
