"""A real salt-minion: its jobs run the core's files as a sync left them, not the copy its main
process imported (paphosting/fresh.py), and they find the failover's code imported already.

The minion's main process imports the core through the ``http_health`` beacon (which also
preloads the failover's modules). The minion loads ``_utils`` from a copy made for this test, so
that the test can rewrite a module as ``saltutil.sync_utils`` would. A probe module (written here,
loaded beside the project's modules) reports what a job inherited and what it runs after one of
the project's thin modules (``rotation``) loaded.
"""

import os
import shutil
import textwrap

import pytest

from tests.conftest import REPO

MINION = "ns1.fresh.test"
PROBE = textwrap.dedent(
    '''
    """Test probe: what a job inherits, and the core after a thin module loaded."""
    import sys


    def inherited():
        return sorted(m for m in sys.modules if m.split(".")[0] == "paphosting")


    def after_rotation():
        __salt__["rotation.apply"]  # loads _modules/rotation.py in this job, nothing else
        return getattr(sys.modules["paphosting.actions"], "PROBE", None)
    '''
)


@pytest.fixture(scope="module")
def minion(salt_platform, sites, tmp_path_factory):
    base = tmp_path_factory.mktemp("fresh")
    utils = base / "utils"
    shutil.copytree(REPO / "_utils", utils, ignore=shutil.ignore_patterns("__pycache__"))
    probes = base / "modules"
    probes.mkdir()
    (probes / "probe.py").write_text(PROBE)
    site = sites()
    beacon = [
        {"targets": {"lb1": f"http://{site.address}:{site.port}/"}},
        {"heartbeat": 3600},
    ]
    overrides = {
        "utils_dirs": [str(utils)],
        "module_dirs": [str(REPO / "_modules"), str(probes)],
        "beacons": {"http_health": beacon},
    }
    with salt_platform([MINION], {}, minion_overrides=overrides) as platform:
        yield platform, utils / "paphosting"


def test_a_job_finds_the_failover_code_imported_and_runs_a_synced_change(minion):
    platform, core = minion
    # The beacon (main process) imported the core and the failover's modules.
    inherited = platform.wait(
        lambda: (lambda got: got if "paphosting.zonesync" in got else None)(
            platform.salt(MINION, "probe.inherited")
        ),
        "the minion's main process to import the core through its beacon",
    )
    assert {"paphosting.actions", "paphosting.health", "paphosting.fresh"} <= set(inherited)
    assert platform.salt(MINION, "probe.after_rotation") is None

    # A sync rewrites a module the main process holds.
    actions = core / "actions.py"
    before = os.stat(actions).st_mtime_ns
    actions.write_text(actions.read_text() + '\nPROBE = "synced"\n')
    os.utime(actions, ns=(before + 10**9, before + 10**9))

    assert platform.salt(MINION, "probe.after_rotation") == "synced"
    # The main process still holds its copy (until Salt reloads the beacon); every job drops it.
    assert "paphosting.actions" in platform.salt(MINION, "probe.inherited")
    assert platform.salt(MINION, "probe.after_rotation") == "synced"
