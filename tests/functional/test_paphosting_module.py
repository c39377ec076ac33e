import pytest
from salt.exceptions import CommandExecutionError

from paphosting import saltcontext
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


def test_a_job_parses_the_platform_once_and_a_new_pillar_is_never_served_stale(set_pillar):
    loaders = set_pillar(example_pillar())
    assert loaders.modules.paphosting.validate()["zones"] == ["paphosting.nl"]
    held = loaders.context[saltcontext.CONTEXT_KEY]
    # Every module of the job finds it there, without hashing the pillar again.
    assert loaders.modules.haproxy_cfg.service_mode("lb1.paphosting.net") == "process"
    assert loaders.context[saltcontext.CONTEXT_KEY] is held
    changed = example_pillar()
    changed["zones"]["paphosting.net"] = {"ns": ["ns1.paphosting.net"]}
    loaders = set_pillar(changed)
    assert loaders.modules.paphosting.validate()["zones"] == ["paphosting.net", "paphosting.nl"]
    assert loaders.context[saltcontext.CONTEXT_KEY][1].digest != held[1].digest
