"""When a certificate is renewed, the retry backoff, and the status table."""

import pytest

from paphosting import certstate

DAY = 86400.0


def info(not_before, not_after, names=("www.paphosting.nl",)):
    return {
        "names": sorted(names),
        "issuer": "Pebble Intermediate CA 1",
        "not_before": not_before,
        "not_after": not_after,
        "fingerprint": "sha256:abcd",
    }


def test_a_service_without_certificate_needs_one():
    assert certstate.need(["www.paphosting.nl"], None, 0, 1 / 3) == "it has no certificate yet"


@pytest.mark.parametrize(
    ("now", "due"),
    [(0, False), (59 * DAY, False), (60.5 * DAY, True), (90 * DAY, True), (91 * DAY, True)],
)
def test_renewal_when_less_than_a_third_of_the_lifetime_is_left(now, due):
    cert = info(0, 90 * DAY)
    why = certstate.need(["www.paphosting.nl"], cert, now, 1 / 3)
    assert (why is not None) == due


def test_changed_names_need_a_new_certificate():
    cert = info(0, 90 * DAY)
    why = certstate.need(["www.paphosting.nl", "paphosting.nl"], cert, 1, 1 / 3)
    assert why.startswith("its names changed")


def test_backoff_doubles_up_to_the_maximum():
    assert [certstate.backoff(n, 60, 600) for n in range(6)] == [0, 60, 120, 240, 480, 600]


def test_failures_schedule_the_next_try_and_a_success_clears_them():
    state = {"services": {}}
    certstate.record(state, "www", 1000, error="CA down", retry_min=60, retry_max=600)
    entry = certstate.record(state, "www", 1100, error="CA down", retry_min=60, retry_max=600)
    assert entry["failures"] == 2 and entry["next_try"] == 1220
    assert certstate.waiting(entry, 1200) == 20
    entry = certstate.record(state, "www", 1300, fingerprint="sha256:1")
    assert entry["failures"] == 0 and entry["last_error"] is None and entry["next_try"] is None
    assert certstate.waiting(entry, 1300) == 0


def test_status_table_has_a_row_per_service(tmp_path):
    path = str(tmp_path / "tls.json")
    state = certstate.load(path)
    certstate.record(state, "shop", 1000 * DAY, error="the CA at https://ca/dir cannot be reached")
    certstate.save(path, state)
    rows = certstate.status_rows(
        {"www": ("www.paphosting.nl",), "shop": ("shop.paphosting.nl",)},
        {"www": info(990 * DAY, 1080 * DAY), "shop": None},
        certstate.load(path),
        1000 * DAY,
    )
    text = certstate.status_text(rows)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["SERVICE", "NAMES", "ISSUER"]
    assert "LAST ERROR" in lines[0]
    www = next(line for line in lines if line.startswith("www"))
    assert "Pebble Intermediate CA 1" in www and "80.0" in www
    shop = next(line for line in lines if line.startswith("shop"))
    assert "(none)" in shop and "cannot be reached" in shop and "retry at" in shop
