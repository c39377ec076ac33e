"""The lab: the paphosting platform run for real on 127.0.0.0/8, for ``make demo`` and ``make bench``.

- :mod:`lab.launcher`: two salt-masters (NL, CH), the minions, Subversion, as plain processes under
  ``build/<name>/``, all stopped at the end (docs/demo.md).
- :mod:`lab.timeline`: the narration (one line per event) and the report's steps.
- :mod:`lab.client`: a client that resolves through each nameserver and browses with a cookie jar.
- :mod:`lab.render`, :mod:`lab.synthetic`: render-and-validate measurements on synthetic pillars.
- :mod:`lab.report`: the promised shapes of ``report.json`` and ``results.json``.
"""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
for _path in (REPO / "_utils", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
