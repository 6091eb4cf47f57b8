"""Capacity under real gunicorn: a crowd of slow downloads all progress at once, and meanwhile the
explorer and the mint API keep answering."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from core.accounts import create_api_key, create_user
from db import connect
from tests.conftest import PASSWORD, csrf_token_from
from tests.helpers import MIB, KeptConnection, SlowCrowd, link_record, make_file, wait_for

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
