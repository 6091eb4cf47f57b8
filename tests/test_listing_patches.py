"""A kept scan patched when names come and go: the same pages as a fresh scan of the folder, having
read only the names again and looked only at those that came; and a fresh scan whenever a patch
could not tell the folder as it is. Here the folders get no inotify watch, as on NFS or CIFS:
tests/test_listing_watches.py has the same folders watched."""

from __future__ import annotations

import time

import pytest

from core import kept_scans, snapshots
from core.listings import Order, Sort, page_at
from storage import watching
from storage.base import FileMissing, UnsafePath
from storage.local import LocalStorage
from tests.helpers import (
    change_names,
    every_entry,
    fresh_order,
    listed_names,
    listing_folder,
    wait_for,
    write_file_at,
)

COUNT = 3000
ORDERS = [(sort, descending) for sort in Sort for descending in (False, True)]


@pytest.fixture(autouse=True)
def scans_kept_unwatched(monkeypatch, no_kept_scans):
    """Scans kept although their folder changed a moment ago, as they would be a second later, and
    no folder watched."""
    monkeypatch.setattr(watching, "LOCAL_FILESYSTEMS", frozenset())
    monkeypatch.setattr(kept_scans, "RACY_SECONDS", -1.0)


@pytest.fixture
def folder(tmp_path):
    return listing_folder(tmp_path / "root", COUNT)


@pytest.mark.parametrize(("sort", "descending"), ORDERS)
def test_a_patched_scan_lists_what_a_fresh_one_would(folder, scans, sort, descending):
    assert listed_names(folder, sort, descending) == fresh_order(folder / "f", sort, descending)
    change_names(folder / "f")
    assert listed_names(folder, sort, descending) == fresh_order(folder / "f", sort, descending)
    assert scans == [sort is not Sort.NAME, False]  # the patch read the names again, and no stat each


def test_every_order_kept_is_patched_and_later_orders_leave_out_what_went(folder, scans):
    for sort, descending in ORDERS:
        listed_names(folder, sort, descending)
    change_names(folder / "f")
    listed_names(folder, Sort.SIZE, False)  # patches the scan: name, size and date orders at once
    for sort, descending in ORDERS:
        assert listed_names(folder, sort, descending) == fresh_order(folder / "f", sort, descending)
    assert scans == [False, True, False]  # names; sizes and dates; then the patch


def test_patches_one_after_another_stay_exact(folder, scans):
    for round in range(5):
        (folder / "f" / f"file-{round * 7 + 1:05d}").unlink()
        write_file_at(folder / "f", f"round-{round}", round * 30, 1e9 + round)
        assert listed_names(folder, Sort.DATE, True) == fresh_order(folder / "f", Sort.DATE, True)
    assert scans == [True, False, False, False, False]


def test_a_name_that_went_and_came_back_is_listed_once_and_shown_as_it_is_now(folder, scans):
    listed_names(folder, Sort.SIZE, False)
    (folder / "f" / "file-00001").unlink()
    write_file_at(folder / "f", "file-00001", 100, 1e9)
    entries = every_entry(LocalStorage(str(folder)), "f", Order(Sort.SIZE), limit=700)
    assert [entry.name for entry in entries].count("file-00001") == 1
    assert next(entry.size for entry in entries if entry.name == "file-00001") == 100
    assert scans == [True, False]


def test_sizes_and_dates_too_old_for_a_patch_are_looked_at_again(folder, scans):
    listed_names(folder, Sort.SIZE, False)
    write_file_at(folder / "f", "file-00001", 100, 1e9)  # a size that changed: the version does not move
    write_file_at(folder / "f", "file-new", 1, 1e9)  # a name that came: the version moves
    kept_scan(folder).stats_at -= kept_scans.STALE_SECONDS
    assert listed_names(folder, Sort.SIZE, False) == fresh_order(folder / "f", Sort.SIZE, False)
    assert scans == [True, True]


def test_more_changes_than_a_patch_is_worth_mean_a_fresh_scan(folder, scans, monkeypatch):
    monkeypatch.setattr(snapshots, "PATCH_LIMIT", 10)
    listed_names(folder, Sort.NAME, False)
    for number in range(11):
        write_file_at(folder / "f", f"new-{number}", 1, 1e9)
    assert listed_names(folder, Sort.NAME, False) == fresh_order(folder / "f", Sort.NAME, False)
    assert scans == [False, False, False]  # the names read for the patch, then a fresh scan


def test_a_file_that_became_a_folder_means_a_fresh_scan(folder, scans):
    listed_names(folder, Sort.NAME, False)
    (folder / "f" / "file-00001").unlink()
    (folder / "f" / "file-00001").mkdir()
    assert listed_names(folder, Sort.NAME, False) == fresh_order(folder / "f", Sort.NAME, False)
    assert scans == [False, False, False]


