"""The platform's pure Python core: no Salt dunders, importable and testable without Salt.

Salt's loader puts the synced ``_utils`` folder on ``sys.path`` while it loads custom modules, so
the thin modules in ``_modules``, ``_states``, ``_runners``, ``_beacons`` and ``_pillar`` import
this package at module level, after :func:`paphosting.fresh.drop_stale` (why: that module).
"""

from .fresh import code_stamp

# The code this process runs: the package's files as they were when it was imported.
CODE = code_stamp()
