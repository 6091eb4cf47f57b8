"""DBackup backups made for the tests: the shared vectors, and new ones written as DBackup writes them.

DBackup encrypts with Node's `crypto.createCipheriv('aes-256-gcm', key, iv)` and a 16-byte IV; the
tests do the same with Node where it is installed (`make test` installs it), so the bytes come from
the same code path as DBackup's, and with `cryptography` otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from db import connect
from encryption import dbackup
from encryption.keys import dbackup_profile_names

VECTORS = Path(__file__).resolve().parent / "vectors" / "dbackup"
EXPECTED = json.loads((VECTORS / "expected.json").read_text())
KEY = bytes.fromhex(EXPECTED["keyHex"])
PROFILE_ID = EXPECTED["profileId"]
VECTOR_FILES = {item["file"]: item for item in EXPECTED["files"]}

_NODE_ENCRYPT = """
const crypto = require('crypto'), fs = require('fs');
const [key, iv, input, output] = process.argv.slice(1);
const cipher = crypto.createCipheriv('aes-256-gcm', Buffer.from(key, 'hex'), Buffer.from(iv, 'hex'));
const sink = fs.createWriteStream(output);
fs.createReadStream(input).pipe(cipher).pipe(sink);
sink.on('finish', () => process.stdout.write(cipher.getAuthTag().toString('hex')));
"""


def copy_vectors(folder: Path) -> None:
    """Every shared backup and its sidecar, into `folder`."""
    for name in VECTOR_FILES:
        for path in (VECTORS / name, VECTORS / dbackup.sidecar_name(name)):
            shutil.copyfile(path, folder / path.name)


def encrypt_file(plain: Path, target: Path, key: bytes, iv: bytes) -> bytes:
    """Encrypt `plain` into `target` as DBackup does; returns the tag."""
    node = shutil.which("node")
    if node:
        done = subprocess.run(
            [node, "-e", _NODE_ENCRYPT, key.hex(), iv.hex(), str(plain), str(target)],
            capture_output=True,
            text=True,
            check=True,
        )
        return bytes.fromhex(done.stdout)
    ciphertext, tag = dbackup.encrypt(plain.read_bytes(), key, iv)
    target.write_bytes(ciphertext)
    return tag


def sidecar_json(profile_id: str, iv: bytes, tag: bytes, flat: bool = False, **fields) -> str:
    """A sidecar as DBackup writes it: the `encryption` object, or the older flat fields."""
    meta = {"version": 1, "jobName": "nightly", "sourceType": "postgresql", "engineVersion": "16.4"}
    meta |= {"timestamp": "2026-11-30T02:00:00.000Z", **fields}
    if flat:
        meta |= {"iv": iv.hex(), "authTag": tag.hex(), "encryptionProfileId": profile_id}
    else:
        encryption = {"enabled": True, "profileId": profile_id, "algorithm": "aes-256-gcm"}
        meta["encryption"] = encryption | {"iv": iv.hex(), "authTag": tag.hex()}
    return json.dumps(meta, indent=2)


def write_backup(
    folder: Path, name: str, plain: Path, key: bytes = KEY, profile_id: str = PROFILE_ID, flat: bool = False
) -> Path:
    """`folder/name` (a `.enc` name) and its sidecar, encrypting the file `plain`."""
    iv = os.urandom(dbackup.IV_SIZE)
    target = folder / name
    tag = encrypt_file(plain, target, key, iv)
    (folder / dbackup.sidecar_name(name)).write_text(sidecar_json(profile_id, iv, tag, flat=flat))
    return target


def random_file(path: Path, size: int) -> Path:
    """`size` random bytes in `path`, written a MiB at a time."""
    with path.open("wb") as out:
        for start in range(0, size, 1 << 20):
            out.write(os.urandom(min(1 << 20, size - start)))
    return path


def import_vector_key(app, name: str = "dbackup-vectors") -> None:
    """The shared vectors' DBackup key, imported into `app` as profile `name` (once)."""
    keyring = app.extensions["oncelink_keyring"]
    db = connect(app.config["DATABASE"])
    try:
        if PROFILE_ID not in dbackup_profile_names(db):
            keyring.import_dbackup(db, name, PROFILE_ID, KEY.hex(), time.time())
    finally:
        db.close()
