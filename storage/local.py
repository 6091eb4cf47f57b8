"""A folder on this machine as a storage."""

from __future__ import annotations

import errno
import os
import stat
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO

from storage.base import (
    FOLDER_GONE,
    Entry,
    FileMissing,
    FolderScan,
    NotAFile,
    StorageError,
    Unreadable,
    UnsafePath,
    casefolded_name_key,
    clean_relative_path,
)
from storage.beneath import open_beneath
from storage.heads import heads_in_folders
from storage.watching import FolderWatch, watcher

# What an OS error met below the root says about the path asked for: an answer for that request,
# not an outage. Any other error (EIO, EMFILE...) is a StorageError.
REFUSALS = {
    errno.ENOENT: (FileMissing, "No such {what}: {path}"),
    errno.ENOTDIR: (FileMissing, "No such {what}: {path}"),  # a file where the path needs a folder
    errno.EISDIR: (NotAFile, "Not a {what}: {path}"),
    errno.ENXIO: (NotAFile, "Not a {what}: {path}"),  # a socket
    errno.EXDEV: (UnsafePath, "The path leads outside the storage."),
    errno.ELOOP: (UnsafePath, "The path leads through too many symbolic links."),
    errno.ENAMETOOLONG: (UnsafePath, "The path, or a name in it, is too long."),
    errno.EACCES: (Unreadable, "The server is not allowed to read {path}."),
    errno.EPERM: (Unreadable, "The server is not allowed to read {path}."),
}
READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY  # a FIFO planted in the folder cannot hang us


def refusal(exc: OSError, path: str, what: str = "file") -> Exception:
    """The storage exception for `exc`, met while opening `path` (a file or folder) below the root."""
    kind, message = REFUSALS.get(exc.errno, (StorageError, "Cannot read {path}: {reason}."))
    return kind(message.format(what=what, path=path or "/", reason=exc.strerror))


@contextmanager
def refusing(path: str, what: str = "file") -> Iterator[None]:
    """OS errors inside the block become the storage exception they mean for `path`."""
    try:
        yield
    except OSError as exc:
        raise refusal(exc, path, what) from exc


