"""The master key and what it protects: encryption profiles and storage credentials.

A profile is a named 256-bit key with a random 16-byte id; files name the id in their header.
A profile imported from DBackup also keeps DBackup's own profile id, which its backups' sidecars
name instead. Profile keys are stored wrapped with AES-256-GCM under the master key (the profile
id as associated data, so a wrapped key cannot be moved to another profile). The master key comes
from ONCELINK_MASTER_KEY (base64) or from master.key in the data dir, generated once, mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import secrets
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlite_utils import Database

from db import profiles as queries
from db.writes import write_transaction
from encryption.format import KEY_ID_SIZE, KEY_SIZE

_WRAP_AAD = b"oncelink profile key "
_SECRET_AAD = b"oncelink storage secret "
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# DBackup names its profiles by UUID or cuid; the shared test vectors by a plain word. Any such
# id, and nothing that could pass for a path or markup.
_DBACKUP_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_HEX_KEY = re.compile(r"^[0-9A-Fa-f]*$")


class ProfileError(ValueError):
    """A profile request that cannot be carried out, with a message for the person asking."""


class ProfileMissing(LookupError):
    """No profile with that key id on this server."""


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    created_at: float
    dbackup_id: str | None = None  # the DBackup profile id its backups' sidecars name; None for ours


@dataclass(frozen=True)
class KitKey:
    """One profile of a DBackup recovery kit: its id, a name for it here, and its key file's text."""

    dbackup_id: str
    name: str
    key_text: str


@dataclass(frozen=True)
class KitOutcome:
    profile: Profile
    imported: bool  # False: the profile was here already, with the same key


def _profile(record: queries.ProfileRecord) -> Profile:
    return Profile(record.id, record.name, record.created_at, record.dbackup_id)


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
        _check_new_name(db, name)
        key_id = key_id or secrets.token_hex(KEY_ID_SIZE)
        if queries.get_profile(db, key_id) is not None:
            raise ProfileError(f"The key {key_id} is already here as another profile.")
        return self._insert(db, key_id, name, key or secrets.token_bytes(KEY_SIZE), now)

    def import_dbackup(self, db: Database, name: str, dbackup_id: str, key_text: str, now: float) -> Profile:
        """A DBackup profile's master key (the text of a recovery kit's master.key) under a fresh key
        id of ours, wrapped like every profile; DBackup's sidecars find it by `dbackup_id`."""
        _check_dbackup_id(db, dbackup_id)
        key = parse_dbackup_key(key_text)
        _check_new_name(db, name)
        return self._insert(db, secrets.token_hex(KEY_ID_SIZE), name, key, now, dbackup_id)

    def import_dbackup_kit(self, db: Database, kit: Sequence[KitKey], now: float) -> list[KitOutcome]:
        """Every profile of a DBackup recovery kit, or none. One here already with the same key
        stays as it is, so a kit downloaded again after a profile was added brings in the new one."""
        with write_transaction(db):
            return [self._import_kit_key(db, kit_key, now) for kit_key in kit]

    def _import_kit_key(self, db: Database, kit_key: KitKey, now: float) -> KitOutcome:
        record = queries.get_profile_by_dbackup_id(db, kit_key.dbackup_id)
        if record is None:
            return KitOutcome(
                self.import_dbackup(db, kit_key.name, kit_key.dbackup_id, kit_key.key_text, now), True
            )
        if not hmac.compare_digest(self._unwrap_profile(record), parse_dbackup_key(kit_key.key_text)):
            raise ProfileError(
                f"DBackup profile {kit_key.dbackup_id} is here already as {record.name!r}, with another key."
            )
        return KitOutcome(_profile(record), False)

    def _insert(
        self, db: Database, key_id: str, name: str, key: bytes, now: float, dbackup_id: str | None = None
    ) -> Profile:
        wrapped = self._wrap(_WRAP_AAD + key_id.encode(), key)
        record = queries.ProfileRecord(key_id, name, wrapped, now, dbackup_id)
        try:
            queries.insert_profile(db, record)
        except sqlite3.IntegrityError as exc:  # another request took the name or the id meanwhile
            raise ProfileError(f"A profile named {name!r}, or with that id, exists already.") from exc
        return _profile(record)

    def key_for(self, db: Database, key_id: bytes) -> bytes:
        """The key that a file header names."""
        record = queries.get_profile(db, key_id.hex())
        if record is None:
            raise ProfileMissing(
                f"The file is encrypted with key {key_id.hex()}, which no profile here holds."
            )
        return self._unwrap_profile(record)

    def key_for_dbackup(self, db: Database, dbackup_id: str) -> bytes:
        """The key that a DBackup sidecar names (`encryption.profileId` or `encryptionProfileId`)."""
        record = queries.get_profile_by_dbackup_id(db, dbackup_id)
        if record is None:
            raise ProfileMissing(
                f"The backup is encrypted with DBackup profile {dbackup_id}, which no profile here holds."
            )
        return self._unwrap_profile(record)

    def by_name(self, db: Database, name: str) -> tuple[Profile, bytes]:
        record = queries.get_profile_by_name(db, name)
        if record is None:
            raise ProfileError(f"No profile named {name!r}.")
        return _profile(record), self._unwrap_profile(record)


def _check_new_name(db: Database, name: str) -> None:
    if not _NAME.match(name):
        raise ProfileError("A profile name is 1 to 64 letters, digits, '.', '_' or '-'.")
    if queries.get_profile_by_name(db, name) is not None:
        raise ProfileError(f"A profile named {name!r} exists already.")


def _check_dbackup_id(db: Database, dbackup_id: str) -> None:
    if not _DBACKUP_ID.match(dbackup_id):
        raise ProfileError(
            "A DBackup profile id is 1 to 128 letters, digits, '.', '_' or '-' (DBackup shows it as a UUID)."
        )
    record = queries.get_profile_by_dbackup_id(db, dbackup_id)
    if record is not None:
        raise ProfileError(f"DBackup profile {dbackup_id} is here already, as {record.name!r}.")


def parse_dbackup_key(text: str) -> bytes:
    """The 32-byte key from a DBackup recovery kit's master.key: 64 hex digits, blank space around
    them allowed. The messages say what is wrong with the text, never what it holds."""
    digits, expected = text.strip(), "A DBackup key is 64 hex digits (what a recovery kit's master.key holds)"
    if not _HEX_KEY.match(digits):
        raise ProfileError(f"{expected}; this text has other characters in it.")
    if len(digits) != 2 * KEY_SIZE:
        raise ProfileError(f"{expected}; this one has {len(digits)}.")
    return bytes.fromhex(digits)


def dbackup_master_key(key: bytes) -> str:
    """A key as DBackup's recovery kit holds it in master.key, which its recovery tool reads."""
    return key.hex() + "\n"


def list_profiles(db: Database) -> list[Profile]:
    return [_profile(r) for r in queries.list_profiles(db)]


def profile_names(db: Database) -> dict[str, str]:
    """Key id (hex) to profile name, for labelling listings."""
    return {r.id: r.name for r in queries.list_profiles(db)}


def dbackup_profile_names(db: Database) -> dict[str, str]:
    """DBackup profile id to profile name, for labelling DBackup backups in listings."""
    return {r.dbackup_id: r.name for r in queries.list_profiles(db) if r.dbackup_id is not None}


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
