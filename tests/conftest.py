"""Fixtures: an app on a temp data dir, its clients, an auth helper, and real gunicorn servers."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from playwright.sync_api import sync_playwright

from app import create_app
from core import kept_scans, snapshots
from core.accounts import create_user
from core.links import LinkRequest, create_link
from core.shared_scans import shared_scans
from core.storages import add_s3_storage
from db import close_pool, connect
from db.storages import StorageRecord, get_storage, insert_storage
from encryption.format import encrypt_stream, new_header
from encryption.keys import profile_names
from storage.local import LocalStorage
from storage.s3 import S3Settings
from tests.postgres_server import cluster

ROOT = Path(__file__).resolve().parent.parent
SHARED_MASTER_KEY = "b25jZWxpbmsgdGVzdHMgc2hhcmUgdGhpcyBrZXkhISE="  # 32 bytes, base64: tests only
PASSWORD = "correct horse battery"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def make_app(data_dir: Path, backups: Path, **config):
    app = create_app({"TESTING": True, "DATA_DIR": str(data_dir), "RATELIMIT_ENABLED": False, **config})
    backups.mkdir(parents=True, exist_ok=True)
    with app.app_context():
        db = connect(app.config["DATABASE"])
        if get_storage(db, "local") is None:  # several hosts on one machine: their shared mount
            shared = {"shared": True} if app.config["SEVERAL_HOSTS"] else {}
            insert_storage(db, StorageRecord("local", "Local", "local", {"path": str(backups), **shared}))
        db.close()
    return app


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    return tmp_path / "backups"


def pytest_addoption(parser):
    parser.addoption(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the database the `app` fixture uses: a SQLite file, or a fresh PostgreSQL database",
    )


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster for the session, with a migrated template to copy databases from."""
    with cluster(free_port()) as server:
        yield server


@pytest.fixture
def database_config(request) -> dict:
    """The `app` fixture's database: SQLite in its data dir, or (--database=postgresql) a fresh
    PostgreSQL database and the shared secrets a PostgreSQL install requires."""
    if request.config.getoption("--database") != "postgresql":
        return {}
    url = request.getfixturevalue("postgres").fresh_database()
    return {"DATABASE_URL": url, "SECRET_KEY": "test secret key", "MASTER_KEY": SHARED_MASTER_KEY}


@pytest.fixture
def app(tmp_path: Path, backups: Path, database_config: dict):
    app = make_app(tmp_path / "instance", backups, **database_config)
    yield app
    app.extensions["oncelink_purge"].wait()
    app.extensions["oncelink_digests"].close(30)
    close_pool(app.config["DATABASE"])  # the connections it kept open, before its folder goes


