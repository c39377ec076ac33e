"""The secrets contract: GPG with a real gpg, the layout under ``secrets/``, and the ``secrets``
ext_pillar (loaded by Salt's own pillar loader) publishing each kind only to its role."""

import shutil
import subprocess
import sys
import tempfile

import pytest
import salt.loader

from harness.tlsca import Authority
from paphosting import secrets
from tests.conftest import REPO, master_opts
from tests.unit import platforms

LB, NS, WEB = "lb1.paphosting.net", "ns1.paphosting.net", "web1.paphosting.net"


@pytest.fixture(scope="module")
def bundle():
    chain, key = Authority().issue(["www.paphosting.nl"])
    return chain + key


@pytest.fixture
def tree(tmp_path, gpghome, bundle):
    secrets.write(str(tmp_path), "tls", "www", bundle, gpghome)
    secrets.write(str(tmp_path), "dnssec", "paphosting.nl/ksk", "DNSSEC PRIVATE\n", gpghome)
    secrets.write(str(tmp_path), "acme", "account", "ACME ACCOUNT KEY\n", gpghome)
    return tmp_path


def test_generate_key_is_idempotent(gpghome):
    assert secrets.generate_key(gpghome) == secrets.platform_key(gpghome)
    assert "BEGIN PGP PUBLIC KEY BLOCK" in secrets.export_public(gpghome)


def test_round_trip_and_no_plaintext_on_disk(tree, gpghome, bundle):
    text = (tree / "secrets/tls/www.asc").read_text()
    assert text.startswith(secrets.ARMOR_BEGIN)
    assert "PRIVATE KEY" not in text and "CERTIFICATE" not in text
    assert secrets.read(str(tree), "tls", "www", gpghome) == bundle
    assert secrets.names(str(tree), "dnssec") == ["paphosting.nl/ksk"]


def test_plaintext_under_secrets_is_refused(tree, bundle):
    (tree / "secrets/tls/shop.pem").write_text(bundle)
    with pytest.raises(secrets.SecretError, match=r"secrets/tls/shop.pem: not an encrypted"):
        secrets.names(str(tree), "tls")


def test_armored_but_not_for_our_key_is_a_clear_error(tree, gpghome, tmp_path_factory):
    other = tempfile.mkdtemp(prefix="pap-gpg-", dir="/tmp")
    try:
        secrets.generate_key(other)
        (tree / "secrets/tls/shop.asc").write_text(secrets.encrypt("x", other))
    finally:
        secrets.stop_agent(other)
        shutil.rmtree(other, ignore_errors=True)
    with pytest.raises(secrets.SecretError, match=r"secrets/tls/shop.asc: cannot decrypt"):
        secrets.publish(str(tree), ["tls"], gpghome)


def test_a_name_cannot_leave_the_tree():
    for bad in ("../x", "/etc/passwd", ""):
        with pytest.raises(secrets.SecretError):
            secrets.relpath("tls", bad)
    with pytest.raises(secrets.SecretError, match="unknown kind"):
        secrets.relpath("ssh", "x")


def test_kinds_by_role():
    assert secrets.kinds_for(["loadbalancer"]) == ["tls"]
    assert secrets.kinds_for(["nameserver"]) == ["dnssec"]
    assert secrets.kinds_for(["loadbalancer", "nameserver"]) == ["dnssec", "tls"]
    assert secrets.kinds_for(["webserver"]) == []
    assert secrets.kinds_for([]) == []


def test_fingerprint_is_the_certificates_and_never_shows_the_key(bundle):
    chain, key = bundle.split("-----BEGIN PRIVATE KEY-----")
    key = "-----BEGIN PRIVATE KEY-----" + key
    der = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
        input=chain,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    want = der.split("=", 1)[1].strip().replace(":", "").lower()
    assert secrets.fingerprint(bundle) == f"sha256:{want}"
    shown = secrets.fingerprint(key)
    assert shown.startswith("sha256:") and shown != secrets.fingerprint(bundle)
    assert "PRIVATE" not in shown


# --- the ext_pillar ---------------------------------------------------------------------------