def child_path(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def require_file(fd: int, path: str) -> None:
    """NotAFile unless the opened descriptor is a regular file, which is then made blocking again."""
    with refusing(path):
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    if not regular:
        raise NotAFile(f"Not a file: {path}")
    os.set_blocking(fd, True)


def version_of(info: os.stat_result) -> str:
    return f"{info.st_dev}:{info.st_ino}:{info.st_ctime_ns}:{info.st_mtime_ns}"


def content_version_of(info: os.stat_result) -> str:
    """A file's version without its device number, which is each host's own for a folder several
    hosts mount (NFS): the same file then has one ETag, digest and tag verdict on every host."""
    return f"{info.st_ino}:{info.st_ctime_ns}:{info.st_mtime_ns}"


def identity_of(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def entry_of(path: str, info: os.stat_result) -> Entry:
    """An Entry from a stat of the very object that was opened, never from a second lookup."""
    name = path.rsplit("/", 1)[-1]
    is_dir = stat.S_ISDIR(info.st_mode)
    return Entry(name, path, info.st_size, info.st_mtime, is_dir, content_version_of(info))


class Columns:
    """A scan's columns as they fill, one row per entry shown."""

    def __init__(self, stats: bool):
        self.names: list[str] = []
        self.folders = bytearray()
        self.sizes = array("q") if stats else None
        self.mtimes = array("d") if stats else None

    def add_stat(self, name: str, info: os.stat_result) -> None:
        self.names.append(name)
        self.folders.append(stat.S_ISDIR(info.st_mode))
        self.sizes.append(info.st_size)
        self.mtimes.append(info.st_mtime)

    def finished(self, folder: str, info: os.stat_result) -> FolderScan:
        """The scan they make; `info` is the folder's stat from before it was read."""
        return FolderScan(
            folder, self.names, self.folders, self.sizes, self.mtimes, None, version_of(info), info.st_ctime
        )


HIDDEN = (UnsafePath, FileMissing, Unreadable)  # what hides a listed name rather than failing the listing


class LocalStorage:
    """Files below one root folder; symlinks are followed only while they stay inside it.

    Every path is resolved beneath a descriptor of the root, in one step (storage/beneath.py),
    so a folder swapped for a symlink mid-request cannot lead out of it.
    """

    redirects = False  # local files always go out through the server, with sendfile
    cheap_reads = True
    pages_by_name = False

    def __init__(self, root: str):
        self.root = Path(root)
        self.cache_key = f"local:{root}"

    @contextmanager
    def _root(self) -> Iterator[int]:
        """The root folder, opened afresh (it may be a symlink the admin chose: only what lies below
        it is confined). Missing or unreadable, the storage is down: StorageError."""
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StorageError(f"The storage folder is not available: {exc.strerror}.") from exc
        try:
            yield fd
        finally:
            os.close(fd)

    def check(self) -> str:
        """A sentence saying the folder is readable, or a StorageError saying why not."""
        real = self.root.resolve()
        with self._root() as root_fd:
            if not os.access(".", os.R_OK | os.X_OK, dir_fd=root_fd):
                raise StorageError(f"{real} is not a readable folder.")
        return f"Folder {real} is readable."

    def _stat_below(self, root_fd: int, path: str) -> os.stat_result:
        """What `path` resolves to beneath the root (symlinks followed), without opening it for reading."""
        with refusing(path):
            fd = open_beneath(root_fd, path, os.O_PATH)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)

    def _open_folder(self, root_fd: int, path: str) -> int:
        """A descriptor to list the folder `path` with; NotAFile when it is something else."""
        with refusing(path, "folder"):
            fd = open_beneath(root_fd, path, os.O_PATH)
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    raise NotAFile(f"Not a folder: {path}")
                return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            finally:
                os.close(fd)

    def _linked(self, root_fd: int, path: str) -> os.stat_result | None:
        """What a listed symlink leads to beneath the root; None (hidden) when it leads out of it,
        nowhere, or where the server may not look."""
        try:
            return self._stat_below(root_fd, path)
        except HIDDEN:
            return None

    def _looked_at(self, root_fd: int, folder_fd: int, folder: str, name: str) -> os.stat_result | None:
        """One name of the folder, stat'ed relative to the folder's descriptor (one fstatat), a
        symlink resolved beneath the root; None when it has gone or is hidden."""
        try:
            info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        except OSError as exc:
            error = refusal(exc, child_path(folder, name))
            if isinstance(error, HIDDEN):
                return None
            raise error from exc
        if stat.S_ISLNK(info.st_mode):
            return self._linked(root_fd, child_path(folder, name))
        return info

    def _scan_below(self, root_fd: int, folder_fd: int, folder: str, stats: bool) -> Columns:
        columns = Columns(stats)
        with refusing(folder, "folder"), os.scandir(folder_fd) as children:
            if not stats:
                self._names_below(columns, children, root_fd, folder_fd, folder)
                return columns
            for child in children:
                info = self._looked_at(root_fd, folder_fd, folder, child.name)
                if info is not None:
                    columns.add_stat(child.name, info)
        return columns

    def _names_below(self, columns: Columns, children, root_fd: int, folder_fd: int, folder: str) -> None:
        """A name's kind comes from the directory itself (d_type): only symlinks cost a lookup, so
        the names and kinds of 100,000 entries take one pass of getdents, and C loops (map) where
        the folder holds no symlink."""
        children = list(children)
        if not any(map(os.DirEntry.is_symlink, children)):
            columns.names = list(map(attrgetter("name"), children))
            columns.folders = bytearray(map(os.DirEntry.is_dir, children))  # no symlink: no stat
            return
        add_name, add_kind = columns.names.append, columns.folders.append
        for child in children:
            if not child.is_symlink():
                add_name(child.name)
                add_kind(child.is_dir(follow_symlinks=False))
                continue
            info = self._looked_at(root_fd, folder_fd, folder, child.name)
            if info is not None:
                add_name(child.name)
                add_kind(stat.S_ISDIR(info.st_mode))

    @contextmanager
    def _folder(self, root_fd: int, folder: str) -> Iterator[int]:
        folder_fd = self._open_folder(root_fd, folder)
        try:
            yield folder_fd
        finally:
            os.close(folder_fd)

    def scan(self, folder: str = "", stats: bool = False) -> FolderScan:
        relative = clean_relative_path(folder, allow_root=True)
        with self._root() as root_fd, self._folder(root_fd, relative) as folder_fd:
            info = os.fstat(folder_fd)  # before reading: a change while it is read moves the version
            columns = self._scan_below(root_fd, folder_fd, relative, stats)
        return columns.finished(relative, info)

    def scan_entries(self, scan: FolderScan, rows: Sequence[int]) -> list[Entry]:
        """Each row looked at afresh (a fstatat each): a page shows sizes and dates as they are now."""
        with self._root() as root_fd, self._folder(root_fd, scan.folder) as folder_fd:
            entries = []
            for row in rows:
                name = scan.names[row]
                info = self._looked_at(root_fd, folder_fd, scan.folder, name)
                if info is not None:
                    entries.append(entry_of(child_path(scan.folder, name), info))
            return entries

    def folder_version(self, folder: str) -> str:
        relative = clean_relative_path(folder, allow_root=True)
        with self._root() as root_fd:
            info = self._stat_below(root_fd, relative)
        return version_of(info)

    def watch(self, folder: str) -> FolderWatch | None:
        relative = clean_relative_path(folder, allow_root=True)
        with self._root() as root_fd, self._folder(root_fd, relative) as folder_fd:
            watched = identity_of(os.fstat(folder_fd))
            return watcher.watch(folder_fd, lambda: self._identity(relative) == watched)

    def _identity(self, folder: str) -> tuple[int, int] | None:
        """Which folder the path leads to now; None where it leads nowhere it may."""
        try:
            with self._root() as root_fd:
                return identity_of(self._stat_below(root_fd, folder))
        except (StorageError, *FOLDER_GONE):
            return None

    name_key = staticmethod(casefolded_name_key)

    def stat(self, path: str) -> Entry:
        relative = clean_relative_path(path)
        with self._root() as root_fd:
            info = self._stat_below(root_fd, relative)
        if not stat.S_ISREG(info.st_mode):
            raise NotAFile(f"Not a file: {relative}")
        return entry_of(relative, info)

    def open_file(self, path: str) -> tuple[Entry, BinaryIO]:
        """Open a file and describe what was opened (fstat), so size and ETag match the bytes."""
        source = self.open(path)
        try:
            return entry_of(clean_relative_path(path), os.fstat(source.fileno())), source
        except BaseException:
            source.close()
            raise

    def read_heads(self, entries: Sequence[Entry], size: int) -> list[bytes | None]:
        """Each folder opened once, and its files by name from there (storage/heads.py)."""

        def open_folder(folder: str) -> int:
            return self._open_folder(root_fd, clean_relative_path(folder, allow_root=True))

        try:
            with self._root() as root_fd:
                return heads_in_folders(open_folder, self.open, entries, size)
        except StorageError:  # the root itself is gone
            return [None] * len(entries)

    def open(self, path: str, size: int | None = None) -> BinaryIO:
        """`size` is for adapters that would otherwise ask for it again; a local open needs none."""
        relative = clean_relative_path(path)
        with self._root() as root_fd, refusing(relative):
            fd = open_beneath(root_fd, relative, READ_FLAGS)
        try:
            require_file(fd, relative)
        except BaseException:
            os.close(fd)
            raise
        return open(fd, "rb", buffering=0)
