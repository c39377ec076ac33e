"""The one bounded wait of the harness: poll a condition until a deadline, never a fixed sleep."""

import time

from paphosting.daemon import port_open  # noqa: F401 - the harness's name for it


class Timeout(AssertionError):
    """A bounded wait ran out."""


def wait_until(predicate, timeout=15.0, interval=0.05, message="condition"):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` runs out.

    Exceptions from ``predicate`` count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = f"last value: {value!r}"
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = f"last error: {exc!r}"
        if time.monotonic() >= deadline:
            raise Timeout(f"{message}: not reached within {timeout:g}s ({last})")
        time.sleep(interval)
