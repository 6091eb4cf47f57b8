"""A folder's scan as a process keeps it, and how long it tells the folder as it is.

A kept scan (storage.base.FolderScan) carries the orders sorted from it, the rows of names that went
since, and, where the folder lies on a local filesystem, the inotify watch set before it was read
(storage/watching.py). Its names hold while the folder's version (its mtime and ctime) stays, which
any name added, removed or renamed moves, or for as long as its watch keeps track. Sizes and dates
change without moving the version, so they serve KEEP_SECONDS (WATCHED_SECONDS where a watch tells
their changes too: Snapshot.keep_seconds), and up to STALE_SECONDS while a scan in the background
looks at them again. A scan of S3, where nothing short of listing tells that a prefix changed, serves
KEEP_SECONDS whole.

How a page finds a scan, and how a kept one is brought up to date, is core/snapshots.py.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from threading import Lock

from core.orderings import Ordering, Sort, head, ordering
from core.patches import Contents, contents
from storage.base import FolderScan, Storage
from storage.watching import FolderWatch

KEEP_SECONDS = 30.0
# Sizes and dates older than KEEP_SECONDS still order a local folder's pages while a scan made in
# the background looks at them again, up to this age: beyond it, the page waits for that scan.
STALE_SECONDS = 300.0
WATCHED_SECONDS = 600.0  # as KEEP_SECONDS for a watched folder, whose sizes and dates follow its changes
# Timestamps move in ticks: a folder changed just before its scan may change again within the same
# tick without its version moving, so such a scan serves its own request and is not kept.
RACY_SECONDS = 1.0
KEEP_FROM = 1000  # smaller folders are scanned afresh for each page: it costs less than a millisecond
KEEP_ROWS = 250_000  # the rows one process keeps, all folders together (about 10 MB per 100,000 rows)
DEAD_SHARE = 0.25  # rows of names that went, as a share of a scan's rows, before it is scanned afresh


@dataclass
class Snapshot:
    scan: FolderScan
    taken_at: float  # wall-clock time when the names were read
    stats_at: float = 0.0  # when the sizes and dates were (by the scan this one was patched from)
    dead: frozenset[int] = frozenset()  # rows of names that went since the scan; in no ordering
    orderings: dict[Sort, Ordering] = field(default_factory=dict)
    known: Contents | None = None  # the names, once a patch needed them
    sidecars: frozenset[str] = frozenset()  # paths of the backups whose DBackup sidecar is folded in
    watch: FolderWatch | None = None  # the folder's changes since, where the filesystem tells them
    # Whether the watch was set before the sizes and dates were read (not so for a patch's new watch:
    # a file rewritten before it was set would never be told).
    watched_stats: bool = True

    def __post_init__(self):
        self.stats_at = self.stats_at or self.taken_at

    @property
    def keep_seconds(self) -> float:
        """How long the sizes and dates serve before they are looked at again: WATCHED_SECONDS where
        a watch tells every change to them, so not where a folder is among the rows, whose date moves
        with what happens inside it, which a watch on its parent does not see."""
        if self.watch is None or not self.watched_stats or 1 in self.scan.folders:
            return KEEP_SECONDS
        return WATCHED_SECONDS

    def live_rows(self) -> Iterable[int]:
        rows = range(len(self.scan))
        return (row for row in rows if row not in self.dead) if self.dead else rows

    def live_count(self) -> int:
        return len(self.scan) - len(self.dead)

    def ordering(self, storage: Storage, sort: Sort) -> Ordering:
        made = self.orderings.get(sort)
        if made is None:
            made = ordering(storage, self.scan, sort, self.live_rows())
            self.orderings = {**self.orderings, sort: made}  # a new dict: a patch may be reading the old
        return made

    def head(self, storage: Storage, sort: Sort, count: int, descending: bool) -> list[int] | None:
        """The first `count` rows of an order not sorted yet, found without sorting the folder; None
        once sorted, and for a small folder, which sorts in no time."""
        if sort in self.orderings or len(self.scan) < KEEP_FROM:
            return None
        return head(storage, self.scan, sort, self.live_rows(), count, descending)

    def stats_young(self, stats: bool, now: float, limit: float) -> bool:
        """Whether the sizes and dates, where the order needs them, are less than `limit` old."""
        return not stats or (self.scan.sizes is not None and now - self.stats_at < limit)

    def stats_due(self, stats: bool, now: float) -> bool:
        """Whether sizes and dates that an order needs are due to be looked at again while they
        still serve: only where the names are known to be current (a local folder's version)."""
        keep = self.keep_seconds
        return (
            self.scan.version is not None
            and self.stats_young(stats, now, keep + STALE_SECONDS - KEEP_SECONDS)
            and not self.stats_young(stats, now, keep)
        )

    def holds(self, storage: Storage, stats: bool, now: float, limit: float) -> bool:
        """Whether this scan still tells the folder as it is, as far as the order asked needs."""
        if not self.stats_young(stats, now, limit):
            return False
        if self.watch is not None:  # followed up to now
            return True
        if self.scan.version is None:
            return now - self.taken_at < KEEP_SECONDS
        return storage.folder_version(self.scan.folder) == self.scan.version

    def patchable(self, stats: bool, now: float, limit: float) -> bool:
        """Whether this scan can be brought up to date by a patch (a local folder's, not too old)."""
        return self.scan.version is not None and self.stats_young(stats, now, limit) and self.mostly_alive()

    def mostly_alive(self) -> bool:
        """Whether few enough of its rows are of names that went for it to be worth patching."""
        return len(self.dead) < DEAD_SHARE * len(self.scan)

    def contents(self) -> Contents:
        if self.known is None:
            self.known = contents(self.scan, self.dead)
        return self.known

    def worth_keeping(self) -> bool:
        settled = self.scan.version is None or self.watch is not None or self.version_tells_changes()
        return self.large_enough() and settled

    def large_enough(self) -> bool:
        """Neither too small to be worth keeping nor too large for the budget."""
        return KEEP_FROM <= len(self.scan) <= KEEP_ROWS

    def version_tells_changes(self) -> bool:
        """Whether any change after the scan moves the folder's version: the scan was made more than
        RACY_SECONDS after the folder last changed."""
        return self.taken_at - self.scan.changed_at > RACY_SECONDS

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()


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
            self._drop(key, snapshot.watch)
            self._kept[key] = snapshot
            self._rows += len(snapshot.scan)
            while self._rows > self.budget:
                self._drop(next(iter(self._kept)))

    def _drop(self, key: tuple[str, str], watch_kept: FolderWatch | None = None) -> None:
        """The scan of `key` forgotten, and its watch unless the scan replacing it carries it on."""
        dropped = self._kept.pop(key, None)
        if dropped is not None:
            self._rows -= len(dropped.scan)
            if dropped.watch is not watch_kept:
                dropped.close()

    def clear(self) -> None:
        with self._lock:
            while self._kept:
                self._drop(next(iter(self._kept)))


snapshots = Snapshots(KEEP_ROWS)
