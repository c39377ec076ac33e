"""A test certificate authority (``cryptography``): a root, and certificates it signs for the
tests and the lab, so that clients can verify a load balancer's chain against a root of ours.

Not the product: the platform takes its certificates from pillar or from an ACME CA.
"""

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _now():
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ca(subject, issuer, key, signing_key, path_length):
    """A CA certificate of ten years, for ``key``, signed with ``signing_key``."""
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(signing_key, hashes.SHA256())
    )


class Authority:
    """A root CA and one intermediate; :meth:`issue` signs leaf certificates with the
    intermediate. ``root_pem`` is what clients trust."""

    def __init__(self, name="paphosting test CA"):
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root")])
        self.root = _ca(root_name, root_name, self.root_key, self.root_key, path_length=1)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = _ca(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} issuing")]),
            root_name,
            self.key,
            self.root_key,
            path_length=0,
        )
        self.root_pem = _pem(self.root)
        self.intermediate_pem = _pem(self.intermediate)

    def issue(self, names, days=90, not_before=None, key=None):
        """``(chain PEM, key PEM)``: a leaf for ``names`` (DNS names or IP addresses), signed by
        the intermediate, then the intermediate. ``not_before`` (a datetime) backdates it, to
        make an expired one: ``not_before=now - 100 days, days=90``."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        start = not_before or _now() - datetime.timedelta(minutes=5)
        sans = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(self.key, hashes.SHA256())
        )
        return _pem(cert) + self.intermediate_pem, _pem_key(key)

    @staticmethod
    def new_key():
        """A fresh private key, PEM."""
        return _pem_key(ec.generate_private_key(ec.SECP256R1()))
