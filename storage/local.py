"""A folder on this machine as a storage."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from storage.base import (
    Entry,
    FileMissing,
    NotAFile,
    StorageError,
    UnsafePath,
    clean_relative_path,
    sorted_entries,
)


class LocalStorage:
    """Files below one root folder; symlinks are followed only while they stay inside it."""

    redirects = False  # local files always go out through the server, with sendfile
    cheap_reads = True

    def __init__(self, root: str):
        self.root = Path(root)

    def check(self) -> str:
        """A sentence saying the folder is readable, or a StorageError saying why not."""
        _, real = self._resolve("", allow_root=True)
        if not real.is_dir() or not os.access(real, os.R_OK | os.X_OK):
            raise StorageError(f"{real} is not a readable folder.")
        return f"Folder {real} is readable."

    def _resolve(self, path: str, allow_root: bool = False) -> tuple[str, Path]:
        relative = clean_relative_path(path, allow_root=allow_root)
        try:
            root = self.root.resolve(strict=True)
        except OSError as exc:
            raise StorageError(f"The storage folder is not available: {exc.strerror}.") from exc
        real = (root / relative).resolve()
        if not real.is_relative_to(root):
            raise UnsafePath("The path leads outside the storage.")
        return relative, real

    def _entry(self, relative: str, real: Path) -> Entry:
        try:
            info = real.stat()
        except FileNotFoundError as exc:
            raise FileMissing(f"No such file: {relative}") from exc
        except OSError as exc:
            raise StorageError(f"Cannot read {relative}: {exc.strerror}.") from exc
        name = relative.rsplit("/", 1)[-1]
        version = f"{info.st_dev}:{info.st_ino}:{info.st_ctime_ns}:{info.st_mtime_ns}"
        return Entry(name, relative, info.st_size, info.st_mtime, stat.S_ISDIR(info.st_mode), version)

    def list(self, folder: str = "") -> list[Entry]:
        relative, real = self._resolve(folder, allow_root=True)
        try:
            names = os.listdir(real)
        except FileNotFoundError as exc:
            raise FileMissing(f"No such folder: {relative or '/'}") from exc
        except NotADirectoryError as exc:
            raise NotAFile(f"Not a folder: {relative}") from exc
        except OSError as exc:
            raise StorageError(f"Cannot list {relative or '/'}: {exc.strerror}.") from exc
        entries = []
        for name in names:
            child = f"{relative}/{name}" if relative else name
            try:
                entries.append(self._entry(child, self._resolve(child)[1]))
            except (UnsafePath, FileMissing):
                continue  # links out of the root and dangling links are not shown
        return sorted_entries(entries)

    def stat(self, path: str) -> Entry:
        relative, real = self._resolve(path)
        entry = self._entry(relative, real)
        if entry.is_dir or not real.is_file():
            raise NotAFile(f"Not a file: {relative}")
        return entry

    def open(self, path: str, size: int | None = None) -> BinaryIO:
        """`size` is for adapters that would otherwise ask for it again; a local open needs none."""
        relative, real = self._resolve(path)
        try:
            # O_NOFOLLOW: the resolved path must not have become a symlink since we checked it.
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise FileMissing(f"No such file: {relative}") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath("The path leads outside the storage.") from exc
            raise StorageError(f"Cannot open {relative}: {exc.strerror}.") from exc
        return open(fd, "rb", buffering=0)
