"""What every storage adapter offers, and the errors it may raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol

MAX_PATH_LENGTH = 4096


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


class Storage(Protocol):
    redirects: bool  # stored bytes may be handed out as a presigned URL instead of through us
    cheap_reads: bool  # reading a few bytes costs no request (worth sniffing every file's header)

    def check(self) -> str:
        """A sentence saying the storage answers; StorageError saying what is wrong otherwise."""

    def presigned_url(self, path: str, seconds: int, disposition: str) -> str:
        """A short-lived URL the storage itself serves (only where `redirects`)."""

    def list(self, folder: str = "") -> list[Entry]:
        """The entries of one folder, folders first, then by name."""

    def stat(self, path: str) -> Entry:
        """One regular file."""

    def open_file(self, path: str) -> tuple[Entry, BinaryIO]:
        """One regular file opened, with the entry of exactly what was opened."""

    def open(self, path: str, size: int | None = None) -> BinaryIO:
        """The file for reading, unbuffered, with a real file descriptor where there is one.

        `size`, when the caller has just stat'ed the file, spares remote storages a second look.
        """


def _encodable(text: str) -> bool:
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
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise UnsafePath("The path contains control characters.")
    if not path.isascii() and not _encodable(path):
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


def sorted_entries(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (not e.is_dir, e.name.casefold(), e.name))
