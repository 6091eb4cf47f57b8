"""A name searched for in a folder and every folder below it, within bounds.

The walk goes folder by folder, breadth first (nearer matches first), reading each folder's names
and kinds only (no stat per file; one request per folder on S3), and stops at whichever bound comes
first: enough matches for a page, a number of entries read, or a time. It says whether it saw
everything, so that the page can say the search was cut short. Symlinked folders are followed
only where the storage confines them, and a folder met again through one (the same version: device
and inode) is read once.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from itertools import compress

from core.folding import Folded, folded_scan
from core.listings import rows_holding
from core.offloading import reads_of
from core.orderings import Sort, ascending
from storage.base import FOLDER_GONE, Entry, Storage, StorageError, clean_relative_path

MAX_ENTRIES = 200_000  # names read, all folders together
MAX_SECONDS = 3.0


@dataclass(frozen=True)
class Found:
    entries: list[Entry]  # the matches, nearest folders first, each folder's in name order
    sidecars: frozenset[str]  # paths of the matches whose DBackup sidecar is folded in
    folders: int  # folders read
    names: int  # names read
    complete: bool  # every folder below was read, and every match is in `entries`


def search_below(storage: Storage, folder: str, needle: str, limit: int) -> Found:
    """Entries whose name contains `needle` (case-insensitive), in `folder` and below it."""
    folder = clean_relative_path(folder, allow_root=True)
    needle, waiting = needle.casefold(), deque([folder])
    matches: list[Entry] = []
    sidecars: set[str] = set()
    folders = names = 0
    seen: set[str] = set()
    deadline = time.monotonic() + MAX_SECONDS
    while waiting and len(matches) <= limit and names < MAX_ENTRIES and time.monotonic() < deadline:
        current = waiting.popleft()
        folded = _read_once(storage, current, current == folder, seen)
        if folded is None:
            continue
        scan = folded.scan
        found = ascending(storage, scan, Sort.NAME, rows_holding(range(len(scan)), scan.names, needle))
        try:
            matches += storage.scan_entries(scan, found[: limit + 1 - len(matches)])
        except (StorageError, *FOLDER_GONE):
            if current == folder:
                raise
            continue  # it went since its names were read
        sidecars |= folded.sidecars
        folders, names = folders + 1, names + len(scan)
        folders_below = ascending(storage, scan, Sort.NAME, compress(range(len(scan)), scan.folders))
        waiting.extend(_child_path(current, scan.names[row]) for row in folders_below)
    complete = not waiting and len(matches) <= limit
    return Found(matches[:limit], frozenset(sidecars), folders, names, complete)


def _read_once(storage: Storage, folder: str, first: bool, seen: set[str]) -> Folded | None:
    """The folder's names and kinds; None for one met again through a symlink (the same version),
    or one that went or may not be read (passed over as a listing would; the first one raises)."""
    try:
        folded = reads_of(storage)(folded_scan, storage, folder)
    except (StorageError, *FOLDER_GONE):
        if first:
            raise
        return None
    version = folded.scan.version
    if version is not None:
        if version in seen:
            return None
        seen.add(version)
    return folded


def _child_path(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name
