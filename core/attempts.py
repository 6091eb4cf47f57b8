"""Limits on attempts that may fail (a token tried, a password typed), per address.

Attempts are counted in the database, so every worker of an install sees the same count, over a
sliding window: a limit of N per minute allows N in any minute, also across a minute's boundary.
Only admitted attempts are counted, so a client that keeps trying gets N per window, never more
and never fewer. Who counts what, and what passes freely, is decided by the callers
(core/tokens.py, core/accounts.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlite_utils import Database

from db import attempts as queries
from db import write_transaction

UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
LIMIT_PATTERN = re.compile(r"\s*(\d+)\s*(?:per|/)\s*(\d+)?\s*(second|minute|hour|day)s?\s*", re.IGNORECASE)


class TooManyAttempts(Exception):
    """The address made as many attempts as its limit allows; one more is allowed in `retry_after` s."""

    def __init__(self, retry_after: float):
        super().__init__(f"too many attempts; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limit:
    """At most `attempts` within any `seconds`."""

    attempts: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Limit:
        """'60 per minute', '10/hour', '5 per 30 seconds': the notation of flask-limiter, which
        Oncelink used before, so existing settings keep working."""
        match = LIMIT_PATTERN.fullmatch(str(text))
        if match is None or int(match[1]) < 1:
            raise ValueError(f"A limit reads like '60 per minute' or '5 per 30 seconds', not {text!r}.")
        return cls(int(match[1]), int(match[2] or 1) * UNIT_SECONDS[match[3].lower()])


@dataclass(frozen=True)
class FailureLimits:
    """Failed attempts one address may make, read once from the settings; None: not limited."""

    public: Limit | None
    sign_in: Limit | None

    @classmethod
    def from_config(cls, config: Mapping) -> FailureLimits:
        if not config["RATELIMIT_ENABLED"]:
            return cls(None, None)
        return cls(Limit.parse(config["PUBLIC_FAILURE_LIMIT"]), Limit.parse(config["SIGN_IN_FAILURE_LIMIT"]))


def charge_attempt(db: Database, key: str, limit: Limit, now: float) -> int:
    """Count an attempt against `key` and return its id, or raise TooManyAttempts when `limit`
    attempts are counted within the last `limit.seconds` already (the refused one is not counted).

    The check and the insert are one statement in one write transaction: workers racing for the
    last place get it once. Expired attempts of every key are purged on the way.
    """
    with write_transaction(db):
        queries.purge_attempts(db, now)
        attempt_id = queries.add_attempt_within(db, key, limit.attempts, now, now + limit.seconds)
        free_at = None if attempt_id else queries.next_expiry(db, key, now)
    if attempt_id is None:
        raise TooManyAttempts(free_at - now)
    return attempt_id


def refund_attempt(db: Database, attempt_id: int) -> None:
    """Take back an attempt that turned out not to be a failure."""
    queries.delete_attempt(db, attempt_id)
