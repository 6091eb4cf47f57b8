"""The Oncelink encrypted file format: a seekable STREAM of AES-256-GCM chunks (docs/encryption-format.md).

As in age's payload and Tink's AES-GCM-HKDF streaming AEAD: a per-file key derived with
HKDF-SHA256 from the profile key, a random salt and the whole header; fixed-size plaintext
chunks, each sealed with nonce = 11-byte big-endian counter || last-chunk flag. Chunk i lives at
a computable offset, so any plaintext byte can be reached by decrypting one chunk.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"OLNK"
VERSION = 1
AES_256_GCM = 1
CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 1024, 16 * 1024 * 1024  # bounds on what a header may ask a reader for
TAG_SIZE = 16
KEY_SIZE = 32
KEY_ID_SIZE = 16
SALT_SIZE = 32
_HEADER = struct.Struct(">4sBBI16s32s")  # magic, version, algorithm, chunk size, key id, salt
HEADER_SIZE = _HEADER.size
_INFO = b"oncelink/v1 payload key"
_LAST_COUNTER = 2**88 - 1


class NotEncrypted(ValueError):
    """The data does not start with the Oncelink magic: a plain file."""


class FormatError(ValueError):
    """It starts like an Oncelink file but cannot be one (bad version, sizes, truncation)."""


class IntegrityError(ValueError):
    """A chunk failed authentication: wrong key, tampering, truncation or reordering."""


@dataclass(frozen=True)
class Header:
    key_id: bytes
    salt: bytes
    chunk_size: int = CHUNK_SIZE

    def to_bytes(self) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, AES_256_GCM, self.chunk_size, self.key_id, self.salt)

    @property
    def sealed_chunk_size(self) -> int:
        return self.chunk_size + TAG_SIZE


def new_header(key_id: bytes, chunk_size: int = CHUNK_SIZE) -> Header:
    if len(key_id) != KEY_ID_SIZE:
        raise ValueError("a key id is 16 bytes")
    return Header(key_id, os.urandom(SALT_SIZE), chunk_size)


def parse_header(data: bytes) -> Header:
    """Read a header from the first HEADER_SIZE bytes of a file."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise NotEncrypted("not an Oncelink encrypted file")
    if len(data) < HEADER_SIZE:
        raise FormatError("the header is truncated")
    magic, version, algorithm, chunk_size, key_id, salt = _HEADER.unpack(data[:HEADER_SIZE])
    if version != VERSION or algorithm != AES_256_GCM:
        raise FormatError(f"unsupported version {version} or algorithm {algorithm}")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise FormatError(f"implausible chunk size {chunk_size}")
    return Header(key_id, salt, chunk_size)


def read_header(source: BinaryIO) -> Header:
    return parse_header(source.read(HEADER_SIZE))


