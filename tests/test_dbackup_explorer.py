"""DBackup backups in the explorer and the files API: encrypted with their profile and what their
sidecar says, the sidecar folded into its backup's row, in kept scans patched name by name too; and
a signed-in person's own download of one, decrypted."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from core import kept_scans
from core.listings import Order, Sort
from encryption import dbackup
from storage import watching
from storage.local import LocalStorage
from tests.conftest import mint, seal
from tests.dbackup_files import VECTOR_FILES, VECTORS, copy_vectors, import_vector_key
from tests.helpers import every_entry

HX = {"HX-Request": "true"}
SHOP = "shop-2026-11-30.sql.gz.enc"

pytestmark = pytest.mark.usefixtures("no_kept_scans")


@pytest.fixture
def folder(app, backups):
    """The shared vectors, an Oncelink-encrypted file, a plain file and a sidecar with no backup."""
    import_vector_key(app)
    copy_vectors(backups)
    (backups / "own.sql.gz.enc").write_bytes(seal(app, "main", b"own dump"))
    (backups / "plain.sql").write_bytes(b"select 1;")
    shutil.copyfile(VECTORS / dbackup.sidecar_name(SHOP), backups / "orphan.sql.gz.enc.meta.json")
    return backups


def api_entries(client, path: str = "") -> dict[str, dict]:
    body = client.get(f"/api/storage/local/files?path={path}").get_json()
    return {entry["name"]: entry for entry in body["entries"]}


def test_the_files_api_folds_each_sidecar_into_its_backup(client, auth, folder):
    auth.login("viewer")
    entries = api_entries(client)
    assert sorted(entries) == sorted(
        [*VECTOR_FILES, "own.sql.gz.enc", "plain.sql", "orphan.sql.gz.enc.meta.json"]
    )
    shop = entries[SHOP]
    assert (shop["encrypted"], shop["format"], shop["profile"]) == (True, "dbackup", "dbackup-vectors")
    assert shop["dbackup"] == {
        "profileId": "4f1c2b9e-public-vectors",
        "jobName": "shop-2026-11-30",
        "sourceType": "mysql",
        "engineVersion": "8.0.36",
        "databases": ["shop"],
        "timestamp": "2026-12-02T05:22:43.870Z",
        "compression": "GZIP",
    }
    assert entries["old-2025-06-01.sql.gz.enc"]["dbackup"]["jobName"] == "old-2025-06-01"  # the flat sidecar
    own = entries["own.sql.gz.enc"]
    assert (own["encrypted"], own["format"], own["profile"]) == (True, "oncelink", "main")
    plain = entries["plain.sql"]
    assert (plain["encrypted"], plain["format"]) == (False, None) and "dbackup" not in plain


def test_a_backup_whose_profile_is_not_here_shows_the_dbackup_id(client, auth, backups):
    auth.login("viewer")
    copy_vectors(backups)  # no key imported
    shop = api_entries(client)[SHOP]
    assert (shop["encrypted"], shop["format"], shop["profile"]) == (
        True,
        "dbackup",
        "4f1c2b9e-public-vectors",
    )


def test_the_explorer_shows_the_badge_the_job_the_engine_and_the_time(client, auth, folder):
    auth.login("viewer")
    page = client.get("/browse/local", headers=HX).text
    assert "DBackup · dbackup-vectors" in page
    assert "shop-2026-11-30 · mysql 8.0.36 · 2026-12-02 05:22 UTC" in page
    assert "shop-2026-11-30.sql.gz.enc.meta.json" not in page
    assert "orphan.sql.gz.enc.meta.json" in page


def test_the_link_dialog_says_dbackup_and_the_delivered_name_drops_enc(client, auth, folder):
    auth.login("operator")
    dialog = client.get(f"/browse/local/link?path={SHOP}", headers=HX).text
    assert "DBackup encrypted backup" in dialog and "(profile dbackup-vectors)" in dialog


def test_a_signed_in_download_is_the_decrypted_backup_and_a_damaged_one_is_refused(client, auth, folder):
    auth.login("operator")
    response = client.get(f"/browse/local/file?path={SHOP}")
    assert response.status_code == 200
    assert hashlib.sha256(response.data).hexdigest() == VECTOR_FILES[SHOP]["decrypted_sha256"]
    assert 'filename="shop-2026-11-30.sql.gz"' in response.headers["Content-Disposition"]
    response.close()
    data = bytearray((folder / SHOP).read_bytes())
    data[100] ^= 1
    (folder / SHOP).write_bytes(bytes(data))
    refused = client.get(f"/browse/local/file?path={SHOP}")
    assert refused.status_code == 422 and b"integrity" in refused.data


def test_a_broken_sidecar_refuses_its_backup_but_gives_way_to_an_oncelink_header(app, client, folder):
    token = mint(app, SHOP)
    own = mint(app, "own.sql.gz.enc")
    (folder / dbackup.sidecar_name(SHOP)).write_text('{"encryption": {"iv": "00"}}')
    (folder / dbackup.sidecar_name("own.sql.gz.enc")).write_text("{broken")
    refused = client.get(f"/api/storage/public-download?token={token}")
    assert refused.status_code == 422 and "sidecar" in refused.get_json()["error"]
    delivered = client.get(f"/api/storage/public-download?token={own}", buffered=True)
    assert delivered.status_code == 200 and delivered.data == b"own dump"
    shutil.copyfile(VECTORS / dbackup.sidecar_name(SHOP), folder / dbackup.sidecar_name(SHOP))
    repaired = client.get(f"/api/storage/public-download?token={token}", buffered=True)  # not used before
    assert hashlib.sha256(repaired.data).hexdigest() == VECTOR_FILES[SHOP]["decrypted_sha256"]


def test_a_sidecar_that_is_not_json_leaves_the_row_as_the_file_itself_says(client, auth, folder):
    auth.login("viewer")
    (folder / dbackup.sidecar_name("plain.sql")).write_text("not a sidecar")  # not an .enc: stays a row
    (folder / dbackup.sidecar_name("own.sql.gz.enc")).write_text("{broken")
    entries = api_entries(client)
    assert "own.sql.gz.enc.meta.json" not in entries and "plain.sql.meta.json" in entries
    assert (entries["own.sql.gz.enc"]["format"], entries["own.sql.gz.enc"]["profile"]) == ("oncelink", "main")


def names_listed(storage, order=Order()) -> list[str]:
    return [entry.name for entry in every_entry(storage, "", order, limit=300)]


def expected_names(folder) -> list[str]:
    """Every name but the sidecars whose backup is beside them, as a fresh look at the folder says."""
    names = set(os.listdir(folder))
    return sorted(n for n in names if not (dbackup.is_sidecar(n) and dbackup.backup_name(n) in names))


@pytest.mark.parametrize("watched", [True, False], ids=["watched", "unwatched"])
@pytest.mark.parametrize("sort", ["size", "date"])
def test_a_kept_scan_patched_name_by_name_folds_as_a_fresh_scan_would(
    backups, scans, sort, watched, monkeypatch
):
    """A folder large enough to be kept: backups and sidecars come and go in every order of arrival,
    followed by the folder's inotify watch, or (unwatched, as on NFS) by reading its names again."""
    monkeypatch.setattr(kept_scans, "RACY_SECONDS", -1.0)  # kept although just written, as a second later
    if not watched:
        monkeypatch.setattr(watching, "LOCAL_FILESYSTEMS", frozenset())
    backups.mkdir(parents=True, exist_ok=True)
    for number in range(kept_scans.KEEP_FROM + 10):
        (backups / f"file-{number:05d}.bin").write_bytes(b"x" * (number % 7))
    storage = LocalStorage(str(backups))
    order = Order(Sort(sort))
    assert names_listed(storage, order) and scans == [True]

    def check():
        assert sorted(names_listed(storage, order)) == expected_names(backups)

    for name in ["a.sql.enc", "b.sql.enc"]:
        (backups / name).write_bytes(b"sealed")
    (backups / dbackup.sidecar_name("a.sql.enc")).write_text("{}")  # a sidecar with its backup
    check()
    (backups / dbackup.sidecar_name("c.sql.enc")).write_text("{}")  # a sidecar before its backup
    check()
    (backups / "c.sql.enc").write_bytes(b"sealed")
    check()
    (backups / "a.sql.enc").unlink()  # a backup gone: its sidecar is a row again
    check()
    assert scans == [True] + [False] * (0 if watched else 4)  # watched: no read; else names, no stat each
    assert kept_scans.snapshots.get((storage.cache_key, "")).sidecars == {"c.sql.enc"}
