"""The DNSSEC core: key timings, signing, reuse of signatures, verification, rollovers, status.

Signed zones are checked with the real ``dnssec-verify`` (bind9-utils) and, for the fast path,
with dnspython's validation; the servers and a validating resolver are in
``tests/integration/test_dnssec.py``.
"""

import subprocess

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.zone
import pytest

from paphosting import dnssec, model, zonesync
from paphosting import zone as pzone
from tests.conftest import require_binary
from tests.unit import platforms

ZONE = "paphosting.nl"
ROT = "http0.l.paphosting.nl"
NOW = dnssec.now_epoch()  # dnssec-verify checks signature times against the clock
DAY = 86400
POLICY = dnssec.Policy()


@pytest.fixture(scope="module")
def renderer():
    pillar = platforms.pillar()
    pillar["zones"][ZONE]["dnssec"] = True
    pillar["zones"][ZONE]["records"]["deep.sub"] = [{"type": "A", "data": "192.0.2.7"}]
    # A delegation with glue: the NS is not signed, the glue is neither signed nor in the chain.
    pillar["zones"][ZONE]["records"]["child"] = [{"type": "NS", "data": "ns.child.paphosting.nl."}]
    pillar["zones"][ZONE]["records"]["ns.child"] = [{"type": "A", "data": "192.0.2.53"}]
    return pzone.Renderer(model.parse(pillar))


@pytest.fixture(scope="module")
def keyset():
    return dnssec.initial_keyset(ZONE, NOW - 30 * DAY)


def verify(tmp_path, text, zone=ZONE):
    require_binary("dnssec-verify")
    path = tmp_path / "signed.zone"
    path.write_text(text)
    res = subprocess.run(
        dnssec.verify_command(zone, str(path)), capture_output=True, text=True, check=False
    )
    return res.returncode, res.stdout + res.stderr


@pytest.mark.parametrize("nsec3", [False, True])
def test_a_signed_zone_passes_dnssec_verify_and_strips_back_to_the_rendered_zone(
    renderer, keyset, tmp_path, nsec3
):
    text = renderer.render(ZONE, 2027011500)
    signed = dnssec.sign(text, ZONE, keyset, NOW, dnssec.Policy(nsec3=nsec3))
    assert verify(tmp_path, signed.text) == (0, "")
    assert dnssec.unsigned_text(signed.text) == text
    assert signed.full and signed.reused == 0
    z = dns.zone.from_text(signed.text, origin=ZONE, relativize=False)
    denial = dns.rdatatype.NSEC3 if nsec3 else dns.rdatatype.NSEC
    assert any(rds.rdtype == denial for _, rds in z.iterate_rdatasets())
    # Glue below the delegation is neither signed nor in the chain.
    glue = z.get_node("ns.child.paphosting.nl.")
    assert {rds.rdtype for rds in glue} == {dns.rdatatype.A}
    # The delegation's NS is not signed (the child's own zone is): only its NSEC is.
    child = z.get_node("child.paphosting.nl.")
    covered = {rds.covers for rds in child if rds.rdtype == dns.rdatatype.RRSIG}
    assert covered == (set() if nsec3 else {dns.rdatatype.NSEC})


def test_signing_is_deterministic_within_the_hour(renderer, keyset):
    text = renderer.render(ZONE, 2027011500)
    hour = NOW // 3600 * 3600  # two moments of one hour, whatever the clock says now
    a = dnssec.sign(text, ZONE, keyset, hour + 10, POLICY).text
    b = dnssec.sign(text, ZONE, keyset, hour + 3590, POLICY).text
    assert a.split("\n", 1)[1] == b.split("\n", 1)[1]  # same records; the header says when


def test_a_failover_resigns_only_the_changed_rrsets_and_the_soa(renderer, keyset, tmp_path):
    first = dnssec.sign(renderer.render(ZONE, 2027011500), ZONE, keyset, NOW, POLICY)
    moved = renderer.render(ZONE, 2027011501, {ROT: ["lb1.paphosting.net"]})
    second = dnssec.sign(moved, ZONE, keyset, NOW + 60, POLICY, previous=first.text)
    made = sorted(
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)) for rrset, _ in second.made
    )
    assert made == [
        ("http0.l.paphosting.nl.", "A"),
        ("paphosting.nl.", "A"),
        ("paphosting.nl.", "SOA"),
    ]
    assert second.reused > 10
    dnssec.verify_new(second, ZONE, keyset, NOW + 60)
    assert verify(tmp_path, second.text)[0] == 0


