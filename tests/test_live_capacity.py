"""Capacity under real gunicorn: a crowd of slow downloads all progress at once, and meanwhile the
explorer and the mint API keep answering."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlencode

from core.accounts import create_api_key, create_user
from db import connect
from tests.conftest import PASSWORD, csrf_token_from
from tests.helpers import (
    MIB,
    KeptConnection,
    SlowCrowd,
    connection_per_worker,
    inotify_watches,
    link_record,
    listing_folder,
    make_file,
    serving_worker,
    wait_for,
    write_file_at,
)

CROWD = 200
RATE = 64 * 1024  # bytes a second for each client: a 1 MiB file takes 16 s


def ask(server, method: str, target: str, headers: dict | None = None, body: bytes = b"") -> tuple:
    """One request on a connection of its own, so that any worker may take it."""
    connection = KeptConnection(server.url)
    try:
        return connection.request(method, target, headers, body)
    finally:
        connection.close()


def operator(server) -> tuple[str, str]:
    """A signed-in session cookie and an API key of one operator."""
    db = connect(server.app.config["DATABASE"])
    try:
        create_user(db, "operator", PASSWORD, "operator", time.time())
        key = create_api_key(db, "operator", time.time(), None)[0]
    finally:
        db.close()
    _, headers, page = ask(server, "GET", "/login")
    cookie = headers["set-cookie"].split(";")[0]
    form = urlencode({"name": "operator", "password": PASSWORD, "csrf_token": csrf_token_from(page.decode())})
    form_headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    status, headers, _ = ask(server, "POST", "/login", form_headers, form.encode())
    assert status == 303
    return headers["set-cookie"].split(";")[0], key


def test_a_crowd_of_slow_downloads_all_progress_while_pages_and_minting_answer(start_server):
    server = start_server()
    data = make_file(server.backups, "restore.bin", MIB)
    urls = [server.link("restore.bin") for _ in range(CROWD)]
    cookie, key = operator(server)
    mint = json.dumps({"file": "restore.bin"}).encode()
    mint_headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    crowd = SlowCrowd(urls, RATE)
    try:
        wait_for(lambda: all(crowd.received), "every download to have started", timeout=30)
        pages = [ask(server, "GET", "/browse/local", {"Cookie": cookie})[0] for _ in range(20)]
        minted = [
            ask(server, "POST", "/api/storage/local/download-url", mint_headers, mint)[0] for _ in range(20)
        ]
        assert pages == [200] * 20 and minted == [200] * 20
        assert max(crowd.received) < len(data)  # all of them were still running meanwhile
        crowd.wait(timeout=120)
    finally:
        crowd.close()
    assert crowd.statuses() == [200] * CROWD
    assert crowd.received == [len(data)] * CROWD
    for url in urls:
        wait_for(lambda url=url: link_record(server, url)[0].uses == 1, "every download to be counted")


def test_a_kept_folder_follows_its_changes_under_gunicorn(start_server):
    """Under the gevent worker, a worker's kept scan of a large folder is followed by its inotify
    watch: a file that grows moves up the size order at once, where sizes of an unwatched folder's
    kept scan serve up to 30 s; a name that came is listed too."""
    server = start_server()
    folder = listing_folder(server.backups / "many", 1200) / "f"
    settled = lambda: time.time() - folder.stat().st_ctime > 1.1  # noqa: E731
    wait_for(settled, "the folder to be old enough for an unwatched scan of it to be kept too")
    _, key = operator(server)
    connection = KeptConnection(server.url)  # one worker, which keeps the scan

    def largest_first() -> list[str]:
        target = "/api/storage/local/files?path=many/f&sort=size&order=desc&limit=10"
        status, _, body = connection.request("GET", target, {"Authorization": f"Bearer {key}"})
        assert status == 200
        return [entry["name"] for entry in json.loads(body)["entries"] if not entry["isDir"]]

    try:
        assert "file-00001" not in largest_first()
        write_file_at(folder, "file-00001", 5000, 1e9)
        assert largest_first()[0] == "file-00001"
        write_file_at(folder, "new-and-larger", 6000, 1e9)
        assert largest_first()[:2] == ["new-and-larger", "file-00001"]
    finally:
        connection.close()


def test_a_scan_one_worker_made_serves_the_other(start_server):
    """A worker's fresh scan of a large folder is written to the data dir after the page that made
    it; the other worker's first page of the folder is read from there, checked by the folder's
    version rather than scanned: the same order, and no watch set, as a scan of its own would."""
    server = start_server()
    folder = listing_folder(server.backups / "many", 1200) / "f"
    wait_for(lambda: time.time() - folder.stat().st_ctime > 1.1, "the folder to be old enough to be shared")
    _, key = operator(server)
    scans = Path(server.app.config["DATA_DIR"]) / "scans"

    def largest_first(connection) -> list[str]:
        target = "/api/storage/local/files?path=many/f&sort=size&order=desc&limit=1000"
        status, _, body = connection.request("GET", target, {"Authorization": f"Bearer {key}"})
        assert status == 200
        return [entry["name"] for entry in json.loads(body)["entries"]]

    with connection_per_worker(server) as connections:
        scanner, reader = (serving_worker(server.worker_pids(), server.port, c.port) for c in connections)
        order = largest_first(connections[0])
        wait_for(lambda: list(scans.glob("*.scan")), "the scan to be written to the data dir")
        assert largest_first(connections[1]) == order
        assert (inotify_watches(scanner), inotify_watches(reader)) == (1, 0)
