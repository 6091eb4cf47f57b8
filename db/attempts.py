"""Queries on attempts: one row per attempt counted against a key (such as an address), kept
until `expires_at`, when it drops out of the window its limit counts over."""

from __future__ import annotations

from sqlite_utils import Database

from db import select_rows, serialized


def purge_attempts(db: Database, now: float) -> None:
    db.execute("DELETE FROM attempts WHERE expires_at <= ?", [now])


def add_attempt_within(db: Database, key: str, most: int, now: float, expires_at: float) -> int | None:
    """Count one more attempt against `key` unless `most` are counted already: one statement
    whose rowcount decides. The new attempt's id, or None."""
    with serialized(db, f"attempts:{key}"):
        rows = db.execute(
            "INSERT INTO attempts (key, expires_at) SELECT ?, ?"
            " WHERE (SELECT COUNT(*) FROM attempts WHERE key = ? AND expires_at > ?) < ? RETURNING id",
            [key, expires_at, key, now, most],
        ).fetchall()  # to the end: sqlite3 ends a RETURNING statement's write only then
    return rows[0][0] if rows else None


def next_expiry(db: Database, key: str, now: float) -> float | None:
    """When the oldest attempt counted against `key` drops out, freeing a place."""
    sql = "SELECT MIN(expires_at) AS at FROM attempts WHERE key = ? AND expires_at > ?"
    rows = select_rows(db, sql, [key, now])
    return rows[0]["at"]


def delete_attempt(db: Database, attempt_id: int) -> None:
    db.execute("DELETE FROM attempts WHERE id = ?", [attempt_id])
