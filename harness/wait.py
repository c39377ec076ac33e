"""The one bounded wait of the harness, the scripts and the tests: poll a condition until a
deadline, never a fixed sleep."""

import time

from paphosting.daemon import port_open  # noqa: F401 - the harness's name for it


class Timeout(AssertionError):
    """A bounded wait ran out."""


def wait_until(predicate, timeout=15.0, interval=0.05, message="condition", error=Timeout):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` runs out.

    Exceptions from ``predicate`` count as "not yet" (the last one is reported on timeout), but
    one of class ``error`` ends the wait at once: the predicate saw that waiting is hopeless (the
    process it waits for exited).

    interval
        Seconds between two calls of ``predicate``.
    message
        What is waited for, in the timeout's message.
    error
        The exception class raised on timeout (the lab raises its ``LabError``); None: return the
        predicate's last (falsy) value instead.
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
            if error is not None and isinstance(exc, error):
                raise
            value = None
            last = f"last error: {exc!r}"
        if time.monotonic() >= deadline:
            if error is None:
                return value
            raise error(f"{message}: not reached within {timeout:g}s ({last})")
        time.sleep(interval)
