"""DBackup's encrypted backups, read as DBackup writes them (docs/encryption-format.md, "DBackup").

`NAME.enc` is the raw AES-256-GCM ciphertext of the whole (compressed) dump, with no header; the
16-byte IV and the 16-byte tag live only in the sidecar `NAME.enc.meta.json`, beside the key's
DBackup profile id. One tag covers the whole file, so no part of it can be trusted before all of it
has been read: `verify` reads the file once, decrypting and discarding, and only then may any
plaintext leave (`decrypt_range`).

Decrypting from an offset uses GCM's own structure, through cryptography's public API alone: GCM
encrypts with AES in counter mode, block i under counter inc32^(i+1)(J0). The first counter block is
recovered by encrypting one zero block with GCM and decrypting that keystream block with AES-ECB;
block i's counter then has the same upper 96 bits and its lower 32 bits advanced by i, modulo 2^32.
cryptography's CTR mode carries into the upper bits where GCM's inc32 wraps, so a range that crosses
that point is decrypted in two runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from encryption.format import KEY_SIZE, FormatError, IntegrityError

SIDECAR_SUFFIX = ".meta.json"
MAX_SIDECAR_SIZE = 64 * 1024  # DBackup's are under 1 KiB; a larger one is not read
IV_SIZE = 16
TAG_SIZE = 16
BLOCK = 16
PIECE_SIZE = 256 * 1024  # ciphertext read and decrypted at a time; a multiple of BLOCK
_WRAP = 2**32
_HEX = re.compile(r"[0-9a-fA-F]+")


class SidecarError(FormatError):
    """A sidecar that cannot describe a DBackup backup (not JSON, fields missing or malformed)."""


@dataclass(frozen=True)
class Sidecar:
    """What a `.meta.json` says about its backup: how to decrypt it, and what it is."""

    profile_id: str
    iv: bytes
    tag: bytes
    compression: str | None = None  # "GZIP", "BROTLI", or None
    checksum: str | None = None  # SHA-256 of the .enc file, hex
    job_name: str | None = None
    source_type: str | None = None  # the database engine: mysql, postgresql...
    engine_version: str | None = None
    databases: tuple[str, ...] = field(default=())
    timestamp: str | None = None  # when the backup ran, ISO 8601 as DBackup writes it

    @property
    def ran_at(self) -> float | None:
        """The backup's time as a Unix time, when the sidecar gives one that reads."""
        try:
            moment = datetime.fromisoformat(self.timestamp or "")
        except ValueError:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    @property
    def engine(self) -> str | None:
        """The database engine and its version, as the sidecar names them (`mysql 8.0.36`)."""
        return " ".join(part for part in (self.source_type, self.engine_version) if part) or None

    @property
    def identity(self) -> str:
        """Changes with anything that changes the plaintext or its verdict: the IV and the tag."""
        return f"{self.iv.hex()}:{self.tag.hex()}"


def sidecar_name(name: str) -> str:
    return name + SIDECAR_SUFFIX


def is_sidecar(name: str) -> bool:
    """A name that could be a backup's sidecar: `X.enc.meta.json`."""
    return name.endswith(".enc" + SIDECAR_SUFFIX) and len(name) > len(".enc" + SIDECAR_SUFFIX)


def backup_name(sidecar: str) -> str:
    return sidecar[: -len(SIDECAR_SUFFIX)]


def parse_sidecar(data: bytes) -> Sidecar | None:
    """The sidecar's fields; None when it says the backup is not encrypted.

    Both layouts DBackup has written are read: the `encryption` object, and the older flat
    `iv`, `authTag` and `encryptionProfileId` at the top level.
    """
    try:
        meta = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SidecarError("the sidecar is not JSON") from exc
    if not isinstance(meta, dict):
        raise SidecarError("the sidecar is not a JSON object")
    encryption = meta.get("encryption")
    if isinstance(encryption, dict):
        if not encryption.get("enabled", True):
            return None
        algorithm = encryption.get("algorithm", "aes-256-gcm")
        if str(algorithm).lower() != "aes-256-gcm":
            raise SidecarError(f"unsupported algorithm {str(algorithm)[:40]!r}")
        fields = encryption.get("profileId"), encryption.get("iv"), encryption.get("authTag")
    else:
        fields = meta.get("encryptionProfileId"), meta.get("iv"), meta.get("authTag")
    if fields == (None, None, None):
        return None
    profile_id, iv, tag = fields
    return Sidecar(
        _text(profile_id, "profileId"),
        _hex_bytes(iv, "iv", IV_SIZE),
        _hex_bytes(tag, "authTag", TAG_SIZE),
        _optional(meta.get("compression")),
        _optional(meta.get("checksum")),
        _optional(meta.get("jobName")),
        _optional(meta.get("sourceType")),
        _optional(meta.get("engineVersion")),
        _database_names(meta.get("databases")),
        _optional(meta.get("timestamp")),
    )


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise SidecarError(f"the sidecar's {name} is missing or malformed")
    return value.strip()


