"""The claims this process holds while its transfers run, and the thread that keeps them alive.

A lease is short, so a worker that dies frees its claims within seconds. While a transfer
runs, one thread per process renews the lease of every claim still open. The sender never
trusts that blindly: before each piece it checks, on the monotonic clock, that the claim was
renewed within the lease time and was not lost or revoked (`HeldClaim.check`), so a worker
that was frozen past its lease stops before it sends another byte.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import weakref

import db as database
from core import tokens

log = logging.getLogger(__name__)

REVOKE_NOTICE_SECONDS = 2.0  # a revoked link stops its running transfers within about this long


class TransferStopped(ConnectionResetError):
    """A transfer ended on purpose: its claim was lost or revoked, its client stopped acknowledging,
    or its source broke. An ECONNRESET, so that gunicorn closes the connection without a traceback."""

    def __init__(self, reason: str):
        super().__init__(errno.ECONNRESET, reason)
        self.reason = reason


class HeldClaim:
    """A claim of this process's, renewed by the keeper and checked by the sender."""

    def __init__(self, claim: tokens.Claim, database_path: str, lease_seconds: float, claimed_at: float):
        self.claim = claim
        self.closed = False
        self.final = False
        self.lost: str | None = None
        self.renewed_at = claimed_at  # monotonic, taken before the statement that set the lease
        self._database_path = database_path
        self._lease_seconds = lease_seconds

    def check(self) -> None:
        """Raise TransferStopped unless the claim is provably still ours.

        A final claim is never given back by anyone else, so only losing it (revocation) stops it.
        """
        if self.lost:
            raise TransferStopped(self.lost)
        if not self.final and time.monotonic() - self.renewed_at >= self._lease_seconds:
            raise TransferStopped("lapsed")

    def secure_final(self) -> None:
        """Before the piece that reaches the end: the claim becomes final, or the transfer stops."""
        self.check()
        started = time.monotonic()
        try:
            with database.pooled(self._database_path) as db:
                secured = tokens.secure_final(db, self.claim, time.time(), self._lease_seconds)
        except database.DatabaseError as exc:
            log.warning("Could not secure the last piece of link %s: %s", self.claim.link.id, exc)
            secured = False
        if not secured:
            raise TransferStopped("unsecured")
        self.final, self.renewed_at = True, started

    def renewed(self, started: float) -> None:
        """The claim's lease was extended by a transaction that began at `started` (monotonic)."""
        self.renewed_at = max(self.renewed_at, started)

    def lose(self, reason: str) -> None:
        if not self.closed:
            self.lost = reason


class LeaseKeeper:
    def __init__(self, database_path: str, lease_seconds: float):
        self.database_path = database_path
        self.lease_seconds = lease_seconds
        self.interval = min(lease_seconds / 3, REVOKE_NOTICE_SECONDS)
        # Weak: a body that is dropped without being closed stops being renewed.
        self._held: weakref.WeakSet[HeldClaim] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread_pid: int | None = None

    def hold(self, claim: tokens.Claim, claimed_at: float) -> HeldClaim:
        held = HeldClaim(claim, self.database_path, self.lease_seconds, claimed_at)
        with self._lock:
            self._held.add(held)
            if self._thread_pid != os.getpid():  # none yet, or inherited across a fork
                self._thread_pid = os.getpid()
                threading.Thread(target=self._run, name="lease-keeper", daemon=True).start()
        return held

    def open_claims(self) -> list[HeldClaim]:
        with self._lock:
            return [held for held in list(self._held) if not held.closed]

    def _renew_all(self, db, held_claims: list[HeldClaim]) -> list[str | None]:
        """Extend every claim in one transaction; for each, None or why it could not be."""
        with database.write_transaction(db):
            renewed = [
                tokens.renew_claim(db, held.claim, time.time(), self.lease_seconds) for held in held_claims
            ]
            return [
                None if ok else tokens.lost_reason(db, held.claim)
                for held, ok in zip(held_claims, renewed, strict=True)
            ]

    def renew_now(self) -> None:
        held_claims = self.open_claims()
        if not held_claims:
            return
        started = time.monotonic()  # before any lease is extended: the fence never runs ahead
        with database.pooled(self.database_path) as db:
            outcomes = self._renew_all(db, held_claims)
        # Only once committed: a renewal that was rolled back must not move any fence.
        for held, lost in zip(held_claims, outcomes, strict=True):
            if lost is None:
                held.renewed(started)
            else:
                held.lose(lost)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.renew_now()
            except database.DatabaseError as exc:
                # The senders stop on their own once their leases run out unrenewed.
                log.warning("Could not renew transfer claims: %s", exc)
