"""The search below a folder: every match, each folder's in the listing's name order, nearer first."""

from __future__ import annotations

import shutil

import pytest

from core import search
from core.search import search_below
from storage.local import LocalStorage


def test_each_folders_matches_come_in_name_order_ties_of_case_included(tmp_path):
    names = ["Dump-b.sql", "dump-B.sql", "dump-a.SQL", "notes.txt", "DUMP-c.sql", "dump-b.sql", "x-dump"]
    for name in names:
        (tmp_path / "top" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "top" / name).write_bytes(b"x")
    for folder in ("top/sub-b", "top/Sub-a"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "dump.sql").write_bytes(b"x")

    found = search_below(LocalStorage(str(tmp_path)), "top", "DUMP", 100)

    here = sorted((name for name in names if "dump" in name.casefold()), key=lambda n: (n.casefold(), n))
    expected = [f"top/{name}" for name in here] + ["top/Sub-a/dump.sql", "top/sub-b/dump.sql"]
    assert [entry.path for entry in found.entries] == expected
    assert found.complete and found.folders == 3


def test_a_search_stops_at_its_limit_with_the_first_matches_by_name(tmp_path):
    (tmp_path / "many").mkdir()
    for number in reversed(range(3000)):
        (tmp_path / "many" / f"backup-{number:04d}.tar").write_bytes(b"")
    (tmp_path / "many" / "other.txt").write_bytes(b"")

    found = search_below(LocalStorage(str(tmp_path)), "many", "backup", 50)

    assert [entry.name for entry in found.entries] == [f"backup-{number:04d}.tar" for number in range(50)]
    assert not found.complete


@pytest.mark.parametrize("when", ["before its names are read", "after its names are read"])
@pytest.mark.parametrize("becomes", ["removed", "a file", "a symlink out of the storage"])
def test_a_folder_below_that_goes_during_the_search_is_passed_over(tmp_path, monkeypatch, when, becomes):
    for folder in ("top", "top/a", "top/b", "top/b/deeper", "top/c"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "dump.sql").write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "dump.sql").write_bytes(b"secret")
    storage, real_scan = LocalStorage(str(tmp_path / "top")), search.folded_scan

    def goes(target):
        shutil.rmtree(target)
        if becomes == "a file":
            target.write_bytes(b"")
        elif becomes != "removed":
            target.symlink_to(tmp_path / "outside")

    def scanned(storage, folder, stats=False):
        if folder == "b" and when.startswith("before"):
            goes(tmp_path / "top" / "b")
        folded = real_scan(storage, folder, stats)
        if folder == "b" and when.startswith("after"):
            goes(tmp_path / "top" / "b")
        return folded

    monkeypatch.setattr(search, "folded_scan", scanned)
    found = search_below(storage, "", "dump", 100)

    assert [entry.path for entry in found.entries] == ["dump.sql", "a/dump.sql", "c/dump.sql"]
    assert found.complete and found.folders == 3
