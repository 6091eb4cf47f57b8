"""Real gunicorn whose database lives on a small disk that fills up: minting and downloads answer
503 with Retry-After, a transfer whose claim can no longer be renewed stops by itself, and once
space returns the link serves its one complete copy, exactly once."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.accounts import create_api_key, create_user
from db import connect
from tests.conftest import PASSWORD, LiveServer
from tests.helpers import MIB, Filler, link_record, make_file, status_of, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting the small tmpfs to fill needs root")

FILE_SIZE = 20 * MIB
MAX_REQUESTS = 300
TCP_CLOSE = 7
PUBLIC_MESSAGE = "Downloads are unavailable for a moment; this link was not used. Try again later."


class ServerOnSmallDisk(LiveServer):
    """Its data dir (database, secrets) on the small disk; its logs stay on the normal disk, the
    workers' stderr with them, so that the error log can show any traceback. The send timeout is
    far beyond every wait here: a paused client is cut off by its lapsed lease, never for stalling."""

    @property
    def access_log(self) -> Path:
        return self.backups.parent / "access.log"

    @property
    def error_log(self) -> Path:
        return self.backups.parent / "error.log"

    def env(self) -> dict:
        return {**super().env(), "ONCELINK_SEND_TIMEOUT": "600", "GUNICORN_CMD_ARGS": "--capture-output"}


@dataclass
class Answer:
    status: int
    retry_after: str | None
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def fetch(
    server: LiveServer, method: str, path: str, body: dict | None = None, key: str | None = None
) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"} if key else {}
    try:
        connection.request(method, path, json.dumps(body) if body else None, headers)
        response = connection.getresponse()
        return Answer(response.status, response.getheader("Retry-After"), response.read())
    finally:
        connection.close()


class PausedDownload:
    """A client with a 16 KiB receive buffer that reads the headers and about 1 MiB, then nothing
    until `read_rest`: the transfer waits on it, holding its claim."""

    def __init__(self, url: str, first: int = MIB):
        parts = urlsplit(url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.sock.settimeout(30)
        self.sock.connect((parts.hostname, parts.port))
        request = f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n"
        self.sock.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received) < first:
            chunk = self.sock.recv(64 * 1024)
            assert chunk, "the server closed before the pause"
            received += chunk
        self.head, _, body = received.partition(b"\r\n\r\n")
        self.body = bytearray(body)

    def was_reset(self) -> bool:
        """The server dropped the connection: a reset leaves our end in TCP_CLOSE, unread data or not."""
        return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_CLOSE

    def read_rest(self) -> bytes:
        with contextlib.suppress(ConnectionResetError):
            while chunk := self.sock.recv(256 * 1024):
                self.body += chunk
        return bytes(self.body)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(small_disk: Path, tmp_path: Path) -> Iterator[ServerOnSmallDisk]:
    server = ServerOnSmallDisk(small_disk / "instance", tmp_path / "backups")
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def wal_kept(database_path: str) -> Iterator[None]:
    """An idle connection of ours, open throughout: SQLite checkpoints and deletes its WAL when the
    last connection closes, which would hand disk space back; with this one open, the disk stays
    full until the filler goes."""
    database = connect(database_path)
    try:
        database.execute("SELECT COUNT(*) FROM links").fetchall()
        yield
    finally:
        database.close()


def api_key_for_robot(server: LiveServer) -> str:
    database = connect(server.app.config["DATABASE"])
    try:
        create_user(database, "robot", PASSWORD, "operator", time.time())
        return create_api_key(database, "robot", time.time(), None)[0]
    finally:
        database.close()


def hammer_until_refused(server: LiveServer, url: str, key: str) -> dict[str, Answer]:
    """GETs of the busy link and mints through the API until each has been answered 503.

    SQLite may find room in pages it already holds for a while, hence the loop; anything but the
    expected answers (a 500, a second transfer of the link) fails at once.
    """
    parts = urlsplit(url)
    refused: dict[str, Answer] = {}
    for _ in range(MAX_REQUESTS // 2):
        download = fetch(server, "GET", f"{parts.path}?{parts.query}")
        assert download.status in (409, 503), download
        minted = fetch(server, "POST", "/api/storage/local/download-url", {"file": "big.bin"}, key)
        assert minted.status in (200, 503), minted
        for name, answer in (("download", download), ("mint", minted)):
            if answer.status == 503:
                refused.setdefault(name, answer)
        if len(refused) == 2:
            return refused
    raise AssertionError(f"no 503 for both within {MAX_REQUESTS} requests: {refused}")


def whole_download(url: str, target: Path) -> bool:
    status = status_of(url, target)
    assert status in (200, 409, 503), status
    return status == 200


def test_a_full_disk_refuses_with_503_and_never_gives_a_link_twice(server, small_disk, tmp_path):
    data = make_file(server.backups, "big.bin", FILE_SIZE)
    key = api_key_for_robot(server)
    url = server.link("big.bin", uses=1)
    filler = Filler(small_disk / "filler")
    paused = PausedDownload(url)
    try:
        assert paused.head.startswith(b"HTTP/1.1 200")
        with wal_kept(server.app.config["DATABASE"]):
            filler.fill()
            refused = hammer_until_refused(server, url, key)
            # Its claim can no longer be renewed: the sender stops after the lease (2 s in tests).
            wait_for(paused.was_reset, "the paused transfer to stop while the disk is full")
            received = paused.read_rest()
            filler.remove()
    finally:
        paused.close()
    assert len(received) < len(data) and received == data[: len(received)]

    download, mint = refused["download"], refused["mint"]
    assert download.retry_after == mint.retry_after == "30"
    assert download.json() == {"success": False, "error": PUBLIC_MESSAGE}
    assert mint.json()["success"] is False
    assert mint.json()["error"].startswith("Oncelink cannot write to its database right now")

    target = tmp_path / "out"
    wait_for(lambda: whole_download(url, target), "the link to work again once space returned")
    assert target.read_bytes() == data
    assert status_of(url) == 410
    again = fetch(server, "POST", "/api/storage/local/download-url", {"file": "big.bin"}, key)
    assert again.status == 200 and again.json()["success"] is True

    link, events = link_record(server, url)
    assert link.uses == link.max_uses == 1
    assert [e.bytes for e in events if e.event == "completed"] == [len(data)]
    assert "counted" not in [e.reason for e in events if e.event == "lapsed"]
    errors = server.error_log.read_text()
    assert "Database cannot be written" in errors
    assert "Traceback" not in errors


def minted_when_writable(server: LiveServer, key: str) -> Answer | None:
    answer = fetch(server, "POST", "/api/storage/local/download-url", {"file": "small.bin"}, key)
    assert answer.status in (200, 503), answer
    return answer if answer.status == 200 else None


def test_workers_restarted_on_a_full_disk_boot_answer_503_and_recover(server, small_disk):
    """gunicorn stops the whole server when a worker fails to boot: one restarted while the
    database cannot even be opened (its shared-memory file needs space) must boot all the same."""
    make_file(server.backups, "small.bin", 1000)
    key = api_key_for_robot(server)
    filler = Filler(small_disk / "filler")
    filler.fill()
    killed = set(server.worker_pids())
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        assert server.process.poll() is None, "gunicorn stopped: a worker failed to boot"
        return len(set(server.worker_pids()) - killed) == 2

    wait_for(restarted, "gunicorn to restart its workers")
    refused = fetch(server, "POST", "/api/storage/local/download-url", {"file": "small.bin"}, key)
    assert refused.status == 503 and refused.retry_after == "30", refused
    assert refused.json()["error"].startswith("Oncelink cannot write to its database right now")
    filler.remove()
    minted = wait_for(lambda: minted_when_writable(server, key), "minting to work again")
    assert minted.json()["success"] is True
    assert server.process.poll() is None
    assert "Traceback" not in server.error_log.read_text()
