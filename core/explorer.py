"""Browsing a storage: pages of folder listings that say which files are encrypted, and with which profile."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from threading import Lock
from typing import Any

from sqlite_utils import Database

from core.delivery import ENCRYPTED_SUFFIX
from core.listings import Order, Page, Sort, page_after, page_at
from core.offloading import let_connections_run
from core.search import Found, search_below
from encryption.dbackup import Sidecar, read_sidecar, sidecar_name
from encryption.format import HEADER_SIZE, FormatError, NotEncrypted, parse_header
from encryption.keys import Keyring, dbackup_profile_names, profile_names
from storage import load_storage
from storage.base import Entry, FileMissing, NotAFile, Storage, StorageError, UnsafePath, nameable

PAGE_SIZE = 100  # the explorer's rows per page, unless the person chooses another of PAGE_SIZES
PAGE_SIZES = (50, 100, 250, 500)
DEFAULT_LIMIT = 1000  # the files API's entries per page, unless asked otherwise
MAX_LIMIT = 5000
KEPT_HEADERS = 5000  # about 1.5 MB; five pages of the files API, fifty of the explorer


class EncryptionFormat(StrEnum):
    ONCELINK = "oncelink"  # told by the file's own header
    DBACKUP = "dbackup"  # told by the DBackup sidecar beside it


@dataclass(frozen=True)
class ListedEntry:
    entry: Entry
    encrypted: bool = False
    profile: str | None = None  # the profile's name, or the key id when no profile here holds it
    format: EncryptionFormat | None = None  # set when encrypted
    backup: Sidecar | None = None  # what a DBackup sidecar says of the backup: job, engine, time


@dataclass(frozen=True)
class ProfileNames:
    """Profile names by the ids files name them by: Oncelink's key ids and DBackup's profile ids."""

    oncelink: dict[str, str]
    dbackup: dict[str, str]


def profile_labels(db: Database) -> ProfileNames:
    return ProfileNames(profile_names(db), dbackup_profile_names(db))


class InvalidListingRequest(ValueError):
    """A files API query that asks for something no listing can be (its message says which field)."""


class Headers:
    """What each file's first bytes said (encrypted or not, under which key), or its DBackup sidecar,
    by the file's version: paging through a folder again reads no header twice, and a rewritten file
    has a new version."""

    def __init__(self, size: int):
        self.size = size
        self._kept: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._lock = Lock()

    def get(self, key: tuple[str, str, str]) -> Any:
        with self._lock:
            return self._kept.get(key)

    def put(self, key: tuple[str, str, str], found: Any) -> None:
        with self._lock:
            self._kept[key] = found
            if len(self._kept) > self.size:
                self._kept.popitem(last=False)


headers = Headers(KEPT_HEADERS)


PLAIN = (False, None)  # (encrypted, key id) of a file that is not encrypted, or could not be read


def _verdict(head: bytes) -> tuple[bool, str | None]:
    """(encrypted, key id) from a file's first bytes."""
    try:
        header = parse_header(head)
    except NotEncrypted:
        return PLAIN
    except FormatError:
        return True, None
    return True, header.key_id.hex()


def _may_be_encrypted(storage: Storage, entry: Entry) -> bool:
    """On remote storages only `.enc` names, so that a page of a bucket does not cost a GET per object."""
    if entry.is_dir or entry.size < HEADER_SIZE:
        return False
    return storage.cheap_reads or entry.name.endswith(".enc")


def _headers_of(storage: Storage, entries: list[Entry]) -> dict[str, tuple[bool, str | None]]:
    """(encrypted, key id) of those of `entries` that may be encrypted, by path: each file's header
    read once per version of it, all those not known yet in one call to the storage."""
    found, unread = {}, []
    for entry in filter(partial(_may_be_encrypted, storage), entries):
        known = headers.get((storage.cache_key, entry.path, entry.version)) if entry.version else None
        if known is None:
            unread.append(entry)
        else:
            found[entry.path] = known
    for entry, head in zip(unread, storage.read_heads(unread, HEADER_SIZE) if unread else [], strict=True):
        if head is not None:  # not readable this time: shown as not encrypted, read again next time
            found[entry.path] = _verdict(head)
            if entry.version:
                headers.put((storage.cache_key, entry.path, entry.version), found[entry.path])
    return found


def _sidecar_of(storage: Storage, entry: Entry) -> Sidecar | None:
    """What the backup's DBackup sidecar says, once per version of the backup; None when it cannot
    be read or says nothing of encryption (the row then reads as the file's header tells)."""
    key = ("dbackup", storage.cache_key, f"{entry.path}\0{entry.version}")
    found = headers.get(key) if entry.version else None
    if found is None:
        try:
            with storage.open(sidecar_name(entry.path)) as source:
                found = read_sidecar(source) or False
        except (FormatError, StorageError, FileMissing, NotAFile, UnsafePath, OSError):
            return None
        if entry.version:
            headers.put(key, found)
    return found or None


def _listed(
    entry: Entry, names: ProfileNames, sidecar: Sidecar | None, header: tuple[bool, str | None]
) -> ListedEntry:
    if sidecar is not None:
        profile = names.dbackup.get(sidecar.profile_id, sidecar.profile_id)
        return ListedEntry(entry, True, profile, EncryptionFormat.DBACKUP, sidecar)
    encrypted, key_id = header
    if not encrypted:
        return ListedEntry(entry)
    profile = names.oncelink.get(key_id, key_id) if key_id else None
    return ListedEntry(entry, True, profile, EncryptionFormat.ONCELINK)


