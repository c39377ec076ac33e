"""A service's certificate: the PEM bundle, and the checks it passes before it goes live.

A service's certificate and private key travel as one PEM **bundle**: the certificate chain, leaf
first, then the intermediates, then the private key: the file haproxy loads, and the secret
``secrets/tls/<service>.asc`` (:mod:`paphosting.secrets`) holds, encrypted.

:func:`check` is what every certificate passes before it goes live, whoever made it (an admin in
pillar, or the ACME issuance): the key matches the leaf, the chain is complete up to a trusted
root, the leaf's names cover every hostname of the service, and it is valid now. It raises
:class:`CertificateError`, which names the service and the pillar path. ``haproxy -c`` with the
bundle is :func:`paphosting.haproxy.check_certificate`.
"""

import datetime
import os
import warnings
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from paphosting import haproxy, secrets
from paphosting.errors import PillarError

KIND = "tls"
# Debian's bundle of the roots every client trusts (package ca-certificates).
SYSTEM_ROOTS = "/etc/ssl/certs/ca-certificates.crt"
_BEGIN_CERT = "-----BEGIN CERTIFICATE-----"
_END_CERT = "-----END CERTIFICATE-----"


class CertificateError(PillarError):
    """A certificate that must not go live: names the service, the pillar path and why."""

    def __init__(self, service, reason):
        self.service = service
        super().__init__(pillar_path(service), f"service {service}: {reason}")


def pillar_path(service):
    """Where a service's bundle is in the pillar: ``paphosting_secrets:tls:<service>``, from the
    file ``secrets/tls/<service>.asc`` of the pillar tree."""
    return (secrets.PILLAR_KEY, KIND, f"{service} ({secrets.relpath(KIND, service)})")


@dataclass(frozen=True)
class Certificate:
    """What may be shown of a checked bundle (never the key)."""

    service: str
    names: tuple
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    fingerprint: str  # sha256 of the leaf (as ``openssl x509 -fingerprint -sha256``)
    sha1: str  # the leaf's SHA-1 fingerprint, upper-case hex: haproxy's ``show ssl cert`` shows it
    key: str  # the key's public fingerprint (secrets.fingerprint)
    chain: str = field(repr=False)  # the certificates, PEM, leaf first
    private_key: str = field(repr=False)  # the key, PEM: for the bundle file only, never shown

    @property
    def bundle(self):
        """The PEM file haproxy loads: the chain, then the key."""
        return self.chain + self.private_key

    def summary(self):
        """A line for a state comment, a log or an event."""
        return (
            f"{self.fingerprint} ({', '.join(self.names)}; issuer {self.issuer}; "
            f"not after {self.not_after:%Y-%m-%d %H:%M}Z)"
        )


def split_bundle(text):
    """``(chain PEM, key PEM)`` of a bundle: the certificates in their order, and the key."""
    chain, key = [], []
    block, inside = [], None
    for line in str(text).splitlines():
        if line.startswith("-----BEGIN "):
            inside = "cert" if line == _BEGIN_CERT else "key" if "PRIVATE KEY" in line else "x"
            block = [line]
        elif inside is not None:
            block.append(line)
            if line.startswith("-----END "):
                target = {"cert": chain, "key": key}.get(inside)
                if target is not None:
                    target.append("\n".join(block) + "\n")
                inside = None
    return "".join(chain), "".join(key)


def _name(cert_name):
    cns = cert_name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert_name.rfc4514_string()


def _covers(pattern, host):
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return False


def load_roots(extra=(), system=SYSTEM_ROOTS):
    """The trusted roots: the system's bundle (when readable) and ``extra`` PEM certificates
    (``paphosting:tls:trusted_roots``)."""
    roots = []
    if system and os.path.exists(system):
        with open(system, "rb") as fh, warnings.catch_warnings():
            # A few long-trusted roots have non-positive serials, which cryptography warns about.
            warnings.simplefilter("ignore")
            roots += x509.load_pem_x509_certificates(fh.read())
    for pem in extra:
        roots += x509.load_pem_x509_certificates(pem.encode())
    return roots


