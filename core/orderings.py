"""A folder scan's rows in one order: sorted once, then patched row by row as names come and go."""

from __future__ import annotations

from array import array
from bisect import insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from itertools import compress

from storage.base import FolderScan, Storage


class Sort(StrEnum):
    NAME = "name"
    SIZE = "size"
    DATE = "date"


@dataclass(frozen=True)
class Ordering:
    """A scan's rows in one ascending order; rows[:split] is the first group (the folders, where
    folders come first), and descending orders run backwards within each group."""

    rows: array
    split: int


def folders_first(storage: Storage, sort: Sort) -> bool:
    """Always, but in S3's own name order, where folders sit among the files as S3 lists them."""
    return sort is not Sort.NAME or not storage.pages_by_name


def ordering(storage: Storage, scan: FolderScan, sort: Sort, rows: Iterable[int]) -> Ordering:
    """Sorted one key at a time, each sort stable, so no tuple per row is ever built."""
    keys = list(map(storage.name_key, scan.names, scan.folders))
    rows = sorted(rows, key=keys.__getitem__)
    del keys
    if sort is not Sort.NAME:
        rows.sort(key=(scan.sizes if sort is Sort.SIZE else scan.mtimes).__getitem__)
    if not folders_first(storage, sort):
        return Ordering(array("I", rows), len(rows))
    return grouped(rows, scan.folders)


FILE_ROWS = bytes.maketrans(b"\0\1", b"\1\0")


def grouped(rows: list[int], folders: bytearray) -> Ordering:
    """The folders' rows first, each group in the order `rows` has it (C loops: no Python per row)."""
    if 1 not in folders:  # most folders of backups hold no folder
        return Ordering(array("I", rows), 0)
    is_folder = bytes(map(folders.__getitem__, rows))
    first = array("I", compress(rows, is_folder))
    return Ordering(first + array("I", compress(rows, is_folder.translate(FILE_ROWS))), len(first))


def sort_key(storage: Storage, scan: FolderScan, sort: Sort) -> Callable[[int], tuple]:
    """One row's place within its group, as ordering() sorts it."""
    values = {Sort.SIZE: scan.sizes, Sort.DATE: scan.mtimes}.get(sort)
    return lambda row: (values[row] if values else 0, storage.name_key(scan.names[row], scan.folders[row]))


def patched_ordering(
    storage: Storage, scan: FolderScan, sort: Sort, kept: Ordering, gone: set[int], came: range
) -> Ordering:
    """`kept` without the rows in `gone`, and with the rows in `came` where they belong."""
    first = [row for row in kept.rows[: kept.split] if row not in gone]
    second = [row for row in kept.rows[kept.split :] if row not in gone]
    in_groups, key = folders_first(storage, sort), sort_key(storage, scan, sort)
    for row in came:
        insort(first if not in_groups or scan.folders[row] else second, row, key=key)
    return Ordering(array("I", first + second), len(first))