def test_a_scan_mostly_of_names_gone_is_replaced_by_a_fresh_one(folder, scans, monkeypatch):
    listed_names(folder, Sort.NAME, False)
    for round in range(4):
        for number in range(1 + round * 300, 300 + round * 300):
            (folder / "f" / f"file-{number:05d}").unlink()
        assert listed_names(folder, Sort.NAME, False) == fresh_order(folder / "f", Sort.NAME, False)
    # Three patches, the last leaving 897 of 3000 rows dead (over a quarter): then a fresh scan.
    assert scans == [False] * 5
    kept = kept_scan(folder)
    assert not kept.dead and len(kept.scan) == COUNT - 4 * 299


def kept_scan(root):
    return kept_scans.snapshots.get((LocalStorage(str(root)).cache_key, "f"))


def whole_folder(root, sort: Sort) -> list:
    return page_at(LocalStorage(str(root)), "test", "f", Order(sort), 0, COUNT + 100).entries


def test_sizes_due_to_be_looked_at_again_serve_while_a_scan_in_the_background_does_it(folder, scans):
    whole_folder(folder, Sort.SIZE)
    write_file_at(folder / "f", "file-00001", 1000, 1e9)  # now the largest file; the version does not move
    kept_scan(folder).stats_at -= kept_scans.KEEP_SECONDS + 1
    served = whole_folder(folder, Sort.SIZE)
    moved = next(entry for entry in served if entry.name == "file-00001")
    assert moved.size == 1000 and served[-1] is not moved  # shown as it is, placed as it was
    wait_for(lambda: time.time() - kept_scan(folder).stats_at < kept_scans.KEEP_SECONDS, "the refresh")
    assert whole_folder(folder, Sort.SIZE)[-1].name == "file-00001"
    assert scans == [True, True]


def test_sizes_too_old_to_serve_while_they_are_refreshed_are_waited_for(folder, scans):
    whole_folder(folder, Sort.SIZE)
    write_file_at(folder / "f", "file-00001", 1000, 1e9)
    kept_scan(folder).stats_at -= kept_scans.STALE_SECONDS
    assert whole_folder(folder, Sort.SIZE)[-1].name == "file-00001"
    assert scans == [True, True]


@pytest.mark.parametrize("page_sorted_first", [True, False], ids=["page-sorted-first", "refresh-first"])
def test_a_large_folder_shown_by_name_has_its_sizes_ready_for_the_next_order(
    folder, scans, monkeypatch, page_sorted_first
):
    """Whichever of the two ends first in the background, the page's own sort (first_rows) or
    the scan of sizes and dates, the scan that stays is sorted by name too."""
    monkeypatch.setattr(snapshots, "PREFETCH", True)
    held = []
    background = snapshots.in_background
    monkeypatch.setattr(
        snapshots,
        "in_background",
        lambda work, name: held.append(work) if name == "listing-sort" else background(work, name),
    )
    page_at(LocalStorage(str(folder)), "test", "f", Order(), 0, 100)
    if page_sorted_first:
        held.pop()()
    wait_for(lambda: kept_scan(folder).scan.sizes is not None, "the sizes and dates read in the background")
    for work in held:
        work()  # the page's sort, ending after the refresh: of the scan the refresh replaced
    assert set(kept_scan(folder).orderings) == {Sort.NAME}  # the name order, made with the sizes
    assert whole_folder(folder, Sort.DATE)[0].name == fresh_order(folder / "f", Sort.DATE, False)[0]
    assert scans == [False, True]  # the names for the page, then the background scan: none for the date order


@pytest.mark.parametrize("gone", ["removed", "swapped for a symlink out of the storage"])
def test_a_refresh_that_finds_its_folder_gone_says_why_and_ends(folder, scans, monkeypatch, caplog, gone):
    """The sizes and dates of a folder shown by name are looked at in the background (here held
    until the test runs it), by when the folder may be gone: the refresh logs why and ends, and the
    folder's next page says what became of it."""
    monkeypatch.setattr(snapshots, "PREFETCH", True)
    held = {}
    monkeypatch.setattr(snapshots, "in_background", lambda work, name: held.setdefault(name, work))
    storage = LocalStorage(str(folder))
    page_at(storage, "test", "f", Order(), 0, 100)
    (folder / "f").rename(folder.parent / "elsewhere")
    if gone != "removed":
        (folder / "f").symlink_to(folder.parent / "elsewhere")

    held["listing-refresh"]()
    assert "sizes and dates could not be looked at again" in caplog.text
    assert not snapshots.refreshing  # a later page may ask again
    with pytest.raises(FileMissing if gone == "removed" else UnsafePath):
        page_at(storage, "test", "f", Order(Sort.SIZE), 0, 100)
