"""S3 storages against moto's standalone S3 server over HTTP: the adapter, the CLI and the API."""

from __future__ import annotations

import gc
import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.storages import uses_s3
from db import connect
from storage.base import FileMissing, NotAFile, StorageError, UnsafePath
from storage.s3 import S3Settings, S3Storage, load_service_model, s3_client
from tests.conftest import add_s3, mint, seal
from tests.helpers import database_text, every_entry
from tests.test_storage_local import HOSTILE_PATHS

BUCKET = "s3-tests"
BIG = os.urandom(3 * 1024 * 1024 + 7)


@pytest.fixture(scope="module")
def bucket(moto):
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)
    objects = {
        "db/2026-11-25.sql.gz": b"dump of the 25th",
        "db/old/2026-11-01.sql.gz": b"older dump",
        "big.bin": BIG,
        "other-team/secret.txt": b"not yours",
        "db/../escape": b"a key with dots in it",
        "db//doubled.sql.gz": b"a key with an empty name in it: no path names it",
    }
    objects |= {f"many/k{n:04d}.tar": b"x" for n in range(1100)}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: s3.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]), objects.items()))
    return moto


def storage(moto, prefix: str = "", **settings) -> S3Storage:
    options = {"access_key_id": "test", "secret_access_key": "test", "path_style": True, **settings}
    return S3Storage(S3Settings(BUCKET, prefix=prefix, endpoint_url=moto.url, **options))


def test_listing_by_folder_in_s3s_own_order(bucket):
    """By key, as S3 lists it: a folder sorts as its name with "/", among the files."""
    top = every_entry(storage(bucket), "")
    assert [(e.name, e.is_dir) for e in top] == [
        ("big.bin", False),
        ("db", True),
        ("many", True),
        ("other-team", True),
    ]
    assert top[0].size == len(BIG) and top[0].mtime > 0
    expected = [("db/..", True), ("db/2026-11-25.sql.gz", False), ("db/old", True)]
    assert [(e.path, e.is_dir) for e in every_entry(storage(bucket), "db")] == expected
    assert [(e.path, e.is_dir) for e in every_entry(storage(bucket), "db", limit=1)] == expected


def test_listing_past_a_thousand_keys(bucket):
    entries = every_entry(storage(bucket), "many")
    assert len(entries) == 1100 and entries[-1].path == "many/k1099.tar"


def test_prefix_isolation(bucket):
    scoped = storage(bucket, prefix="db/")
    assert [e.path for e in every_entry(scoped, "")] == ["..", "2026-11-25.sql.gz", "old"]
    assert scoped.stat("old/2026-11-01.sql.gz").size == len(b"older dump")
    for outside in ("../other-team/secret.txt", "../big.bin", "/other-team/secret.txt", ".."):
        with pytest.raises(UnsafePath):
            scoped.stat(outside)
    with pytest.raises(FileMissing):
        scoped.stat("other-team/secret.txt")  # means db/other-team/secret.txt: not there
    with pytest.raises(UnsafePath):
        every_entry(scoped, "../other-team")


@pytest.mark.parametrize("path", [p for p in HOSTILE_PATHS if "link" not in p])
def test_hostile_paths_are_refused(bucket, path):
    with pytest.raises(UnsafePath):
        storage(bucket).stat(path)


def test_stat_folder_and_missing(bucket):
    with pytest.raises(NotAFile):
        storage(bucket).stat("db")
    with pytest.raises(FileMissing):
        storage(bucket).stat("nope.tar")
    with pytest.raises(FileMissing):
        every_entry(storage(bucket), "nope")


def test_ranged_reads(bucket):
    with storage(bucket).open("big.bin") as source:
        source.seek(1000)
        assert source.read(10) == BIG[1000:1010]
        assert source.read(5) == BIG[1010:1015]
        source.seek(len(BIG) - 5)
        assert source.read(100) == BIG[-5:]
        assert source.read(100) == b""
        with pytest.raises(OSError):
            source.fileno()  # no descriptor: the server streams it instead of sendfile