@pytest.fixture
def db(app):
    database = connect(app.config["DATABASE"])
    yield database
    database.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def csrf_token_from(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


@dataclass
class Auth:
    """Creates users and signs the test client in as one of them."""

    app: object
    client: object
    csrf_token: str | None = None

    def create(self, name: str, role: str):
        with self.app.app_context():
            db = connect(self.app.config["DATABASE"])
            user = create_user(db, name, PASSWORD, role, time.time())
            db.close()
        return user

    def login(self, role: str = "operator", name: str | None = None):
        user = self.create(name or role, role)
        page = self.client.get("/login").get_data(as_text=True)
        token = csrf_token_from(page)
        response = self.client.post(
            "/login", data={"name": user.name, "password": PASSWORD, "csrf_token": token}
        )
        assert response.status_code == 303, response.get_data(as_text=True)
        self.csrf_token = csrf_token_from(self.client.get("/").get_data(as_text=True))
        return user

    def headers(self) -> dict:
        return {"X-CSRFToken": self.csrf_token} if self.csrf_token else {}


@pytest.fixture
def auth(app, client) -> Auth:
    return Auth(app, client)


def mint(app, path: str, ttl: int = 300, uses: int = 1, decrypt: bool = True, storage: str = "local") -> str:
    """A link token, minted straight through the domain layer."""
    db = connect(app.config["DATABASE"])
    try:
        keyring = app.extensions["oncelink_keyring"]
        return create_link(
            db, storage, LinkRequest(path, decrypt, ttl, uses), keyring, None, time.time()
        ).token
    finally:
        db.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(process: subprocess.Popen, port: int, name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{name} exited at start"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not start listening")


@dataclass
class LiveServer:
    """A real gunicorn, started as `make serve` starts it, on a free loopback port."""

    data_dir: Path
    backups: Path
    lease_seconds: float = 2
    send_timeout: float = 3
    port: int = field(default_factory=free_port)
    wrapper: tuple[str, ...] = ()  # a command to run gunicorn under, such as strace
    settings: dict[str, str] = field(default_factory=dict)  # more environment, over env()'s own
    shared: dict[str, str] = field(default_factory=dict)  # app settings several hosts share (DATABASE_URL...)
    own_group: bool = False  # a process group of its own, to be killed whole as a host dies
    process: subprocess.Popen | None = None
    app: object = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.data_dir / "access.log"

    @property
    def error_log(self) -> Path:
        return self.data_dir / "error.log"

    def env(self) -> dict:
        return {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "ONCELINK_DATA_DIR": str(self.data_dir),
            "ONCELINK_LEASE_SECONDS": str(self.lease_seconds),
            "ONCELINK_PUBLIC_URL": self.url,
            "ONCELINK_ACCESS_LOG": str(self.access_log),
            "ONCELINK_ERROR_LOG": str(self.error_log),
            "WEB_CONCURRENCY": "2",
            "ONCELINK_SEND_TIMEOUT": str(self.send_timeout),
            "ONCELINK_RATELIMIT_ENABLED": "false",  # the race tests send many refused requests
            **{f"ONCELINK_{name}": value for name, value in self.shared.items()},
            **self.settings,
        }

    def start(self) -> LiveServer:
        if self.app is None:
            self.app = make_app(
                self.data_dir,
                self.backups,
                LEASE_SECONDS=self.lease_seconds,
                PUBLIC_URL=self.url,
                **self.shared,
            )
        command = [*self.wrapper, sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env(), start_new_session=self.own_group)
        wait_until_listening(self.process, self.port, "gunicorn")
        return self

    def children(self, pid: int) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        return [int(child) for child in out.stdout.split()]

    @property
    def master_pid(self) -> int:
        """gunicorn's arbiter: our child, or the wrapper's."""
        return self.children(self.process.pid)[0] if self.wrapper else self.process.pid

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.master_pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def worker_pids(self) -> list[int]:
        return self.children(self.master_pid)

    def link(self, path: str, **options) -> str:
        return f"{self.url}/api/storage/public-download?token={mint(self.app, path, **options)}"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("live")
    server = LiveServer(base / "instance", base / "backups").start()
    yield server
    server.stop()


@pytest.fixture
def no_kept_scans(monkeypatch):
    """No folder scan kept from another test, in memory or in a data dir, and none made in the
    background to outlive this one."""
    monkeypatch.setattr(snapshots, "PREFETCH", False)
    monkeypatch.setattr(shared_scans, "folder", None)
    kept_scans.snapshots.clear()
    yield
    kept_scans.snapshots.clear()


@pytest.fixture
def scans(monkeypatch) -> list[bool]:
    """Every scan a local storage makes from now on, as whether it looked at each entry (a fresh
    scan by size or date does; one by name, or the names read again for a patch, does not)."""
    made, real_scan = [], LocalStorage.scan

    def recorded(self, folder="", stats=False):
        made.append(stats)
        return real_scan(self, folder, stats)

    monkeypatch.setattr(LocalStorage, "scan", recorded)
    return made


@contextmanager
def tmpfs_mounted(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` ("4m") mounted at `mountpoint` for the block (mounting needs root)."""
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs to fill: a data dir on it runs out of space at will."""
    with tmpfs_mounted(tmp_path / "small-disk", "4m") as mountpoint:
        yield mountpoint


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, driven by Playwright (it cannot download browsers of its own here)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def start_server(tmp_path):
    """For tests that stop and restart their own server."""
    servers = []

    def start(**options) -> LiveServer:
        server = LiveServer(tmp_path / "instance", tmp_path / "backups", **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass
class MotoServer:
    """moto's standalone S3 server on a free loopback port: real HTTP, real SigV4."""

    env: dict = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(
            command, env={**os.environ, **self.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until_listening(self.process, self.port, "moto_server")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


@pytest.fixture(scope="session")
def moto():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def start_moto():
    """For tests that need a moto of their own (with authentication on, or to kill it)."""
    servers = []

    def start(**env) -> MotoServer:
        server = MotoServer(env=env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass
class SeededMoto(MotoServer):
    """moto's S3 server with `count` objects under `prefix`, put straight into its backend
    (tools/seeded_moto.py says which); over HTTP, 10,000 objects would take half a minute."""

    bucket: str = "listing-tests"
    prefix: str = "big/"
    count: int = 10_000

    def start(self) -> SeededMoto:
        script = ROOT / "tools" / "seeded_moto.py"
        command = [sys.executable, str(script), str(self.port), self.bucket, self.prefix, str(self.count)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready", "seeded_moto.py exited at start"
        return self

    def stop(self) -> None:
        super().stop()
        if self.process:
            self.process.stdout.close()


@pytest.fixture(scope="session")
def seeded_moto():
    server = SeededMoto().start()
    yield server
    server.stop()


def add_s3(app, storage_id: str, endpoint: str, bucket: str, **settings):
    """Register an S3 storage in an app's database, the way `storages add-s3` does."""
    db = connect(app.config["DATABASE"])
    try:
        options = {"access_key_id": "test", "secret_access_key": "test", "path_style": True, **settings}
        add_s3_storage(
            db,
            app.extensions["oncelink_keyring"],
            storage_id,
            S3Settings(bucket, endpoint_url=endpoint, **options),
        )
    finally:
        db.close()


def seal(app, profile_name: str, plain: bytes) -> bytes:
    """`plain` in Oncelink's encrypted format, under a profile created for it (or the existing one)."""
    keyring = app.extensions["oncelink_keyring"]
    db = connect(app.config["DATABASE"])
    try:
        if profile_name not in profile_names(db).values():
            keyring.create(db, profile_name, time.time())
        profile, key = keyring.by_name(db, profile_name)
    finally:
        db.close()
    sealed = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), sealed, key, new_header(bytes.fromhex(profile.id)))
    return sealed.getvalue()


# A test that uses the small tmpfs (small_disk) starts a server on it.
LIVE_FIXTURES = {"live_server", "start_server", "moto", "start_moto", "seeded_moto", "browser", "small_disk"}
LIVE_FIXTURES |= {"postgres"}


def pytest_collection_modifyitems(config, items):
    """Tests that start a server or a browser are `live`: `make test-fast` leaves them out. With
    --database=postgresql, the tests about SQLite itself are left out."""
    for item in items:
        if LIVE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.live)
    if config.getoption("--database") == "postgresql":
        about_sqlite = [item for item in items if item.get_closest_marker("sqlite_only")]
        config.hook.pytest_deselected(items=about_sqlite)
        items[:] = [item for item in items if not item.get_closest_marker("sqlite_only")]


# The remote storage servers (sshd, wsgidav) live in tests/servers.py, which uses the helpers above.
from tests.servers import sshd, start_sshd, start_webdav, webdav  # noqa: E402, F401

LIVE_FIXTURES |= {"sshd", "start_sshd", "webdav", "start_webdav"}