def _hex_bytes(value: object, name: str, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX.fullmatch(value):
        raise SidecarError(f"the sidecar's {name} is not {size} bytes in hex")
    return bytes.fromhex(value)


def _optional(value: object) -> str | None:
    return str(value)[:200] if isinstance(value, (str, int, float)) and str(value) else None


def _database_names(value: object) -> tuple[str, ...]:
    names = value.get("names") if isinstance(value, dict) else None
    if not isinstance(names, list):
        return ()
    return tuple(str(name)[:200] for name in names[:50] if isinstance(name, (str, int)))


def read_sidecar(source: BinaryIO) -> Sidecar | None:
    data = b""
    while piece := source.read(MAX_SIDECAR_SIZE + 1 - len(data)):
        data += piece
        if len(data) > MAX_SIDECAR_SIZE:
            raise SidecarError("the sidecar is too large to be one")
    return parse_sidecar(data)


def _checked(key: bytes) -> bytes:
    if len(key) != KEY_SIZE:
        raise ValueError("a DBackup profile key is 32 bytes")
    return key


def verify(source: BinaryIO, key: bytes, sidecar: Sidecar, size: int) -> None:
    """Read the whole file and check its tag; raises IntegrityError. Constant memory: every
    piece is decrypted into the same buffer and dropped."""
    decryptor = Cipher(algorithms.AES(_checked(key)), modes.GCM(sidecar.iv, sidecar.tag)).decryptor()
    piece, plain = bytearray(PIECE_SIZE), bytearray(PIECE_SIZE + BLOCK - 1)
    source.seek(0)
    remaining = size
    while remaining:
        count = source.readinto(memoryview(piece)[: min(PIECE_SIZE, remaining)])
        if not count:
            raise IntegrityError("the backup is shorter than its listed size")
        decryptor.update_into(memoryview(piece)[:count], plain)
        remaining -= count
    try:
        decryptor.finalize()
    except InvalidTag as exc:
        raise IntegrityError("the backup does not match its tag: wrong key, or altered") from exc


def first_counter(key: bytes, iv: bytes) -> int:
    """The counter block GCM encrypts the first plaintext block under: inc32(J0)."""
    keystream = Cipher(algorithms.AES(_checked(key)), modes.GCM(iv)).encryptor().update(bytes(BLOCK))
    # One block through the raw cipher, to read a counter back: no data is ever encrypted this way.
    block = Cipher(algorithms.AES(key), modes.ECB()).decryptor().update(keystream)  # noqa: S305
    return int.from_bytes(block, "big")


def counter_of(first: int, block: int) -> int:
    """The counter block of plaintext block `block`: inc32 applied `block` times."""
    return (first >> 32 << 32) | ((first + block) % _WRAP)


def _blocks_before_wrap(counter: int) -> int:
    return _WRAP - (counter % _WRAP)


def decrypt_range(
    source: BinaryIO, key: bytes, first: int, start: int, stop: int, piece_size: int = PIECE_SIZE
) -> Iterator[bytes]:
    """Plaintext bytes [start, stop) of a backup whose tag `verify` has accepted, read from the
    block that holds `start`. `first` is first_counter(key, iv)."""
    aes = algorithms.AES(_checked(key))
    position = start - start % BLOCK
    skip = start - position
    source.seek(position)
    while position < stop:
        counter = counter_of(first, position // BLOCK)
        run_end = min(stop, position + _blocks_before_wrap(counter) * BLOCK)
        decryptor = Cipher(aes, modes.CTR(counter.to_bytes(BLOCK, "big"))).decryptor()
        while position < run_end:
            sealed = source.read(min(piece_size, run_end - position))
            if not sealed:
                raise IntegrityError("the backup is shorter than its listed size")
            plain = decryptor.update(sealed)
            position += len(sealed)
            yield plain[skip:] if skip else plain
            skip = 0


def decrypt_stream(source: BinaryIO, key: bytes, sidecar: Sidecar) -> Iterator[bytes]:
    """The whole backup decrypted front to back, its tag checked at the end (IntegrityError then):
    for a reader that can throw away what it got when the end says it was not genuine."""
    decryptor = Cipher(algorithms.AES(_checked(key)), modes.GCM(sidecar.iv, sidecar.tag)).decryptor()
    while sealed := source.read(PIECE_SIZE):
        yield decryptor.update(sealed)
    try:
        decryptor.finalize()
    except InvalidTag as exc:
        raise IntegrityError("the backup does not match its tag: wrong key, or altered") from exc


def encrypt(plaintext: bytes, key: bytes, iv: bytes) -> tuple[bytes, bytes]:
    """(ciphertext, tag) as DBackup writes them; for tests and tools (one buffer, small files)."""
    sealed = Cipher(algorithms.AES(_checked(key)), modes.GCM(iv)).encryptor()
    ciphertext = sealed.update(plaintext) + sealed.finalize()
    return ciphertext, sealed.tag
