"""Certificates from an ACME CA (RFC 8555) through DNS-01, with certbot's ``acme`` library.

No Salt here: :func:`issue` takes the CA's directory, the account key and the names, and two
callables that publish and withdraw the challenge TXT records (the ``tls`` runner sends them to
every nameserver and waits until each one serves them). Keys are ECDSA P-256.
"""

import contextlib
import datetime

import josepy as jose
from acme import challenges as acme_challenges
from acme import client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from paphosting import challenges
from paphosting.errors import PapError

USER_AGENT = "paphosting-salt"


class CaError(PapError):
    """The CA could not be reached, refused a request, or a challenge failed."""


def new_key():
    """A new ECDSA P-256 private key, as PKCS#8 PEM text."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _load_key(pem):
    return serialization.load_pem_private_key(pem.encode(), password=None)


@contextlib.contextmanager
def _talking(directory, refused):
    """Turn what the CA or the network raises into a :class:`CaError`: ``refused`` says what the
    CA refused; our own errors (a nameserver that does not serve the records) pass through."""
    try:
        yield
    except PapError:
        raise
    except errors.ValidationError as exc:
        raise CaError(f"the CA could not validate: {exc}") from None
    except errors.TimeoutError as exc:
        raise CaError(f"the CA did not finish in time: {exc}") from None
    except (errors.Error, messages.Error) as exc:
        raise CaError(f"{refused}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - requests' connection errors and the like
        raise CaError(f"the ACME CA at {directory} cannot be reached: {exc}") from None


class Ca:
    """One ACME CA, spoken to with one account key (registered on first use, found again after).

    directory
        The directory URL.
    account_key
        The account's private key, PEM (:func:`new_key`).
    email
        The account's contact, or None.
    ca_bundle
        A CA file to verify the directory's own HTTPS with (a test CA); None: the system's.
    timeout
        Seconds per HTTP request.
    """

    def __init__(self, directory, account_key, email=None, ca_bundle=None, timeout=30):
        self.directory_url = directory
        self.jwk = jose.JWKEC(key=_load_key(account_key))
        self.email = email
        net = client.ClientNetwork(
            self.jwk,
            alg=jose.ES256,
            verify_ssl=ca_bundle or True,
            user_agent=USER_AGENT,
            timeout=timeout,
        )
        with _talking(directory, f"the ACME CA at {directory} cannot be used"):
            self.client = client.ClientV2(client.ClientV2.get_directory(directory, net), net)
            self._register()

    def _register(self):
        new = messages.NewRegistration.from_data(email=self.email, terms_of_service_agreed=True)
        try:
            self.client.new_account(new)
        except errors.ConflictError as exc:
            # The key is registered already: carry on with that account.
            regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            self.client.net.account = regr
            self.client.net.account = self.client.query_registration(regr)

    def issue(self, names, key, publish, withdraw, timeout=120):
        """A certificate for ``names`` (the first is the subject) with private key ``key`` (PEM).

        ``publish({owner fqdn: [TXT values]})`` must return only once every nameserver serves
        the records; ``withdraw()`` is called afterwards whatever happened. Returns the full
        chain, PEM. Raises :class:`CaError` naming the name and the CA's reason.
        """
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
        csr = crypto_util.make_csr(key.encode(), list(names))
        with _talking(self.directory_url, f"the CA refused the order for {', '.join(names)}"):
            order = self.client.new_order(csr)
            records, answers = {}, []
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue  # the CA reuses a recent validation
                chall = next(
                    (
                        c
                        for c in authz.body.challenges
                        if isinstance(c.chall, acme_challenges.DNS01)
                    ),
                    None,
                )
                name = authz.body.identifier.value
                if chall is None:
                    raise CaError(f"the CA offers no dns-01 challenge for {name}")
                owner = challenges.owner_of(name)
                records.setdefault(owner, []).append(chall.chall.validation(self.jwk))
                answers.append(chall)
        try:
            with _talking(self.directory_url, "the CA refused"):
                if records:
                    publish(records)
                for chall in answers:
                    self.client.answer_challenge(chall, chall.chall.response(self.jwk))
                order = self.client.poll_and_finalize(order, deadline)
        finally:
            if records:
                withdraw()
        return order.fullchain_pem
