"""Folders a page at a time: every entry exactly once in every order, through the explorer's pages and
the files API's cursor, for a local folder and an S3 prefix of 10,000 entries; what a change between
pages does; which files are looked into; and cursors and limits that are not ours."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import stat
import time
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from core import explorer, kept_scans, snapshots
from core.kept_scans import Snapshot
from core.listings import Order, Sort
from db import connect
from db.storages import StorageRecord, insert_storage
from storage.base import FolderScan
from storage.local import LocalStorage
from storage.s3 import S3Settings, S3Storage
from tests.conftest import add_s3
from tests.helpers import every_entry, listing_folder

COUNT = 10_000
EPOCH = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
ORDERS = [(sort, descending) for sort in ("name", "size", "date") for descending in (False, True)]
HX = {"HX-Request": "true"}
ROW = re.compile(r'(?:class="file-name"><bdi>|</svg> <bdi>)([^<]*)</bdi>')
NEXT = re.compile(r'<a href="([^"]+)" hx-get="[^"]+"\s*>Next →</a>')

pytestmark = pytest.mark.usefixtures("no_kept_scans")


def write_big_folder(folder) -> list[tuple[str, bool, int, float]]:
    """COUNT entries: files of 0-57 bytes (too short to hold an encryption header, so none is
    opened), dates out of name order, a folder every 500, and two names that differ only in case.
    Returns each entry's (name, is_dir, size, mtime) as the file system has it."""
    folder.mkdir(parents=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = [write_entry(fd, number) for number in range(COUNT - 2)]
        names += [write_entry(fd, COUNT - 2, "Case.bin"), write_entry(fd, COUNT - 1, "case.bin")]
        return [described(fd, name) for name in names]
    finally:
        os.close(fd)


def write_entry(folder_fd: int, number: int, name: str | None = None) -> str:
    if number % 500 == 0:
        name = f"folder-{number:06d}"
        os.mkdir(name, dir_fd=folder_fd)
    else:
        name = name or f"backup-{number:06d}.bin"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=folder_fd)
        os.write(fd, b"x" * (number % 58))
        os.close(fd)
    moment = EPOCH + number * 7919 % COUNT
    os.utime(name, (moment, moment), dir_fd=folder_fd)
    return name


def described(folder_fd: int, name: str) -> tuple[str, bool, int, float]:
    info = os.stat(name, dir_fd=folder_fd)
    return name, stat.S_ISDIR(info.st_mode), info.st_size, info.st_mtime


@pytest.fixture(scope="module")
def big_local_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("big-local")
    return root, write_big_folder(root / "big")


@pytest.fixture
def big_local(app, big_local_root, monkeypatch):
    """The module's big folder as storage "bulk"; its scans are kept although the folder was
    written less than a second ago, as they would be a moment later."""
    root, rows = big_local_root
    db = connect(app.config["DATABASE"])
    insert_storage(db, StorageRecord("bulk", "Bulk", "local", {"path": str(root)}))
    db.close()
    monkeypatch.setattr(kept_scans, "RACY_SECONDS", -1.0)
    return rows


def local_order(rows, sort: str, descending: bool) -> list[str]:
    """Folders first, then by size or date, then by name case-insensitively, then exactly;
    descending reverses the order within each group."""

    def key(row):
        name, _, size, mtime = row
        return ({"name": 0, "size": size, "date": mtime}[sort], name.casefold(), name)

    groups = [[row for row in rows if row[1]], [row for row in rows if not row[1]]]
    return [row[0] for group in groups for row in sorted(group, key=key, reverse=descending)]


def explorer_url(storage: str, sort: str, descending: bool) -> str:
    return f"/browse/{storage}?path=big&sort={sort}" + ("&order=desc" if descending else "")


def walk_explorer(client, url: str) -> tuple[list[str], int]:
    """Every page, following the Next link each one shows, as a person clicking through would."""
    names, pages = [], 0
    while url:
        response = client.get(url, headers=HX)
        assert response.status_code == 200, response.text
        names += [html.unescape(name) for name in ROW.findall(response.text)]
        pages += 1
        found = NEXT.search(response.text)
        url = html.unescape(found.group(1)) if found else None
    return names, pages


def files_page(client, storage: str, **params):
    return client.get(f"/api/storage/{storage}/files", query_string=params)


def walk_api(
    client, storage: str, sort: str, descending: bool, limit: int = 900, path: str = "big"
) -> list[str]:
    names, cursor = [], ""
    while True:
        params = {"path": path, "sort": sort, "order": "desc" if descending else "asc", "limit": limit}
        answer = files_page(client, storage, **params, cursor=cursor).get_json()
        assert answer["success"] and len(answer["entries"]) <= limit
        names += [entry["name"] for entry in answer["entries"]]
        if answer["next"] is None:
            return names
        cursor = answer["next"]


