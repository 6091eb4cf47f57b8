"""PostgreSQL behind the same calls as SQLite: the one place where the two dialects differ.

The query functions in db/ are written once, in SQL both engines run, with sqlite3's placeholders
(`?` and `:name`). `PostgresDatabase` offers the part of sqlite-utils' `Database` they use
(`execute`, `conn.in_transaction`, `atomic`, `close`) over a psycopg 3 connection in autocommit
mode, so a statement outside a transaction commits by itself as it does on SQLite; it turns the
placeholders into psycopg's and sends Python booleans as integers (the schema keeps SQLite's 0/1
columns). `write_transaction` opens a transaction with psycopg; PostgreSQL's row locks do what the
write queue does for SQLite, so none is taken. Connections come from a psycopg_pool pool per process.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Dumper
from psycopg_pool import ConnectionPool, PoolTimeout

URL_SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_SECONDS = 5
POOL_WAIT_SECONDS = 10  # for a connection while the pool's are all busy
TRY_SECONDS = 1  # between two looks at whether the pool's attempts to connect have failed

# Quoted text passes unchanged; outside it, `?` and `:name` become psycopg's placeholders and a
# literal `%` is doubled. `::` (a cast) is not a named placeholder.
_PLACEHOLDERS = {"?": "%s", "%": "%%"}
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|\?|:([A-Za-z_]\w*)|%")


def is_postgres(target: str) -> bool:
    return str(target).startswith(URL_SCHEMES)


def translated(sql: str) -> str:
    """sqlite3's placeholders as psycopg's: `?` -> `%s`, `:name` -> `%(name)s`, `%` -> `%%`."""

    def replace(match: re.Match) -> str:
        found = match.group(0)
        if match.group(1):
            return f"%({match.group(1)})s"
        return _PLACEHOLDERS.get(found, found)

    return _TOKENS.sub(replace, sql)


class BoolAsInteger(Dumper):
    """True and False as 1 and 0: the flags are integer columns, as SQLite has them."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _Connection:
    """What the query functions ask of `db.conn`: whether a transaction is open."""

    def __init__(self, conn: psycopg.Connection):
        self.raw = conn

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def executemany(self, sql: str, rows) -> None:
        with self.raw.cursor() as cursor:
            cursor.executemany(translated(sql), rows)


class PostgresDatabase:
    """One pooled PostgreSQL connection, spoken to as the queries speak to SQLite."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection, pool: ConnectionPool | None = None):
        self.conn = _Connection(conn)
        self.pool = pool

    def execute(self, sql: str, parameters: Sequence | dict | None = None) -> psycopg.Cursor:
        return self.conn.raw.execute(translated(sql), parameters or None)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[PostgresDatabase]:
        """A transaction, or a savepoint of the one open."""
        with self.conn.raw.transaction():
            yield self

    def lock_name(self, name: str) -> None:
        """An advisory lock on `name`, held until the transaction open ends (db.writes.serialized)."""
        self.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [name])

    @contextlib.contextmanager
    def holding(self, name: str) -> Iterator[bool]:
        """Whether this session got the advisory lock on `name` (not waiting); released at the end."""
        key = "SELECT {}(hashtextextended(?, 0))"
        held = self.execute(key.format("pg_try_advisory_lock"), [name]).fetchone()[0]
        try:
            yield held
        finally:
            if held:
                self.execute(key.format("pg_advisory_unlock"), [name])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.putconn(self.conn.raw)
            self.pool = None
        elif not self.conn.raw.closed:
            self.conn.raw.close()


def configure(conn: psycopg.Connection) -> None:
    """Every connection the pool opens: autocommit, and booleans sent as integers."""
    conn.autocommit = True
    conn.adapters.register_dumper(bool, BoolAsInteger)


def open_pool(url: str, size: int) -> ConnectionPool:
    """A pool that opens connections as asked, up to `size` + a few, and fails fast when the
    server does not answer (a request then gets a 503, not a hang)."""
    return ConnectionPool(
        url,
        min_size=0,
        max_size=max(size, 1) + 4,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        configure=configure,
        check=ConnectionPool.check_connection,
        timeout=POOL_WAIT_SECONDS,
        open=True,
    )


def connect(url: str) -> PostgresDatabase:
    """A connection of its own, outside any pool (migrations, the command line)."""
    conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    configure(conn)
    return PostgresDatabase(conn)


class PostgresPool:
    """This process's connections to one PostgreSQL database, with the SQLite pool's calls."""

    def __init__(self, url: str, size: int):
        self.pool = open_pool(url, size)
        self._failed_before = 0  # the pool's failed attempts to connect when it last gave one

    def take(self) -> PostgresDatabase:
        """A connection: waited for up to POOL_WAIT_SECONDS while the pool's are all busy, but not
        once an attempt to connect has failed since the pool last gave one (PoolTimeout, a 503
        in a second rather than ten while the server is down)."""
        deadline = time.monotonic() + POOL_WAIT_SECONDS
        while True:
            try:
                conn = self.pool.getconn(timeout=max(min(TRY_SECONDS, deadline - time.monotonic()), 0.01))
            except PoolTimeout:
                if time.monotonic() >= deadline or self._failed() > self._failed_before:
                    raise
                continue
            self._failed_before = self._failed()
            return PostgresDatabase(conn, self.pool)

    def _failed(self) -> int:
        return self.pool.get_stats().get("connections_errors", 0)

    def give_back(self, db: PostgresDatabase, broken: bool = False) -> None:
        """Back to the pool; one left inside a transaction, or that met an error, is rolled back
        first (the pool's own check drops it when the server is gone)."""
        raw, pool = db.conn.raw, db.pool
        db.pool = None
        if pool is None:
            return
        if broken or db.conn.in_transaction:
            with contextlib.suppress(psycopg.Error):
                raw.rollback()
        pool.putconn(raw)

    def close(self) -> None:
        self.pool.close()


# Errors that say the database cannot be reached or written for now, not that a statement is wrong.
UNAVAILABLE = (
    psycopg.OperationalError,
    pg_errors.AdminShutdown,
    pg_errors.CannotConnectNow,
    pg_errors.DiskFull,
    pg_errors.ReadOnlySqlTransaction,
    pg_errors.LockNotAvailable,
)


def unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE)


Error = psycopg.Error
