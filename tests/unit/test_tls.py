"""A service's certificate: the checks before it goes live, the bundle, the plan of a load
balancer's certificates, the HTTPS rendering of haproxy.cfg, the pillar keys, and the push's
refusal of a bad certificate (with the real ``haproxy -c``)."""

import datetime

import pytest

from harness.tlsca import Authority
from paphosting import haproxy, model, pushcheck, secrets, tls
from paphosting.errors import InvalidPillar
from tests.unit import platforms

LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
WWW_NAMES = ["www.paphosting.nl", "paphosting.nl"]
NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def ca():
    return Authority()


@pytest.fixture(scope="module")
def roots(ca):
    return tls.load_roots([ca.root_pem], system=None)


@pytest.fixture(scope="module")
def platform(ca):
    pillar = platforms.pillar(webservers=2, shop=True)
    pillar["tls"] = {"trusted_roots": [ca.root_pem]}
    pillar["services"]["www"]["hsts"] = {"max_age": 63072000, "preload": True}
    return model.parse(pillar)


def www(platform):
    return platform.services["www"]


# --- check ------------------------------------------------------------------------------------


def test_a_good_bundle_passes_and_shows_no_key(platform, ca, roots):
    chain, key = ca.issue(WWW_NAMES)
    cert = tls.check(www(platform), chain + key, roots)
    assert cert.names == tuple(WWW_NAMES)
    assert cert.issuer == "paphosting test CA issuing"
    assert cert.fingerprint == secrets.fingerprint(chain)
    assert cert.bundle == chain + key
    assert "PRIVATE" not in repr(cert) and "PRIVATE" not in cert.summary()
    assert tls.check(www(platform), (chain, key), roots) == cert


def test_a_wildcard_covers_one_label(platform, ca, roots):
    chain, key = ca.issue(["*.paphosting.nl", "paphosting.nl"])
    assert tls.check(www(platform), chain + key, roots).names[0] == "*.paphosting.nl"
    chain, key = ca.issue(["*.nl", "paphosting.nl"])
    with pytest.raises(tls.CertificateError, match="do not cover www.paphosting.nl"):
        tls.check(www(platform), chain + key, roots)


def _expired(ca):
    return ca.issue(WWW_NAMES, days=30, not_before=NOW - datetime.timedelta(days=31))


def _future(ca):
    return ca.issue(WWW_NAMES, not_before=NOW + datetime.timedelta(days=2))


