"""Queries on the claims table: one row per running transfer of a link, with its own lease.

The invariant every statement here keeps: `uses + claims <= max_uses` for each link, so a
link never serves more transfers at once than it has uses left, and never counts more uses
than it was minted for. A claim leaves the table in one of three ways, each in one transaction:
completed (a use is counted), released (nothing counted), or reaped once its lease has lapsed
(a 'sending' claim is given back; a 'final' one is counted, since its transfer may have
delivered the end of the file).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from db import select_rows, serialized


@dataclass(frozen=True)
class LapsedClaim:
    id: str
    link_id: int
    state: str
    length: int
    lease_until: float

    @property
    def counted(self) -> bool:
        return self.state == "final"


def insert_claim(
    db: Database,
    *,
    claim_id: str,
    link_id: int,
    counts: bool,
    length: int,
    budget: int,
    now: float,
    until: float,
    etag: str | None,
) -> bool:
    """The claim: one conditional statement, true for at most as many racing transfers as the
    link has uses left, and only while their ranges fit in the link's byte budget. A claim taken
    notes the ETag of what its transfer sends on the link, which a resume is read against.

    Lapsed claims must have been reaped first, in the same transaction.
    """
    with serialized(db, f"link:{link_id}"):  # racing claims of one link see each other's rows
        cursor = db.execute(
            "INSERT INTO claims (id, link_id, counts, length, started_at, lease_until)"
            " SELECT :claim, id, :counts, :length, :now, :until FROM links"
            " WHERE id = :link AND revoked_at IS NULL AND expires_at > :now"
            " AND uses + (SELECT COUNT(*) FROM claims WHERE link_id = :link) < max_uses"
            " AND bytes_sent + :length"
            "  + (SELECT COALESCE(SUM(length), 0) FROM claims WHERE link_id = :link) <= :budget",
            {
                "claim": claim_id,
                "link": link_id,
                "counts": int(counts),
                "length": length,
                "budget": budget,
                "now": now,
                "until": until,
            },
        )
        if cursor.rowcount != 1:
            return False
        db.execute("UPDATE links SET sent_etag = ? WHERE id = ?", [etag, link_id])
    return True


def lapsed_claims(db: Database, now: float, link_id: int | None = None) -> list[LapsedClaim]:
    """Claims whose lease ran out: their worker died, froze, or could not write."""
    where, params = "lease_until <= ?", [now]
    if link_id is not None:
        where, params = where + " AND link_id = ?", [*params, link_id]
    sql = f"SELECT id, link_id, state, length, lease_until FROM claims WHERE {where}"
    return [LapsedClaim(**row) for row in select_rows(db, sql, params)]


def settle_lapsed_claim(db: Database, claim: LapsedClaim) -> None:
    """Remove a lapsed claim: its whole range is charged to the byte budget (nobody can say
    how much of it left), and a 'final' one is counted as a use."""
    if db.execute("DELETE FROM claims WHERE id = ?", [claim.id]).rowcount != 1:
        return  # settled meanwhile by another (on PostgreSQL, another host's transaction)
    db.execute(
        "UPDATE links SET bytes_sent = bytes_sent + ?, uses = uses + ?,"
        " last_used_at = CASE WHEN ? = 1 THEN ? ELSE last_used_at END WHERE id = ?",
        [claim.length, int(claim.counted), int(claim.counted), claim.lease_until, claim.link_id],
    )


# A claim is still held when its lease has not lapsed and its link was not revoked.
LINK_NOT_REVOKED = "(SELECT revoked_at FROM links WHERE links.id = claims.link_id) IS NULL"


def renew_claim(db: Database, claim_id: str, now: float, until: float) -> bool:
    """Extend a claim that is still held: not lapsed (or final) and its link not revoked."""
    cursor = db.execute(
        "UPDATE claims SET lease_until = :until WHERE id = :claim"
        f" AND (lease_until > :now OR state = 'final') AND {LINK_NOT_REVOKED}",
        {"claim": claim_id, "now": now, "until": until},
    )
    return cursor.rowcount == 1


def mark_final(db: Database, claim_id: str, now: float, until: float) -> bool:
    """Before the last piece: from here on the claim is never given back, whatever happens."""
    cursor = db.execute(
        "UPDATE claims SET state = 'final', lease_until = :until"
        f" WHERE id = :claim AND state = 'sending' AND lease_until > :now AND {LINK_NOT_REVOKED}",
        {"claim": claim_id, "now": now, "until": until},
    )
    return cursor.rowcount == 1


def complete_claim(db: Database, claim_id: str, link_id: int, now: float, sent: int) -> bool:
    """Count the use of a delivered transfer, if its claim is still there (a reaper may have
    counted it already). Call inside a transaction."""
    if db.execute("DELETE FROM claims WHERE id = ?", [claim_id]).rowcount != 1:
        return False
    db.execute(
        "UPDATE links SET uses = uses + 1, last_used_at = ?, bytes_sent = bytes_sent + ? WHERE id = ?",
        [now, sent, link_id],
    )
    return True


def release_claim(db: Database, claim_id: str, link_id: int, sent: int) -> bool:
    """Give back a claim whose transfer did not deliver the end; its bytes go to the budget.
    Call inside a transaction."""
    if db.execute("DELETE FROM claims WHERE id = ?", [claim_id]).rowcount != 1:
        return False
    db.execute("UPDATE links SET bytes_sent = bytes_sent + ? WHERE id = ?", [sent, link_id])
    return True


def revoked(db: Database, link_id: int) -> bool:
    row = db.execute("SELECT revoked_at FROM links WHERE id = ?", [link_id]).fetchone()
    return row is None or row[0] is not None
