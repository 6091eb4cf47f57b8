"""A kept scan of a watched folder (inotify) follows the folder's changes name by name: the same pages
as a fresh scan, with no read of the folder and sizes and dates current at once; and where the watch
loses track (the kernel's queue overflowed, the folder itself moved, a path swapped for a symlink),
the folder is read again, as an unwatched one is (tests/test_listing_patches.py)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from core import kept_scans, patches, snapshots
from core.listings import Order, Sort, page_at
from storage import watching
from storage.base import FileMissing, StorageError, UnsafePath
from storage.local import LocalStorage
from storage.watching import filesystem_of, watcher
from tests.conftest import tmpfs_mounted
from tests.helpers import (
    change_names,
    every_entry,
    fresh_order,
    inotify_watches,
    listed_names,
    listing_folder,
    wait_for,
    write_file_at,
)

COUNT = 1500
ORDERS = [(sort, descending) for sort in Sort for descending in (False, True)]

pytestmark = pytest.mark.usefixtures("no_kept_scans")


@pytest.fixture
def folder(tmp_path) -> Path:
    return listing_folder(tmp_path / "root", COUNT)


def kept_scan(root: Path) -> kept_scans.Snapshot:
    return kept_scans.snapshots.get((LocalStorage(str(root)).cache_key, "f"))


@pytest.mark.parametrize(("sort", "descending"), ORDERS)
def test_a_watched_scan_follows_names_coming_and_going_without_reading_the_folder(
    folder, scans, sort, descending
):
    assert listed_names(folder, sort, descending) == fresh_order(folder / "f", sort, descending)
    assert kept_scan(folder).watch is not None
    change_names(folder / "f")
    assert listed_names(folder, sort, descending) == fresh_order(folder / "f", sort, descending)
    assert scans == [sort is not Sort.NAME]  # the first scan only


def test_a_changed_size_or_date_moves_its_row_at_once(folder, scans):
    assert listed_names(folder, Sort.SIZE, True) == fresh_order(folder / "f", Sort.SIZE, True)
    write_file_at(folder / "f", "file-00001", 5000, 1e9)  # now the largest: no name came or went
    assert listed_names(folder, Sort.SIZE, True) == fresh_order(folder / "f", Sort.SIZE, True)
    os.utime(folder / "f" / "file-00002", (2e9, 2e9))  # the newest: only its times changed
    assert listed_names(folder, Sort.DATE, True) == fresh_order(folder / "f", Sort.DATE, True)
    assert scans == [True]


def test_a_file_growing_while_it_is_written_moves_with_each_write(folder, scans):
    listed_names(folder, Sort.SIZE, True)
    with open(folder / "f" / "dump.sql", "wb") as dump:
        for size in (10, 200, 5000):
            dump.write(b"x" * (size - dump.tell()))
            dump.flush()  # written, not closed: only IN_MODIFY tells
            assert listed_names(folder, Sort.SIZE, True) == fresh_order(folder / "f", Sort.SIZE, True)
    assert "dump.sql" in listed_names(folder, Sort.SIZE, True)[:20]
    assert scans == [True]


def test_a_file_that_became_a_folder_moves_to_the_folders(folder, scans):
    listed_names(folder, Sort.NAME, False)
    (folder / "f" / "file-00001").unlink()
    (folder / "f" / "file-00001").mkdir()
    (folder / "f" / "dir-00300").rmdir()
    (folder / "f" / "dir-00300").write_bytes(b"now a file")
    assert listed_names(folder, Sort.NAME, False) == fresh_order(folder / "f", Sort.NAME, False)
    assert scans == [False]


@pytest.fixture
def tmpfs(tmp_path):
    """A tmpfs, where a file's creation costs little."""
    with tmpfs_mounted(tmp_path / "tmpfs", "64m") as mountpoint:
        yield mountpoint
        kept_scans.snapshots.clear()  # its watches, before it goes


