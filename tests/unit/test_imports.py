"""Who may import whom: the product never imports the harness or the tests; the harness and the
scripts never import the tests (STYLE.md: the harness is not the product, and the product is not
the harness)."""

import ast

import pytest

from tests.conftest import REPO

PRODUCT = ("_modules", "_states", "_beacons", "_runners", "_pillar", "_utils")
FORBIDDEN = {
    **dict.fromkeys(PRODUCT, ("harness", "tests", "scripts")),
    "harness": ("tests", "scripts"),
    "scripts": ("tests",),
}


def python_files(folder):
    root = REPO / folder
    files = list(root.rglob("*.py"))
    if folder == "scripts":  # scripts/lab and friends have no .py suffix
        files += [
            p
            for p in root.iterdir()
            if p.is_file()
            and p.suffix == ""
            and p.read_text(errors="replace").startswith(("#!/usr/bin/env python", '"""'))
        ]
    return sorted(files)


def imported(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_import_across_the_line(folder):
    files = python_files(folder)
    assert files, f"no Python file under {folder}/"
    wrong = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in files
        for name in imported(path)
        if name.split(".")[0] in FORBIDDEN[folder]
    ]
    assert wrong == []