@pytest.mark.parametrize(
    "make,message",
    [
        (
            lambda ca: (ca.issue(WWW_NAMES)[0], Authority.new_key()),
            "does not match the certificate",
        ),
        (_expired, "expired on"),
        (_future, "is not valid before"),
        (lambda ca: ca.issue(["www.paphosting.nl"]), "do not cover paphosting.nl"),
        (
            lambda ca: (lambda c, k: (c.replace(ca.intermediate_pem, ""), k))(*ca.issue(WWW_NAMES)),
            "incomplete chain",
        ),
        (lambda ca: Authority("elsewhere").issue(WWW_NAMES), "is not a trusted root"),
        (
            lambda ca: (lambda c, k: (ca.intermediate_pem + c, k))(*ca.issue(WWW_NAMES)),
            "does not match",
        ),
        (lambda ca: (ca.issue(WWW_NAMES)[0], ""), "no private key"),
        (lambda ca: ("", ca.issue(WWW_NAMES)[1]), "no certificate"),
        (
            lambda ca: (
                ca.issue(WWW_NAMES)[0],
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
            "does not parse",
        ),
    ],
    ids=[
        "key",
        "expired",
        "not-yet",
        "names",
        "chain",
        "foreign",
        "order",
        "nokey",
        "nocert",
        "badkey",
    ],
)
def test_each_bad_bundle_is_refused_naming_service_and_pillar_path(
    platform, ca, roots, make, message
):
    chain, key = make(ca)
    with pytest.raises(tls.CertificateError) as exc:
        tls.check(www(platform), (chain, key), roots)
    text = str(exc.value)
    assert message in text
    assert text.startswith("pillar paphosting_secrets:tls:www (secrets/tls/www.asc): service www: ")
    assert "PRIVATE" not in text and all(
        line not in text for line in key.splitlines()[1:-1] if len(line) > 20
    )


def test_a_broken_chain_order_is_named(platform, ca, roots):
    chain, key = ca.issue(WWW_NAMES)
    other = Authority("other").intermediate_pem
    with pytest.raises(tls.CertificateError, match="broken chain"):
        tls.check(www(platform), (chain.replace(ca.intermediate_pem, other), key), roots)


def test_split_bundle_keeps_order_and_ignores_other_blocks(ca):
    chain, key = ca.issue(WWW_NAMES)
    params = "-----BEGIN DH PARAMETERS-----\nAAAA\n-----END DH PARAMETERS-----\n"
    assert tls.split_bundle(chain + params + key) == (chain, key)
    assert tls.split_bundle(key + chain) == (chain, key)


# --- the plan of a load balancer --------------------------------------------------------------


def test_plan_writes_new_keeps_same_refuses_bad_removes_gone(platform, ca, roots):
    www_b = "".join(ca.issue(WWW_NAMES))
    shop_b = "".join(ca.issue(["shop.paphosting.nl"]))
    p = tls.plan(platform, LB1, {"www": www_b, "shop": shop_b}, {}, roots, "/r")
    assert set(p.updates) == {"shop", "www"} and p.errors == [] and p.removals == {}
    assert p.changes()["www"] == {"old": None, "new": secrets.fingerprint(www_b)}
    assert p.crt_list == (
        "/r/etc/haproxy/certs/shop.pem shop.paphosting.nl\n"
        "/r/etc/haproxy/certs/www.pem www.paphosting.nl paphosting.nl\n"
    )
    # In place: nothing to do; a gone service's bundle is removed.
    p = tls.plan(platform, LB1, {"www": www_b}, {"www": www_b, "old": shop_b}, roots, "/r")
    assert p.updates == {} and p.unchanged == {"www": secrets.fingerprint(www_b)}
    assert p.removals == {"old": secrets.fingerprint(shop_b)}
    # A bad new bundle for a service in place: refused, the one in place stays in the crt-list.
    bad = ca.issue(["nope.paphosting.nl"])
    p = tls.plan(platform, LB1, {"www": "".join(bad)}, {"www": www_b}, roots, "/r")
    assert p.updates == {} and len(p.errors) == 1
    assert "www.pem" in p.crt_list
    assert "the certificate in place is kept" in p.errors_text()
    assert "PRIVATE" not in p.errors_text() + repr(p.changes())


def test_plan_ignores_https_off_and_services_elsewhere(ca, roots):
    pillar = platforms.pillar(webservers=2, shop=True)
    pillar["services"]["shop"]["https"] = "off"
    pillar["tls"] = {"trusted_roots": [ca.root_pem]}
    platform = model.parse(pillar)
    bundles = {"shop": "".join(ca.issue(["shop.paphosting.nl"])), "ghost": "x"}
    p = tls.plan(platform, LB1, bundles, {}, roots)
    assert p.updates == {} and p.errors == [] and p.crt_list == ""


# --- rendering --------------------------------------------------------------------------------


def test_without_certificates_the_config_is_plain_http_as_before(platform):
    text = haproxy.render(platform, LB1)
    assert text == haproxy.render(platform, LB1, certificates=())
    assert "ssl" not in text and "redirect" not in text and "frontend https" not in text


def test_https_frontend_redirect_and_hsts(platform):
    text = haproxy.render(platform, LB1, "/r", certificates=["www", "shop"])
    assert "    bind 127.0.1.1:443 ssl crt-list /r/etc/haproxy/crt-list alpn h2,http/1.1\n" in text
    assert (
        "ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets" in text
    )
    assert (
        "    http-request redirect location https://%[var(txn.host)]%[capture.req.uri] code 301"
        " if host_www !{ path /haproxy-health }\n" in text
    )
    assert (
        '    http-response set-header Strict-Transport-Security "max-age=63072000; preload"'
        " if host_www\n" in text
    )
    https = text.split("frontend https", 1)[1].split("\nfrontend ", 1)[0]
    assert "use_backend shop if host_shop" in https and "monitor-uri /haproxy-health" in https
    assert "Strict-Transport-Security" not in text.split("frontend https")[0]


def test_https_both_has_no_redirect_and_a_port_of_its_own_is_kept(ca):
    pillar = platforms.pillar(webservers=2, shop=True)
    pillar["services"]["www"]["https"] = "both"
    pillar["loadbalancers"][LB2]["https_port"] = 8443
    platform = model.parse(pillar)
    text = haproxy.render(platform, LB2, "/r", certificates=["www", "shop"])
    assert "if host_www !{ path" not in text
    assert "https://%[var(txn.host)]:8443%[capture.req.uri] code 301 if host_shop" in text
    assert "bind 127.0.1.2:8443 ssl" in text


def test_a_service_without_certificate_stays_plain_http(platform):
    text = haproxy.render(platform, LB1, "/r", certificates=["shop"])
    assert "if host_www !{ path" not in text and "if host_shop !{ path" in text
    https = text.split("frontend https", 1)[1]
    assert "use_backend www" not in https.split("\nbackend ")[0]


# --- the pillar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,path,message",
    [
        (
            lambda p: p["services"]["www"].update(https="always"),
            "services:www:https",
            "is not one of",
        ),
        (
            lambda p: p["services"]["www"].update(hsts="1y"),
            "services:www:hsts",
            "must be a mapping",
        ),
        (
            lambda p: p["services"]["www"].update(hsts={"max_age": 60, "preload": True}),
            "services:www:hsts:max_age",
            "preload needs",
        ),
        (
            lambda p: p["services"]["www"].update(https="off", hsts=60),
            "services:www:hsts",
            "needs HTTPS",
        ),
        (
            lambda p: p["loadbalancers"][LB1].update(https_port=8080),
            f"loadbalancers:{LB1}:https_port",
            "already the http_port",
        ),
        (
            lambda p: p.update(tls={"trusted_roots": ["not a certificate"]}),
            "tls:trusted_roots:0",
            "one PEM certificate",
        ),
        # Shaped like PEM but no certificate: the push and the load balancers' state raised
        # a ValueError from cryptography when they loaded the roots.
        (
            lambda p: p.update(
                tls={
                    "trusted_roots": [
                        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
                    ]
                }
            ),
            "tls:trusted_roots:0",
            "is not a PEM certificate that loads",
        ),
        (lambda p: p.update(tls={"roots": []}), "tls:roots", "unknown key"),
    ],
)
def test_bad_tls_pillar_values_name_their_path(change, path, message):
    pillar = platforms.pillar(webservers=2, shop=True)
    change(pillar)
    with pytest.raises(InvalidPillar) as exc:
        model.parse(pillar)
    assert any(
        e.path == ("paphosting", *path.split(":")) and message in e.reason for e in exc.value.errors
    ), exc.value


