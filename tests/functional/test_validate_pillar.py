"""scripts/validate-pillar: the masterless check of a whole pillar tree the README documents."""

import shutil
import subprocess

from tests.conftest import REPO, require_binary

SCRIPT = REPO / "scripts" / "validate-pillar"


def _run(pillar_dir):
    for binary in ("haproxy", "named-checkzone", "nsd-checkzone", "kzonecheck"):
        require_binary(binary)
    return subprocess.run(
        [str(SCRIPT), str(pillar_dir)], capture_output=True, text=True, timeout=300, check=False
    )


def test_example_pillar_is_valid_everywhere():
    res = _run(REPO / "pillar")
    assert res.returncode == 0, res.stdout + res.stderr
    for line in (
        "lb1.paphosting.net': 'valid",
        "lb2.paphosting.net': 'valid",
        "ns1.paphosting.net: zone paphosting.nl valid",
        "ns2.paphosting.net: zone paphosting.nl valid",
        "ns3.paphosting.net: zone paphosting.nl valid",
        "ns1.paphosting.net: server config valid",
    ):
        assert line in res.stdout


def test_invalid_pillar_fails_naming_the_path(tmp_path):
    shutil.copytree(REPO / "pillar", tmp_path / "pillar")
    sls = tmp_path / "pillar" / "paphosting.sls"
    sls.write_text(sls.read_text().replace("http_port: 8080", "http_port: 80800"))
    res = _run(tmp_path / "pillar")
    assert res.returncode != 0
    assert "paphosting:haproxy:http_port: 80800 is out of range 1..65535" in res.stdout + res.stderr
