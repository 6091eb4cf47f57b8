"""Storage adapters, built from their database records."""

from __future__ import annotations

from sqlite_utils import Database

from db.storages import StorageRecord, get_storage
from encryption.keys import Keyring
from storage.base import Storage, StorageError, UnknownStorage
from storage.local import LocalStorage
from storage.s3 import S3Settings, S3Storage
from storage.sftp import SFTPStorage
from storage.sftp_connect import SFTPSettings
from storage.webdav import WebDAVSettings, WebDAVStorage

SFTP_SECRETS = ("password", "private_key", "passphrase")


def s3_settings(record: StorageRecord, keyring: Keyring) -> S3Settings:
    """The record's S3 settings, with the secret key unwrapped (it is stored sealed)."""
    config = dict(record.config)
    sealed = config.pop("secret_access_key", None)
    secret = keyring.unseal_secret(record.id, sealed) if sealed else None
    return S3Settings(**config, secret_access_key=secret)


def unsealed(record: StorageRecord, keyring: Keyring, names: tuple[str, ...]) -> dict:
    """The record's config with its sealed secrets (those in `names` that are set) opened."""
    config = dict(record.config)
    for name in names:
        if config.get(name):
            config[name] = keyring.unseal_secret(record.id, config[name])
    return config


def sftp_settings(record: StorageRecord, keyring: Keyring) -> SFTPSettings:
    config = unsealed(record, keyring, SFTP_SECRETS)
    return SFTPSettings(**{**config, "host_keys": tuple(config.get("host_keys", ()))})


def webdav_settings(record: StorageRecord, keyring: Keyring) -> WebDAVSettings:
    return WebDAVSettings(**unsealed(record, keyring, ("password",)))


def open_storage(record: StorageRecord, keyring: Keyring) -> Storage:
    if record.kind == "local":
        return LocalStorage(record.config["path"])
    if record.kind == "s3":
        return S3Storage(s3_settings(record, keyring))
    if record.kind == "sftp":
        return SFTPStorage(sftp_settings(record, keyring))
    if record.kind == "webdav":
        return WebDAVStorage(webdav_settings(record, keyring))
    raise StorageError(f"Unknown storage kind {record.kind!r}.")


def load_storage(db: Database, storage_id: str, keyring: Keyring) -> Storage:
    record = get_storage(db, storage_id)
    if record is None:
        raise UnknownStorage(f"No storage {storage_id!r}.")
    return open_storage(record, keyring)