@pytest.mark.parametrize(("sort", "descending"), ORDERS)
def test_every_local_entry_once_in_each_order(client, auth, big_local, sort, descending):
    auth.login("viewer")
    expected = local_order(big_local, sort, descending)
    names, pages = walk_explorer(client, explorer_url("bulk", sort, descending))
    assert pages == COUNT // 100 and names == expected
    assert walk_api(client, "bulk", sort, descending) == expected


@pytest.mark.parametrize(("sort", "descending"), ORDERS)
def test_a_filtered_local_folder_shows_every_match_once_in_each_order(
    client, auth, big_local, big_local_root, sort, descending
):
    needle = "-001"  # two folders, files on both sides of them, and no match of the case-tied names
    expected = [name for name in local_order(big_local, sort, descending) if needle in name.casefold()]
    assert 0 < sum(name.startswith("folder-") for name in expected) < len(expected) > 100
    auth.login("viewer")
    names, pages = walk_explorer(client, explorer_url("bulk", sort, descending) + f"&q={needle.upper()}")
    assert names == expected and pages == -(-len(expected) // 100)
    order = Order(Sort(sort), descending, needle)
    walked = every_entry(LocalStorage(str(big_local_root[0])), "big", order, limit=30)
    assert [entry.name for entry in walked] == expected


def s3_rows() -> list[tuple[str, bool, int, float]]:
    """What tools/seeded_moto.py put under big/ (a folder has neither size nor date on S3)."""
    rows = []
    for number in range(COUNT):
        if number % 500 == 0:
            rows.append((f"folder-{number:06d}", True, 0, 0.0))
        else:
            rows.append((f"backup-{number:06d}.bin", False, number % 997, EPOCH + number * 7919 % COUNT))
    return rows


def s3_order(rows, sort: str, descending: bool) -> list[str]:
    """By name, S3's own order: by key, a folder's with its "/", folders among the files. By size
    or date: folders first, then by the value, then by key; descending within each group."""

    def natural(row) -> bytes:
        return (row[0] + "/" if row[1] else row[0]).encode()

    if sort == "name":
        return [row[0] for row in sorted(rows, key=natural, reverse=descending)]
    value = 2 if sort == "size" else 3
    groups = [[row for row in rows if row[1]], [row for row in rows if not row[1]]]
    ordered = (
        sorted(group, key=lambda row: (row[value], natural(row)), reverse=descending) for group in groups
    )
    return [row[0] for group in ordered for row in group]


@pytest.fixture
def big_s3(app, seeded_moto):
    add_s3(app, "offsite", seeded_moto.url, seeded_moto.bucket)
    return s3_rows()


@pytest.mark.parametrize(("sort", "descending"), ORDERS)
def test_every_s3_entry_once_in_each_order(client, auth, big_s3, sort, descending):
    auth.login("viewer")
    expected = s3_order(big_s3, sort, descending)
    names, pages = walk_explorer(client, explorer_url("offsite", sort, descending))
    assert pages == COUNT // 100 and names == expected
    assert walk_api(client, "offsite", sort, descending) == expected


def test_s3_pages_by_number_match_the_pages_by_cursor(client, auth, big_s3):
    """Previous, and a page number typed in, list from the start and land where Next did."""
    auth.login("viewer")
    expected = s3_order(big_s3, "name", False)
    third = client.get("/browse/offsite?path=big&page=3", headers=HX).text
    assert [html.unescape(name) for name in ROW.findall(third)] == expected[200:300]
    pager = third.split('class="pager"')[1]
    assert "page 3" in pager and "page 3 of" not in pager and "← Previous" in pager


@pytest.mark.parametrize("kept", [True, False], ids=["kept-scan", "fresh-scans"])
def test_a_folder_changed_between_pages_repeats_nothing_and_loses_nothing(
    client, auth, backups, monkeypatch, kept
):
    """Entries there all along come exactly once; one added after the cursor comes, one added
    before it does not (the cursor is a position, not an offset that a change would shift)."""
    if kept:
        monkeypatch.setattr(kept_scans, "KEEP_FROM", 1)
        monkeypatch.setattr(kept_scans, "RACY_SECONDS", -1.0)
    folder = backups / "changing"
    folder.mkdir(parents=True)
    original = [f"f{number:03d}" for number in range(0, 600, 2)]
    for name in original:
        (folder / name).write_bytes(b"")
    auth.login("viewer")
    first = files_page(client, "local", path="changing", limit=50).get_json()
    second = files_page(client, "local", path="changing", limit=50, cursor=first["next"]).get_json()
    (folder / "f020").unlink()
    (folder / "f400").unlink()
    for name in ("f001", "f401", "f999"):
        (folder / name).write_bytes(b"")
    seen = [entry["name"] for entry in first["entries"] + second["entries"]]
    cursor = second["next"]
    while cursor:
        answer = files_page(client, "local", path="changing", limit=50, cursor=cursor).get_json()
        seen += [entry["name"] for entry in answer["entries"]]
        cursor = answer["next"]
    assert len(seen) == len(set(seen))
    assert set(original) - {"f400"} <= set(seen)
    assert {"f401", "f999"} <= set(seen) and not {"f001", "f400"} & set(seen)


def test_only_the_rows_shown_are_looked_into_once_per_version(client, auth, backups, monkeypatch):
    folder = backups / "plain"
    folder.mkdir(parents=True)
    for number in range(30):
        (folder / f"p{number:02d}.bin").write_bytes(b"not encrypted, and longer than a header" * 3)
    opened = []
    real_read = LocalStorage.read_heads
    monkeypatch.setattr(
        LocalStorage,
        "read_heads",
        lambda self, entries, size: (
            opened.extend(entry.path for entry in entries) or real_read(self, entries, size)
        ),
    )
    monkeypatch.setattr(explorer, "headers", explorer.Headers(100))
    auth.login("viewer")
    files_page(client, "local", path="plain", limit=10)
    assert opened == [f"plain/p{number:02d}.bin" for number in range(10)]
    client.get("/browse/local?path=plain")
    assert len(opened) == 30  # the explorer's page holds all 30: the first ten were known already
    (folder / "p03.bin").write_bytes(b"rewritten, and still longer than a header, so looked at again")
    files_page(client, "local", path="plain", limit=10)
    assert opened[30:] == ["plain/p03.bin"]


def test_a_scan_of_a_folder_changed_a_moment_before_it_is_not_kept():
    now = time.time()
    scan = FolderScan("f", ["a"] * 5000, bytearray(5000), version="1:2:3:4", changed_at=now - 0.2)
    assert not Snapshot(scan, now).worth_keeping()
    assert Snapshot(replace(scan, changed_at=now - 5), now).worth_keeping()
    assert not Snapshot(replace(scan, names=["a"] * 10, folders=bytearray(10)), now).worth_keeping()


def test_a_background_scan_is_as_old_as_its_start(tmp_path, monkeypatch):
    """A background scan longer than a second, of a folder changed just before it began, is not kept
    either: its names were read from its start, as a page's own scan's are."""
    root = listing_folder(tmp_path / "root", 1200)
    now = [(root / "f").stat().st_ctime + 0.1]
    monkeypatch.setattr(snapshots, "time", SimpleNamespace(time=lambda: now[0]))
    real_scan = LocalStorage.scan

    def slow_scan(self, folder="", stats=False):
        now[0] += 3.0
        return real_scan(self, folder, stats)

    monkeypatch.setattr(LocalStorage, "scan", slow_scan)
    snapshot = snapshots.sorted_scan(LocalStorage(str(root)), "f", [], None)
    assert not snapshot.worth_keeping()


def cursor_of(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


LISTING = ["local", "many", "name", False, ""]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "bm90IGpzb24",  # "not json"
        cursor_of([1, 2, 3]),
        cursor_of({"l": LISTING, "p": [False, 0, "a/b"]}),  # a name with a slash
        cursor_of({"l": LISTING, "p": [False, True, "f1"]}),
        cursor_of({"l": LISTING, "p": [0, 0, "f1"]}),
        cursor_of({"l": LISTING, "p": [False, 0, ""]}),
        cursor_of({"l": LISTING, "p": [False, 0]}),
        base64.urlsafe_b64encode(
            b'{"l": ["local", "many", "name", false, ""], "p": [false, Infinity, "f"]}'
        ).decode(),
        cursor_of({"l": ["local", "other", "name", False, ""], "p": [False, 0, "f1"]}),  # another folder's
        cursor_of({"l": ["local", "many", "size", False, ""], "p": [False, 0, "f1"]}),  # another order's
        cursor_of({"l": ["elsewhere", "many", "name", False, ""], "p": [False, 0, "f1"]}),
        cursor_of({"l": LISTING, "p": [False, 10**400, "f1"]}),  # beyond any float: OverflowError
        cursor_of({"l": LISTING, "p": [False, 2**63, "f1"]}),  # beyond any size
        base64.urlsafe_b64encode(b"[" * 1100 + b"]" * 1100).decode(),  # too deep for json: RecursionError
        "A" * 5000,
        "curseur-é",
    ],
)
def test_cursors_that_are_not_ours_are_400(client, auth, backups, cursor):
    (backups / "many").mkdir(parents=True)
    auth.login("viewer")
    response = files_page(client, "local", path="many", cursor=cursor)
    assert response.status_code == 400 and "cursor" in response.get_json()["error"]
    page = client.get("/browse/local", query_string={"path": "many", "page": 2, "after": cursor}, headers=HX)
    assert page.status_code == 400


