"""The link event log. Events outlive the links they describe, so they copy storage and path."""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from db.links import Link


@dataclass(frozen=True)
class Client:
    """Who made a request, as far as the server can tell."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class Event:
    event: str
    at: float
    link_id: int | None = None
    storage_id: str | None = None
    path: str | None = None
    bytes: int | None = None
    reason: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None


def record_event(db: Database, event: Event) -> None:
    db["link_events"].insert(event.__dict__)


def record_link_event(
    db: Database, kind: str, link: Link | None, now: float, client: Client = Client(), **details
) -> None:
    """Record `kind` for a link (None: a token that matched no link), with who asked."""
    where = (link.id, link.storage_id, link.path) if link else (None, None, None)
    record_event(db, Event(kind, now, *where, client_ip=client.ip, user_agent=client.user_agent, **details))


def list_events(db: Database, link_id: int | None = None, limit: int = 500) -> list[Event]:
    """Oldest first, for one link or (link_id None) the latest of all links."""
    columns = ", ".join(Event.__dataclass_fields__)
    if link_id is None:
        sql = f"SELECT {columns} FROM (SELECT * FROM link_events ORDER BY id DESC LIMIT ?) ORDER BY id"
        rows = db.query(sql, [limit])
    else:
        sql = f"SELECT {columns} FROM link_events WHERE link_id = ? ORDER BY id LIMIT ?"
        rows = db.query(sql, [link_id, limit])
    return [Event(**row) for row in rows]
