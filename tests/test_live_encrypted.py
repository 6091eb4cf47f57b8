"""Decrypt on download through real gunicorn, curl and wget."""

from __future__ import annotations

import os
import subprocess

import pytest

from encryption.format import CHUNK_SIZE, HEADER_SIZE, TAG_SIZE
from tests.conftest import seal
from tests.helpers import (
    MIB,
    curl,
    link_record,
    outcome_events,
    status_of,
    token_of,
    wait_for,
    wget_killed_then_continued,
)

SIZE = 24 * MIB + 4321


@pytest.fixture(scope="module")
def dump(live_server) -> tuple[bytes, bytes]:
    """A plaintext dump and its encrypted form, stored as dump.sql.gz.enc."""
    plain = os.urandom(MIB) * (SIZE // MIB) + os.urandom(SIZE % MIB)
    sealed = seal(live_server.app, "main", plain)
    live_server.backups.mkdir(parents=True, exist_ok=True)
    (live_server.backups / "dump.sql.gz.enc").write_bytes(sealed)
    return plain, sealed


def test_curl_and_wget_get_the_plain_dump(live_server, dump, tmp_path):
    plain, _ = dump
    result = curl("-OJ", "-w", "%{http_code}", live_server.link("dump.sql.gz.enc"), cwd=tmp_path)
    assert result.stdout == "200"
    assert (tmp_path / "dump.sql.gz").read_bytes() == plain
    target = tmp_path / "wget.sql.gz"
    url = live_server.link("dump.sql.gz.enc")
    subprocess.run(["wget", "-q", "-O", str(target), url], check=True, timeout=120)
    assert target.read_bytes() == plain
    assert status_of(url) == 410


def test_wget_continue_resumes_a_decrypted_download(live_server, dump, tmp_path):
    plain, _ = dump
    url = live_server.link("dump.sql.gz.enc")
    target = tmp_path / "dump.sql.gz"
    wget_killed_then_continued(live_server, url, target, plain)
    assert status_of(url) == 410


def test_encrypted_output_is_the_stored_bytes(live_server, dump, tmp_path):
    _, sealed = dump
    out = tmp_path / "copy.enc"
    assert status_of(live_server.link("dump.sql.gz.enc", decrypt=False), out) == 200
    assert out.read_bytes() == sealed


def test_a_tampered_chunk_aborts_the_transfer_and_keeps_the_link(live_server, dump, tmp_path):
    plain, sealed = dump
    stored = live_server.backups / "tampered.sql.gz.enc"
    damaged = bytearray(sealed)
    bad_chunk = 100
    damaged[HEADER_SIZE + bad_chunk * (CHUNK_SIZE + TAG_SIZE) + 5] ^= 1
    stored.write_bytes(bytes(damaged))
    url = live_server.link("tampered.sql.gz.enc")
    out = tmp_path / "out"
    result = subprocess.run(["curl", "-sS", "-o", str(out), url], capture_output=True, text=True, timeout=120)
    # The connection is reset, so nothing the kernel still queued arrives; curl says "Recv failure"
    # (56), or "transfer closed with bytes remaining" (18) when it saw the end before the reset.
    assert result.returncode in (18, 56), result.stderr
    assert out.read_bytes() == plain[: out.stat().st_size]  # no unauthenticated byte arrived
    assert out.stat().st_size <= bad_chunk * CHUNK_SIZE
    wait_for(
        lambda: (
            outcome_events(live_server, url) == []
            and link_record(live_server, url)[1][-1].event == "integrity"
        ),
        "the integrity event",
    )
    assert link_record(live_server, url)[0].uses == 0
    assert "failed authentication" in live_server.error_log.read_text()
    assert token_of(url) not in live_server.error_log.read_text() + live_server.access_log.read_text()
    stored.write_bytes(sealed)
    assert status_of(url, out) == 200 and out.read_bytes() == plain
