"""A first page of a large folder in an order not sorted yet: its rows found by a selection rather
than a sort of the whole folder, the same rows the whole order starts with; the folder sorted after
the page, for the pages after it."""

from __future__ import annotations

import random
from array import array

import pytest

from core import kept_scans, snapshots
from core.listings import Order, Sort, page_after, page_at
from core.orderings import SAMPLE_ROWS, _first_names, head, name_keys
from storage.base import FolderScan, casefolded_name_key
from storage.local import LocalStorage
from storage.s3 import S3Storage
from tests.helpers import every_entry, fresh_order, listing_folder

ORDERS = [(sort, descending) for sort in Sort for descending in (False, True)]
# Names that tie but for case (straße and STRASSE casefold alike), one the prefix of another, and
# many more sizes and dates the same than not.
TIED_NAMES = ["Backup.sql", "backup.sql", "BACKUP.SQL", "straße", "STRASSE", "ab", "abc", "ab c", "Ab"]


class S3Order:
    """What the orders ask of an S3 storage: its key order, in which folders sit among the files."""

    pages_by_name = True
    name_key = staticmethod(S3Storage.name_key)


def random_scan(seed: int, count: int) -> FolderScan:
    chance = random.Random(seed)
    names = TIED_NAMES + [f"{chance.choice('aAbB')}-{number:05d}" for number in range(len(TIED_NAMES), count)]
    chance.shuffle(names)
    folders = bytearray(chance.random() < 0.05 for _ in names)
    sizes = array("q", (chance.choice([0, 10, 10, 999, 2**40]) for _ in names))
    mtimes = array("d", (1e9 + chance.choice([0, 0.5, 7, 7, 86400]) for _ in names))
    return FolderScan("f", names, folders, sizes, mtimes)


def expected(storage, scan: FolderScan, sort: Sort, rows: list[int], descending: bool) -> list[int]:
    """The order by one tuple per row, as the documentation says it: folders first (but in S3's own
    order), then by size or date, then by name; descending reverses each group."""
    grouped = sort is not Sort.NAME or not storage.pages_by_name
    values = {Sort.NAME: None, Sort.SIZE: scan.sizes, Sort.DATE: scan.mtimes}[sort]

    def key(row):
        return (values[row] if values else 0, storage.name_key(scan.names[row], scan.folders[row]))

    firsts = [row for row in rows if grouped and scan.folders[row]]
    rest = [row for row in rows if not (grouped and scan.folders[row])]
    return sorted(firsts, key=key, reverse=descending) + sorted(rest, key=key, reverse=descending)


@pytest.mark.parametrize("storage", [LocalStorage("/nonexistent"), S3Order()], ids=["local", "s3"])
@pytest.mark.parametrize(("sort", "descending"), ORDERS)
@pytest.mark.parametrize("seed", [1, 2])
def test_the_head_of_an_order_is_the_start_of_the_whole_order(storage, sort, descending, seed):
    scan = random_scan(seed, 1500)
    dead = set(random.Random(seed).sample(range(len(scan)), 200))
    rows = [row for row in range(len(scan)) if row not in dead]
    whole = expected(storage, scan, sort, rows, descending)
    folders = sum(scan.folders[row] for row in rows)
    for count in (1, 2, 50, folders, folders + 1, 1001, len(rows) - 1, len(rows), len(rows) + 10):
        assert head(storage, scan, sort, rows, count, descending) == whole[:count], count


