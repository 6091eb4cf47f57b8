"""SQLite access: one sqlite-utils Database per request, opened lazily and closed at teardown."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, current_app, g
from sqlite_utils import Database

from db.migrations import migrations

log = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 10

# Result codes that say the database cannot be written now (a full disk, an I/O error, a file
# made read-only, a lock held too long), not that a statement is wrong: they pass by themselves.
UNWRITABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
    }
)


def connect(path: str) -> Database:
    """Open the database with WAL, a busy timeout and foreign keys on."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)
    db = Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def cannot_write(exc: BaseException) -> bool:
    """True when `exc` means the database cannot be written for now: worth a 503 and a retry,
    unlike a programming error. Extended codes (SQLITE_IOERR_WRITE...) keep the primary code
    in their low byte."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in UNWRITABLE_CODES


@contextlib.contextmanager
def write_transaction(db: Database) -> Iterator[Database]:
    """BEGIN IMMEDIATE ... COMMIT: the write lock is taken first, waiting out other writers.

    A deferred transaction that reads and then writes fails at once (SQLITE_BUSY, no waiting)
    when another connection wrote in between; racing claims must wait their turn instead.
    Inside a transaction already open, this is a savepoint of it.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.conn.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise


def migrate(path: str) -> None:
    """Apply pending migrations; a file lock keeps concurrent workers from racing."""
    lock_path = Path(path).with_suffix(".migrate.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        db = connect(path)
        try:
            migrations.apply(db)
        finally:
            db.close()


def get_db() -> Database:
    """The request's database connection."""
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


class PendingMigrations:
    """Migrations that could not run at start, tried again before each request until they have:
    until then every request answers 503, and none meets a schema older than the code."""

    def __init__(self, path: str):
        self.path = path
        self.done = False

    def __call__(self) -> None:
        if not self.done:
            migrate(self.path)
            self.done = True


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
    try:
        migrate(app.config["DATABASE"])
    except sqlite3.DatabaseError as exc:
        if not cannot_write(exc):
            raise
        # gunicorn stops the whole server when a worker fails to boot; one it restarts while the
        # disk is full must boot, answer 503, and recover when space returns.
        log.warning("Database cannot be written at start, migrations wait for a request: %s", exc)
        app.before_request(PendingMigrations(app.config["DATABASE"]))