def test_signatures_near_expiry_or_by_a_retired_key_are_never_reused(renderer, keyset):
    text = renderer.render(ZONE, 2027011500)
    first = dnssec.sign(text, ZONE, keyset, NOW, POLICY)
    # Past the refresh margin: everything is signed again.
    later = NOW + POLICY.validity - POLICY.refresh + 3600
    again = dnssec.sign(text, ZONE, keyset, later, POLICY, previous=first.text)
    assert again.reused == 0
    assert dnssec.resign_reason(first.text, keyset, later, POLICY).startswith("signatures expire")
    assert dnssec.resign_reason(first.text, keyset, NOW + 3600, POLICY) is None
    # A hand edit of the signed file: signatures are not trusted, it is signed again.
    edited = first.text.replace("127.0.2.3", "127.0.2.4")
    assert (
        dnssec.resign_reason(edited, keyset, NOW + 3600, POLICY)
        == "the signed zone was edited by hand"
    )
    assert dnssec.sign(text, ZONE, keyset, NOW, POLICY, previous=edited).reused == 0


def test_the_zsk_rollover_follows_rfc_7583_prepublish(keyset):
    pol = dnssec.Policy(propagation=2100, safety=3600)
    rolled = dnssec.roll_zsk(keyset, NOW, pol, dnskey_ttl=3600, max_ttl=3600)
    old, new = [k for k in rolled.keys if k.role == "zsk"]
    ipub = 2100 + 3600 + 3600
    assert new.publish == NOW and new.activate == NOW + ipub == old.inactive
    assert old.delete == old.inactive + 2100 + 3600 + 3600

    def states(t):
        return sorted(
            dnssec.describe(k, t).split(" ", 2)[2] for k in rolled.keys if k.role == "zsk"
        )

    assert states(NOW) == ["active, retiring", "published"]
    assert states(NOW + ipub) == ["active", "retired"]
    assert states(old.delete) == ["active", "removed"]
    # The DNSKEY RRset holds both ZSKs from publication until the old one's removal.

    def tags(t):
        return {k.tag for k in rolled.published(t)}

    assert tags(NOW) == tags(NOW + ipub) == {k.tag for k in rolled.keys}
    assert old.tag not in tags(old.delete)
    with pytest.raises(dnssec.DnssecError, match="already under way"):
        dnssec.roll_zsk(rolled, NOW + 1, pol, 3600, 3600)


def test_a_zsk_rollover_is_due_after_the_lifetime(keyset):
    pol = dnssec.Policy(zsk_lifetime=90 * DAY)
    zsk = next(k for k in keyset.keys if k.role == "zsk")
    assert not dnssec.zsk_due(keyset, zsk.activate + 89 * DAY, pol)
    assert dnssec.zsk_due(keyset, zsk.activate + 90 * DAY, pol)
    rolled = dnssec.roll_zsk(keyset, zsk.activate + 90 * DAY, pol, 3600, 3600)
    assert not dnssec.zsk_due(rolled, zsk.activate + 91 * DAY, pol)


