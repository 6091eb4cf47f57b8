"""The link event log. Events outlive their links for the retention period, so they copy storage and path."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from enum import StrEnum

from sqlite_utils import Database

from db import notifications as notify
from db import select_rows, write_transaction
from db.links import Link, LinkState


class EventKind(StrEnum):
    """What can happen to a link (README, "How single use and resume behave", says what each means)."""

    CREATED = "created"
    HEAD = "head"
    PREVIEW = "preview"
    STARTED = "started"
    COMPLETED = "completed"  # a use: the client acknowledged the last byte
    PARTIAL = "partial"  # a range short of the end, delivered
    ABORTED = "aborted"  # the client went away or stalled, or the file shrank
    STOPPED = "stopped"  # revoked while it ran
    LOST = "lost"  # the transfer lost its claim (frozen, or cut off from the database)
    LAPSED = "lapsed"  # a dead transfer's claim, settled by someone else
    INTEGRITY = "integrity"
    REDIRECTED = "redirected"
    REJECTED = "rejected"
    REVOKED = "revoked"


USER_AGENT_LIMIT = 256  # enough to tell clients apart; anyone can send kilobytes
COALESCE_SECONDS = 60
# What anyone can repeat without using a link.
COALESCED_KINDS = frozenset({EventKind.HEAD, EventKind.PREVIEW, EventKind.REJECTED})


@dataclass(frozen=True)
class Client:
    """Who made a request, as far as the server can tell."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class Event:
    event: str
    at: float  # a coalesced event: when it first happened
    link_id: int | None = None
    storage_id: str | None = None
    path: str | None = None
    bytes: int | None = None  # the end of a transfer: what the client acknowledged
    reason: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    repeats: int = 1  # how many times it happened within COALESCE_SECONDS of `at`
    start: int | None = None  # a transfer: the first byte of its range (a resume's offset)
    seconds: float | None = None  # the end of a transfer: how long it ran
    mode: str | None = None  # a transfer, HEAD or preview: decrypted, stored or redirect

    @property
    def bytes_per_second(self) -> float | None:
        """The average speed of a transfer that ended, when it ran long enough to tell."""
        if self.bytes is None or not self.seconds:
            return None
        return self.bytes / self.seconds


EVENT_COLUMNS = tuple(Event.__dataclass_fields__)
INSERT_EVENT = (
    f"INSERT INTO link_events ({', '.join(EVENT_COLUMNS)})"
    f" VALUES ({', '.join(':' + column for column in EVENT_COLUMNS)})"
)


# What each kind of event can tell a notification target; a refusal only when a link's life
# is over (an unknown token is anyone's guess, and one a transfer holds is only busy).
NOTICES_OF_KIND = {
    EventKind.COMPLETED: (notify.Notice.COMPLETED,),
    EventKind.REDIRECTED: (notify.Notice.COMPLETED, notify.Notice.ADDRESSES),
    EventKind.ABORTED: (notify.Notice.ABORTED,),
    EventKind.REJECTED: (notify.Notice.REJECTED,),
    EventKind.STARTED: (notify.Notice.ADDRESSES,),
}
NOTIFIED_REFUSALS = frozenset({LinkState.USED, LinkState.EXPIRED, LinkState.REVOKED})
USE_KINDS = (EventKind.STARTED, EventKind.REDIRECTED)


def _notices(event: Event) -> tuple[notify.Notice, ...]:
    if event.link_id is None or (event.event == EventKind.REJECTED and event.reason not in NOTIFIED_REFUSALS):
        return ()
    return NOTICES_OF_KIND.get(event.event, ())


def _new_address(db: Database, event: Event) -> list[str] | None:
    """The link's addresses with this event's, when it is a new one beside others; read before
    the event is recorded."""
    if event.client_ip is None:
        return None
    seen = notify.transfer_addresses(db, event.link_id, USE_KINDS)
    if not seen or event.client_ip in seen:
        return None
    return [*seen, event.client_ip][-notify.ADDRESSES_LISTED :]


def _payloads(db: Database, event: Event, notices: tuple[notify.Notice, ...]) -> dict[notify.Notice, str]:
    """The body of each notice some target wants, read before the event is recorded."""
    payloads = {}
    wanted = notify.wanted_notices(db)
    for notice in (notice for notice in notices if notice in wanted):
        data = notify.event_data(event.__dict__)
        if notice == notify.Notice.ADDRESSES:
            addresses = _new_address(db, event)
            if addresses is None:
                continue
            data["addresses"] = addresses
        payloads[notice] = notify.payload_of(notice, event.at, data)
    return payloads


