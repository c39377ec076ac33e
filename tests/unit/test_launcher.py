"""The lab launcher's pure parts: its generated Salt configuration keeps what conf/master.d says, and a highstate's return read through the product's reader (nothing started)."""

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


def test_a_highstate_return_is_summed_up_per_state_id():
    ret = {
        "file_|-cfg_|-/etc/x_|-managed": {
            "__id__": "cfg",
            "__run_num__": 1,
            "result": True,
            "comment": "File updated\nmore",
            "changes": {"diff": "...", "mode": "0644"},
            "duration": 2.5,
        },
        "service_|-svc_|-x_|-running": {
            "__id__": "svc",
            "__run_num__": 0,
            "result": False,
            "comment": "x failed to start",
            "changes": {},
            "duration": 1.0,
        },
        "cmd_|-same_|-a_|-run": {"__id__": "cfg", "__run_num__": 2, "result": True, "duration": 1},
        "odd": "not a state result",
    }
    changed, failed, details, durations = launcher.state_summary(ret)
    assert changed == ["cfg"]
    assert failed == [("odd", "not a state result"), ("svc", "x failed to start")]
    assert details == {"cfg": "File updated {'mode': '0644'}"}
    assert durations == {"svc": 1.0, "cfg": 3.5}
    assert launcher.state_summary(["Rendering SLS 'base:x' failed", "line 3"]) == (
        [],
        [("highstate", "Rendering SLS 'base:x' failed; line 3")],
        {},
        {},
    )
