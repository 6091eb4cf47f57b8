"""Serving a link: choose the byte range, claim the link, and count the use only when every byte left.

A plain file (or an encrypted one asked for as stored) goes out as a `TrackedFile`, which
gunicorn sends zero-copy with sendfile; an encrypted file asked for decrypted goes out as a
`DecryptingBody`, chunk by chunk, never on disk in plain and never whole in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import unicodedata
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

from sqlite_utils import Database
from werkzeug.http import parse_range_header

import db as database
from core import tokens
from core.bodies import DecryptingBody, TrackedFile
from core.leases import LeaseKeeper
from db.events import Client, record_link_event
from db.links import Link
from encryption.format import FormatError, Layout, decrypt_range, layout_of
from encryption.keys import Keyring
from storage import load_storage
from storage.base import Entry, Storage

log = logging.getLogger(__name__)


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int):
        super().__init__(f"range outside 0-{size}")
        self.size = size


@dataclass(frozen=True)
class Serving:
    """What serving downloads needs besides the database: keys, the lease keeper and policy."""

    keyring: Keyring
    keeper: LeaseKeeper
    presign_seconds: int = 30


@dataclass(frozen=True)
class DownloadRequest:
    """What the public download needs from an HTTP request."""

    token: str
    range_header: str | None = None
    if_range: str | None = None
    client: Client = Client()


@dataclass(frozen=True)
class Download:
    """What a response needs to describe one transfer (or a HEAD of it)."""

    link: Link
    filename: str
    size: int
    start: int
    stop: int
    etag: str
    mtime: float
    body: TrackedFile | DecryptingBody | None = None
    redirect_url: str | None = None  # the link was used up handing out this presigned URL

    @property
    def partial(self) -> bool:
        return (self.start, self.stop) != (0, self.size)


def etag_for(storage_id: str, entry: Entry, variant: str = "stored") -> str:
    """Strong validator: changes with the file's identity, size or mtime, and with the representation."""
    basis = f"{storage_id}\0{entry.path}\0{entry.size}\0{entry.mtime!r}\0{variant}".encode()
    return '"' + hashlib.sha256(basis).hexdigest()[:32] + '"'


def choose_range(size: int, range_header: str | None, if_range: str | None, etag: str) -> tuple[int, int]:
    """The [start, stop) to send. One byte range is honoured; anything else gets the whole file."""
    parsed = parse_range_header(range_header) if range_header else None
    if parsed is None or len(parsed.ranges) != 1 or (if_range and if_range != etag):
        return 0, size
    span = parsed.range_for_length(size)
    if span is None:
        raise RangeNotSatisfiable(size)
    return span


def content_disposition(filename: str, ascii_only: bool = False) -> str:
    """attachment; filename=... plus RFC 6266 filename* when the name is not plain ASCII.

    Clients that read filename* (browsers, wget) get the exact name from it. The fallback
    carries the name's UTF-8 bytes, which is what `curl -OJ` and other older clients that
    only read filename= write to disk unchanged; WSGI headers travel as latin-1, so the
    bytes are handed over as a latin-1 string. `ascii_only` is for a header that someone
    else sends (a presigned URL's response-content-disposition): the fallback then keeps
    only the name's ASCII letters.
    """
    fallback = filename.replace("\\", "_").replace('"', "_")
    if ascii_only:
        fallback = unicodedata.normalize("NFKD", fallback).encode("ascii", "ignore").decode() or "download"
    value = f'attachment; filename="{fallback.encode().decode("latin-1")}"'
    if not filename.isascii() or fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='!#$&+-.^_`|~')}"
    return value


def decrypted_name(name: str) -> str:
    return name[: -len(".enc")] if name.endswith(".enc") and len(name) > len(".enc") else name


@dataclass(frozen=True)
class _Opened:
    """A link's file, open, with what a response about it needs."""

    download: Download
    storage: Storage
    source: BinaryIO
    layout: Layout | None
    key: bytes | None

    @property
    def redirects(self) -> bool:
        """Stored bytes on a storage that hands them out itself."""
        return self.layout is None and self.storage.redirects


def _usable_link(db: Database, request: DownloadRequest, now: float) -> Link:
    try:
        return tokens.usable_link(db, request.token, now)
    except tokens.TokenUnavailable as exc:
        record_link_event(db, "rejected", exc.link, now, request.client, reason=exc.reason)
        raise


def _describe(
    db: Database,
    link: Link,
    entry: Entry,
    storage: Storage,
    source: BinaryIO,
    request: DownloadRequest,
    keyring: Keyring,
    now: float,
) -> _Opened:
    """What the response will be: the file as stored, or its plaintext when it is ours and asked for so."""
    try:
        layout = layout_of(source, entry.size) if link.decrypt else None
    except FormatError:
        record_link_event(db, "integrity", link, now, request.client, reason="header or size")
        raise
    if layout is None:
        name, size, etag, key = entry.name, entry.size, etag_for(link.storage_id, entry), None
    else:
        name, size = decrypted_name(entry.name), layout.plaintext_size
        etag = etag_for(link.storage_id, entry, variant="decrypted")
        key = keyring.key_for(db, layout.header.key_id)
    start, stop = choose_range(size, request.range_header, request.if_range, etag)
    return _Opened(Download(link, name, size, start, stop, etag, entry.mtime), storage, source, layout, key)


