"""Helpers for the tests that drive real servers: files, curl and wget, clients of the tests' own
that read at their own pace or keep their connection, the worker process that serves a given
connection, a process that swaps two names in the storage for the symlink races, and the browser
pages (a context that records every console error, signing in, the link dialog)."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import errno
import functools
import hashlib
import hmac
import json
import os
import selectors
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import http_sf
from playwright.sync_api import Browser, Page, expect

from core.accounts import create_user
from core.listings import Order, Sort, page_after
from core.tokens import hash_token
from db import connect
from db.events import list_events
from db.links import find_link
from storage.base import Entry, Storage
from storage.local import LocalStorage
from tests.conftest import PASSWORD

MIB = 1024 * 1024


def make_file(folder: Path, name: str, size: int) -> bytes:
    block = os.urandom(MIB)
    data = (block * (size // MIB + 1))[:size]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return data


def every_entry(storage: Storage, folder: str = "", order: Order = Order(), limit: int = 1000) -> list[Entry]:
    """A whole folder, page after page through the listing cursors, as the files API walks it."""
    entries, cursor = [], None
    while True:
        page = page_after(storage, "test", folder, order, cursor, limit)
        entries += page.entries
        if page.next is None:
            return entries
        cursor = page.next


def write_file_at(folder: Path, name: str, size: int, moment: float) -> None:
    """A file of `size` bytes last modified at `moment`."""
    (folder / name).write_bytes(b"x" * size)
    os.utime(folder / name, (moment, moment))


def listing_folder(root: Path, count: int) -> Path:
    """`root`, holding folder `f` of `count` files of sizes and dates out of name order, and a
    folder every 300 names."""
    (root / "f").mkdir(parents=True)
    for number in range(count):
        if number % 300 == 0:
            (root / "f" / f"dir-{number:05d}").mkdir()
        else:
            write_file_at(root / "f", f"file-{number:05d}", number * 7 % 101, 1e9 + number * 7919 % count)
    return root


def fresh_order(folder: Path, sort: Sort, descending: bool) -> list[str]:
    """The folder as a fresh look at every entry orders it: folders first, then by size or date,
    then by name case-insensitively, then exactly; descending reverses each group."""
    rows = []
    for child in os.scandir(folder):
        info = child.stat(follow_symlinks=False)
        value = {Sort.NAME: 0, Sort.SIZE: info.st_size, Sort.DATE: info.st_mtime}[sort]
        rows.append((stat.S_ISDIR(info.st_mode), value, child.name.casefold(), child.name))
    groups = [[row for row in rows if row[0]], [row for row in rows if not row[0]]]
    return [row[3] for group in groups for row in sorted(group, reverse=descending)]


def listed_names(root: Path, sort: Sort, descending: bool) -> list[str]:
    """Folder `f` of local storage `root`, every page of it in that order."""
    entries = every_entry(LocalStorage(str(root)), "f", Order(sort, descending), limit=700)
    return [entry.name for entry in entries]


def change_names(folder: Path) -> None:
    """Files and folders go, others come, among them names that sort first, last and in between."""
    for number in range(1, 600, 13):
        if number % 300:
            (folder / f"file-{number:05d}").unlink()
    shutil.rmtree(folder / "dir-00900")
    for number, name in enumerate(["!first", "zzz-last", "file-00042.new", "File-00100", "file-01999b"]):
        write_file_at(folder, name, 50 + number * 11, 1e9 + 1500.5 + number)
    for number in range(40):
        write_file_at(folder, f"late-{number:03d}", number % 101, 1e9 + number * 97)
    (folder / "dir-new").mkdir()
    (folder / "Dir-00300").mkdir()


def curl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def status_of(url: str, output: Path | str = "/dev/null") -> int:
    return int(curl("-o", str(output), "-w", "%{http_code}", url).stdout)


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def link_record(server, url: str):
    db = connect(server.app.config["DATABASE"])
    try:
        link = find_link(db, hash_token(token_of(url)))
        return link, list_events(db, link.id)
    finally:
        db.close()


def mint_over_http(server, key: str, storage: str, body: dict) -> tuple[int, dict]:
    answer = curl(
        "-X",
        "POST",
        "-H",
        f"Authorization: Bearer {key}",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps(body),
        "-w",
        "\n%{http_code}",
        f"{server.url}/api/storage/{storage}/download-url",
    )
    payload, status = answer.stdout.rsplit("\n", 1)
    return int(status), json.loads(payload)


def wait_for(condition, what: str, timeout: float = 20):
    """Poll until `condition()` is truthy; the bound only keeps a broken build from hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def outcome_events(server, url: str) -> list[str]:
    return [e.event for e in link_record(server, url)[1] if e.event in ("completed", "aborted", "partial")]