def test_a_real_cursor_only_works_for_its_own_listing(client, auth, backups):
    for folder in ("a", "b"):
        (backups / folder).mkdir(parents=True)
        for number in range(5):
            (backups / folder / f"f{number}").write_bytes(b"x" * number)
    auth.login("viewer")
    cursor = files_page(client, "local", path="a", limit=2).get_json()["next"]
    assert files_page(client, "local", path="a", limit=2, cursor=cursor).status_code == 200
    assert files_page(client, "local", path="b", limit=2, cursor=cursor).status_code == 400
    assert files_page(client, "local", path="a", limit=2, cursor=cursor, sort="size").status_code == 400
    assert files_page(client, "local", path="a", limit=2, cursor=cursor, order="desc").status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "5001"},
        {"limit": "99999999999999999999"},
        {"limit": "1.5"},
        {"limit": ""},
        {"limit": "١٠"},  # Arabic-Indic digits are digits to Python, not to the API
        {"sort": "owner"},
        {"order": "up"},
    ],
)
def test_limits_and_orders_outside_the_documented_ones_are_400(client, auth, query):
    auth.login("viewer")
    response = files_page(client, "local", **query)
    assert response.status_code == 400 and response.get_json()["success"] is False


def test_the_largest_limit_is_accepted(client, auth, backups):
    (backups / "one.bin").write_bytes(b"1")
    auth.login("viewer")
    answer = files_page(client, "local", limit="5000").get_json()
    assert [entry["name"] for entry in answer["entries"]] == ["one.bin"] and answer["next"] is None


