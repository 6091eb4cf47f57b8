"""Adding and editing storages in the domain layer: validation, the data dir kept out, secrets kept sealed."""

from __future__ import annotations

import pytest

from core.storages import (
    LocalPlacement,
    StorageConfigError,
    add_local_storage,
    add_s3_storage,
    update_local_storage,
    update_s3_storage,
)
from db.storages import get_storage
from storage import s3_settings
from storage.base import UnknownStorage
from storage.s3 import S3Settings


@pytest.fixture
def keyring(app):
    return app.extensions["oncelink_keyring"]


def test_an_invalid_id_creates_no_folder(db, tmp_path):
    with pytest.raises(StorageConfigError, match="lower-case"):
        add_local_storage(db, "Bad Id", str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("where", ["instance", "instance/sub", "."])
def test_the_data_dir_is_never_served(app, db, tmp_path, where):
    with pytest.raises(StorageConfigError, match="overlaps the data folder"):
        add_local_storage(db, "nas", str(tmp_path / where), placement=LocalPlacement(tmp_path / "instance"))
    assert get_storage(db, "nas") is None


def test_an_empty_path_is_refused(db):
    with pytest.raises(StorageConfigError, match="path is required"):
        add_local_storage(db, "nas", "  ")


def test_update_local_storage(db, tmp_path):
    add_local_storage(db, "nas", str(tmp_path / "a"))
    record = update_local_storage(db, "nas", str(tmp_path / "b"), "The NAS")
    assert get_storage(db, "nas") == record
    assert record.config == {"path": str(tmp_path / "b")} and record.name == "The NAS"
    assert (tmp_path / "b").is_dir()


def test_update_refuses_unknown_storages_and_other_kinds(db, keyring, tmp_path):
    with pytest.raises(UnknownStorage):
        update_local_storage(db, "nope", str(tmp_path))
    with pytest.raises(StorageConfigError, match="not a s3 storage"):
        update_s3_storage(db, keyring, "local", S3Settings("bucket"))


def test_update_s3_keeps_or_replaces_the_sealed_secret(db, keyring):
    add_s3_storage(db, keyring, "s3", S3Settings("one", access_key_id="AK", secret_access_key="first"))
    sealed = get_storage(db, "s3").config["secret_access_key"]
    update_s3_storage(db, keyring, "s3", S3Settings("two", access_key_id="AK2"), "Bucket two")
    record = get_storage(db, "s3")
    assert record.config["secret_access_key"] == sealed and record.name == "Bucket two"
    assert s3_settings(record, keyring) == S3Settings("two", access_key_id="AK2", secret_access_key="first")
    update_s3_storage(db, keyring, "s3", S3Settings("two", secret_access_key="second"))
    assert s3_settings(get_storage(db, "s3"), keyring).secret_access_key == "second"
    assert "second" not in str(get_storage(db, "s3").config)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (S3Settings(""), "bucket name is required"),
        (S3Settings("b", endpoint_url="minio:9000"), "http:// or https://"),
        (S3Settings("b", endpoint_url="ftp://host"), "http:// or https://"),
    ],
)
def test_s3_settings_are_checked(db, keyring, settings, message):
    with pytest.raises(StorageConfigError, match=message):
        add_s3_storage(db, keyring, "s3", settings)


def test_a_long_name_is_refused(db, tmp_path):
    with pytest.raises(StorageConfigError, match="at most 100"):
        add_local_storage(db, "nas", str(tmp_path / "nas"), "x" * 101)
