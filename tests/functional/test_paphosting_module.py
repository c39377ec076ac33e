import pytest
from salt.exceptions import CommandExecutionError

from tests.conftest import example_pillar


def test_validate_example(set_pillar):
    loaders = set_pillar(example_pillar())
    summary = loaders.modules.paphosting.validate()
    assert summary["loadbalancers"] == ["lb1.paphosting.net", "lb2.paphosting.net"]
    assert summary["zones"] == ["paphosting.nl"]


def test_validate_names_pillar_path(set_pillar):
    bad = example_pillar()
    bad["services"]["www"]["servers"][0]["port"] = 70000
    loaders = set_pillar(bad)
    with pytest.raises(
        CommandExecutionError,
        match=r"paphosting:services:www:servers:web1.paphosting.net:port: 70000 is out of range",
    ):
        loaders.modules.paphosting.validate()
