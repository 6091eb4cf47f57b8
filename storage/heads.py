"""The first bytes of many files at once: what a page of a folder reads to tell which files are
encrypted (core/explorer.py), a thousand of them for one page of the files API.

Opening each file by its path beneath the storage's root costs a resolution of the whole path and a
few more system calls (about 20 us a file here); a local folder's files are opened instead from the
folder's own descriptor, name by name, refusing symlinks (O_NOFOLLOW), and read with one pread
(about 4 us). A symlink is opened the careful way, resolved beneath the root like any path.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import BinaryIO

from storage.base import Entry, FileMissing, NotAFile, StorageError, UnsafePath

UNREADABLE = (StorageError, FileMissing, NotAFile, UnsafePath, OSError, ValueError)
NAME_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC  # a FIFO cannot hang us


def heads_one_by_one(
    open_file: Callable[[str, int], BinaryIO], entries: Sequence[Entry], size: int
) -> list[bytes | None]:
    """Each entry's first `size` bytes (fewer where it is shorter), None where it cannot be read:
    one open each, as a remote storage has no cheaper way."""
    return [_head(open_file, entry.path, entry.size, size) for entry in entries]


def _head(open_file: Callable[[str, int], BinaryIO], path: str, file_size: int, size: int) -> bytes | None:
    try:
        with open_file(path, file_size) as source:
            return source.read(size)
    except UNREADABLE:
        return None


def heads_in_folders(
    open_folder: Callable[[str], int],
    open_file: Callable[[str, int], BinaryIO],
    entries: Sequence[Entry],
    size: int,
) -> list[bytes | None]:
    """As heads_one_by_one, each folder opened once (`open_folder` gives a descriptor of it, confined
    beneath the root) and its files by name from there; a symlink through `open_file`."""
    heads: list[bytes | None] = []
    for folder, group in groupby(entries, key=lambda entry: entry.path.rpartition("/")[0]):
        heads += _heads_in(open_folder, open_file, folder, list(group), size)
    return heads


def _heads_in(
    open_folder: Callable[[str], int], open_file: Callable, folder: str, entries: list[Entry], size: int
) -> list[bytes | None]:
    try:
        folder_fd = open_folder(folder)
    except UNREADABLE:
        return [None] * len(entries)
    try:
        return [_named_head(folder_fd, open_file, entry, size) for entry in entries]
    finally:
        os.close(folder_fd)


def _named_head(folder_fd: int, open_file: Callable, entry: Entry, size: int) -> bytes | None:
    try:
        fd = os.open(entry.path.rpartition("/")[2], NAME_FLAGS, dir_fd=folder_fd)
    except OSError as exc:
        return _head(open_file, entry.path, entry.size, size) if exc.errno == errno.ELOOP else None
    try:
        return os.pread(fd, size, 0) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)
