"""A folder scan's rows in one order: sorted once, then patched row by row as names come and go."""

from __future__ import annotations

import heapq
from array import array
from bisect import insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import compress

from storage.base import FolderScan, Storage, casefolded_name_key


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


def coarse_name_keys(storage: Storage, names: Sequence[str], folders: Sequence[int]) -> list:
    """Keys in the order of the names' sort keys, ties allowed: the casefolded names where the sort
    key is casefolded_name_key (whose exact name only breaks ties), which cost a C loop rather than a
    string built per name. A name holding NUL, as no file name can, would break that: exact keys then."""
    if storage.name_key is casefolded_name_key and "\0" not in "".join(names):
        return list(map(str.casefold, names))
    return list(map(storage.name_key, names, folders))


def name_keys(storage: Storage, names: Sequence[str], folders: Sequence[int]) -> list:
    """Keys that order the names as their sort keys do, without ties: the coarse keys where those
    have none (no two names the same but for case)."""
    if storage.name_key is casefolded_name_key:
        keys = coarse_name_keys(storage, names, folders)
        if len(set(keys)) == len(keys):
            return keys
    return list(map(storage.name_key, names, folders))


def ascending(storage: Storage, scan: FolderScan, sort: Sort, rows: Iterable[int]) -> list[int]:
    """`rows` by the order's value, then by name: one key at a time, each sort stable, so no tuple
    per row is ever built."""
    rows = list(rows)
    if 2 * len(rows) < len(scan):  # a few rows: keys for those alone
        picked = name_keys(storage, [scan.names[row] for row in rows], [scan.folders[row] for row in rows])
        keys = dict(zip(rows, picked, strict=True))
    else:
        keys = name_keys(storage, scan.names, scan.folders)
    rows.sort(key=keys.__getitem__)
    del keys
    if sort is not Sort.NAME:
        rows.sort(key=values_of(scan, sort).__getitem__)
    return rows


def values_of(scan: FolderScan, sort: Sort) -> array:
    return scan.sizes if sort is Sort.SIZE else scan.mtimes


def ordering(storage: Storage, scan: FolderScan, sort: Sort, rows: Iterable[int]) -> Ordering:
    rows = ascending(storage, scan, sort, rows)
    if not folders_first(storage, sort):
        return Ordering(array("I", rows), len(rows))
    return grouped(rows, scan.folders)


FILE_ROWS = bytes.maketrans(b"\0\1", b"\1\0")


def groups(rows: list[int], folders: bytearray) -> tuple[list[int], list[int]]:
    """The folders' rows and the files', each in the order `rows` has it (C loops: no Python per row)."""
    if 1 not in folders:  # most folders of backups hold no folder
        return [], rows
    is_folder = bytes(map(folders.__getitem__, rows))
    return list(compress(rows, is_folder)), list(compress(rows, is_folder.translate(FILE_ROWS)))


def grouped(rows: list[int], folders: bytearray) -> Ordering:
    """The folders' rows first, each group in the order `rows` has it."""
    first, second = groups(rows, folders)
    return Ordering(array("I", first) + array("I", second), len(first))


def head(
    storage: Storage, scan: FolderScan, sort: Sort, rows: Iterable[int], count: int, descending: bool
) -> list[int]:
    """The first `count` rows of the order as a page shows them, without sorting the whole folder:
    one pass finds the rows that can be among them (heapq's selection; by name, a sampled bound),
    and only those are sorted."""
    every_row = rows == range(len(scan))  # then a group of as many rows holds row i at i
    rows = list(rows)
    shown: list[int] = []
    for group in groups(rows, scan.folders) if folders_first(storage, sort) else (rows,):
        names = scan.names if every_row and len(group) == len(scan) else None
        shown += _first_of(storage, scan, sort, group, names, count - len(shown), descending)
    return shown


def _first_of(
    storage: Storage,
    scan: FolderScan,
    sort: Sort,
    group: list[int],
    names: list[str] | None,
    count: int,
    descending: bool,
) -> list[int]:
    """The first `count` rows of one group (whose names, row by row, `names` is where at hand); those
    tied with the last of them are all sorted."""
    if count <= 0:
        return []
    if count < len(group):
        picked = None
        if sort is Sort.NAME and not descending and storage.name_key is casefolded_name_key:
            picked = _first_names(group, names or list(map(scan.names.__getitem__, group)), count)
        group = picked or _leading(storage, scan, sort, group, count, descending)
    rows = ascending(storage, scan, sort, group)
    return (rows[::-1] if descending else rows)[:count]


def _leading(
    storage: Storage, scan: FolderScan, sort: Sort, group: list[int], count: int, descending: bool
) -> list[int]:
    """The rows whose key is among the first `count` of the group, by one pass over every key."""
    if sort is Sort.NAME:
        leading = list(map(coarse_name_keys(storage, scan.names, scan.folders).__getitem__, group))
    else:
        leading = list(map(values_of(scan, sort).__getitem__, group))
    edge = (heapq.nlargest if descending else heapq.nsmallest)(count, leading)[-1]
    return list(compress(group, map(edge.__le__ if descending else edge.__ge__, leading)))


SAMPLE_ROWS = 2000


def _first_names(group: list[int], names: list[str], count: int) -> list[int] | None:
    """The rows of the first `count` casefolded names and more, found without casefolding every
    name: a sample of the names gives a bound with about 1.5 x `count` of them under it, and an ASCII
    name only rises when casefolded (A-Z become a-z), so one spelled above the bound cannot come
    under it. None where that does not serve: a name beyond ASCII, or fewer than `count` rows under
    the bound (an unlucky sample)."""
    sample = sorted(map(str.casefold, names[:: max(1, len(names) // SAMPLE_ROWS)]))
    place = 3 * count * len(sample) // (2 * len(names)) + 8
    if place >= len(sample) or not all(map(str.isascii, names)):
        return None
    bound = sample[place]
    spelled_under = list(compress(range(len(names)), map(bound.__ge__, names)))
    under = [group[at] for at in spelled_under if names[at].casefold() <= bound]
    return under if len(under) >= count else None


def sort_key(storage: Storage, scan: FolderScan, sort: Sort) -> Callable[[int], tuple]:
    """One row's place within its group, as ordering() sorts it."""
    values = None if sort is Sort.NAME else values_of(scan, sort)
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
