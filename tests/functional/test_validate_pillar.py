"""scripts/validate-pillar: the masterless check of a whole pillar tree the README documents."""

import shutil
import subprocess

import pytest

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


def _tree(tmp_path):
    shutil.copytree(REPO / "pillar", tmp_path / "pillar")
    return tmp_path / "pillar"


def test_an_sls_only_some_servers_get_fails_when_it_does_not_render(tmp_path):
    """The push compiles every server's pillar; so does validate-pillar: an SLS the top file
    gives one nameserver only, broken, fails the check with its file and line."""
    tree = _tree(tmp_path)
    (tree / "top.sls").write_text("base:\n  '*':\n    - paphosting\n  'ns2*':\n    - secrets.dns\n")
    (tree / "secrets").mkdir()
    (tree / "secrets" / "dns.sls").write_text("tsig: 1\n  key: 2\n")
    res = _run(tree)
    assert res.returncode == 1, res.stdout + res.stderr
    assert (
        f"{tree}/secrets/dns.sls: line 2: cannot render: mapping values are not allowed in this "
        "context [pillar of ns2.paphosting.net]"
    ) in res.stdout + res.stderr


@pytest.mark.parametrize(
    "broken, expected",
    [
        # YAML names where the sequence began, and the line where it noticed it never ended.
        ("  bad: [unclosed\n", "cannot render: while parsing a flow sequence (line 2, column 8)"),
        ("  {{ unbalanced\n", "cannot render: Jinja syntax error:"),
        ("\tbad: tab\n", "line 2: cannot render: found character that cannot start any token"),
    ],
)
def test_a_render_error_names_file_line_and_cause_not_a_schema_error(tmp_path, broken, expected):
    tree = _tree(tmp_path)
    sls = tree / "paphosting.sls"
    lines = sls.read_text().splitlines(keepends=True)
    sls.write_text(lines[0] + broken + "".join(lines[1:]))
    res = _run(tree)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert f"{sls}: line " in out and expected in out
    assert "is required" not in out and "Traceback" not in out


def test_a_relative_pillar_dir_is_relative_to_the_current_directory(tmp_path):
    tree = _tree(tmp_path)
    sls = tree / "paphosting.sls"
    sls.write_text(sls.read_text().replace("http_port: 8080", "http_port: 80800"))
    res = subprocess.run(
        [str(SCRIPT), "pillar"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode != 0
    assert "paphosting:haproxy:http_port: 80800 is out of range" in res.stdout + res.stderr
