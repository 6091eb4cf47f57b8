"""Storage adapters, built from their database records."""

from __future__ import annotations

from sqlite_utils import Database

from db.storages import StorageRecord, get_storage
from encryption.keys import Keyring
from storage.base import Storage, StorageError, UnknownStorage
from storage.local import LocalStorage
from storage.s3 import S3Settings, S3Storage


def s3_settings(record: StorageRecord, keyring: Keyring) -> S3Settings:
    """The record's S3 settings, with the secret key unwrapped (it is stored sealed)."""
    config = dict(record.config)
    sealed = config.pop("secret_access_key", None)
    secret = keyring.unseal_secret(record.id, sealed) if sealed else None
    return S3Settings(**config, secret_access_key=secret)


def open_storage(record: StorageRecord, keyring: Keyring) -> Storage:
    if record.kind == "local":
        return LocalStorage(record.config["path"])
    if record.kind == "s3":
        return S3Storage(s3_settings(record, keyring))
    raise StorageError(f"Unknown storage kind {record.kind!r}.")


def load_storage(db: Database, storage_id: str, keyring: Keyring) -> Storage:
    record = get_storage(db, storage_id)
    if record is None:
        raise UnknownStorage(f"No storage {storage_id!r}.")
    return open_storage(record, keyring)
