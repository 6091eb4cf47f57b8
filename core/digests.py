"""The SHA-256 of what a link delivers: the stored bytes, or an encrypted file's plaintext.

Where a digest comes from, first found first:
- an encrypted file's plaintext digest, by the file's random salt: `flask encrypt` records it as it
  writes the file (the file's bytes stay exactly as the format says, so every reader reads it), and
  a decryption here records it too. The salt names one encryption of one plaintext wherever the
  file is copied; another file with that header needs the profile key and a deliberately reused salt;
- the digest cached for the storage file, valid only while its size and version (inode, ctime and
  mtime locally; ETag and VersionId on S3) are those of the bytes that were hashed;
- the storage's own full-object checksum (S3 `ChecksumSHA256`);
- reading the file once, streaming: on one of gevent's OS threads for a local file, and for large
  files in the background (`DigestWorker`) with the progress in `digest_jobs` for every worker.

A download only ever looks the digest up (one indexed SELECT) for the version it has opened: a file
replaced or rewritten since it was hashed has another version, and gets no digest until hashed again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import BinaryIO

from sqlite_utils import Database

import db as database
from core.delivery import Delivery, DeliveryMode, OpenedDelivery, open_delivery
from core.offloading import in_background, off_the_hub
from db.digests import (
    DigestJob,
    FileDigest,
    claim_digest_job,
    digest_job,
    end_digest_job,
    file_digest,
    file_digests,
    plaintext_digest,
    report_digest_progress,
    save_file_digest,
    save_plaintext_digest,
)
from encryption.format import Header
from encryption.keys import Keyring
from storage.base import FOLDER_GONE, Entry, Storage, StorageError, clean_relative_path

log = logging.getLogger(__name__)

# A write within the same tick of the clock as the last one leaves a timestamp-based version as it
# was (git's "racily clean" files): a file changed less than this long ago is hashed only once that
# long has passed, so that any later write moves its version.
SETTLE_SECONDS = 1.0
INLINE_BYTES = 1024 * 1024  # hashed within the request that asks (a mint): a few ms
SLICE_BYTES = 16 * 1024 * 1024  # hashed per trip to an OS thread; progress is reported between
PROGRESS_SECONDS = 1.0  # at most this often a running job writes its progress
STALE_SECONDS = 30.0  # a job silent this long died with its worker; another may take it over
ATTEMPTS = 3  # a file that keeps changing while it is hashed is left for later


class DigestSource(StrEnum):
    COMPUTED = "computed"  # read and hashed here
    STORAGE = "storage"  # the storage's own checksum (S3 ChecksumSHA256)
    ENCRYPTED = "encrypt"  # recorded by `flask encrypt` as it wrote the file


class FileChanged(Exception):
    """The file changed while it was hashed: the digest is of no version and is dropped."""


class WorkerClosed(Exception):
    """The process is closing its digest worker: what it was waiting to hash is left."""


@dataclass(frozen=True)
class DigestTarget:
    """A file as a link would deliver it; `decrypt` as the link asks (plain files go as stored)."""

    storage_id: str
    path: str
    decrypt: bool = True


def target_of(delivery: Delivery) -> DigestTarget:
    return DigestTarget(delivery.storage_id, delivery.entry.path, delivery.mode == DeliveryMode.DECRYPTED)


@dataclass(frozen=True)
class DigestState:
    """What the link dialog shows: the digest, or how far its computation is."""

    sha256: str | None = None
    done: int = 0
    total: int = 0
    error: str | None = None
    running: bool = False

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


def repr_digest(sha256: str) -> str:
    """The RFC 9530 field value: a dictionary with one byte sequence."""
    return "sha-256=:" + base64.b64encode(bytes.fromhex(sha256)).decode("ascii") + ":"


def known_sha256(db: Database, delivery: Delivery) -> str | None:
    """The digest of what `delivery` sends, if one is known for exactly this version of the file."""
    layout, entry = delivery.layout, delivery.entry
    if layout is not None:
        header = layout.header
        found = plaintext_digest(db, header.salt, header.key_id, layout.plaintext_size)
        if found:
            return found
    cached = file_digest(db, delivery.storage_id, entry.path, delivery.mode)
    return cached.sha256 if cached and _same_version(cached, entry) else None


def _same_version(cached: FileDigest, entry: Entry) -> bool:
    """A storage that gives no version cannot say the file is unchanged: nothing is cached for it."""
    return bool(entry.version) and (cached.size, cached.version) == (entry.size, entry.version)


def listed_sha256s(db: Database, storage_id: str, entries: Sequence[Entry]) -> dict[tuple[str, str], str]:
    """(path, mode) -> digest for the listed entries whose listed version is the one hashed."""
    by_path = {entry.path: entry for entry in entries if not entry.is_dir}
    return {
        (cached.path, cached.mode): cached.sha256
        for cached in file_digests(db, storage_id, list(by_path))
        if _same_version(cached, by_path[cached.path])
    }


def record_encrypted(db: Database, header: Header, plaintext_size: int, sha256: str, now: float) -> None:
    """What `flask encrypt` knows once it has written a file: its plaintext's digest, by its salt."""
    save_plaintext_digest(db, header.salt, header.key_id, plaintext_size, sha256, DigestSource.ENCRYPTED, now)


