"""A signed-in user's own download: no link, no token, no use counted; the role is the authority."""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from core.bodies import DecryptingBody, TrackedFile
from core.downloads import decrypted_name, etag_for
from encryption.format import decrypt_range, layout_of
from encryption.keys import Keyring
from storage import load_storage


@dataclass(frozen=True)
class DirectFile:
    """Shaped like core.downloads.Download, so the same response code sends it (whole file only)."""

    filename: str
    size: int
    etag: str
    mtime: float
    body: TrackedFile | DecryptingBody
    start: int = 0

    @property
    def stop(self) -> int:
        return self.size

    @property
    def partial(self) -> bool:
        return False


def _nothing_to_count(_sent: int, _delivered: bool, _failure: str | None) -> None:
    """Direct downloads hold no lease and use up nothing."""


def open_direct(db: Database, storage_id: str, path: str, keyring: Keyring) -> DirectFile:
    """The file, decrypted when it is in Oncelink's format (as a default link would deliver it)."""
    storage = load_storage(db, storage_id, keyring)
    entry = storage.stat(path)
    source = storage.open(entry.path, entry.size)
    try:
        layout = layout_of(source, entry.size)
        if layout is None:
            body = TrackedFile(source, 0, entry.size, "", _nothing_to_count)
            return DirectFile(entry.name, entry.size, etag_for(storage_id, entry), entry.mtime, body)
        key = keyring.key_for(db, layout.header.key_id)
        pieces = decrypt_range(source, key, layout, 0, layout.plaintext_size)
        body = DecryptingBody(source, pieces, "", _nothing_to_count)
        body.prime()  # a damaged file fails here, before any header is sent
        etag = etag_for(storage_id, entry, variant="decrypted")
        return DirectFile(decrypted_name(entry.name), layout.plaintext_size, etag, entry.mtime, body)
    except BaseException:
        source.close()
        raise
