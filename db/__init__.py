"""Database access: connections kept open in a small pool per process, one taken by a request at its
first query and given back at teardown; the lease keeper and the end of a transfer take theirs
from the same pool.

The database is SQLite, a file in the data dir, unless ONCELINK_DATABASE_URL names a PostgreSQL
server (db/postgres.py: the one place where the two differ). Everywhere else a database is named by
its `target`: the SQLite file's path or the PostgreSQL URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from flask import Flask, current_app, g, request
from sqlite_utils import Database

from db import postgres
from db.migrations import migrations
from db.pg_migrations import apply_pending
from db.writes import QueuedDatabase, write_queue_for
from db.writes import serialized as serialized  # where the queries and core/ find them
from db.writes import write_transaction as write_transaction

log = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 10
DEFAULT_POOL_SIZE = 8

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


# Whatever either engine raises; a query's caller that must not fail catches these.
DatabaseError = (sqlite3.Error, postgres.Error)


def connect(path: str) -> Database:
    """Open the database: a PostgreSQL URL with a connection of its own; a SQLite file with WAL, a
    busy timeout and foreign keys on, its writes queued (db/writes.py).

    Usable from any thread: a pooled connection serves one request thread, then another, or the
    lease keeper; the pool hands it to one user at a time.
    """
    if postgres.is_postgres(path):
        return postgres.connect(path)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    db = QueuedDatabase(conn, write_queue_for(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def select_rows(db: Database, sql: str, params: Sequence | dict = ()) -> list[dict]:
    """The rows of a SELECT as dicts, in one statement: sqlite-utils' query() wraps each one in a
    savepoint and its release, two statements more, to undo writes that a SELECT never makes."""
    cursor = db.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def inserted_id(db: Database, sql: str, params: Sequence | dict) -> int:
    """The id that an `INSERT ... RETURNING id` gave its row, committed with it: both engines give
    ids this way, and sqlite3 leaves a RETURNING statement's write open outside a transaction."""
    with write_transaction(db):
        return db.execute(sql, params).fetchall()[0][0]


def cannot_write(exc: BaseException) -> bool:
    """True when `exc` means the database cannot be written for now: worth a 503 and a retry,
    unlike a programming error. Extended codes (SQLITE_IOERR_WRITE...) keep the primary code
    in their low byte."""
    if postgres.unavailable(exc):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in UNWRITABLE_CODES


