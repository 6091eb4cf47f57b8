"""The local adapter: listing, stat, open, and every way a path could try to leave the root.

Everything that touches the disk runs twice: with openat2(RESOLVE_BENEATH) and with the walk
that stands in for it on kernels without it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile

import pytest

from storage import beneath
from storage.base import (
    Entry,
    FileMissing,
    NotAFile,
    StorageError,
    Unreadable,
    UnsafePath,
    clean_relative_path,
)
from storage.local import LocalStorage, refusal
from tests.conftest import mint
from tests.helpers import HAS_RENAMEAT2, Swapper, every_entry, tally_until_seen

NOBODY = 65534

HOSTILE_PATHS = [
    "..",
    "../secret.txt",
    "../../../../../../etc/passwd",
    "a/../../secret.txt",
    "a/b/../../../secret.txt",
    "./../secret.txt",
    "folder/..",
    "folder/../..",
    "/etc/passwd",
    "//etc/passwd",
    "/",
    "\\etc\\passwd",
    "..\\secret.txt",
    "folder\\..\\..\\secret.txt",
    "C:\\Windows\\win.ini",
    "db.sql\x00.txt",
    "\x00",
    "line\nbreak",
    "tab\there",
    "esc\x1b[31m",
    "del\x7f",
    "a" * 5000,
    "",
    ".",
    "./",
    "escape-file-link",
    "escape-dir-link/secret.txt",
    "folder/escape-link",
]


def openat2_works() -> bool:
    slash = os.open("/", os.O_PATH)
    try:
        os.close(beneath.openat2(slash, ".", os.O_PATH, beneath.RESOLVE_BENEATH))
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return False
        raise
    finally:
        os.close(slash)
    return True


@pytest.fixture(params=["openat2", "walk"])
def resolution(request, monkeypatch):
    """How paths are resolved beneath the root: the kernel's openat2, or the walk that replaces it."""
    if request.param == "openat2" and not openat2_works():
        pytest.skip("this kernel has no openat2")
    monkeypatch.setattr(beneath, "use_openat2", request.param == "openat2")
    return request.param


