"""The two servers under test: Oncelink as `make serve` runs it, and nginx as the reference."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness import REPO, BenchError, Workspace, child_process, require, wait_for_port

VENV_BIN = Path(sys.prefix) / "bin"  # run.py runs under the venv's python
GUNICORN_CONF = "gunicorn.conf.py"  # the one `make serve` uses
COMMAND_SECONDS = 60


@dataclass(frozen=True)
class Oncelink:
    """The app as `make serve` runs it, on its own data dir and port."""

    workspace: Workspace
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        logs = self.workspace.logs
        return {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "ONCELINK_DATA_DIR": str(self.workspace.instance),
            "ONCELINK_BACKUP_DIR": str(self.workspace.backups),
            "ONCELINK_PUBLIC_URL": self.url,
            "ONCELINK_ACCESS_LOG": str(logs / "gunicorn-access.log"),
            "ONCELINK_ERROR_LOG": str(logs / "gunicorn-error.log"),
        }

    def flask(self, *args: str) -> str:
        """Run `flask --app app ...` from the repository and return what it printed."""
        command = [str(VENV_BIN / "flask"), "--app", "app", *args]
        result = subprocess.run(
            command, cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=COMMAND_SECONDS
        )
        if result.returncode != 0:
            raise BenchError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")
        return result.stdout

    def bootstrap(self) -> None:
        self.flask("bootstrap")

    def create_profile(self, name: str) -> None:
        self.flask("keys", "create", name)

    def encrypt(self, path: Path, profile: str) -> Path:
        """An encrypted copy beside the file, `<name>.enc`, made by the app's own streaming `encrypt`."""
        target = path.with_name(f"{path.name}.enc")
        self.flask("encrypt", "--profile", profile, str(path), str(target))
        return target

    def mint_link(self, path: Path) -> str:
        """A fresh single-use link to a file of the `local` storage: links are spent by a download.

        An encrypted file's link decrypts (the default): what it serves is the plaintext.
        """
        relative = path.relative_to(self.workspace.backups).as_posix()
        return self.flask("links", "create", "local", relative, "--ttl", "3600").strip()

    @contextmanager
    def serving(self) -> Iterator[subprocess.Popen]:
        """gunicorn exactly as `make serve` starts it; yields the master process."""
        log = self.workspace.logs / "gunicorn.out"
        command = [str(VENV_BIN / "gunicorn"), "-c", GUNICORN_CONF, "wsgi:app"]
        with child_process(command, log, cwd=REPO, env=self.env()) as master:
            wait_for_port(self.port, master, self.workspace.logs / "gunicorn-error.log")
            yield master


NGINX_CONF = """\
# Written by bench/run.py: the reference server, plain static files from the backups folder.
user {user} {group};  # ignored unless started as root; then workers read files as we do
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {logs}/nginx-error.log;

events {{
    worker_connections 64;
}}

http {{
    access_log {logs}/nginx-access.log;
    client_body_temp_path {root}/nginx-temp/body;
    proxy_temp_path {root}/nginx-temp/proxy;
    fastcgi_temp_path {root}/nginx-temp/fastcgi;
    uwsgi_temp_path {root}/nginx-temp/uwsgi;
    scgi_temp_path {root}/nginx-temp/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;

    server {{
        listen 127.0.0.1:{port};
        root {backups};
    }}
}}
"""


@dataclass(frozen=True)
class Nginx:
    """Debian's nginx serving the same backups folder: what the app is measured against."""

    workspace: Workspace
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def file_url(self, path: Path) -> str:
        return f"{self.url}/{path.relative_to(self.workspace.backups).as_posix()}"

    def write_conf(self) -> Path:
        workspace = self.workspace
        conf = workspace.root / "nginx.conf"
        (workspace.root / "nginx-temp").mkdir(exist_ok=True)
        conf.write_text(
            NGINX_CONF.format(
                user=pwd.getpwuid(os.geteuid()).pw_name,
                group=grp.getgrgid(os.getegid()).gr_name,
                root=workspace.root,
                logs=workspace.logs,
                port=self.port,
                backups=workspace.backups,
            )
        )
        return conf

    @contextmanager
    def serving(self) -> Iterator[subprocess.Popen]:
        nginx = require("nginx")
        log = self.workspace.logs / "nginx-error.log"
        command = [nginx, "-p", str(self.workspace.root), "-c", str(self.write_conf()), "-e", str(log)]
        with child_process(command, self.workspace.logs / "nginx.out") as master:
            wait_for_port(self.port, master, log)
            yield master


@dataclass(frozen=True)
class Bench:
    """The running servers and the files they serve: what every measurement is handed."""

    oncelink: Oncelink
    nginx: Nginx
    gunicorn_master: int
    files: dict[str, Path]  # a label for the tables ("1 GiB") -> the file in the backups folder
