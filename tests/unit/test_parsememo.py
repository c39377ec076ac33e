"""paphosting.parsememo: a text is parsed once; every caller gets its own copy."""

import pytest

from paphosting.parsememo import ParseMemo


def test_a_text_is_parsed_once_and_each_caller_gets_a_copy():
    memo = ParseMemo()
    calls = []

    def parse():
        calls.append(1)
        return {"a": [1, 2]}

    first = memo.parse("k", "a: [1, 2]", parse)
    second = memo.parse("k", "a: [1, 2]", parse)
    assert first == second == {"a": [1, 2]}
    assert len(calls) == 1 and (memo.hits, memo.misses) == (1, 1)
    second["a"].append(3)
    assert memo.parse("k", "a: [1, 2]", parse) == {"a": [1, 2]}


def test_another_text_or_key_is_parsed_anew():
    memo = ParseMemo()
    assert memo.parse("k", "x", lambda: 1) == 1
    assert memo.parse("k", "y", lambda: 2) == 2
    assert memo.parse("other", "x", lambda: 3) == 3
    assert memo.parse("k", "x", lambda: 4) == 1


def test_only_the_newest_are_kept():
    memo = ParseMemo(keep=2)
    for n in range(3):
        memo.parse("k", str(n), lambda n=n: n)
    assert memo.parse("k", "0", lambda: "again") == "again"
    assert memo.parse("k", "2", lambda: "again") == 2


def test_a_failed_parse_is_not_kept():
    memo = ParseMemo()

    def bad():
        raise ValueError("bad text")

    for _ in range(2):
        with pytest.raises(ValueError):
            memo.parse("k", "bad", bad)
    assert memo.misses == 0 and memo.hits == 0
