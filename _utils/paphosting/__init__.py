"""The platform's pure Python core: no Salt dunders, importable and testable without Salt.

Salt's loader puts the synced ``_utils`` folder on ``sys.path`` while it loads custom modules, so
the thin modules in ``_modules``, ``_states``, ``_runners``, ``_beacons`` and ``_pillar`` import
this package at module level.
"""
