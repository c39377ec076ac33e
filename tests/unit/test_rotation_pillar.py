"""The ``paphosting_rotation`` ext_pillar, loaded by Salt's own pillar loader with the repository's folders."""

import pytest
import salt.loader

from paphosting import decision, model
from tests.conftest import master_opts
from tests.unit import platforms

ROT = "http0.l.paphosting.nl"
LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"


@pytest.fixture
def opts(tmp_path):
    return master_opts(tmp_path)


@pytest.fixture
def ext_pillar(opts):
    return salt.loader.pillars(opts, {})["paphosting_rotation"]


def test_without_state_every_rotation_has_its_configured_members(ext_pillar):
    out = ext_pillar("ns1.paphosting.net", {"paphosting": platforms.pillar()})
    assert out == {
        "paphosting_rotation": {"version": 0, "rotations": {ROT: {"members": [LB1, LB2]}}}
    }


def test_publishes_the_stored_decision(ext_pillar, opts):
    config = decision.config_of(model.parse(platforms.pillar()))
    state = decision.new_state()
    decision.drain(state, config, LB1, 1000.0, reason="maintenance")
    decision.save(decision.state_path(opts), state)
    out = ext_pillar("ns1.paphosting.net", {"paphosting": platforms.pillar()})
    assert out == {"paphosting_rotation": {"version": 1, "rotations": {ROT: {"members": [LB2]}}}}


def test_not_a_platform_minion(ext_pillar):
    assert ext_pillar("other", {}) == {}


def test_invalid_platform_pillar_publishes_nothing(ext_pillar):
    bad = platforms.pillar()
    bad["rotations"][ROT]["members"] = ["nope"]
    assert ext_pillar("ns1.paphosting.net", {"paphosting": bad}) == {}


def test_unreadable_state_fails_instead_of_undoing_a_failover(ext_pillar, opts, tmp_path):
    path = decision.state_path(opts)
    (tmp_path / "cache" / "paphosting").mkdir(parents=True)
    with open(path, "w") as fh:
        fh.write("{ not json")
    with pytest.raises(ValueError):
        ext_pillar("ns1.paphosting.net", {"paphosting": platforms.pillar()})