def make_tree(tmp_path):
    """A root with files, folders and symlinks in and out, and a secret beside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not serve")
    root = tmp_path / "root"
    (root / "folder" / "deeper").mkdir(parents=True)
    (root / "db.sql.gz").write_bytes(b"dump")
    (root / "folder" / "a.tar").write_bytes(b"x" * 10)
    (root / "folder" / "deeper" / "b.tar").write_bytes(b"y")
    (root / "escape-file-link").symlink_to(outside / "secret.txt")
    (root / "escape-dir-link").symlink_to(outside)
    (root / "folder" / "escape-link").symlink_to("../../outside/secret.txt")
    (root / "inside-link").symlink_to("folder/a.tar")
    return root


@pytest.fixture
def root(tmp_path, resolution):
    return make_tree(tmp_path)


def read(storage: LocalStorage, path: str) -> bytes:
    with storage.open(path) as f:
        return f.read()


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_refused(root, path):
    storage = LocalStorage(str(root))
    with pytest.raises(UnsafePath):
        storage.stat(path)
    with pytest.raises(UnsafePath):
        storage.open(path)


def test_there_are_at_least_twenty_hostile_paths():
    assert len(set(HOSTILE_PATHS)) >= 20


@pytest.mark.parametrize(
    ("given", "clean"),
    [
        ("db.sql.gz", "db.sql.gz"),
        ("./folder//a.tar", "folder/a.tar"),
        ("folder/./deeper/b.tar", "folder/deeper/b.tar"),
        ("..hidden", "..hidden"),
        ("na..me", "na..me"),
        ("%2e%2e/x", "%2e%2e/x"),
        ("über.tar", "über.tar"),
    ],
)
def test_harmless_paths_are_normalised(given, clean):
    assert clean_relative_path(given) == clean


def test_list_shows_folders_first_and_hides_links_that_escape(root):
    entries = every_entry(LocalStorage(str(root)), "")
    assert [(e.name, e.is_dir) for e in entries] == [
        ("folder", True),
        ("db.sql.gz", False),
        ("inside-link", False),
    ]
    assert entries[1].size == 4 and entries[1].path == "db.sql.gz"


def test_list_subfolder_gives_paths_from_the_root(root):
    entries = every_entry(LocalStorage(str(root)), "folder")
    assert [e.path for e in entries] == ["folder/deeper", "folder/a.tar"]


def test_list_refuses_hostile_folder(root):
    with pytest.raises(UnsafePath):
        every_entry(LocalStorage(str(root)), "../outside")


def test_stat_and_open_a_file_and_a_link_inside(root):
    storage = LocalStorage(str(root))
    assert storage.stat("inside-link").size == 10
    with storage.open("folder/deeper/b.tar") as f:
        assert f.read() == b"y"
        assert f.fileno() >= 0


def test_missing_and_folder_and_unavailable_root(root, tmp_path):
    storage = LocalStorage(str(root))
    with pytest.raises(FileMissing):
        storage.stat("nope.tar")
    with pytest.raises(NotAFile):
        storage.stat("folder")
    with pytest.raises(FileMissing):
        storage.open("nope.tar")
    with pytest.raises(StorageError):
        LocalStorage(str(tmp_path / "gone")).stat("db.sql.gz")


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (errno.ENOENT, FileMissing, "No such file: a/b.tar"),
        (errno.ENOTDIR, FileMissing, "No such file: a/b.tar"),
        (errno.EISDIR, NotAFile, "Not a file: a/b.tar"),
        (errno.ENXIO, NotAFile, "Not a file: a/b.tar"),
        (errno.EXDEV, UnsafePath, "leads outside the storage"),
        (errno.ELOOP, UnsafePath, "too many symbolic links"),
        (errno.ENAMETOOLONG, UnsafePath, "too long"),
        (errno.EACCES, Unreadable, "not allowed to read a/b.tar"),
        (errno.EPERM, Unreadable, "not allowed to read a/b.tar"),
        (errno.EIO, StorageError, "Cannot read a/b.tar: Input/output error."),
        (errno.EMFILE, StorageError, "Cannot read a/b.tar"),
    ],
)
def test_each_os_error_of_a_path_has_its_own_answer(code, kind, words):
    exception = refusal(OSError(code, os.strerror(code)), "a/b.tar")
    assert type(exception) is kind and words in str(exception)


@pytest.fixture
def odd_root(root, tmp_path):
    """The root, plus what only a hostile or careless writer of the folder would put there."""
    (root / "up").symlink_to("..")
    (root / "absolute-inside-link").symlink_to(root / "folder" / "a.tar")
    (root / "loop").symlink_to("loop")
    (root / "ping").symlink_to("pong")
    (root / "pong").symlink_to("ping/x")
    (root / "dangling").symlink_to("nothing-here")
    os.mkfifo(root / "fifo")
    return root


def file_entry(path: str) -> Entry:
    return Entry(path.rpartition("/")[2], path, 10, 0.0, False)


def test_first_bytes_read_by_name_from_each_folder_and_through_links_only_beneath_the_root(odd_root):
    heads = {
        "db.sql.gz": b"dump",
        "folder/a.tar": b"x" * 8,
        "inside-link": b"x" * 8,  # a symlink: resolved beneath the root
        "absolute-inside-link": None,  # refused, as openat2 refuses an absolute link
        "folder/deeper/b.tar": b"y",
        "escape-file-link": None,
        "folder/escape-link": None,
        "escape-dir-link/secret.txt": None,
        "up/outside/secret.txt": None,
        "loop": None,
        "dangling": None,
        "fifo": None,  # opened without blocking, and not a file
        "folder": None,
        "nope.tar": None,
        "../outside/secret.txt": None,
        "folder/deeper": None,
    }
    storage = LocalStorage(str(odd_root))
    assert storage.read_heads([file_entry(path) for path in heads], 8) == list(heads.values())


def test_first_bytes_of_a_root_gone_are_none(root):
    storage = LocalStorage(str(root))
    shutil.rmtree(root)
    assert storage.read_heads([file_entry("db.sql.gz")], 8) == [None]


@pytest.mark.parametrize(
    ("path", "kind", "words"),
    [
        ("nope.tar", FileMissing, "No such file"),  # ENOENT
        ("folder/nope/a.tar", FileMissing, "No such file"),
        ("db.sql.gz/a.tar", FileMissing, "No such file"),  # ENOTDIR
        ("dangling", FileMissing, "No such file"),
        ("folder", NotAFile, "Not a file"),
        ("folder/deeper", NotAFile, "Not a file"),
        ("fifo", NotAFile, "Not a file"),  # and opening it must not hang
        ("escape-dir-link/secret.txt", UnsafePath, "outside"),  # EXDEV: an absolute link out
        ("folder/escape-link", UnsafePath, "outside"),  # EXDEV: `..` past the root
        ("up/outside/secret.txt", UnsafePath, "outside"),
        ("up/root/db.sql.gz", UnsafePath, "outside"),  # out and back in is still out
        ("absolute-inside-link", UnsafePath, "outside"),  # absolute links are refused, as by openat2
        ("loop", UnsafePath, "too many symbolic links"),  # ELOOP
        ("ping", UnsafePath, "too many symbolic links"),
        ("x" * 300, UnsafePath, "too long"),  # ENAMETOOLONG: one name longer than 255 bytes
        ("/".join(["€€€"] * 1000), UnsafePath, "too long"),  # under 4096 characters, over 4096 bytes
    ],
)
def test_paths_that_cannot_be_served_get_a_clear_refusal(odd_root, path, kind, words):
    storage = LocalStorage(str(odd_root))
    for method in (storage.stat, storage.open):
        with pytest.raises(kind, match=words):
            method(path)


@pytest.mark.parametrize(
    ("link", "target", "path", "content"),
    [
        ("file-link", "folder/a.tar", "file-link", b"x" * 10),
        ("folder-link", "folder", "folder-link/deeper/b.tar", b"y"),
        ("folder/deeper/up-link", "../a.tar", "folder/deeper/up-link", b"x" * 10),
        ("folder/deeper/root-link", "../..", "folder/deeper/root-link/db.sql.gz", b"dump"),
        ("folder/via-dots", "deeper/../../db.sql.gz", "folder/via-dots", b"dump"),
        ("folder/link-to-link", "../inside-link", "folder/link-to-link", b"x" * 10),
    ],
)
def test_symlinks_that_stay_inside_are_followed(root, link, target, path, content):
    (root / link).symlink_to(target)
    storage = LocalStorage(str(root))
    assert storage.stat(path).size == len(content)
    with storage.open(path) as f:
        assert f.read() == content


@pytest.mark.parametrize(("links", "served"), [(40, True), (41, False)])
def test_forty_links_in_a_row_are_followed_and_no_more(root, links, served):
    (root / "link0").symlink_to("db.sql.gz")
    for number in range(1, links):
        (root / f"link{number}").symlink_to(f"link{number - 1}")
    storage = LocalStorage(str(root))
    if served:
        assert read(storage, f"link{links - 1}") == b"dump"
    else:
        with pytest.raises(UnsafePath, match="too many symbolic links"):
            storage.open(f"link{links - 1}")


def test_list_resolves_links_beneath_the_root_and_hides_the_rest(odd_root):
    (odd_root / "folder-link").symlink_to("folder")
    entries = every_entry(LocalStorage(str(odd_root)), "")
    assert [(e.name, e.is_dir) for e in entries] == [
        ("folder", True),
        ("folder-link", True),
        ("db.sql.gz", False),
        ("fifo", False),
        ("inside-link", False),
    ]
    assert [e.path for e in every_entry(LocalStorage(str(odd_root)), "folder-link")] == [
        "folder-link/deeper",
        "folder-link/a.tar",
    ]


@pytest.mark.parametrize(
    ("folder", "kind"),
    [
        ("nope", FileMissing),
        ("db.sql.gz", NotAFile),
        ("escape-dir-link", UnsafePath),
        ("x" * 300, UnsafePath),
    ],
)
def test_list_refuses_what_is_not_a_folder_inside(root, folder, kind):
    with pytest.raises(kind):
        every_entry(LocalStorage(str(root)), folder)


def test_size_and_version_come_from_the_file_that_was_opened(root):
    entry = LocalStorage(str(root)).stat("inside-link")
    info = os.stat(root / "folder" / "a.tar")
    # no st_dev: each host that mounts a shared folder numbers its devices its own way
    assert entry.version == f"{info.st_ino}:{info.st_ctime_ns}:{info.st_mtime_ns}"
    assert (entry.size, entry.mtime, entry.name) == (10, info.st_mtime, "inside-link")


def test_the_root_may_itself_be_a_symlink(root, tmp_path):
    (tmp_path / "configured").symlink_to(root)
    storage = LocalStorage(str(tmp_path / "configured"))
    assert read(storage, "folder/a.tar") == b"x" * 10
    assert "is readable" in storage.check()


@pytest.mark.parametrize("broken", ["missing", "a file"])
def test_a_root_that_is_not_a_folder_is_a_storage_error(tmp_path, resolution, broken):
    if broken == "a file":
        (tmp_path / "root").write_bytes(b"")
    storage = LocalStorage(str(tmp_path / "root"))
    for action in (storage.check, lambda: every_entry(storage, ""), lambda: storage.open("a.tar")):
        with pytest.raises(StorageError, match="not available") as caught:
            action()
        assert type(caught.value) is StorageError


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EPERM])  # no openat2; a seccomp filter older than it
def test_the_walk_takes_over_where_openat2_cannot_be_used(tmp_path, monkeypatch, code):
    def no_openat2(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(beneath, "use_openat2", None)
    monkeypatch.setattr(beneath, "openat2", no_openat2)
    storage = LocalStorage(str(make_tree(tmp_path)))
    assert read(storage, "inside-link") == b"x" * 10
    assert beneath.use_openat2 is False
    with pytest.raises(UnsafePath):
        storage.open("folder/escape-link")


def test_a_path_openat2_will_not_vouch_for_is_decided_by_the_walk(tmp_path, monkeypatch):
    calls = []

    def raced_openat2(*args):  # EAGAIN: a rename raced a `..` during the kernel's resolution
        calls.append(args)
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(beneath, "use_openat2", True)
    monkeypatch.setattr(beneath, "openat2", raced_openat2)
    storage = LocalStorage(str(make_tree(tmp_path)))
    assert read(storage, "inside-link") == b"x" * 10 and calls
    with pytest.raises(UnsafePath):
        storage.open("folder/escape-link")
    assert beneath.use_openat2 is True


@pytest.fixture
def shared_root(resolution):
    """A root that another user can reach: tmp_path sits in a folder only root may enter."""
    base = tempfile.mkdtemp()
    os.chmod(base, 0o755)  # noqa: S103 - the point: another user must be able to enter
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "locked"))
    for name in ("private.bin", "public.bin", "locked/inside.bin"):
        with open(os.path.join(root, name), "wb") as f:
            f.write(b"secret")
    os.chmod(os.path.join(root, "public.bin"), 0o644)
    os.chmod(os.path.join(root, "private.bin"), 0o600)
    os.chmod(os.path.join(root, "locked"), 0o700)
    os.symlink("locked/inside.bin", os.path.join(root, "locked-link"))
    yield root
    shutil.rmtree(base)


def outcome_as_nobody(action) -> str:
    """The name of the exception `action()` raises in a child that has given up root, or "ok".
    (Root may read anything, so a real EACCES needs another user.)"""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(reader)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            try:
                action()
                outcome = "ok"
            except Exception as exc:
                outcome = type(exc).__name__
            os.write(writer, outcome.encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        outcome = pipe.read()
    os.waitpid(pid, 0)
    return outcome


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
@pytest.mark.parametrize(
    ("action", "outcome"),
    [
        (lambda storage: read(storage, "public.bin"), "ok"),
        (lambda storage: read(storage, "private.bin"), "Unreadable"),  # EACCES on the file
        (lambda storage: storage.stat("private.bin"), "ok"),  # its size needs no read permission
        (lambda storage: storage.stat("locked/inside.bin"), "Unreadable"),  # EACCES on a folder
        (lambda storage: read(storage, "locked-link"), "Unreadable"),
        (lambda storage: every_entry(storage, "locked"), "Unreadable"),
        (
            lambda storage: [e.name for e in every_entry(storage, "")],
            "ok",
        ),  # locked-link is hidden, not an error
    ],
)
def test_what_the_server_may_not_read_is_refused_not_an_outage(shared_root, action, outcome):
    assert outcome_as_nobody(lambda: action(LocalStorage(shared_root))) == outcome


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_an_unreadable_root_is_an_outage(shared_root):
    os.chmod(shared_root, 0o700)
    assert outcome_as_nobody(lambda: every_entry(LocalStorage(shared_root), "")) == "StorageError"


SECRET = b"outside the storage: never served"


@pytest.mark.parametrize("target", ["absolute", "relative"])
def test_a_folder_replaced_by_a_symlink_after_minting_serves_nothing_from_outside(
    app, client, auth, backups, tmp_path, resolution, target
):
    (backups / "nightly").mkdir(parents=True)
    (backups / "nightly" / "db.sql.gz").write_bytes(b"inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "db.sql.gz").write_bytes(SECRET)
    token = mint(app, "nightly/db.sql.gz", uses=5)
    shutil.rmtree(backups / "nightly")
    (backups / "nightly").symlink_to(tmp_path / "outside" if target == "absolute" else "../outside")
    auth.login("operator")
    for url in (f"/api/storage/public-download?token={token}", "/browse/local/file?path=nightly/db.sql.gz"):
        response = client.get(url, buffered=True)
        assert response.status_code == 400 and SECRET not in response.data


def test_a_file_the_server_may_not_read_is_403_not_500(app, client, auth, backups, monkeypatch):
    (backups / "db.sql.gz").write_bytes(b"dump")
    token = mint(app, "db.sql.gz")

    def denied(root_fd, path, flags):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr("storage.local.open_beneath", denied)
    auth.login("operator")
    for url in (f"/api/storage/public-download?token={token}", "/browse/local/file?path=db.sql.gz"):
        response = client.get(url, buffered=True)
        assert response.status_code == 403 and b"not allowed to read db.sql.gz" in response.data


@pytest.mark.skipif(not HAS_RENAMEAT2, reason="the C library has no renameat2")
def test_a_folder_swapped_with_a_symlink_out_in_a_loop_never_leads_out(root):
    (root / "rdir").mkdir()
    (root / "rdir" / "secret.txt").write_bytes(b"inside")
    (root / "rdir_alt").symlink_to("../outside")  # where a secret.txt of another size lies
    storage = LocalStorage(str(root))

    def attempt() -> str:
        try:
            assert read(storage, "rdir/secret.txt") == b"inside"
            assert [(e.name, e.size) for e in every_entry(storage, "rdir")] == [("secret.txt", 6)]
            assert storage.read_heads([file_entry("rdir/secret.txt")], 64) in ([b"inside"], [None])
        except (UnsafePath, FileMissing) as exc:
            return type(exc).__name__
        return "served"

    with Swapper(root / "rdir", root / "rdir_alt"):
        tally_until_seen(attempt, {"served", "UnsafePath"}, least=1000, most=50_000)
