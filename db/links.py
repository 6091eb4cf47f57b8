"""Queries on the links table: a link is one minted token, stored only as its SHA-256."""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

LINK_COLUMNS = (
    "id, storage_id, path, decrypt, created_by, created_at, expires_at,"
    " max_uses, uses, revoked_at, last_used_at, lease_until, bytes_sent"
)


@dataclass(frozen=True)
class Link:
    id: int
    storage_id: str
    path: str
    decrypt: bool
    created_by: int | None
    created_at: float
    expires_at: float
    max_uses: int
    uses: int
    revoked_at: float | None
    last_used_at: float | None
    lease_until: float | None
    bytes_sent: int = 0

    def unusable_reason(self, now: float) -> str | None:
        """Why this link cannot start a transfer now, or None if it can."""
        if self.revoked_at is not None:
            return "revoked"
        if self.uses >= self.max_uses:
            return "used"
        if self.expires_at <= now:
            return "expired"
        return None

    def state(self, now: float) -> str:
        return self.unusable_reason(now) or "active"


def _link(row: dict) -> Link:
    return Link(**{**row, "decrypt": bool(row["decrypt"])})


def insert_link(
    db: Database,
    *,
    token_hash: str,
    storage_id: str,
    path: str,
    decrypt: bool,
    created_by: int | None,
    created_at: float,
    expires_at: float,
    max_uses: int,
) -> Link:
    cursor = db.execute(
        "INSERT INTO links (token_hash, storage_id, path, decrypt, created_by, created_at,"
        " expires_at, max_uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [token_hash, storage_id, path, int(decrypt), created_by, created_at, expires_at, max_uses],
    )
    return get_link(db, cursor.lastrowid)


def get_link(db: Database, link_id: int) -> Link | None:
    rows = list(db.query(f"SELECT {LINK_COLUMNS} FROM links WHERE id = ?", [link_id]))
    return _link(rows[0]) if rows else None


def find_link(db: Database, token_hash: str) -> Link | None:
    rows = list(db.query(f"SELECT {LINK_COLUMNS} FROM links WHERE token_hash = ?", [token_hash]))
    return _link(rows[0]) if rows else None


def list_links(db: Database, created_by: int | None = None, limit: int = 200) -> list[Link]:
    """Newest first; every user's links when created_by is None."""
    where, params = ("WHERE created_by = ?", [created_by]) if created_by is not None else ("", [])
    sql = f"SELECT {LINK_COLUMNS} FROM links {where} ORDER BY id DESC LIMIT ?"
    return [_link(row) for row in db.query(sql, [*params, limit])]


def take_lease(db: Database, token_hash: str, lease_id: str, now: float, until: float) -> bool:
    """The claim: one statement that succeeds for exactly one of any number of racing requests."""
    cursor = db.execute(
        "UPDATE links SET lease_id = ?, lease_until = ?"
        " WHERE token_hash = ? AND uses < max_uses AND expires_at > ? AND revoked_at IS NULL"
        " AND (lease_until IS NULL OR lease_until <= ?)",
        [lease_id, until, token_hash, now, now],
    )
    return cursor.rowcount == 1


def consume_use(db: Database, token_hash: str, now: float) -> bool:
    """Count a use at once (a redirect: no transfer to wait for), in one statement like the claim."""
    cursor = db.execute(
        "UPDATE links SET uses = uses + 1, last_used_at = ?"
        " WHERE token_hash = ? AND uses < max_uses AND expires_at > ? AND revoked_at IS NULL"
        " AND (lease_until IS NULL OR lease_until <= ?)",
        [now, token_hash, now, now],
    )
    return cursor.rowcount == 1


def renew_leases(db: Database, lease_ids: list[str], until: float) -> None:
    marks = ", ".join("?" for _ in lease_ids)
    db.execute(f"UPDATE links SET lease_until = ? WHERE lease_id IN ({marks})", [until, *lease_ids])


def count_use(db: Database, link_id: int, lease_id: str, now: float, sent: int = 0) -> None:
    """Count a finished transfer and free the lease if it is still ours.

    A transfer that started before expiry counts even if the link expired meanwhile.
    """
    db.execute(
        "UPDATE links SET uses = uses + 1, last_used_at = ?, bytes_sent = bytes_sent + ?,"
        " lease_until = CASE WHEN lease_id = ? THEN NULL ELSE lease_until END,"
        " lease_id = NULLIF(lease_id, ?) WHERE id = ?",
        [now, sent, lease_id, lease_id, link_id],
    )


def release_lease(db: Database, link_id: int, lease_id: str, sent: int = 0) -> None:
    """Give the lease back if it is still ours, and add what this transfer sent to the link's tally."""
    db.execute(
        "UPDATE links SET bytes_sent = bytes_sent + ?,"
        " lease_until = CASE WHEN lease_id = ? THEN NULL ELSE lease_until END,"
        " lease_id = NULLIF(lease_id, ?) WHERE id = ?",
        [sent, lease_id, lease_id, link_id],
    )


def revoke_link(db: Database, link_id: int, now: float) -> bool:
    cursor = db.execute("UPDATE links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [now, link_id])
    return cursor.rowcount == 1


def delete_dead_links(db: Database, dead_before: float, now: float) -> int:
    """Delete links that can never be used again and died before `dead_before`."""
    cursor = db.execute(
        "DELETE FROM links WHERE (lease_until IS NULL OR lease_until <= :now) AND ("
        " expires_at <= :before"
        " OR (uses >= max_uses AND last_used_at <= :before)"
        " OR revoked_at <= :before)",
        {"now": now, "before": dead_before},
    )
    return cursor.rowcount
