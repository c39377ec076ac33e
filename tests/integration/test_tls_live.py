"""HTTPS on two real haproxy load balancers, configured and given their certificates through
Salt's loaders (the ``loadbalancer`` SLS), in front of real webapps.

The pillar holds ``paphosting_secrets:tls`` as the ``secrets`` ext_pillar publishes it (the
bundles, decrypted; that path is tested with a real master in test_secrets_live.py). Clients are
Python's ``ssl`` (SNI, verifying against a test CA made here, ALPN) and curl (HTTP/2).
Addresses: 127.0.13.0/24, ports the kernel hands out.
"""

import datetime
import itertools
import json
import pathlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

import pytest
import yaml

from harness import services
from harness.client import Client, http_get, tls_context
from harness.saltenv import file_root
from harness.tlsca import Authority
from harness.wait import wait_until
from paphosting import haproxy as hap
from paphosting import secrets, tls
from tests.conftest import Loopback, require_binary
from tests.integration.conftest import masterless

WWW, SHOP, LEGACY = "www.example.test", "shop.example.test", "legacy.example.test"
WEB1, WEB2 = "web1.test", "web2.test"


class Net13:
    """Addresses of this module's own: 127.0.13.0/24 (the brief's range for the TLS work)."""

    def __init__(self, first=10):
        self.count = itertools.count(first)

    def address(self):
        return f"127.0.13.{next(self.count)}"

    port = staticmethod(Loopback.port)


class TlsLab:
    """Two load balancers, three webapps, a test CA; ``close()`` stops every process."""

    def __init__(self, salt_factories, tmp, ca):
        require_binary("haproxy")
        require_binary("curl")
        net = Net13()
        pillar = services.platform_pillar(net, lbs=2, webservers=3, failback="auto")
        for lb in pillar["loadbalancers"].values():
            lb["https_port"] = net.port(lb["address"])
        pillar["services"]["www"]["hsts"] = {"max_age": 31536000, "include_subdomains": True}
        pillar["services"]["legacy"] = {
            "type": "stateless",
            "hostnames": [LEGACY],
            "https": "off",
            "check": pillar["services"]["www"]["check"],
            "servers": pillar["services"]["www"]["servers"][2:],
        }
        pillar["tls"] = {"trusted_roots": [ca.root_pem]}
        self.pillar = pillar
        self.ca = ca
        self.bundles = {
            "www": "".join(ca.issue([WWW])),
            "shop": "".join(ca.issue([SHOP])),
            # A certificate for a service with https: off is never deployed.
            "legacy": "".join(ca.issue([LEGACY])),
        }
        self.names = list(pillar["loadbalancers"])
        self.pillar_dir = tmp / "pillar"
        self.pillar_dir.mkdir(parents=True)
        (self.pillar_dir / "top.sls").write_text("base:\n  '*':\n    - paphosting\n")
        self.write()
        files = file_root(tmp / "file_root")
        self.short = pathlib.Path(tempfile.mkdtemp(prefix="tls-", dir="/tmp"))
        self.roots, self.loaders = {}, {}
        for i, name in enumerate(self.names, 1):
            root = self.short / f"lb{i}"
            root.mkdir()
            self.roots[name] = str(root)
            self.loaders[name] = masterless(
                salt_factories, f"tls-{name}", self.pillar_dir, files, root, id=name
            )
        self.apps = services.webapps_of(pillar, tmp / "webapps")

    def write(self):
        data = {"paphosting": self.pillar, secrets.PILLAR_KEY: {"tls": dict(self.bundles)}}
        (self.pillar_dir / "paphosting.sls").write_text(yaml.safe_dump(data))

    def set_bundle(self, service, bundle):
        self.bundles[service] = bundle
        self.write()
        for loaders in self.loaders.values():
            loaders.reload_all()

    def apply(self, name, test=False):
        """``state.sls loadbalancer``: its results, by state id."""
        return self.loaders[name].modules.state.sls("loadbalancer", test=test)

    def address(self, name, scheme="https"):
        lb = self.pillar["loadbalancers"][name]
        return lb["address"], lb["https_port" if scheme == "https" else "http_port"]

    def get(self, name, host, path="/", client=None, ctx=None):
        return http_get(*self.address(name), path, host, cookies=client, tls=ctx or self.ctx())

    def ctx(self, alpn=("http/1.1",)):
        return tls_context(self.ca.root_pem, alpn)

    def served(self, name, service):
        root = self.roots[name]
        return hap.loaded_certificate(
            hap.layout(root)["admin_socket"], hap.certificate_path(root, service)
        )

    def close(self):
        for root in self.roots.values():
            hap.stop(root)
        for app in self.apps.values():
            app.stop()
        for loaders in self.loaders.values():
            loaders.reset_state()
        shutil.rmtree(self.short, ignore_errors=True)


