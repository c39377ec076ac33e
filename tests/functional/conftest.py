"""Functional tests: the project's modules through Salt's real loaders, no daemons.

``loaders`` loads ``_modules``, ``_states``, ``_utils`` and ``_beacons`` straight from the
repository. ``set_pillar`` writes the pillar a test wants and reloads the loaders.
``systemd_standin`` gives loaders whose ``service`` module stands in for systemd.
"""

import json
import pathlib

import pytest
import yaml
from saltfactories.utils.functional import Loaders

from harness.saltenv import file_root, loader_dirs


@pytest.fixture(scope="module")
def minion_root(tmp_path_factory):
    return tmp_path_factory.mktemp("root")


@pytest.fixture(scope="module")
def pillar_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pillar")
    (d / "top.sls").write_text("base:\n  '*':\n    - paphosting\n")
    (d / "paphosting.sls").write_text("{}\n")
    return d


@pytest.fixture(scope="module")
def minion_opts(salt_factories, pillar_dir, minion_root, tmp_path_factory, request):
    name = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    factory = salt_factories.salt_minion_daemon(
        f"fn-{name}",
        overrides={
            "file_client": "local",
            "pillar_roots": {"base": [str(pillar_dir)]},
            "file_roots": {"base": [file_root(tmp_path_factory.mktemp("file_root"))]},
            **loader_dirs(),
            "paphosting_root": str(minion_root),
        },
    )
    return factory.config.copy()


@pytest.fixture(scope="module")
def loaders(minion_opts):
    return Loaders(minion_opts)


@pytest.fixture(autouse=True)
def reset_loaders_state(loaders):
    try:
        yield
    finally:
        loaders.reset_state()


@pytest.fixture
def set_pillar(loaders, pillar_dir):
    """Make ``data`` (the ``paphosting`` value) this minion's pillar and reload the loaders."""

    def _set(data):
        (pillar_dir / "paphosting.sls").write_text(yaml.safe_dump({"paphosting": data}))
        loaders.reload_all()
        return loaders

    return _set


STANDIN = pathlib.Path(__file__).parent / "standin"


@pytest.fixture
def systemd_standin(minion_opts, tmp_path):
    """``make(pidfile)`` returns ``(loaders, systemd)``: Salt's loaders (with the pillar as it is
    now) whose ``service`` module is ``tests/functional/standin/service.py``, a unit that is
    active while the process of ``pidfile`` runs. ``systemd(enable_works=...)`` sets what
    ``systemctl enable`` answers; ``systemd()`` returns what the stand-in holds (``enabled``,
    ``calls``)."""
    record = tmp_path / "systemd.json"
    made = []

    def systemd(**settings):
        state = json.loads(record.read_text())
        state.update(settings)
        record.write_text(json.dumps(state))
        return state

    def make(pidfile):
        record.write_text(
            json.dumps(
                {"pidfile": str(pidfile), "enabled": False, "enable_works": True, "calls": []}
            )
        )
        made.append(
            Loaders(
                dict(
                    minion_opts,
                    module_dirs=[*minion_opts["module_dirs"], str(STANDIN)],
                    paphosting_test_systemd=str(record),
                )
            )
        )
        return made[-1], systemd

    try:
        yield make
    finally:
        for standin in made:
            standin.reset_state()
