"""Folder scans shared through the data dir: a scan one worker made serves another (here: the same
process with its kept scans forgotten, as a second worker or a restarted one has none), checked and
patched as a kept scan is; a file that is damaged, too old or of a folder just changed serves nothing."""

from __future__ import annotations

import logging
import os
import time
from array import array
from dataclasses import replace
from pathlib import Path

import pytest

from core import kept_scans, snapshots
from core import shared_scans as shared_module
from core.listings import Order, Sort, page_at
from core.orderings import Ordering
from core.shared_scans import SharedScan, decoded, encoded, shared_scans
from storage.base import FolderScan
from storage.local import LocalStorage
from tests.conftest import tmpfs_mounted
from tests.helpers import change_names, every_entry, fresh_order, listing_folder

COUNT = 2500
BY_SIZE = Order(Sort.SIZE, True)


@pytest.fixture
def shared(tmp_path, monkeypatch, no_kept_scans) -> Path:
    """Scans shared in a data dir of the test's own; scans kept although their folder changed a
    moment ago, as they would be a second later; background work done at once."""
    shared_scans.keep_in(tmp_path / "scans")
    monkeypatch.setattr(kept_scans, "RACY_SECONDS", -1.0)
    monkeypatch.setattr(snapshots, "in_background", lambda work, name: work())
    return tmp_path / "scans"


@pytest.fixture
def root(tmp_path) -> Path:
    return listing_folder(tmp_path / "root", COUNT)


def names_of(entries) -> list[str]:
    return [entry.name for entry in entries]


def other_worker() -> None:
    """What this process keeps in memory forgotten, as a worker that never listed the folder."""
    kept_scans.snapshots.clear()


def test_a_scan_one_worker_made_serves_another(shared, root, scans):
    storage = LocalStorage(str(root))
    first = page_at(storage, "test", "f", BY_SIZE, 0, 100)
    assert scans == [True] and len(list(shared.glob("*.scan"))) == 1

    other_worker()
    assert names_of(page_at(storage, "test", "f", BY_SIZE, 0, 100).entries) == names_of(first.entries)
    assert names_of(every_entry(storage, "f", BY_SIZE, limit=700)) == fresh_order(root / "f", Sort.SIZE, True)
    assert names_of(every_entry(storage, "f", Order(), limit=700)) == fresh_order(
        root / "f", Sort.NAME, False
    )
    assert scans == [True]  # neither the sizes nor the names looked at again


@pytest.mark.parametrize("order", [Order(), BY_SIZE, Order(Sort.DATE, True)], ids=["name", "size", "date"])
def test_the_order_a_page_asked_for_is_shared_sorted_so_another_worker_neither_sorts_nor_selects(
    shared, root, scans, monkeypatch, order
):
    storage = LocalStorage(str(root))
    page_at(storage, "test", "f", order, 0, 100)
    assert list(shared_scans.load((storage.cache_key, "f")).orderings) == [order.sort]

    other_worker()
    for sorting in ("ordering", "head"):
        monkeypatch.setattr(kept_scans, sorting, lambda *args, name=sorting: pytest.fail(f"{name} called"))
    first = page_at(storage, "test", "f", order, 0, 100)
    expected = fresh_order(root / "f", order.sort, order.descending)
    assert names_of(first.entries) == expected[:100]
    assert names_of(every_entry(storage, "f", order, limit=700)) == expected
    assert scans == [order.sort is not Sort.NAME]


def test_names_changed_since_the_shared_scan_are_patched_not_scanned(shared, root, scans):
    storage = LocalStorage(str(root))
    page_at(storage, "test", "f", BY_SIZE, 0, 100)
    change_names(root / "f")

    other_worker()
    assert names_of(every_entry(storage, "f", BY_SIZE, limit=700)) == fresh_order(root / "f", Sort.SIZE, True)
    assert scans == [True, False]  # the names read again; only those that came looked at


def test_sizes_older_than_a_kept_scans_are_not_used(shared, root, scans):
    storage, key = LocalStorage(str(root)), (LocalStorage(str(root)).cache_key, "f")
    page_at(storage, "test", "f", BY_SIZE, 0, 100)
    made = shared_scans.load(key)
    old = made.stats_at - kept_scans.STALE_SECONDS - 1
    shared_scans.save(key, replace(made, taken_at=old, stats_at=old))

    other_worker()
    assert names_of(every_entry(storage, "f", Order(), limit=700)) == fresh_order(
        root / "f", Sort.NAME, False
    )
    assert scans == [True]  # by name, the names serve: the folder's version holds
    assert names_of(every_entry(storage, "f", BY_SIZE, limit=700)) == fresh_order(root / "f", Sort.SIZE, True)
    assert scans == [True, True]  # by size, every file looked at again


@pytest.mark.parametrize("damage", [b"", b"not a scan", b"truncated"])
def test_a_damaged_file_serves_nothing_and_is_replaced(shared, root, scans, damage):
    storage = LocalStorage(str(root))
    page_at(storage, "test", "f", BY_SIZE, 0, 100)
    (path,) = shared.glob("*.scan")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2] if damage == b"truncated" else damage)

    other_worker()
    assert names_of(every_entry(storage, "f", BY_SIZE, limit=700)) == fresh_order(root / "f", Sort.SIZE, True)
    assert scans == [True, True]
    assert shared_scans.load((storage.cache_key, "f")) is not None


