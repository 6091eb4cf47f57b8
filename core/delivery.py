"""A storage file as it will be delivered: opened once, its encryption detected, its key fetched,
its name, size and validator decided here and nowhere else.

The public download, the signed-in direct download, minting and the link dialog all go through
`open_delivery` (or `describe_delivery`, which opens, looks and closes). Two encrypted formats are
decrypted: Oncelink's own (encryption/format.py), told by its header, and DBackup's
(encryption/dbackup.py), told by the sidecar beside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import BinaryIO

from sqlite_utils import Database

from core.sending import Content, FileRange, Stream, read_blocks
from encryption import dbackup
from encryption.dbackup import Sidecar, SidecarError
from encryption.format import Layout, decrypt_range, layout_of
from encryption.keys import Keyring
from storage import load_storage
from storage.base import Entry, FileMissing, NotAFile, Storage

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
    layout: Layout | None = None  # set when an Oncelink-encrypted file goes out decrypted
    sidecar: Sidecar | None = None  # set when a DBackup backup goes out decrypted

    @property
    def decrypted(self) -> bool:
        return self.layout is not None or self.sidecar is not None

    @property
    def mode(self) -> DeliveryMode:
        return DeliveryMode.DECRYPTED if self.decrypted else DeliveryMode.STORED

    @property
    def filename(self) -> str:
        return decrypted_name(self.entry.name) if self.decrypted else self.entry.name

    @property
    def size(self) -> int:
        """GCM adds nothing to DBackup's file (its tag is in the sidecar): its plaintext is as long."""
        return self.layout.plaintext_size if self.layout is not None else self.entry.size

    @property
    def mtime(self) -> float:
        return self.entry.mtime

    @property
    def etag(self) -> str:
        """Changes with the file's identity, its content version and the representation."""
        entry, sealed = self.entry, self.sidecar.identity if self.sidecar else ""
        basis = f"{self.storage_id}\0{entry.path}\0{entry.size}\0{entry.version}\0{self.mode}\0{sealed}"
        return '"' + hashlib.sha256(basis.encode()).hexdigest()[:32] + '"'

    @property
    def redirects(self) -> bool:
        """Stored bytes on a storage that hands them out itself (a presigned URL)."""
        return not self.decrypted and self.storage.redirects

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
        """[start, stop) of what is delivered: zero-copy from a file descriptor where there is one.

        A DBackup backup's range is decrypted without its tag: `core.tag_checks.check_tag` must have
        accepted the whole file first."""
        delivery = self.delivery
        if delivery.sidecar is not None:
            first = dbackup.first_counter(self.key, delivery.sidecar.iv)
            return Stream(dbackup.decrypt_range(self.source, self.key, first, start, stop), stop - start)
        if delivery.layout is not None:
            return Stream(decrypt_range(self.source, self.key, delivery.layout, start, stop), stop - start)
        try:
            self.source.fileno()
        except (AttributeError, OSError):
            return Stream(read_blocks(self.source, start, stop), stop - start)
        return FileRange(self.source, start, stop)

    def pieces(self) -> Iterator[bytes]:
        """Everything delivered, front to back, each format's authentication checked as it goes
        (a DBackup backup's at the end): for reading it whole, as the digests do."""
        delivery = self.delivery
        if delivery.sidecar is not None:
            self.source.seek(0)
            return dbackup.decrypt_stream(self.source, self.key, delivery.sidecar)
        if delivery.layout is not None:
            return decrypt_range(self.source, self.key, delivery.layout)
        return read_blocks(self.source, 0, delivery.size)


def open_delivery(
    db: Database, storage_id: str, path: str, keyring: Keyring, decrypt: bool
) -> OpenedDelivery:
    """The file opened for delivery; decrypted when asked and it is in a format read here.

    Raises FormatError for a damaged header or sidecar and ProfileMissing when no profile holds
    its key.
    """
    storage = load_storage(db, storage_id, keyring)
    entry, source = storage.open_file(path)
    delivery = Delivery(storage_id, storage, entry)
    if not decrypt:
        return OpenedDelivery(delivery, source)
    try:
        return _opened(db, delivery, source, keyring)
    except BaseException:
        source.close()
        raise


def _opened(db: Database, delivery: Delivery, source: BinaryIO, keyring: Keyring) -> OpenedDelivery:
    """The file as it decrypts: by its DBackup sidecar, else by its own header, else as stored.

    A sidecar that cannot be read gives way to an Oncelink header; without one, it is the error.
    """
    try:
        sidecar, broken = sidecar_of(delivery.storage, delivery.entry), None
    except SidecarError as exc:
        sidecar, broken = None, exc
    if sidecar is not None:
        key = keyring.key_for_dbackup(db, sidecar.profile_id)
        return OpenedDelivery(replace(delivery, sidecar=sidecar), source, key)
    layout = layout_of(source, delivery.entry.size)
    if layout is None and broken is not None:
        raise broken
    key = keyring.key_for(db, layout.header.key_id) if layout else None
    return OpenedDelivery(replace(delivery, layout=layout), source, key)


def sidecar_of(storage: Storage, entry: Entry) -> Sidecar | None:
    """The DBackup sidecar beside a `.enc` file, if there is one that says it is encrypted."""
    if not entry.name.endswith(ENCRYPTED_SUFFIX):
        return None
    try:
        with storage.open(dbackup.sidecar_name(entry.path)) as source:
            return dbackup.read_sidecar(source)
    except (FileMissing, NotAFile):
        return None


def describe_delivery(db: Database, storage_id: str, path: str, keyring: Keyring, decrypt: bool) -> Delivery:
    """How the file would be delivered, checked now (no profile: refused now, not at download)."""
    opened = open_delivery(db, storage_id, path, keyring, decrypt)
    opened.source.close()
    return opened.delivery
