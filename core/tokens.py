"""Link tokens: 32 random bytes handed out once, of which only the SHA-256 is kept.

A transfer claims a link by taking its lease with one atomic UPDATE; finishing the
transfer either counts a use or gives the lease back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlite_utils import Database

from db import links as queries
from db.links import Link

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 256


class TokenUnavailable(Exception):
    """Unknown, expired, revoked or used up; `reason` is for the event log, not the client."""

    def __init__(self, reason: str, link: Link | None = None):
        super().__init__(reason)
        self.reason = reason
        self.link = link


class TokenBusy(Exception):
    """Another transfer holds the link's lease."""


@dataclass(frozen=True)
class Claim:
    link: Link
    lease_id: str


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _find(db: Database, token: str) -> Link | None:
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    return queries.find_link(db, hash_token(token))


def usable_link(db: Database, token: str, now: float) -> Link:
    """The link a token opens, if it may start a transfer now (leases aside)."""
    link = _find(db, token)
    if link is None:
        raise TokenUnavailable("unknown")
    reason = link.unusable_reason(now)
    if reason:
        raise TokenUnavailable(reason, link)
    return link


def claim_link(db: Database, token: str, lease_seconds: float, now: float) -> Claim:
    """Take the link's lease for one transfer, or say why not."""
    lease_id = secrets.token_hex(16)
    if len(token) <= MAX_TOKEN_LENGTH and queries.take_lease(
        db, hash_token(token), lease_id, now, now + lease_seconds
    ):
        return Claim(queries.find_link(db, hash_token(token)), lease_id)
    link = usable_link(db, token, now)  # raises with the reason when the link is dead
    raise TokenBusy(f"link {link.id} is being downloaded")


def consume_link(db: Database, token: str, now: float) -> Link:
    """Use the link up in one atomic step, or say why not."""
    if len(token) <= MAX_TOKEN_LENGTH and queries.consume_use(db, hash_token(token), now):
        return queries.find_link(db, hash_token(token))
    link = usable_link(db, token, now)
    raise TokenBusy(f"link {link.id} is being downloaded")


def complete_transfer(db: Database, claim: Claim, now: float, sent: int = 0) -> None:
    queries.count_use(db, claim.link.id, claim.lease_id, now, sent)


def release_transfer(db: Database, claim: Claim, sent: int = 0) -> None:
    queries.release_lease(db, claim.link.id, claim.lease_id, sent)