def test_a_forged_s3_cursor_naming_no_possible_key_is_400(client, auth, big_s3):
    auth.login("viewer")
    forged = base64.urlsafe_b64encode(
        b'{"l": ["offsite", "big", "name", false, ""], "p": [false, 0, "\\udc80"]}'
    ).decode()
    assert files_page(client, "offsite", path="big", cursor=forged).status_code == 400


def test_s3_pages_that_end_on_a_folder_go_on_after_it(moto):
    """A folder named by StartAfter comes back from S3 as a common prefix again; whatever the page
    size, each entry comes once, in S3's order ("d2-" < "d2.x" < "d2/" < "d20" by bytes)."""
    s3 = moto.client()
    s3.create_bucket(Bucket="page-edges")
    keys = ["f/d2-", "f/d2.x", "f/d2/a", "f/d2/b", "f/d20", "f/d3/x", "f/k1", "f/k2", "f/", "f/z/y/x"]
    for key in keys:
        s3.put_object(Bucket="page-edges", Key=key, Body=b"x")
    settings = S3Settings(
        "page-edges", endpoint_url=moto.url, path_style=True, access_key_id="t", secret_access_key="t"
    )
    storage = S3Storage(settings)
    expected = ["d2-", "d2.x", "d2", "d20", "d3", "k1", "k2", "z"]
    for limit in (1, 2, 3, 7, 8, 9):
        assert [entry.name for entry in every_entry(storage, "f", limit=limit)] == expected


def test_names_no_link_could_name_are_left_out_of_every_listing(client, auth, backups):
    """Names with bytes that are not UTF-8 (read as lone surrogates), a control character or a
    backslash: listed, each would be refused when minted, and a surrogate broke the page."""
    (backups / "top" / "sub").mkdir(parents=True)
    for folder in ("top", "top/sub"):
        (backups / folder / "dump.sql").write_bytes(b"x")
        root = os.fsencode(backups / folder)
        for name in (b"dump\xff.sql", b"dump\n.sql", b"dump\\.sql"):
            with open(root + b"/" + name, "wb") as file:
                file.write(b"y")
        os.mkdir(root + b"/dump-folder\xff")
        (backups / folder / "dump-folder\x1b").mkdir()
    auth.login("viewer")

    assert walk_api(client, "local", "name", False, limit=1, path="top") == ["sub", "dump.sql"]
    page = client.get("/browse/local", query_string={"path": "top"}, headers=HX)
    assert page.status_code == 200 and ROW.findall(page.get_data(as_text=True)) == ["sub", "dump.sql"]
    found = client.get("/browse/local", query_string={"path": "top", "q": "dump", "below": 1}, headers=HX)
    assert found.status_code == 200
    assert ROW.findall(found.get_data(as_text=True)) == ["dump.sql", "sub/dump.sql"]
