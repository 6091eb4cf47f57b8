"""The servers: Oncelink as `make serve` runs it, nginx as the reference, and moto's S3 server."""

from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from harness import REPO, BenchError, Workspace, child_process, require, wait_for_port

VENV_BIN = Path(sys.prefix) / "bin"  # run.py runs under the venv's python
GUNICORN_CONF = "gunicorn.conf.py"  # the one `make serve` uses
COMMAND_SECONDS = 60
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}  # moto accepts any


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

    def flask(self, *args: str, extra_env: dict[str, str] | None = None, stdin: str | None = None) -> str:
        """Run `flask --app app ...` from the repository and return what it printed."""
        command = [str(VENV_BIN / "flask"), "--app", "app", *args]
        env = {**self.env(), **(extra_env or {})}
        result = subprocess.run(
            command, cwd=REPO, env=env, input=stdin, capture_output=True, text=True, timeout=COMMAND_SECONDS
        )
        if result.returncode != 0:
            raise BenchError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")
        return result.stdout

    def bootstrap(self) -> None:
        self.flask("bootstrap")

    def create_user(self, name: str, role: str, password: str) -> None:
        self.flask("users", "create", name, "--role", role, "--password-stdin", stdin=password + "\n")

    def create_profile(self, name: str) -> None:
        self.flask("keys", "create", name)

    @staticmethod
    def encrypted_copy(path: Path) -> Path:
        """Where `encrypt` puts the encrypted copy of a file: beside it, `<name>.enc`."""
        return path.with_name(f"{path.name}.enc")

    def encrypt(self, path: Path, profile: str) -> Path:
        """An encrypted copy beside the file, made by the app's own streaming `encrypt`."""
        target = self.encrypted_copy(path)
        self.flask("encrypt", "--profile", profile, str(path), str(target))
        return target

    def add_s3_storage(self, storage_id: str, s3: MotoS3 | SeededMotoS3) -> None:
        """The bucket as a storage in proxy mode (no `--redirect`): the app carries every byte."""
        self.flask(
            "storages", "add-s3", storage_id, "--bucket", s3.bucket, "--endpoint-url", s3.url, "--path-style",
            extra_env=S3_CREDENTIALS,
        )  # fmt: skip

    def mint_object_link(self, storage_id: str, key: str) -> str:
        """A fresh single-use link to an object of an S3 storage; an encrypted object's link decrypts."""
        return self.flask("links", "create", storage_id, key, "--ttl", "3600").strip()

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

worker_rlimit_nofile 8192;

events {{
    worker_connections 4096;  # the crowd of slow clients is a thousand connections
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

        location /listings/ {{
            autoindex on;  # bench/listings.py: a folder of 100,000 files, listed whole
            autoindex_format json;
        }}
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


# A request in werkzeug's log: ... "GET /bucket/key HTTP/1.1" 206 -, the method after the colour
# codes werkzeug puts around some statuses' lines (206 among them), even when it writes to a file.
REQUEST_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) /')


def moto_client(url: str) -> BaseClient:
    """A boto3 client of the bench's own, addressing the bucket as the app does: SigV4, path-style."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@dataclass(frozen=True)
class MotoS3:
    """moto's standalone S3 server (werkzeug, objects kept by the server process) with one bucket."""

    workspace: Workspace
    port: int
    bucket: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workspace.logs / "moto.log"

    def client(self) -> BaseClient:
        return moto_client(self.url)

    def upload(self, path: Path) -> str:
        """The file as an object named after it (boto3's multipart upload); returns the key."""
        self.client().upload_file(str(path), self.bucket, path.name)
        return path.name

    def log_size(self) -> int:
        return self.log.stat().st_size

    def requests_since(self, offset: int) -> Counter[str]:
        """The requests moto logged after `offset` in its log, counted by method.

        werkzeug logs a request as its response headers leave, so once a download has
        ended, every request it made is in the log.
        """
        with open(self.log, "rb") as log:
            log.seek(offset)
            return Counter(REQUEST_LINE.findall(log.read().decode(errors="replace")))

    @contextmanager
    def serving(self) -> Iterator[subprocess.Popen]:
        """`moto_server` with an empty bucket; yields the server process."""
        moto = VENV_BIN / "moto_server"
        if not moto.exists():
            raise BenchError("moto_server is not installed; `make bench` installs requirements-dev.txt.")
        command = [str(moto), "-H", "127.0.0.1", "-p", str(self.port)]
        with child_process(command, self.log) as server:
            wait_for_port(self.port, server, self.log)
            self.client().create_bucket(Bucket=self.bucket)
            yield server


@dataclass(frozen=True)
class SeededMotoS3:
    """moto's S3 server with one bucket of `count` objects under "big/", put straight into its
    backend by tools/seeded_moto.py (over HTTP, 100,000 objects would take minutes)."""

    workspace: Workspace
    port: int
    bucket: str
    count: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> BaseClient:
        return moto_client(self.url)

    @contextmanager
    def serving(self) -> Iterator[subprocess.Popen]:
        script = REPO / "tools" / "seeded_moto.py"
        command = [sys.executable, str(script), str(self.port), self.bucket, "big/", str(self.count)]
        log = self.workspace.logs / f"moto-{self.bucket}.log"
        with child_process(command, log) as server:
            wait_for_port(self.port, server, log)  # it listens once the objects are in
            yield server


@dataclass(frozen=True)
class Bench:
    """The running servers and the files they serve: what every measurement is handed."""

    oncelink: Oncelink
    nginx: Nginx
    gunicorn_master: int
    files: dict[str, Path]  # a label for the tables ("1 GiB") -> the file in the backups folder
