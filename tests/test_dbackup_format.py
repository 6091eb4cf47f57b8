"""DBackup's format read here (encryption/dbackup.py): the shared vectors, sidecars of both layouts,
the whole-file tag, and decryption from any offset, across the point where GCM's counter wraps."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import brotli
import pytest

from encryption import dbackup
from encryption.format import IntegrityError
from tests.dbackup_files import KEY, PROFILE_ID, VECTOR_FILES, VECTORS, encrypt_file, sidecar_json

SHARED = Path(__file__).resolve().parents[2] / "shared" / "dbackup-vectors"


def vector(name: str) -> tuple[bytes, dbackup.Sidecar]:
    sidecar = dbackup.parse_sidecar((VECTORS / dbackup.sidecar_name(name)).read_bytes())
    return (VECTORS / name).read_bytes(), sidecar


def decompressed(data: bytes, compression: str) -> bytes:
    return {"GZIP": gzip.decompress, "BROTLI": brotli.decompress}.get(compression, bytes)(data)


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_each_shared_vector_verifies_and_decrypts_to_its_dump(name):
    expected = VECTOR_FILES[name]
    data, sidecar = vector(name)
    assert sidecar.profile_id == PROFILE_ID and hashlib.sha256(data).hexdigest() == sidecar.checksum
    dbackup.verify(io.BytesIO(data), KEY, sidecar, len(data))
    plain = b"".join(dbackup.decrypt_stream(io.BytesIO(data), KEY, sidecar))
    assert (hashlib.sha256(plain).hexdigest(), len(plain)) == (
        expected["decrypted_sha256"],
        expected["decrypted_size"],
    )
    dump = decompressed(plain, expected["compression"])
    assert hashlib.sha256(dump).hexdigest() == expected["dump_sha256"]


def test_the_copied_vectors_are_the_shared_ones_where_the_shared_folder_is_beside_the_clone():
    """CI clones main with ../shared beside it; the copy in tests/vectors must not drift from it."""
    if not SHARED.is_dir():
        pytest.skip("no shared folder beside this clone")
    shared = sorted(path.name for path in SHARED.iterdir() if path.name != "README.md")
    assert shared == sorted(path.name for path in VECTORS.iterdir() if path.name != "README.md")
    for name in shared:
        assert (SHARED / name).read_bytes() == (VECTORS / name).read_bytes(), name


def test_the_flat_sidecar_and_the_nested_one_say_the_same_things():
    _, flat = vector("old-2025-06-01.sql.gz.enc")
    assert (flat.profile_id, flat.compression, flat.job_name) == (PROFILE_ID, "GZIP", "old-2025-06-01")
    _, nested = vector("shop-2026-11-30.sql.gz.enc")
    assert (nested.engine, nested.databases, nested.compression) == ("mysql 8.0.36", ("shop",), "GZIP")
    assert nested.ran_at == pytest.approx(1796188963.87)  # 2026-12-02T05:22:43.870Z


def test_a_sidecar_of_an_unencrypted_backup_is_no_sidecar_to_decrypt_with():
    assert (
        dbackup.parse_sidecar(json.dumps({"jobName": "x", "encryption": {"enabled": False}}).encode()) is None
    )
    assert dbackup.parse_sidecar(json.dumps({"jobName": "x", "compression": "GZIP"}).encode()) is None


GOOD = json.loads(sidecar_json(PROFILE_ID, bytes(16), bytes(16)))


def altered(**encryption) -> bytes:
    return json.dumps(GOOD | {"encryption": GOOD["encryption"] | encryption}).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (altered(iv="00" * 12), "iv is not 16 bytes"),
        (altered(authTag="zz" * 16), "authTag is not 16 bytes"),
        (altered(algorithm="aes-256-cbc"), "unsupported algorithm"),
        (altered(profileId=""), "profileId is missing"),
        (altered(profileId=None), "profileId is missing"),
        (json.dumps({"iv": "00" * 16, "authTag": "00" * 16}).encode(), "profileId is missing"),
    ],
)
def test_a_malformed_sidecar_is_refused_with_what_is_wrong(data, message):
    with pytest.raises(dbackup.SidecarError, match=message):
        dbackup.parse_sidecar(data)


def test_a_sidecar_larger_than_any_real_one_is_not_read_whole():
    with pytest.raises(dbackup.SidecarError, match="too large"):
        dbackup.read_sidecar(io.BytesIO(b" " * (dbackup.MAX_SIDECAR_SIZE + 1)))


@pytest.mark.parametrize(
    "damage",
    ["ciphertext byte", "tag", "iv", "truncated", "wrong key"],
)
def test_the_tag_catches_every_kind_of_damage(damage):
    data, sidecar = vector("shop-2026-11-30.sql.gz.enc")
    key = KEY
    if damage == "ciphertext byte":
        data = data[:5000] + bytes([data[5000] ^ 1]) + data[5001:]
    elif damage == "tag":
        sidecar = dbackup.Sidecar(
            sidecar.profile_id, sidecar.iv, bytes([sidecar.tag[0] ^ 1]) + sidecar.tag[1:]
        )
    elif damage == "iv":
        sidecar = dbackup.Sidecar(
            sidecar.profile_id, bytes([sidecar.iv[0] ^ 1]) + sidecar.iv[1:], sidecar.tag
        )
    elif damage == "truncated":
        data = data[:-1]
    else:
        key = bytes(32)
    with pytest.raises(IntegrityError):
        dbackup.verify(io.BytesIO(data), key, sidecar, len(data))
    with pytest.raises(IntegrityError):
        b"".join(dbackup.decrypt_stream(io.BytesIO(data), key, sidecar))


def test_a_file_shorter_than_its_listed_size_fails_the_check():
    data, sidecar = vector("crm-2026-11-30.sql.enc")
    with pytest.raises(IntegrityError, match="shorter"):
        dbackup.verify(io.BytesIO(data), KEY, sidecar, len(data) + 16)


def test_any_range_decrypts_to_the_same_bytes_as_the_whole_file():
    data, sidecar = vector("shop-2026-11-30.sql.gz.enc")
    plain = b"".join(dbackup.decrypt_stream(io.BytesIO(data), KEY, sidecar))
    first = dbackup.first_counter(KEY, sidecar.iv)
    edges = [0, 1, 15, 16, 17, 4095, 4096, len(data) - 17, len(data) - 1, len(data)]
    ranges = [(a, b) for a in edges for b in edges if a <= b] + [(1000, 1000 + 70_001)]
    for start, stop in ranges:
        pieces = dbackup.decrypt_range(io.BytesIO(data), KEY, first, start, stop, piece_size=4096)
        assert b"".join(pieces) == plain[start:stop], (start, stop)


def iv_near_the_wrap(blocks: int) -> bytes:
    """An IV whose first counter's low 32 bits wrap within `blocks` blocks (one IV in 2^32 / blocks)."""
    while True:
        iv = os.urandom(16)
        first = dbackup.first_counter(KEY, iv)
        if 2**32 - first % 2**32 < blocks:
            return iv


