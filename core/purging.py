"""Deleting links long dead and the events that outlived them, in short steps, in the background.

Minting used to purge the whole links table inside its own write transaction, which made every
mint and claim wait for a scan that grows with the install. Now each step deletes at most one
batch through an index, and a worker runs the steps in a thread of its own, after a mint, at
most once per interval, pausing between steps so that requests get the write lock in between.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlite_utils import Database

import db as database
from core.tokens import settle_lapsed_claims
from db import links as queries
from db import write_transaction
from db.events import delete_orphan_events
from db.notifications import delete_old_deliveries
from db.verdicts import delete_old_verdicts

log = logging.getLogger(__name__)

PURGE_BATCH = 500  # rows a step deletes: a few milliseconds of holding the write lock
PAUSE_FACTOR = 3
SHORTEST_PAUSE_SECONDS = 0.005


@dataclass(frozen=True)
class Purged:
    """What one step of the purge deleted."""

    links: int = 0
    events: int = 0
    notifications: int = 0
    verdicts: int = 0


def _batches(
    db: Database, delete: Callable[[Database, float, int], int], before: float, size: int
) -> Iterator[int]:
    """`delete` run one batch per write transaction until a batch finds nothing left."""
    while True:
        with write_transaction(db):
            count = delete(db, before, size)
        if count == 0:
            return
        yield count


def purge_steps(
    db: Database, retention_seconds: float, now: float, batch_size: int = PURGE_BATCH
) -> Iterator[Purged]:
    """The purge as short write transactions, one per step: a claim or a mint waits for one batch
    at most, never for the whole purge.

    Lapsed claims are settled first: a link whose last transfer's worker died is dead too. Then
    links dead for the retention period go, then events older than it that no link owns any more,
    then notifications sent or given up on before it, then DBackup tag verdicts reached before it.
    A live link keeps all its events; a purged one's go once they are as old as the retention, so
    the log stays bounded without losing what a link's owner can still look at. Each step commits
    whole or not at all; whatever a failed purge leaves, the next one takes.
    """
    before = now - retention_seconds
    with write_transaction(db):
        settle_lapsed_claims(db, now)
    for count in _batches(db, queries.delete_dead_links, before, batch_size):
        yield Purged(links=count)
    for count in _batches(db, delete_orphan_events, before, batch_size):
        yield Purged(events=count)
    for count in _batches(db, delete_old_deliveries, before, batch_size):
        yield Purged(notifications=count)
    for count in _batches(db, delete_old_verdicts, before, batch_size):
        yield Purged(verdicts=count)


def purge_dead_links(
    db: Database, retention_seconds: float, now: float, batch_size: int = PURGE_BATCH
) -> int:
    """The whole purge at once (`tokens purge`): how many links it deleted."""
    return sum(step.links for step in purge_steps(db, retention_seconds, now, batch_size))


def purge_lock(database_path: str) -> contextlib.AbstractContextManager[bool]:
    """True while no other process purges the same database (on PostgreSQL, no other host): two
    workers purging at once would only take turns at the write lock twice as often."""
    return database.exclusive(database_path, "purge")


class BackgroundPurge:
    """Runs the purge in a thread of this process, when asked after a mint and one is due: none
    running, and none started within `interval_seconds` (counted from this object's creation, so a
    worker that just started serves first)."""

    def __init__(self, database_path: str, retention_seconds: float, interval_seconds: float):
        self.database_path = database_path
        self.retention_seconds = retention_seconds
        self.interval_seconds = interval_seconds
        self._lock = threading.Lock()
        self._started_at = time.monotonic()
        self._thread: threading.Thread | None = None

    def start_if_due(self) -> bool:
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            if running or time.monotonic() - self._started_at < self.interval_seconds:
                return False
            self._started_at = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="purge", daemon=True)
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> None:
        """Until the purge started last has ended."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            with purge_lock(self.database_path) as ours:
                if ours:
                    self._purge()
        except (*database.DatabaseError, OSError) as exc:
            log.warning("The purge of dead links stopped, the next one goes on: %s", exc)

    def _purge(self) -> None:
        """Every step, each followed by a pause three times as long as the step took (and a few
        ms at least): requests get their turns to write in between, the purge holds the write
        lock a quarter of the time at most, and it slows down by itself when writers keep it
        waiting for its turn."""
        with database.pooled(self.database_path) as db:
            started = time.monotonic()
            for _ in purge_steps(db, self.retention_seconds, time.time()):
                time.sleep(max(PAUSE_FACTOR * (time.monotonic() - started), SHORTEST_PAUSE_SECONDS))
                started = time.monotonic()
