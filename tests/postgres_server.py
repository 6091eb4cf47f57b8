"""A real PostgreSQL for the tests: Debian's server in a temporary cluster on a free loopback port.

PostgreSQL refuses to run as root, so `initdb` and `pg_ctl` run as the `postgres` user, in a
folder it owns. The cluster trusts loopback connections (it listens on 127.0.0.1 only, and lives
as long as the test session) and runs without fsync: the tests need its semantics, not durability.
Each test that asks gets a database of its own, copied from a template that is migrated once.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from db.pg_migrations import apply_pending
from db.postgres import connect as connect_postgres

TEMPLATE = "oncelink_template"
_numbers = itertools.count()


def server_binaries() -> Path:
    """Debian's versioned folder (/usr/lib/postgresql/N/bin), the newest installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make test` installs it (apt: postgresql)")
    return Path(found[-1]).parent


def as_postgres(*command: str) -> subprocess.CompletedProcess:
    prefix = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    return subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, timeout=60)


@dataclass
class PostgresServer:
    port: int
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="oncelink-pg-")))

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        binaries = server_binaries()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        if not self.data.exists():
            as_postgres(
                str(binaries / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8"
            )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        as_postgres(
            str(binaries / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            "-l",
            str(self.folder / "server.log"),
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        as_postgres(str(server_binaries() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def make_template(self) -> None:
        self.admin(f"CREATE DATABASE {TEMPLATE}")
        db = connect_postgres(self.url(TEMPLATE))
        try:
            apply_pending(db)
        finally:
            db.close()

    def fresh_database(self, migrated: bool = True) -> str:
        """The URL of a new database: a copy of the migrated template, or empty."""
        name = f"test_{os.getpid()}_{next(_numbers)}"
        self.admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {TEMPLATE}" if migrated else ""))
        return self.url(name)


@contextmanager
def cluster(port: int) -> Iterator[PostgresServer]:
    """A cluster started on `port`, with a migrated template to copy databases from; stopped (unless
    the test stopped it already) and removed after the block."""
    server = PostgresServer(port).start()
    try:
        server.make_template()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.stop()
        server.remove()


def wait_until_accepting(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(url, connect_timeout=1).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
