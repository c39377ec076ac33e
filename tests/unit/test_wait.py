"""The one bounded wait (harness/wait.py) that the harness, the scripts and the tests share."""

import itertools

import pytest

from harness.wait import Timeout, wait_until


class Gone(RuntimeError):
    pass


def test_returns_the_first_truthy_value():
    calls = itertools.count()
    assert wait_until(lambda: next(calls) >= 3 and "ready", 5, 0.001) == "ready"


def test_an_exception_is_not_yet_and_is_reported_on_timeout():
    with pytest.raises(Timeout, match=r"the zone: not reached within 0.05s \(last error: .*boom"):
        wait_until(lambda: (_ for _ in ()).throw(ValueError("boom")), 0.05, 0.01, "the zone")


def test_the_error_class_is_raised_on_timeout_with_the_message():
    with pytest.raises(Gone, match=r"every minion: not reached within 0.05s \(last value: \[\]\)"):
        wait_until(lambda: [], 0.05, 0.01, "every minion", error=Gone)


def test_the_predicate_raising_the_error_class_ends_the_wait_at_once():
    calls = itertools.count()

    def exited():
        next(calls)
        raise Gone("salt-master exited")

    with pytest.raises(Gone, match="salt-master exited"):
        wait_until(exited, 30, 0.01, error=Gone)
    assert next(calls) == 1


def test_without_an_error_class_the_last_falsy_value_is_returned():
    assert wait_until(lambda: 0, 0.05, 0.01, error=None) == 0
