"""Storage adapters, built from their database records."""

from __future__ import annotations

from sqlite_utils import Database

from db.storages import StorageRecord, get_storage
from storage.base import Storage, StorageError, UnknownStorage
from storage.local import LocalStorage


def open_storage(record: StorageRecord) -> Storage:
    if record.kind == "local":
        return LocalStorage(record.config["path"])
    raise StorageError(f"Unknown storage kind {record.kind!r}.")


def load_storage(db: Database, storage_id: str) -> Storage:
    record = get_storage(db, storage_id)
    if record is None:
        raise UnknownStorage(f"No storage {storage_id!r}.")
    return open_storage(record)
