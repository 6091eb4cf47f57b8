"""What every storage adapter offers, and the errors it may raise."""

from __future__ import annotations

import io
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from storage.watching import FolderWatch

MAX_PATH_LENGTH = 4096
CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


class StorageError(Exception):
    """The storage could not be read (permissions, I/O, network)."""


class Unreadable(StorageError):
    """A file or folder inside the storage that the server may not read: that path's answer, not
    an outage (still a StorageError, so that code skipping unreadable files skips these too)."""


class UnsafePath(ValueError):
    """A path that tries to leave the storage root or is not a plain relative path."""


class UnknownStorage(LookupError):
    """No storage with that id."""


class FileMissing(LookupError):
    """No file at that path."""


class NotAFile(ValueError):
    """The path names a folder, or something that is not a regular file."""


# What reading a folder named a moment ago raises when it went since, or became a file or a symlink
# out of the storage: a walk passes over it, as a listing passes over such a name.
FOLDER_GONE = (FileMissing, NotAFile, UnsafePath)


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    size: int
    mtime: float
    is_dir: bool
    # Changes whenever the content could have: inode and ctime for a local file (a same-size,
    # same-mtime rewrite still moves the ctime), the object's ETag and version on S3.
    version: str = ""


@dataclass(frozen=True)
class FolderScan:
    """Every entry of one folder as compact columns, row i across them: what sorting and paging a
    folder of 100,000 files need, in a few MB rather than 100,000 Entry objects."""

    folder: str  # the folder's clean relative path
    names: list[str]
    folders: bytearray  # 1 where the row is a folder
    sizes: array | None = None  # None when the scan did not look at each entry (names and kinds only)
    mtimes: array | None = None
    versions: list[str] | None = None  # the entries' versions, where the listing carries them (S3)
    version: str | None = None  # the folder's own version, where it has one that moves on any change
    changed_at: float = 0.0  # when that version last moved (the folder's ctime)

    def __len__(self) -> int:
        return len(self.names)


class Storage(Protocol):
    redirects: bool  # stored bytes may be handed out as a presigned URL instead of through us
    cheap_reads: bool  # reading a few bytes costs no request (worth sniffing every file's header)
    # The store itself lists a folder page by page in name order (S3: key order, folders among the
    # files), so that order needs no scan of the whole folder.
    pages_by_name: bool
    cache_key: str  # the same for storages that show the same files; never holds a secret

    def check(self) -> str:
        """A sentence saying the storage answers; StorageError saying what is wrong otherwise."""

    def presigned_url(self, path: str, seconds: int, disposition: str) -> str:
        """A short-lived URL the storage itself serves (only where `redirects`)."""

    def scan(self, folder: str = "", stats: bool = False) -> FolderScan:
        """Every entry of one folder; with `stats`, sizes and dates too (one stat per local entry)."""

    def scan_entries(self, scan: FolderScan, rows: Sequence[int]) -> list[Entry]:
        """The Entry of each row, in that order; rows gone since the scan are left out."""

    def folder_version(self, folder: str) -> str | None:
        """The folder's version now (cheap: one stat), to tell whether a scan still holds."""

    def watch(self, folder: str) -> FolderWatch | None:
        """A watch telling the names of the folder that change, where the store can (a local
        filesystem); None elsewhere."""

    def name_key(self, name: str, is_dir: bool) -> str | bytes:
        """What name order compares: the same order for the same names, whatever the scan."""

    def list_page(self, folder: str, after: tuple[str, bool] | None, limit: int) -> tuple[list[Entry], bool]:
        """Up to `limit` entries in the store's own name order after (name, is_dir), and whether
        more follow (only where `pages_by_name`)."""

    def stat(self, path: str) -> Entry:
        """One regular file."""

    def open_file(self, path: str) -> tuple[Entry, BinaryIO]:
        """One regular file opened, with the entry of exactly what was opened."""

    def open(self, path: str, size: int | None = None) -> BinaryIO:
        """The file for reading, unbuffered, with a real file descriptor where there is one.

        `size`, when the caller has just stat'ed the file, spares remote storages a second look.
        """

    def read_heads(self, entries: Sequence[Entry], size: int) -> list[bytes | None]:
        """Each file's first `size` bytes (fewer where it is shorter), None where it cannot be read
        (gone, not a file, refused): a page's encryption headers (storage/heads.py)."""


def encodable(text: str) -> bool:
    """False for strings no file name can hold: lone surrogates such as JSON's "\\ud800"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_relative_path(path: str, allow_root: bool = False) -> str:
    """Normalise a user-given path to 'a/b/c', refusing anything that could escape the root."""
    if not isinstance(path, str) or len(path) > MAX_PATH_LENGTH:
        raise UnsafePath("The path is not a string of a sane length.")
    if CONTROL_CHARACTER.search(path):
        raise UnsafePath("The path contains control characters.")
    if not path.isascii() and not encodable(path):
        raise UnsafePath("The path is not valid Unicode.")
    if "\\" in path:
        raise UnsafePath("The path contains a backslash.")
    if path.startswith("/"):
        raise UnsafePath("The path must be relative to the storage root.")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafePath("The path must not contain '..'.")
    if not parts and not allow_root:
        raise UnsafePath("The path names the storage root, not a file.")
    return "/".join(parts)


def nameable(path: str) -> bool:
    """Whether a link, a URL and the database can name `path` as listed: a name holding a control
    character or a backslash, or bytes that are not UTF-8 (read from disk as lone surrogates), would
    be listed and then refused, or break the page that shows it."""
    try:
        return clean_relative_path(path) == path
    except UnsafePath:
        return False


def entries_from_scan(scan: FolderScan, rows: Sequence[int]) -> list[Entry]:
    """The Entries of `rows`, from a scan that carries sizes, dates and versions (a remote store's,
    where looking at each row again would cost a request per row)."""
    return [
        Entry(
            scan.names[row],
            f"{scan.folder}/{scan.names[row]}" if scan.folder else scan.names[row],
            scan.sizes[row],
            scan.mtimes[row],
            bool(scan.folders[row]),
            scan.versions[row],
        )
        for row in rows
    ]


def casefolded_name_key(name: str, is_dir: bool) -> str:
    """Case-insensitive, then exact: "a.txt" and "A.txt" keep one order whatever the scan."""
    return f"{name.casefold()}\0{name}"


class SeekableReader(io.RawIOBase):
    """A read-only file of `size` bytes that a remote store serves (S3, WebDAV, SFTP): the position
    and seeks, and the last small piece read kept at hand, so that a reader that looks at a header
    and seeks back to the start costs no second request. Subclasses say how bytes are fetched."""

    KEEP = 64 * 1024

    def __init__(self, size: int):
        super().__init__()
        self._size, self._position = size, 0
        self._kept, self._kept_at = b"", 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _wanted(self, size: int | None) -> int:
        """What a read of `size` (-1 or None: to the end) gets from the position on."""
        left = self._size - self._position
        return left if size is None or size < 0 else min(size, left)

    def _from_kept(self, size: int) -> bytes:
        offset = self._position - self._kept_at
        return self._kept[offset : offset + size] if 0 <= offset < len(self._kept) else b""

    def _keep(self, data: bytes, at: int) -> None:
        if len(data) <= self.KEEP:
            self._kept, self._kept_at = data, at
