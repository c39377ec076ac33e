"""The harness: the platform's daemons run for real on 127.0.0.0/8, for the tests, ``make demo``,
``make bench`` and ``scripts/lab``. Not the product: nothing under ``_modules``, ``_states``,
``_utils`` (and so on) imports it, and it is never deployed. It imports the product, never
``tests/``.

- :mod:`harness.launcher`: two salt-masters (NL, CH), the minions, Subversion, as plain processes
  under ``build/<name>/``, all stopped at the end (docs/demo.md).
- :mod:`harness.processes`: those processes, started and stopped with :mod:`paphosting.daemon`.
- :mod:`harness.saltenv`: the ``salt://`` tree, the loader folders and the master configuration
  built from the repository.
- :mod:`harness.svn`: a Subversion repository served by ``svnserve``.
- :mod:`harness.services`: the demo webapp, haproxy, a small platform pillar on loopback addresses.
- :mod:`harness.client`: a client that resolves through each nameserver and browses with a cookie
  jar.
- :mod:`harness.netns`: the lab's hosts as network namespaces on a bridge (``Lab(netns=...)``).
- :mod:`harness.faults`: the one fault library (power-off, kill, partition, loss, a master cut
  off), and :mod:`harness.faultbench`: what clients see under each fault (``make bench``).
- :mod:`harness.wait`: the one bounded wait; :mod:`harness.ports`: free ports on loopback.
- :mod:`harness.timeline`: the demo's narration (one line per event) and the report's steps.
- :mod:`harness.render`, :mod:`harness.synthetic`: render-and-validate measurements on synthetic
  pillars.
- :mod:`harness.report`: the promised shapes of ``report.json`` and ``results.json``.
"""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
for _path in (REPO / "_utils", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
