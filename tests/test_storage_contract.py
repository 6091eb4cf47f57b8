"""The storage contract: every adapter (a local folder, S3 on moto, SFTP on a real sshd, WebDAV on a
real wsgidav) lists, stats, reads ranges and refuses hostile paths the same way. A new adapter is
done when it passes this module."""

from __future__ import annotations

import io
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from defusedxml import ElementTree

from core.delivery import sidecar_of
from core.folding import folded_scan
from core.listings import Order, Sort
from encryption import dbackup
from encryption.format import decrypt_range, encrypt_stream, layout_of, new_header
from storage import sftp_file
from storage.base import Entry, FileMissing, NotAFile, Storage, StorageError, UnsafePath
from storage.local import LocalStorage
from storage.s3 import S3Settings, S3Storage
from storage.sftp import SFTPStorage
from storage.sftp_connect import SFTPSettings
from storage.webdav import WebDAVSettings, WebDAVStorage
from tests.dbackup_files import sidecar_json
from tests.helpers import MIB, every_entry
from tests.servers import WEBDAV_PASSWORD, WEBDAV_USER

BUCKET = "contract"
KINDS = ["local", pytest.param("s3", marks=pytest.mark.live)]
KINDS += [pytest.param("sftp", marks=pytest.mark.live), pytest.param("webdav", marks=pytest.mark.live)]
DATA = os.urandom(3 * MIB + 12345)


numbers = itertools.count()  # each test's own folder (or prefix) on the shared servers


@dataclass
class Backend:
    """A storage and a way to put files into it behind its back, as the backup job would."""

    kind: str
    storage: Storage
    put: Callable[[str, bytes], None]
    folder: Path | None = None  # where the files are on this machine (not for S3)


def folder_backend(kind: str, folder: Path, storage: Storage) -> Backend:
    def put(path: str, data: bytes) -> None:
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    folder.mkdir(parents=True, exist_ok=True)
    return Backend(kind, storage, put, folder)


def sftp_storage(server, folder: Path) -> SFTPStorage:
    settings = SFTPSettings(
        "127.0.0.1",
        server.user,
        str(folder),
        server.port,
        (server.fingerprint,),
        private_key=server.client_key,
    )
    return SFTPStorage(settings)


def make_backend(request, kind: str, name: str) -> Backend:
    """A fresh, empty storage of `kind` for one test."""
    if kind == "local":
        folder = request.getfixturevalue("tmp_path") / "local"
        return folder_backend(kind, folder, LocalStorage(str(folder)))
    if kind == "s3":
        moto = request.getfixturevalue("moto")
        client = moto.client()
        client.create_bucket(Bucket=BUCKET)
        settings = S3Settings(BUCKET, name, None, moto.url, True, False, "test", "test")
        return Backend(
            kind,
            S3Storage(settings),
            lambda path, data: client.put_object(Bucket=BUCKET, Key=f"{name}/{path}", Body=data),
        )
    if kind == "sftp":
        server = request.getfixturevalue("sshd")
        folder = server.root / name
        folder.mkdir(parents=True)
        return folder_backend(kind, folder, sftp_storage(server, folder))
    server = request.getfixturevalue("webdav")
    folder = server.root / name
    folder.mkdir(parents=True)
    settings = WebDAVSettings(server.url + name + "/", WEBDAV_USER, WEBDAV_PASSWORD)
    return folder_backend(kind, folder, WebDAVStorage(settings))


@pytest.fixture(params=KINDS)
def backend(request) -> Backend:
    return make_backend(request, request.param, f"t{next(numbers)}")


# S3 has no symlinks; a WebDAV server follows its own, unseen by its clients.
@pytest.fixture(params=["local", "sftp"])
def backend_with_symlinks(request) -> Backend:
    return make_backend(request, request.param, f"t{next(numbers)}")


def filled(backend: Backend) -> Backend:
    backend.put("big.bin", DATA)
    backend.put("Zeta.txt", b"z" * 10)
    backend.put("nightly/db-1.sql.gz", b"one")
    backend.put("nightly/db-2.sql.gz", b"two!")
    backend.put("été/ünïcode file.txt", b"non-ASCII")
    return backend


def test_listing_has_names_kinds_sizes_and_times(backend):
    storage = filled(backend).storage
    entries = {entry.name: entry for entry in every_entry(storage, "", limit=2)}  # pages of two
    assert set(entries) == {"big.bin", "Zeta.txt", "nightly", "été"}
    assert entries["nightly"].is_dir and entries["été"].is_dir and not entries["big.bin"].is_dir
    assert entries["big.bin"].size == len(DATA) and entries["Zeta.txt"].size == 10
    assert abs(entries["big.bin"].mtime - time.time()) < 3600
    nightly = every_entry(storage, "nightly")
    assert [(e.path, e.size) for e in nightly] == [("nightly/db-1.sql.gz", 3), ("nightly/db-2.sql.gz", 4)]
    assert [e.path for e in every_entry(storage, "été")] == ["été/ünïcode file.txt"]