@pytest.fixture
def ext_pillar(tmp_path, tree, gpghome):
    opts = master_opts(
        tmp_path,
        pillar_roots={"base": [str(tmp_path / "elsewhere"), str(tree)]},
        gpg_keydir=gpghome,
    )
    return salt.loader.pillars(opts, {})["secrets"]


def test_each_role_gets_its_kind_only(ext_pillar, bundle):
    pillar = {"paphosting": platforms.pillar()}
    assert ext_pillar(LB, pillar) == {"paphosting_secrets": {"tls": {"www": bundle}}}
    assert ext_pillar(NS, pillar) == {
        "paphosting_secrets": {"dnssec": {"paphosting.nl/ksk": "DNSSEC PRIVATE\n"}}
    }
    assert ext_pillar(WEB, pillar) == {}
    assert ext_pillar("stranger.example", pillar) == {}
    assert ext_pillar(LB, {}) == {}


def test_acme_account_key_reaches_no_minion(ext_pillar):
    pillar = {"paphosting": platforms.pillar()}
    for minion in (LB, NS, WEB, "lb2.paphosting.net", "ns2.paphosting.net"):
        assert "ACME ACCOUNT KEY" not in repr(ext_pillar(minion, pillar))


def test_an_unreadable_secret_fails_the_pillar_rather_than_publish_less(ext_pillar, tree):
    (tree / "secrets/tls/www.asc").write_text(secrets.ARMOR_BEGIN + "\ngarbage\n")
    with pytest.raises(secrets.SecretError, match="secrets/tls/www.asc"):
        ext_pillar(LB, {"paphosting": platforms.pillar()})
    # A webserver's pillar does not depend on the load balancers' secrets.
    assert ext_pillar(WEB, {"paphosting": platforms.pillar()}) == {}


# --- the second master gets the platform key --------------------------------------------------

PROVISION = REPO / "scripts" / "provision-second-master"


def provision(*args):
    return subprocess.run(
        [sys.executable, str(PROVISION), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def pki_of_nl(tmp_path):
    nl = tmp_path / "nl"
    (nl / "minions").mkdir(parents=True)
    (nl / "master.pem").write_text("NL PRIVATE")
    (nl / "master.pub").write_text("NL PUBLIC")
    return nl


def test_provision_second_master_copies_the_platform_key(tmp_path, gpghome, bundle):
    nl, ch = pki_of_nl(tmp_path), tmp_path / "ch"
    ch_gpg = tempfile.mkdtemp(prefix="pap-gpg-", dir="/tmp")
    try:
        dry = provision("--dry-run", "--gpg", gpghome, ch_gpg, nl, ch)
        assert dry.returncode == 0, dry.stderr
        assert f"would change: platform GPG key {secrets.platform_key(gpghome)}" in dry.stdout
        done = provision("--gpg", gpghome, ch_gpg, nl, ch)
        assert done.returncode == 0, done.stderr
        assert secrets.platform_key(ch_gpg) == secrets.platform_key(gpghome)
        # What NL encrypted, CH decrypts.
        assert secrets.decrypt(secrets.encrypt(bundle, gpghome), ch_gpg) == bundle
        assert "nothing to do" in provision("--gpg", gpghome, ch_gpg, nl, ch).stdout
    finally:
        secrets.stop_agent(ch_gpg)
        shutil.rmtree(ch_gpg, ignore_errors=True)


def test_provision_refuses_to_replace_another_key_without_force(tmp_path, gpghome):
    nl, ch = pki_of_nl(tmp_path), tmp_path / "ch"
    ch_gpg = tempfile.mkdtemp(prefix="pap-gpg-", dir="/tmp")
    try:
        own = secrets.generate_key(ch_gpg)
        refused = provision("--gpg", gpghome, ch_gpg, nl, ch)
        assert refused.returncode == 1 and "--force" in refused.stderr
        assert secrets.platform_key(ch_gpg) == own and not (ch / "master.pem").exists()
        forced = provision("--force", "--gpg", gpghome, ch_gpg, nl, ch)
        assert forced.returncode == 0, forced.stderr
        assert secrets.platform_key(ch_gpg) == secrets.platform_key(gpghome)
    finally:
        secrets.stop_agent(ch_gpg)
        shutil.rmtree(ch_gpg, ignore_errors=True)