def test_check_says_what_is_wrong(bucket, start_moto):
    assert "is readable" in storage(bucket).check()
    with pytest.raises(StorageError, match="does not exist"):
        S3Storage(
            S3Settings(
                "no-such-bucket",
                endpoint_url=bucket.url,
                path_style=True,
                access_key_id="test",
                secret_access_key="test",
            )
        ).check()
    strict = start_moto(INITIAL_NO_AUTH_ACTION_COUNT="0")  # moto checking credentials like AWS
    with pytest.raises(StorageError, match="credentials were refused"):
        S3Storage(
            S3Settings(
                BUCKET,
                endpoint_url=strict.url,
                path_style=True,
                access_key_id="AKIAWRONG",
                secret_access_key="wrong",
            )
        ).check()
    with pytest.raises(StorageError, match="Cannot reach"):
        S3Storage(
            S3Settings(
                BUCKET,
                endpoint_url="http://127.0.0.1:9",
                path_style=True,
                access_key_id="test",
                secret_access_key="test",
            )
        ).check()


def test_cli_add_test_and_list_never_show_the_secret(app, runner, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    added = runner.invoke(
        args=[
            "storages",
            "add-s3",
            "offsite",
            "--bucket",
            BUCKET,
            "--prefix",
            "db",
            "--endpoint-url",
            bucket.url,
            "--path-style",
        ]
    )
    assert added.exit_code == 0, added.output
    assert "very-secret-value" not in added.output
    listing = runner.invoke(args=["storages", "list"]).output
    assert f"s3://{BUCKET}/db at {bucket.url}" in listing and "very-secret-value" not in listing
    tested = runner.invoke(args=["storages", "test", "offsite"])
    assert tested.exit_code == 0 and "is readable under 'db/'" in tested.output
    db = connect(app.config["DATABASE"])
    assert "very-secret-value" not in database_text(db)
    db.close()
    runner.invoke(
        args=[
            "storages",
            "add-s3",
            "gone",
            "--bucket",
            "no-such-bucket",
            "--endpoint-url",
            bucket.url,
            "--path-style",
        ]
    )
    missing = runner.invoke(args=["storages", "test", "gone"])
    assert missing.exit_code != 0 and "does not exist" in missing.output


def test_api_lists_and_mints_on_s3(app, client, auth, bucket):
    add_s3(app, "offsite", bucket.url, BUCKET, prefix="db")
    auth.login("operator")
    entries = client.get("/api/storage/offsite/files?path=old").get_json()["entries"]
    assert [e["path"] for e in entries] == ["old/2026-11-01.sql.gz"]
    minted = client.post(
        "/api/storage/offsite/download-url", json={"file": "2026-11-25.sql.gz"}, headers=auth.headers()
    ).get_json()
    assert minted["success"] and minted["delivery"] == "proxy"
    token = minted["url"].split("token=")[1]
    assert (
        client.get(f"/api/storage/public-download?token={token}", buffered=True).data == b"dump of the 25th"
    )
    assert (
        client.post(
            "/api/storage/offsite/download-url", json={"file": "nope"}, headers=auth.headers()
        ).status_code
        == 404
    )


def test_a_missing_bucket_is_a_clear_503_at_minting(app, client, auth, bucket):
    add_s3(app, "gone", bucket.url, "no-such-bucket")
    auth.login("operator")
    response = client.post("/api/storage/gone/download-url", json={"file": "x"}, headers=auth.headers())
    assert response.status_code == 503 and "does not exist" in response.get_json()["error"]


def test_redirect_mode_through_the_test_client(app, client, bucket):
    add_s3(app, "direct", bucket.url, BUCKET, redirect=True)
    token = mint(app, "db/2026-11-25.sql.gz", storage="direct")
    head = client.head(f"/api/storage/public-download?token={token}")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(b"dump of the 25th"))
    response = client.get(f"/api/storage/public-download?token={token}")
    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"{bucket.url}/{BUCKET}/db/2026-11-25.sql.gz?")
    assert "X-Amz-Expires=30" in response.headers["Location"]
    assert response.headers["Cache-Control"] == "no-store"
    assert client.get(f"/api/storage/public-download?token={token}").status_code == 410


def test_listing_reads_headers_of_enc_objects_only(app, client, auth, bucket):
    sealed = seal(app, "main", b"secret dump")
    s3 = bucket.client()
    s3.put_object(Bucket=BUCKET, Key="enc/dump.sql.gz.enc", Body=sealed)
    s3.put_object(Bucket=BUCKET, Key="enc/unlabelled.bin", Body=sealed)
    add_s3(app, "offsite", bucket.url, BUCKET)
    auth.login("viewer")
    entries = {e["name"]: e for e in client.get("/api/storage/offsite/files?path=enc").get_json()["entries"]}
    assert (entries["dump.sql.gz.enc"]["encrypted"], entries["dump.sql.gz.enc"]["profile"]) == (True, "main")
    assert entries["unlabelled.bin"]["encrypted"] is False  # not sniffed: one GET per object is not cheap