class HashingReader:
    """A source read through: the digest of every byte read from it, for `encrypt_stream`."""

    def __init__(self, source: BinaryIO):
        self.source = source
        self.hasher = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.hasher.update(data)
        return data


def _save(db: Database, delivery: Delivery, sha256: str, source: DigestSource, now: float) -> None:
    layout, entry = delivery.layout, delivery.entry
    if layout is not None:
        header = layout.header
        save_plaintext_digest(db, header.salt, header.key_id, layout.plaintext_size, sha256, source, now)
    if entry.version:
        save_file_digest(
            db,
            FileDigest(
                delivery.storage_id, entry.path, delivery.mode, entry.size, entry.version, sha256, source, now
            ),
        )


def _storage_checksum(db: Database, delivery: Delivery, now: float) -> str | None:
    """The storage's own checksum of the stored bytes, where it keeps one (an optional method)."""
    ask = getattr(delivery.storage, "stored_sha256", None)
    if delivery.decrypted or ask is None:
        return None
    sha256 = ask(delivery.entry)
    if sha256:
        _save(db, delivery, sha256, DigestSource.STORAGE, now)
    return sha256


def unsettled_seconds(entry: Entry, now: float) -> float:
    """How long to wait before the file's version can be trusted to move with its next write."""
    return min(max(SETTLE_SECONDS - (now - entry.mtime), 0.0), SETTLE_SECONDS)


def _feed(hasher, pieces: Iterator[bytes], limit: int) -> int:
    """Hash up to about `limit` bytes more; 0 when there are none."""
    count = 0
    while count < limit:
        piece = next(pieces, None)
        if piece is None:
            break
        hasher.update(piece)
        count += len(piece)
    return count


class Progress:
    """A computation's progress in `digest_jobs`, written at most every PROGRESS_SECONDS."""

    def __init__(self, db: Database, job: DigestJob):
        self.db, self.job = db, job

    def __call__(self, done: int) -> None:
        now = time.time()
        if now - self.job.heartbeat_at >= PROGRESS_SECONDS:
            self.job = replace(self.job, done=done, heartbeat_at=now)
            report_digest_progress(self.db, self.job)


def _hash(opened: OpenedDelivery, progress: Progress | None) -> str:
    """Read and hash all of what is delivered; a local file's slices go to an OS thread."""
    delivery, hasher, done = opened.delivery, hashlib.sha256(), 0
    pieces = opened.pieces()
    run = off_the_hub if delivery.storage.cheap_reads else _call
    while count := run(_feed, hasher, pieces, SLICE_BYTES):
        done += count
        if progress is not None:
            progress(done)
    if done != delivery.size:
        raise FileChanged("the file ended before its size")
    return hasher.hexdigest()


def _call(work, *args):
    return work(*args)


def _require_unchanged(delivery: Delivery) -> None:
    """The file at the path is still the version that was opened (same size, inode, ctime, ETag...)."""
    entry = delivery.entry
    now = delivery.storage.stat(entry.path)
    if not entry.version or (now.size, now.version) != (entry.size, entry.version):
        raise FileChanged(f"{entry.path} changed while it was hashed")


def _claim(db: Database, delivery: Delivery, now: float) -> Progress | None:
    """The job row of this computation, or None when another worker is at it."""
    entry, mode = delivery.entry, str(delivery.mode)
    stale_before = now - STALE_SECONDS
    if not claim_digest_job(db, delivery.storage_id, entry.path, mode, delivery.size, now, stale_before):
        return None
    return Progress(db, DigestJob(delivery.storage_id, entry.path, mode, 0, delivery.size, now, None))


