"""Scans of folders, kept by this process and patched when a few names change.

Showing a page of a sorted folder takes every entry looked at. So a folder is scanned once into
compact columns (storage.base.FolderScan) and kept a while: its first page in an order is selected
from it (core/orderings.head), the whole order is sorted after that answer, and every later page
costs only its own rows. A large local folder's fresh scan is also written to the data dir for the
other workers (core/shared_scans.py), sorted in its page's order first, and they start from it when
they have none of their own, as from a kept scan whose version may have moved. A local folder's scan
holds while the folder's version (its mtime and ctime) stays, which any name added, removed or
renamed moves. Sizes and dates change without it, so a scan's sizes and dates serve KEEP_SECONDS at
most, as does any scan of S3, where nothing short of listing tells that a prefix changed.

A kept scan is brought up to date rather than redone (core/patches.py). Where the folder lies on a
local filesystem, its scan carries an inotify watch (storage/watching.py), set before the folder is
read: each page asks it which names came, went or changed, and only those are looked at again, so
sizes and dates stay current too (a scan looks at them all again after WATCHED_SECONDS, for the
changes no watch sees: a write through a hard link elsewhere, or mmap). Elsewhere, or once a watch
loses track, a moved version means the names are read again (one pass of getdents, no stat per
name) and only those that came are looked at; sizes and dates of the others are then as old as the
scan they came from (KEEP_SECONDS at most). The rows a page shows are looked at afresh anyway.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from threading import Lock

from core.folding import folded_scan
from core.offloading import in_background, off_the_hub
from core.orderings import Ordering, Sort, head, ordering
from core.patches import Contents, contents, followed, patched, watched
from core.shared_scans import SharedScan, shared_scans
from storage.base import FolderScan, Storage, StorageError
from storage.watching import FolderWatch

log = logging.getLogger(__name__)

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
# Names that came or went since the kept scan, beyond which a fresh scan costs about as much as a patch.
PATCH_LIMIT = 2000
PREFETCH = True  # see prefetch_sizes(); the tests that count scans turn it off
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

    def __post_init__(self):
        self.stats_at = self.stats_at or self.taken_at

    @property
    def keep_seconds(self) -> float:
        """How long the sizes and dates serve before they are looked at again."""
        return KEEP_SECONDS if self.watch is None else WATCHED_SECONDS

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
        """The first `count` rows of an order not sorted yet, found without sorting the folder, which
        is then sorted whole after this request where kept, for the pages after it; None once sorted."""
        if sort in self.orderings or len(self.scan) < KEEP_FROM:  # a small folder sorts in no time
            return None
        first = head(storage, self.scan, sort, self.live_rows(), count, descending)
        if self.worth_keeping():
            in_background(lambda: self.ordering(storage, sort), "listing-sort")
        return first

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


def snapshot_of(storage: Storage, folder: str, sort: Sort) -> Snapshot:
    """The folder's kept scan while it holds, else that scan patched, else a new one (kept when
    worth it), for a page in `sort`. Where the kept sizes and dates are due to be looked at again, a
    scan in the background does it, and they serve meanwhile."""
    key, now, stats = (storage.cache_key, folder), time.time(), sort is not Sort.NAME
    kept = snapshots.get(key) or shared_scan(key)
    if kept is not None and kept.watch is not None:
        kept = brought_up_to_watch(storage, key, kept)
    limit = KEEP_SECONDS if kept is None else kept.keep_seconds
    if kept is not None and kept.stats_due(stats, now):
        refresh_in_background(storage, key, sort)
        limit += STALE_SECONDS - KEEP_SECONDS
    if kept is not None and kept.holds(storage, stats, now, limit):
        snapshot = kept
    else:
        snapshot = kept_if_worth_it(key, brought_up_to_date(storage, folder, kept, sort, now, limit))
    return snapshot


following = Lock()  # one page at a time applies a watch's changes: a page never misses a change seen


def brought_up_to_watch(storage: Storage, key: tuple[str, str], kept: Snapshot) -> Snapshot:
    """`kept` with the changes its watch saw applied; where the watch lost track (or too much
    changed), without its watch, to be checked by the folder's version like any other."""
    with following:
        kept = snapshots.get(key) or kept  # a page before this one may have applied some already
        if kept.watch is None:  # that page found the watch had lost track
            return kept
        touched = kept.watch.changes()
        if touched is not None and not touched:
            return kept
        fresh = None
        if touched is not None and len(touched) <= PATCH_LIMIT:
            fresh = followed(storage, kept, touched)
        if fresh is None or not fresh.mostly_alive():
            fresh = replace(kept, watch=None)
        snapshots.put(key, fresh)
        return fresh


