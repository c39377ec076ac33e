"""A master's reactor loads its runners again every ``reactor_refresh_interval`` (60 s by
default: ``salt.utils.reactor.ReactWrap.client_cache`` is a CacheDict with that lifetime), each
time executing the runner's module anew. What the rotation runner keeps between reports (the
decision's configuration per pillar generation, the intake's rate limit and refusal counts) must
outlive that: measured, a failover report that came right after a reload paid a whole pillar
compile (4 s at 5,000 zones) before deciding."""

import importlib.util

from paphosting import saltcontext
from tests.conftest import REPO


def _load(name):
    """``_runners/rotation.py`` executed as a new module, as a new Salt loader does."""
    spec = importlib.util.spec_from_file_location(name, REPO / "_runners" / "rotation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_what_the_runner_keeps_outlives_a_reload():
    first, second = _load("rotation_runner_a"), _load("rotation_runner_b")
    assert first is not second
    for name in ("_configs", "_configs_lock", "_limit", "_refusals", "_refusals_lock"):
        assert getattr(first, name) is getattr(second, name), name


def test_a_configuration_compiled_before_a_reload_is_used_after_it(monkeypatch):
    first = _load("rotation_runner_c")
    generation = ("pillar files", 1)
    first._configs[generation] = ("the configuration", "the digest")
    try:
        second = _load("rotation_runner_d")
        monkeypatch.setattr(second, "_generation", lambda: generation)
        monkeypatch.setattr(second, "_platform", lambda minion: 1 / 0)  # no compile
        assert second._context("ns1.example") == ("the configuration", "the digest")
    finally:
        first._configs.pop(generation, None)


def test_kept_makes_once_per_name():
    made = []
    one = saltcontext.kept("test.kept", lambda: made.append(1) or object())
    assert saltcontext.kept("test.kept", lambda: made.append(1) or object()) is one
    assert made == [1]
