"""Queries on the links table: a link is one minted token, stored only as its SHA-256."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlite_utils import Database

from db import inserted_id, select_rows

LINK_COLUMNS = (
    "id, storage_id, path, decrypt, created_by, created_at, expires_at,"
    " max_uses, uses, revoked_at, last_used_at, bytes_sent, mode, sent_etag,"
    " (SELECT COUNT(*) FROM claims WHERE claims.link_id = links.id) AS transfers"
)


class LinkState(StrEnum):
    """Where a link is in its life; every state but `active` is for good."""

    ACTIVE = "active"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


# Each state as SQL, in the order Link.unusable_reason tells them apart (revoked before used up,
# used up before expired), so that every link is in exactly one. Active and revoked links are few
# among a year of used and expired ones: they are listed first through their own indexes
# (links_expires_at: only links not yet expired; links_revoked_at), then read newest first by id,
# instead of reading every link newest first until a page is full.
STATE_CONDITIONS = {
    LinkState.ACTIVE: "id IN (SELECT id FROM links WHERE expires_at > :now)"
    " AND revoked_at IS NULL AND uses < max_uses",
    LinkState.USED: "revoked_at IS NULL AND uses >= max_uses",
    LinkState.EXPIRED: "revoked_at IS NULL AND uses < max_uses AND expires_at <= :now",
    LinkState.REVOKED: "id IN (SELECT id FROM links WHERE revoked_at IS NOT NULL)",
}
FEW = (LinkState.ACTIVE, LinkState.REVOKED)


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
    bytes_sent: int = 0
    mode: str | None = None  # how its downloads deliver the file (core.delivery.DeliveryMode)
    transfers: int = 0  # claims held by running transfers (or lapsed, not yet settled)
    sent_etag: str | None = None  # the ETag of what its latest transfer started sending

    def unusable_reason(self, now: float) -> LinkState | None:
        """Why this link cannot start a transfer now, or None if it can."""
        if self.revoked_at is not None:
            return LinkState.REVOKED
        if self.uses >= self.max_uses:
            return LinkState.USED
        if self.expires_at <= now:
            return LinkState.EXPIRED
        return None

    def state(self, now: float) -> LinkState:
        return self.unusable_reason(now) or LinkState.ACTIVE


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
    mode: str | None = None,
) -> Link:
    link_id = inserted_id(
        db,
        "INSERT INTO links (token_hash, storage_id, path, decrypt, created_by, created_at,"
        " expires_at, max_uses, mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [token_hash, storage_id, path, int(decrypt), created_by, created_at, expires_at, max_uses, mode],
    )
    return get_link(db, link_id)


def get_link(db: Database, link_id: int) -> Link | None:
    rows = select_rows(db, f"SELECT {LINK_COLUMNS} FROM links WHERE id = ?", [link_id])
    return _link(rows[0]) if rows else None


def find_link(db: Database, token_hash: str) -> Link | None:
    rows = select_rows(db, f"SELECT {LINK_COLUMNS} FROM links WHERE token_hash = ?", [token_hash])
    return _link(rows[0]) if rows else None


def list_links(db: Database, created_by: int | None = None, limit: int = 200) -> list[Link]:
    """Newest first; every user's links when created_by is None."""
    where, params = ("WHERE created_by = ?", [created_by]) if created_by is not None else ("", [])
    sql = f"SELECT {LINK_COLUMNS} FROM links {where} ORDER BY id DESC LIMIT ?"
    return [_link(row) for row in select_rows(db, sql, [*params, limit])]


@dataclass(frozen=True)
class LinkFilter:
    """Which links a page lists: one user's (None: everyone's), in one state, whose path holds `name`."""

    created_by: int | None = None
    state: LinkState | None = None
    name: str = ""


