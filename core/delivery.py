"""A storage file as it will be delivered: opened once, its encryption detected, its key fetched,
its name, size and validator decided here and nowhere else.

The public download, the signed-in direct download, minting and the link dialog all go through
`open_delivery` (or `describe_delivery`, which opens, looks and closes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

from sqlite_utils import Database

from core.sending import Content, FileRange, Stream, read_blocks
from encryption.format import Layout, decrypt_range, layout_of
from encryption.keys import Keyring
from storage import load_storage
from storage.base import Entry, Storage

ENCRYPTED_SUFFIX = ".enc"


class DeliveryMode(StrEnum):
    STORED = "stored"  # the bytes as they are in the storage
    DECRYPTED = "decrypted"  # an Oncelink-encrypted file's plaintext, decrypted on the fly
    REDIRECT = "redirect"  # the stored bytes, handed out by the storage itself (a presigned URL)


def decrypted_name(name: str) -> str:
    if name.endswith(ENCRYPTED_SUFFIX) and len(name) > len(ENCRYPTED_SUFFIX):
        return name[: -len(ENCRYPTED_SUFFIX)]
    return name


@dataclass(frozen=True)
class Delivery:
    """What a response about one file carries: name, size and a strong validator."""

    storage_id: str
    storage: Storage
    entry: Entry
    layout: Layout | None = None  # set when the file goes out decrypted

    @property
    def mode(self) -> DeliveryMode:
        return DeliveryMode.STORED if self.layout is None else DeliveryMode.DECRYPTED

    @property
    def filename(self) -> str:
        return self.entry.name if self.layout is None else decrypted_name(self.entry.name)

    @property
    def size(self) -> int:
        return self.entry.size if self.layout is None else self.layout.plaintext_size

    @property
    def mtime(self) -> float:
        return self.entry.mtime

    @property
    def etag(self) -> str:
        """Changes with the file's identity, its content version and the representation."""
        entry = self.entry
        basis = f"{self.storage_id}\0{entry.path}\0{entry.size}\0{entry.version}\0{self.mode}".encode()
        return '"' + hashlib.sha256(basis).hexdigest()[:32] + '"'

    @property
    def redirects(self) -> bool:
        """Stored bytes on a storage that hands them out itself (a presigned URL)."""
        return self.layout is None and self.storage.redirects

    @property
    def handed_out(self) -> DeliveryMode:
        """How a link's download gets this file: decrypted, as stored, or by a redirect."""
        return DeliveryMode.REDIRECT if self.redirects else self.mode


@dataclass(frozen=True)
class OpenedDelivery:
    delivery: Delivery
    source: BinaryIO
    key: bytes | None = None

    def content(self, start: int, stop: int) -> Content:
        """[start, stop) of what is delivered: zero-copy from a file descriptor where there is one."""
        if self.key is not None:
            pieces = decrypt_range(self.source, self.key, self.delivery.layout, start, stop)
            return Stream(pieces, stop - start)
        try:
            self.source.fileno()
        except (AttributeError, OSError):
            return Stream(read_blocks(self.source, start, stop), stop - start)
        return FileRange(self.source, start, stop)


def open_delivery(
    db: Database, storage_id: str, path: str, keyring: Keyring, decrypt: bool
) -> OpenedDelivery:
    """The file opened for delivery; decrypted when asked and it is in Oncelink's format.

    Raises FormatError for a damaged header and ProfileMissing when no profile holds its key.
    """
    storage = load_storage(db, storage_id, keyring)
    entry, source = storage.open_file(path)
    try:
        layout = layout_of(source, entry.size) if decrypt else None
        key = keyring.key_for(db, layout.header.key_id) if layout else None
    except BaseException:
        source.close()
        raise
    return OpenedDelivery(Delivery(storage_id, storage, entry, layout), source, key)


def describe_delivery(db: Database, storage_id: str, path: str, keyring: Keyring, decrypt: bool) -> Delivery:
    """How the file would be delivered, checked now (no profile: refused now, not at download)."""
    opened = open_delivery(db, storage_id, path, keyring, decrypt)
    opened.source.close()
    return opened.delivery