def interrupted(command: list[str], target: Path, cwd: Path) -> None:
    """Start a rate-limited download and kill it once part of the file has arrived."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: target.exists() and target.stat().st_size > 2 * MIB, "part of the file")
    finally:
        process.kill()
        process.wait()


def wget_killed_then_continued(
    server, url: str, target: Path, expected: bytes, resume_url: str | None = None
) -> None:
    """A rate-limited wget killed part-way, then `wget -c` (of `resume_url`, the same link on
    another host, where given): the file ends whole, the link is used once, and the second request
    started where the first stopped."""
    interrupted(["wget", "-q", "--limit-rate=8m", "-O", str(target), url], target, target.parent)
    wait_for(lambda: outcome_events(server, url) == ["aborted"], "the abort to be recorded")
    partial_size = target.stat().st_size
    assert 0 < partial_size < len(expected)
    resume = ["wget", "-q", "-c", "-O", str(target), resume_url or url]
    subprocess.run(resume, cwd=target.parent, check=True, timeout=120)
    assert target.read_bytes() == expected
    # wget may exit before the server has recorded the end (remote storages close their file first)
    wait_for(lambda: link_record(server, url)[0].uses == 1, "the use to be counted")
    resumed = [e for e in link_record(server, url)[1] if e.event == "started"][-1]
    assert resumed.start >= partial_size and resumed.bytes is None


class RawDownload:
    """A download by a client of the test's own: a raw socket with a small receive buffer, read
    at the test's pace (curl's --limit-rate does not pace on loopback), stopped or reset at will."""

    def __init__(self, url: str, receive_buffer: int = 16 * 1024, headers: dict | None = None):
        parts = urlsplit(url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect((parts.hostname, parts.port))
        lines = [f"GET {parts.path}?{parts.query} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.body = bytearray()
        self.status, self.headers = self._read_head()
        self.ended: str | None = None  # "eof" or "reset" once the server ended the connection

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _read_head(self) -> tuple[int, dict[str, str]]:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, "the server closed before the headers"
            head += chunk
        head, self.body[:] = head.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        return int(status_line.split()[1]), {name.lower(): value for name, value in headers.items()}

    def read(self, count: int, rate: float | None = None) -> int:
        """Read up to `count` more bytes, at most `rate` bytes a second; fewer if the server ends."""
        started, goal = time.monotonic(), len(self.body) + count
        while len(self.body) < goal and self.ended is None:
            try:
                chunk = self.sock.recv(min(4096, goal - len(self.body)))
            except ConnectionResetError:
                self.ended = "reset"
                break
            if not chunk:
                self.ended = "eof"
                break
            self.body += chunk
            if rate:
                time.sleep(max(0.0, (len(self.body) - goal + count) / rate - (time.monotonic() - started)))
        return len(self.body)

    def read_to_end(self, rate: float | None = None) -> bytes:
        self.sock.settimeout(60)  # a bound for a broken build, not a pace
        while self.ended is None:
            self.read(1 << 30, rate)
        self.sock.close()
        return bytes(self.body)

    def reset(self) -> None:
        """Die as a killed client does: a reset, whatever the server still had queued."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def _socket_inode(server_port: int, client_port: int) -> int:
    """The inode of the server's end of the connection from `client_port` (from /proc/net/tcp)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
            if int(local, 16) == server_port and int(remote, 16) == client_port:
                return int(fields[9])
    raise AssertionError(f"no server socket for client port {client_port}")


def serving_worker(worker_pids: list[int], server_port: int, client_port: int) -> int:
    """The worker process that holds the connection, found through /proc/<pid>/fd, never by name."""
    target = f"socket:[{_socket_inode(server_port, client_port)}]"
    for pid in worker_pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) == target:
                    return pid
            except FileNotFoundError:
                continue
    raise AssertionError("no worker holds the connection")


def inotify_watches(pid: int) -> int:
    """The inotify watches a process holds, as the kernel lists them in /proc/<pid>/fdinfo."""
    watches = 0
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            watches += info.read_text().count("inotify wd:")
        except (FileNotFoundError, ProcessLookupError):
            continue  # a descriptor closed meanwhile
    return watches


class KeptConnection:
    """One keep-alive HTTP/1.1 connection for many requests, so one worker answers them all."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host = parts.netloc
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
        self.reader = self.sock.makefile("rb")

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def request(
        self, method: str, target: str, headers: dict | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and body of one request on this connection."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status_line = self.reader.readline()
        assert status_line, "the server closed the connection"
        answer_headers = {}
        while line := self.reader.readline().decode("latin-1").rstrip("\r\n"):
            name, _, value = line.partition(": ")
            answer_headers[name.lower()] = value
        length = 0 if method == "HEAD" else int(answer_headers["content-length"])
        return int(status_line.split()[1]), answer_headers, self.reader.read(length)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@contextlib.contextmanager
def connection_per_worker(server, count: int = 2, probe: str = "/login") -> Iterator[list[KeptConnection]]:
    """A kept connection held by each of the `count` workers of `server`: connections are opened,
    each answered once (so a worker has accepted it), until every worker holds one. All are
    closed at the end."""
    workers = wait_for(lambda: len(pids := server.worker_pids()) == count and pids, "the workers to start")
    held: dict[int, KeptConnection] = {}
    with contextlib.ExitStack() as opened:
        for _ in range(200):
            connection = opened.enter_context(contextlib.closing(KeptConnection(server.url)))
            connection.request("HEAD", probe)
            held.setdefault(serving_worker(workers, server.port, connection.port), connection)
            if len(held) == len(workers):
                break
        assert len(held) == len(workers), f"only workers {sorted(held)} of {workers} took connections"
        yield list(held.values())


HAS_RENAMEAT2 = hasattr(ctypes.CDLL(None), "renameat2")  # glibc 2.28 and later
# Exchanges two names (renameat2 RENAME_EXCHANGE: each always exists, as one or the other) until
# told to stop, or until the test that started it has gone.
SWAP_LOOP = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
first, second, parent = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]), int(sys.argv[3])
swaps = 0
while swaps % 4096 or os.getppid() == parent:
    if libc.renameat2(-100, first, -100, second, 2) != 0:
        sys.exit("renameat2: " + os.strerror(ctypes.get_errno()))
    swaps += 1
    if swaps == 1:
        print("swapping", flush=True)
