"""The platform's secrets: private keys kept encrypted in Subversion, decrypted on the masters only.

The contract (docs/tls.md, "Secrets"), shared by HTTPS and DNSSEC:

- One platform GPG key pair without a passphrase, held by both masters in their ``gpg_keydir``
  (like the Salt master key pair: :func:`generate_key` once, then copied to the second master by
  ``scripts/provision-second-master``).
- Each secret is a file of the pillar tree, ``secrets/<kind>/<name>.asc``, an ASCII-armored GPG
  message encrypted to that key (:func:`write`, or ``gpg --armor --encrypt``). Nothing else may
  live under ``secrets/``: a plaintext file there is refused (:func:`names`).
- Which role gets which kind (:data:`KINDS`): ``tls`` (one PEM bundle per service: certificate
  chain, leaf first, then the private key) goes to load balancers, ``dnssec`` to nameservers,
  ``acme`` (the ACME account key) to nobody: the master's runner reads it with :func:`read`.
- The ext_pillar ``secrets`` (``_pillar/secrets.py``) publishes :func:`publish` as
  ``paphosting_secrets: {kind: {name: text}}`` to each minion, only the kinds of its roles.
- Logs, events and ``changes`` show :func:`fingerprint`, never the text.

No Salt here: the GPG home is a parameter (``gpg_keydir`` on a master).
"""

import hashlib
import os
import subprocess

from paphosting import files
from paphosting.errors import PapError

SECRETS_DIR = "secrets"
SUFFIX = ".asc"
PILLAR_KEY = "paphosting_secrets"
# kind -> the platform role that receives it (None: the masters keep it to themselves).
KINDS = {"tls": "loadbalancer", "dnssec": "nameserver", "acme": None}
KEY_NAME = "paphosting platform secrets"
# Salt's own default for the gpg renderer's keys, when a master's configuration names none.
DEFAULT_GPG_KEYDIR = "/etc/salt/gpgkeys"
ARMOR_BEGIN = "-----BEGIN PGP MESSAGE-----"

# Decrypted texts of this (long-lived master worker) process, by GPG home and ciphertext digest:
# a pillar compile for a load balancer of a hoster decrypts thousands of bundles, each a gpg run.
_plain = {}
PLAIN_CACHE_MAX = 100_000


class SecretError(PapError):
    """A secret that cannot be read, written or decrypted; names the file and the cause."""


def _gpg(gpghome):
    import gnupg  # noqa: PLC0415 -- python-gnupg: only where secrets are handled (the masters)

    if not gpghome:
        raise SecretError("no GPG home given (the master option gpg_keydir)")
    os.makedirs(gpghome, mode=0o700, exist_ok=True)
    return gnupg.GPG(gnupghome=gpghome)


def keydir(opts):
    """The GPG home of a master holding the platform key: its option ``gpg_keydir``."""
    return opts.get("gpg_keydir") or DEFAULT_GPG_KEYDIR


def platform_key(gpghome):
    """The fingerprint of the platform key: the one secret key in ``gpghome``."""
    keys = _gpg(gpghome).list_keys(secret=True)
    if len(keys) != 1:
        raise SecretError(
            f"GPG home {gpghome}: {len(keys)} secret keys, expected exactly one (the platform "
            "key; scripts/provision-second-master copies it, docs/tls.md tells how to make it)"
        )
    return keys[0]["fingerprint"]


def generate_key(gpghome, name=KEY_NAME):
    """Make the platform key pair in ``gpghome`` (ed25519/cv25519, no passphrase) unless one is
    there; return its fingerprint."""
    gpg = _gpg(gpghome)
    if gpg.list_keys(secret=True):
        return platform_key(gpghome)
    params = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        subkey_type="ECDH",
        subkey_curve="cv25519",
        name_real=name,
        name_email="secrets@paphosting.invalid",
        expire_date=0,
        no_protection=True,
    )
    made = gpg.gen_key(params)
    if not made.fingerprint:
        raise SecretError(f"GPG home {gpghome}: key generation failed: {made.stderr.strip()}")
    return made.fingerprint


def export_public(gpghome):
    """The platform public key, ASCII-armored: what an admin imports to encrypt a secret."""
    return _gpg(gpghome).export_keys(platform_key(gpghome))


def copy_plan(source, dest, force=False):
    """How to give the GPG home ``dest`` (the second master's) the platform key of ``source`` (a
    copy of the first master's): ``None`` when it holds it already, else a callable doing it.
    Raises :class:`SecretError` when ``dest`` holds another secret key and ``force`` is not given
    (its secrets would no longer decrypt there)."""
    wanted = platform_key(source)
    present = [k["fingerprint"] for k in _gpg(dest).list_keys(secret=True)]
    if present == [wanted]:
        return None
    others = [f for f in present if f != wanted]
    if others and not force:
        raise SecretError(
            f"GPG home {dest} holds another secret key ({', '.join(others)}): it would be "
            "replaced by the platform key. Use --force to replace it"
        )

    def copy():
        gpg = _gpg(dest)
        for fpr in others:
            gpg.delete_keys(fpr, secret=True, passphrase="", expect_passphrase=False)
            gpg.delete_keys(fpr)
        armored = _gpg(source).export_keys(wanted, secret=True, expect_passphrase=False)
        result = gpg.import_keys(armored)
        if wanted not in (result.fingerprints or []):
            raise SecretError(f"GPG home {dest}: importing the platform key failed")
        gpg.trust_keys([wanted], "TRUST_ULTIMATE")

    return copy


