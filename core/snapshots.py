"""How a page finds its folder's scan: kept by this process, shared by another, patched, or made.

Showing a page of a sorted folder takes every entry looked at. So a folder is scanned once into
compact columns (storage.base.FolderScan) and kept a while (core/kept_scans.py): its first page in
an order is selected from it (core/orderings.head), the whole order is sorted after that answer, and
every later page costs only its own rows. A large local folder's fresh scan is also written to the
data dir for the other workers (core/shared_scans.py), sorted in its page's order first, and they
start from it when they have none of their own, as from a kept scan whose version may have moved.

A kept scan that no longer holds is brought up to date rather than redone (core/patches.py): where
its folder is watched, each page asks the watch which names came, went or changed, and only those
are looked at again; elsewhere, or once a watch loses track, a moved version means the names are
read again (one pass of getdents, no stat per name) and only those that came are looked at. Sizes
and dates due to be looked at again are, by a scan in the background, while the old ones serve. The
rows a page shows are looked at afresh anyway.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from threading import Lock

from core.folding import folded_scan
from core.kept_scans import KEEP_SECONDS, STALE_SECONDS, Snapshot, snapshots
from core.offloading import in_background, off_the_hub, reads_of
from core.orderings import Sort
from core.patches import followed, patched, watched
from core.shared_scans import SharedScan, shared_scans
from storage.base import FOLDER_GONE, Storage, StorageError
from storage.watching import FolderWatch

log = logging.getLogger(__name__)

# Names that came or went since the kept scan, beyond which a fresh scan costs about as much as a patch.
PATCH_LIMIT = 2000
PREFETCH = True  # see prefetch_sizes(); the tests that count scans turn it off


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
            try:
                fresh = followed(storage, kept, touched)
            except BaseException:  # the names it told are spent: it no longer tells the folder
                snapshots.put(key, replace(kept, watch=None))
                raise
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


def first_rows(
    storage: Storage, snapshot: Snapshot, sort: Sort, count: int, descending: bool
) -> list[int] | None:
    """The first `count` rows of an order not sorted yet (Snapshot.head); the folder is then sorted
    whole after this request where its scan is kept, for the pages after it. None once sorted."""
    first = snapshot.head(storage, sort, count, descending)
    if first is not None and snapshot.worth_keeping():
        in_background(lambda: snapshot.ordering(storage, sort), "listing-sort")
    return first


def prefetch_sizes(storage: Storage, snapshot: Snapshot, sort: Sort) -> None:
    """A large local folder a person is shown by name has its sizes and dates looked at in the
    background, so that ordering it by date or size next (the newest backup first) finds them ready."""
    scan = snapshot.scan
    if PREFETCH and scan.sizes is None and scan.version is not None and snapshot.worth_keeping():
        refresh_in_background(storage, (storage.cache_key, scan.folder), sort)


def scanned(storage: Storage, folder: str, sort: Sort, now: float) -> Snapshot:
    """A fresh scan for a page in `sort`, and that order shared with the scan."""
    with watched(storage, folder) as watch:
        folded = reads_of(storage)(folded_scan, storage, folder, stats=sort is not Sort.NAME)
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
    in `sort` first (as the page's own background sort would: first_rows), so that their first
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
    done yet as the refresh starts (first_rows sorts in the background too)."""
    with refreshing_lock:
        if key in refreshing:
            return
        refreshing.add(key)

    def refresh() -> None:
        try:
            kept = snapshots.get(key)
            sorts = list(dict.fromkeys([*(kept.orderings if kept is not None else ()), sort]))
            with watched(storage, key[1]) as watch:  # set on the worker's thread, off the hub only the scan
                snapshot = reads_of(storage)(sorted_scan, storage, key[1], sorts, watch)
            kept_if_worth_it(key, shared_later(storage, key, snapshot, None))
        except (StorageError, *FOLDER_GONE) as exc:
            log.warning("A folder's sizes and dates could not be looked at again: %s", exc)
        finally:
            with refreshing_lock:
                refreshing.discard(key)

    in_background(refresh, "listing-refresh")
