"""Registering storages and checking that they answer."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlite_utils import Database

from db import DatabaseError, close_quietly, connect, write_transaction
from db.events import Client, EventKind, record_link_event
from db.links import revoke_storage_links
from db.storages import (
    StorageRecord,
    delete_storage,
    get_storage,
    insert_storage,
    list_storages,
    update_storage,
)
from encryption.keys import Keyring
from storage import load_storage
from storage.base import UnknownStorage
from storage.s3 import S3Settings

STORAGE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Endpoint addresses in an adapter's message ("Could not connect to the endpoint URL: "http://..."):
# a parenthesis that holds one goes whole, an address left elsewhere is hidden.
ADDRESS_ASIDE = re.compile(r"\s*\([^()]*[a-z][a-z0-9+.-]*://[^()]*\)", re.IGNORECASE)
ADDRESS = re.compile(r"""["']?\b[a-z][a-z0-9+.-]*://[^\s"']+["']?""", re.IGNORECASE)
MAX_NAME = 100


class StorageConfigError(ValueError):
    """A storage that cannot be added as asked, with a message for the person asking."""


@dataclass(frozen=True)
class RemovedStorage:
    record: StorageRecord
    revoked: int  # links that still worked, revoked with it


def _check_new_id(db: Database, storage_id: str) -> None:
    if not STORAGE_ID.match(storage_id):
        raise StorageConfigError("A storage id is lower-case letters, digits, '-' and '_' (at most 64).")
    if get_storage(db, storage_id) is not None:
        raise StorageConfigError(f"A storage {storage_id!r} exists already.")


def _display_name(name: str | None, storage_id: str) -> str:
    name = (name or "").strip()
    if len(name) > MAX_NAME:
        raise StorageConfigError(f"A storage name is at most {MAX_NAME} characters.")
    return name or storage_id


def _existing(db: Database, storage_id: str, kind: str) -> StorageRecord:
    record = get_storage(db, storage_id)
    if record is None:
        raise UnknownStorage(f"No storage {storage_id!r}.")
    if record.kind != kind:
        raise StorageConfigError(f"Storage {storage_id!r} is not a {kind} storage.")
    return record


def save_storage(
    db: Database,
    storage_id: str,
    kind: str,
    name: str | None,
    config_of: Callable[[StorageRecord | None], dict],
    new: bool,
) -> StorageRecord:
    """A storage registered (`new`) or changed in place, its id and links kept: `config_of` makes
    its settings as stored from the record they replace (None for a new one), so that secrets left
    empty keep the sealed ones."""
    if new:
        _check_new_id(db, storage_id)
        current = None
    else:
        current = _existing(db, storage_id, kind)
    record = StorageRecord(storage_id, _display_name(name, storage_id), kind, config_of(current))
    (insert_storage if new else update_storage)(db, record)
    return record


SHARED_MOUNT_REQUIRED = (
    "Several hosts share this install's database (PostgreSQL), and a link minted on one may be served"
    " or resumed by another: a local folder can be a storage only if every host sees it at this path,"
    " as a shared mount (NFS, CIFS...). Mark it shared, or use S3, SFTP or WebDAV."
)


@dataclass(frozen=True)
class LocalPlacement:
    """Where a local folder may be: never holding or inside `protected` (the data dir); and where
    several hosts share the install, only on a mount they all see (`shared`, the admin's word)."""

    protected: Path | None = None
    several_hosts: bool = False
    shared: bool = False


def _local_config(path: str, placement: LocalPlacement) -> dict:
    """The folder, resolved and created when missing; never one that holds or sits in the data dir."""
    if not path.strip():
        raise StorageConfigError("A folder path is required.")
    if placement.several_hosts and not placement.shared:
        raise StorageConfigError(SHARED_MOUNT_REQUIRED)
    protected = placement.protected
    root = Path(path).expanduser().resolve()
    if protected is not None:
        guarded = protected.resolve()
        if root.is_relative_to(guarded) or guarded.is_relative_to(root):
            raise StorageConfigError(
                f"{root} overlaps the data folder {guarded}, which holds the master key and the database."
            )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageConfigError(f"Cannot create the folder {root}: {exc.strerror}.") from exc
    return {"path": str(root), "shared": True} if placement.shared else {"path": str(root)}


def add_local_storage(
    db: Database,
    storage_id: str,
    path: str,
    name: str | None = None,
    placement: LocalPlacement = LocalPlacement(),
) -> StorageRecord:
    """Register a folder; it is created when missing."""
    return save_storage(db, storage_id, "local", name, lambda _: _local_config(path, placement), new=True)


def update_local_storage(
    db: Database,
    storage_id: str,
    path: str,
    name: str | None = None,
    placement: LocalPlacement = LocalPlacement(),
) -> StorageRecord:
    """Point a local storage elsewhere or rename it; its id and links stay."""
    return save_storage(db, storage_id, "local", name, lambda _: _local_config(path, placement), new=False)


def _s3_config(
    keyring: Keyring, storage_id: str, settings: S3Settings, kept_secret: str | None = None
) -> dict:
    """The settings as stored: the secret sealed by the master key (or the one kept), never in clear."""
    if not settings.bucket:
        raise StorageConfigError("A bucket name is required.")
    endpoint = urlsplit(settings.endpoint_url or "")
    if settings.endpoint_url and (endpoint.scheme not in ("http", "https") or not endpoint.hostname):
        raise StorageConfigError("The endpoint URL must be an http:// or https:// address.")
    config = dataclasses.asdict(settings)
    secret = config.pop("secret_access_key")
    if secret:
        config["secret_access_key"] = keyring.seal_secret(storage_id, secret)
    elif kept_secret:
        config["secret_access_key"] = kept_secret
    return config


def add_s3_storage(
    db: Database, keyring: Keyring, storage_id: str, settings: S3Settings, name: str | None = None
) -> StorageRecord:
    """Register a bucket; the secret key is stored sealed by the master key, never in clear."""

    def config_of(_: None) -> dict:
        return _s3_config(keyring, storage_id, settings)

    return save_storage(db, storage_id, "s3", name, config_of, new=True)


def update_s3_storage(
    db: Database, keyring: Keyring, storage_id: str, settings: S3Settings, name: str | None = None
) -> StorageRecord:
    """Change a bucket's settings; an empty secret keeps the one stored, so it never has to be shown."""

    def config_of(current: StorageRecord) -> dict:
        return _s3_config(keyring, storage_id, settings, current.config.get("secret_access_key"))

    return save_storage(db, storage_id, "s3", name, config_of, new=False)


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
    if record.kind in ("sftp", "webdav"):
        from core.remote_storages import describe_remote  # it builds on this module

        return describe_remote(record)
    return config.get("path", "")


def check_storage(db: Database, storage_id: str, keyring: Keyring) -> str:
    """A sentence saying the storage answers; raises StorageError saying what is wrong."""
    return load_storage(db, storage_id, keyring).check()


def remove_storage(
    db: Database, storage_id: str, by: str, now: float, client: Client = Client()
) -> RemovedStorage:
    """Forget a storage and revoke its links that could still send a byte, in one transaction.

    The links and their events stay (the history, purged with the retention like any dead link),
    so each public link answers as a revoked one, even if a storage with the same id comes back.
    The files themselves are not touched.
    """
    with write_transaction(db):
        record = get_storage(db, storage_id)
        if record is None:
            raise UnknownStorage(f"No storage {storage_id!r}.")
        revoked = revoke_storage_links(db, storage_id, now)
        for link in revoked:
            record_link_event(db, EventKind.REVOKED, link, now, client, reason=f"storage removed by {by}")
        delete_storage(db, storage_id)
    return RemovedStorage(record, len(revoked))


def outage_reason(error: Exception) -> str:
    """Why a storage did not answer, for any signed-in page: the adapter's sentence without the
    endpoint address in it (only admins see that, when they test the connection)."""
    reason = ADDRESS.sub("[address hidden]", ADDRESS_ASIDE.sub("", str(error))).strip()
    if reason[1:2].islower():  # "Cannot reach..." reads on after a colon; "S3 failed..." stays
        reason = reason[0].lower() + reason[1:]
    return reason or "no reason given."


def uses_s3(database: str) -> bool:
    """Whether a storage of the install is an S3 bucket; False where the database cannot say (not
    made yet): a worker then loads S3's model as it starts, rather than in a request (gunicorn.conf.py)."""
    try:
        db = connect(database)
    except DatabaseError:
        return False
    try:
        return any(record.kind == "s3" for record in list_storages(db))
    except DatabaseError:
        return False
    finally:
        close_quietly(db)
