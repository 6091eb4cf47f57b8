"""A folder on an SFTP server (a Hetzner Storage Box, rsync.net, a NAS) as a storage, through paramiko.

Paths are cleaned as for local folders (no `..`, nothing absolute), then resolved by the server
(SFTP's REALPATH, which follows symlinks) and refused unless the result lies below the root's own
resolved path: a symlink on the server that leads out of the root leads nowhere, and a listed one is
hidden. SFTP has no open-beneath, so a folder swapped for a symlink between that check and the open
is beyond what the protocol lets a client see; the resolved path is what is opened.
Sizes, dates and the version of an opened file come from the open handle (fstat).
"""

from __future__ import annotations

import errno
import stat
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import paramiko

from storage.base import (
    Entry,
    FileMissing,
    FolderScan,
    NotAFile,
    StorageError,
    Unreadable,
    UnsafePath,
    casefolded_name_key,
    clean_relative_path,
    entries_from_scan,
)
from storage.heads import heads_one_by_one
from storage.sessions import Pool
from storage.sftp_connect import SFTPSettings, close_sftp, fingerprint_of, open_sftp, sftp_alive
from storage.sftp_file import SFTPReader

Result = TypeVar("Result")
DROPPED = (paramiko.SSHException, EOFError, TimeoutError, ConnectionError)


class Refused(StorageError):
    """The server answered a request with an error: the connection itself is fine."""


class Dropped(StorageError):
    """The connection broke during a request."""


ANSWERS = (FileMissing, NotAFile, UnsafePath, Unreadable, Refused)


@dataclass
class Session:
    sftp: paramiko.SFTPClient
    root: str  # the root folder's real path on the server
    fingerprint: str


def open_session(settings: SFTPSettings) -> Session:
    sftp = open_sftp(settings)
    fingerprint = fingerprint_of(sftp.get_channel().get_transport().get_remote_server_key())
    try:
        root = sftp.normalize(settings.root)
    except OSError as exc:
        close_sftp(sftp)
        if exc.errno == errno.ENOENT:
            raise StorageError(f"The root folder {settings.root!r} does not exist on the server.") from exc
        raise StorageError(
            f"The root folder {settings.root!r} cannot be opened: {exc.strerror or exc}."
        ) from exc
    return Session(sftp, root, fingerprint)


pool: Pool[Session] = Pool(lambda session: close_sftp(session.sftp), lambda session: sftp_alive(session.sftp))


def answer(exc: OSError, path: str) -> Exception:
    """What an error the server sent about `path` means for it."""
    if isinstance(exc, DROPPED):
        return Dropped(f"The SFTP connection broke off: {exc or type(exc).__name__}.")
    if exc.errno == errno.ENOENT:
        return FileMissing(f"No such file or folder: {path or '/'}")
    if exc.errno == errno.EACCES:
        return Unreadable(f"The server is not allowed to read {path or '/'}.")
    return Refused(f"The SFTP server refused {path or '/'}: {exc.strerror or exc}.")


def joined(root: str, relative: str) -> str:
    return f"{root.rstrip('/')}/{relative}" if relative else root


