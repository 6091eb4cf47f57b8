"""Folder listings a page at a time, at the same cost whether the folder holds ten files or 100,000.

Showing one page of a sorted folder takes the whole folder sorted. So a folder is scanned once into
compact columns (storage.base.FolderScan), sorted once per order, and kept a while by this process;
every later page costs only its own rows. A local folder's scan holds while the folder's version
(its mtime and ctime) stays, which any name added, removed or renamed moves; sizes and dates change
without it, so a scan that sorts by them is kept KEEP_SECONDS at most, as is any scan of S3, where
nothing short of listing tells that a prefix changed. S3's own order (by key, ascending, no filter)
needs no scan at all: each page is one ListObjectsV2 request that starts after the cursor.
"""

from __future__ import annotations

import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import islice
from threading import Lock

from core.cursors import Position, decode_cursor, encode_cursor
from storage.base import Entry, FolderScan, Storage, clean_relative_path

KEEP_SECONDS = 30.0
# Timestamps move in ticks: a folder changed just before its scan may change again within the same
# tick without its version moving, so such a scan serves its own request and is not kept.
RACY_SECONDS = 1.0
KEEP_FROM = 1000  # smaller folders are scanned afresh for each page: it costs less than a millisecond
KEEP_ROWS = 250_000  # the rows one process keeps, all folders together (about 10 MB per 100,000 rows)


class Sort(StrEnum):
    NAME = "name"
    SIZE = "size"
    DATE = "date"


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


@dataclass(frozen=True)
class Ordering:
    """A scan's rows in one ascending order; rows[:split] is the first group (the folders, where
    folders come first), and descending orders run backwards within each group."""

    rows: array
    split: int


def folders_first(storage: Storage, sort: Sort) -> bool:
    """Always, but in S3's own name order, where folders sit among the files as S3 lists them."""
    return sort is not Sort.NAME or not storage.pages_by_name


def ordering(storage: Storage, scan: FolderScan, sort: Sort) -> Ordering:
    """Sorted one key at a time, each sort stable, so no tuple per row is ever built."""
    keys = list(map(storage.name_key, scan.names, scan.folders))
    rows = sorted(range(len(scan)), key=keys.__getitem__)
    del keys
    if sort is not Sort.NAME:
        rows.sort(key=(scan.sizes if sort is Sort.SIZE else scan.mtimes).__getitem__)
    if not folders_first(storage, sort):
        return Ordering(array("I", rows), len(rows))
    rows.sort(key=scan.folders.__getitem__, reverse=True)  # reverse keeps equal rows in order too
    return Ordering(array("I", rows), scan.folders.count(1))


@dataclass
class Snapshot:
    scan: FolderScan
    taken_at: float  # wall-clock time when the scan began
    orderings: dict[Sort, Ordering] = field(default_factory=dict)

    def ordering(self, storage: Storage, sort: Sort) -> Ordering:
        if sort not in self.orderings:
            self.orderings[sort] = ordering(storage, self.scan, sort)
        return self.orderings[sort]

    def holds(self, storage: Storage, stats: bool, now: float) -> bool:
        """Whether this scan still tells the folder as it is, as far as the order asked needs."""
        scan = self.scan
        if stats and scan.sizes is None:
            return False
        young = now - self.taken_at < KEEP_SECONDS
        if scan.version is None or (stats and not young):
            return young
        return storage.folder_version(scan.folder) == scan.version

    def worth_keeping(self) -> bool:
        scan = self.scan
        settled = scan.version is None or self.taken_at - scan.changed_at > RACY_SECONDS
        return KEEP_FROM <= len(scan) <= KEEP_ROWS and settled


class Snapshots:
    """The scans this process keeps, least recently used first, within a budget of rows."""

    def __init__(self, budget: int):
        self.budget = budget
        self._kept: OrderedDict[tuple[str, str], Snapshot] = OrderedDict()
        self._rows = 0
        self._lock = Lock()

    def get(self, key: tuple[str, str]) -> Snapshot | None:
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
            return self._kept.get(key)

    def put(self, key: tuple[str, str], snapshot: Snapshot) -> None:
        with self._lock:
            self._drop(key)
            self._kept[key] = snapshot
            self._rows += len(snapshot.scan)
            while self._rows > self.budget:
                self._drop(next(iter(self._kept)))

    def _drop(self, key: tuple[str, str]) -> None:
        dropped = self._kept.pop(key, None)
        if dropped is not None:
            self._rows -= len(dropped.scan)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._rows = 0


snapshots = Snapshots(KEEP_ROWS)


def snapshot_of(storage: Storage, folder: str, stats: bool) -> Snapshot:
    """The folder's kept scan while it holds, else a new one (kept when worth it)."""
    key = (storage.cache_key, folder)
    now = time.time()
    kept = snapshots.get(key)
    if kept is not None and kept.holds(storage, stats, now):
        return kept
    fresh = Snapshot(storage.scan(folder, stats=stats), now)
    if fresh.worth_keeping():
        snapshots.put(key, fresh)
    return fresh


class Listing:
    """One order of one scan, filtered: position 0 is the first entry shown."""

    def __init__(self, storage: Storage, snapshot: Snapshot, order: Order):
        self.storage, self.scan, self.order = storage, snapshot.scan, order
        self.ordering = snapshot.ordering(storage, order.sort)
        self.grouped = folders_first(storage, order.sort)
        self.needle = order.filter.casefold()

    def __len__(self) -> int:
        return len(self.scan)

    def row(self, position: int) -> int:
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

    def rows_from(self, start: int):
        """The rows from position `start` on that pass the filter."""
        rows = (self.row(position) for position in range(start, len(self)))
        if not self.needle:
            return rows
        return (row for row in rows if self.needle in self.scan.names[row].casefold())


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
    listing = Listing(storage, snapshot_of(storage, folder, order.sort is not Sort.NAME), order)
    rows = list(listing.rows_from(0)) if listing.needle else None
    total = len(rows) if rows is not None else len(listing)
    offset = min(max(0, offset), max(0, (total - 1) // limit * limit))
    shown = rows[offset : offset + limit] if rows is not None else _positions(listing, offset, limit)
    entries = storage.scan_entries(listing.scan, shown)
    return Page(entries, offset, total)


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
    listing = Listing(storage, snapshot_of(storage, folder, order.sort is not Sort.NAME), order)
    start = listing.start_after(after) if after else 0
    rows = list(islice(listing.rows_from(start), limit + 1))
    shown = rows[:limit]
    following = encode_cursor(identity, listing.position_of(shown[-1])) if len(rows) > limit else None
    total = None if listing.needle else len(listing)
    offset = start if total is not None else 0
    return Page(storage.scan_entries(listing.scan, shown), offset, total, following)


def _store_page(storage: Storage, identity: list, folder: str, after: Position | None, limit: int) -> Page:
    entries, more = storage.list_page(folder, (after.name, after.is_dir) if after else None, limit)
    following = None
    if more and entries:
        following = encode_cursor(identity, Position(entries[-1].is_dir, 0, entries[-1].name))
    return Page(entries, 0, None if more or after else len(entries), following)


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
    return Page(page.entries, skipped, page.total, page.next)
