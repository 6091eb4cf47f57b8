"""SHA-256 digests of what links deliver, checked against hashlib over the bytes downloaded: plain
files, decrypted ones, files replaced after they were hashed, the background computation, the CLI."""

from __future__ import annotations

import hashlib
import html
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import core.digests as digests
from db import connect, select_rows
from db.digests import claim_digest_job
from storage.base import FileMissing
from storage.local import LocalStorage
from tests.conftest import mint, seal
from tests.helpers import repr_digest_of, settled, wait_for

DATA = os.urandom(100_000)
URL = "/api/storage/public-download?token="
MINT = "/api/storage/local/download-url"


@pytest.fixture(autouse=True)
def files(backups):
    backups.mkdir(parents=True, exist_ok=True)
    (backups / "db.sql.gz").write_bytes(DATA)
    settled(backups / "db.sql.gz")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(client, token: str, method: str = "GET", **headers):
    return client.open(URL + token, method=method, headers=headers, buffered=True)


def minted(client, auth, path: str, **body) -> dict:
    response = client.post(MINT, json={"file": path, **body}, headers=auth.headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def digest_rows(app) -> list[dict]:
    db = connect(app.config["DATABASE"])
    try:
        return select_rows(db, "SELECT path, mode, source FROM digests ORDER BY path, mode")
    finally:
        db.close()


def test_mint_returns_the_digest_and_every_answer_carries_it(app, client, auth):
    """200, 206 and HEAD carry Repr-Digest: always the digest of the whole file (RFC 9530)."""
    auth.login("operator")
    body = minted(client, auth, "db.sql.gz", uses=2)
    assert body["sha256"] == sha256(DATA)
    token = body["url"].split("token=")[1]
    head = download(client, token, "HEAD")
    assert repr_digest_of(head.headers["Repr-Digest"]) == hashlib.sha256(DATA).digest()
    part = download(client, token, Range="bytes=1000-")
    assert part.status_code == 206 and part.data == DATA[1000:]
    assert repr_digest_of(part.headers["Repr-Digest"]) == hashlib.sha256(DATA).digest()
    whole = download(client, token)
    assert whole.status_code == 200
    assert repr_digest_of(whole.headers["Repr-Digest"]) == hashlib.sha256(whole.data).digest()


def test_no_digest_header_before_one_is_known(app, client):
    """The download never hashes: a file nobody asked a digest of goes out without Repr-Digest."""
    response = download(client, mint(app, "db.sql.gz"))
    assert response.status_code == 200 and response.data == DATA
    assert "Repr-Digest" not in response.headers


@pytest.mark.parametrize("how", ["replaced", "rewritten in place"])
def test_a_file_changed_after_hashing_never_gets_the_old_digest(app, client, auth, backups, how):
    auth.login("operator")
    assert minted(client, auth, "db.sql.gz")["sha256"] == sha256(DATA)
    target, new = backups / "db.sql.gz", os.urandom(len(DATA))
    stat = target.stat()
    if how == "replaced":
        (backups / "new.tmp").write_bytes(new)
        os.replace(backups / "new.tmp", target)
    else:
        target.write_bytes(new)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime: only the ctime moved
    token = mint(app, "db.sql.gz")
    response = download(client, token)
    assert response.data == new and "Repr-Digest" not in response.headers
    settled(target)
    again = minted(client, auth, "db.sql.gz")
    assert again["sha256"] == sha256(new)
    answer = download(client, again["url"].split("token=")[1])
    assert (
        answer.data == new and repr_digest_of(answer.headers["Repr-Digest"]) == hashlib.sha256(new).digest()
    )


def test_a_file_written_while_it_is_hashed_keeps_no_digest(app, backups, monkeypatch):
    hash_all = digests._hash

    def hash_then_write(opened, progress):
        result = hash_all(opened, progress)
        (backups / "db.sql.gz").write_bytes(b"changed meanwhile")
        return result

    monkeypatch.setattr(digests, "_hash", hash_then_write)
    db = connect(app.config["DATABASE"])
    try:
        with pytest.raises(digests.FileChanged):
            digests.compute_sha256(
                db, digests.DigestTarget("local", "db.sql.gz"), app.extensions["oncelink_keyring"]
            )
    finally:
        db.close()
    assert digest_rows(app) == []


def test_flask_encrypt_records_the_plaintext_digest(app, client, auth, runner, backups, tmp_path):
    """The file's bytes are exactly format v1 (tools/decrypt.py reads it); its digest is found by its
    salt without decrypting, under another name too; the link's download hashes to it."""
    auth.login("admin")
    assert runner.invoke(args=["keys", "create", "main"]).exit_code == 0
    plain = tmp_path / "dump.sql"
    plain.write_bytes(DATA * 3)
    result = runner.invoke(args=["encrypt", "--profile", "main", str(plain), str(backups / "dump.sql.enc")])
    assert result.exit_code == 0, result.output
    os.replace(backups / "dump.sql.enc", backups / "renamed.sql.enc")
    settled(backups / "renamed.sql.enc")
    body = minted(client, auth, "renamed.sql.enc")
    assert body["mode"] == "decrypted" and body["sha256"] == sha256(DATA * 3)
    assert digest_rows(app) == []  # nothing was hashed: the record made by `encrypt` answered
    response = download(client, body["url"].split("token=")[1])
    assert response.data == DATA * 3
    assert repr_digest_of(response.headers["Repr-Digest"]) == hashlib.sha256(response.data).digest()
    stored = minted(client, auth, "renamed.sql.enc", decrypt=False)
    assert stored["sha256"] == sha256((backups / "renamed.sql.enc").read_bytes())
    kit = runner.invoke(args=["keys", "export", "main"]).output
    (tmp_path / "kit.txt").write_text(kit)
    tool = Path(__file__).resolve().parent.parent / "tools" / "decrypt.py"
    out = tmp_path / "out.sql"
    subprocess.run(
        [
            "python3",
            str(tool),
            "--kit",
            str(tmp_path / "kit.txt"),
            str(backups / "renamed.sql.enc"),
            str(out),
        ],
        check=True,
        timeout=60,
    )
    assert out.read_bytes() == DATA * 3


def test_an_older_encrypted_file_gets_its_digest_computed(app, client, auth, backups):
    auth.login("operator")
    (backups / "old.tar.enc").write_bytes(seal(app, "main", DATA))
    settled(backups / "old.tar.enc")
    body = minted(client, auth, "old.tar.enc")
    assert body["sha256"] == sha256(DATA)
    assert digest_rows(app) == [{"path": "old.tar.enc", "mode": "decrypted", "source": "computed"}]
    response = download(client, body["url"].split("token=")[1])
    assert (
        response.data == DATA
        and repr_digest_of(response.headers["Repr-Digest"]) == hashlib.sha256(DATA).digest()
    )


def test_a_large_file_is_hashed_in_the_background_and_the_dialog_shows_it(app, client, auth, backups):
    auth.login("operator")
    big = os.urandom(digests.INLINE_BYTES + 1)
    (backups / "big.bin").write_bytes(big)
    settled(backups / "big.bin")
    body = minted(client, auth, "big.bin")
    assert body["sha256"] is None  # not hashed within the request
    assert app.extensions["oncelink_digests"].wait(20)
    poll = html.unescape(client.get("/browse/local/digest?path=big.bin&decrypt=1").get_data(as_text=True))
    assert sha256(big) in poll
    assert f"echo '{sha256(big)}  big.bin' | sha256sum -c" in poll
    assert minted(client, auth, "big.bin")["sha256"] == sha256(big)


def test_the_dialog_shows_a_computation_running_elsewhere(app, client, auth, backups):
    """Another worker's job (its row in digest_jobs) is shown with its progress and polled, not redone."""
    auth.login("operator")
    (backups / "big.bin").write_bytes(os.urandom(3 * digests.INLINE_BYTES))
    settled(backups / "big.bin")
    db = connect(app.config["DATABASE"])
    try:
        assert claim_digest_job(db, "local", "big.bin", "stored", 3 * digests.INLINE_BYTES, time.time(), 0)
        db.execute("UPDATE digest_jobs SET done = ?", [digests.INLINE_BYTES])
    finally:
        db.close()
    poll = client.get("/browse/local/digest?path=big.bin&decrypt=1").get_data(as_text=True)
    assert "Computing the SHA-256" in poll and "1.0 MiB of 3.0 MiB" in poll
    assert 'value="33"' in poll and 'hx-trigger="load delay:1s"' in poll
    assert digest_rows(app) == []


def test_the_link_dialog_and_landing_page_show_the_check_line(app, client, auth):
    auth.login("operator")
    page = client.post(
        "/browse/local/link",
        data={"path": "db.sql.gz", "ttl": 300, "uses": 1, "decrypt": 1, "csrf_token": auth.csrf_token},
    ).get_data(as_text=True)
    page = html.unescape(page)
    check = f"echo '{sha256(DATA)}  db.sql.gz' | sha256sum -c"
    assert check in page
    token = page.split("token=")[1].split('"')[0]
    client.get("/logout")
    landing = html.unescape(client.get(URL + token, headers={"Accept": "text/html"}).get_data(as_text=True))
    assert check in landing


def test_a_file_changed_moments_ago_is_hashed_once_it_has_settled(app, client, auth, backups):
    auth.login("operator")
    (backups / "fresh.bin").write_bytes(b"just written")
    body = minted(client, auth, "fresh.bin")
    assert body["sha256"] is None  # left to the background, which waits for the file to settle
    wait_for(lambda: minted(client, auth, "fresh.bin")["sha256"] == sha256(b"just written"), "the digest")


def test_files_api_lists_known_digests(app, client, auth):
    auth.login("operator")
    minted(client, auth, "db.sql.gz")
    entries = client.get("/api/storage/local/files").get_json()["entries"]
    (entry,) = [e for e in entries if e["name"] == "db.sql.gz"]
    assert entry["sha256"] == sha256(DATA) and entry["decryptedSha256"] is None


def test_cli_computes_a_folder_and_sha256sum_agrees(app, runner, backups):
    (backups / "nested" / "deeper").mkdir(parents=True)
    for name, data in (("nested/a.bin", b"a"), ("nested/deeper/b é.bin", b"b" * 5000)):
        (backups / name).write_bytes(data)
        settled(backups / name)
    result = runner.invoke(args=["digests", "compute", "local"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == sorted(lines, key=lambda line: line.split("  ", 1)[1])
    assert len(lines) == 3
    check = subprocess.run(
        ["sha256sum", "-c"], input=result.output, cwd=backups, capture_output=True, text=True
    )
    assert check.returncode == 0 and check.stdout.count(": OK") == 3, check.stdout + check.stderr
    one = runner.invoke(args=["digests", "compute", "local", "nested/a.bin"])
    assert one.output == f"{sha256(b'a')}  nested/a.bin\n"
    missing = runner.invoke(args=["digests", "compute", "local", "nope"])
    assert missing.exit_code == 1


def test_a_folder_that_goes_while_the_tree_is_read_is_passed_over(backups, monkeypatch):
    for name in ("tree/a.bin", "tree/gone/b.bin", "tree/later/c.bin"):
        (backups / name).parent.mkdir(parents=True, exist_ok=True)
        (backups / name).write_bytes(b"x")
    real_scan = LocalStorage.scan

    def scan(self, folder="", stats=False):
        if folder == "tree/gone":
            shutil.rmtree(backups / folder, ignore_errors=True)
        return real_scan(self, folder, stats)

    monkeypatch.setattr(LocalStorage, "scan", scan)
    storage = LocalStorage(str(backups))
    assert list(digests.files_below(storage, "tree")) == ["tree/a.bin", "tree/later/c.bin"]
    with pytest.raises(FileMissing):
        list(digests.files_below(storage, "tree/gone"))
