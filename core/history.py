"""The link history a person sees in the browser: their links (an admin: all) with what happened to each."""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from core.accounts import User
from core.links import visible_link
from db.events import Event, list_events
from db.links import Link, list_links
from db.users import list_users

STATES = ("active", "used", "expired", "revoked")


@dataclass(frozen=True)
class LinkHistory:
    link: Link
    state: str
    creator: str  # a user name, or "cli" for links minted on the command line
    events: list[Event]


def _history(db: Database, link: Link, names: dict[int, str], now: float) -> LinkHistory:
    creator = names.get(link.created_by, "cli") if link.created_by is not None else "cli"
    return LinkHistory(link, link.state(now), creator, list_events(db, link.id))


def link_histories(db: Database, user: User, now: float, state: str | None = None) -> list[LinkHistory]:
    """Newest first; `state` keeps only links in that state."""
    owner = None if user.can("admin") else user.id
    names = {record.id: record.name for record in list_users(db)}
    links = [link for link in list_links(db, owner) if state in (None, link.state(now))]
    return [_history(db, link, names, now) for link in links]


def link_history(db: Database, link_id: int, user: User, now: float) -> LinkHistory:
    """One link the user may see (raises LinkNotFound otherwise)."""
    names = {record.id: record.name for record in list_users(db)}
    return _history(db, visible_link(db, link_id, user), names, now)