def stop_agent(gpghome):
    """Stop the gpg-agent that decryption started for ``gpghome`` (tests and the lab stop what
    they start)."""
    subprocess.run(
        ["gpgconf", "--homedir", gpghome, "--kill", "gpg-agent"],
        capture_output=True,
        check=False,
        timeout=30,
    )


def encrypt(plaintext, gpghome, recipient=None):
    """``plaintext`` encrypted to ``recipient`` (default: the platform key), ASCII-armored."""
    gpg = _gpg(gpghome)
    result = gpg.encrypt(
        plaintext, recipient or platform_key(gpghome), armor=True, always_trust=True
    )
    if not result.ok:
        raise SecretError(f"GPG home {gpghome}: encryption failed: {result.status}")
    return str(result)


def decrypt(armored, gpghome, where="a secret"):
    """The text of one armored message (``where`` names it in errors)."""
    if ARMOR_BEGIN not in armored:
        raise SecretError(f"{where} is not an ASCII-armored GPG message (plaintext is refused)")
    key = (gpghome, hashlib.sha256(armored.encode()).hexdigest())
    if key in _plain:
        return _plain[key]
    result = _gpg(gpghome).decrypt(armored)
    if not result.ok:
        raise SecretError(
            f"{where}: cannot decrypt with the platform key in {gpghome} ({result.status})"
        )
    text = result.data.decode("utf-8")
    if len(_plain) >= PLAIN_CACHE_MAX:
        _plain.clear()
    _plain[key] = text
    return text


# --- the layout in the pillar tree ------------------------------------------------------------


def _kind(kind):
    if kind not in KINDS:
        raise SecretError(f"unknown kind of secret {kind!r} (known: {', '.join(sorted(KINDS))})")
    return kind


def relpath(kind, name):
    """Where a secret lives in the pillar tree: ``secrets/<kind>/<name>.asc``."""
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise SecretError(f"{name!r} cannot name a secret")
    return f"{SECRETS_DIR}/{_kind(kind)}/{name}{SUFFIX}"


def names(tree, kind):
    """The names of the secrets of ``kind`` in the pillar tree ``tree``, sorted.

    A file under ``secrets/`` that is not ``*.asc`` is refused: a plaintext key must never sit
    there, even by mistake."""
    base = os.path.join(tree, SECRETS_DIR, _kind(kind))
    out = []
    for folder, dirs, found in os.walk(base):
        dirs.sort()
        for fname in sorted(found):
            rel = os.path.relpath(os.path.join(folder, fname), base)
            if not fname.endswith(SUFFIX):
                raise SecretError(
                    f"{SECRETS_DIR}/{kind}/{rel}: not an encrypted secret (*{SUFFIX}); every "
                    f"file under {SECRETS_DIR}/ must be a GPG message to the platform key"
                )
            out.append(rel[: -len(SUFFIX)])
    return sorted(out)


def read(tree, kind, name, gpghome):
    """The decrypted text of one secret (a master's runner: the ACME account key)."""
    rel = relpath(kind, name)
    try:
        with open(os.path.join(tree, rel), encoding="utf-8") as fh:
            armored = fh.read()
    except OSError as exc:
        raise SecretError(f"{rel}: {exc.strerror}") from exc
    return decrypt(armored, gpghome, rel)


def write(tree, kind, name, plaintext, gpghome, recipient=None):
    """Encrypt ``plaintext`` and write it atomically to its place in ``tree``; the relative path.

    The working copy of part B's issuance, or an admin's: commit the file afterwards."""
    rel = relpath(kind, name)
    files.write_checked(os.path.join(tree, rel), encrypt(plaintext, gpghome, recipient), mode=0o644)
    return rel


def kinds_for(roles):
    """The kinds of secret a minion with these platform ``roles`` receives, sorted."""
    return sorted(k for k, role in KINDS.items() if role is not None and role in roles)


def publish(tree, kinds, gpghome):
    """``{kind: {name: text}}`` of every secret of ``kinds`` in ``tree`` (nothing for a kind
    without secrets). Raises :class:`SecretError` naming the file that cannot be read."""
    out = {}
    for kind in kinds:
        found = {n: read(tree, kind, n, gpghome) for n in names(tree, kind)}
        if found:
            out[kind] = found
    return out


def fingerprint(text):
    """What logs, events and ``changes`` show instead of a secret: ``sha256:<hex>`` of the
    leaf certificate when ``text`` holds one, else of the public key of the private key it
    holds (the key's SubjectPublicKeyInfo), else of the text itself. For a certificate it is the
    fingerprint ``openssl x509 -fingerprint -sha256`` prints."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    data = text.encode() if isinstance(text, str) else text
    der = None
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
        except ValueError:
            der = None
    elif b"PRIVATE KEY-----" in data:
        try:
            der = (
                serialization.load_pem_private_key(data, password=None)
                .public_key()
                .public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
        except (ValueError, TypeError):
            der = None
    return "sha256:" + hashlib.sha256(der if der is not None else data).hexdigest()