"""


class Swapper:
    """Exchanges two names over and over for as long as the `with` block lasts, in a process of
    its own: a thread would take turns with the test's on the GIL, and could fall in step with it."""

    def __init__(self, first: Path, second: Path):
        self.command = [sys.executable, "-c", SWAP_LOOP, str(first), str(second), str(os.getpid())]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Swapper:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline() == "swapping\n", "the swapper did not start"
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()
        self.process.wait()
        self.process.stdout.close()
        assert self.process.returncode == -signal.SIGTERM, "the swapper stopped before the test did"


def tally_until_seen(attempt: Callable[[], Hashable], wanted: set, least: int, most: int) -> dict:
    """How often `attempt()` gave each outcome: at least `least` tries, and on until every wanted
    outcome has come up, so a race is known to have been run both ways (a loaded machine may
    leave the swapper without a core for a while); `most` only bounds a broken test."""
    tally: dict = {}
    for tries in range(most):
        if tries >= least and wanted <= tally.keys():
            break
        outcome = attempt()
        tally[outcome] = tally.get(outcome, 0) + 1
    assert wanted <= tally.keys(), f"only {tally} in {most} tries"
    return tally


class SlowCrowd:
    """Many downloads read at a steady pace by one thread of the test's own, through a selector:
    what a crowd of slow clients (restores over thin lines) looks like to the server."""

    TICK = 0.05

    def __init__(self, urls: list[str], rate: float, receive_buffer: int = 16 * 1024):
        self.rate = rate
        self.received = [0] * len(urls)
        self.heads = [b""] * len(urls)
        self.body_started = [False] * len(urls)
        self.ended: list[str | None] = [None] * len(urls)
        self._selector = selectors.DefaultSelector()
        for index, url in enumerate(urls):
            parts = urlsplit(url)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.connect((parts.hostname, parts.port))
            sock.sendall(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, index)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def statuses(self) -> list[int | None]:
        return [int(head.split()[1]) if head.count(b" ") >= 2 else None for head in self.heads]

    def _read(self, sock: socket.socket, index: int, allowance: int) -> None:
        try:
            data = sock.recv(allowance)
        except BlockingIOError:
            return
        except ConnectionResetError:
            data, self.ended[index] = b"", "reset"
        if not data:
            self.ended[index] = self.ended[index] or "eof"
            self._selector.unregister(sock)
            sock.close()
            return
        if self.body_started[index]:
            self.received[index] += len(data)
            return
        head, separator, body = (self.heads[index] + data).partition(b"\r\n\r\n")
        self.heads[index] = head
        if separator:
            self.body_started[index] = True
            self.received[index] += len(body)

    def _run(self) -> None:
        allowance = max(1, int(self.rate * self.TICK))
        while not self._stop.is_set() and self._selector.get_map():
            started = time.monotonic()
            for key, _ in self._selector.select(timeout=self.TICK):
                self._read(key.fileobj, key.data, allowance)
            time.sleep(max(0.0, self.TICK - (time.monotonic() - started)))

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()


def browser_page(browser: Browser, server, **context_options) -> Page:
    """A page in a context of its own whose console errors, CSP violations included, and script
    errors gather in `page.problems`; close it with `page.context.close()`."""
    context = browser.new_context(base_url=server.url, **context_options)
    page = context.new_page()
    page.problems = []

    def console(message) -> None:
        if message.type == "error":
            page.problems.append(f"{message.text} at {message.location} on {page.url}")

    page.on("console", console)
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    return page