@pytest.fixture(scope="module")
def ca():
    return Authority()


@pytest.fixture(scope="module")
def lab(salt_factories, tmp_path_factory, ca):
    made = TlsLab(salt_factories, tmp_path_factory.mktemp("tls"), ca)
    try:
        for name in made.names:
            ret = made.loaders[name].modules.state.sls("loadbalancer")
            assert not ret.failed and all(r.result is True for r in ret), [
                (r.name, r.comment) for r in ret
            ]
        yield made
    finally:
        made.close()


def sha1_of(bundle):
    return tls.describe(bundle)["sha1"]


def no_key_material(text, *bundles):
    keys = [tls.split_bundle(b)[1] for b in bundles]
    bodies = [line for k in keys for line in k.splitlines()[1:-1] if len(line) > 20]
    return "PRIVATE KEY" not in text and not any(b in text for b in bodies)


# --- serving ----------------------------------------------------------------------------------


def test_both_load_balancers_serve_each_service_its_certificate_verified(lab):
    for name in lab.names:
        for svc, host in (("www", WWW), ("shop", SHOP)):
            r = lab.get(name, host)
            assert r.status == 200 and r.server in (WEB1, WEB2, "web3.test"), r
            assert r.tls["version"] in ("TLSv1.2", "TLSv1.3")
            assert tls.describe(ssl.DER_cert_to_PEM_cert(r.tls["peer"]))["sha1"] == sha1_of(
                lab.bundles[svc]
            )
            assert lab.served(name, svc) == sha1_of(lab.bundles[svc])
        # https: off: no certificate deployed, no HTTPS route.
        assert not pathlib.Path(hap.certificate_path(lab.roots[name], "legacy")).exists()


def test_http2_is_negotiated(lab):
    for name in lab.names:
        address, port = lab.address(name)
        ctx = lab.ctx(alpn=("h2", "http/1.1"))
        with (
            socket.create_connection((address, port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=WWW) as conn,
        ):
            assert conn.selected_alpn_protocol() == "h2"
        ca = pathlib.Path(lab.short / "ca.pem")
        ca.write_text(lab.ca.root_pem)
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "--http2",
                "--cacert",
                str(ca),
                "--resolve",
                f"{SHOP}:{port}:{address}",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                f"https://{SHOP}:{port}/",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert out.stdout == "2 200", out.stderr


def test_only_intermediate_protocols_and_ciphers(lab):
    address, port = lab.address(lab.names[0])
    old = lab.ctx()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    assert lab.get(lab.names[0], WWW, ctx=old).tls["version"] == "TLSv1.2"
    cbc = lab.ctx()
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # CBC with SHA-1: not in "intermediate"
    with pytest.raises(ssl.SSLError):
        lab.get(lab.names[0], WWW, ctx=cbc)
    # A client that offers TLS 1.1 at most (allowed on this side: security level 0) is refused
    # by the server: its alert says the protocol version, not that the client had none to offer.
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname, legacy.verify_mode = False, ssl.CERT_NONE
    legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    legacy.minimum_version = ssl.TLSVersion.TLSv1
    legacy.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError, match="(?i)alert protocol version"):
        lab.get(lab.names[0], WWW, ctx=legacy)


