"""The per-digest platform cache: parsed once, never stale, kept across processes on disk."""

import copy
import os
import subprocess
import sys

import pytest

import paphosting
from paphosting import model, platformcache
from paphosting.errors import InvalidPillar
from tests.conftest import REPO
from tests.unit import platforms

ZONE = "paphosting.nl"


@pytest.fixture(autouse=True)
def _fresh():
    platformcache.forget()
    yield
    platformcache.forget()


def test_the_same_pillar_is_parsed_once_in_a_process(monkeypatch):
    calls = []
    real = model.parse
    monkeypatch.setattr(model, "parse", lambda p: calls.append(1) or real(p))
    pillar = platforms.pillar()
    first = platformcache.load(pillar)
    again = platformcache.load(copy.deepcopy(pillar))
    assert first is again and len(calls) == 1


def test_a_changed_pillar_is_never_served_from_the_cache(tmp_path):
    pillar = platforms.pillar()
    old = platformcache.load(pillar, str(tmp_path))
    platformcache.save(old, str(tmp_path))
    changed = copy.deepcopy(pillar)
    changed["zones"][ZONE]["records"]["mail"][0]["data"] = "127.0.2.9"
    for fresh_process in (False, True):
        if fresh_process:
            platformcache.forget()
        new = platformcache.load(changed, str(tmp_path))
        assert new.digest != old.digest
        assert "127.0.2.9" in new.render(ZONE, 1) and "127.0.2.9" not in old.render(ZONE, 1)


def test_an_invalid_pillar_is_refused_and_not_cached(tmp_path):
    bad = platforms.pillar()
    bad["loadbalancers"]["lb1.paphosting.net"]["address"] = "not-an-address"
    for _ in range(2):
        with pytest.raises(InvalidPillar, match="loadbalancers:lb1.paphosting.net:address"):
            platformcache.load(bad, str(tmp_path))
    assert not (tmp_path / "paphosting" / "platform").exists()


def test_another_process_renders_from_disk_without_the_pillar(tmp_path):
    pillar = platforms.pillar()
    renderer = platformcache.load(pillar, str(tmp_path))
    platformcache.save(renderer, str(tmp_path))
    names = sorted(os.listdir(tmp_path / "paphosting" / "platform"))
    key = f"{renderer.digest}-{paphosting.CODE}"
    assert names == [f"{key}.platform.pickle", f"{key}.renderer.pickle"]
    for name in names:
        assert os.stat(tmp_path / "paphosting" / "platform" / name).st_mode & 0o777 == 0o600
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from paphosting import platformcache;"
        "r = platformcache.cached(sys.argv[2], sys.argv[3]);"
        "print(r.render('paphosting.nl', 7), end='');"
        "print('|' + ','.join(sorted(r.platform.services)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "_utils"), renderer.digest, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    text, services = out.rsplit("|", 1)
    assert text == renderer.render(ZONE, 7)
    assert services.strip() == ",".join(sorted(renderer.platform.services))


def test_only_the_newest_pillars_stay_on_disk(tmp_path):
    digests = []
    for i in range(platformcache.ON_DISK + 2):
        pillar = platforms.pillar()
        pillar["zones"][ZONE]["ttl"] = 3600 + i
        renderer = platformcache.load(pillar, str(tmp_path))
        platformcache.save(renderer, str(tmp_path))
        os.utime(
            tmp_path
            / "paphosting"
            / "platform"
            / f"{platformcache._key(renderer.digest)}.renderer.pickle",
            (i, i),
        )
        digests.append(renderer.digest)
    kept = {n.split(".")[0] for n in os.listdir(tmp_path / "paphosting" / "platform")}
    assert len(kept) == platformcache.ON_DISK
    assert platformcache.cached(digests[0], str(tmp_path)) is None or (
        platformcache._key(digests[0]) in kept
    )


def test_processes_sharing_a_cachedir_parse_a_pillar_once(tmp_path, monkeypatch):
    """platformcache.platform (the masters' processes): the first parses and writes, the others
    (here: this process after forgetting its memory) read the file."""
    calls = []
    real = model.parse
    monkeypatch.setattr(model, "parse", lambda p: calls.append(1) or real(p))
    pillar = platforms.pillar()
    first = platformcache.platform(pillar, str(tmp_path))
    platformcache.forget()
    again = platformcache.platform(copy.deepcopy(pillar), str(tmp_path))
    assert len(calls) == 1 and sorted(again.zones) == sorted(first.zones)
    # A changed pillar is another digest: parsed, never served from the other's file.
    changed = copy.deepcopy(pillar)
    changed["zones"][ZONE]["records"]["newname"] = [{"type": "A", "data": "192.0.2.9"}]
    platformcache.forget()
    assert "newname" in str(platformcache.platform(changed, str(tmp_path)).zones[ZONE])
    assert len(calls) == 2


def test_an_invalid_pillar_is_never_written_for_the_other_processes(tmp_path):
    bad = platforms.pillar()
    bad["loadbalancers"] = "nope"
    with pytest.raises(InvalidPillar):
        platformcache.platform(bad, str(tmp_path))
    assert not list((tmp_path / "paphosting" / "platform").glob("*.pickle"))


def test_a_platform_pickled_by_other_code_is_never_read(tmp_path, monkeypatch):
    """After a deploy the cache holds pickles of the old code's classes: the new code parses the
    pillar again rather than read them (the key names the code, paphosting.CODE)."""
    pillar = platforms.pillar()
    renderer = platformcache.load(pillar, str(tmp_path))
    platformcache.save(renderer, str(tmp_path))
    platformcache.platform(pillar, str(tmp_path))
    platformcache.forget()
    assert platformcache.cached(renderer.digest, str(tmp_path)) is not None
    platformcache.forget()
    monkeypatch.setattr(paphosting, "CODE", "another-version")
    calls = []
    real = model.parse
    monkeypatch.setattr(model, "parse", lambda p: calls.append(1) or real(p))
    assert platformcache.cached(renderer.digest, str(tmp_path)) is None
    platformcache.platform(copy.deepcopy(pillar), str(tmp_path))
    assert calls == [1]