def brought_up_to_date(
    storage: Storage, folder: str, kept: Snapshot | None, sort: Sort, now: float, limit: float
) -> Snapshot:
    """`kept` patched where it can be, else a new scan."""
    fresh = None
    if kept is not None and kept.patchable(sort is not Sort.NAME, now, limit):
        fresh = patched(storage, kept, now, PATCH_LIMIT)
    return fresh or scanned(storage, folder, sort, now)


def prefetch_sizes(storage: Storage, snapshot: Snapshot, sort: Sort) -> None:
    """A large local folder a person is shown by name has its sizes and dates looked at in the
    background, so that ordering it by date or size next (the newest backup first) finds them ready."""
    scan = snapshot.scan
    if PREFETCH and scan.sizes is None and scan.version is not None and snapshot.worth_keeping():
        refresh_in_background(storage, (storage.cache_key, scan.folder), sort)


def scanned(storage: Storage, folder: str, sort: Sort, now: float) -> Snapshot:
    """A fresh scan for a page in `sort`, and that order shared with the scan."""
    with watched(storage, folder) as watch:
        folded = off_the_hub(folded_scan, storage, folder, stats=sort is not Sort.NAME)
    snapshot = Snapshot(folded.scan, now, sidecars=folded.sidecars, watch=watch)
    return shared_later(storage, (storage.cache_key, folder), snapshot, sort)


def shared_scan(key: tuple[str, str]) -> Snapshot | None:
    """The scan another worker (or this one before a restart) made of the folder, kept from now on
    as if this worker had made it, to be checked and patched as such; None where there is none."""
    found = shared_scans.load(key)
    if found is None:
        return None
    snapshot = Snapshot(
        found.scan, found.taken_at, found.stats_at, orderings=found.orderings, sidecars=found.sidecars
    )
    snapshots.put(key, snapshot)
    return snapshot


def shared_later(storage: Storage, key: tuple[str, str], snapshot: Snapshot, sort: Sort | None) -> Snapshot:
    """A fresh scan of a large local folder written for the other workers after this request, sorted
    in `sort` first (as the page's own background sort would: Snapshot.head), so that their first
    page in it is a slice. Not one made less than RACY_SECONDS after the folder changed, whose
    version may not tell a change."""
    if (
        shared_scans.folder is not None
        and snapshot.scan.version is not None
        and snapshot.large_enough()
        and snapshot.version_tells_changes()
    ):

        def share() -> None:
            if sort is not None:
                snapshot.ordering(storage, sort)
            shared = SharedScan(
                snapshot.scan, snapshot.taken_at, snapshot.stats_at, snapshot.sidecars, snapshot.orderings
            )
            off_the_hub(shared_scans.save, key, shared)

        in_background(share, "listing-share")
    return snapshot


def kept_if_worth_it(key: tuple[str, str], snapshot: Snapshot) -> Snapshot:
    """`snapshot` kept for the pages after this one where worth it; its watch closed otherwise (the
    snapshot still serves the page that made it)."""
    if snapshot.worth_keeping():
        snapshots.put(key, snapshot)
    elif (current := snapshots.get(key)) is None or current.watch is not snapshot.watch:
        snapshot.close()
    return snapshot


def sorted_scan(storage: Storage, folder: str, sorts: list[Sort], watch: FolderWatch | None) -> Snapshot:
    """A scan with sizes and dates, in the orders `sorts` already (those the scan it replaces had,
    so that the next page finds them made): all of it work for a thread of its own."""
    started = time.time()  # as a page's scan: a change just before it must keep it from being kept
    folded = folded_scan(storage, folder, stats=True)
    snapshot = Snapshot(folded.scan, started, sidecars=folded.sidecars, watch=watch)
    for sort in sorts:
        snapshot.ordering(storage, sort)
    return snapshot


refreshing: set[tuple[str, str]] = set()  # the folders whose sizes and dates a scan is looking at
refreshing_lock = Lock()


def refresh_in_background(storage: Storage, key: tuple[str, str], sort: Sort) -> None:
    """A scan of the folder with sizes and dates, replacing the kept one when done; one at a time.
    It comes sorted in the kept scan's orders and in `sort`, the page's, whose own sort may not be
    done yet as the refresh starts (Snapshot.head sorts in the background too)."""
    with refreshing_lock:
        if key in refreshing:
            return
        refreshing.add(key)

    def refresh() -> None:
        try:
            kept = snapshots.get(key)
            sorts = list(dict.fromkeys([*(kept.orderings if kept is not None else ()), sort]))
            with watched(storage, key[1]) as watch:  # set on the worker's thread, off the hub only the scan
                snapshot = off_the_hub(sorted_scan, storage, key[1], sorts, watch)
            kept_if_worth_it(key, shared_later(storage, key, snapshot, None))
        except StorageError as exc:
            log.warning("A folder's sizes and dates could not be looked at again: %s", exc)
        finally:
            with refreshing_lock:
                refreshing.discard(key)

    in_background(refresh, "listing-refresh")