def test_plain_http_redirects_except_health_and_https_off(lab):
    for name in lab.names:
        address, port = lab.address(name, "http")
        _, https_port = lab.address(name)
        r = http_get(address, port, "/a/b?x=1", WWW)
        assert r.status == 301
        assert r.headers["Location"] == f"https://{WWW}:{https_port}/a/b?x=1"
        health = lab.pillar.get("haproxy", {}).get("health_path", "/haproxy-health")
        assert http_get(address, port, health, WWW).status == 200
        legacy = http_get(address, port, "/", LEGACY)
        assert legacy.status == 200 and legacy.server == "web3.test"
        # https: off: no certificate of its own, and no HTTPS route even past the name check.
        blind = lab.ctx()
        blind.check_hostname = False
        blind.verify_mode = ssl.CERT_NONE
        assert lab.get(name, LEGACY, ctx=blind).status == 503


def test_hsts_only_where_asked_and_only_over_https(lab):
    name = lab.names[0]
    assert (
        lab.get(name, WWW).headers["Strict-Transport-Security"]
        == "max-age=31536000; includeSubDomains"
    )
    assert "Strict-Transport-Security" not in lab.get(name, SHOP).headers
    address, port = lab.address(name, "http")
    assert "Strict-Transport-Security" not in http_get(address, port, "/", LEGACY).headers


def test_stateful_cookie_sticks_over_https_across_both_load_balancers(lab):
    lb1, lb2 = lab.names
    client = Client()
    first = lab.get(lb1, SHOP, client=client)
    assert (first.server, first.json()["count"]) == (WEB1, 1)
    assert client.cookies["PAPSRV"] == "shop-web1_test"
    second = lab.get(lb2, SHOP, client=client)
    assert (second.server, second.json()["count"]) == (WEB1, 2)
    # The backup's cookie holds on either load balancer while the primary is down.
    lab.apps[WEB1].kill()
    try:
        for name in (lb1, lb2):
            services.Haproxy(lab.roots[name]).wait_server("shop", WEB1, "DOWN")
        moved = lab.get(lb2, SHOP, client=client)
        assert moved.server == WEB2 and client.cookies["PAPSRV"] == "shop-web2_test"
        assert lab.get(lb1, SHOP, client=client).server == WEB2
    finally:
        lab.apps[WEB1].start()
        for name in (lb1, lb2):
            services.Haproxy(lab.roots[name]).wait_server("shop", WEB1, "UP")


# --- deploying --------------------------------------------------------------------------------


def test_a_second_apply_changes_nothing(lab):
    for name in lab.names:
        ret = lab.apply(name)
        assert all(r.result is True and not r.changes for r in ret), [
            (r.changes, r.comment) for r in ret
        ]


class Handshakes:
    """Clients opening a new TLS connection per request to every load balancer, in threads."""

    def __init__(self, lab, host):
        self.lab, self.host = lab, host
        self.ok, self.failures, self.sha1s = 0, [], set()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in lab.names * 2
        ]

    def _run(self, name):
        ctx = self.lab.ctx()
        while not self.stop.is_set():
            try:
                r = self.lab.get(name, self.host, ctx=ctx)
                assert r.status == 200, r
                self.sha1s.add(tls.describe(ssl.DER_cert_to_PEM_cert(r.tls["peer"]))["sha1"])
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 -- any failure is a failed handshake/request
                self.failures.append(repr(exc))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_a_renewed_certificate_is_swapped_under_load_without_a_reload_or_a_failure(lab):
    old = lab.bundles["www"]
    new = "".join(lab.ca.issue([WWW]))
    workers = {n: services.Haproxy(lab.roots[n]).workers() for n in lab.names}
    with Handshakes(lab, WWW) as load:
        wait_until(lambda: load.ok > 20, 20, message="handshakes before the swap")
        lab.set_bundle("www", new)
        for name in lab.names:
            ret = lab.apply(name)
            certs = ret["loadbalancer-tls-certificates"]
            assert certs.result is True, certs.comment
            assert certs.changes == {
                "certificates": {
                    "www": {"old": secrets.fingerprint(old), "new": secrets.fingerprint(new)}
                }
            }
            assert "swapped in the running haproxy (runtime API)" in certs.comment
            assert not ret["loadbalancer-haproxy-config"].changes
            text = json.dumps([[r.changes, r.comment] for r in ret])
            assert no_key_material(text, old, new)
        seen = load.ok
        wait_until(lambda: load.ok > seen + 20, 20, message="handshakes after the swap")
    assert load.failures == []
    assert sha1_of(new) in load.sha1s and sha1_of(old) in load.sha1s
    for name in lab.names:
        assert lab.served(name, "www") == sha1_of(new)
        assert services.Haproxy(lab.roots[name]).workers() == workers[name]  # no reload
        path = pathlib.Path(hap.certificate_path(lab.roots[name], "www"))
        assert path.read_text() == new and path.stat().st_mode & 0o777 == 0o600


