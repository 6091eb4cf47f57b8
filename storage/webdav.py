"""A folder on a WebDAV server (Nextcloud, ownCloud, a Synology or QNAP NAS) as a storage, through requests.

Folders are listed with `PROPFIND Depth: 1` (names, kinds, sizes, dates and ETags in one answer);
files are read with streamed `GET`s carrying a `Range`, a bounded block at a time. User paths are
cleaned as for local folders, and every href an answer holds must lie below the base URL's path:
one outside it (a server that answers for another folder) is refused, not shown. A symlink on the
server is followed by the server itself, which a WebDAV client cannot see.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote, urlsplit

import requests
import urllib3
from defusedxml import ElementTree

from storage.base import (
    Entry,
    FileMissing,
    FolderScan,
    NotAFile,
    StorageError,
    Unreadable,
    UnsafePath,
    casefolded_name_key,
    entries_from_scan,
)
from storage.base import clean_relative_path as clean
from storage.heads import heads_one_by_one
from storage.s3_object import S3Object
from storage.sessions import os_thread
from storage.webdav_answers import explain_failure, explain_status

TIMEOUT = (10, 30)  # seconds to connect, and to wait for each piece of an answer
PROPFIND = (
    b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/>'
    b"<d:getcontentlength/><d:getlastmodified/><d:getetag/></d:prop></d:propfind>"
)
DAV = "{DAV:}"


@dataclass(frozen=True)
class WebDAVSettings:
    url: str  # the base folder, e.g. https://cloud.example.org/remote.php/dav/files/backup/nightly/
    user: str = ""
    password: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None  # a PEM file of the CA that signed the server's certificate

    @property
    def base(self) -> str:
        return self.url.rstrip("/") + "/"


_sessions: dict[tuple[WebDAVSettings, int], requests.Session] = {}
_sessions_lock = threading.Lock()


def session_for(settings: WebDAVSettings) -> requests.Session:
    """One requests session (its kept connections) per storage and OS thread: under gevent a
    socket belongs to the event loop of the thread that opened it."""
    key = (settings, os_thread())
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = requests.Session()
            session.auth = (settings.user, settings.password or "") if settings.user else None
            session.verify = settings.ca_file or settings.verify_tls
        return session


@dataclass(frozen=True)
class Resource:
    path: str  # relative to the base, clean
    is_dir: bool
    size: int
    mtime: float
    etag: str


def modified(text: str | None) -> float:
    try:
        return parsedate_to_datetime(text).timestamp() if text else 0.0
    except (TypeError, ValueError):
        return 0.0


class WebDAVStorage:
    redirects = False
    cheap_reads = False  # every read is a request
    pages_by_name = False

    def __init__(self, settings: WebDAVSettings):
        self.settings = settings
        self.base_path = unquote(urlsplit(settings.base).path)
        self.cache_key = f"webdav:{settings.user}@{settings.base}"

    def url_of(self, relative: str, folder: bool = False) -> str:
        return self.settings.base + quote(relative, safe="/") + ("/" if folder and relative else "")

    def request(self, method: str, url: str, what: str, **options) -> requests.Response:
        """One request; a StorageError (or FileMissing, Unreadable) naming what went wrong."""
        try:
            response = session_for(self.settings).request(method, url, timeout=TIMEOUT, **options)
        except requests.RequestException as exc:
            raise explain_failure(exc, self.settings.base) from exc
        if response.status_code >= 400:
            response.close()
            raise explain_status(response.status_code, what, self.settings.user)
        return response

    def propfind(self, relative: str, depth: int, folder: bool = False) -> list[Resource]:
        headers = {"Depth": str(depth), "Content-Type": "application/xml; charset=utf-8"}
        url = self.url_of(relative, folder)
        response = self.request("PROPFIND", url, relative or "/", data=PROPFIND, headers=headers)
        if response.status_code != 207:
            raise StorageError(
                f"The server answered {response.status_code} to PROPFIND: not a WebDAV folder?"
            )
        try:
            answer = ElementTree.fromstring(response.content)
        except ElementTree.ParseError as exc:
            raise StorageError(f"The server's PROPFIND answer is not XML: {exc}.") from exc
        return [resource for node in answer.iter(f"{DAV}response") if (resource := self.resource(node))]

    def resource(self, node) -> Resource | None:
        """One <response>; None when it has no readable properties. An href outside the base: UnsafePath."""
        href = unquote(urlsplit(node.findtext(f"{DAV}href", "")).path)
        if not (href + "/").startswith(self.base_path):
            raise UnsafePath(f"The server answered for {href}, outside the storage's folder.")
        properties = next(
            (
                p.find(f"{DAV}prop")
                for p in node.iter(f"{DAV}propstat")
                if " 200 " in p.findtext(f"{DAV}status", "")
            ),
            None,
        )
        if properties is None:
            return None
        relative = clean(href[len(self.base_path) :], allow_root=True)
        is_dir = properties.find(f"{DAV}resourcetype/{DAV}collection") is not None
        size = int(properties.findtext(f"{DAV}getcontentlength") or 0)
        mtime = modified(properties.findtext(f"{DAV}getlastmodified"))
        return Resource(
            relative, is_dir, 0 if is_dir else size, mtime, properties.findtext(f"{DAV}getetag") or ""
        )

    def check(self) -> str:
        """PROPFIND the base folder: a sentence, or a StorageError saying what is wrong."""
        try:
            found = self.propfind("", 0, folder=True)
        except FileMissing as exc:
            raise StorageError(f"The folder {self.settings.base} does not exist on the server.") from exc
        except Unreadable as exc:
            raise StorageError(f"User {self.settings.user!r} may not read {self.settings.base}.") from exc
        if not found or not found[0].is_dir:
            raise StorageError(f"{self.settings.base} is not a WebDAV folder.")
        return f"WebDAV folder {self.settings.base} is readable as {self.settings.user or 'anonymous'}."

    def scan(self, folder: str = "", stats: bool = True) -> FolderScan:
        relative = clean(folder, allow_root=True)
        found = self.propfind(relative, 1, folder=True)
        own = [resource for resource in found if resource.path == relative]
        if own and not own[0].is_dir:
            raise NotAFile(f"Not a folder: {relative}")
        children = [r for r in found if r.path != relative and r.path.rpartition("/")[0] == relative]
        return FolderScan(
            relative,
            [r.path.rsplit("/", 1)[-1] for r in children],
            bytearray(r.is_dir for r in children),
            array("q", (r.size for r in children)),
            array("d", (r.mtime for r in children)),
            [r.etag for r in children],
        )

    def scan_entries(self, scan: FolderScan, rows: Sequence[int]) -> list[Entry]:
        """From the scan itself: looking again would cost a request per row."""
        return entries_from_scan(scan, rows)

    def folder_version(self, folder: str) -> None:
        return None

    def watch(self, folder: str) -> None:
        return None

    name_key = staticmethod(casefolded_name_key)

    def list_page(self, folder: str, after: tuple[str, bool] | None, limit: int) -> tuple[list[Entry], bool]:
        raise NotImplementedError("WebDAV lists whole folders (pages_by_name is False).")

    def stat(self, path: str) -> Entry:
        relative = clean(path)
        found = [resource for resource in self.propfind(relative, 0) if resource.path == relative]
        if not found:
            raise FileMissing(f"No such file: {relative}")
        resource = found[0]
        if resource.is_dir:
            raise NotAFile(f"Not a file: {relative}")
        name = relative.rsplit("/", 1)[-1]
        return Entry(name, relative, resource.size, resource.mtime, False, f"{resource.etag}:{resource.size}")

    def open_file(self, path: str) -> tuple[Entry, WebDAVFile]:
        """The file as PROPFIND describes it, and a reader whose every GET asks for that version
        (If-Match on its strong ETag): a file replaced mid-transfer fails rather than mixing."""
        entry = self.stat(path)
        etag = entry.version.rpartition(":")[0]  # the version is "ETAG:SIZE"
        pin = {"If-Match": etag} if etag and not etag.startswith("W/") else None
        return entry, WebDAVFile(self, clean(entry.path), entry.size, pin)

    def open(self, path: str, size: int | None = None) -> WebDAVFile:
        if size is None:
            entry = self.stat(path)
            path, size = entry.path, entry.size
        return WebDAVFile(self, clean(path), size)

    def read_heads(self, entries: Sequence[Entry], size: int) -> list[bytes | None]:
        return heads_one_by_one(self.open, entries, size)

    def get_stream(self, path: str, start: int, pin: dict | None = None) -> Body:
        """The file's bytes from `start` to its end, as a stream (one ranged GET); `pin`: headers
        that keep it to one version."""
        headers = {"Range": f"bytes={start}-", **(pin or {})}
        response = self.request("GET", self.url_of(path), path, headers=headers, stream=True)
        if start and response.status_code != 206:
            response.close()
            raise StorageError("The WebDAV server ignored a Range request: it cannot resume downloads.")
        return Body(response, path)

    def get_range(self, path: str, start: int, stop: int, pin: dict | None = None) -> bytes:
        """Bytes [start, stop) in one bounded GET."""
        headers = {"Range": f"bytes={start}-{stop - 1}", **(pin or {})}
        response = self.request("GET", self.url_of(path), path, headers=headers)
        if response.status_code != 206 and start:
            raise StorageError("The WebDAV server ignored a Range request: it cannot resume downloads.")
        return (
            response.content[: stop - start] if response.status_code == 206 else response.content[start:stop]
        )

    def presigned_url(self, path: str, seconds: int, disposition: str) -> str:
        raise NotImplementedError("WebDAV storages never redirect.")


class Body:
    """A streamed GET's body: read(n) gives n bytes (fewer only at its end); a broken connection
    is a StorageError."""

    def __init__(self, response: requests.Response, path: str):
        self._response, self._path = response, path

    def read(self, size: int) -> bytes:
        try:
            return self._response.raw.read(size)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise StorageError(f"The WebDAV transfer of {self._path} broke off: {exc}.") from exc

    def close(self) -> None:
        self._response.close()


class WebDAVFile(S3Object):
    """A WebDAV file as a seekable file, read exactly as an S3 object is: sequential reads share one
    open-ended ranged GET, a header read and a seek back cost nothing more, and the final chunk of an
    encrypted file is a bounded GET of its own."""