def listed(
    storage: Storage, entries: list[Entry], names: ProfileNames, sidecars: frozenset[str] = frozenset()
) -> list[ListedEntry]:
    """The entries shown, with their encryption: only these files are looked into. `sidecars` holds
    the paths of those whose DBackup sidecar the listing folded in. An entry no link could name is
    left out (storage.base.nameable), so a page may hold fewer entries than its size."""
    entries = [entry for entry in entries if nameable(entry.path)]
    backups = {}
    for entry in entries:
        if entry.path in sidecars and entry.name.endswith(ENCRYPTED_SUFFIX):
            backups[entry.path] = _sidecar_of(storage, entry)
    found = _headers_of(storage, [entry for entry in entries if backups.get(entry.path) is None])
    return [_listed(entry, names, backups.get(entry.path), found.get(entry.path, PLAIN)) for entry in entries]


@dataclass(frozen=True)
class FolderQuery:
    """How the person wants a folder shown: sorted, filtered, and which page of it."""

    folder: str = ""
    sort: Sort = Sort.NAME
    descending: bool = False
    filter: str = ""
    page: int = 1
    after: str = ""  # the cursor the page follows, where Next carries one (S3's own order)
    size: int = PAGE_SIZE  # rows per page
    below: bool = False  # the filter searches the folders below this one too


@dataclass(frozen=True)
class FolderPage:
    query: FolderQuery
    entries: list[ListedEntry]
    total: int | None  # None where counting would mean listing the whole folder (S3's own order)
    pages: int | None
    next: str | None  # Next's cursor where the page count is unknown
    search: Found | None = None  # where the filter searched below the folder: how far it went


def browse_folder(db: Database, storage_id: str, query: FolderQuery, keyring: Keyring) -> FolderPage:
    """One page of a folder; only the page's files are opened for their headers."""
    storage = load_storage(db, storage_id, keyring)
    if query.below and query.filter:
        return _searched(db, storage, query)
    order = Order(query.sort, query.descending, query.filter)
    number, size = max(1, query.page), query.size
    if query.after:
        page = page_after(storage, storage_id, query.folder, order, query.after, size)
    else:
        page = page_at(storage, storage_id, query.folder, order, (number - 1) * size, size)
        number = page.offset // size + 1
    pages = max(1, -(-page.total // size)) if page.total is not None else None
    let_connections_run()  # the rows were looked at; their headers are next
    return FolderPage(
        replace(query, page=number),
        listed(storage, page.entries, profile_labels(db), page.sidecars),
        page.total,
        pages,
        page.next,
    )


def _searched(db: Database, storage: Storage, query: FolderQuery) -> FolderPage:
    """The filter's matches in the folder and below it, as one page."""
    found = search_below(storage, query.folder, query.filter, query.size)
    entries = listed(storage, found.entries, profile_labels(db), found.sidecars)
    return FolderPage(replace(query, page=1, after=""), entries, len(entries), 1, None, found)


@dataclass(frozen=True)
class ListingRequest:
    """A files API query, checked: the folder, its order, where to start, and how many entries."""

    folder: str = ""
    order: Order = Order()
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT


def parse_listing_request(args: Mapping[str, str]) -> ListingRequest:
    """The query string as given; any value outside what the API documents is a 400, not a guess."""
    sort, direction = args.get("sort", "name"), args.get("order", "asc")
    if sort not in set(Sort):
        raise InvalidListingRequest("'sort' must be name, size or date.")
    if direction not in ("asc", "desc"):
        raise InvalidListingRequest("'order' must be asc or desc.")
    limit = args.get("limit", str(DEFAULT_LIMIT))
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_LIMIT):
        raise InvalidListingRequest(f"'limit' must be a whole number from 1 to {MAX_LIMIT}.")
    order = Order(Sort(sort), direction == "desc")
    return ListingRequest(args.get("path", ""), order, args.get("cursor") or None, int(limit))


@dataclass(frozen=True)
class ListedPage:
    entries: list[ListedEntry]
    next: str | None


def list_folder(db: Database, storage_id: str, request: ListingRequest, keyring: Keyring) -> ListedPage:
    """One page of the files API: at most `limit` entries, and the cursor of the next page."""
    storage = load_storage(db, storage_id, keyring)
    page: Page = page_after(storage, storage_id, request.folder, request.order, request.cursor, request.limit)
    let_connections_run()
    return ListedPage(listed(storage, page.entries, profile_labels(db), page.sidecars), page.next)


def describe_file(db: Database, storage_id: str, path: str, keyring: Keyring) -> ListedEntry:
    """One file with its encryption, for the link dialog (raises FileMissing, NotAFile...)."""
    storage = load_storage(db, storage_id, keyring)
    entry = storage.stat(path)
    return listed(storage, [entry], profile_labels(db), frozenset([entry.path]))[0]


def breadcrumbs(folder: str) -> list[tuple[str, str]]:
    """('name', 'path') for each folder from the root down to `folder`."""
    parts = [part for part in folder.split("/") if part]
    return [(part, "/".join(parts[: index + 1])) for index, part in enumerate(parts)]