def test_downloads_make_as_few_requests_as_they_can(app, client, bucket):
    """Plain: one HEAD and one GET. Decrypted: the final-chunk check is one extra bounded GET, after
    the look for a DBackup sidecar beside the `.enc` file (a HEAD, and a LIST when it is missing)."""
    bucket.client().put_object(Bucket=BUCKET, Key="enc/big.bin.enc", Body=seal(app, "main", BIG))
    add_s3(app, "counted", bucket.url, BUCKET)
    settings = S3Settings(
        BUCKET, endpoint_url=bucket.url, path_style=True, access_key_id="test", secret_access_key="test"
    )
    calls: list[str] = []
    s3_client(settings).meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    for path, expected, requests in [
        ("big.bin", BIG, ["HeadObject", "GetObject"]),
        ("enc/big.bin.enc", BIG, ["HeadObject", "HeadObject", "ListObjectsV2", "GetObject", "GetObject"]),
    ]:
        token = mint(app, path, storage="counted")
        calls.clear()
        response = client.get(f"/api/storage/public-download?token={token}", buffered=True)
        assert response.data == expected
        assert calls == requests


def test_redirect_keeps_a_non_ascii_name_intact(app, client, bucket):
    name = "Sauvegarde été.sql.gz"
    bucket.client().put_object(Bucket=BUCKET, Key=name, Body=b"dump")
    add_s3(app, "direct2", bucket.url, BUCKET, redirect=True)
    location = client.get(f"/api/storage/public-download?token={mint(app, name, storage='direct2')}").location
    fetched = urllib.request.urlopen(location)  # what a browser following the redirect gets from S3
    disposition = fetched.headers["Content-Disposition"]
    assert disposition.isascii()
    assert disposition == (
        "attachment; filename=\"Sauvegarde ete.sql.gz\"; filename*=UTF-8''Sauvegarde%20%C3%A9t%C3%A9.sql.gz"
    )
    assert fetched.read() == b"dump"


def test_an_object_replaced_mid_read_is_never_read_half_old_half_new(bucket):
    s3, old, new = bucket.client(), os.urandom(3 * 1024 * 1024), os.urandom(3 * 1024 * 1024)
    s3.put_object(Bucket=BUCKET, Key="replaced.bin", Body=old)
    entry, source = storage(bucket).open_file("replaced.bin")
    with source:
        assert source.read(1024) == old[:1024]
        s3.put_object(Bucket=BUCKET, Key="replaced.bin", Body=new)
        source.seek(2 * 1024 * 1024)  # a GET of its own, after the replacement
        with pytest.raises(StorageError, match="replaced while it was read"):
            source.read(1024)
    _, fresh = storage(bucket).open_file("replaced.bin")
    with fresh:
        assert fresh.read() == new


def test_in_a_versioned_bucket_a_reader_keeps_to_the_version_it_opened(bucket):
    s3, old, new = bucket.client(), os.urandom(2 * 1024 * 1024), os.urandom(2 * 1024 * 1024)
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="versioned", Key="kept.bin", Body=old)
    options = {"access_key_id": "test", "secret_access_key": "test", "path_style": True}
    versioned = S3Storage(S3Settings("versioned", endpoint_url=bucket.url, **options))
    entry, source = versioned.open_file("kept.bin")
    with source:
        assert source.read(1024) == old[:1024]
        s3.put_object(Bucket="versioned", Key="kept.bin", Body=new)
        source.seek(1024 * 1024)
        assert source.read() == old[1024 * 1024 :]


def test_clients_share_the_service_model_a_worker_loads_as_it_starts():
    """A client for another storage keeps a thousand objects or so alive rather than S3's whole
    service model again (some 35,000, each one more for the garbage collector to walk)."""
    load_service_model()
    gc.collect()
    before = len(gc.get_objects())
    s3_client(
        S3Settings("other", endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b")
    )
    gc.collect()
    assert len(gc.get_objects()) - before < 5000


def test_a_worker_loads_s3s_model_at_start_only_where_a_storage_is_a_bucket(app, bucket, tmp_path):
    assert not uses_s3(app.config["DATABASE"])  # the default local storage alone
    add_s3(app, "bucket", bucket.url, BUCKET)
    assert uses_s3(app.config["DATABASE"])
    assert not uses_s3(str(tmp_path / "no-schema-yet.sqlite3"))
