"""The failover's intake bounds: the rate limit applies to the watcher a signature proves, never
to a claimed one, and refusals are counted in full, logged once a second, kept across processes."""

import json

import pytest

from paphosting import decision, health, refusals
from tests.conftest import rsa_key_pair
from tests.unit.test_decision import LB1, NOW, NS1, NS2, platform, view

WEB1 = "web1.paphosting.net"


@pytest.fixture
def config():
    return decision.config_of(platform())


@pytest.fixture(scope="module")
def keys():
    return {name: rsa_key_pair() for name in (NS1, NS2, WEB1)}


def signed(keys, signer, watcher, seq):
    text = health.report_text(watcher, seq, NOW, "transition", {LB1: view("down")}, [LB1])
    return text, health.sign(text, keys[signer][0])


def test_a_token_bucket_allows_a_burst_then_the_rate():
    limit = refusals.RateLimit(rate=5.0, burst=3.0)
    assert [limit.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b", 0.0), "each key has its own bucket"
    assert not limit.allow("a", 0.1)  # half a token back
    assert limit.allow("a", 0.3)  # 0.3 s x 5/s: a token again
    assert [limit.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]  # never > burst


def test_forged_reports_in_a_watchers_name_do_not_use_up_its_allowance(keys, config):
    limit = refusals.RateLimit(rate=5.0, burst=20.0)
    public = {name: pair[1] for name, pair in keys.items()}.get
    for seq in range(200):  # web1 floods reports claiming ns1, signed with its own key
        text, sig = signed(keys, WEB1, NS1, seq)
        with pytest.raises(decision.Rejected, match="bad signature") as exc:
            decision.admit(text, sig, config, public, limit, NOW)
        assert not isinstance(exc.value, decision.RateLimited)
    text, sig = signed(keys, NS1, NS1, 1000)
    assert decision.admit(text, sig, config, public, limit, NOW)["watcher"] == NS1


def test_a_watcher_beyond_its_allowance_is_rate_limited_and_others_are_not(keys, config):
    limit = refusals.RateLimit(rate=5.0, burst=20.0)
    public = {name: pair[1] for name, pair in keys.items()}.get
    for seq in range(20):
        decision.admit(*signed(keys, NS1, NS1, seq), config, public, limit, NOW)
    with pytest.raises(decision.RateLimited, match=f"rate limited: '{NS1}'"):
        decision.admit(*signed(keys, NS1, NS1, 20), config, public, limit, NOW)
    assert decision.admit(*signed(keys, NS2, NS2, 1), config, public, limit, NOW)
    assert decision.admit(*signed(keys, NS1, NS1, 21), config, public, limit, NOW + 0.3)


def test_refusals_are_logged_once_a_second_with_what_they_stand_for(tmp_path):
    counts = refusals.Refusals(str(tmp_path / "refused.json"), every=3600)
    reason = "bad signature on the report claiming to come from 'ns1'"
    assert counts.note(reason, NS1, 10.0) == 1  # the first: logged (and written: first flush)
    assert [counts.note(reason, NS1, 10.0 + i / 10) for i in range(1, 10)] == [0] * 9
    assert counts.note("is not signed", NS1, 10.5) == 1  # another kind: its own second
    assert counts.note(reason, WEB1, 10.5) == 1  # another sender too
    assert counts.note(reason, NS1, 11.0) == 10  # this one and the nine silent ones
    counts.flush(11.0)
    data = refusals.read(str(tmp_path / "refused.json"))
    assert data["counts"] == {
        f"bad signature on the report claiming to come from 'ns1' [{NS1}]": 11,
        f"is not signed [{NS1}]": 1,
        f"bad signature on the report claiming to come from 'ns1' [{WEB1}]": 1,
    }
    assert data["since"] == 10.0


def test_refusal_counts_add_up_across_processes_and_restarts(tmp_path):
    path = str(tmp_path / "refused.json")
    one, two = refusals.Refusals(path), refusals.Refusals(path)
    for _ in range(5):
        one.note("malformed report: x", "a", 1.0)
    for _ in range(7):
        two.note("malformed report: y", "a", 1.0)
    one.flush(2.0)
    two.flush(2.0)
    refusals.Refusals(path).flush(3.0)  # nothing pending: the file stays as it is
    assert refusals.read(path)["counts"] == {"malformed report [a]": 12}
    text = refusals.text(refusals.read(path))
    assert text.splitlines() == [
        "REFUSED REPORTS (since 1970-01-01 00:00:01 UTC)",
        "      12  malformed report [a]",
    ]


@pytest.mark.parametrize(
    "stored", ["not json", "[1, 2]", '{"counts": [1]}', '{"counts": {"a": "1"}}']
)
def test_a_damaged_counts_file_reads_as_empty_and_is_written_anew(tmp_path, stored):
    path = tmp_path / "refused.json"
    path.write_text(stored)
    counts = refusals.Refusals(str(path))
    counts.note("stale report", "ns1", 5.0)
    counts.flush(5.0)
    assert json.loads(path.read_text())["counts"] == {"stale report [ns1]": 1}
    assert refusals.text({"since": None, "counts": {}}) == ""
