"""Writes take turns: one thread of one process writes to the database at a time, the others queue.

SQLite lets one connection write at a time. The others wait in its busy handler, which tries
again after sleeps that grow to 25, 50 and 100 ms, so under a steady stream of writes a waiter
can miss its turn again and again: the slowest mints of a busy install waited 80 ms and more,
for no work of their own. Here a writer first takes its process's lock (the threads or
greenlets of a worker queue on it), then an flock on a file beside the database (the workers
queue in the kernel, each woken the moment the previous one is done). SQLite's write lock is
then free when a writer asks for it; the busy handler is left to writers outside Oncelink (a
sqlite3 shell...). Readers never queue: in WAL mode they do not wait for writers.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

log = logging.getLogger(__name__)

WRITING_STATEMENTS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})


class WriteQueue:
    """The turns of one database's writers; reentrant, so a turn may hold a nested one."""

    def __init__(self, database_path: str):
        self._lock_path = Path(database_path).with_suffix(".write.lock")
        self._lock = threading.RLock()
        self._depth = 0

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self._lock:
            self._depth += 1
            try:
                with self._processes_turn() if self._depth == 1 else contextlib.nullcontext():
                    yield
            finally:
                self._depth -= 1

    @contextlib.contextmanager
    def _processes_turn(self) -> Iterator[None]:
        """The flock, on the lock file opened for this turn alone: no descriptor outlives it (a
        disk can be unmounted once the server has stopped). When the file cannot be opened (a
        full disk with no room for an empty file), the processes meet in the busy handler again."""
        try:
            lock_file = open(self._lock_path, "a")  # noqa: SIM115 (closed below; closing unlocks)
        except OSError as exc:
            log.debug("Writers of other processes do not queue: %s", exc)
            yield
            return
        with lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield


_queues: dict[str, WriteQueue] = {}
_queues_lock = threading.Lock()


def write_queue_for(database_path: str) -> WriteQueue:
    with _queues_lock:
        return _queues.setdefault(database_path, WriteQueue(database_path))


def _forget_queues_after_fork() -> None:
    """A forked child starts with queues of its own: another thread of the parent may have held
    one's lock at the fork, and would never release it in the child."""
    global _queues, _queues_lock
    _queues, _queues_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_queues_after_fork)


class QueuedDatabase(Database):
    """A sqlite-utils Database whose writes outside a transaction take their turn in the queue
    (those inside one have it already: write_transaction took it)."""

    def __init__(self, conn: Any, write_queue: WriteQueue):
        self.write_queue = write_queue
        super().__init__(conn)

    def execute(self, sql: str, parameters: Sequence | dict | None = None) -> Any:
        if self.conn.in_transaction or sql.lstrip().split(None, 1)[0].upper() not in WRITING_STATEMENTS:
            return super().execute(sql, parameters)
        with self.write_queue.turn():
            return super().execute(sql, parameters)


@contextlib.contextmanager
def write_transaction(db: Database) -> Iterator[Database]:
    """BEGIN IMMEDIATE ... COMMIT in the writers' queue: the write lock is taken first.

    A deferred transaction that reads and then writes fails at once (SQLITE_BUSY, no waiting)
    when another connection wrote in between; racing claims must wait their turn instead.
    Inside a transaction already open, this is a savepoint of it.
    """
    if db.conn.in_transaction or getattr(db, "dialect", "sqlite") == "postgresql":
        with db.atomic():  # PostgreSQL's row locks order its writers; no queue, no lock taken first
            yield db
        return
    queue = getattr(db, "write_queue", None)
    with queue.turn() if queue else contextlib.nullcontext():
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.conn.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise


@contextlib.contextmanager
def serialized(db: Database, name: str) -> Iterator[Database]:
    """A write transaction that no other one serialized on `name` overlaps, for a check and a write
    that must see each other (a count, then an insert that it allows). On SQLite every write
    transaction is so already (one writer at a time); on PostgreSQL, whose transactions run side by
    side, it takes an advisory lock on `name` until the transaction ends."""
    lock = getattr(db, "lock_name", None)
    with contextlib.nullcontext() if db.conn.in_transaction else write_transaction(db):
        if lock is not None:
            lock(name)
        yield db
