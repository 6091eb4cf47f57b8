"""The link history a person reads: their links (an admin: all), a page at a time, filtered by state
and name, each with its latest events; the same for the browser and for `GET /api/links`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from core.accounts import User
from core.links import InvalidLinkRequest, visible_link
from db.events import Event, latest_events, list_events
from db.links import Link, LinkFilter, LinkState, links_after, links_before
from db.users import list_users

PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_LINK_ID = 2**63 - 1
EVENTS_PER_LINK = 20  # the rest are a click (or /api/links/<id>/events) away


class InvalidLinkQuery(InvalidLinkRequest):
    """A page of links asked for with a state, cursor or size out of bounds."""


@dataclass(frozen=True)
class LinkHistory:
    link: Link
    state: LinkState
    creator: str  # a user name, or "cli" for links minted on the command line
    events: list[Event]
    event_count: int  # all the link's events; `events` holds the newest EVENTS_PER_LINK of them

    @property
    def hidden_events(self) -> int:
        return self.event_count - len(self.events)


@dataclass(frozen=True)
class LinkQuery:
    """A page of links: matching `state` and `name`, older than `before` or newer than `after`."""

    state: LinkState | None = None
    name: str = ""
    before: int | None = None
    after: int | None = None
    limit: int = PAGE_SIZE


@dataclass(frozen=True)
class HistoryPage:
    histories: list[LinkHistory]
    newer: int | None  # `after` for the page of newer links; None on the first page
    older: int | None  # `before` for the page of older links; None on the last page


def _whole_number(value: str | None, largest: int, problem: str) -> int | None:
    """A positive whole number from a URL, None when left out."""
    if value in (None, ""):
        return None
    if not value.isdecimal() or not 0 < int(value) <= largest:
        raise InvalidLinkQuery(problem)
    return int(value)


def parse_link_query(
    state: str | None, name: str | None, before: str | None, after: str | None, limit: str | None
) -> LinkQuery:
    """Check a page's parameters as they come from a URL; any left out takes its default.

    `before` and `after` are cursors given out with a page: link ids."""
    if state and state not in set(LinkState):
        raise InvalidLinkQuery(f"'state' must be one of {', '.join(LinkState)}.")
    bad_cursor = "A cursor must be one given out with a previous page."
    return LinkQuery(
        LinkState(state) if state else None,
        (name or "").strip(),
        _whole_number(before, MAX_LINK_ID, bad_cursor),
        _whole_number(after, MAX_LINK_ID, bad_cursor),
        _whole_number(limit, MAX_PAGE_SIZE, f"'limit' must be a whole number from 1 to {MAX_PAGE_SIZE}.")
        or PAGE_SIZE,
    )


def _owner(user: User) -> int | None:
    return None if user.can("admin") else user.id


def _histories(db: Database, links: list[Link], now: float) -> list[LinkHistory]:
    """The links with their creators' names and latest events, in two statements for the page."""
    names = {record.id: record.name for record in list_users(db)}
    events, totals = latest_events(db, [link.id for link in links], EVENTS_PER_LINK)
    return [
        LinkHistory(
            link, link.state(now), names.get(link.created_by, "cli"), events[link.id], totals[link.id]
        )
        for link in links
    ]


def _newer_first(db: Database, where: LinkFilter, query: LinkQuery, now: float) -> tuple[list[Link], bool]:
    """The page's links, newest first, and whether there are more beyond it in the direction read."""
    if query.after is not None:
        links = links_after(db, where, now, query.after, query.limit + 1)
        return list(reversed(links[: query.limit])), len(links) > query.limit
    links = links_before(db, where, now, query.before, query.limit + 1)
    return links[: query.limit], len(links) > query.limit


def history_page(db: Database, user: User, query: LinkQuery, now: float) -> HistoryPage:
    """One page of the links `user` may see, newest first, with cursors to the pages on either side."""
    where = LinkFilter(_owner(user), query.state, query.name)
    links, more = _newer_first(db, where, query, now)
    if not links:
        return HistoryPage([], None, None)
    if query.after is not None:
        newer, older = more, bool(links_before(db, where, now, links[-1].id, 1))
    else:
        newer, older = query.before is not None and bool(links_after(db, where, now, links[0].id, 1)), more
    return HistoryPage(
        _histories(db, links, now), links[0].id if newer else None, links[-1].id if older else None
    )


def link_row(db: Database, link_id: int, user: User, now: float) -> LinkHistory:
    """One link the user may see (raises LinkNotFound otherwise), as the Links page lists it."""
    return _histories(db, [visible_link(db, link_id, user)], now)[0]


def link_history(db: Database, link_id: int, user: User, now: float) -> LinkHistory:
    """One link the user may see (raises LinkNotFound otherwise), with all its events."""
    link = visible_link(db, link_id, user)
    names = {record.id: record.name for record in list_users(db)}
    events = list_events(db, link.id)
    return LinkHistory(link, link.state(now), names.get(link.created_by, "cli"), events, len(events))
