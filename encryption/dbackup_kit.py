"""DBackup recovery kits, read as DBackup builds them: a zip, or the folder it unzips to.

DBackup documents two shapes (its docs' "Recovery Kit" page; its src/services/backup/recovery-kit.ts
builds them and scripts/dbackup-recover.js reads them):

- several profiles: `keys/keys.json`, `{"version": 1, "keys": [{"profileId", "name", "file"}]}`,
  and one `keys/FILE` per profile holding its 64 hex digits;
- one profile: `master.key` with the 64 hex digits, and a README.txt whose "Profile ID:" line
  names the profile (its heading, "# Recovery Kit for Profile: NAME", names it too).

Only the kit's key files and index are read, never unpacked to disk.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from encryption.keys import KitKey, ProfileError, parse_dbackup_key

INDEX = "keys/keys.json"
SINGLE_KEY = "master.key"
README = "README.txt"
MAX_MEMBER_BYTES = 1 << 20  # a kit's index and keys are a few hundred bytes
_KEY_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # a plain name inside keys/, as DBackup writes it
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_.-]+")

Reader = Callable[[str], bytes | None]


def read_dbackup_kit(path: Path, prefix: str = "") -> list[KitKey]:
    """The profiles of the kit at `path` (a zip or a folder), named here `prefix` + their DBackup name
    made fit for a profile name."""
    if path.is_dir():
        return _kit_keys(_folder_reader(path), prefix)
    try:
        with zipfile.ZipFile(path) as kit:
            return _kit_keys(_zip_reader(kit), prefix)
    except zipfile.BadZipFile as exc:
        raise ProfileError(f"{path} is neither a folder nor a zip file.") from exc


def _kit_keys(read: Reader, prefix: str) -> list[KitKey]:
    index = read(INDEX)
    if index is not None:
        return _indexed_keys(read, index, prefix)
    single = read(SINGLE_KEY)
    if single is not None:
        return [_single_key(single, read(README) or b"", prefix)]
    raise ProfileError(f"That is not a DBackup recovery kit: it holds neither {INDEX} nor {SINGLE_KEY}.")


def _indexed_keys(read: Reader, index: bytes, prefix: str) -> list[KitKey]:
    return [_indexed_key(read, entry, prefix) for entry in _index_entries(index)]


def _index_entries(index: bytes) -> list[dict]:
    try:
        entries = json.loads(index).get("keys")
    except (ValueError, AttributeError) as exc:
        raise ProfileError(f"The kit's {INDEX} is not the index DBackup writes.") from exc
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ProfileError(f"The kit's {INDEX} lists no keys.")
    return entries


def _indexed_key(read: Reader, entry: dict, prefix: str) -> KitKey:
    profile_id, file = entry.get("profileId"), entry.get("file")
    if not isinstance(profile_id, str) or not isinstance(file, str) or not _KEY_FILE.match(file):
        raise ProfileError(f"An entry of the kit's {INDEX} lacks its profileId or names no plain key file.")
    text = read(f"keys/{file}")
    if text is None:
        raise ProfileError(f"The kit's {INDEX} names keys/{file}, which the kit does not hold.")
    name = entry.get("name") if isinstance(entry.get("name"), str) else file.removesuffix(".key")
    return KitKey(profile_id, profile_name(prefix, name), _key_text(f"keys/{file}", text))


def _single_key(key: bytes, readme: bytes, prefix: str) -> KitKey:
    text = readme.decode("utf-8", errors="replace")
    profile_id = re.search(r"^Profile ID: *(\S+)", text, re.MULTILINE)
    if profile_id is None:
        raise ProfileError(
            f"This kit holds one key ({SINGLE_KEY}) and its {README} names no profile id: import it with"
            f" `keys import-dbackup NAME --profile-id ID < {SINGLE_KEY}`, the id as DBackup's Vault shows it."
        )
    heading = re.search(r"^# Recovery Kit for Profile: *(.+?)\s*$", text, re.MULTILINE)
    name = heading.group(1) if heading else profile_id.group(1)
    return KitKey(profile_id.group(1), profile_name(prefix, name), _key_text(SINGLE_KEY, key))


def _key_text(member: str, data: bytes) -> str:
    """The key file's text, checked here so that a bad one is named (its content never is)."""
    text = data.decode("utf-8", errors="replace")
    try:
        parse_dbackup_key(text)
    except ProfileError as exc:
        raise ProfileError(f"The kit's {member}: {exc}") from exc
    return text


def profile_name(prefix: str, dbackup_name: str) -> str:
    """A DBackup profile's name ("Legacy 2024") as one of ours: runs of other characters become '-'."""
    cleaned = _NOT_IN_NAMES.sub("-", dbackup_name).strip("-._") or "dbackup"
    return (prefix + cleaned)[:64]


def _folder_reader(root: Path) -> Reader:
    def read(member: str) -> bytes | None:
        path = root / member
        if not path.is_file():
            return None
        with path.open("rb") as file:
            return _bounded(member, file.read(MAX_MEMBER_BYTES + 1))

    return read


def _zip_reader(kit: zipfile.ZipFile) -> Reader:
    """Members at the zip's root, as DBackup writes them, or under one folder when it was zipped again."""
    names = set(kit.namelist())
    tops = {name.split("/", 1)[0] + "/" for name in names if "/" in name}
    root = "" if INDEX in names or SINGLE_KEY in names or len(tops) != 1 else tops.pop()

    def read(member: str) -> bytes | None:
        if root + member not in names:
            return None
        with kit.open(root + member) as file:
            return _bounded(member, file.read(MAX_MEMBER_BYTES + 1))

    return read


def _bounded(member: str, data: bytes) -> bytes:
    if len(data) > MAX_MEMBER_BYTES:
        raise ProfileError(f"The kit's {member} is far larger than a DBackup kit's.")
    return data
