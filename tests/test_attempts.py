"""The attempt counter: a sliding window kept in the database, exact under racing connections."""

from __future__ import annotations

import threading

import pytest

from core.attempts import FailureLimits, Limit, TooManyAttempts, charge_attempt, refund_attempt
from db import connect, select_rows

THREE_A_MINUTE = Limit(3, 60)


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("60 per minute", Limit(60, 60)),
        ("10/hour", Limit(10, 3600)),
        ("5 per 30 seconds", Limit(5, 30)),
        (" 1 PER Day ", Limit(1, 86400)),
        ("3 / 2 minutes", Limit(3, 120)),
    ],
)
def test_limits_parse(text, limit):
    assert Limit.parse(text) == limit


@pytest.mark.parametrize(
    "text", ["", "60", "sixty per minute", "0 per minute", "60 per fortnight", "10 per minute; 1 per second"]
)
def test_bad_limits_are_refused_at_start(text):
    with pytest.raises(ValueError, match="60 per minute"):
        Limit.parse(text)


def test_limits_are_read_once_from_the_settings():
    config = {
        "RATELIMIT_ENABLED": True,
        "PUBLIC_FAILURE_LIMIT": "7/minute",
        "SIGN_IN_FAILURE_LIMIT": "2/hour",
    }
    assert FailureLimits.from_config(config) == FailureLimits(Limit(7, 60), Limit(2, 3600))
    assert FailureLimits.from_config({**config, "RATELIMIT_ENABLED": False}) == FailureLimits(None, None)


def charges(db, key: str, times: list[float], limit: Limit = THREE_A_MINUTE) -> list[bool]:
    """Whether each attempt, made at each of `times`, was admitted."""
    admitted = []
    for now in times:
        try:
            charge_attempt(db, key, limit, now)
            admitted.append(True)
        except TooManyAttempts:
            admitted.append(False)
    return admitted


def test_the_attempt_past_the_limit_is_refused_until_the_oldest_drops_out(db):
    assert charges(db, "a", [1000, 1010, 1020, 1030]) == [True, True, True, False]
    with pytest.raises(TooManyAttempts) as refused:
        charge_attempt(db, "a", THREE_A_MINUTE, 1045)
    assert refused.value.retry_after == 15  # the attempt at 1000 drops out at 1060
    assert charges(db, "a", [1059.9, 1060, 1060.1]) == [False, True, False]


def test_the_window_slides_across_any_boundary(db):
    """Three attempts at the end of one minute leave none for the start of the next."""
    assert charges(db, "a", [1059, 1059.5, 1059.9, 1060, 1061, 1118]) == [True] * 3 + [False] * 3
    assert charges(db, "a", [1119, 1120]) == [True, True]


def test_refused_attempts_are_not_counted(db):
    """A client that keeps trying gets its three a minute, no fewer."""
    assert (
        charges(db, "a", [1000, 1000, 1000] + [1000 + n for n in range(1, 59)]) == [True] * 3 + [False] * 58
    )
    assert charges(db, "a", [1060, 1060, 1060, 1060]) == [True] * 3 + [False]


def test_keys_are_counted_apart(db):
    assert charges(db, "a", [1000] * 4) == [True] * 3 + [False]
    assert charges(db, "b", [1000] * 3) == [True] * 3


def test_a_refunded_attempt_frees_its_place(db):
    first = charge_attempt(db, "a", THREE_A_MINUTE, 1000)
    assert charges(db, "a", [1000, 1000, 1000]) == [True, True, False]
    refund_attempt(db, first)
    assert charges(db, "a", [1000, 1000]) == [True, False]


def test_expired_attempts_of_every_key_are_purged(db):
    charges(db, "a", [1000, 1001])
    charges(db, "b", [1030])
    charges(db, "c", [1061])
    assert sorted(row["key"] for row in select_rows(db, "SELECT key FROM attempts")) == ["b", "c"]


def test_racing_connections_admit_exactly_the_limit(app):
    """Four connections (as workers would) charge sixty attempts at once against a limit of 25."""
    limit, admitted, start = Limit(25, 60), [], threading.Barrier(4)

    def worker() -> None:
        db = connect(app.config["DATABASE"])
        try:
            start.wait()
            admitted.extend(charges(db, "race", [1000.0] * 15, limit))
        finally:
            db.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 25 and len(admitted) == 60
