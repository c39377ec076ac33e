"""ACME DNS-01 challenge records: names, the held set, the merge into zones, change safety, and
the ``paphosting:acme`` pillar."""

import copy
import json

import pytest

from paphosting import challenges, model, zone
from paphosting.errors import InvalidPillar
from tests.unit import platforms

WWW = "_acme-challenge.www.paphosting.nl"
APEX = "_acme-challenge.paphosting.nl"


def test_owner_of_a_name_and_of_a_wildcard():
    assert challenges.owner_of("www.paphosting.nl.") == WWW
    assert challenges.owner_of("*.paphosting.nl") == APEX
    assert challenges.owner_of("paphosting.nl") == APEX
    assert challenges.is_owner("_acme-challenge.www")
    assert not challenges.is_owner("www")


def test_merge_lays_txt_records_into_the_zone_and_renders_them():
    pillar = platforms.pillar()
    merged = challenges.merge(pillar, {WWW: ["tok-1"], APEX: ["tok-2", "tok-3"]})
    assert pillar == platforms.pillar()  # the pillar itself is untouched
    text = zone.render(model.parse(merged), "paphosting.nl", 1)
    assert '_acme-challenge.www      60 IN TXT    "tok-1"' in text
    assert '_acme-challenge          60 IN TXT    "tok-2"' in text
    assert '_acme-challenge          60 IN TXT    "tok-3"' in text
    # The admin's own TXT record at the apex is still there.
    assert '"v=spf1 mx -all"' in text


def test_merge_without_records_is_the_pillar_itself():
    pillar = platforms.pillar()
    assert challenges.merge(pillar, {}) is pillar


def test_names_outside_every_zone_are_refused_by_name():
    with pytest.raises(challenges.ChallengeError, match="_acme-challenge.www.example.com"):
        challenges.zones_of({"paphosting.nl"}, {"_acme-challenge.www.example.com": ["x"]})
    assert challenges.zones_of({"paphosting.nl"}, {WWW: ["x"]}) == {
        "paphosting.nl": {"_acme-challenge.www": ["x"]}
    }


def test_hold_keeps_the_newest_set_and_expiry_empties_it(tmp_path):
    path = str(tmp_path / "held.json")
    new = challenges.value({WWW: ["b"]}, version=20, ttl_seconds=60, now=1000)
    old = challenges.value({WWW: ["a"]}, version=10, ttl_seconds=60, now=1000)
    assert challenges.hold(path, new) == (new, True)
    held, replaced = challenges.hold(path, old)
    assert held == new and not replaced  # a late job never replaces a newer set
    assert challenges.load_held(path) == new
    assert challenges.live_records(new, now=1059) == {WWW: ["b"]}
    assert challenges.live_records(new, now=1061) == {}
    assert challenges.live_records(None) == {}


@pytest.mark.parametrize(
    "bad",
    [
        {"version": 1, "expires": 2, "records": {"www.paphosting.nl": ["x"]}},
        {"version": 1, "expires": 2, "records": {WWW: ['quote"d']}},
        {"version": 1, "expires": 2, "records": {WWW: "x"}},
        {"version": 1, "records": {}},
        ["not", "a", "mapping"],
    ],
)
def test_malformed_sets_are_refused(tmp_path, bad):
    with pytest.raises(challenges.ChallengeError):
        challenges.hold(str(tmp_path / "held.json"), bad)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert challenges.load_held(str(tmp_path / "bad.json")) is None


def test_removing_challenge_records_is_not_counted_by_the_change_safety_rule():
    pillar = platforms.pillar()
    for i in range(8):  # a zone big enough for the share rule
        pillar["zones"]["paphosting.nl"]["records"][f"h{i}"] = [{"type": "A", "data": "127.0.9.1"}]
    many = {f"_acme-challenge.s{i}.paphosting.nl": [f"t{i}"] for i in range(12)}
    live = zone.parse_text(
        "paphosting.nl",
        zone.render(model.parse(challenges.merge(pillar, many)), "paphosting.nl", 1),
    )
    wanted = zone.build(model.parse(pillar), "paphosting.nl", 2)
    assert zone.safety_problems(live, wanted) == []
    # The same number of ordinary records going away is refused.
    fewer = copy.deepcopy(pillar)
    for i in range(8):
        del fewer["zones"]["paphosting.nl"]["records"][f"h{i}"]
    live = zone.build(model.parse(pillar), "paphosting.nl", 1)
    assert zone.safety_problems(live, zone.build(model.parse(fewer), "paphosting.nl", 2))


def _acme_pillar(**services):
    pillar = platforms.pillar(webservers=2, shop=True)
    pillar["acme"] = {"directory": "https://127.0.14.1:14000/dir", "services": services}
    return pillar


def test_acme_pillar_defaults_to_the_service_hostnames_and_a_third():
    acme = model.parse(_acme_pillar(www=None, shop={"names": ["*.paphosting.nl"]})).acme
    assert acme.services == {
        "www": ("www.paphosting.nl", "paphosting.nl"),
        "shop": ("*.paphosting.nl",),
    }
    assert acme.renew_fraction == pytest.approx(1 / 3)


def test_acme_name_outside_every_zone_names_the_service_and_path():
    pillar = _acme_pillar(www={"names": ["www.paphosting.nl", "paphosting.nl", "www.example.com"]})
    with pytest.raises(InvalidPillar) as err:
        model.parse(pillar)
    text = str(err.value)
    assert "paphosting:acme:services:www:names:2" in text
    assert "service www: www.example.com is in no zone" in text


@pytest.mark.parametrize(
    ("services", "where", "what"),
    [
        ({"nope": None}, "paphosting:acme:services:nope", "not a service"),
        ({"www": {"names": ["www.paphosting.nl"]}}, "services:www:names", "paphosting.nl"),
        ({"www": {"names": ["*.*.paphosting.nl"]}}, "services:www:names:0", "not a hostname"),
    ],
)
def test_acme_pillar_errors(services, where, what):
    with pytest.raises(InvalidPillar) as err:
        model.parse(_acme_pillar(**services))
    assert where in str(err.value) and what in str(err.value)
