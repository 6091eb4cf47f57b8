"""Real remote storage servers for the tests: Debian's OpenSSH sshd (SFTP) and wsgidav (WebDAV), each
its own process on a free loopback port, with keys, users and folders made for the run."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
WEBDAV_USER, WEBDAV_PASSWORD = "backup", "dav secret"

SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {home}/host_key
AuthorizedKeysFile {home}/authorized_keys
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication yes
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
"""


def free_port() -> int:
    from tests.conftest import free_port  # conftest imports this module's fixtures: not at import time

    return free_port()


def wait_until_listening(process: subprocess.Popen, port: int, name: str) -> None:
    from tests.conftest import wait_until_listening

    wait_until_listening(process, port, name)


def keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "oncelink-tests", "-f", str(path)], check=True
    )


@dataclass
class SshServer:
    """sshd -D -e -f CONFIG: a host key and a client key made for the run, the files in `root`.

    The tests run as root: sshd wants its privilege separation folder, and StrictModes is off
    because the keys live under pytest's temporary folders (root-owned, but group-writable parents)."""

    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def root(self) -> Path:
        return self.home / "files"

    @property
    def user(self) -> str:
        return pwd.getpwuid(os.getuid()).pw_name

    @property
    def client_key(self) -> str:
        return (self.home / "client_key").read_text()

    @property
    def host_key_line(self) -> str:
        """The host key as known_hosts holds it: "[127.0.0.1]:PORT ssh-ed25519 AAAA..."."""
        return f"[127.0.0.1]:{self.port} " + " ".join((self.home / "host_key.pub").read_text().split()[:2])

    @property
    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(self.home / "host_key.pub")],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.split()[1]

    def prepare(self) -> SshServer:
        self.home.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(exist_ok=True)
        keygen(self.home / "host_key")
        keygen(self.home / "client_key")
        shutil.copy(self.home / "client_key.pub", self.home / "authorized_keys")
        (self.home / "sshd_config").write_text(SSHD_CONFIG.format(port=self.port, home=self.home))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        return self

    def start(self) -> SshServer:
        command = [str(SSHD), "-D", "-e", "-f", str(self.home / "sshd_config")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_listening(self.process, self.port, "sshd")
        return self

    def stop(self) -> None:
        """sshd and every process of its sessions (each connection is a tree of its own)."""
        if self.process and self.process.poll() is None:
            doomed = descendants(self.process.pid)
            self.process.kill()
            self.process.wait()
            for pid in doomed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [grandchild for child in map(int, found) for grandchild in [child, *descendants(child)]]


@dataclass
class DavServer:
    """wsgidav under cheroot, serving `root` with Basic auth for one user."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dav/"

    def start(self) -> DavServer:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root.parent / f"wsgidav-{self.port}.yaml"
        config.write_text(
            f"host: 127.0.0.1\nport: {self.port}\nserver: cheroot\n"
            f"provider_mapping:\n  /dav: {self.root}\n"
            "http_authenticator:\n  accept_basic: true\n  accept_digest: false\n  default_to_digest: false\n"
            "simple_dc:\n  user_mapping:\n    '*':\n"
            f"      {WEBDAV_USER}:\n        password: '{WEBDAV_PASSWORD}'\n"
            "verbose: 1\nlogging:\n  enable_loggers: []\n"
        )
        command = [sys.executable, "-m", "wsgidav.server.server_cli", "--config", str(config)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_listening(self.process, self.port, "wsgidav")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not SSHD.exists():
        pytest.fail("sshd is missing: `make system-test-tools` installs openssh-server")
    server = SshServer(tmp_path_factory.mktemp("sshd")).prepare().start()
    yield server
    server.stop()


@pytest.fixture
def start_sshd(tmp_path):
    """For tests that kill their server: a fresh sshd of their own."""
    servers = []

    def start() -> SshServer:
        server = SshServer(tmp_path / f"sshd{len(servers)}").prepare().start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def webdav(tmp_path_factory):
    server = DavServer(tmp_path_factory.mktemp("webdav") / "files").start()
    yield server
    server.stop()


@pytest.fixture
def start_webdav(tmp_path):
    servers = []

    def start() -> DavServer:
        server = DavServer(tmp_path / f"dav{len(servers)}" / "files").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def add_sftp(app, storage_id: str, server: SshServer, root: Path | None = None) -> None:
    """Register an SFTP storage on `server` the way `storages add-sftp --key-file --fingerprint` does."""
    from core.remote_storages import add_sftp_storage
    from db import connect
    from storage.sftp_connect import SFTPSettings

    settings = SFTPSettings(
        "127.0.0.1",
        server.user,
        str(root or server.root),
        server.port,
        (server.fingerprint,),
        private_key=server.client_key,
    )
    db = connect(app.config["DATABASE"])
    try:
        add_sftp_storage(db, app.extensions["oncelink_keyring"], storage_id, settings)
    finally:
        db.close()


def add_webdav(app, storage_id: str, server: DavServer) -> None:
    """Register a WebDAV storage on `server` the way `storages add-webdav` does."""
    from core.remote_storages import add_webdav_storage
    from db import connect
    from storage.webdav import WebDAVSettings

    db = connect(app.config["DATABASE"])
    try:
        settings = WebDAVSettings(server.url, WEBDAV_USER, WEBDAV_PASSWORD)
        add_webdav_storage(db, app.extensions["oncelink_keyring"], storage_id, settings)
    finally:
        db.close()