def expired(ca):
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=100)
    return "".join(ca.issue([WWW], days=90, not_before=start))


@pytest.mark.parametrize(
    "case,bad,message",
    [
        ("key mismatch", lambda ca: ca.issue([WWW])[0] + Authority.new_key(), "does not match"),
        ("expired", expired, "expired on"),
        ("names", lambda ca: "".join(ca.issue(["other.example.test"])), "do not cover"),
        (
            "incomplete chain",
            lambda ca: (lambda c, k: c.split(ca.intermediate_pem)[0] + k)(*ca.issue([WWW])),
            "incomplete chain",
        ),
        ("foreign CA", lambda ca: "".join(Authority("other").issue([WWW])), "not a trusted root"),
    ],
)
def test_a_bad_certificate_is_refused_and_the_running_one_kept(lab, case, bad, message):
    name = lab.names[0]
    good = lab.bundles["www"]
    path = pathlib.Path(hap.certificate_path(lab.roots[name], "www"))
    config = pathlib.Path(hap.layout(lab.roots[name])["config"]).read_text()
    text = bad(lab.ca)
    lab.set_bundle("www", text)
    try:
        for test in (True, False):
            ret = lab.apply(name, test=test)
            certs = ret["loadbalancer-tls-certificates"]
            assert certs.result is False
            assert message in certs.comment
            assert "service www" in certs.comment
            assert "paphosting_secrets:tls:www (secrets/tls/www.asc)" in certs.comment
            assert "the certificate in place is kept" in certs.comment
            config_state = ret["loadbalancer-haproxy-config"]
            assert config_state.result is True and not config_state.changes
            assert no_key_material(json.dumps([certs.changes, certs.comment]), text, good)
        assert path.read_text() == good
        assert lab.served(name, "www") == sha1_of(good)
        assert pathlib.Path(hap.layout(lab.roots[name])["config"]).read_text() == config
        assert lab.get(name, WWW).status == 200
    finally:
        lab.set_bundle("www", good)
    assert lab.apply(name)["loadbalancer-tls-certificates"].changes == {}


def test_test_mode_predicts_a_change_and_writes_nothing(lab):
    name = lab.names[1]
    good = lab.bundles["shop"]
    new = "".join(lab.ca.issue([SHOP]))
    lab.set_bundle("shop", new)
    try:
        certs = lab.apply(name, test=True)["loadbalancer-tls-certificates"]
        assert certs.result is None
        assert certs.changes["certificates"]["shop"]["new"] == secrets.fingerprint(new)
        assert lab.served(name, "shop") == sha1_of(good)
        assert pathlib.Path(hap.certificate_path(lab.roots[name], "shop")).read_text() == good
    finally:
        lab.set_bundle("shop", good)


def test_a_refused_first_certificate_leaves_its_service_on_plain_http(lab):
    """A new service's bad certificate: nothing in place, no redirect, other changes go out."""
    name = lab.names[0]
    address, port = lab.address(name, "http")
    lab.pillar["services"]["legacy"]["https"] = "redirect"
    lab.set_bundle("legacy", "".join(lab.ca.issue(["elsewhere.example.test"])))
    try:
        ret = lab.apply(name)
        certs = ret["loadbalancer-tls-certificates"]
        assert certs.result is False and "service legacy" in certs.comment
        assert ret["loadbalancer-haproxy-config"].result is True
        assert not pathlib.Path(hap.certificate_path(lab.roots[name], "legacy")).exists()
        legacy = http_get(address, port, "/", LEGACY)
        assert legacy.status == 200 and legacy.server == "web3.test"
        assert http_get(address, port, "/", WWW).status == 301
    finally:
        lab.pillar["services"]["legacy"]["https"] = "off"
        lab.set_bundle("legacy", "".join(lab.ca.issue([LEGACY])))
    assert all(r.result is True for r in lab.apply(name))