def record_event(db: Database, event: Event) -> None:
    """One INSERT (sqlite-utils' insert() would first read the schema, three statements more), and
    in the same transaction the notifications it causes: they are sent once it commits, even if
    the worker restarts, and never for an event that was rolled back."""
    notices = _notices(event)
    if not notices:
        db.execute(INSERT_EVENT, event.__dict__)
        return
    with contextlib.nullcontext() if db.conn.in_transaction else write_transaction(db):
        payloads = _payloads(db, event, notices)
        db.execute(INSERT_EVENT, event.__dict__)
        for notice, payload in payloads.items():
            notify.queue_notice(db, notice, event.link_id, payload, event.at)


def _count_repeat(db: Database, event: Event) -> bool:
    """Bump the newest matching event of the last minute; False if there is none."""
    cursor = db.execute(
        "UPDATE link_events SET repeats = repeats + 1 WHERE id = ("
        " SELECT id FROM link_events WHERE link_id IS NOT DISTINCT FROM ? AND event = ?"
        " AND client_ip IS NOT DISTINCT FROM ?"
        " AND reason IS NOT DISTINCT FROM ? AND at > ? ORDER BY id DESC LIMIT 1)",
        [event.link_id, event.event, event.client_ip, event.reason, event.at - COALESCE_SECONDS],
    )
    return cursor.rowcount == 1


def _record_coalesced(db: Database, event: Event) -> None:
    """One row per minute for what a client repeats, so a loop of HEADs cannot grow the log row by row."""
    with write_transaction(db):
        if not _count_repeat(db, event):
            record_event(db, event)


def record_link_event(
    db: Database, kind: str, link: Link | None, now: float, client: Client = Client(), **details
) -> None:
    """Record `kind` for a link (None: a token that matched no link), with who asked."""
    where = (link.id, link.storage_id, link.path) if link else (None, None, None)
    user_agent = client.user_agent[:USER_AGENT_LIMIT] if client.user_agent else None
    event = Event(kind, now, *where, client_ip=client.ip, user_agent=user_agent, **details)
    if kind in COALESCED_KINDS:
        _record_coalesced(db, event)
    else:
        record_event(db, event)


def delete_orphan_events(db: Database, before: float, limit: int) -> int:
    """Delete up to `limit` events from before `before` whose link is gone (purged, or never
    matched a token); found through the index on `at`, so a batch reads about as many rows as it
    deletes, plus the few old events of links still kept."""
    cursor = db.execute(
        "DELETE FROM link_events WHERE id IN (SELECT id FROM link_events WHERE at < :before"
        " AND (link_id IS NULL OR NOT EXISTS (SELECT 1 FROM links WHERE links.id = link_events.link_id))"
        " LIMIT :limit)",
        {"before": before, "limit": limit},
    )
    return cursor.rowcount


def latest_events(
    db: Database, link_ids: list[int], per_link: int
) -> tuple[dict[int, list[Event]], dict[int, int]]:
    """The newest `per_link` events of each link (oldest first), and how many each link has; each
    read through the index on link_id, so a page of links costs the same however many events are kept."""
    marks = ", ".join("?" * len(link_ids))
    counted = db.execute(
        f"SELECT link_id, COUNT(*) FROM link_events WHERE link_id IN ({marks}) GROUP BY link_id", link_ids
    )
    totals = dict.fromkeys(link_ids, 0) | dict(counted.fetchall())
    sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM link_events WHERE link_id = ? ORDER BY id DESC LIMIT ?"
    events = {
        link_id: [Event(**row) for row in reversed(select_rows(db, sql, [link_id, per_link]))]
        if total
        else []
        for link_id, total in totals.items()
    }
    return events, totals


def list_events(db: Database, link_id: int | None = None, limit: int = 500) -> list[Event]:
    """Oldest first, for one link or (link_id None) the latest of all links."""
    columns = ", ".join(EVENT_COLUMNS)
    if link_id is None:
        latest = "SELECT * FROM link_events ORDER BY id DESC LIMIT ?"
        sql = f"SELECT {columns} FROM ({latest}) AS latest ORDER BY id"
        rows = select_rows(db, sql, [limit])
    else:
        sql = f"SELECT {columns} FROM link_events WHERE link_id = ? ORDER BY id LIMIT ?"
        rows = select_rows(db, sql, [link_id, limit])
    return [Event(**row) for row in rows]
