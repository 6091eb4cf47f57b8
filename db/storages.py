"""Queries on the storages table: a slug, a display name, a kind and its JSON config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from db import select_rows


@dataclass(frozen=True)
class StorageRecord:
    id: str
    name: str
    kind: str
    config: dict = field(default_factory=dict)


def _storage(row: dict) -> StorageRecord:
    return StorageRecord(**{**row, "config": json.loads(row["config"])})


def get_storage(db: Database, storage_id: str) -> StorageRecord | None:
    rows = select_rows(db, "SELECT id, name, kind, config FROM storages WHERE id = ?", [storage_id])
    return _storage(rows[0]) if rows else None


def list_storages(db: Database) -> list[StorageRecord]:
    rows = select_rows(db, "SELECT id, name, kind, config FROM storages ORDER BY id")
    return [_storage(row) for row in rows]


def insert_storage(db: Database, record: StorageRecord) -> None:
    db.execute(
        "INSERT INTO storages (id, name, kind, config) VALUES (?, ?, ?, ?)",
        [record.id, record.name, record.kind, json.dumps(record.config)],
    )


def update_storage(db: Database, record: StorageRecord) -> bool:
    """Save a storage's name and config (its id and kind never change); False when it is gone."""
    cursor = db.execute(
        "UPDATE storages SET name = ?, config = ? WHERE id = ? AND kind = ?",
        [record.name, json.dumps(record.config), record.id, record.kind],
    )
    return cursor.rowcount == 1


def delete_storage(db: Database, storage_id: str) -> bool:
    """Forget a storage (its links stay, pointing at an id that no longer opens); False when it is gone."""
    return db.execute("DELETE FROM storages WHERE id = ?", [storage_id]).rowcount == 1
