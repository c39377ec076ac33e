"""DNSSEC keys end to end: made on a real master, committed encrypted to Subversion, pushed,
published by the ``secrets`` ext_pillar to the nameserver only, and signing its zone.

One svnserve on 127.0.0.1, one master in the production configuration (svnpillar, the secrets
ext_pillar, a platform GPG key in its ``gpg_keydir``), and two minions of the example platform:
the NSD nameserver ns2 and the load balancer lb1 (which must never see a DNSSEC key).
"""

import re
import subprocess

import dns.message
import dns.query
import dns.rdatatype
import pytest
import yaml

from harness.svn import SHORT, master_options, served
from paphosting import daemon, dnssec, dnsserver, haproxy, model, secrets
from tests.integration.conftest import example_on_loopback

NS, LB = "ns2.paphosting.net", "lb1.paphosting.net"
ZONE = "paphosting.nl"
TOP = "base:\n  '*':\n    - paphosting\n"


@pytest.fixture(scope="module")
def platform(loopback):
    pillar = example_on_loopback(loopback)
    pillar["zones"][ZONE]["dnssec"] = True
    return pillar


@pytest.fixture(scope="module")
def fleet(salt_platform, platform, gpghome, tmp_path_factory, loopback):
    with served(tmp_path_factory.mktemp("svn"), loopback.port("127.0.0.1")) as svn_server:
        overrides = master_options(tmp_path_factory.mktemp("store"), svn_server, **SHORT)
        overrides["gpg_keydir"] = gpghome
        with salt_platform([NS, LB], platform, master_overrides=overrides) as fleet:
            fleet.svn = svn_server
            try:
                svn_server.commit(
                    {
                        "pillar/top.sls": TOP,
                        "pillar/paphosting.sls": yaml.safe_dump({"paphosting": platform}),
                    },
                    "the example platform, paphosting.nl signed",
                )
                ret = fleet.run_cli("svnpillar.push")
                assert ret.returncode == 0, ret.stdout + ret.stderr
                yield fleet
            finally:
                parsed = model.parse(platform)
                haproxy.stop(str(fleet.root(LB)))
                daemon.stop(dnsserver.daemon(parsed.nameservers[NS], str(fleet.root(NS))))


def ns_of(platform):
    return model.parse(platform).nameservers[NS]


def rrsig_tags(platform, name=ZONE, rdtype="SOA"):
    ns = ns_of(platform)
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    resp = dns.query.udp(query, ns.address, port=ns.port, timeout=2)
    return {rd.key_tag for rr in resp.answer if rr.rdtype == dns.rdatatype.RRSIG for rd in rr}


def cds_tags(platform):
    ns = ns_of(platform)
    resp = dns.query.udp(dns.message.make_query(ZONE, "CDS"), ns.address, port=ns.port, timeout=2)
    return {rd.key_tag for rr in resp.answer if rr.rdtype == dns.rdatatype.CDS for rd in rr}


def run(fleet, *args):
    ret = fleet.master.salt_run_cli(timeout=300).run(*args)
    if isinstance(ret.data, dict) and "retcode" in ret.data:
        return ret.returncode, ret.data["comment"]
    return ret.returncode, ret.stdout


def test_a_zone_without_keys_is_served_unsigned_until_the_master_makes_them(fleet, platform):
    assert rrsig_tags(platform) == set()
    code, out = run(fleet, "dnssec.status")
    assert code == 0 and "no keys yet: salt-run dnssec.keygen" in out, out