def _open(db: Database, request: DownloadRequest, keyring: Keyring, now: float) -> _Opened:
    """The link (401 when it cannot be used), its file opened and described."""
    link = _usable_link(db, request, now)
    storage = load_storage(db, link.storage_id, keyring)
    entry = storage.stat(link.path)
    source = storage.open(entry.path, entry.size)
    try:
        return _describe(db, link, entry, storage, source, request, keyring, now)
    except BaseException:
        source.close()
        raise


def inspect_download(
    db: Database, request: DownloadRequest, serving: Serving, now: float, event: str = "head"
) -> Download:
    """What a GET would send, without claiming the link (HEAD, or `preview` for the landing page)."""
    opened = _open(db, request, serving.keyring, now)
    opened.source.close()
    record_link_event(db, event, opened.download.link, now, request.client)
    return opened.download


def _claim(
    db: Database, request: DownloadRequest, link: Link, lease_seconds: float, now: float
) -> tokens.Claim:
    try:
        return tokens.claim_link(db, request.token, lease_seconds, now)
    except tokens.TokenUnavailable as exc:
        record_link_event(db, "rejected", link, now, request.client, reason=exc.reason)
        raise
    except tokens.TokenBusy:
        record_link_event(db, "rejected", link, now, request.client, reason="busy")
        raise


def _body(opened: _Opened, lease_id: str, finish: _Finisher) -> TrackedFile | DecryptingBody:
    download = opened.download
    if opened.layout is None:
        return TrackedFile(opened.source, download.start, download.stop, lease_id, finish)
    pieces = decrypt_range(opened.source, opened.key, opened.layout, download.start, download.stop)
    body = DecryptingBody(opened.source, pieces, lease_id, finish)
    try:
        body.prime()
    except BaseException:
        body.close()  # gives the lease back and records why (an `integrity` event for a bad chunk)
        raise
    return body


def _redirect(
    db: Database, request: DownloadRequest, opened: _Opened, serving: Serving, now: float
) -> Download:
    """Use the link up now and hand out a presigned URL: the server carries no bytes.

    Single use is approximate here: the URL works for anyone until it expires.
    """
    download = opened.download
    try:
        tokens.consume_link(db, request.token, now)
    except (tokens.TokenUnavailable, tokens.TokenBusy) as exc:
        record_link_event(
            db, "rejected", download.link, now, request.client, reason=getattr(exc, "reason", "busy")
        )
        raise
    url = opened.storage.presigned_url(
        download.link.path, serving.presign_seconds, content_disposition(download.filename, ascii_only=True)
    )
    record_link_event(db, "redirected", download.link, now, request.client)
    return dataclasses.replace(download, redirect_url=url)


def byte_budget(download: Download) -> int:
    """How many bytes a link may hand out in all, aborted and partial transfers included.

    Interrupted transfers must not use a link up, and ranges short of the end never do; without
    a cap, a holder could fetch almost all of a file again and again. Every use gets one copy's
    worth, and one more copy is there for retries and resumes.
    """
    return (download.link.max_uses + 1) * max(download.size, 1)


def _within_budget(db: Database, request: DownloadRequest, opened: _Opened, now: float) -> None:
    link = opened.download.link
    if link.bytes_sent >= byte_budget(opened.download):
        opened.source.close()
        record_link_event(db, "rejected", link, now, request.client, reason="bytes")
        raise tokens.TokenUnavailable("bytes", link)


def start_download(db: Database, request: DownloadRequest, serving: Serving, now: float) -> Download:
    """Claim the link and prepare its body; the use is counted when the body closes delivered."""
    opened = _open(db, request, serving.keyring, now)
    _within_budget(db, request, opened, now)
    if opened.redirects:
        opened.source.close()
        return _redirect(db, request, opened, serving, now)
    download, keeper = opened.download, serving.keeper
    try:
        claim = _claim(db, request, download.link, keeper.lease_seconds, now)
    except BaseException:
        opened.source.close()
        raise
    body = _body(opened, claim.lease_id, _Finisher(keeper.database_path, claim, download, request.client))
    keeper.hold(body)
    record_link_event(db, "started", download.link, now, request.client, bytes=download.start)
    return dataclasses.replace(download, body=body)


@dataclass(frozen=True)
class _Finisher:
    """Counts or releases the claim when the body closes; runs after the request context is gone."""

    database_path: str
    claim: tokens.Claim
    download: Download
    client: Client

    def __call__(self, sent: int, delivered: bool, failure: str | None) -> None:
        now = time.time()
        # Only a transfer that delivered its range up to the end of the file is a use.
        reached_end = delivered and self.download.stop == self.download.size
        outcome = failure or ("completed" if reached_end else "partial" if delivered else "aborted")
        try:
            db = database.connect(self.database_path)
            try:
                if reached_end:
                    tokens.complete_transfer(db, self.claim, now, sent)
                else:
                    tokens.release_transfer(db, self.claim, sent)
                record_link_event(db, outcome, self.claim.link, now, self.client, bytes=sent)
            finally:
                db.close()
        except Exception:
            # The lease lapses on its own once the keeper stops renewing it.
            log.exception("Could not record the end of a transfer of link %s", self.claim.link.id)