def _issued_by(cert, issuer):
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def check(service, bundle, roots, now=None):
    """Check the bundle of ``service`` (a :class:`paphosting.model.Service`); its
    :class:`Certificate`.

    bundle
        The PEM bundle: certificates, leaf first, then the private key (:func:`split_bundle`);
        or a ``(chain PEM, key PEM)`` pair.
    roots
        The trusted root certificates (:func:`load_roots`): the chain must end at one.
    now
        The time to check validity at (default: now, UTC).

    Raises :class:`CertificateError` (naming the service and the pillar path) when the key does
    not match the leaf, the chain is incomplete or broken, a hostname of the service is not
    covered, or a certificate of the chain is expired or not yet valid.
    """
    name = service.name
    chain_pem, key_pem = bundle if isinstance(bundle, tuple) else split_bundle(bundle)
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem else []
    except ValueError as exc:
        raise CertificateError(name, f"the certificate does not parse: {exc}") from None
    if not chain:
        raise CertificateError(name, "no certificate (the bundle is the chain, then the key)")
    if not key_pem:
        raise CertificateError(name, "no private key (the bundle is the chain, then the key)")
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        # Never the exception's text: it may quote the key.
        raise CertificateError(
            name, "the private key does not parse (or has a passphrase)"
        ) from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != leaf.public_key().public_bytes(der, spki):
        raise CertificateError(
            name,
            f"the private key ({secrets.fingerprint(key_pem)}) does not match the certificate "
            f"{secrets.fingerprint(chain_pem)}",
        )
    for cert, issuer in zip(chain, chain[1:], strict=False):
        if not _issued_by(cert, issuer):
            raise CertificateError(
                name,
                f"broken chain: {_name(cert.subject)!r} is not issued by the next certificate "
                f"{_name(issuer.subject)!r} (order: leaf first, then each issuer)",
            )
    top = chain[-1]
    trusted = any(top.public_bytes(der) == r.public_bytes(der) or _issued_by(top, r) for r in roots)
    if not trusted:
        raise CertificateError(
            name,
            f"incomplete chain: the issuer {_name(top.issuer)!r} of {_name(top.subject)!r} is "
            "not a trusted root (append the intermediate certificates after the leaf; a private "
            "CA's root goes in paphosting:tls:trusted_roots)",
        )
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    missing = [h for h in service.hostnames if not any(_covers(p, h) for p in names)]
    if missing:
        raise CertificateError(
            name,
            f"the certificate's names ({', '.join(names) or 'none'}) do not cover "
            f"{', '.join(missing)}",
        )
    when = now or datetime.datetime.now(datetime.UTC)
    for cert in chain:
        if when >= cert.not_valid_after_utc:
            raise CertificateError(
                name,
                f"{_name(cert.subject)!r} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z",
            )
        if when < cert.not_valid_before_utc:
            raise CertificateError(
                name,
                f"{_name(cert.subject)!r} is not valid before "
                f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z",
            )
    return Certificate(
        service=name,
        names=names,
        issuer=_name(leaf.issuer),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint=secrets.fingerprint(chain_pem),
        sha1=leaf.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 -- haproxy shows SHA-1
        key=secrets.fingerprint(key_pem),
        chain="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain),
        private_key=key_pem if key_pem.endswith("\n") else key_pem + "\n",
    )


def wanted(platform, lb_name, published):
    """``{service: bundle}``: the bundles load balancer ``lb_name`` serves: those of
    ``published`` (its ``paphosting_secrets:tls``) for the services it carries with ``https``
    not ``off``. A bundle for an unknown service is ignored (it may be on its way out)."""
    published = published or {}
    return {
        svc.name: published[svc.name]
        for svc in haproxy.services_of(platform, lb_name)
        if svc.https != "off" and svc.name in published
    }


@dataclass
class Plan:
    """What a load balancer's certificates need (:func:`plan`); no key material is shown by
    :meth:`changes` or :meth:`errors_text`."""

    updates: dict  # service -> Certificate to write (new or changed), checked
    removals: dict  # service -> fingerprint of the bundle to remove
    unchanged: dict  # service -> fingerprint of the bundle in place
    errors: list  # CertificateError, one per refused bundle (the one in place is kept)
    crt_list: str  # the crt-list of the bundles that will be in place
    deployed: dict = field(repr=False)  # service -> bundle in place

    def changes(self):
        """``{service: {"old": fingerprint or None, "new": fingerprint or None}}``."""
        out = {
            svc: {
                "old": secrets.fingerprint(self.deployed[svc]) if svc in self.deployed else None,
                "new": cert.fingerprint,
            }
            for svc, cert in self.updates.items()
        }
        out.update({svc: {"old": fp, "new": None} for svc, fp in self.removals.items()})
        return dict(sorted(out.items()))

    def errors_text(self):
        return "\n".join(
            f"{e} (the certificate in place is kept)"
            if e.service in self.deployed
            else f"{e} (not deployed; served over plain HTTP until fixed)"
            for e in self.errors
        )


def plan(platform, lb_name, published, deployed, roots, root="/", now=None):
    """Compare the bundles ``lb_name`` should serve with those in place.

    published
        ``paphosting_secrets:tls`` of the load balancer's pillar: ``{service: bundle}``.
    deployed
        ``{service: bundle}`` of the files in place (``certs_dir``).
    roots
        The trusted roots (:func:`load_roots`), or a function returning them: called only when
        a bundle is to be checked (a no-change run reads no trust store).

    Only a bundle that would be written is checked (:func:`check`): one in place was checked
    when it went in. A refused bundle never replaces the one in place.
    """
    want = wanted(platform, lb_name, published)
    updates, unchanged, errors = {}, {}, []
    trusted = None
    for svc, bundle in sorted(want.items()):
        current = deployed.get(svc)
        chain, key = split_bundle(bundle)
        if current is not None and split_bundle(current) == (chain, key):
            unchanged[svc] = secrets.fingerprint(current)
            continue
        if trusted is None:
            trusted = roots() if callable(roots) else roots
        try:
            updates[svc] = check(platform.services[svc], (chain, key), trusted, now)
        except CertificateError as exc:
            errors.append(exc)
    removals = {
        svc: secrets.fingerprint(text) for svc, text in sorted(deployed.items()) if svc not in want
    }
    in_place = set(updates) | set(unchanged) | {e.service for e in errors if e.service in deployed}
    return Plan(
        updates=updates,
        removals=removals,
        unchanged=unchanged,
        errors=errors,
        crt_list=haproxy.render_crt_list(platform, lb_name, in_place, root),
        deployed=dict(deployed),
    )


def describe(bundle):
    """What may be shown of a bundle in place (no check): ``{"fingerprint", "sha1", "names",
    "issuer", "not_after"}``."""
    chain, _ = split_bundle(bundle)
    try:
        leaf = x509.load_pem_x509_certificates(chain.encode())[0]
    except (ValueError, IndexError):
        return {"fingerprint": secrets.fingerprint(bundle), "error": "no certificate"}
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = sans.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return {
        "fingerprint": secrets.fingerprint(chain),
        "sha1": leaf.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
        "names": list(names),
        "issuer": _name(leaf.issuer),
        "not_after": f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
    }
