"""Digests through real gunicorn gevent workers and real curl: Repr-Digest checked with hashlib over
the saved file and parsed by RFC 8941's rules; the mint API's check line run with sha256sum; a
large file hashed in the background while the worker keeps serving; S3 objects on moto."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from core.accounts import create_api_key, create_user
from core.commands import check_command
from core.digests import INLINE_BYTES
from db import connect
from tests.conftest import PASSWORD, add_s3, seal
from tests.helpers import curl, make_file, mint_over_http, repr_digest_of, settled, wait_for

BUCKET = "digest-tests"


def api_key(server) -> str:
    db = connect(server.app.config["DATABASE"])
    try:
        create_user(db, "robot", PASSWORD, "operator", time.time())
        return create_api_key(db, "robot", time.time(), None)[0]
    finally:
        db.close()


def headers_of(dump: str) -> dict[str, str]:
    """The last answer's headers from curl's -D dump (a redirect's come first)."""
    block = dump.strip().split("\r\n\r\n")[-1]
    return {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in block.splitlines()[1:])
    }


@pytest.fixture(scope="module")
def server(live_server):
    key = api_key(live_server)
    data = make_file(live_server.backups, "digest.bin", 5 * 1024 * 1024 + 11)
    settled(live_server.backups / "digest.bin")
    return live_server, key, data


def test_repr_digest_on_200_and_206_checks_the_saved_file(server, tmp_path):
    live, key, data = server
    status, body = mint_over_http(live, key, "local", {"file": "digest.bin"})
    assert status == 200
    if body["sha256"] is None:  # 5 MiB: hashed in the background; minting again reads the cache
        wait_for(
            lambda: mint_over_http(live, key, "local", {"file": "digest.bin"})[1]["sha256"], "the digest"
        )
        status, body = mint_over_http(live, key, "local", {"file": "digest.bin"})
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    target = tmp_path / "digest.bin"
    target.write_bytes(data[:1_000_000])  # an interrupted download: curl -C - resumes it (206)
    answer = curl("-fL", "-C", "-", "-o", "digest.bin", "-D", "headers.txt", body["url"], cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    headers = headers_of((tmp_path / "headers.txt").read_text())
    assert headers["content-range"].startswith("bytes 1000000-")
    assert repr_digest_of(headers["repr-digest"]) == hashlib.sha256(target.read_bytes()).digest()
    check = subprocess.run(
        ["sh", "-c", check_command(body["sha256"], "digest.bin")], cwd=tmp_path, capture_output=True
    )
    assert check.returncode == 0 and b"digest.bin: OK" in check.stdout
    second = mint_over_http(live, key, "local", {"file": "digest.bin"})[1]
    fresh = curl("-fL", "-o", "again.bin", "-D", "headers.txt", second["url"], cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    headers = headers_of((tmp_path / "headers.txt").read_text())
    assert (
        repr_digest_of(headers["repr-digest"])
        == hashlib.sha256((tmp_path / "again.bin").read_bytes()).digest()
    )


def test_a_large_file_is_hashed_while_the_worker_serves(server, tmp_path):
    """The hashing runs off the hub: pages and downloads answer while a 64 MiB file is hashed."""
    live, key, _ = server
    big = make_file(live.backups, "large.bin", 64 * 1024 * 1024)
    settled(live.backups / "large.bin")
    body = mint_over_http(live, key, "local", {"file": "large.bin"})[1]
    assert body["sha256"] is None
    small = mint_over_http(live, key, "local", {"file": "digest.bin"})[1]
    fetched = curl("-f", "-o", "small.bin", small["url"], cwd=tmp_path)
    assert fetched.returncode == 0 and (tmp_path / "small.bin").stat().st_size == 5 * 1024 * 1024 + 11
    wait_for(
        lambda: mint_over_http(live, key, "local", {"file": "large.bin"})[1]["sha256"],
        "the large digest",
        120,
    )
    assert (
        mint_over_http(live, key, "local", {"file": "large.bin"})[1]["sha256"]
        == hashlib.sha256(big).hexdigest()
    )


def test_decrypted_digest_through_the_server(server, tmp_path):
    live, key, data = server
    plain = os.urandom(INLINE_BYTES // 2)
    (live.backups / "plain.sql.enc").write_bytes(seal(live.app, "main", plain))
    settled(live.backups / "plain.sql.enc")
    body = mint_over_http(live, key, "local", {"file": "plain.sql.enc"})[1]
    assert body["mode"] == "decrypted" and body["sha256"] == hashlib.sha256(plain).hexdigest()
    answer = curl("-fL", "-o", "plain.sql", "-D", "headers.txt", body["url"], cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    headers = headers_of((tmp_path / "headers.txt").read_text())
    assert (
        repr_digest_of(headers["repr-digest"])
        == hashlib.sha256((tmp_path / "plain.sql").read_bytes()).digest()
    )


def test_s3_checksum_computed_digest_and_a_replaced_object(server, moto, tmp_path):
    """An object uploaded with a SHA-256 checksum is not read; one without is hashed; an object
    overwritten since has another ETag and gets no stale digest."""
    live, key, _ = server
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)
    with_checksum, without = os.urandom(300_000), os.urandom(200_000)
    s3.put_object(Bucket=BUCKET, Key="checked.bin", Body=with_checksum, ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=BUCKET, Key="plain.bin", Body=without)
    add_s3(live.app, "offsite", moto.url, BUCKET)
    checked = mint_over_http(live, key, "offsite", {"file": "checked.bin"})[1]
    assert checked["sha256"] == hashlib.sha256(with_checksum).hexdigest()
    db = connect(live.app.config["DATABASE"])
    try:
        (row,) = db.execute("SELECT source FROM digests WHERE path = 'checked.bin'").fetchall()
    finally:
        db.close()
    assert row == ("storage",)
    wait_for(lambda: mint_over_http(live, key, "offsite", {"file": "plain.bin"})[1]["sha256"], "the digest")
    plain = mint_over_http(live, key, "offsite", {"file": "plain.bin"})[1]
    assert plain["sha256"] == hashlib.sha256(without).hexdigest()
    answer = curl("-fL", "-o", "plain.bin", "-D", "headers.txt", plain["url"], cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    saved = (tmp_path / "plain.bin").read_bytes()
    assert (
        repr_digest_of(headers_of((tmp_path / "headers.txt").read_text())["repr-digest"])
        == hashlib.sha256(saved).digest()
    )
    link = mint_over_http(live, key, "offsite", {"file": "plain.bin"})[1]
    replaced = os.urandom(200_000)
    s3.put_object(Bucket=BUCKET, Key="plain.bin", Body=replaced)
    answer = curl("-fL", "-o", "replaced.bin", "-D", "headers.txt", link["url"], cwd=tmp_path)
    assert answer.returncode == 0 and (tmp_path / "replaced.bin").read_bytes() == replaced
    assert "repr-digest" not in headers_of((tmp_path / "headers.txt").read_text())
