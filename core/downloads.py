"""Serving a link: choose the byte range, claim the link, and count the use only when every byte left.

The body handed to the WSGI server is a `TrackedFile`: gunicorn sends it with sendfile
(zero-copy; `socket.sendfile` leaves the file position at offset + bytes sent, as its
documentation promises) or reads it; either way its position says how far the transfer
got when the server closes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from sqlite_utils import Database
from werkzeug.http import parse_range_header

import db as database
from core import tokens
from core.leases import LeaseKeeper
from db.events import Client, record_link_event
from db.links import Link
from storage import load_storage
from storage.base import Entry, Storage

log = logging.getLogger(__name__)


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int):
        super().__init__(f"range outside 0-{size}")
        self.size = size


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
    body: TrackedFile | None = None

    @property
    def partial(self) -> bool:
        return (self.start, self.stop) != (0, self.size)


def etag_for(storage_id: str, entry: Entry) -> str:
    """Strong validator: changes whenever the file's identity, size or mtime does."""
    basis = f"{storage_id}\0{entry.path}\0{entry.size}\0{entry.mtime!r}".encode()
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


class TrackedFile:
    """A file proxy for one response body that reports, once, how far it was sent."""

    mode = "rb"  # socket.sendfile checks for a binary file

    def __init__(
        self, raw: BinaryIO, start: int, stop: int, lease_id: str, on_close: Callable[[int, bool], None]
    ):
        self._raw = raw
        self._start = self._position = self._reached = start
        self._stop = stop
        self._on_close = on_close
        self.lease_id = lease_id
        self.closed = False
        raw.seek(start)

    def fileno(self) -> int:
        return self._raw.fileno()

    def _moved_to(self, position: int) -> None:
        self._position = position
        self._reached = max(self._reached, position)

    def read(self, size: int = -1) -> bytes:
        remaining = self._stop - self._position
        size = remaining if size < 0 else min(size, remaining)
        data = self._raw.read(size) if size > 0 else b""
        self._moved_to(self._position + len(data))
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._moved_to(self._raw.seek(offset, whence))
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        """Called by the server when the response ends, well or badly."""
        if self.closed:
            return
        self.closed = True
        # The WSGI server closes the body in a `finally`; an exception in flight
        # (a client gone mid-sendfile) means the transfer did not finish.
        failed = sys.exc_info()[1] is not None
        self._raw.close()
        self._on_close(self._reached - self._start, not failed and self._reached >= self._stop)


def _describe(db: Database, request: DownloadRequest, now: float) -> tuple[Download, Storage]:
    try:
        link = tokens.usable_link(db, request.token, now)
    except tokens.TokenUnavailable as exc:
        record_link_event(db, "rejected", exc.link, now, request.client, reason=exc.reason)
        raise
    storage = load_storage(db, link.storage_id)
    entry = storage.stat(link.path)
    etag = etag_for(link.storage_id, entry)
    start, stop = choose_range(entry.size, request.range_header, request.if_range, etag)
    return Download(link, entry.name, entry.size, start, stop, etag, entry.mtime), storage


def inspect_download(db: Database, request: DownloadRequest, now: float) -> Download:
    """What a GET would send, without claiming the link (HEAD)."""
    download, _ = _describe(db, request, now)
    record_link_event(db, "head", download.link, now, request.client)
    return download


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


def start_download(db: Database, request: DownloadRequest, keeper: LeaseKeeper, now: float) -> Download:
    """Claim the link and open its file; the use is counted when the body closes complete."""
    download, storage = _describe(db, request, now)
    claim = _claim(db, request, download.link, keeper.lease_seconds, now)
    try:
        raw = storage.open(download.link.path)
    except BaseException:
        tokens.release_transfer(db, claim)
        raise
    finish = _Finisher(keeper.database_path, claim, download, request.client)
    body = TrackedFile(raw, download.start, download.stop, claim.lease_id, finish)
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

    def __call__(self, sent: int, complete: bool) -> None:
        """`complete`: the whole requested range went out."""
        now = time.time()
        # Only a transfer that delivered its range up to the end of the file is a use.
        reached_end = complete and self.download.stop == self.download.size
        outcome = "completed" if reached_end else "partial" if complete else "aborted"
        try:
            db = database.connect(self.database_path)
            try:
                if reached_end:
                    tokens.complete_transfer(db, self.claim, now)
                else:
                    tokens.release_transfer(db, self.claim)
                record_link_event(db, outcome, self.claim.link, now, self.client, bytes=sent)
            finally:
                db.close()
        except Exception:
            # The lease lapses on its own once the keeper stops renewing it.
            log.exception("Could not record the end of a transfer of link %s", self.claim.link.id)
