"""Serving a link: choose the byte range, claim it, and count the use only once the client has it.

The body (core/sending.py) sends the file itself: a plain file zero-copy with sendfile in
bounded pieces, an encrypted one decrypted chunk by chunk, never on disk in plain and never
whole in memory. Each transfer holds a claim of its own (core/tokens.py) that the lease keeper
renews and the body checks before every piece.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from sqlite_utils import Database

import db as database
from core import metrics, tokens
from core.delivery import Delivery, DeliveryMode, OpenedDelivery, open_delivery
from core.digests import known_sha256
from core.leases import LeaseKeeper
from core.sending import Content, Outcome, Stream, TransferBody
from core.tag_checks import check_tag
from db.events import Client, EventKind, record_link_event
from db.links import Link
from encryption.dbackup import SidecarError
from encryption.format import FormatError, IntegrityError
from encryption.keys import Keyring

log = logging.getLogger(__name__)


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int):
        super().__init__(f"range outside 0-{size}")
        self.size = size


class ResumeOfAnotherVersion(Exception):
    """A Range without If-Range on a link whose latest transfer sent another version of the file."""


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
    """One response about a file: a transfer, a HEAD, a landing page or a redirect.

    `link` is None for a signed-in user's direct download.
    """

    delivery: Delivery
    start: int
    stop: int
    link: Link | None = None
    body: TransferBody | None = None
    redirect_url: str | None = None  # the link was used up handing out this presigned URL
    sha256: str | None = None  # of the whole representation, when known for the version opened

    @property
    def partial(self) -> bool:
        return (self.start, self.stop) != (0, self.delivery.size)


_BYTE_RANGE = re.compile(r"(\d*)-(\d*)", re.ASCII)
_LARGEST = 2**63  # past any file; Python's int() refuses digit strings beyond 4,300 digits


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= 19 else _LARGEST


def choose_range(size: int, range_header: str | None, if_range: str | None, etag: str) -> tuple[int, int]:
    """The [start, stop) to send, as RFC 9110 section 14 says for one byte range.

    A Range in another unit, malformed, with several ranges, or with an If-Range that no longer
    matches is ignored: the whole file. An unsatisfiable one is 416. A suffix longer than the file
    selects the whole file; a zero-length suffix selects nothing and is unsatisfiable.
    """
    if not range_header or (if_range and if_range != etag):
        return 0, size
    unit, _, ranges = range_header.partition("=")
    spec = _BYTE_RANGE.fullmatch(ranges.strip())
    if unit.strip().lower() != "bytes" or spec is None or spec[0] == "-":
        return 0, size
    first, last = spec.groups()
    if not first:
        length = _position(last)
        if length == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - length), size
    start = _position(first)
    if last and _position(last) < start:
        return 0, size
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(_position(last) + 1, size) if last else size


def invisible(character: str) -> bool:
    """Controls and format characters (U+202E...): they could reorder or hide part of a saved name."""
    return unicodedata.category(character) in ("Cc", "Cf")


def content_disposition(filename: str, ascii_only: bool = False) -> str:
    """attachment; filename=... plus RFC 6266 filename* when the name is not plain ASCII.

    Clients that read filename* (browsers, wget) get the exact name from it. The fallback
    carries the name's UTF-8 bytes, which is what `curl -OJ` and other older clients that
    only read filename= write to disk unchanged; WSGI headers travel as latin-1, so the
    bytes are handed over as a latin-1 string. `ascii_only` is for a header that someone
    else sends (a presigned URL's response-content-disposition): the fallback then keeps
    only the name's ASCII letters.
    """
    fallback = "".join("_" if invisible(c) or c in '\\"' else c for c in filename)
    if ascii_only:
        fallback = unicodedata.normalize("NFKD", fallback).encode("ascii", "ignore").decode() or "download"
    value = f'attachment; filename="{fallback.encode().decode("latin-1")}"'
    if not filename.isascii() or fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='!#$&+-.^_`|~')}"
    return value


def _usable_link(db: Database, request: DownloadRequest, now: float) -> Link:
    try:
        return tokens.usable_link(db, request.token, now)
    except tokens.TokenUnavailable as exc:
        record_link_event(db, EventKind.REJECTED, exc.link, now, request.client, reason=exc.reason)
        raise


def _open(
    db: Database, request: DownloadRequest, keyring: Keyring, now: float
) -> tuple[Link, OpenedDelivery]:
    """The link (410 when it cannot be used) and its file, opened for delivery."""
    link = _usable_link(db, request, now)
    try:
        return link, open_delivery(db, link.storage_id, link.path, keyring, link.decrypt)
    except FormatError as exc:
        reason = "sidecar" if isinstance(exc, SidecarError) else "header or size"
        record_link_event(db, EventKind.INTEGRITY, link, now, request.client, reason=reason)
        raise


def _download(db: Database, link: Link, opened: OpenedDelivery, request: DownloadRequest) -> Download:
    """What the request asks for. A Range without If-Range (wget -c and curl -C - send none) of a
    file rewritten since the link's latest transfer started is refused, 412: the client holds the
    start of another version. The whole file (200, what a stale If-Range gets) would not do:
    `wget -c` skips as many bytes of it as it holds and appends the rest."""
    delivery = opened.delivery
    if request.range_header and not request.if_range and link.sent_etag not in (None, delivery.etag):
        raise ResumeOfAnotherVersion(link.id)
    start, stop = choose_range(delivery.size, request.range_header, request.if_range, delivery.etag)
    return Download(delivery, start, stop, link, sha256=known_sha256(db, delivery))


def _refused_if_another_version(
    db: Database, link: Link, opened: OpenedDelivery, request: DownloadRequest, now: float
) -> Download:
    """_download, a refused resume of another version recorded in the link's history."""
    try:
        return _download(db, link, opened, request)
    except ResumeOfAnotherVersion:
        record_link_event(db, EventKind.REJECTED, link, now, request.client, reason="changed")
        raise


def inspect_download(
    db: Database, request: DownloadRequest, serving: Serving, now: float, event: EventKind = EventKind.HEAD
) -> Download:
    """What a GET would send, without claiming the link (HEAD, or `preview` for the landing page).

    The same checks as a GET run before its first byte (for an encrypted file, the header and the
    final chunk), so the answer has the same status.
    """
    link, opened = _open(db, request, serving.keyring, now)
    try:
        download = _download(db, link, opened, request)
        if opened.key is not None:  # a plain file has nothing to verify; on S3 this would cost a GET
            _primed_content(db, opened, download, request, now)
    finally:
        opened.source.close()
    record_link_event(db, event, link, now, request.client, mode=download.delivery.handed_out)
    return download


def _redirect(
    db: Database, request: DownloadRequest, download: Download, serving: Serving, now: float
) -> Download:
    """Use the link up now and hand out a presigned URL: the server carries no bytes.

    Single use is approximate here: the URL works for anyone until it expires.
    """
    tokens.consume_link(db, request.token, now, request.client, DeliveryMode.REDIRECT)
    metrics.redirected()
    delivery = download.delivery
    url = delivery.storage.presigned_url(
        delivery.entry.path, serving.presign_seconds, content_disposition(delivery.filename, ascii_only=True)
    )
    return dataclasses.replace(download, redirect_url=url)


def _primed_content(
    db: Database, opened: OpenedDelivery, download: Download, request: DownloadRequest, now: float
) -> Content:
    """The range to send, checked before any claim is taken or header sent: a DBackup backup's
    tag over the whole file, and a stream's first piece pulled now (for Oncelink's format, after
    its final chunk is verified)."""
    try:
        return _checked_content(db, opened, download.start, download.stop, now)
    except IntegrityError:
        reason = "tag" if opened.delivery.sidecar is not None else "chunk"
        record_link_event(db, EventKind.INTEGRITY, download.link, now, request.client, reason=reason)
        raise


def _checked_content(db: Database, opened: OpenedDelivery, start: int, stop: int, now: float) -> Content:
    check_tag(db, opened, now)
    content = opened.content(start, stop)
    if isinstance(content, Stream):
        content.prime()
    return content


def _claimed_body(
    db: Database,
    request: DownloadRequest,
    opened: OpenedDelivery,
    download: Download,
    serving: Serving,
    now: float,
) -> TransferBody:
    content = _primed_content(db, opened, download, request, now)
    keeper = serving.keeper
    span = tokens.Span(download.start, download.stop, download.delivery.size)
    claimed_at = time.monotonic()
    mode = download.delivery.handed_out
    etag = download.delivery.etag
    claim = tokens.claim_link(db, request.token, span, keeper.lease_seconds, now, request.client, mode, etag)
    metrics.transfer_started(mode)
    kind = metrics.storage_kind(download.delivery.storage)
    finish = _Finisher(keeper.database_path, claim, request.client, claimed_at, kind)
    return TransferBody(opened.source, content, keeper.hold(claim, claimed_at), finish, counts=span.counts)


def start_download(db: Database, request: DownloadRequest, serving: Serving, now: float) -> Download:
    """Claim the link and prepare its body; the use is counted when the client has every byte."""
    try:
        return _started_download(db, request, serving, now)
    except (tokens.TokenUnavailable, tokens.TokenBusy) as exc:
        metrics.transfer_rejected(exc.reason)
        raise


def _started_download(db: Database, request: DownloadRequest, serving: Serving, now: float) -> Download:
    link, opened = _open(db, request, serving.keyring, now)
    try:
        download = _refused_if_another_version(db, link, opened, request, now)
        if opened.delivery.redirects:
            opened.source.close()
            return _redirect(db, request, download, serving, now)
        return dataclasses.replace(download, body=_claimed_body(db, request, opened, download, serving, now))
    except BaseException:
        opened.source.close()
        raise


def open_direct(db: Database, storage_id: str, path: str, keyring: Keyring) -> Download:
    """A signed-in user's own download: no link, no claim, no use; decrypted when it is ours."""
    opened = open_delivery(db, storage_id, path, keyring, decrypt=True)
    try:
        size = opened.delivery.size
        content = _checked_content(db, opened, 0, size, time.time())  # a damaged file fails here
        count_bytes = functools.partial(_count_direct_bytes, metrics.storage_kind(opened.delivery.storage))
        body = TransferBody(opened.source, content, None, count_bytes)
        return Download(opened.delivery, 0, size, body=body, sha256=known_sha256(db, opened.delivery))
    except BaseException:
        opened.source.close()
        raise


def _count_direct_bytes(storage_kind: str, outcome: Outcome) -> None:
    """Direct downloads hold no claim and use up nothing: only their bytes are counted."""
    metrics.bytes_sent(storage_kind, outcome.sent)


# Why a transfer stopped (a TransferStopped reason) -> its event; anything else is `aborted`.
FAILURE_EVENTS = {
    "lapsed": EventKind.LOST,
    "unsecured": EventKind.LOST,
    "revoked": EventKind.STOPPED,
    "integrity": EventKind.INTEGRITY,
}


def outcome_event(outcome: Outcome, counts: bool) -> EventKind:
    """The event that records how a transfer ended."""
    if outcome.delivered:
        return EventKind.COMPLETED if counts else EventKind.PARTIAL
    return FAILURE_EVENTS.get(outcome.failure or "", EventKind.ABORTED)


@dataclass(frozen=True)
class _Finisher:
    """Counts or gives back the claim when the body closes; runs after the request context is gone."""

    database_path: str
    claim: tokens.Claim
    client: Client
    claimed_at: float  # time.monotonic() when the claim was taken
    storage_kind: str  # for the bytes-sent metric

    def __call__(self, outcome: Outcome) -> None:
        metrics.transfer_ended(self.claim.mode, outcome.delivered, self.claim.span.counts, outcome.failure)
        metrics.bytes_sent(self.storage_kind, outcome.sent)
        kind = outcome_event(outcome, self.claim.span.counts)
        seconds = round(time.monotonic() - self.claimed_at, 3)
        try:
            with database.pooled(self.database_path) as db:
                tokens.finish_claim(
                    db,
                    self.claim,
                    kind,
                    time.time(),
                    outcome.sent,
                    self.client,
                    outcome.failure,
                    received=outcome.received,
                    seconds=seconds,
                )
        except database.DatabaseError as exc:
            # The lease lapses unrenewed: a final claim is then counted, any other given back.
            log.warning("Could not record the end of a transfer of link %s: %s", self.claim.link.id, exc)
