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


def test_long_texts_are_shared_through_the_disk_between_processes(tmp_path):
    """Two memos stand for two master processes: the second reads what the first parsed."""
    from paphosting import parsememo

    text = "a: " + "x" * parsememo.DISK_MIN
    calls = []

    def parse():
        calls.append(1)
        return {"a": "x" * parsememo.DISK_MIN}

    first = ParseMemo().parse("k", text, parse, disk=str(tmp_path))
    second = ParseMemo().parse("k", text, parse, disk=str(tmp_path))
    assert first == second and len(calls) == 1
    # Another key (parser options) or another text: parsed anew, never the other's result.
    ParseMemo().parse("other", text, parse, disk=str(tmp_path))
    ParseMemo().parse("k", text + "y", lambda: calls.append(1) or {"b": 1}, disk=str(tmp_path))
    assert len(calls) == 3
    # A damaged file is parsed again (and replaced), not trusted.
    for p in tmp_path.glob("*.pickle"):
        p.write_bytes(b"garbage")
    assert ParseMemo().parse("k", text, parse, disk=str(tmp_path)) == first
    assert len(calls) == 4


def test_short_texts_stay_in_memory(tmp_path):
    ParseMemo().parse("k", "a: 1", lambda: {"a": 1}, disk=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
