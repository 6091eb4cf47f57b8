#!/usr/bin/env python3
"""Decrypt an Oncelink backup without the server: needs only Python 3 and `cryptography`.

    python3 decrypt.py --kit recovery-kit.txt backup.sql.gz.enc backup.sql.gz
    python3 decrypt.py --key BASE64KEY - - < backup.enc > backup     # stdin to stdout

This is a second, independent reading of docs/encryption-format.md, kept in one file on purpose
so it can be copied to any machine. It streams: one 64 KiB chunk in memory at a time, and it
removes its output if the file turns out damaged.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import struct
import sys
import tempfile

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HEADER = struct.Struct(">4sBBI16s32s")  # magic "OLNK", version 1, algorithm 1, chunk size, key id, salt
TAG = 16


class Damaged(Exception):
    pass


def read_kit(path: str) -> tuple[bytes, bytes]:
    with open(path, encoding="utf-8") as kit:
        text = kit.read()
    fields = dict(re.findall(r"^(key id|key): *(\S+)$", text, re.MULTILINE))
    return bytes.fromhex(fields["key id"]), base64.b64decode(fields["key"], validate=True)


def read_full(source, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = source.read(size - len(data))
        if not more:
            break
        data += more
    return data


def decrypt(source, target, key: bytes, key_id: bytes | None) -> None:
    header = read_full(source, HEADER.size)
    if len(header) < HEADER.size or header[:4] != b"OLNK":
        raise Damaged("not an Oncelink encrypted file")
    _, version, algorithm, chunk_size, file_key_id, salt = HEADER.unpack(header)
    if (version, algorithm) != (1, 1) or not 1024 <= chunk_size <= 16 * 1024 * 1024:
        raise Damaged(f"unsupported version {version}, algorithm {algorithm} or chunk size {chunk_size}")
    if key_id is not None and key_id != file_key_id:
        raise Damaged(f"this file needs key {file_key_id.hex()}, the kit holds {key_id.hex()}")
    info = b"oncelink/v1 payload key" + header
    cipher = AESGCM(HKDF(hashes.SHA256(), 32, salt=salt, info=info).derive(key))
    counter = 0
    sealed = read_full(source, chunk_size + TAG)
    while True:
        following = read_full(source, chunk_size + TAG) if len(sealed) == chunk_size + TAG else b""
        last = not following
        if last and counter > 0 and len(sealed) == TAG:
            raise Damaged("an empty final chunk after data")
        nonce = counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        try:
            target.write(cipher.decrypt(nonce, sealed, None))
        except InvalidTag:
            raise Damaged(
                f"chunk {counter} failed authentication (wrong key, damaged or cut short)"
            ) from None
        if last:
            return
        sealed, counter = following, counter + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Decrypt an Oncelink backup offline.")
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--kit", help="the recovery kit from `flask --app app keys export NAME`")
    keys.add_argument("--key", help="the profile key in base64 (the kit's 'key:' line)")
    parser.add_argument("source", help="the encrypted file, or - for stdin")
    parser.add_argument("target", help="where to write the plaintext, or - for stdout")
    args = parser.parse_args(argv)
    key_id, key = read_kit(args.kit) if args.kit else (None, base64.b64decode(args.key, validate=True))
    source = sys.stdin.buffer if args.source == "-" else open(args.source, "rb")  # noqa: SIM115
    try:
        if args.target == "-":
            decrypt(source, sys.stdout.buffer, key, key_id)
            return 0
        fd, temp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.target)), prefix=".decrypt-")
        try:
            with os.fdopen(fd, "wb") as target:
                decrypt(source, target, key, key_id)
            os.replace(temp, args.target)
        except BaseException:
            os.unlink(temp)
            raise
        return 0
    except Damaged as exc:
        print(f"decrypt.py: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
