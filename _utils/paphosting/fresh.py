"""The core as the files on disk hold it, not as a long-lived parent process imported it.

A minion runs every job in a fork of its long-lived main process, and that process holds whatever
of this package its beacon and scheduler imported (the ``http_health`` beacon imports the
failover's code on purpose, so that a failover's job does not spend a tenth of a second importing
it). Python never imports a module twice, so every job would run that copy, not the files
``saltutil.sync_all`` brought, until the minion restarts: after a deploy, jobs would run a mix of
old and new modules. Each thin module (``_modules``, ``_states``, ``_runners``, ``_beacons``,
``_pillar``, ``_engines``, ``_renderers``) therefore calls :func:`drop_stale` before it imports
the core.

:data:`paphosting.CODE` (this module's :func:`code_stamp` when the package was imported) names
the code a process runs; the platform cache keys its files by it too
(:mod:`paphosting.platformcache`), so a platform pickled by one version of the code is never read
by another. This module imports nothing of the package: it must work beside an older copy of it.
"""

import hashlib
import os
import sys

PACKAGE = __name__.rpartition(".")[0]
FOLDER = os.path.dirname(os.path.abspath(__file__))


# The last digest read per folder, with the sizes and modification times it was read at.
_read = {}


def code_stamp(folder=FOLDER):
    """The identity of the code in ``folder`` (the package's by default): a digest of the names
    and contents of its Python files, or None when it cannot be listed. The same code has the same
    stamp wherever it lies and however often it was synced. The files are read again only when
    their sizes or modification times changed (a ``stat`` per file otherwise)."""
    try:
        names = sorted(name for name in os.listdir(folder) if name.endswith(".py"))
    except OSError:
        return None
    stats = []
    for name in names:
        try:
            st = os.stat(os.path.join(folder, name))
        except OSError:
            continue
        stats.append((name, st.st_size, st.st_mtime_ns))
    known = _read.get(folder)
    if known is not None and known[0] == stats:
        return known[1]
    digest = hashlib.sha256()
    for name, _size, _mtime in stats:
        try:
            with open(os.path.join(folder, name), "rb") as fh:
                digest.update(f"{name}\0".encode() + fh.read() + b"\0")
        except OSError:
            continue
    _read[folder] = (stats, digest.hexdigest()[:16])
    return _read[folder][1]


def drop_stale():
    """Forget the package if its files changed since this process (or the process it was forked
    from) imported it, or if that copy predates :data:`paphosting.CODE`: remove it and every
    submodule from ``sys.modules``, so that the next ``import paphosting...`` reads the files.
    True when it did. Modules that hold the old ones keep them; the caller imports after this."""
    package = sys.modules.get(PACKAGE)
    if package is None:
        return False
    # A copy without CODE predates it; one whose folder could not be read (CODE None) is kept
    # while it still cannot be: dropping it at every call would throw away every cache with it.
    on_disk = code_stamp(os.path.dirname(package.__file__))
    if hasattr(package, "CODE") and on_disk == package.CODE:
        return False
    prefix = PACKAGE + "."
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(prefix)]:
        del sys.modules[name]
    return True
