"""Salt file roots for tests and the demo, built from the repository.

A master (or a masterless minion) serves ``salt://`` from a folder of symlinks: every entry of the
repository's ``salt/`` folder (top.sls and the role SLS) and the loader folders ``_modules``,
``_states``, ``_utils``, ``_beacons``, ``_runners``, ``_pillar``. Serving the repository root
itself would make Salt's fileserver walk ``.venv``.
"""

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
LOADER_DIRS = ("_modules", "_states", "_utils", "_beacons", "_runners", "_pillar")


def file_root(dest):
    """Create (or refresh) the symlink tree at ``dest`` and return it as a string."""
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in (REPO / "salt").iterdir()}
    wanted.update({d: REPO / d for d in LOADER_DIRS if (REPO / d).is_dir()})
    for name, target in wanted.items():
        link = dest / name
        if link.is_symlink() and os.readlink(link) == str(target):
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return str(dest)
