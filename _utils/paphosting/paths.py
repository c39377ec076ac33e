"""Where managed files live, under an optional root prefix.

On real hosts the root is ``/``. Tests and the demo give every minion its own sandbox through the
minion option ``paphosting_root``, so several load balancers and nameservers share one machine.
"""

import os


def under(root, path):
    """``path`` (absolute) placed under ``root``."""
    root = root or "/"
    return os.path.join(root, path.lstrip("/"))
