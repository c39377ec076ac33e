"""Validate-then-write: a rejected file leaves the target exactly as it was."""

import json
import os
import pathlib

import pytest

from paphosting import files
from paphosting.errors import CheckFailed


def _reject(path):
    raise CheckFailed("fake-check", path, "line 1: nope")


def test_write_checked_writes_atomically_with_mode(tmp_path):
    target = tmp_path / "etc" / "x.cfg"
    files.write_checked(str(target), "new\n", check=lambda p: None, mode=0o640)
    assert target.read_text() == "new\n"
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert os.listdir(target.parent) == ["x.cfg"]


def test_check_sees_the_candidate_not_the_target(tmp_path):
    target = tmp_path / "x.cfg"
    target.write_text("old\n")
    seen = {}

    def check(path):
        seen["path"] = path
        seen["text"] = pathlib.Path(path).read_text()

    files.write_checked(str(target), "new\n", check=check)
    assert seen["text"] == "new\n" and seen["path"] != str(target)
    assert os.path.dirname(seen["path"]) == str(tmp_path)  # same directory: the rename is atomic


def test_rejected_file_leaves_target_untouched(tmp_path):
    target = tmp_path / "x.cfg"
    target.write_text("old\n")
    before = target.stat()
    with pytest.raises(CheckFailed, match="fake-check rejected"):
        files.write_checked(str(target), "bad\n", check=_reject)
    assert target.read_text() == "old\n"
    assert target.stat().st_ino == before.st_ino
    assert os.listdir(tmp_path) == ["x.cfg"]  # no temporary file left behind


def test_rejected_new_file_is_not_created(tmp_path):
    target = tmp_path / "x.cfg"
    with pytest.raises(CheckFailed):
        files.write_checked(str(target), "bad\n", check=_reject)
    assert not target.exists()


def test_unified_diff():
    diff = files.unified_diff("a\nb\n", "a\nc\n", "/etc/x")
    assert "-b\n" in diff and "+c\n" in diff and "--- /etc/x" in diff
    assert files.unified_diff(None, "a\n", "/etc/x").startswith("--- /dev/null")
    assert files.unified_diff("a\n", "a\n", "/etc/x") == ""


def test_keep_newest_keeps_the_newest_groups_and_never_a_temporary_file(tmp_path):
    import os

    from paphosting import files

    for i, name in enumerate(["a", "b", "c"]):
        for suffix in (".platform.pickle", ".lock"):
            path = tmp_path / f"{name}{suffix}"
            path.write_text(name)
            os.utime(path, (1000 + i, 1000 + i))
    temp = tmp_path / ".a.platform.pickle.x1.new"  # another process is writing it
    temp.write_text("in flight")
    files.keep_newest(str(tmp_path), 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".a.platform.pickle.x1.new", "b.lock", "b.platform.pickle", "c.lock", "c.platform.pickle"]
    )


def test_a_write_left_for_later_is_atomic_and_flushed_on_request(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    target = tmp_path / "state.json"
    files.write_json(str(target), {"version": 1})
    assert len(synced) == 1
    files.write_json(str(target), {"version": 2}, durable=False)
    assert len(synced) == 1 and json.loads(target.read_text()) == {"version": 2}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".new")]
    files.flush(str(target))
    assert len(synced) == 2
    files.flush(str(tmp_path / "absent.json"))  # nothing to keep: no error
