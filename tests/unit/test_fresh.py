"""paphosting.fresh: a process forked from one that imported the core (a minion's job) runs the
files on disk, not the copy its parent imported before a sync changed them."""

import ast
import multiprocessing
import os
import shutil
import sys

import pytest

from tests.conftest import REPO

CORE = REPO / "_utils" / "paphosting"
THIN = ("_modules", "_states", "_runners", "_beacons", "_pillar", "_engines", "_renderers")


@pytest.fixture
def probe(tmp_path):
    """A copy of the package's ``__init__`` and ``fresh`` under another name, with a module ``a``
    (``X = 1``); ``write(text)`` rewrites ``a`` as a sync does."""
    package = tmp_path / "probecore"
    package.mkdir()
    for name in ("__init__.py", "fresh.py"):
        shutil.copy(CORE / name, package / name)
    module = package / "a.py"
    module.write_text("X = 1\n")

    def write(text):
        before = os.stat(module).st_mtime_ns
        module.write_text(text)
        os.utime(module, ns=(before + 10**9, before + 10**9))

    sys.path.insert(0, str(tmp_path))
    try:
        yield write
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.split(".")[0] == "probecore"]:
            del sys.modules[name]


def _child(queue):
    import probecore.fresh

    dropped = probecore.fresh.drop_stale()
    import probecore.a

    queue.put((dropped, probecore.a.X))


def test_unchanged_files_keep_what_is_imported(probe):
    import probecore.a
    import probecore.fresh

    package = sys.modules["probecore"]
    assert probecore.fresh.drop_stale() is False
    assert sys.modules["probecore"] is package and probecore.a.X == 1


def test_a_changed_file_is_read_again(probe):
    import probecore.a
    import probecore.fresh

    probe("X = 2\n")
    assert probecore.fresh.drop_stale() is True
    assert not [n for n in sys.modules if n.split(".")[0] == "probecore"]
    import probecore.a as again

    assert again.X == 2
    assert probecore.fresh.drop_stale() is False  # the new copy is current


def test_a_forked_job_runs_the_files_its_parent_did_not_import(probe):
    """The minion's case: the main process imported the core, a sync rewrote a file, each job is
    a fork of the main process."""
    import probecore.a

    assert probecore.a.X == 1
    probe("X = 3\n")
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_child, args=(queue,))
    child.start()
    child.join(30)
    assert queue.get(timeout=5) == (True, 3)
    assert probecore.a.X == 1  # the parent is untouched


def test_a_copy_older_than_the_code_stamp_is_dropped(probe):
    """A minion upgraded from a version without paphosting.CODE: its main process holds a
    package without it; the first thin module drops it."""
    import probecore.fresh

    del sys.modules["probecore"].CODE
    assert probecore.fresh.drop_stale() is True


def test_a_copy_whose_folder_cannot_be_read_is_not_dropped_again_and_again(probe, monkeypatch):
    """CODE is None when the folder could not be listed: while it still cannot be, nothing tells
    the copy is stale, and dropping it at every thin module's load would drop every cache too."""
    import probecore.fresh

    package = sys.modules["probecore"]
    monkeypatch.setattr(package, "CODE", None)
    monkeypatch.setattr(probecore.fresh, "code_stamp", lambda folder=None: None)
    assert probecore.fresh.drop_stale() is False
    assert sys.modules["probecore"] is package


def _imports_core(node):
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return node.module.split(".")[0] == "paphosting" and node.module != "paphosting.fresh"
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] == "paphosting" for a in node.names)
    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
        arg = node.args[0] if node.args else None
        return (
            isinstance(arg, ast.Constant)
            and str(arg.value).startswith("paphosting")
            and arg.value != "paphosting.fresh"
        )
    return False


def _drops(node):
    return isinstance(node, ast.Call) and (
        getattr(node.func, "id", None) == "drop_stale"
        or getattr(node.func, "attr", None) == "drop_stale"
    )


def _nodes(path):
    return sorted(
        (n for n in ast.walk(ast.parse(path.read_text())) if hasattr(n, "lineno")),
        key=lambda n: (n.lineno, n.col_offset),
    )


IMPORTERS = sorted(
    p for d in THIN for p in (REPO / d).glob("*.py") if any(_imports_core(n) for n in _nodes(p))
)


def test_the_thin_modules_that_import_the_core_are_found():
    assert len(IMPORTERS) >= 15 and REPO / "_beacons" / "http_health.py" in IMPORTERS


@pytest.mark.parametrize("path", IMPORTERS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_thin_module_drops_a_stale_core_before_importing_it(path):
    nodes = _nodes(path)
    first_import = next(n.lineno for n in nodes if _imports_core(n))
    first_drop = next((n.lineno for n in nodes if _drops(n)), None)
    assert first_drop is not None and first_drop <= first_import, (
        f"{path.relative_to(REPO)} imports the core at line {first_import} without "
        "paphosting.fresh.drop_stale() before it"
    )


def test_the_stamp_names_the_content_not_the_copy(probe, tmp_path):
    """A sync that rewrites a file unchanged drops nothing, and the same code in another folder
    has the same stamp (the platform cache is shared by the same code)."""
    import probecore.fresh

    package = tmp_path / "probecore"
    stamp = probecore.fresh.code_stamp(str(package))
    probe("X = 1\n")  # same text, newer time
    assert probecore.fresh.code_stamp(str(package)) == stamp
    assert probecore.fresh.drop_stale() is False
    other = tmp_path / "elsewhere"
    shutil.copytree(package, other, ignore=shutil.ignore_patterns("__pycache__"))
    assert probecore.fresh.code_stamp(str(other)) == stamp
    probe("X = 4\n")
    assert probecore.fresh.code_stamp(str(package)) != stamp