def test_listing_in_size_order_descending(backend):
    storage = filled(backend).storage
    files = [e.name for e in every_entry(storage, "nightly", Order(Sort.SIZE, descending=True))]
    assert files == ["db-2.sql.gz", "db-1.sql.gz"]


def test_stat_a_file_a_folder_and_nothing(backend):
    storage = filled(backend).storage
    entry = storage.stat("nightly/db-2.sql.gz")
    assert (entry.name, entry.path, entry.size, entry.is_dir) == (
        "db-2.sql.gz",
        "nightly/db-2.sql.gz",
        4,
        False,
    )
    assert entry.version
    assert storage.stat("été/ünïcode file.txt").size == len("non-ASCII")
    with pytest.raises(NotAFile):
        storage.stat("nightly")
    with pytest.raises(FileMissing):
        storage.stat("nightly/db-3.sql.gz")
    with pytest.raises(FileMissing):
        storage.scan("no-such-folder")


def test_a_rewritten_file_has_a_new_version(backend):
    filled(backend)
    before = backend.storage.stat("Zeta.txt").version
    backend.put("Zeta.txt", b"Z" * 11)  # within the same second: SFTP's dates are whole seconds
    assert backend.storage.stat("Zeta.txt").version != before


@pytest.mark.parametrize(
    "start, length", [(0, 100), (1_500_000, 70_000), (len(DATA) - 1000, 1000), (len(DATA) - 10, 50)]
)
def test_ranged_reads(backend, start, length):
    entry, source = filled(backend).storage.open_file("big.bin")
    with source:
        assert entry.size == len(DATA)
        source.seek(start)
        assert source.read(length) == DATA[start : start + length]


def test_a_whole_read_then_a_read_back_at_the_start(backend):
    _, source = filled(backend).storage.open_file("big.bin")
    with source:
        header = source.read(64)
        source.seek(0)
        assert header + source.read() == DATA[:64] + DATA


def test_encryption_is_detected_and_decrypts(backend):
    key = os.urandom(32)
    sealed = io.BytesIO()
    encrypt_stream(io.BytesIO(DATA), sealed, key, new_header(os.urandom(16)))
    filled(backend).put("db.sql.gz.enc", sealed.getvalue())
    entry, source = backend.storage.open_file("db.sql.gz.enc")
    with source:
        layout = layout_of(source, entry.size)
        assert layout is not None and layout.plaintext_size == len(DATA)
        middle = b"".join(decrypt_range(source, key, layout, 2_000_000, 2_100_000))
    assert middle == DATA[2_000_000:2_100_000]
    _, plain = backend.storage.open_file("big.bin")
    with plain:
        assert layout_of(plain, len(DATA)) is None


def test_a_dbackup_backup_is_folded_with_its_sidecar_verified_and_decrypted_from_the_middle(backend):
    key, iv = os.urandom(32), os.urandom(16)
    ciphertext, tag = dbackup.encrypt(DATA, key, iv)
    filled(backend).put("shop.sql.gz.enc", ciphertext)
    backend.put(dbackup.sidecar_name("shop.sql.gz.enc"), sidecar_json("p-1", iv, tag).encode())
    folded = folded_scan(backend.storage, "")
    assert "shop.sql.gz.enc.meta.json" not in folded.scan.names and folded.sidecars == {"shop.sql.gz.enc"}
    entry, source = backend.storage.open_file("shop.sql.gz.enc")
    with source:
        sidecar = sidecar_of(backend.storage, entry)
        assert (sidecar.profile_id, sidecar.iv, sidecar.tag) == ("p-1", iv, tag)
        dbackup.verify(source, key, sidecar, entry.size)
        first = dbackup.first_counter(key, iv)
        middle = b"".join(dbackup.decrypt_range(source, key, first, 2_000_001, 2_100_000))
    assert middle == DATA[2_000_001:2_100_000]


HOSTILE = ["../big.bin", "/etc/passwd", "nightly/../../x", "..", "a\\..\\b", "nightly/\x00", "nightly/\ud800"]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_paths_are_refused(backend, path):
    storage = filled(backend).storage
    for look in (storage.stat, storage.open, storage.scan):
        with pytest.raises(UnsafePath):
            look(path)


