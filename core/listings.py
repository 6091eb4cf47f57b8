"""Folder listings a page at a time, at the same cost whether the folder holds ten files or 100,000.

A folder is scanned once and kept sorted (core/snapshots.py); a page is a slice of one order of it,
filtered. S3's own order (by key, ascending, no filter) needs no scan at all: each page is one
ListObjectsV2 request that starts after the cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, compress, islice, repeat
from operator import contains

from core.cursors import Position, decode_cursor, encode_cursor
from core.folding import fold_entries
from core.kept_scans import Snapshot
from core.offloading import let_connections_run
from core.orderings import Sort, folders_first
from core.snapshots import first_rows, prefetch_sizes, snapshot_of
from storage.base import Entry, Storage, clean_relative_path

__all__ = ["Order", "Page", "Sort", "page_after", "page_at"]

FILTER_BLOCK = 4096  # rows looked through at a time by a filter


@dataclass(frozen=True)
class Order:
    """How a folder is shown: sorted by what, which way, and only names that contain `filter`."""

    sort: Sort = Sort.NAME
    descending: bool = False
    filter: str = ""


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    offset: int  # the position of the page's first entry in the listing
    total: int | None  # entries in the listing; None where counting them would mean listing them all
    next: str | None = None  # the cursor of the page after this one; None on the last page
    sidecars: frozenset[str] = frozenset()  # paths of the entries whose DBackup sidecar is folded in


class Listing:
    """One order of one scan, filtered: position 0 is the first entry shown. For a first page of
    `first` rows, unfiltered, in an order not sorted yet, it holds that page's rows alone: the page
    costs a selection, not a sort of the folder (core/snapshots.first_rows)."""

    def __init__(self, storage: Storage, snapshot: Snapshot, order: Order, first: int = 0):
        self.storage, self.scan, self.order = storage, snapshot.scan, order
        self.sidecars = snapshot.sidecars
        self.grouped = folders_first(storage, order.sort)
        self.needle = order.filter.casefold()
        self.first = None
        if first and not self.needle:
            self.first = first_rows(storage, snapshot, order.sort, first, order.descending)
        self.ordering = snapshot.ordering(storage, order.sort) if self.first is None else None
        self.count = snapshot.live_count() if self.ordering is None else len(self.ordering.rows)

    def __len__(self) -> int:
        return self.count

    def row(self, position: int) -> int:
        if self.first is not None:  # a first page asks for no position beyond its own
            return self.first[position]
        rows, split = self.ordering.rows, self.ordering.split
        if not self.order.descending:
            return rows[position]
        return rows[split - 1 - position] if position < split else rows[len(rows) - 1 - position + split]

    def value(self, row: int) -> int | float:
        if self.order.sort is Sort.NAME:
            return 0
        return (self.scan.sizes if self.order.sort is Sort.SIZE else self.scan.mtimes)[row]

    def position_of(self, row: int) -> Position:
        return Position(bool(self.scan.folders[row]), self.value(row), self.scan.names[row])

    def key(self, at: Position) -> tuple:
        group = 0 if at.is_dir or not self.grouped else 1
        return group, at.value, self.storage.name_key(at.name, at.is_dir)

    def _not_after(self, key: tuple, mark: tuple) -> bool:
        """Whether an entry with `key` comes no later than `mark` in this order."""
        if key[0] != mark[0]:
            return key[0] < mark[0]
        return key[1:] >= mark[1:] if self.order.descending else key[1:] <= mark[1:]

    def start_after(self, at: Position) -> int:
        """The first position after `at`, whether or not an entry is still there (binary search)."""
        mark, low, high = self.key(at), 0, len(self)
        while low < high:
            middle = (low + high) // 2
            if self._not_after(self.key(self.position_of(self.row(middle))), mark):
                low = middle + 1
            else:
                high = middle
        return low

    def rows_from(self, start: int) -> Iterable[int]:
        """The rows from position `start` on that pass the filter, in C loops: a filter may look
        through 100,000 names, and a worker's other requests wait while it does."""
        rows = self._rows_in_order(start)
        return rows_holding(rows, self.scan.names, self.needle) if self.needle else rows

    def _rows_in_order(self, start: int) -> Iterable[int]:
        """What row() gives for each position from `start` on, in slices rather than one by one."""
        if self.first is not None:
            return self.first[start:]
        rows, split = self.ordering.rows, self.ordering.split
        if not self.order.descending:
            return islice(rows, start, None)
        return islice(chain(reversed(rows[:split]), reversed(rows[split:])), start, None)


