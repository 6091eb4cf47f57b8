"""Queries on the digest cache: digests by storage file and version, plaintext digests by an
encrypted file's salt, and the computations running (core/digests.py decides what they mean)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlite_utils import Database

from db import select_rows

_ONE_FILE = "storage_id = ? AND path = ? AND mode = ?"


@dataclass(frozen=True)
class FileDigest:
    """The SHA-256 of one storage file as delivered in `mode`, for exactly this size and version."""

    storage_id: str
    path: str
    mode: str
    size: int
    version: str
    sha256: str  # hex
    source: str
    computed_at: float


@dataclass(frozen=True)
class DigestJob:
    storage_id: str
    path: str
    mode: str
    done: int
    total: int
    heartbeat_at: float
    error: str | None


def file_digest(db: Database, storage_id: str, path: str, mode: str) -> FileDigest | None:
    rows = select_rows(db, f"SELECT * FROM digests WHERE {_ONE_FILE}", [storage_id, path, mode])
    return FileDigest(**rows[0]) if rows else None


def file_digests(db: Database, storage_id: str, paths: Sequence[str]) -> list[FileDigest]:
    """Every digest kept for these paths of one storage (both modes), in one query."""
    if not paths:
        return []
    marks = ", ".join("?" * len(paths))
    rows = select_rows(
        db, f"SELECT * FROM digests WHERE storage_id = ? AND path IN ({marks})", [storage_id, *paths]
    )
    return [FileDigest(**row) for row in rows]


def save_file_digest(db: Database, digest: FileDigest) -> None:
    """Keep the digest; it replaces the one of an older version of the same file."""
    db.execute(
        """
        INSERT INTO digests (storage_id, path, mode, size, version, sha256, source, computed_at)
        VALUES (:storage_id, :path, :mode, :size, :version, :sha256, :source, :computed_at)
        ON CONFLICT (storage_id, path, mode) DO UPDATE SET size = excluded.size,
            version = excluded.version, sha256 = excluded.sha256, source = excluded.source,
            computed_at = excluded.computed_at
        """,
        digest.__dict__,
    )


def plaintext_digest(db: Database, salt: bytes, key_id: bytes, size: int) -> str | None:
    rows = select_rows(
        db,
        "SELECT sha256 FROM plaintext_digests WHERE salt = ? AND key_id = ? AND size = ?",
        [salt.hex(), key_id.hex(), size],
    )
    return rows[0]["sha256"] if rows else None


def save_plaintext_digest(
    db: Database, salt: bytes, key_id: bytes, size: int, sha256: str, source: str, now: float
) -> None:
    db.execute(
        """
        INSERT INTO plaintext_digests (salt, key_id, size, sha256, source, recorded_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (salt) DO UPDATE SET key_id = excluded.key_id, size = excluded.size,
            sha256 = excluded.sha256, source = excluded.source, recorded_at = excluded.recorded_at
        """,
        [salt.hex(), key_id.hex(), size, sha256, source, now],
    )


def digest_job(db: Database, storage_id: str, path: str, mode: str) -> DigestJob | None:
    rows = select_rows(db, f"SELECT * FROM digest_jobs WHERE {_ONE_FILE}", [storage_id, path, mode])
    return DigestJob(**rows[0]) if rows else None


def claim_digest_job(
    db: Database, storage_id: str, path: str, mode: str, total: int, now: float, stale_before: float
) -> bool:
    """Take the computation of this file, unless a worker is at it (its heartbeat is recent)."""
    cursor = db.execute(
        """
        INSERT INTO digest_jobs (storage_id, path, mode, done, total, heartbeat_at, error)
        VALUES (?, ?, ?, 0, ?, ?, NULL)
        ON CONFLICT (storage_id, path, mode) DO UPDATE SET done = 0, total = excluded.total,
            heartbeat_at = excluded.heartbeat_at, error = NULL
        WHERE digest_jobs.heartbeat_at < ? OR digest_jobs.error IS NOT NULL
        """,
        [storage_id, path, mode, total, now, stale_before],
    )
    return cursor.rowcount == 1


def report_digest_progress(db: Database, job: DigestJob) -> None:
    db.execute(
        f"""
        UPDATE digest_jobs SET done = ?, heartbeat_at = ?, error = ?
        WHERE {_ONE_FILE}
        """,
        [job.done, job.heartbeat_at, job.error, job.storage_id, job.path, job.mode],
    )


def end_digest_job(db: Database, storage_id: str, path: str, mode: str) -> None:
    db.execute(f"DELETE FROM digest_jobs WHERE {_ONE_FILE}", [storage_id, path, mode])