def below(root: str, real: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


def entry_of(path: str, attributes: paramiko.SFTPAttributes) -> Entry:
    name = path.rsplit("/", 1)[-1]
    size, mtime = attributes.st_size or 0, float(attributes.st_mtime or 0)
    is_dir = stat.S_ISDIR(attributes.st_mode or 0)
    return Entry(name, path, size, mtime, is_dir, f"{size}:{attributes.st_mtime}")


class SFTPStorage:
    redirects = False  # an SFTP server hands out nothing by itself
    cheap_reads = False  # reading a header is an open, a read and a close: three round trips
    pages_by_name = False

    def __init__(self, settings: SFTPSettings):
        self.settings = settings
        self.cache_key = f"sftp:{settings.user}@{settings.host}:{settings.port}:{settings.root}"

    def _connect(self) -> Session:
        return open_session(self.settings)

    def _run(self, work: Callable[[Session], Result], path: str) -> Result:
        """`work` on a lent session; once more on a new one when a kept one turns out to be dead."""
        try:
            return self._once(work, path)
        except Dropped:
            return self._once(work, path)

    def _once(self, work: Callable[[Session], Result], path: str) -> Result:
        with pool.lent(self.settings, self._connect, keeps=ANSWERS) as session:
            try:
                return work(session)
            except OSError as exc:
                raise answer(exc, path) from exc

    def _resolve(self, session: Session, relative: str) -> str:
        """The real path on the server of `relative`; UnsafePath when it leads out of the root."""
        real = session.sftp.normalize(joined(session.root, relative))
        if not below(session.root, real):
            raise UnsafePath("The path leads outside the storage.")
        return real

    def check(self) -> str:
        """Connect, verify the host key, log in, read the root: a sentence, or what went wrong."""

        def look(session: Session) -> tuple[str, str]:
            if not stat.S_ISDIR(session.sftp.stat(session.root).st_mode or 0):
                raise StorageError(f"The root {session.root} is not a folder.")
            try:
                session.sftp.listdir(session.root)
            except PermissionError as exc:
                raise StorageError(f"User {self.settings.user!r} may not list {session.root}.") from exc
            return session.root, session.fingerprint

        root, fingerprint = self._once(look, "")
        where = f"{self.settings.user}@{self.settings.host}:{self.settings.port}"
        return f"SFTP {where} answers (host key {fingerprint}); {root} is readable."

    def scan(self, folder: str = "", stats: bool = True) -> FolderScan:
        """One READDIR pass gives names, sizes and dates; symlinks are resolved and confined."""
        relative = clean_relative_path(folder, allow_root=True)
        return self._run(lambda session: self._scan(session, relative), relative)

    def _scan(self, session: Session, relative: str) -> FolderScan:
        real = self._resolve(session, relative)
        if not stat.S_ISDIR(session.sftp.stat(real).st_mode or 0):
            raise NotAFile(f"Not a folder: {relative}")
        names, folders, versions = [], bytearray(), []
        sizes, mtimes = array("q"), array("d")
        for listed in session.sftp.listdir_attr(real):
            path = f"{relative}/{listed.filename}" if relative else listed.filename
            attributes = self._followed(session, path, listed)
            if attributes is None:
                continue
            entry = entry_of(path, attributes)
            names.append(entry.name)
            folders.append(entry.is_dir)
            sizes.append(entry.size)
            mtimes.append(entry.mtime)
            versions.append(entry.version)
        return FolderScan(relative, names, folders, sizes, mtimes, versions)

    def _followed(
        self, session: Session, path: str, listed: paramiko.SFTPAttributes
    ) -> paramiko.SFTPAttributes | None:
        """A listed symlink's target while it stays below the root; None (hidden) otherwise."""
        if not stat.S_ISLNK(listed.st_mode or 0):
            return listed
        try:
            return session.sftp.stat(self._resolve(session, path))
        except UnsafePath:
            return None
        except OSError as exc:
            if isinstance(exc, DROPPED):
                raise
            return None

    def scan_entries(self, scan: FolderScan, rows: Sequence[int]) -> list[Entry]:
        """From the scan itself: looking again would cost a request per row."""
        return entries_from_scan(scan, rows)

    def folder_version(self, folder: str) -> None:
        """A folder's mtime moves in whole seconds on most servers: not a version to trust."""
        return None

    def watch(self, folder: str) -> None:
        return None

    name_key = staticmethod(casefolded_name_key)

    def list_page(self, folder: str, after: tuple[str, bool] | None, limit: int) -> tuple[list[Entry], bool]:
        raise NotImplementedError("SFTP lists whole folders (pages_by_name is False).")

    def stat(self, path: str) -> Entry:
        relative = clean_relative_path(path)
        attributes = self._run(lambda session: session.sftp.stat(self._resolve(session, relative)), relative)
        if not stat.S_ISREG(attributes.st_mode or 0):
            raise NotAFile(f"Not a file: {relative}")
        return entry_of(relative, attributes)

    def open_file(self, path: str) -> tuple[Entry, SFTPReader]:
        """The file opened, described by its own handle (fstat), so size and version match the bytes."""
        relative = clean_relative_path(path)
        try:
            return self._open(relative)
        except Dropped:
            return self._open(relative)

    def _open(self, relative: str) -> tuple[Entry, SFTPReader]:
        session, release = pool.borrow(self.settings, self._connect)
        try:
            remote = session.sftp.open(self._resolve(session, relative), "rb")
            attributes = remote.stat()
        except ANSWERS:
            release(True)
            raise
        except OSError as exc:
            error = answer(exc, relative)
            release(not isinstance(error, Dropped))
            raise error from exc
        except BaseException:
            release(False)
            raise
        if not stat.S_ISREG(attributes.st_mode or 0):
            remote.close()
            release(True)
            raise NotAFile(f"Not a file: {relative}")
        return entry_of(relative, attributes), SFTPReader(remote, attributes.st_size or 0, relative, release)

    def open(self, path: str, size: int | None = None) -> SFTPReader:
        return self.open_file(path)[1]

    def read_heads(self, entries: Sequence[Entry], size: int) -> list[bytes | None]:
        return heads_one_by_one(self.open, entries, size)

    def presigned_url(self, path: str, seconds: int, disposition: str) -> str:
        raise NotImplementedError("SFTP storages never redirect.")
