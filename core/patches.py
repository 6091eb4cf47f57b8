"""A kept folder scan brought up to date row by row, rather than scanned afresh (core/kept_scans.py).

Two ways: a folder's inotify watch tells which names came, went or changed, and only those are
looked at (`followed`); or, where no watch can be trusted, the names are read again and compared
with the kept ones, and only those that came are looked at (`patched`). Either way the rows of names
that went are left out of each kept order, the new rows are inserted where they belong, and every
other row keeps its place: no sort, and no stat of the names that stayed.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import compress
from typing import TYPE_CHECKING

from core.folding import Folded, fold_entries, fold_partners, folded_scan, path_of
from core.offloading import reads_of
from core.orderings import patched_ordering
from storage.base import Entry, FolderScan, Storage
from storage.watching import FolderWatch

if TYPE_CHECKING:
    from core.kept_scans import Snapshot


@dataclass(frozen=True)
class Contents:
    names: set[str]
    folders: set[str]  # those of the names that are folders

    def kinds_kept(self, other: Contents) -> bool:
        """Whether every name in both is of the same kind (file or folder) in both."""
        return self.folders & other.names == other.folders & self.names


def contents(scan: FolderScan, dead: frozenset[int] = frozenset()) -> Contents:
    """The names of a scanned folder, those that went since left out."""
    names = scan.names
    if dead:
        alive = bytearray(b"\1") * len(scan)
        for row in dead:
            alive[row] = 0
        names = compress(names, alive)
    folder_rows = compress(range(len(scan)), scan.folders)
    return Contents(set(names), {scan.names[row] for row in folder_rows if row not in dead})


def live_rows_named(scan: FolderScan, names: set[str], dead: frozenset[int]) -> set[int]:
    if not names:
        return set()
    return {row for row, name in enumerate(scan.names) if name in names and row not in dead}


def extended(column: array | None, values: Iterable) -> array | None:
    return None if column is None else column + array(column.typecode, values)


def appended(scan: FolderScan, entries: list[Entry], fresh: FolderScan) -> FolderScan:
    """`scan` with a row for each of `entries` at its end, and the version of `fresh`."""
    return replace(
        scan,
        names=scan.names + [entry.name for entry in entries],
        folders=scan.folders + bytearray(entry.is_dir for entry in entries),
        sizes=extended(scan.sizes, (entry.size for entry in entries)),
        mtimes=extended(scan.mtimes, (entry.mtime for entry in entries)),
        version=fresh.version,
        changed_at=fresh.changed_at,
    )


def patched(storage: Storage, kept: Snapshot, now: float, limit: int) -> Snapshot | None:
    """`kept` brought up to the folder as it is now, or None where more than `limit` names came or
    went (a fresh scan costs as much), or a name that stayed became a folder, or a folder a file
    (its rows would move)."""
    with watched(storage, kept.scan.folder) as watch:  # closed again should anything below fail
        folded = reads_of(storage)(folded_scan, storage, kept.scan.folder)
        return _patched_with(storage, kept, folded, watch, now, limit)


def _patched_with(
    storage: Storage, kept: Snapshot, folded: Folded, watch: FolderWatch | None, now: float, limit: int
) -> Snapshot | None:
    scan, fresh = kept.scan, folded.scan
    listed, known = contents(fresh), kept.contents()
    went, came = known.names - listed.names, sorted(listed.names - known.names)
    if len(went) + len(came) > limit or not listed.kinds_kept(known):
        if watch is not None:
            watch.close()
        return None
    gone = live_rows_named(scan, went, kept.dead)
    entries = looked_at(storage, scan.folder, came)
    columns = appended(scan, entries, fresh)
    rows = range(len(scan), len(columns))
    orderings = {
        sort: patched_ordering(storage, columns, sort, ordering, gone, rows)
        for sort, ordering in kept.orderings.items()
    }
    vanished = set(came) - {entry.name for entry in entries}  # between reading the names and the stat
    known = Contents(listed.names - vanished, listed.folders - vanished)
    dead = kept.dead | gone
    return replace(
        kept,
        scan=columns,
        taken_at=now,
        dead=dead,
        orderings=orderings,
        known=known,
        sidecars=folded.sidecars,
        watch=watch,
        watched_stats=False,  # the rows kept have sizes and dates from before the watch
    )


def followed(storage: Storage, kept: Snapshot, touched: set[str]) -> Snapshot:
    """`kept` with the names its watch saw change looked at again: the rows of those that went
    dropped, those that came or changed inserted where they belong, every other row in its place."""
    scan = kept.scan
    names = fold_partners(touched)
    gone = live_rows_named(scan, names, kept.dead)
    entries, folded = fold_entries(looked_at(storage, scan.folder, sorted(names)))
    columns = appended(scan, entries, scan)
    rows = range(len(scan), len(columns))
    orderings = {
        sort: patched_ordering(storage, columns, sort, ordering, gone, rows)
        for sort, ordering in kept.orderings.items()
    }
    sidecars = kept.sidecars - {path_of(scan.folder, name) for name in names} | folded
    known = kept.known and Contents(
        kept.known.names - names | {entry.name for entry in entries},
        kept.known.folders - names | {entry.name for entry in entries if entry.is_dir},
    )
    dead = kept.dead | gone
    return replace(kept, scan=columns, dead=dead, orderings=orderings, known=known, sidecars=sidecars)


def looked_at(storage: Storage, folder: str, names: list[str]) -> list[Entry]:
    """The entries of those of `names` that are in the folder now."""
    return storage.scan_entries(FolderScan(folder, names, bytearray(len(names))), range(len(names)))


@contextmanager
def watched(storage: Storage, folder: str) -> Iterator[FolderWatch | None]:
    """A watch on the folder for the block that reads it, set first: no change after the reading
    is missed. Closed again if the reading fails."""
    watch = storage.watch(folder)
    try:
        yield watch
    except BaseException:
        if watch is not None:
            watch.close()
        raise
