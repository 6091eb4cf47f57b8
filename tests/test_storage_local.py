"""The local adapter: listing, stat, open, and every way a path could try to leave the root."""

from __future__ import annotations

import pytest

from storage.base import FileMissing, NotAFile, StorageError, UnsafePath, clean_relative_path
from storage.local import LocalStorage

HOSTILE_PATHS = [
    "..",
    "../secret.txt",
    "../../../../../../etc/passwd",
    "a/../../secret.txt",
    "a/b/../../../secret.txt",
    "./../secret.txt",
    "folder/..",
    "folder/../..",
    "/etc/passwd",
    "//etc/passwd",
    "/",
    "\\etc\\passwd",
    "..\\secret.txt",
    "folder\\..\\..\\secret.txt",
    "C:\\Windows\\win.ini",
    "db.sql\x00.txt",
    "\x00",
    "line\nbreak",
    "tab\there",
    "esc\x1b[31m",
    "del\x7f",
    "a" * 5000,
    "",
    ".",
    "./",
    "escape-file-link",
    "escape-dir-link/secret.txt",
    "folder/escape-link",
]


@pytest.fixture
def root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not serve")
    root = tmp_path / "root"
    (root / "folder" / "deeper").mkdir(parents=True)
    (root / "db.sql.gz").write_bytes(b"dump")
    (root / "folder" / "a.tar").write_bytes(b"x" * 10)
    (root / "folder" / "deeper" / "b.tar").write_bytes(b"y")
    (root / "escape-file-link").symlink_to(outside / "secret.txt")
    (root / "escape-dir-link").symlink_to(outside)
    (root / "folder" / "escape-link").symlink_to("../../outside/secret.txt")
    (root / "inside-link").symlink_to("folder/a.tar")
    return root


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_refused(root, path):
    storage = LocalStorage(str(root))
    with pytest.raises(UnsafePath):
        storage.stat(path)
    with pytest.raises(UnsafePath):
        storage.open(path)


def test_there_are_at_least_twenty_hostile_paths():
    assert len(set(HOSTILE_PATHS)) >= 20


@pytest.mark.parametrize(
    ("given", "clean"),
    [
        ("db.sql.gz", "db.sql.gz"),
        ("./folder//a.tar", "folder/a.tar"),
        ("folder/./deeper/b.tar", "folder/deeper/b.tar"),
        ("..hidden", "..hidden"),
        ("na..me", "na..me"),
        ("%2e%2e/x", "%2e%2e/x"),
        ("über.tar", "über.tar"),
    ],
)
def test_harmless_paths_are_normalised(given, clean):
    assert clean_relative_path(given) == clean


def test_list_shows_folders_first_and_hides_links_that_escape(root):
    entries = LocalStorage(str(root)).list("")
    assert [(e.name, e.is_dir) for e in entries] == [
        ("folder", True),
        ("db.sql.gz", False),
        ("inside-link", False),
    ]
    assert entries[1].size == 4 and entries[1].path == "db.sql.gz"


def test_list_subfolder_gives_paths_from_the_root(root):
    entries = LocalStorage(str(root)).list("folder")
    assert [e.path for e in entries] == ["folder/deeper", "folder/a.tar"]


def test_list_refuses_hostile_folder(root):
    with pytest.raises(UnsafePath):
        LocalStorage(str(root)).list("../outside")


def test_stat_and_open_a_file_and_a_link_inside(root):
    storage = LocalStorage(str(root))
    assert storage.stat("inside-link").size == 10
    with storage.open("folder/deeper/b.tar") as f:
        assert f.read() == b"y"
        assert f.fileno() >= 0


def test_missing_and_folder_and_unavailable_root(root, tmp_path):
    storage = LocalStorage(str(root))
    with pytest.raises(FileMissing):
        storage.stat("nope.tar")
    with pytest.raises(NotAFile):
        storage.stat("folder")
    with pytest.raises(FileMissing):
        storage.open("nope.tar")
    with pytest.raises(StorageError):
        LocalStorage(str(tmp_path / "gone")).stat("db.sql.gz")
