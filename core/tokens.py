"""Link tokens and claims: 32 random bytes handed out once, of which only the SHA-256 is kept.

Each transfer takes a claim of its own, in one write transaction whose outcome a single
conditional INSERT decides (db/claims.py). A link with N uses left serves up to N transfers
at once; a claim ends completed (a use), released (nothing), or settled after its lease lapsed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlite_utils import Database

from core import metrics
from core.attempts import Limit, charge_attempt
from db import claims as claim_queries
from db import links as queries
from db import write_transaction
from db.events import Client, EventKind, record_link_event
from db.links import Link

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 256


class TokenUnavailable(Exception):
    """Unknown, expired, revoked, used up or out of bytes; `reason` is for the event log, not the client."""

    def __init__(self, reason: str, link: Link | None = None):
        super().__init__(reason)
        self.reason = reason
        self.link = link


class TokenBusy(Exception):
    """Every use the link has left is held by a running transfer."""

    reason = "busy"  # for the event log, like TokenUnavailable's


@dataclass(frozen=True)
class Span:
    """The bytes a transfer will send, [start, stop) of a file of `size` bytes."""

    start: int
    stop: int
    size: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def counts(self) -> bool:
        """Only a transfer that delivers the file up to its end is a use."""
        return self.stop == self.size


@dataclass(frozen=True)
class Claim:
    id: str
    link: Link
    span: Span
    mode: str | None = None  # how the transfer delivers the file (core.delivery.DeliveryMode)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _find(db: Database, token: str) -> Link | None:
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii():  # every token we mint is base64url
        return None
    return queries.find_link(db, hash_token(token))


def usable_link(db: Database, token: str, now: float) -> Link:
    """The link a token opens, if it may start a transfer now (running transfers aside)."""
    link = _find(db, token)
    if link is None:
        raise TokenUnavailable("unknown")
    reason = link.unusable_reason(now)
    if reason:
        raise TokenUnavailable(reason, link)
    return link


def admit_attempt(db: Database, token: str, address: str | None, limit: Limit, now: float) -> None:
    """A token that opens a usable link is never limited, whatever its address did before; any
    other request (no token, an unknown or dead one) is a failed attempt of its address, refused
    with TooManyAttempts once the address has made `limit` of them."""
    try:
        usable_link(db, token, now)
    except TokenUnavailable:
        charge_attempt(db, f"public:{address}", limit, now)


def byte_budget(max_uses: int, size: int) -> int:
    """How many bytes a link may hand out in all, aborted and partial transfers included.

    Interrupted transfers must not use a link up, and ranges short of the end never do; without
    a cap, a holder could fetch almost all of a file again and again. Every use gets one copy's
    worth, and one more copy is there for retries and resumes. The size is the file's size at
    each request, so a file that grows raises the budget and one that shrinks lowers it.
    """
    return (max_uses + 1) * max(size, 1)


def settle_lapsed_claims(db: Database, now: float, link_id: int | None = None) -> int:
    """Settle claims whose lease lapsed (their worker died, froze or could not write); call
    inside a write transaction. A 'final' one counts as a use: its transfer may have delivered."""
    lapsed = claim_queries.lapsed_claims(db, now, link_id)
    for claim in lapsed:
        claim_queries.settle_lapsed_claim(db, claim)
        reason = "counted" if claim.counted else "returned"
        record_link_event(db, EventKind.LAPSED, queries.get_link(db, claim.link_id), now, reason=reason)
    return len(lapsed)


def _refusal(db: Database, link_id: int, now: float) -> TokenUnavailable | TokenBusy:
    """Why a claim was refused, read in the transaction that refused it."""
    link = queries.get_link(db, link_id)
    reason = link.unusable_reason(now) if link else "unknown"
    if reason:
        return TokenUnavailable(reason, link)
    if link.uses + link.transfers >= link.max_uses:
        return TokenBusy(f"link {link.id} is being downloaded")
    return TokenUnavailable("bytes", link)


def _decided(
    db: Database, link: Link, taken: bool, kind: EventKind, details: dict, now: float, client: Client
) -> TokenUnavailable | TokenBusy | None:
    """Record how a claim or a use was decided, in the transaction that decided it: the event
    `kind` when taken, else a `rejected` event; returns the refusal to raise once committed."""
    if taken:
        record_link_event(db, kind, link, now, client, **details)
        return None
    refusal = _refusal(db, link.id, now)
    record_link_event(db, EventKind.REJECTED, link, now, client, reason=refusal.reason)
    metrics.claim_conflict(refusal.reason)
    return refusal


def claim_link(
    db: Database,
    token: str,
    span: Span,
    lease_seconds: float,
    now: float,
    client: Client = Client(),
    mode: str | None = None,
    etag: str | None = None,
) -> Claim:
    """Take a claim for one transfer of `span`, delivered as `mode` with that `etag`, or raise why
    not (with a `rejected` event)."""
    link = usable_link(db, token, now)
    claim_id = secrets.token_hex(16)
    with write_transaction(db):
        settle_lapsed_claims(db, now, link.id)
        taken = claim_queries.insert_claim(
            db,
            claim_id=claim_id,
            link_id=link.id,
            counts=span.counts,
            length=span.length,
            budget=byte_budget(link.max_uses, span.size),
            now=now,
            until=now + lease_seconds,
            etag=etag,
        )
        details = {"start": span.start, "mode": mode}
        refusal = _decided(db, link, taken, EventKind.STARTED, details, now, client)
    if refusal is not None:
        raise refusal
    return Claim(claim_id, link, span, mode)


def consume_link(
    db: Database, token: str, now: float, client: Client = Client(), mode: str | None = None
) -> Link:
    """Use the link up at once (a redirect: there is no transfer to follow), or raise why not."""
    link = usable_link(db, token, now)
    with write_transaction(db):
        settle_lapsed_claims(db, now, link.id)
        taken = queries.consume_use(db, hash_token(token), now)
        refusal = _decided(db, link, taken, EventKind.REDIRECTED, {"mode": mode}, now, client)
    if refusal is not None:
        raise refusal
    return link


def renew_claim(db: Database, claim: Claim, now: float, lease_seconds: float) -> bool:
    return claim_queries.renew_claim(db, claim.id, now, now + lease_seconds)


def secure_final(db: Database, claim: Claim, now: float, lease_seconds: float) -> bool:
    """Make the claim one that is never given back, before the piece that reaches the end."""
    return claim_queries.mark_final(db, claim.id, now, now + lease_seconds)


def finish_claim(
    db: Database,
    claim: Claim,
    outcome: EventKind,
    now: float,
    sent: int,
    client: Client,
    reason: str | None = None,
    received: int | None = None,
    seconds: float | None = None,
) -> None:
    """End a transfer: `completed` counts a use, any other outcome gives the claim back.

    `sent` (handed to the connection) is charged to the byte budget; the event records `received`
    (what the client acknowledged, never more than it got), and how long the transfer ran.
    """
    link_id = claim.link.id
    details = {
        "bytes": sent if received is None else received,
        "start": claim.span.start,
        "seconds": seconds,
        "mode": claim.mode,
    }
    with write_transaction(db):
        if outcome == EventKind.COMPLETED:
            held = claim_queries.complete_claim(db, claim.id, link_id, now, sent)
        else:
            held = claim_queries.release_claim(db, claim.id, link_id, sent)
        if not held:  # settled by someone else after its lease lapsed: never counted twice
            reason = reason or "claim already settled"
        record_link_event(db, outcome, claim.link, now, client, reason=reason, **details)


def lost_reason(db: Database, claim: Claim) -> str:
    """Why a claim could not be renewed: the link was revoked, or the lease lapsed."""
    return "revoked" if claim_queries.revoked(db, claim.link.id) else "lapsed"
