"""One S3 object as a seekable, read-only file, read through ranged GETs of its storage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError

from storage.base import SeekableReader, StorageError

if TYPE_CHECKING:
    from storage.s3 import S3Storage


class S3Object(SeekableReader):
    """One object as a seekable, read-only file, reading with as few GETs as the access pattern allows.

    Sequential reads share one open-ended ranged GET. The last bytes read stay at hand, so a reader
    that looks at the header and seeks back to the start (the encryption check before a plain
    download) does not open a second stream; and a read that runs to the end of the object (the
    final chunk, verified before a decrypted download starts) is one bounded GET of its own that
    leaves the main stream where it was.
    """

    def __init__(self, storage: S3Storage, key: str, size: int, pin: dict | None = None):
        super().__init__(size)
        self._storage, self._key = storage, key
        self._pin = pin  # what keeps every GET on one version, in the storage's terms (S3: get_object's)
        self._stream = None
        self._stream_position = 0

    def read(self, size: int = -1) -> bytes:
        size = self._wanted(size)
        if size <= 0:
            return b""
        data = self._from_kept(size)
        if len(data) < size:
            data += self._fetch(self._position + len(data), size - len(data))
        self._position += len(data)
        return data

    def _fetch(self, position: int, size: int) -> bytes:
        if position + size >= self._size and self._stream is not None and position != self._stream_position:
            return self._guarded(lambda: self._storage.get_range(self._key, position, self._size, self._pin))
        if self._stream is None or position != self._stream_position:
            self._drop_stream()
            self._stream = self._storage.get_stream(self._key, position, self._pin)
            self._stream_position = position
        data = self._guarded(lambda: self._stream.read(size))
        self._stream_position += len(data)
        self._keep(data, position)
        return data

    def _guarded(self, read) -> bytes:
        try:
            return read()
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"The S3 transfer of {self._key} broke off: {exc}") from exc

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def close(self) -> None:
        self._drop_stream()
        super().close()
