"""The master key and what it protects: encryption profiles and storage credentials.

A profile is a named 256-bit key with a random 16-byte id; files name the id in their header.
Profile keys are stored wrapped with AES-256-GCM under the master key (the profile id as
associated data, so a wrapped key cannot be moved to another profile). The master key comes
from ONCELINK_MASTER_KEY (base64) or from master.key in the data dir, generated once, mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlite_utils import Database

from db import profiles as queries
from encryption.format import KEY_ID_SIZE, KEY_SIZE

_WRAP_AAD = b"oncelink profile key "
_SECRET_AAD = b"oncelink storage secret "
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProfileError(ValueError):
    """A profile request that cannot be carried out, with a message for the person asking."""


class ProfileMissing(LookupError):
    """No profile with that key id on this server."""


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    created_at: float


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """A secret file in the data dir, created once with mode 0600.

    Several workers may start on an empty data dir at once: the file appears whole or not at
    all (written aside, then linked into place), and whoever comes second reads the winner's.
    """
    if not path.exists():
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(make() + "\n")
            os.link(temp, path)
        except FileExistsError:
            pass  # another worker made it first
        finally:
            os.unlink(temp)
    return path.read_text().strip()


def load_master_key(data_dir: str, configured: str | None) -> bytes:
    """ONCELINK_MASTER_KEY when set, else the data dir's master.key (created on first use)."""
    if configured:
        return _decode_key(str(configured), "ONCELINK_MASTER_KEY")
    path = Path(data_dir) / "master.key"
    text = read_or_create_secret(path, lambda: base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode())
    return _decode_key(text, str(path))


def _decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != KEY_SIZE:
        raise ProfileError(f"{source} must hold 32 bytes in base64.")
    return key


class Keyring:
    """Profile keys, unwrapped on demand with the master key."""

    def __init__(self, master_key: bytes):
        self._master = AESGCM(master_key)

    def _wrap(self, label: bytes, secret: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._master.encrypt(nonce, secret, label)

    def _unwrap(self, label: bytes, wrapped: bytes) -> bytes:
        return self._master.decrypt(wrapped[:12], wrapped[12:], label)

    def _unwrap_profile(self, record: queries.ProfileRecord) -> bytes:
        try:
            return self._unwrap(_WRAP_AAD + record.id.encode(), record.wrapped_key)
        except InvalidTag as exc:
            raise ProfileError(f"Profile {record.name!r} cannot be opened with this master key.") from exc

    def seal_secret(self, label: str, secret: str) -> str:
        """A credential wrapped for the database, bound to `label` (a storage id) so it cannot move."""
        return base64.b64encode(self._wrap(_SECRET_AAD + label.encode(), secret.encode())).decode()

    def unseal_secret(self, label: str, sealed: str) -> str:
        try:
            return self._unwrap(_SECRET_AAD + label.encode(), base64.b64decode(sealed)).decode()
        except (InvalidTag, ValueError) as exc:
            raise ProfileError(f"The secret of {label!r} cannot be opened with this master key.") from exc

    def create(
        self, db: Database, name: str, now: float, key: bytes | None = None, key_id: str | None = None
    ) -> Profile:
        """A new profile with a fresh key, or (import) with a given key and id."""
        if not _NAME.match(name):
            raise ProfileError("A profile name is 1 to 64 letters, digits, '.', '_' or '-'.")
        if queries.get_profile_by_name(db, name) is not None:
            raise ProfileError(f"A profile named {name!r} exists already.")
        key_id = key_id or secrets.token_hex(KEY_ID_SIZE)
        if queries.get_profile(db, key_id) is not None:
            raise ProfileError(f"The key {key_id} is already here as another profile.")
        key = key or secrets.token_bytes(KEY_SIZE)
        record = queries.ProfileRecord(key_id, name, self._wrap(_WRAP_AAD + key_id.encode(), key), now)
        queries.insert_profile(db, record)
        return Profile(record.id, record.name, record.created_at)

    def key_for(self, db: Database, key_id: bytes) -> bytes:
        """The key that a file header names."""
        record = queries.get_profile(db, key_id.hex())
        if record is None:
            raise ProfileMissing(
                f"The file is encrypted with key {key_id.hex()}, which no profile here holds."
            )
        return self._unwrap_profile(record)

    def by_name(self, db: Database, name: str) -> tuple[Profile, bytes]:
        record = queries.get_profile_by_name(db, name)
        if record is None:
            raise ProfileError(f"No profile named {name!r}.")
        return Profile(record.id, record.name, record.created_at), self._unwrap_profile(record)


def list_profiles(db: Database) -> list[Profile]:
    return [Profile(r.id, r.name, r.created_at) for r in queries.list_profiles(db)]


def profile_names(db: Database) -> dict[str, str]:
    """Key id (hex) to profile name, for labelling listings."""
    return {r.id: r.name for r in queries.list_profiles(db)}


KIT_TEMPLATE = """\
Oncelink recovery kit
=====================
profile: {name}
key id: {key_id}
key: {key}

Keep this file offline and private: anyone holding it can read every backup encrypted with this
profile. To decrypt a backup without the server (needs Python 3 and `pip install cryptography`):

    python3 tools/decrypt.py --kit this-kit.txt backup.sql.gz.enc backup.sql.gz

The file format is described in docs/encryption-format.md. To restore the profile on a new server:

    flask --app app keys import {name} < this-kit.txt
"""


def recovery_kit(profile: Profile, key: bytes) -> str:
    return KIT_TEMPLATE.format(name=profile.name, key_id=profile.id, key=base64.b64encode(key).decode())


def parse_kit(text: str) -> tuple[str, bytes]:
    """The key id (hex) and key from a recovery kit."""
    fields = dict(re.findall(r"^(key id|key): *(\S+)$", text, re.MULTILINE))
    key_id = fields.get("key id", "")
    if not re.fullmatch(r"[0-9a-f]{32}", key_id) or "key" not in fields:
        raise ProfileError("That is not an Oncelink recovery kit (it needs 'key id:' and 'key:' lines).")
    return key_id, _decode_key(fields["key"], "The kit's key")
