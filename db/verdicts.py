"""Queries on the verdicts of DBackup tag checks: one row per identity of the bytes checked."""

from __future__ import annotations

from sqlite_utils import Database

from db import select_rows


def tag_verdict(db: Database, identity: str) -> bool | None:
    """True for a tag found good, False for one found bad, None when these bytes were never checked."""
    rows = select_rows(db, "SELECT intact FROM tag_verdicts WHERE identity = ?", [identity])
    return bool(rows[0]["intact"]) if rows else None


def save_tag_verdict(db: Database, identity: str, intact: bool, now: float) -> None:
    db.execute(
        """
        INSERT INTO tag_verdicts (identity, intact, checked_at) VALUES (?, ?, ?)
        ON CONFLICT (identity) DO UPDATE SET intact = excluded.intact, checked_at = excluded.checked_at
        """,
        [identity, int(intact), now],
    )


def delete_old_verdicts(db: Database, before: float, limit: int) -> int:
    """Delete up to `limit` verdicts reached before `before`; a file served again is checked again."""
    cursor = db.execute(
        "DELETE FROM tag_verdicts WHERE identity IN"
        " (SELECT identity FROM tag_verdicts WHERE checked_at < :before LIMIT :limit)",
        {"before": before, "limit": limit},
    )
    return cursor.rowcount