def test_a_file_of_another_folder_serves_nothing(shared, root):
    storage = LocalStorage(str(root))
    page_at(storage, "test", "f", BY_SIZE, 0, 100)
    mine, other = (storage.cache_key, "f"), (storage.cache_key, "g")
    os.replace(shared_scans.path_of(mine), shared_scans.path_of(other))
    assert shared_scans.load(other) is None


def test_a_scan_of_a_folder_changed_a_moment_before_is_not_shared(shared, root, monkeypatch):
    monkeypatch.setattr(kept_scans, "RACY_SECONDS", 1.0)
    page_at(LocalStorage(str(root)), "test", "f", BY_SIZE, 0, 100)  # the folder was written just now
    assert not list(shared.glob("*.scan"))


def test_names_no_utf8_decodes_and_every_column_come_back_as_they_were(tmp_path):
    scan = FolderScan(
        "f",
        ["caf\udce9.sql", "b", "sub"],  # a name holding the byte 0xe9 alone, as os.listdir gives it
        bytearray([0, 0, 1]),
        array("q", [3, 0, 4096]),
        array("d", [1e9, 1e9 + 0.5, 2e9]),
        version="1:2:3:4",
        changed_at=1e9,
    )
    orderings = {Sort.NAME: Ordering(array("I", [2, 1, 0]), 1), Sort.SIZE: Ordering(array("I", [2, 1, 0]), 1)}
    made = SharedScan(scan, 1e9 + 5, 1e9 + 4, frozenset({"f/caf\udce9.sql"}), orderings)
    assert decoded(("local:/x", "f"), encoded(("local:/x", "f"), made)) == made
    names_only = replace(made, scan=replace(scan, sizes=None, mtimes=None), orderings={})
    assert decoded(("local:/x", "f"), encoded(("local:/x", "f"), names_only)) == names_only


@pytest.mark.parametrize(
    "sort, ordering, sizes",
    [
        (Sort.NAME, Ordering(array("I", [0, 1, 3]), 0), True),  # a row the scan does not have
        (Sort.NAME, Ordering(array("I", [0, 1, 2]), 4), True),  # a split past the end
        (Sort.SIZE, Ordering(array("I", [0, 1, 2]), 0), False),  # by size, with no sizes
    ],
    ids=["row", "split", "sizes"],
)
def test_an_ordering_that_does_not_fit_its_scan_serves_nothing(sort, ordering, sizes):
    stats = (array("q", [1, 2, 3]), array("d", [1.0, 2.0, 3.0])) if sizes else (None, None)
    scan = FolderScan("f", ["a", "b", "c"], bytearray(3), *stats, version="v")
    made = SharedScan(scan, 1.0, 1.0, frozenset(), {sort: ordering})
    assert decoded(("s", "f"), encoded(("s", "f"), made)) is None
    assert decoded(("s", "f"), encoded(("s", "f"), replace(made, orderings={}))) is not None


def test_files_beyond_the_budget_go_least_recently_written_first(shared, monkeypatch):
    scan = FolderScan("f", ["a"] * 1000, bytearray(1000), version="v")
    size = len(encoded(("s", "0"), SharedScan(scan, 1.0, 1.0, frozenset())))
    monkeypatch.setattr(shared_module, "BUDGET_BYTES", 3 * size)
    for number in range(5):
        shared_scans.save(
            ("s", str(number)), SharedScan(replace(scan, folder=str(number)), 1.0, 1.0, frozenset())
        )
        os.utime(shared_scans.path_of(("s", str(number))), (1e9 + number, 1e9 + number))
    kept = [number for number in range(5) if shared_scans.load(("s", str(number))) is not None]
    assert kept == [2, 3, 4]


def test_what_a_killed_worker_left_half_written_is_removed(shared):
    abandoned, recent = shared / "abandoned.part", shared / "being-written.part"
    for path in (abandoned, recent):
        path.write_bytes(b"half a scan")
    old = time.time() - shared_module.ABANDONED_SECONDS - 1
    os.utime(abandoned, (old, old))
    shared_scans.save(
        ("s", "f"), SharedScan(FolderScan("f", ["a"], bytearray(1), version="v"), 1.0, 1.0, frozenset())
    )
    assert not abandoned.exists() and recent.exists()


def test_a_full_disk_costs_the_file_alone(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(shared_scans, "folder", None)  # as it was, after the test
    scan = FolderScan(
        "f", [f"backup-{number:06d}" for number in range(100_000)], bytearray(100_000), version="v"
    )
    with tmpfs_mounted(tmp_path / "small", "256k") as small:
        shared_scans.keep_in(small / "scans")
        with caplog.at_level(logging.WARNING):
            shared_scans.save(("s", "f"), SharedScan(scan, time.time(), time.time(), frozenset()))
        assert "could not be kept" in caplog.text
        assert os.listdir(small / "scans") == []  # no half-written file left
        assert shared_scans.load(("s", "f")) is None