def test_a_symlink_out_of_the_root_leads_nowhere(backend_with_symlinks):
    backend = filled(backend_with_symlinks)
    os.symlink("/etc", backend.folder / "outside")
    os.symlink("nightly/db-1.sql.gz", backend.folder / "inside")
    storage = backend.storage
    with pytest.raises(UnsafePath):
        storage.stat("outside/passwd")
    with pytest.raises(UnsafePath):
        storage.open("outside/passwd")
    names = {entry.name for entry in every_entry(storage, "")}
    assert "outside" not in names and "inside" in names
    assert storage.stat("inside").size == 3


def test_the_first_bytes_of_many_files_at_once(backend):
    storage = filled(backend).storage
    wanted = ["big.bin", "nightly/db-2.sql.gz", "Zeta.txt", "nightly/db-1.sql.gz", "été/ünïcode file.txt"]
    entries = [storage.stat(path) for path in wanted] + [Entry("gone.bin", "gone.bin", 10, 0.0, False)]
    assert storage.read_heads(entries, 6) == [DATA[:6], b"two!", b"z" * 6, b"one", b"non-AS", None]


def test_check_says_the_storage_answers(backend):
    assert filled(backend).storage.check()


SERVERS = {"s3": "start_moto", "sftp": "start_sshd", "webdav": "start_webdav"}


@pytest.mark.live
@pytest.mark.parametrize("kind", SERVERS)
def test_a_server_dying_mid_read_is_a_storage_error(request, kind, tmp_path):
    server = request.getfixturevalue(SERVERS[kind])()
    data = os.urandom(24 * MIB)
    if kind == "s3":
        server.client().create_bucket(Bucket=BUCKET)
        server.client().put_object(Bucket=BUCKET, Key="big.bin", Body=data)
        storage = S3Storage(S3Settings(BUCKET, "", None, server.url, True, False, "test", "test"))
    elif kind == "sftp":
        (server.root / "big.bin").write_bytes(data)
        storage = sftp_storage(server, server.root)
    else:
        (server.root / "big.bin").write_bytes(data)
        storage = WebDAVStorage(WebDAVSettings(server.url, WEBDAV_USER, WEBDAV_PASSWORD))
    _, source = storage.open_file("big.bin")
    with source:
        assert source.read(MIB) == data[:MIB]
        server.stop()
        with pytest.raises(StorageError):
            while source.read(256 * 1024):
                pass
    with pytest.raises(StorageError):
        storage.stat("big.bin")


def test_a_webdav_answer_for_a_folder_outside_the_base_is_refused(webdav):
    """A server (or something between) answering with an href outside the storage's folder."""
    storage = WebDAVStorage(WebDAVSettings(webdav.url + "inner/", WEBDAV_USER, WEBDAV_PASSWORD))
    answer = ElementTree.fromstring(
        '<d:response xmlns:d="DAV:"><d:href>/dav/other/secret.txt</d:href><d:propstat><d:prop>'
        "<d:getcontentlength>5</d:getcontentlength></d:prop><d:status>HTTP/1.1 200 OK</d:status>"
        "</d:propstat></d:response>"
    )
    with pytest.raises(UnsafePath):
        storage.resource(answer)


def test_an_sftp_server_that_answers_less_than_asked_gets_smaller_requests(request, monkeypatch):
    """OpenSSH answers reads of up to 255 KiB: asked for 1 MiB, it answers less, and the reader asks
    for what it answered from then on, its pipeline still whole."""
    monkeypatch.setattr(sftp_file, "REQUEST_SIZE", 1024 * 1024)
    backend = make_backend(request, "sftp", f"t{next(numbers)}")
    data = os.urandom(3 * MIB + 12345)
    backend.put("large.bin", data)
    _, source = backend.storage.open_file("large.bin")
    with source:
        assert source.read() == data
        assert source._request_size == 261_120


def test_a_file_replaced_mid_read_is_never_read_half_old_half_new(backend):
    """A backup job that replaces a file (a new one renamed over it, or a new S3 object) while a
    transfer reads it: the reader goes on with the old bytes or fails; it never hands out new ones."""
    filled(backend)
    new = os.urandom(len(DATA))
    entry, source = backend.storage.open_file("big.bin")
    with source:
        assert source.read(1000) == DATA[:1000]
        if backend.folder is None:
            backend.put("big.bin", new)
        else:
            (backend.folder / "big.bin.new").write_bytes(new)
            os.replace(backend.folder / "big.bin.new", backend.folder / "big.bin")
        source.seek(2_000_000)  # past what any read-ahead holds: a read of its own
        try:
            assert source.read(1000) == DATA[2_000_000:2_001_000]
        except StorageError as exc:
            assert "replaced while it was read" in str(exc)
