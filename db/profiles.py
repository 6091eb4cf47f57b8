"""Queries on encryption profiles; each key is stored wrapped by the master key, never in clear."""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from db import select_rows


@dataclass(frozen=True)
class ProfileRecord:
    id: str  # the 16-byte key id, in hex, as written in every file's header
    name: str
    wrapped_key: bytes
    created_at: float
    dbackup_id: str | None = None  # the DBackup profile id its sidecars name, for an imported one


def _query(db: Database, where: str = "TRUE", params: list | None = None) -> list[ProfileRecord]:
    sql = (
        "SELECT id, name, wrapped_key, created_at, dbackup_id FROM encryption_profiles"
        f" WHERE {where} ORDER BY name"
    )
    return [ProfileRecord(**row) for row in select_rows(db, sql, params or [])]


def _first(rows: list[ProfileRecord]) -> ProfileRecord | None:
    return rows[0] if rows else None


def list_profiles(db: Database) -> list[ProfileRecord]:
    return _query(db)


def get_profile(db: Database, key_id: str) -> ProfileRecord | None:
    return _first(_query(db, "id = ?", [key_id]))


def get_profile_by_name(db: Database, name: str) -> ProfileRecord | None:
    return _first(_query(db, "name = ?", [name]))


def get_profile_by_dbackup_id(db: Database, dbackup_id: str) -> ProfileRecord | None:
    return _first(_query(db, "dbackup_id = ?", [dbackup_id]))


def insert_profile(db: Database, record: ProfileRecord) -> None:
    db.execute(
        "INSERT INTO encryption_profiles (id, name, wrapped_key, created_at, dbackup_id)"
        " VALUES (?, ?, ?, ?, ?)",
        [record.id, record.name, record.wrapped_key, record.created_at, record.dbackup_id],
    )
