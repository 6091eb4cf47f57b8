"""Browsing a storage: folder listings that say which files are encrypted, and with which profile."""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from encryption.format import HEADER_SIZE, FormatError, NotEncrypted, parse_header
from encryption.keys import Keyring, profile_names
from storage import load_storage
from storage.base import Entry, FileMissing, NotAFile, Storage, StorageError, UnsafePath


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
        with storage.open(entry.path, entry.size) as source:
            header = parse_header(source.read(HEADER_SIZE))
    except (NotEncrypted, StorageError, FileMissing, NotAFile, UnsafePath, OSError):
        return False, None
    except FormatError:
        return True, None
    return True, names.get(header.key_id.hex(), header.key_id.hex())


def list_folder(db: Database, storage_id: str, folder: str, keyring: Keyring) -> list[ListedEntry]:
    storage = load_storage(db, storage_id, keyring)
    names = profile_names(db)
    return [ListedEntry(entry, *_encryption_of(storage, entry, names)) for entry in storage.list(folder)]


SORT_KEYS = {
    "name": lambda item: (item.entry.name.casefold(), item.entry.name),
    "size": lambda item: item.entry.size,
    "date": lambda item: item.entry.mtime,
}
PAGE_SIZE = 100


@dataclass(frozen=True)
class FolderQuery:
    """How the person wants a folder shown: sorted, filtered, and which page of it."""

    folder: str = ""
    sort: str = "name"
    descending: bool = False
    filter: str = ""
    page: int = 1


@dataclass(frozen=True)
class FolderPage:
    query: FolderQuery
    entries: list[ListedEntry]
    total: int
    pages: int


def _ordered(entries: list[Entry], query: FolderQuery) -> list[Entry]:
    """Folders first, then by the chosen key; the filter is a case-insensitive substring of the name."""
    needle = query.filter.casefold()
    kept = [entry for entry in entries if needle in entry.name.casefold()]
    key = SORT_KEYS.get(query.sort, SORT_KEYS["name"])
    kept.sort(key=lambda entry: key(ListedEntry(entry)), reverse=query.descending)
    return sorted(kept, key=lambda entry: not entry.is_dir)  # stable: keeps the order within each group


def browse_folder(
    db: Database, storage_id: str, query: FolderQuery, keyring: Keyring, page_size: int = PAGE_SIZE
) -> FolderPage:
    """One page of a folder. Only the page's files are opened for their headers, so big folders stay fast."""
    storage = load_storage(db, storage_id, keyring)
    ordered = _ordered(storage.list(query.folder), query)
    pages = max(1, -(-len(ordered) // page_size))
    page = min(max(1, query.page), pages)
    shown = ordered[(page - 1) * page_size : page * page_size]
    names = profile_names(db)
    listed = [ListedEntry(entry, *_encryption_of(storage, entry, names)) for entry in shown]
    return FolderPage(
        FolderQuery(query.folder, query.sort, query.descending, query.filter, page),
        listed,
        len(ordered),
        pages,
    )


def describe_file(db: Database, storage_id: str, path: str, keyring: Keyring) -> ListedEntry:
    """One file with its encryption, for the link dialog (raises FileMissing, NotAFile...)."""
    storage = load_storage(db, storage_id, keyring)
    entry = storage.stat(path)
    return ListedEntry(entry, *_encryption_of(storage, entry, profile_names(db)))


def breadcrumbs(folder: str) -> list[tuple[str, str]]:
    """('name', 'path') for each folder from the root down to `folder`."""
    parts = [part for part in folder.split("/") if part]
    return [(part, "/".join(parts[: index + 1])) for index, part in enumerate(parts)]
