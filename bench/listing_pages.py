"""What the listing measurements share: their URLs, their timings and how a row of them reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from urllib.parse import quote, urlencode

COUNT = 100_000
ROUNDS = 3
PAGE_GOAL, API_GOAL = 0.200, 0.100  # seconds of server time: an explorer page, a files API page
API_LIMIT = 1000
HX = {"HX-Request": "true"}  # the explorer's later pages are htmx requests


def explorer_path(storage: str, folder: str, sort: str = "name", order: str = "", page: int = 1) -> str:
    query = {"path": folder, "sort": sort, "order": order, "page": page if page > 1 else ""}
    return f"/browse/{storage}?" + urlencode({key: value for key, value in query.items() if value})


def files_path(storage: str, folder: str, cursor: str | None = None) -> str:
    query = {"path": folder, "limit": API_LIMIT, **({"cursor": cursor} if cursor else {})}
    return f"/api/storage/{storage}/files?" + urlencode(query, quote_via=quote)


@dataclass
class Timings:
    """Server times in seconds: first pages, later ones, first pages of a folder never listed and
    first pages from the other worker right after one listed it (where they were measured)."""

    first: list[float] = field(default_factory=list)
    later: list[float] = field(default_factory=list)
    cold: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if abs(seconds) >= 0.01 else f"{seconds * 1000:.1f}"


def spread(times: list[float]) -> str:
    """The median, and the range when there is one."""
    return ms(median(times)) + (f" ({ms(min(times))}-{ms(max(times))})" if len(times) > 1 else "")


def met(times: list[float], goal: float) -> str:
    """Only when every time is within the goal."""
    return "yes" if max(times) < goal else "NO"


def row(storage: str, request: str, times: list[float], goal: float, reference: str = "") -> list[str]:
    return [storage, request, spread(times), reference, ms(goal), met(times, goal)]