def _like_pattern(text: str) -> str:
    """A LIKE pattern for `text` anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filter_sql(where: LinkFilter, now: float) -> tuple[list[str], dict]:
    conditions, params = [], {"now": now}
    if where.created_by is not None:
        # For the few, SQLite would rather walk all the user's links by links_created_by: `+` keeps it off.
        conditions.append("+created_by = :user" if where.state in FEW else "created_by = :user")
        params["user"] = where.created_by
    if where.state is not None:
        conditions.append(STATE_CONDITIONS[where.state])
    if where.name:
        conditions.append("LOWER(path) LIKE LOWER(:name) ESCAPE '\\'")  # as SQLite's LIKE: any case
        params["name"] = _like_pattern(where.name)
    return conditions, params


def links_before(db: Database, where: LinkFilter, now: float, before: int | None, limit: int) -> list[Link]:
    """Up to `limit` links that match, with ids below `before` (None: from the newest), newest first.

    The id is the cursor: links minted meanwhile never shift a page, so paging down from the
    newest meets every link that was there exactly once."""
    conditions, params = _filter_sql(where, now)
    if before is not None:
        conditions.append("id < :cursor")
        params["cursor"] = before
    where_sql = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"SELECT {LINK_COLUMNS} FROM links {where_sql} ORDER BY id DESC LIMIT :limit"
    return [_link(row) for row in select_rows(db, sql, {**params, "limit": limit})]


def links_after(db: Database, where: LinkFilter, now: float, after: int, limit: int) -> list[Link]:
    """Up to `limit` links that match, with ids above `after`, the oldest of them first."""
    conditions, params = _filter_sql(where, now)
    conditions.append("id > :cursor")
    sql = f"SELECT {LINK_COLUMNS} FROM links WHERE {' AND '.join(conditions)} ORDER BY id LIMIT :limit"
    return [_link(row) for row in select_rows(db, sql, {**params, "cursor": after, "limit": limit})]


def consume_use(db: Database, token_hash: str, now: float) -> bool:
    """Count a use at once (a redirect: no transfer to wait for), in one statement like a claim."""
    cursor = db.execute(
        "UPDATE links SET uses = uses + 1, last_used_at = :now"
        " WHERE token_hash = :hash AND expires_at > :now AND revoked_at IS NULL"
        " AND uses + (SELECT COUNT(*) FROM claims WHERE claims.link_id = links.id) < max_uses",
        {"hash": token_hash, "now": now},
    )
    return cursor.rowcount == 1


# A link that can still start a transfer: not revoked, not expired, not used up.
WORKING = "revoked_at IS NULL AND expires_at > :now AND uses < max_uses"
# ... or that still has one running (a transfer started before expiry may finish).
SERVING = f"({WORKING} OR revoked_at IS NULL AND EXISTS (SELECT 1 FROM claims WHERE link_id = links.id))"


def count_working_links(db: Database, now: float) -> dict[str, int]:
    """Working links per storage id, found through the expiry index (live links are few)."""
    sql = f"SELECT storage_id, COUNT(*) AS working FROM links WHERE {WORKING} GROUP BY storage_id"
    return {row["storage_id"]: row["working"] for row in select_rows(db, sql, {"now": now})}


def revoke_storage_links(db: Database, storage_id: str, now: float) -> list[Link]:
    """Revoke every link to a storage that could still send a byte, and return them as they were.
    Call it inside a transaction, so that the links read are the links revoked."""
    where = f"storage_id = :storage AND {SERVING}"
    params = {"storage": storage_id, "now": now}
    links = [_link(row) for row in select_rows(db, f"SELECT {LINK_COLUMNS} FROM links WHERE {where}", params)]
    db.execute(f"UPDATE links SET revoked_at = :now WHERE {where}", params)
    return links


def revoke_link(db: Database, link_id: int, now: float) -> bool:
    cursor = db.execute("UPDATE links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [now, link_id])
    return cursor.rowcount == 1


# What makes a link dead since before :before, each answered by an index of its own (m001 and
# m009): expired, revoked, or used up. A link may be dead in more than one way.
DEAD_SINCE = (
    "expires_at <= :before",
    "revoked_at <= :before",
    "uses >= max_uses AND last_used_at <= :before",
)
NO_CLAIM = "NOT EXISTS (SELECT 1 FROM claims WHERE claims.link_id = links.id)"


def delete_dead_links(db: Database, dead_before: float, limit: int) -> int:
    """Delete up to `limit` links that can never be used again, died before `dead_before` and
    have no claim left.

    Each way of dying is looked up in its own index, so a batch reads about as many rows as it
    deletes however many links are kept: UNION ALL stops reading once `limit` distinct ids are
    found (a link dead in two ways is found twice).
    """
    found = " UNION ALL ".join(
        f"SELECT * FROM (SELECT id FROM links WHERE {dead} AND {NO_CLAIM} LIMIT :limit) AS way{number}"
        for number, dead in enumerate(DEAD_SINCE)
    )
    cursor = db.execute(
        f"DELETE FROM links WHERE id IN (SELECT DISTINCT id FROM ({found}) AS dead LIMIT :limit)",
        {"before": dead_before, "limit": limit},
    )
    return cursor.rowcount
