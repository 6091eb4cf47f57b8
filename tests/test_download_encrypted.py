"""Decrypt on download, through the Flask test client: lengths, names, ranges, keys, damage."""

from __future__ import annotations

import io
import os
import time

import pytest

from db import connect
from db.events import list_events
from db.links import list_links
from encryption.format import CHUNK_SIZE, encrypt_stream, new_header
from tests.conftest import mint

PLAIN = os.urandom(3 * CHUNK_SIZE + 1234)
URL = "/api/storage/public-download?token="


def get(client, token, **headers):
    return client.get(URL + token, headers=headers, buffered=True)


@pytest.fixture
def profile(app, db):
    keyring = app.extensions["oncelink_keyring"]
    created = keyring.create(db, "main", time.time())
    return created, keyring.by_name(db, "main")[1]


def encrypt_to(path, plain, key_id: bytes, key: bytes) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), out, key, new_header(key_id))
    path.write_bytes(out.getvalue())
    return out.getvalue()


@pytest.fixture
def sealed(backups, profile):
    created, key = profile
    backups.mkdir(parents=True, exist_ok=True)
    return encrypt_to(backups / "dump.sql.gz.enc", PLAIN, bytes.fromhex(created.id), key)


def events(app):
    db = connect(app.config["DATABASE"])
    try:
        return [e.event for e in list_events(db, list_links(db)[0].id)]
    finally:
        db.close()


def test_decrypted_download_has_the_plain_name_length_and_bytes(app, client, sealed):
    token = mint(app, "dump.sql.gz.enc")
    head = client.head(URL + token)
    assert head.headers["Content-Length"] == str(len(PLAIN))
    response = get(client, token)
    assert response.status_code == 200
    assert response.data == PLAIN
    assert response.headers["Content-Length"] == str(len(PLAIN))
    assert response.headers["Content-Disposition"] == 'attachment; filename="dump.sql.gz"'
    assert response.headers["ETag"] == head.headers["ETag"]
    assert get(client, token).status_code == 410
    assert events(app) == ["created", "head", "started", "completed", "rejected"]


def test_resume_inside_the_plaintext(app, client, sealed):
    token = mint(app, "dump.sql.gz.enc")
    offset = CHUNK_SIZE + 777
    response = get(client, token, Range=f"bytes={offset}-")
    assert response.status_code == 206
    assert response.data == PLAIN[offset:]
    assert response.headers["Content-Range"] == f"bytes {offset}-{len(PLAIN) - 1}/{len(PLAIN)}"
    assert get(client, token).status_code == 410


def test_encrypted_output_when_asked(app, client, sealed):
    token = mint(app, "dump.sql.gz.enc", decrypt=False)
    response = get(client, token)
    assert response.data == sealed
    assert response.headers["Content-Disposition"] == 'attachment; filename="dump.sql.gz.enc"'
    assert response.headers["ETag"] != client.head(URL + mint(app, "dump.sql.gz.enc")).headers["ETag"]


def test_plain_files_ignore_decrypt(app, client, backups):
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "notes.enc").write_bytes(b"not really encrypted")
    response = get(client, mint(app, "notes.enc", decrypt=True))
    assert response.data == b"not really encrypted"
    assert response.headers["Content-Disposition"] == 'attachment; filename="notes.enc"'


def test_empty_plaintext(app, client, backups, profile):
    created, key = profile
    backups.mkdir(parents=True, exist_ok=True)
    encrypt_to(backups / "empty.enc", b"", bytes.fromhex(created.id), key)
    response = get(client, mint(app, "empty.enc"))
    assert response.status_code == 200 and response.data == b"" and response.headers["Content-Length"] == "0"


def test_a_file_for_a_missing_profile_is_refused_at_link_creation(app, client, auth, backups):
    backups.mkdir(parents=True, exist_ok=True)
    encrypt_to(backups / "foreign.enc", b"secret", os.urandom(16), os.urandom(32))
    auth.login("operator")
    refused = client.post(
        "/api/storage/local/download-url", json={"file": "foreign.enc"}, headers=auth.headers()
    )
    assert refused.status_code == 422
    assert "no profile here holds" in refused.get_json()["error"]
    allowed = client.post(
        "/api/storage/local/download-url",
        json={"file": "foreign.enc", "decrypt": False},
        headers=auth.headers(),
    )
    assert allowed.status_code == 200


def test_a_damaged_final_chunk_is_caught_before_any_byte(app, client, backups, sealed):
    token = mint(app, "dump.sql.gz.enc")
    damaged = bytearray(sealed)
    damaged[-1] ^= 1
    (backups / "dump.sql.gz.enc").write_bytes(bytes(damaged))
    response = get(client, token)
    assert response.status_code == 422
    assert "integrity" in response.get_json()["error"]
    (backups / "dump.sql.gz.enc").write_bytes(sealed)
    assert get(client, token).data == PLAIN
    assert events(app) == ["created", "integrity", "started", "completed"]  # nothing started


def test_a_truncated_encrypted_file_is_refused_and_keeps_the_link(app, client, backups, sealed):
    token = mint(app, "dump.sql.gz.enc")
    (backups / "dump.sql.gz.enc").write_bytes(sealed[:-5])
    assert get(client, token).status_code in (422, 500)
    (backups / "dump.sql.gz.enc").write_bytes(sealed[: 58 + 2 * (CHUNK_SIZE + 16)])  # cut at a chunk boundary
    assert get(client, token).status_code == 422
    (backups / "dump.sql.gz.enc").write_bytes(sealed)
    assert get(client, token).data == PLAIN


def test_a_damaged_middle_chunk_stops_the_stream_and_keeps_the_link(app, client, backups, sealed):
    token = mint(app, "dump.sql.gz.enc")
    damaged = bytearray(sealed)
    damaged[58 + CHUNK_SIZE + 16 + 100] ^= 1  # inside the second chunk
    (backups / "dump.sql.gz.enc").write_bytes(bytes(damaged))
    response = client.get(URL + token, buffered=False)
    pieces = iter(response.response)
    assert next(pieces) == PLAIN[:CHUNK_SIZE]  # the first chunk was fine and went out
    with pytest.raises(Exception, match="chunk 1 failed authentication"):
        next(pieces)
    response.close()
    assert events(app)[-1] == "integrity"
    (backups / "dump.sql.gz.enc").write_bytes(sealed)
    assert get(client, token).data == PLAIN


def test_listing_names_the_profile(app, client, auth, backups, sealed, profile):
    (backups / "plain.txt").write_bytes(b"x" * 100)
    encrypt_to(backups / "foreign.enc", b"secret", bytes(16), os.urandom(32))
    auth.login("viewer")
    entries = {e["name"]: e for e in client.get("/api/storage/local/files").get_json()["entries"]}
    assert (entries["dump.sql.gz.enc"]["encrypted"], entries["dump.sql.gz.enc"]["profile"]) == (True, "main")
    assert (entries["plain.txt"]["encrypted"], entries["plain.txt"]["profile"]) == (False, None)
    assert entries["foreign.enc"]["profile"] == "00" * 16
