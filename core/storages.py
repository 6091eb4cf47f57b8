"""Registering storages and checking that they answer."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from sqlite_utils import Database

from db.storages import StorageRecord, get_storage, insert_storage
from encryption.keys import Keyring
from storage import load_storage
from storage.s3 import S3Settings

STORAGE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class StorageConfigError(ValueError):
    """A storage that cannot be added as asked, with a message for the person asking."""


def _new_record(db: Database, storage_id: str, name: str | None, kind: str, config: dict) -> StorageRecord:
    if not STORAGE_ID.match(storage_id):
        raise StorageConfigError("A storage id is lower-case letters, digits, '-' and '_' (at most 64).")
    if get_storage(db, storage_id) is not None:
        raise StorageConfigError(f"A storage {storage_id!r} exists already.")
    record = StorageRecord(storage_id, name or storage_id, kind, config)
    insert_storage(db, record)
    return record


def add_local_storage(db: Database, storage_id: str, path: str, name: str | None = None) -> StorageRecord:
    """Register a folder; it is created when missing."""
    root = Path(path).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return _new_record(db, storage_id, name, "local", {"path": str(root)})


def add_s3_storage(
    db: Database, keyring: Keyring, storage_id: str, settings: S3Settings, name: str | None = None
) -> StorageRecord:
    """Register a bucket; the secret key is stored sealed by the master key, never in clear."""
    if not settings.bucket:
        raise StorageConfigError("A bucket name is required.")
    config = dataclasses.asdict(settings)
    secret = config.pop("secret_access_key")
    if secret:
        config["secret_access_key"] = keyring.seal_secret(storage_id, secret)
    return _new_record(db, storage_id, name, "s3", config)


def describe_storage(record: StorageRecord) -> str:
    """Where a storage points, for listings; never its secret."""
    config = record.config
    if record.kind == "s3":
        where = f"s3://{config['bucket']}/{config.get('prefix') or ''}"
        return (
            where
            + (f" at {config['endpoint_url']}" if config.get("endpoint_url") else "")
            + (" (redirect)" if config.get("redirect") else "")
        )
    return config.get("path", "")


def check_storage(db: Database, storage_id: str, keyring: Keyring) -> str:
    """A sentence saying the storage answers; raises StorageError saying what is wrong."""
    return load_storage(db, storage_id, keyring).check()
