"""A folder of the storage exchanged with a symlink out of it, over and over, while a file in it is
fetched from real gunicorn: not one byte from outside may go out (issue #10, where the link and
the signed-in download served the server's master.key)."""

from __future__ import annotations

import http.client
import os
import time
from functools import partial
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

import pytest

from core.accounts import create_user
from db import connect
from tests.conftest import PASSWORD, csrf_token_from
from tests.helpers import HAS_RENAMEAT2, Swapper, tally_until_seen

FETCHES = 1000  # per test: the unconfined code served the outside file about once in fifty
MOST_FETCHES = 5 * FETCHES  # should the swapper be starved of a core for a while
USES = 100  # TOKEN_MAX_USES

pytestmark = pytest.mark.skipif(not HAS_RENAMEAT2, reason="the C library has no renameat2")


class Client:
    """One keep-alive connection to the server, carrying the session cookie once there is one."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = ""

    def request(self, method: str, target: str, form: dict | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, target, urlencode(form) if form else None, headers)
        response = self.connection.getresponse()
        body = response.read()
        for header in response.headers.get_all("Set-Cookie") or ():
            if "session" in SimpleCookie(header):
                self.cookie = f"session={SimpleCookie(header)['session'].value}"
        return response.status, body

    def sign_in(self, name: str) -> None:
        token = csrf_token_from(self.request("GET", "/login")[1].decode())
        status, _ = self.request("POST", "/login", {"name": name, "password": PASSWORD, "csrf_token": token})
        assert status == 303

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def race(start_server):
    """A server whose storage holds rdir/master.key and rdir_alt, a symlink to the server's own data
    folder, where the real master.key lies; the report swapped exactly these."""
    server = start_server()
    secret = (server.data_dir / "master.key").read_bytes()
    inside = os.urandom(len(secret))  # the same size: a file swapped in after the stat goes out whole
    assert len(secret) >= 16 and secret != inside
    (server.backups / "rdir").mkdir()
    (server.backups / "rdir" / "master.key").write_bytes(inside)
    (server.backups / "rdir_alt").symlink_to(os.path.relpath(server.data_dir, server.backups))
    client = Client(server.port)
    yield server, client, secret, inside
    client.close()


def fetch(client: Client, targets: list[str], secret: bytes, inside: bytes) -> int:
    """One GET of the first target, which is dropped once used up: the status."""
    status, body = client.request("GET", targets[0])
    assert secret[:16] not in body, f"the outside file went out with status {status}"
    assert status < 500, body
    assert status != 200 or body == inside
    if status in (410, 409):  # used up (or its last uses still being counted): the next link
        targets.pop(0)
        assert targets, "ran out of links"
    return status


def fetch_during_swaps(server, client: Client, targets: list[str], secret: bytes, inside: bytes) -> None:
    """Fetch while rdir and rdir_alt are exchanged, until the file was both served and refused."""
    with Swapper(server.backups / "rdir", server.backups / "rdir_alt"):
        attempt = partial(fetch, client, targets, secret, inside)
        tally_until_seen(attempt, {200, 400}, least=FETCHES, most=MOST_FETCHES)


def test_a_public_link_never_serves_a_file_from_outside_while_a_folder_is_swapped(race):
    server, client, secret, inside = race
    links = [server.link("rdir/master.key", uses=USES) for _ in range(MOST_FETCHES // USES + 1)]
    targets = [f"{urlsplit(link).path}?{urlsplit(link).query}" for link in links]
    fetch_during_swaps(server, client, targets, secret, inside)


def test_the_signed_in_download_never_serves_a_file_from_outside_while_a_folder_is_swapped(race):
    server, client, secret, inside = race
    db = connect(server.app.config["DATABASE"])
    try:
        create_user(db, "racer", PASSWORD, "operator", time.time())
    finally:
        db.close()
    client.sign_in("racer")
    target = "/browse/local/file?" + urlencode({"path": "rdir/master.key"})
    assert client.request("GET", target) == (200, inside)
    fetch_during_swaps(server, client, [target], secret, inside)