def compute_sha256(
    db: Database,
    target: DigestTarget,
    keyring: Keyring,
    as_job: bool = False,
    pause: Callable[[float], object] = time.sleep,
) -> str | None:
    """The digest of what a link to `target` delivers: looked up, asked of the storage, or hashed
    (once the file has settled: `pause` waits) and kept. With `as_job`, the computation takes a
    `digest_jobs` row for its progress, and None means another worker is computing it."""
    opened = open_delivery(db, target.storage_id, target.path, keyring, target.decrypt)
    with closing(opened.source):
        delivery = opened.delivery
        known = known_sha256(db, delivery) or _storage_checksum(db, delivery, time.time())
        if known:
            return known
        progress = _claim(db, delivery, time.time()) if as_job else None
        if as_job and progress is None:
            return None
        try:
            pause(unsettled_seconds(delivery.entry, time.time()))
            sha256 = _hash(opened, progress)
            _require_unchanged(delivery)
        except Exception as exc:
            if progress is not None:
                report_digest_progress(db, replace(progress.job, error=str(exc) or type(exc).__name__))
            raise
        _save(db, delivery, sha256, DigestSource.COMPUTED, time.time())
        if progress is not None:
            end_digest_job(db, delivery.storage_id, delivery.entry.path, delivery.mode)
        return sha256


def digest_state(db: Database, delivery: Delivery, now: float) -> DigestState:
    known = known_sha256(db, delivery)
    if known:
        return DigestState(known)
    job = digest_job(db, delivery.storage_id, delivery.entry.path, delivery.mode)
    if job is None:
        return DigestState(total=delivery.size)
    running = job.error is None and now - job.heartbeat_at < STALE_SECONDS
    return DigestState(None, job.done, job.total, job.error, running)


class DigestWorker:
    """Computes the digests asked for, one at a time in this process, after the request that asked
    (a thread; under gevent a greenlet whose reading and hashing go to gevent's OS threads)."""

    def __init__(self, database_path: str, keyring: Keyring):
        self.database_path, self.keyring = database_path, keyring
        self._lock = threading.Lock()
        self._pending: deque[DigestTarget] = deque()
        self._busy = False
        self._idle = threading.Event()
        self._idle.set()
        self._closing = threading.Event()

    def request(self, target: DigestTarget) -> None:
        with self._lock:
            if target not in self._pending:
                self._pending.append(target)
            if self._busy:
                return
            self._busy = True
            self._idle.clear()
        in_background(self._drain, "digests")

    def wait(self, timeout: float | None = None) -> bool:
        """Until every digest asked for has been computed or given up."""
        return self._idle.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Drop what is waiting, cut a wait for a file to settle short, and wait for the rest."""
        self._closing.set()
        with self._lock:
            self._pending.clear()
        return self.wait(timeout)

    def _pause(self, seconds: float) -> None:
        if self._closing.wait(seconds):
            raise WorkerClosed("the worker is closing")

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._busy = False
                    self._idle.set()
                    return
                target = self._pending.popleft()
            self._compute(target)

    def _compute(self, target: DigestTarget) -> None:
        for _ in range(ATTEMPTS):
            try:
                with database.pooled(self.database_path) as db:
                    compute_sha256(db, target, self.keyring, as_job=True, pause=self._pause)
                return
            except FileChanged:
                continue
            except WorkerClosed:
                return
            except Exception as exc:  # a background thread says why it gave up; the dialog shows it
                log.warning("No digest for %s:%s: %s", target.storage_id, target.path, exc)
                return


def request_sha256(db: Database, delivery: Delivery, worker: DigestWorker) -> DigestState:
    """The digest state for a file just minted or shown: the storage's own checksum is asked for
    now, a small, settled file is hashed now, any other is handed to the background worker (unless
    known or being computed)."""
    state = digest_state(db, delivery, time.time())
    if state.sha256 or state.running:
        return state
    try:
        sha256 = _storage_checksum(db, delivery, time.time())
        if (
            sha256 is None
            and delivery.size <= INLINE_BYTES
            and not unsettled_seconds(delivery.entry, time.time())
        ):
            sha256 = compute_sha256(db, target_of(delivery), worker.keyring)
        if sha256:
            return DigestState(sha256)
    except Exception as exc:  # the background worker tries again, and records what failed
        log.info("No digest of %s at once, left to the background: %s", delivery.entry.path, exc)
    worker.request(target_of(delivery))
    return DigestState(total=delivery.size, running=True)


def files_below(storage: Storage, folder: str) -> Iterator[str]:
    """Every file in `folder` and the folders below it, in name order; a folder met again through
    a symlink (the same version) is read once, and one below that went meanwhile is passed over."""
    top = clean_relative_path(folder, allow_root=True)
    waiting, seen = [top], set()
    while waiting:
        current = waiting.pop()
        try:
            scan = storage.scan(current)
        except (StorageError, *FOLDER_GONE):
            if current == top:
                raise
            continue
        if scan.version is not None and scan.version in seen:
            continue
        seen.add(scan.version)
        rows = sorted(zip(scan.names, scan.folders, strict=True), reverse=True)
        waiting += [f"{current}/{name}" if current else name for name, is_dir in rows if is_dir]
        yield from (f"{current}/{name}" if current else name for name, is_dir in reversed(rows) if not is_dir)
