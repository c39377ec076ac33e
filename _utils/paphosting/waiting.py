"""Waiting, bounded, for something to become true: the one polling loop of the core."""

import time


def until(predicate, timeout, interval=0.05):
    """Call ``predicate`` until it returns a true value or ``timeout`` seconds have passed;
    return its last value. It is called at least once, and an exception it raises ends the
    wait."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