def test_keygen_commits_encrypted_keys_that_only_the_nameserver_receives(fleet, platform):
    code, out = run(fleet, "dnssec.keygen")
    assert code == 0, out
    assert "DS for the registrar: paphosting.nl. IN DS" in out and "PRIVATE" not in out
    # In Subversion: a GPG message, no key material.
    stored_text = subprocess.run(
        ["svnlook", "cat", fleet.svn.repo, f"pillar/secrets/dnssec/{ZONE}.asc"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert secrets.ARMOR_BEGIN in stored_text and "PRIVATE KEY" not in stored_text
    # The push applied it: the nameserver signs with the key set the master made.
    tags = rrsig_tags(platform)
    assert len(tags) == 1
    # Freshly compiled pillars (pillar.items), not the minions' in-memory ones.
    got = fleet.salt(NS, "pillar.items", unmask=True)["paphosting_secrets"]["dnssec"]
    keyset = dnssec.KeySet.from_text(ZONE, got[ZONE])
    assert tags == {k.tag for k in keyset.keys if k.role == "zsk"}
    assert "dnssec" not in (
        fleet.salt(LB, "pillar.items", unmask=True).get("paphosting_secrets") or {}
    )
    # Key tags in the table, each nameserver's earliest expiry, no key material.
    code, out = run(fleet, "dnssec.status")
    assert code == 0 and NS in out and "PRIVATE" not in out, out
    for k in keyset.keys:
        assert str(k.tag) in out
    # Signatures valid for 14 days from the hour before they were made.
    days = [float(d) for d in re.findall(r"\(\+(\d+\.\d) d\)", out.split("NAMESERVER", 1)[1])]
    assert days and all(13.0 < d <= 14.0 for d in days), out


def test_maintain_does_nothing_when_nothing_is_due_and_the_ksk_rollover_publishes_cds(
    fleet, platform
):
    code, out = run(fleet, "dnssec.maintain")
    assert code == 0 and "Nothing due" in out, out
    before = rrsig_tags(platform, ZONE, "DNSKEY")
    code, out = run(fleet, "dnssec.ksk_rollover", f"zone={ZONE}")
    assert code == 0 and "KSK rollover started" in out, out
    # Both KSKs sign the DNSKEY RRset now; the CDS still names the old one.
    after = rrsig_tags(platform, ZONE, "DNSKEY")
    assert before < after and len(after) == 2
    assert cds_tags(platform) == before
    code, out = run(fleet, "dnssec.confirm_ds", f"zone={ZONE}", f"tag={max(after - before)}")
    assert code != 0 and "not in every cache" in out, out


def dnskey_tags(platform):
    """``{tag: "ksk" | "zsk"}`` of the DNSKEY RRset the nameserver serves."""
    import dns.dnssec

    ns = ns_of(platform)
    resp = dns.query.udp(
        dns.message.make_query(ZONE, "DNSKEY", want_dnssec=True),
        ns.address,
        port=ns.port,
        timeout=2,
    )
    return {
        dns.dnssec.key_id(rd): "ksk" if rd.flags & 1 else "zsk"
        for rr in resp.answer
        if rr.rdtype == dns.rdatatype.DNSKEY
        for rd in rr
    }


def test_a_due_zsk_is_rolled_by_maintain_and_a_confirmed_ds_ends_a_ksk_rollover(
    fleet, platform, gpghome
):
    """The two rollovers on a real master, committed and pushed, the nameserver serving the
    result. Their starting points are set in the past with the project's own key functions (a
    ZSK older than its 90-day lifetime; a KSK rollover started two days ago, so the new KSK is in
    every cache): the runners then do what they do on a platform that ran that long."""
    now = dnssec.now_epoch()
    parsed = model.parse(platform)
    pol = dnssec.policy(
        parsed.zones[ZONE].dnssec, (parsed.dns or {}).get("dnssec"), parsed.schedule
    )
    old = dnssec.initial_keyset(ZONE, now - 100 * 86400)
    text = secrets.encrypt(old.to_text(), gpghome)
    fleet.svn.commit({f"pillar/{secrets.relpath('dnssec', ZONE)}": text}, "a 100-day-old key set")
    ret = fleet.run_cli("svnpillar.push")
    assert ret.returncode == 0, ret.stdout + ret.stderr
    old_zsk = {k.tag for k in old.keys if k.role == "zsk"}
    assert rrsig_tags(platform) == old_zsk
    # ZSK rollover (pre-publish): the new ZSK is served beside the old one, which still signs.
    code, out = run(fleet, "dnssec.maintain")
    assert code == 0 and f"ZSK rollover of {ZONE}" in out, out
    served = dnskey_tags(platform)
    new_zsk = {t for t, role in served.items() if role == "zsk"} - old_zsk
    assert len(new_zsk) == 1 and old_zsk <= set(served), served
    assert rrsig_tags(platform) == old_zsk
    # KSK rollover started two days ago: the new KSK signs the DNSKEY RRset beside the old one,
    # the CDS names it alone, and the operator's confirmation of its DS is taken.
    ttl = parsed.zones[ZONE].ttl
    rolled = dnssec.start_ksk_rollover(old, now - 2 * 86400, pol, ttl)
    old_ksk = {k.tag for k in old.keys if k.role == "ksk"}
    new_ksk = {k.tag for k in rolled.keys if k.role == "ksk"} - old_ksk
    fleet.svn.commit(
        {f"pillar/{secrets.relpath('dnssec', ZONE)}": secrets.encrypt(rolled.to_text(), gpghome)},
        "a KSK rollover started two days ago",
    )
    ret = fleet.run_cli("svnpillar.push")
    assert ret.returncode == 0, ret.stdout + ret.stderr
    assert rrsig_tags(platform, ZONE, "DNSKEY") == old_ksk | new_ksk
    assert cds_tags(platform) == new_ksk
    (tag,) = new_ksk
    code, out = run(fleet, "dnssec.confirm_ds", f"zone={ZONE}", f"tag={tag}")
    assert code == 0 and f"DS of KSK {tag} confirmed" in out, out
    code, out = run(fleet, "dnssec.status")
    assert code == 0 and str(tag) in out, out
    # The confirmation is in the key set the nameserver now holds; the old KSK is leaving.
    got = fleet.salt(NS, "pillar.items", unmask=True)["paphosting_secrets"]["dnssec"][ZONE]
    held = {k.tag: k for k in dnssec.KeySet.from_text(ZONE, got).keys}
    assert held[tag].ds_confirmed is not None
    assert all(held[t].delete is not None for t in old_ksk)
    assert cds_tags(platform) == new_ksk
