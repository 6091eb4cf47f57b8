"""Notification targets and the queue of notifications to send them (see m015 in db/migrations.py).

A notification is queued by the statement after the event that causes it, in the same transaction
(db/events.py), so it is sent once that commits, whatever happens to the worker afterwards. Its
payload is fixed then: the event may be purged before a retry. Senders take rows one at a time
with a single UPDATE whose rowcount decides, so two workers never send the same one at once.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlite_utils import Database

from db import select_rows, write_transaction

ADDRESSES_LISTED = 10  # an `addresses` notice names at most this many


class Notice(StrEnum):
    """What a target can ask to hear of."""

    COMPLETED = "completed"  # a transfer delivered the whole file, or a redirect used the link
    ABORTED = "aborted"  # a transfer stopped short: the client went away or stalled
    REJECTED = "rejected"  # someone tried a link that is used up, expired or revoked
    ADDRESSES = "addresses"  # a link's transfers came from a second (third...) address
    TEST = "test"  # sent from the admin page or `notify test`, to check a target


SUBSCRIBABLE = (Notice.COMPLETED, Notice.ABORTED, Notice.REJECTED, Notice.ADDRESSES)


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class TargetRecord:
    id: str
    name: str
    kind: str
    url: str  # sealed by the master key
    url_hint: str  # scheme://host[:port], for pages: the rest of a URL may hold a token
    secret: str  # sealed by the master key
    events: tuple[str, ...]
    enabled: bool
    created_at: float


@dataclass(frozen=True)
class Delivery:
    """One queued notification, as the admin sees it or a sender holds it."""

    id: int
    message_id: str
    target_id: str
    notice: str
    link_id: int | None
    payload: str
    created_at: float
    state: str
    attempts: int
    next_at: float
    last_status: int | None
    last_error: str | None
    done_at: float | None
    claimed_by: str | None = None


TARGET_COLUMNS = "id, name, kind, url, url_hint, secret, events, enabled, created_at"
DELIVERY_COLUMNS = ", ".join(Delivery.__dataclass_fields__)


def _target(row: dict) -> TargetRecord:
    events = tuple(json.loads(row["events"]))
    return TargetRecord(**{**row, "events": events, "enabled": bool(row["enabled"])})


def list_targets(db: Database) -> list[TargetRecord]:
    rows = select_rows(db, f"SELECT {TARGET_COLUMNS} FROM notify_targets ORDER BY id")
    return [_target(row) for row in rows]


def get_target(db: Database, target_id: str) -> TargetRecord | None:
    rows = select_rows(db, f"SELECT {TARGET_COLUMNS} FROM notify_targets WHERE id = ?", [target_id])
    return _target(rows[0]) if rows else None


def _target_values(record: TargetRecord) -> dict:
    return {**record.__dict__, "events": json.dumps(list(record.events)), "enabled": int(record.enabled)}


def insert_target(db: Database, record: TargetRecord) -> None:
    db.execute(
        "INSERT INTO notify_targets (id, name, kind, url, url_hint, secret, events, enabled, created_at)"
        " VALUES (:id, :name, :kind, :url, :url_hint, :secret, :events, :enabled, :created_at)",
        _target_values(record),
    )


def update_target(db: Database, record: TargetRecord) -> bool:
    """Save everything but the id, kind and creation time; False when the target is gone."""
    cursor = db.execute(
        "UPDATE notify_targets SET name = :name, url = :url, url_hint = :url_hint, secret = :secret,"
        " events = :events, enabled = :enabled WHERE id = :id",
        _target_values(record),
    )
    return cursor.rowcount == 1


def delete_target(db: Database, target_id: str) -> bool:
    """Forget a target and what was queued for it (the foreign key cascades)."""
    return db.execute("DELETE FROM notify_targets WHERE id = ?", [target_id]).rowcount == 1


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def payload_of(notice: Notice, at: float, data: dict) -> str:
    """The JSON body, in the Standard Webhooks shape: a type, a timestamp and the data."""
    return json.dumps({"type": f"link.{notice}", "timestamp": _iso(at), "data": data}, separators=(",", ":"))


def event_data(event: dict) -> dict:
    """What a notification tells of an event row (db.events.Event's fields); never a token."""
    return {
        "event": event["event"],
        "at": _iso(event["at"]),
        "link": {"id": event["link_id"], "storage": event["storage_id"], "path": event["path"]},
        "mode": event["mode"],
        "reason": event["reason"],
        "start": event["start"],
        "bytes": event["bytes"],
        "seconds": event["seconds"],
        "client": {"ip": event["client_ip"], "userAgent": event["user_agent"]},
    }


def _enabled_targets(db: Database) -> dict[str, frozenset[str]]:
    """Each enabled target's id and what it asks for: one read of a table of a few rows (the
    events are a JSON list, read here rather than by either engine's own JSON functions)."""
    rows = db.execute("SELECT id, events FROM notify_targets WHERE enabled = 1").fetchall()
    return {target_id: frozenset(json.loads(events)) for target_id, events in rows}


def wanted_notices(db: Database) -> frozenset[str]:
    """What the enabled targets ask for, together."""
    return frozenset().union(*_enabled_targets(db).values())


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def queue_notice(db: Database, notice: Notice, link_id: int | None, payload: str, now: float) -> int:
    """Queue `payload` for every enabled target that asks for `notice`, due at once; how many."""
    targets = [target for target, wanted in _enabled_targets(db).items() if notice in wanted]
    for target_id in targets:
        db.execute(
            "INSERT INTO notifications (message_id, target_id, notice, link_id, payload, created_at, next_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [new_message_id(), target_id, str(notice), link_id, payload, now, now],
        )
    return len(targets)


def queue_test(db: Database, target_id: str, payload: str, now: float) -> None:
    """A test notification for one target, whatever it asks for and even when it is disabled."""
    db.execute(
        "INSERT INTO notifications (message_id, target_id, notice, payload, created_at, next_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [new_message_id(), target_id, str(Notice.TEST), payload, now, now],
    )


def transfer_addresses(db: Database, link_id: int, kinds: tuple[str, ...]) -> list[str]:
    """The addresses a link's transfers came from, first seen first (through the index on link_id)."""
    marks = ", ".join("?" * len(kinds))
    rows = db.execute(
        f"SELECT client_ip FROM link_events WHERE link_id = ? AND event IN ({marks})"
        " AND client_ip IS NOT NULL GROUP BY client_ip ORDER BY MIN(id)",
        [link_id, *kinds],
    )
    return [row[0] for row in rows.fetchall()]


def next_due(db: Database, now: float) -> bool:
    """Whether a notification is due or its sender's claim has lapsed: a read, no write lock."""
    row = db.execute(
        "SELECT EXISTS (SELECT 1 FROM notifications WHERE state = 'pending' AND next_at <= :now)"
        " OR EXISTS (SELECT 1 FROM notifications WHERE state = 'sending' AND claimed_until < :now)",
        {"now": now},
    ).fetchone()
    return bool(row[0])


# Due: waiting for its time, or taken by a sender that let its claim lapse.
DUE = "((state = 'pending' AND next_at <= :now) OR (state = 'sending' AND claimed_until < :now))"


def claim_due(db: Database, claimer: str, now: float, until: float) -> Delivery | None:
    """Take the oldest due notification for `claimer` until `until`, or None: one UPDATE, so of
    two senders asking at once one gets it and the other the next one (or none). The row is
    checked again as it is updated: on PostgreSQL a sender that waited for another's update sees
    the row taken and gets none. In a transaction of its own: an UPDATE ... RETURNING is not
    committed by itself."""
    with write_transaction(db):
        rows = select_rows(
            db,
            "UPDATE notifications SET state = 'sending', claimed_by = :claimer, claimed_until = :until,"
            f" attempts = attempts + 1 WHERE {DUE} AND id = (SELECT id FROM notifications WHERE {DUE}"
            " ORDER BY next_at, id LIMIT 1)"
            f" RETURNING {DELIVERY_COLUMNS}",
            {"claimer": claimer, "now": now, "until": until},
        )
    return Delivery(**rows[0]) if rows else None


def settle_delivery(
    db: Database,
    delivery: Delivery,
    state: DeliveryState,
    now: float,
    status: int | None = None,
    error: str | None = None,
    retry_at: float | None = None,
) -> bool:
    """Record how an attempt went (sent, failed for good, or pending again at `retry_at`); False
    when the claim was no longer ours (it lapsed and another sender took the row)."""
    cursor = db.execute(
        "UPDATE notifications SET state = :state, last_status = :status, last_error = :error,"
        " next_at = COALESCE(:retry_at, next_at), done_at = :done_at, claimed_by = NULL,"
        " claimed_until = NULL WHERE id = :id AND claimed_by = :claimer",
        {
            "state": str(state),
            "status": status,
            "error": error,
            "retry_at": retry_at,
            "done_at": None if state == DeliveryState.PENDING else now,
            "id": delivery.id,
            "claimer": delivery.claimed_by,
        },
    )
    return cursor.rowcount == 1


def recent_deliveries(db: Database, limit: int = 50, target_id: str | None = None) -> list[Delivery]:
    """The newest notifications first, of every target or of one."""
    where, params = ("WHERE target_id = ?", [target_id]) if target_id else ("", [])
    rows = select_rows(
        db, f"SELECT {DELIVERY_COLUMNS} FROM notifications {where} ORDER BY id DESC LIMIT ?", [*params, limit]
    )
    return [Delivery(**row) for row in rows]


def last_outcomes(db: Database) -> dict[str, Delivery]:
    """Each target's newest notification that was sent or failed, for the targets' table."""
    rows = select_rows(
        db,
        f"SELECT {DELIVERY_COLUMNS} FROM notifications WHERE id IN (SELECT MAX(id) FROM notifications"
        " WHERE state IN ('sent', 'failed') OR attempts > 0 GROUP BY target_id)",
    )
    return {row["target_id"]: Delivery(**row) for row in rows}


def delete_old_deliveries(db: Database, before: float, limit: int) -> int:
    """Delete up to `limit` notifications sent or failed before `before` (the purge's retention)."""
    cursor = db.execute(
        "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications"
        " WHERE state IN ('sent', 'failed') AND done_at < :before LIMIT :limit)",
        {"before": before, "limit": limit},
    )
    return cursor.rowcount
