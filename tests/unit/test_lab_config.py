"""The lab's generated Salt configuration keeps what conf/master.d says (pure: nothing started)."""

import pathlib
import types

import yaml

from harness import launcher
from harness.saltenv import REPO


def test_a_lab_master_with_subversion_runs_every_schedule_of_conf_master_d(tmp_path):
    lab = types.SimpleNamespace(
        base=tmp_path,
        worker_threads=2,
        file_root=tmp_path / "files",
        extra_file_roots=[],
        svn=types.SimpleNamespace(url="svn://127.0.0.1:3690/pillar"),
        sync_seconds=3,
        master_overrides={},
        pillar_dir=tmp_path / "pillar",
        host_command=lambda host, argv: argv,
    )
    conf = launcher.Master(lab, "nl", "127.0.4.1").config()
    wanted = set()
    for name in ("paphosting.conf", "svnpillar.conf"):
        text = (pathlib.Path(REPO) / "conf" / "master.d" / name).read_text()
        wanted |= set((yaml.safe_load(text) or {}).get("schedule", {}))
    assert {
        "paphosting_drift_heal",
        "paphosting_operator_sync",
        "paphosting_svnpillar_sync",
    } <= wanted
    assert set(conf["schedule"]) == wanted
    assert conf["schedule"]["paphosting_svnpillar_sync"]["seconds"] == 3