def payload_cipher(profile_key: bytes, header: Header) -> AESGCM:
    """The file's own key: HKDF over the profile key, bound to every header byte."""
    if len(profile_key) != KEY_SIZE:
        raise ValueError("a profile key is 32 bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=header.salt, info=_INFO + header.to_bytes())
    return AESGCM(hkdf.derive(profile_key))


def chunk_nonce(counter: int, last: bool) -> bytes:
    if counter > _LAST_COUNTER:
        raise FormatError("too many chunks")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


@dataclass(frozen=True)
class Layout:
    """Where things are in an encrypted file of a given total size."""

    header: Header
    plaintext_size: int
    chunk_count: int

    def chunk_offset(self, index: int) -> int:
        return HEADER_SIZE + index * self.header.sealed_chunk_size

    def chunk_length(self, index: int) -> int:
        """Sealed length of chunk `index` (the last one may be short)."""
        if index < self.chunk_count - 1:
            return self.header.sealed_chunk_size
        return self.plaintext_size - index * self.header.chunk_size + TAG_SIZE


def layout_for(header: Header, file_size: int) -> Layout:
    """The plaintext size and chunk count a file of `file_size` bytes must have."""
    payload = file_size - HEADER_SIZE
    full, rest = divmod(payload, header.sealed_chunk_size)
    if payload < TAG_SIZE or 0 < rest < TAG_SIZE or (rest == TAG_SIZE and full > 0):
        raise FormatError("the file is truncated or padded")
    if rest == 0:
        return Layout(header, full * header.chunk_size, full)
    return Layout(header, full * header.chunk_size + rest - TAG_SIZE, full + 1)


def layout_of(source: BinaryIO, size: int) -> Layout | None:
    """The layout of a seekable file of `size` bytes in this format, or None for a plain file."""
    source.seek(0)
    try:
        header = parse_header(source.read(HEADER_SIZE))
    except NotEncrypted:
        return None
    return layout_for(header, size)


def _open_chunk(cipher: AESGCM, index: int, sealed: bytes, last: bool) -> bytes:
    try:
        return cipher.decrypt(chunk_nonce(index, last), sealed, None)
    except InvalidTag as exc:
        raise IntegrityError(f"chunk {index} failed authentication") from exc


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    data = source.read(size)
    while len(data) < size:
        more = source.read(size - len(data))
        if not more:
            break
        data += more
    return data


def encrypt_stream(source: BinaryIO, target: BinaryIO, profile_key: bytes, header: Header) -> int:
    """Encrypt all of `source` into `target` under a fresh `new_header()`; returns plaintext bytes.

    One chunk is in memory at a time. The header is a parameter so that test vectors can fix the salt.
    """
    cipher = payload_cipher(profile_key, header)
    target.write(header.to_bytes())
    total, index = 0, 0
    chunk = _read_exactly(source, header.chunk_size)
    while True:
        following = _read_exactly(source, header.chunk_size) if len(chunk) == header.chunk_size else b""
        last = not following
        target.write(cipher.encrypt(chunk_nonce(index, last), chunk, None))
        total += len(chunk)
        if last:
            return total
        chunk, index = following, index + 1


def decrypt_stream(source: BinaryIO, profile_key: bytes, header: Header | None = None) -> Iterator[bytes]:
    """Decrypt a whole file read front to back (stdin works); the header is read unless given."""
    header = header or read_header(source)
    cipher = payload_cipher(profile_key, header)
    index = 0
    sealed = _read_exactly(source, header.sealed_chunk_size)
    while True:
        following = (
            _read_exactly(source, header.sealed_chunk_size)
            if len(sealed) == header.sealed_chunk_size
            else b""
        )
        last = not following
        if last and index > 0 and len(sealed) == TAG_SIZE:
            raise IntegrityError("an empty final chunk after data")
        yield _open_chunk(cipher, index, sealed, last)
        if last:
            return
        sealed, index = following, index + 1


def decrypt_range(
    source: BinaryIO, profile_key: bytes, layout: Layout, start: int = 0, stop: int | None = None
) -> Iterator[bytes]:
    """Plaintext bytes [start, stop) of a seekable file, decrypting only the chunks that hold them.

    The final chunk is authenticated before the first byte is produced, so a file cut short at a
    chunk boundary is caught before anything is sent (age requires this for seeks).
    """
    stop = layout.plaintext_size if stop is None else stop
    cipher = payload_cipher(profile_key, layout.header)
    last_index = layout.chunk_count - 1
    source.seek(layout.chunk_offset(last_index))
    _open_chunk(cipher, last_index, _read_exactly(source, layout.chunk_length(last_index)), last=True)
    if start >= stop:
        return
    size = layout.header.chunk_size
    index = start // size
    source.seek(layout.chunk_offset(index))
    while index * size < stop:
        sealed = _read_exactly(source, layout.chunk_length(index))
        plain = _open_chunk(cipher, index, sealed, last=index == last_index)
        begin = max(start - index * size, 0)
        yield plain[begin : stop - index * size]
        index += 1