def test_tls_defaults():
    platform = model.parse(platforms.pillar(webservers=2, shop=True))
    assert platform.services["www"].https == "redirect" and platform.services["www"].hsts is None
    assert platform.loadbalancers[LB1].https_port == 443
    assert platform.tls == {"trusted_roots": ()}


# --- the push refuses a bad certificate -------------------------------------------------------


def _validate(pillar, bundles, number=20):
    compiled = {
        m: pushcheck.Compiled(m, {"paphosting": pillar, secrets.PILLAR_KEY: {"tls": bundles}})
        for m in (LB1, LB2)
    }
    sources = {"pillar/paphosting.sls": {"paphosting": pillar}}
    return pushcheck.validate(number, compiled, sources, "pillar", ["paphosting.sls"])


def test_push_checks_every_certificate_with_haproxy(ca):
    pillar = platforms.pillar(webservers=2, shop=True)
    pillar["tls"] = {"trusted_roots": [ca.root_pem]}
    good = {"www": "".join(ca.issue(WWW_NAMES)), "shop": "".join(ca.issue(["shop.paphosting.nl"]))}
    done = _validate(pillar, good)
    assert (
        f"certificate www ({LB1})" in done.checked and f"certificate shop ({LB2})" in done.checked
    )

    bad = dict(good, shop=ca.issue(["shop.paphosting.nl"])[0] + Authority.new_key())
    with pytest.raises(pushcheck.Rejected) as exc:
        _validate(pillar, bad)
    (problem,) = exc.value.problems
    assert problem.files == ("pillar/secrets/tls/shop.asc",)
    assert problem.path == "paphosting_secrets:tls:shop"
    assert "service shop: the private key" in problem.message
    assert "PRIVATE" not in str(problem)


def test_an_ipv6_address_gets_its_https_bind_too(ca):
    pillar = platforms.pillar(webservers=2, shop=True)
    pillar["loadbalancers"][LB1]["address6"] = "2001:db8::1"
    text = haproxy.render(model.parse(pillar), LB1, "/r", certificates=["www"])
    assert (
        "    bind [2001:db8::1]:443 v6only ssl crt-list /r/etc/haproxy/crt-list alpn h2,http/1.1\n"
        in text
    )