def ascii_scan(seed: int, count: int) -> FolderScan:
    """Names in ASCII, many of them the same but for case, as most backups are named."""
    chance = random.Random(seed)
    names = [name for name in TIED_NAMES if name.isascii()]
    names += [f"{chance.choice('aAbB_~')}-{number:06d}" for number in range(len(names), count)]
    chance.shuffle(names)
    return FolderScan("f", names, bytearray(len(names)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_first_page_by_name_casefolds_only_the_names_under_a_sampled_bound(seed):
    storage, scan = LocalStorage("/nonexistent"), ascii_scan(seed, 20_000)
    every_row = list(range(len(scan)))
    whole = expected(storage, scan, Sort.NAME, every_row, False)
    for count in (1, 2, 50, 1000):
        under = _first_names(every_row, scan.names, count)
        assert under is not None, count  # the sampled bound served
        assert set(whole[:count]) <= set(under) and len(under) < len(scan) // 4, count
        assert head(storage, scan, Sort.NAME, range(len(scan)), count, False) == whole[:count], count
    some_rows = every_row[::3]
    assert (
        head(storage, scan, Sort.NAME, some_rows, 50, False)
        == expected(storage, scan, Sort.NAME, some_rows, False)[:50]
    )


def test_a_name_beyond_ascii_that_casefolds_lower_than_spelled_still_comes_first():
    names = [f"x-{row:06d}" for row in range(5000)]
    names[1234] = "\u212a-first"  # KELVIN SIGN, spelled above every ASCII name, casefolded "k"
    names[1235] = "k-000000"
    storage, scan = LocalStorage("/nonexistent"), FolderScan("f", names, bytearray(len(names)))
    assert _first_names(list(range(len(scan))), scan.names, 2) is None
    assert head(storage, scan, Sort.NAME, range(len(scan)), 2, False) == [1235, 1234]


def test_an_unlucky_sample_falls_back_to_every_name():
    """The sample takes every n-th row: here those rows hold the smallest names of the folder, so
    the bound leaves fewer rows under it than the page shows."""
    count = 20_000
    step = count // SAMPLE_ROWS
    names = [f"b-{row:06d}" if row % step else f"a-{row:06d}" for row in range(count)]
    storage, scan = LocalStorage("/nonexistent"), FolderScan("f", names, bytearray(count))
    assert _first_names(list(range(count)), names, 3000) is None
    assert (
        head(storage, scan, Sort.NAME, range(count), 3000, False)
        == expected(storage, scan, Sort.NAME, list(range(count)), False)[:3000]
    )


@pytest.mark.parametrize(
    "names",
    [
        ["b", "a", "c"],  # no ties: the casefolded names serve
        TIED_NAMES,  # ties but for case: the exact names break them
        ["a\0b", "a", "A"],  # a NUL, as no file name holds
    ],
)
def test_name_keys_order_names_as_their_exact_keys_do(names):
    storage = LocalStorage("/nonexistent")
    keys = name_keys(storage, names, bytearray(len(names)))
    assert len(set(keys)) == len(names)
    by_keys = dict(zip(names, keys, strict=True))
    assert sorted(names, key=by_keys.__getitem__) == sorted(names, key=casefolded_name_key_of)


def casefolded_name_key_of(name: str) -> str:
    return casefolded_name_key(name, False)


@pytest.fixture
def deferred(monkeypatch, no_kept_scans) -> list:
    """The work a request leaves for after it, held until the test runs it; scans kept although their
    folder changed a moment ago, as they would be a second later."""
    held = []
    monkeypatch.setattr(snapshots, "in_background", lambda work, name: held.append(work))
    monkeypatch.setattr(kept_scans, "RACY_SECONDS", -1.0)
    return held


@pytest.mark.parametrize(("sort", "descending"), ORDERS)
def test_a_first_page_sorts_nothing_and_the_pages_after_it_find_the_folder_sorted(
    tmp_path, deferred, sort, descending
):
    root = listing_folder(tmp_path / "root", 2500)
    storage, order = LocalStorage(str(root)), Order(sort, descending)
    fresh = fresh_order(root / "f", sort, descending)

    first = page_after(storage, "test", "f", order, None, 700)
    kept = kept_scans.snapshots.get((storage.cache_key, "f"))
    assert [entry.name for entry in first.entries] == fresh[:700]
    assert first.total == len(fresh)
    assert kept.orderings == {}  # selected: nothing sorted yet
    assert len(deferred) == 1

    deferred.pop()()
    assert sort in kept.orderings
    assert [entry.name for entry in every_entry(storage, "f", order, limit=700)] == fresh
    later = page_at(storage, "test", "f", order, 2100, 100)
    assert [entry.name for entry in later.entries] == fresh[2100:2200]
    assert not deferred  # the order was found made: no second sort


def test_a_small_folder_is_sorted_at_once(tmp_path, deferred):
    root = listing_folder(tmp_path / "root", 300)
    page = page_at(LocalStorage(str(root)), "test", "f", Order(Sort.SIZE, True), 0, 50)
    assert [entry.name for entry in page.entries] == fresh_order(root / "f", Sort.SIZE, True)[:50]
    assert not deferred