def migrate(path: str) -> None:
    """Apply pending migrations; a file lock keeps concurrent workers from racing (on PostgreSQL, an
    advisory lock keeps the hosts from racing too)."""
    if postgres.is_postgres(path):
        db = postgres.connect(path)
        try:
            apply_pending(db)
        finally:
            db.close()
        return
    lock_path = Path(path).with_suffix(".migrate.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        db = connect(path)
        try:
            migrations.apply(db)
        finally:
            db.close()


@contextlib.contextmanager
def exclusive(path: str, name: str) -> Iterator[bool]:
    """True while no other process holds `name` for the same database, False if one does: a lock
    file beside a SQLite file; an advisory lock of PostgreSQL's, which every host sees."""
    if postgres.is_postgres(path):
        with pooled(path) as db, db.holding(name) as held:
            yield held
        return
    with open(Path(path).with_suffix(f".{name}.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def close_quietly(db: Database) -> None:
    with contextlib.suppress(*DatabaseError):
        db.close()


class ConnectionPool:
    """Connections to one database file, kept open between uses: at most `size` idle at a time.

    Opening one costs four PRAGMAs, and closing the last one checkpoints and deletes the WAL, so
    that the next burst after an idle second starts by creating it again. `take` never waits:
    with every kept connection in use (a thread or greenlet each), it opens one more, which
    `give_back` closes when `size` are idle already. A connection that met an error saying the
    database cannot be written, or that is still inside a transaction, is closed, not kept.
    """

    def __init__(self, path: str, size: int):
        self.path, self.size = path, size  # size 0: none kept, each use opens and closes its own
        self.closed = False
        self._idle: queue.LifoQueue[Database] = queue.LifoQueue(maxsize=max(size, 1))

    def take(self) -> Database:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return connect(self.path)

    def give_back(self, db: Database, broken: bool = False) -> None:
        if broken or self.closed or self.size < 1 or db.conn.in_transaction:
            close_quietly(db)
            return
        try:
            self._idle.put_nowait(db)
        except queue.Full:
            close_quietly(db)

    def close(self) -> None:
        """Close the idle connections; those in use are closed when they are given back."""
        self.closed = True
        while True:
            try:
                close_quietly(self._idle.get_nowait())
            except queue.Empty:
                return


_pools: dict[str, ConnectionPool | postgres.PostgresPool] = {}
_pools_lock = threading.Lock()


def pool_for(path: str, size: int = DEFAULT_POOL_SIZE) -> ConnectionPool | postgres.PostgresPool:
    """This process's pool for the database at `path`, made with `size` at first use."""
    with _pools_lock:
        pool = _pools.get(path)
        if pool is None:
            kind = postgres.PostgresPool if postgres.is_postgres(path) else ConnectionPool
            pool = _pools[path] = kind(path, size)
        return pool


def close_pool(path: str) -> None:
    """Close the pool of `path` and forget it (a test's app is done; its data dir goes)."""
    with _pools_lock:
        pool = _pools.pop(path, None)
    if pool is not None:
        pool.close()


def close_pools() -> None:
    for path in list(_pools):
        close_pool(path)


def _forget_pools_after_fork() -> None:
    """A forked child must not use, nor close, its parent's connections: it starts its own pools."""
    global _pools, _pools_lock
    _pools, _pools_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


@contextlib.contextmanager
def pooled(path: str) -> Iterator[Database]:
    """A connection from the pool for work outside a request: the lease keeper, a transfer's end."""
    pool = pool_for(path)
    db = pool.take()
    try:
        yield db
    except BaseException as exc:
        pool.give_back(db, broken=isinstance(exc, DatabaseError))
        raise
    pool.give_back(db)


def get_db() -> Database:
    """The request's database connection, taken from the pool at its first use."""
    if "db" not in g:
        g.db = pool_for(current_app.config["DATABASE"]).take()
    return g.db


def discard_db() -> None:
    """Close the request's connection instead of giving it back: it met an error that says the
    database cannot be written (a full disk...), and a fresh one is safer than one that did."""
    db = g.pop("db", None)
    if db is not None:
        close_quietly(db)


def close_db(exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        pool_for(current_app.config["DATABASE"]).give_back(db, broken=isinstance(exc, DatabaseError))


class PendingMigrations:
    """Migrations that could not run at start, tried again before each request until they have:
    until then every request answers 503, and none meets a schema older than the code. Requests to
    the `exempt` blueprints pass all the same (/healthz says what fails, in its own words)."""

    def __init__(self, path: str, exempt: frozenset[str] = frozenset()):
        self.path, self.exempt = path, exempt
        self.done = False

    def __call__(self) -> None:
        if not self.done and request.blueprint not in self.exempt:
            migrate(self.path)
            self.done = True


def init_app(app: Flask, exempt: frozenset[str] = frozenset()) -> None:
    pool_for(app.config["DATABASE"], int(app.config["DATABASE_CONNECTIONS"]))
    app.teardown_appcontext(close_db)
    try:
        migrate(app.config["DATABASE"])
    except DatabaseError as exc:
        if not cannot_write(exc):
            raise
        # gunicorn stops the whole server when a worker fails to boot; one it restarts while the
        # disk is full must boot, answer 503, and recover when space returns.
        log.warning("Database cannot be written at start, migrations wait for a request: %s", exc)
        app.before_request(PendingMigrations(app.config["DATABASE"], exempt))