def rows_holding(rows: Iterable[int], names: list[str], needle: str) -> Iterator[int]:
    """The rows whose name holds `needle` (casefolded), a block at a time: a page that needs a few
    matches stops early, and one that needs them all looks through each block in C loops."""
    rows = iter(rows)
    while block := list(islice(rows, FILTER_BLOCK)):
        found = map(contains, map(str.casefold, map(names.__getitem__, block)), repeat(needle))
        yield from compress(block, found)


def listing_id(storage_id: str, folder: str, order: Order) -> list:
    """What a cursor belongs to: another folder's, order's or filter's cursor is refused."""
    return [storage_id, folder, order.sort.value, order.descending, order.filter]


def in_store_order(storage: Storage, order: Order) -> bool:
    return storage.pages_by_name and order == Order()


def page_at(storage: Storage, storage_id: str, folder: str, order: Order, offset: int, limit: int) -> Page:
    """The page at `offset` (the explorer's page numbers); past the end, the last page."""
    folder = clean_relative_path(folder, allow_root=True)
    if in_store_order(storage, order):
        return _store_page_at(storage, storage_id, folder, offset, limit)
    snapshot = snapshot_of(storage, folder, order.sort)
    listing = Listing(storage, snapshot, order, first=limit if offset <= 0 else 0)
    let_connections_run()  # the order was selected or sorted; the rows are next
    prefetch_sizes(storage, snapshot, order.sort)  # a person browsing: the next order may well need them
    rows = list(listing.rows_from(0)) if listing.needle else None
    total = len(rows) if rows is not None else len(listing)
    offset = min(max(0, offset), max(0, (total - 1) // limit * limit))
    shown = rows[offset : offset + limit] if rows is not None else _positions(listing, offset, limit)
    entries = storage.scan_entries(listing.scan, shown)
    return Page(entries, offset, total, sidecars=listing.sidecars)


def _positions(listing: Listing, offset: int, limit: int) -> list[int]:
    return [listing.row(position) for position in range(offset, min(len(listing), offset + limit))]


def page_after(
    storage: Storage, storage_id: str, folder: str, order: Order, cursor: str | None, limit: int
) -> Page:
    """The page after `cursor` (the first page without one): the API's pages, and the explorer's
    Next in S3's own order."""
    folder = clean_relative_path(folder, allow_root=True)
    identity = listing_id(storage_id, folder, order)
    after = decode_cursor(cursor, identity) if cursor else None
    if in_store_order(storage, order):
        return _store_page(storage, identity, folder, after, limit)
    snapshot = snapshot_of(storage, folder, order.sort)
    listing = Listing(storage, snapshot, order, first=0 if after else limit + 1)
    let_connections_run()
    start = listing.start_after(after) if after else 0
    rows = list(islice(listing.rows_from(start), limit + 1))
    shown = rows[:limit]
    following = encode_cursor(identity, listing.position_of(shown[-1])) if len(rows) > limit else None
    total = None if listing.needle else len(listing)
    offset = start if total is not None else 0
    return Page(storage.scan_entries(listing.scan, shown), offset, total, following, listing.sidecars)


def _store_page(storage: Storage, identity: list, folder: str, after: Position | None, limit: int) -> Page:
    listed, more = storage.list_page(folder, (after.name, after.is_dir) if after else None, limit)
    following = None
    if more and listed:
        following = encode_cursor(identity, Position(listed[-1].is_dir, 0, listed[-1].name))
    entries, sidecars = fold_entries(listed, after.name if after and not after.is_dir else None)
    return Page(entries, 0, None if more or after else len(entries), following, sidecars)


def _store_page_at(storage: Storage, storage_id: str, folder: str, offset: int, limit: int) -> Page:
    """S3 cannot start at an offset: the entries before it are listed (1000 a request) and passed."""
    after, skipped = None, 0
    while skipped < offset:
        entries, more = storage.list_page(folder, after, min(offset - skipped, 1000))
        if not entries:
            break
        after = (entries[-1].name, entries[-1].is_dir)
        skipped += len(entries)
        if not more:
            break
    page = _store_page(
        storage,
        listing_id(storage_id, folder, Order()),
        folder,
        Position(after[1], 0, after[0]) if after else None,
        limit,
    )
    return Page(page.entries, skipped, page.total, page.next, page.sidecars)
