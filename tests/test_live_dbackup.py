"""DBackup's encrypted backups through real gunicorn, curl and wget, from a local folder and from S3
(moto): decrypted with the tag checked before the first byte, resumed, refused whole when damaged."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from core.listings import Order
from db import connect, select_rows
from encryption import dbackup
from storage import load_storage
from tests.conftest import add_s3
from tests.dbackup_files import (
    VECTOR_FILES,
    VECTORS,
    copy_vectors,
    import_vector_key,
    random_file,
    write_backup,
)
from tests.helpers import (
    MIB,
    curl,
    every_entry,
    link_record,
    status_of,
    wait_for,
    wget_killed_then_continued,
)

LARGE = 24 * MIB + 777  # not a multiple of GCM's block


@pytest.fixture(scope="module")
def backups(live_server, tmp_path_factory):
    """The shared vectors and a large generated backup, in the live server's folder `dbackup/`."""
    import_vector_key(live_server.app)
    folder = live_server.backups / "dbackup"
    folder.mkdir(parents=True, exist_ok=True)
    copy_vectors(folder)
    plain = random_file(tmp_path_factory.mktemp("plain") / "large.sql.gz", LARGE)
    write_backup(folder, "large.sql.gz.enc", plain)
    return folder, plain.read_bytes()


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verdicts(server) -> list[dict]:
    db = connect(server.app.config["DATABASE"])
    try:
        return select_rows(db, "SELECT identity, intact, checked_at FROM tag_verdicts ORDER BY checked_at")
    finally:
        db.close()


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_curl_and_wget_get_each_shared_vector_decrypted(live_server, backups, name, tmp_path):
    expected = VECTOR_FILES[name]
    url = live_server.link(f"dbackup/{name}")
    result = curl("-fOJ", "-w", "%{http_code}", url, cwd=tmp_path)
    assert result.stdout == "200"
    saved = tmp_path / name.removesuffix(".enc")  # named without .enc, from Content-Disposition
    assert sha256_of(saved) == expected["decrypted_sha256"]
    assert status_of(url) == 410
    wget_url = live_server.link(f"dbackup/{name}")
    target = tmp_path / "wget.out"
    subprocess.run(["wget", "-q", "-O", str(target), wget_url], check=True, timeout=60)
    assert sha256_of(target) == expected["decrypted_sha256"]


def test_the_length_is_exact_and_a_head_changes_nothing(live_server, backups):
    url = live_server.link("dbackup/shop-2026-11-30.sql.gz.enc")
    head = curl("-sI", url)
    assert "content-length: 115268" in head.stdout.lower()
    assert 'filename="shop-2026-11-30.sql.gz"' in head.stdout
    assert link_record(live_server, url)[0].uses == 0


def test_as_stored_the_enc_bytes_go_out_unchanged(live_server, backups, tmp_path):
    url = live_server.link("dbackup/crm-2026-11-30.sql.enc", decrypt=False)
    out = tmp_path / "stored.enc"
    assert status_of(url, out) == 200
    assert out.read_bytes() == (VECTORS / "crm-2026-11-30.sql.enc").read_bytes()