def test_a_range_across_the_wrap_of_gcms_32_bit_counter_decrypts_right(tmp_path):
    """GCM increments only the counter's low 32 bits; cryptography's CTR carries into the rest. A
    16-byte IV puts the wrap anywhere, so a large backup crosses it now and then (1 GiB: 1 in 64)."""
    iv = iv_near_the_wrap(2**14)
    wrap_at = (2**32 - dbackup.first_counter(KEY, iv) % 2**32) * 16
    plain = os.urandom(wrap_at + 50_000)
    (tmp_path / "plain").write_bytes(plain)
    tag = encrypt_file(tmp_path / "plain", tmp_path / "sealed", KEY, iv)
    data = (tmp_path / "sealed").read_bytes()
    dbackup.verify(io.BytesIO(data), KEY, dbackup.Sidecar(PROFILE_ID, iv, tag), len(data))
    first = dbackup.first_counter(KEY, iv)
    for start, stop in [
        (0, len(data)),
        (wrap_at - 1, wrap_at + 1),
        (wrap_at, wrap_at + 7),
        (wrap_at - 100, len(data)),
    ]:
        pieces = dbackup.decrypt_range(io.BytesIO(data), KEY, first, start, stop, piece_size=4096)
        assert b"".join(pieces) == plain[start:stop], (start, stop)


@pytest.mark.live  # needs Node, which `make test` installs
def test_node_writes_the_bytes_this_module_reads_and_the_same_as_cryptography(tmp_path):
    assert shutil.which("node"), "Node is missing: `make test` installs it (nodejs)"
    plain, iv = os.urandom(100_003), os.urandom(16)
    (tmp_path / "plain").write_bytes(plain)
    tag = encrypt_file(tmp_path / "plain", tmp_path / "sealed", KEY, iv)
    assert ((tmp_path / "sealed").read_bytes(), tag) == dbackup.encrypt(plain, KEY, iv)