def sign_in(page: Page, server, role: str = "operator") -> str:
    """A new user with `role`, signed in through the form; returns its name."""
    name = f"{role}-{time.monotonic_ns()}"
    db = connect(server.app.config["DATABASE"])
    create_user(db, name, PASSWORD, role, time.time())
    db.close()
    page.goto("/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return name


def open_link_dialog(page: Page, file_name: str) -> None:
    page.get_by_label(f"Actions for {file_name}").click()
    page.get_by_role("link", name="wget / curl link").click()
    expect(page.locator("dialog[open] #link-box")).to_be_visible()


@functools.cache
def screenshots_dir() -> Path:
    """Where the browser tests save screenshots: docs/screenshots/ under `make screenshots`
    (ONCELINK_SCREENSHOTS), else a temporary folder, so a plain test run keeps the tree clean."""
    return Path(os.environ.get("ONCELINK_SCREENSHOTS") or tempfile.mkdtemp(prefix="oncelink-screenshots-"))


@dataclass(frozen=True)
class ReceivedHook:
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server on loopback that records every POST and answers with the statuses it is
    given, one per request, then 200. `hold` keeps its answers back until `release`."""

    def __init__(self, statuses: tuple[int, ...] = ()):
        self.received: list[ReceivedHook] = []
        self.statuses = list(statuses)
        self.answering = threading.Event()
        self.answering.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(ReceivedHook({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.answering.wait(60)
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """With a token in its query, as many webhook services have (it must never show)."""
        return f"http://127.0.0.1:{self.server.server_port}/hooks/oncelink?token=receiver-only-t0ken"

    def hold(self) -> None:
        self.answering.clear()

    def release(self) -> None:
        self.answering.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def verify_standard_webhook(secret: str, hook: ReceivedHook, now: float, tolerance: float = 300) -> bool:
    """The receiver's check, written from the Standard Webhooks specification, not from our sender:
    the key is the base64 after `whsec_`, the signed content `id.timestamp.body`, the signature
    header one or more space-separated `v1,BASE64`, and the timestamp within `tolerance` of now."""
    message_id, timestamp = hook.headers["webhook-id"], hook.headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + hook.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1) for part in hook.headers["webhook-signature"].split()]
    return any(version == "v1" and hmac.compare_digest(value, expected) for version, value in offered)


@dataclass
class Filler:
    """A file that takes every free byte of a small disk (the `small_disk` fixture)."""

    path: Path

    def fill(self) -> None:
        block = bytes(64 * 1024)
        with open(self.path, "ab", buffering=0) as filler:
            try:
                while True:
                    filler.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise

    def remove(self) -> None:
        self.path.unlink()


def settled(path: Path) -> Path:
    """Date the file's last change a minute back, as a backup written earlier would be: digests are
    computed at once only for a file that has settled (core/digests.py, SETTLE_SECONDS)."""
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def repr_digest_of(header: str) -> bytes:
    """The sha-256 bytes of a Repr-Digest field, parsed by RFC 8941's rules (http-sf): a dictionary
    whose sha-256 member is a byte sequence."""
    parsed = http_sf.parse(header.encode("ascii"), tltype="dictionary")
    value, _params = parsed["sha-256"]
    assert isinstance(value, bytes), parsed
    return value


def database_text(db) -> str:
    """Everything the database holds, as text: to show that a secret is nowhere in it."""
    if getattr(db, "dialect", "sqlite") != "postgresql":
        return "\n".join(db.conn.iterdump())
    tables = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    rows = (db.execute(f'SELECT * FROM "{table}"') for (table,) in tables)  # noqa: S608 (the server's names)
    return "\n".join(repr(row) for cursor in rows for row in cursor)


def cli_environment(app) -> dict[str, str]:
    """The environment a `flask` command needs to reach the same install as `app`: its data dir
    and, on PostgreSQL, its database and the secrets every host shares."""
    env = {**os.environ, "ONCELINK_DATA_DIR": app.config["DATA_DIR"]}
    for name in ("DATABASE_URL", "SECRET_KEY", "MASTER_KEY"):
        if app.config.get("DATABASE_URL") and app.config.get(name):
            env[f"ONCELINK_{name}"] = str(app.config[name])
    return env


def claims_lapsed(server, url: str) -> bool:
    """Every claim the link holds has a lease in the past (nobody renews a frozen worker's)."""
    link = link_record(server, url)[0]
    db = connect(server.app.config["DATABASE"])
    try:
        leases = [row[0] for row in db.execute("SELECT lease_until FROM claims WHERE link_id = ?", [link.id])]
    finally:
        db.close()
    return bool(leases) and max(leases) < time.time()
