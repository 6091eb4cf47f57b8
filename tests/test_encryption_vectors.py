"""The test vectors of docs/encryption-format.md, checked against both implementations."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
from base64 import b64encode
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from encryption.format import Header, decrypt_stream, encrypt_stream

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "encryption-format.md").read_text()


def vectors() -> list[dict[str, str]]:
    blocks = re.findall(r"```text\n(vector: .*?)```", DOC, re.DOTALL)
    return [dict(re.findall(r"^([a-z0-9 ]+):[ ]?(.*)$", block, re.MULTILINE)) for block in blocks]


def plaintext_of(vector: dict[str, str]) -> bytes:
    if "plaintext hex" in vector:
        return bytes.fromhex(vector["plaintext hex"])
    return bytes(i % 256 for i in range(int(vector["plaintext pattern length"])))


def header_of(vector: dict[str, str]) -> Header:
    return Header(bytes.fromhex(vector["key id"]), bytes.fromhex(vector["salt"]), int(vector["chunk size"]))


def test_the_document_has_its_three_vectors():
    assert [v["vector"] for v in vectors()] == ["empty", "short", "chunks"]


@pytest.mark.parametrize("vector", vectors(), ids=lambda v: v["vector"])
def test_vector(vector, tmp_path):
    key, plain, header = bytes.fromhex(vector["profile key"]), plaintext_of(vector), header_of(vector)
    info = b"oncelink/v1 payload key" + header.to_bytes()
    file_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=header.salt, info=info).derive(key)
    assert file_key.hex() == vector["file key"]
    sealed = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), sealed, key, header)
    sealed = sealed.getvalue()
    if "file hex" in vector:
        assert sealed.hex() == vector["file hex"]
    else:
        assert len(sealed) == int(vector["file length"])
        assert hashlib.sha256(sealed).hexdigest() == vector["file sha256"]
    assert b"".join(decrypt_stream(io.BytesIO(sealed), key)) == plain
    offline = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "decrypt.py"), "--key", b64encode(key).decode(), "-", "-"],
        input=sealed,
        capture_output=True,
        check=True,
    )
    assert offline.stdout == plain