def test_the_ksk_rollover_waits_for_the_operator_and_publishes_cds(renderer, keyset, tmp_path):
    # Timings of seconds: dnssec-verify checks the signatures against the clock.
    pol = dnssec.Policy(parent_ds_ttl=DAY, propagation=0, safety=0)
    old = next(k for k in keyset.keys if k.role == "ksk")
    started = dnssec.start_ksk_rollover(keyset, NOW, pol, dnskey_ttl=2)
    new = next(k for k in started.keys if k.role == "ksk" and k.tag != old.tag)
    # Until the new KSK is in every cache, the CDS still names the old one.
    assert [k.tag for k in started.cds_keys(NOW)] == [old.tag]
    with pytest.raises(dnssec.DnssecError, match="not in every cache"):
        dnssec.confirm_ds(started, new.tag, NOW + 1, pol)
    ready = new.activate
    assert ready == NOW + 2
    assert [k.tag for k in started.cds_keys(ready)] == [new.tag]
    assert len(dnssec.ds_records(started, ZONE, ready)) == 1
    text = renderer.render(ZONE, 2027011502)
    signed = dnssec.sign(text, ZONE, started, ready, pol)
    z = dns.zone.from_text(signed.text, origin=ZONE, relativize=False)
    sigs = z.get_rdataset(ZONE + ".", dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
    assert {rd.key_tag for rd in sigs} == {old.tag, new.tag}  # both KSKs sign the DNSKEY RRset
    cds = z.get_rdataset(ZONE + ".", dns.rdatatype.CDS)
    assert [rd.key_tag for rd in cds] == [new.tag]
    assert verify(tmp_path, signed.text)[0] == 0
    confirmed = dnssec.confirm_ds(started, new.tag, ready + 10, pol)
    gone = next(k for k in confirmed.keys if k.tag == old.tag)
    assert gone.delete == ready + 10 + DAY + pol.safety
    assert {k.tag for k in confirmed.published(gone.delete)} == {
        k.tag for k in keyset.keys if k.role == "zsk"
    } | {new.tag}


def test_a_zone_that_would_not_validate_or_has_expired_signatures_is_refused(
    renderer, keyset, tmp_path
):
    require_binary("dnssec-verify")
    signed = dnssec.sign(
        renderer.render(ZONE, 2027011500), ZONE, keyset, dnssec.now_epoch(), POLICY
    )
    good = tmp_path / "good.zone"
    good.write_text(signed.text)
    assert dnssec.verify_files({ZONE: str(good)}) == {}
    # A record changed after signing: its signature no longer matches.
    bad = tmp_path / "bad.zone"
    bad.write_text(signed.text.replace("127.0.2.3", "127.0.2.4"))
    assert ZONE in dnssec.verify_files({ZONE: str(bad)})
    old = dnssec.sign(
        renderer.render(ZONE, 2027011500), ZONE, keyset, dnssec.now_epoch() - 20 * DAY, POLICY
    )
    expired = tmp_path / "expired.zone"
    expired.write_text(old.text)
    assert "expires at" in dnssec.verify_files({ZONE: str(expired)})[ZONE]


def test_key_sets_round_trip_as_secret_text_and_bad_ones_name_the_pillar_path(keyset):
    again = dnssec.KeySet.from_text(ZONE, keyset.to_text())
    assert again == keyset
    assert "PRIVATE KEY" in keyset.to_text()
    with pytest.raises(dnssec.DnssecError, match="paphosting_secrets:dnssec:paphosting.nl:keys:0"):
        dnssec.KeySet.from_dict(ZONE, {"keys": [{"role": "ksk"}]})
    with pytest.raises(dnssec.DnssecError, match="not a key set"):
        zonesync.keysets_of({ZONE: "not json"}, [ZONE])
    # The public record of a key set never holds key material.
    assert "PRIVATE" not in dnssec.describe(keyset.keys[0], NOW)
    assert "PRIVATE" not in " ".join(keyset.fingerprint(NOW))


def test_a_key_set_without_an_active_key_cannot_sign(renderer):
    early = dnssec.initial_keyset(ZONE, NOW)
    with pytest.raises(dnssec.DnssecError, match="no KSK is active"):
        dnssec.sign(renderer.render(ZONE, 1), ZONE, early, NOW - DAY, POLICY)
    with pytest.raises(dnssec.DnssecError, match="algorithm rollover is not supported"):
        dnssec.sign(renderer.render(ZONE, 1), ZONE, early, NOW, dnssec.Policy(algorithm=15))


@pytest.mark.parametrize(
    "value, error",
    [
        ("yes", "must be true, false or a mapping"),
        ({"algorithm": 8}, "algorithm"),
        ({"nsec3": "optout"}, "must be true (NSEC3, no opt-out) or false"),
    ],
)
def test_bad_dnssec_pillar_values_name_their_path(value, error):
    pillar = platforms.pillar()
    pillar["zones"][ZONE]["dnssec"] = value
    with pytest.raises(model.InvalidPillar) as exc:
        model.parse(pillar)
    assert f"paphosting:zones:{ZONE}:dnssec" in str(exc.value) and error in str(exc.value)


def test_the_refresh_margin_must_outlast_the_drift_schedule():
    pillar = platforms.pillar()
    pillar["zones"][ZONE]["dnssec"] = True
    pillar["dns"] = {"dnssec": {"refresh": 3600}}
    pillar["schedule"] = {"highstate_interval": 1800, "splay": 300}
    with pytest.raises(model.InvalidPillar, match="paphosting:dns:dnssec:refresh"):
        model.parse(pillar)


def test_the_status_table_shows_keys_ds_and_what_each_nameserver_serves(keyset):
    served = {
        ZONE: {
            "ns1.paphosting.net": {
                "serial": 2027011500,
                "served": 2027011500,
                "expires": NOW + 13 * DAY,
                "dnskey": "1,2",
            },
            "ns2.paphosting.net": "no answer",
        }
    }
    text = dnssec.status_text([ZONE], {ZONE: keyset}, served, NOW, {ZONE: POLICY})
    for k in keyset.keys:
        assert f"{k.role.upper():<4} {k.tag:>5}  active" in text
    assert "DS for the registrar: paphosting.nl. IN DS" in text
    assert "(+13.0 d)" in text and "ns2.paphosting.net" in text and "no answer" in text
    assert "ZSK rollover starts" in text
    assert "PRIVATE" not in text