def test_an_overflowed_kernel_queue_means_the_folder_is_read_again(tmpfs, scans):
    folder = listing_folder(tmpfs / "root", COUNT)
    listed_names(folder, Sort.NAME, False)
    assert kept_scan(folder).watch is not None
    queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    folder_fd = os.open(folder / "f", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(queued // 2 + 10):  # a create and a delete each, never merged: the queue overflows
            os.close(os.open("flicker", os.O_WRONLY | os.O_CREAT, dir_fd=folder_fd))
            os.unlink("flicker", dir_fd=folder_fd)
    finally:
        os.close(folder_fd)
    write_file_at(folder / "f", "after-the-flood", 1, 1e9)
    assert listed_names(folder, Sort.NAME, False) == fresh_order(folder / "f", Sort.NAME, False)
    assert scans == [False, False]  # the names read again
    assert kept_scan(folder).watch is not None  # and a new watch set before they were
    write_file_at(folder / "f", "followed-again", 1, 1e9)
    assert "followed-again" in listed_names(folder, Sort.NAME, False)
    assert scans == [False, False]


def test_too_many_names_unasked_mean_the_folder_is_read_again(folder, scans, monkeypatch):
    monkeypatch.setattr(watcher, "touched_limit", 5)
    listed_names(folder, Sort.NAME, False)
    for number in range(6):
        write_file_at(folder / "f", f"new-{number}", 1, 1e9)
    assert listed_names(folder, Sort.NAME, False) == fresh_order(folder / "f", Sort.NAME, False)
    assert scans == [False, False]


def test_a_folder_renamed_away_and_another_in_its_place_lists_the_new_one(folder, tmp_path, scans):
    listed_names(folder, Sort.NAME, False)
    other = listing_folder(tmp_path / "other", 1200) / "f"
    write_file_at(other, "only-in-the-other", 1, 1e9)
    (folder / "f").rename(folder / "old")
    other.rename(folder / "f")
    assert listed_names(folder, Sort.NAME, False) == fresh_order(folder / "f", Sort.NAME, False)
    assert "only-in-the-other" in listed_names(folder, Sort.NAME, False)


def test_a_folder_on_the_way_swapped_moves_no_event_and_is_still_noticed(tmp_path, scans):
    root = listing_folder(tmp_path / "root" / "a", COUNT).parent  # storage root; the folder is a/f
    listing_folder(tmp_path / "b", 1100)
    storage = LocalStorage(str(root))
    page_at(storage, "test", "a/f", Order(), 0, 50)
    (root / "a").rename(tmp_path / "a-away")  # the watched folder itself does not move
    (tmp_path / "b").rename(root / "a")
    names = [entry.name for entry in page_at(storage, "test", "a/f", Order(), 0, 5000).entries]
    assert names == fresh_order(root / "a" / "f", Sort.NAME, False)
    assert scans == [False, False]


def test_a_watched_folder_swapped_for_a_symlink_out_of_the_storage_is_refused(folder, tmp_path):
    outside = listing_folder(tmp_path / "outside", 1100) / "f"
    listed_names(folder, Sort.NAME, False)
    (folder / "f").rename(folder / "away")
    (folder / "f").symlink_to(outside)
    with pytest.raises(UnsafePath):
        listed_names(folder, Sort.NAME, False)


def test_watches_go_with_their_scans(folder, tmp_path):
    small = tmp_path / "small"
    (small / "f").mkdir(parents=True)
    (small / "f" / "one").write_bytes(b"1")
    listed_names(small, Sort.NAME, False)  # too small to keep: its watch goes at once
    listed_names(folder, Sort.NAME, False)
    listed_names(folder, Sort.SIZE, False)  # a new scan, with sizes: its watch replaces the first
    assert inotify_watches(os.getpid()) == 1
    kept_scans.snapshots.clear()
    assert inotify_watches(os.getpid()) == 0


def test_folders_on_a_filesystem_inotify_cannot_follow_get_no_watch(folder, scans, monkeypatch):
    monkeypatch.setattr(watching, "LOCAL_FILESYSTEMS", frozenset({"nfs4"}))
    monkeypatch.setattr(kept_scans, "RACY_SECONDS", -1.0)  # kept although just written, as a second later
    listed_names(folder, Sort.NAME, False)
    assert kept_scan(folder).watch is None
    write_file_at(folder / "f", "came", 1, 1e9)
    assert "came" in listed_names(folder, Sort.NAME, False)
    assert scans == [False, False]  # the names read again: the folder's version moved


def test_the_filesystem_of_a_folder_is_that_of_its_own_mount(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        outer = filesystem_of(fd)
    finally:
        os.close(fd)
    with tmpfs_mounted(tmp_path / "mounted", "1m") as mountpoint:
        fd = os.open(mountpoint, os.O_RDONLY)
        try:
            assert filesystem_of(fd) == "tmpfs"
        finally:
            os.close(fd)
    assert outer in watching.LOCAL_FILESYSTEMS


def test_a_folder_listed_again_under_a_new_name_is_followed_under_it(folder, scans):
    """Both scans watch the same folder (the kernel's one watch for it): the move that ended the
    first watch, still queued when the second was set, does not end the second."""
    listed_names(folder, Sort.NAME, False)
    (folder / "f").rename(folder / "g")
    storage = LocalStorage(str(folder))

    def names_of_g() -> list[str]:
        return [entry.name for entry in every_entry(storage, "g", Order(), limit=700)]

    assert names_of_g() == fresh_order(folder / "g", Sort.NAME, False)
    write_file_at(folder / "g", "came", 1, 1e9)
    assert names_of_g() == fresh_order(folder / "g", Sort.NAME, False)
    assert scans == [False, False]  # each name's first scan; then followed


@pytest.fixture
def files_only(tmp_path) -> Path:
    """A folder of files alone: no folder among its rows, whose date no watch on it would tell."""
    root = listing_folder(tmp_path / "files", COUNT)
    for folder in (root / "f").glob("dir-*"):
        folder.rmdir()
    return root


def test_changes_a_watch_told_are_not_lost_when_following_them_fails(files_only, monkeypatch):
    listed_names(files_only, Sort.NAME, False)
    write_file_at(files_only / "f", "aaa-new", 1, 1e9)

    def out_of_descriptors(*args):
        raise StorageError("Cannot read f: Too many open files.")

    with monkeypatch.context() as failing:
        failing.setattr(snapshots, "followed", out_of_descriptors)
        with pytest.raises(StorageError):
            listed_names(files_only, Sort.NAME, False)
    assert listed_names(files_only, Sort.NAME, False) == fresh_order(files_only / "f", Sort.NAME, False)
    assert kept_scan(files_only).watch is not None  # watched again from there


def test_a_watch_set_by_a_patch_does_not_vouch_for_the_sizes_read_before_it(files_only, scans, monkeypatch):
    """The kept scan loses its watch (too many names at once); a file grows, a name comes: the patch
    that reads the names again sets a new watch, which never saw the growth. The old sizes serve
    for as long as an unwatched scan's, then are looked at again."""
    monkeypatch.setattr(watcher, "touched_limit", 5)
    listed_names(files_only, Sort.SIZE, True)
    for number in range(6):
        write_file_at(files_only / "f", f"new-{number}", 1, 1e9)
    write_file_at(files_only / "f", "file-00001", 5000, 1e9)  # now the largest; the version holds
    listed_names(files_only, Sort.SIZE, True)
    assert kept_scan(files_only).watch is not None and scans == [True, False]  # patched, watched again
    kept_scan(files_only).stats_at -= kept_scans.KEEP_SECONDS + 1
    listed_names(files_only, Sort.SIZE, True)  # served as kept, looked at again in the background
    wait_for(lambda: time.time() - kept_scan(files_only).stats_at < kept_scans.KEEP_SECONDS, "the refresh")
    assert listed_names(files_only, Sort.SIZE, True)[0] == "file-00001"
    assert scans[:2] == [True, False] and all(scans[2:])  # sizes looked at again, once or more


def test_the_date_of_a_folder_among_the_rows_is_looked_at_as_often_as_unwatched(folder, scans):
    """A file written inside a folder moves that folder's date, which the watch on its parent does
    not see."""
    listed_names(folder, Sort.DATE, True)
    (folder / "f" / "dir-00600" / "inside").write_bytes(b"1")  # the newest folder now
    kept_scan(folder).stats_at -= kept_scans.KEEP_SECONDS + 1
    listed_names(folder, Sort.DATE, True)
    wait_for(lambda: time.time() - kept_scan(folder).stats_at < kept_scans.KEEP_SECONDS, "the refresh")
    assert listed_names(folder, Sort.DATE, True) == fresh_order(folder / "f", Sort.DATE, True)
    assert scans[0] and len(scans) >= 2  # looked at again (a page racing the refresh may ask once more)


def test_a_patch_that_fails_leaves_no_watch_behind(files_only, monkeypatch):
    listed_names(files_only, Sort.NAME, False)
    kept_scans.snapshots.put(  # no watch: the next page reads the names again, setting one
        (LocalStorage(str(files_only)).cache_key, "f"), replace(kept_scan(files_only), watch=None)
    )
    assert inotify_watches(os.getpid()) == 0
    write_file_at(files_only / "f", "aaa-new", 1, 1e9)

    def gone_before_the_stat(*args):
        raise FileMissing("No such folder: f")

    monkeypatch.setattr(patches, "looked_at", gone_before_the_stat)
    with pytest.raises(FileMissing):
        listed_names(files_only, Sort.NAME, False)
    assert inotify_watches(os.getpid()) == 0