def test_wget_continue_resumes_the_decrypted_backup_without_checking_it_again(live_server, backups, tmp_path):
    folder, plain = backups
    url = live_server.link("dbackup/large.sql.gz.enc")
    before = {row["identity"]: row for row in verdicts(live_server)}
    wget_killed_then_continued(live_server, url, tmp_path / "large.sql.gz", plain)
    checked = [row for row in verdicts(live_server) if row["identity"] not in before]
    assert len(checked) == 1 and checked[0]["intact"] == 1
    started = [e.at for e in link_record(live_server, url)[1] if e.event == "started"]
    assert len(started) == 2 and checked[0]["checked_at"] < started[1]  # checked for the first only
    again = live_server.link("dbackup/large.sql.gz.enc")
    out = tmp_path / "again.sql.gz"
    assert curl("-sf", "-r", f"{LARGE // 2}-", "-o", str(out), "-w", "%{http_code}", again).stdout == "206"
    assert out.read_bytes() == plain[LARGE // 2 :]
    assert [row for row in verdicts(live_server) if row["identity"] not in before] == checked


def test_curl_continue_resumes_from_the_middle(live_server, backups, tmp_path):
    _, plain = backups
    url = live_server.link("dbackup/large.sql.gz.enc")
    target = tmp_path / "large.sql.gz"
    target.write_bytes(plain[: LARGE // 2 + 5])  # what an interrupted download left
    assert curl("-sfL", "-C", "-", "-o", str(target), "-w", "%{http_code}", url).stdout == "206"
    assert target.read_bytes() == plain
    wait_for(lambda: link_record(live_server, url)[0].uses == 1, "the use to be counted")


def damaged_copy(folder, name: str, damage: str) -> str:
    """A copy of a vector with one ciphertext byte or one tag bit flipped; returns its path."""
    copy = f"damaged-{damage}-{name}"
    data = bytearray((VECTORS / name).read_bytes())
    meta = json.loads((VECTORS / dbackup.sidecar_name(name)).read_text())
    if damage == "ciphertext":
        data[len(data) // 2] ^= 0x01
    else:
        tag = bytearray(bytes.fromhex(meta["encryption"]["authTag"]))
        tag[-1] ^= 0x80
        meta["encryption"]["authTag"] = tag.hex()
    (folder / copy).write_bytes(bytes(data))
    (folder / dbackup.sidecar_name(copy)).write_text(json.dumps(meta))
    return copy


@pytest.mark.parametrize("damage", ["ciphertext", "tag"])
def test_a_damaged_backup_is_refused_before_any_byte_and_the_link_is_not_used(
    live_server, backups, damage, tmp_path
):
    folder, _ = backups
    name = damaged_copy(folder, "wiki-2026-11-29.sql.br.enc", damage)
    url = live_server.link(f"dbackup/{name}")
    out = tmp_path / "out"
    result = curl("-s", "-o", str(out), "-w", "%{http_code}", url)
    assert result.stdout == "422"
    assert "integrity" in json.loads(out.read_text())["error"]
    record, events = link_record(live_server, url)
    assert record.uses == 0 and [e.event for e in events][-1] == "integrity"
    assert "started" not in [e.event for e in events]
    # Repaired, the same link delivers the backup once: the refusal consumed nothing.
    shutil.copyfile(VECTORS / "wiki-2026-11-29.sql.br.enc", folder / name)
    shutil.copyfile(
        VECTORS / dbackup.sidecar_name("wiki-2026-11-29.sql.br.enc"), folder / dbackup.sidecar_name(name)
    )
    assert status_of(url, out) == 200
    assert sha256_of(out) == VECTOR_FILES["wiki-2026-11-29.sql.br.enc"]["decrypted_sha256"]


def test_a_sidecar_naming_a_key_this_server_lacks_is_refused_and_uses_nothing(live_server, backups, tmp_path):
    folder, _ = backups
    name = "other-key.sql.gz.enc"
    shutil.copyfile(VECTORS / "shop-2026-11-30.sql.gz.enc", folder / name)
    meta = json.loads((VECTORS / "shop-2026-11-30.sql.gz.enc.meta.json").read_text())
    (folder / dbackup.sidecar_name(name)).write_text(json.dumps(meta))
    url = live_server.link(f"dbackup/{name}")
    meta["encryption"]["profileId"] = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    (folder / dbackup.sidecar_name(name)).write_text(json.dumps(meta))
    out = tmp_path / "out"
    assert curl("-s", "-o", str(out), "-w", "%{http_code}", url).stdout == "422"
    assert "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d" in json.loads(out.read_text())["error"]
    assert link_record(live_server, url)[0].uses == 0


@pytest.fixture(scope="module")
def s3_backups(live_server, moto, backups):
    client = moto.client()
    client.create_bucket(Bucket="dbackup")
    for path in VECTORS.iterdir():
        if path.name.endswith((".enc", ".meta.json")):
            client.put_object(Bucket="dbackup", Key=f"db/{path.name}", Body=path.read_bytes())
    add_s3(live_server.app, "dbackup-s3", moto.url, "dbackup", prefix="db")
    return client


@pytest.mark.parametrize("name", ["shop-2026-11-30.sql.gz.enc", "old-2025-06-01.sql.gz.enc"])
def test_from_s3_every_byte_decrypts_to_the_expected_digest(live_server, s3_backups, name, tmp_path):
    url = live_server.link(name, storage="dbackup-s3")
    out = tmp_path / "out"
    assert status_of(url, out) == 200
    assert sha256_of(out) == VECTOR_FILES[name]["decrypted_sha256"]
    plain = out.read_bytes()
    ranged = live_server.link(name, storage="dbackup-s3")
    assert curl("-sf", "-r", "1000-", "-o", str(out), "-w", "%{http_code}", ranged).stdout == "206"
    assert out.read_bytes() == plain[1000:]


def test_from_s3_a_damaged_object_is_refused_before_any_byte(live_server, s3_backups, tmp_path):
    data = bytearray((VECTORS / "crm-2026-11-30.sql.enc").read_bytes())
    data[-1] ^= 0x01
    s3_backups.put_object(Bucket="dbackup", Key="db/bad.sql.enc", Body=bytes(data))
    meta = (VECTORS / "crm-2026-11-30.sql.enc.meta.json").read_bytes()
    s3_backups.put_object(Bucket="dbackup", Key="db/bad.sql.enc.meta.json", Body=meta)
    url = live_server.link("bad.sql.enc", storage="dbackup-s3")
    assert curl("-s", "-o", str(tmp_path / "out"), "-w", "%{http_code}", url).stdout == "422"
    assert link_record(live_server, url)[0].uses == 0


def test_s3_pages_of_one_entry_fold_each_sidecar_into_the_backup_before_it(live_server, s3_backups):
    """In S3's own order each page is one LIST after the cursor: a sidecar whose backup ended the
    page before is folded all the same."""
    db = connect(live_server.app.config["DATABASE"])
    try:
        storage = load_storage(db, "dbackup-s3", live_server.app.extensions["oncelink_keyring"])
    finally:
        db.close()
    assert storage.pages_by_name
    names = [entry.name for entry in every_entry(storage, "", Order(), limit=1)]
    assert [name for name in names if name in VECTOR_FILES] == sorted(VECTOR_FILES)
    assert not [name for name in names if name.endswith(dbackup.SIDECAR_SUFFIX)]
