"""The write-ahead log copied back into the database file by a loop of each worker's own, rather than
by whichever request's commit finds it full.

SQLite does that copy (a checkpoint) at the commit that takes the log past 1,000 pages: the commit
then writes a few MB and syncs the file while its process holds the writers' turn (db/writes.py),
so that every writer of every worker waits behind it, and a gevent worker waiting for the turn
waits whole. The mints of a busy install saw it at their p99. A worker's connections therefore
leave checkpoints to this loop, which every CHECK_SECONDS, when the log has changed, runs a PASSIVE
checkpoint on a connection of its own, off the hub: one that waits for no writer and makes none
wait, copying what no reader still needs. Nothing here on PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

import db as database
from core.offloading import off_the_hub
from db import postgres

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.5


class Checkpointer:
    """The checkpoints of one SQLite database, for the process that starts it."""

    def __init__(self, database_path: str, check_seconds: float = CHECK_SECONDS):
        self.path, self.check_seconds = database_path, check_seconds
        self.passes = 0  # checkpoints run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Checkpoints taken over from the connections this process opens from now on."""
        if postgres.is_postgres(self.path) or self._thread is not None:
            return False
        database.leave_checkpoints()
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        seen, conn = None, None
        try:
            while not self._stop.wait(self.check_seconds):
                if (stamp := log_stamp(self.path)) not in (seen, None):
                    conn = conn or self._connect()
                    seen = self._checkpoint(conn, stamp) if conn is not None else None
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> sqlite3.Connection | None:
        try:
            return sqlite3.connect(self.path, timeout=database.BUSY_TIMEOUT_SECONDS, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("The database could not be opened to checkpoint its log: %s", exc)
            return None

    def _checkpoint(self, conn: sqlite3.Connection, stamp: tuple[int, int]) -> tuple[int, int] | None:
        """The log's stamp once checkpointed; None when it could not be (tried again next time)."""
        try:
            off_the_hub(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("The database's write-ahead log could not be checkpointed: %s", exc)
            return None
        self.passes += 1
        return stamp


def log_stamp(path: str) -> tuple[int, int] | None:
    """The write-ahead log's size and time of change; None where there is none (or it cannot be
    looked at: the checkpoint would fail alike)."""
    try:
        info = os.stat(f"{path}-wal")
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns
