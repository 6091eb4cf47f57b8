"""Browsing a storage: folder listings that say which files are encrypted, and with which profile."""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from encryption.format import HEADER_SIZE, FormatError, NotEncrypted, parse_header
from encryption.keys import Keyring, profile_names
from storage import load_storage
from storage.base import Entry, FileMissing, Storage, StorageError, UnsafePath


@dataclass(frozen=True)
class ListedEntry:
    entry: Entry
    encrypted: bool = False
    profile: str | None = None  # the profile's name, or the key id when no profile here holds it


def _encryption_of(storage: Storage, entry: Entry, names: dict[str, str]) -> tuple[bool, str | None]:
    """Read only the header: one small read per file; on remote storages only for `.enc` names,
    so that listing a bucket of thousands of objects does not cost thousands of GETs."""
    if entry.is_dir or entry.size < HEADER_SIZE:
        return False, None
    if not storage.cheap_reads and not entry.name.endswith(".enc"):
        return False, None
    try:
        with storage.open(entry.path) as source:
            header = parse_header(source.read(HEADER_SIZE))
    except (NotEncrypted, StorageError, FileMissing, UnsafePath, OSError):
        return False, None
    except FormatError:
        return True, None
    return True, names.get(header.key_id.hex(), header.key_id.hex())


def list_folder(db: Database, storage_id: str, folder: str, keyring: Keyring) -> list[ListedEntry]:
    storage = load_storage(db, storage_id, keyring)
    names = profile_names(db)
    return [ListedEntry(entry, *_encryption_of(storage, entry, names)) for entry in storage.list(folder)]
