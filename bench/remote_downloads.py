"""Backups on an SFTP server (Debian's sshd) and a WebDAV server (wsgidav), proxied by Oncelink,
against each server read directly by its reference client: paramiko's own `get` for SFTP, curl
for WebDAV. Goal from the issue: >= 0.8x the direct read, plain and decrypted, worker memory flat.

The servers are the test suite's (tests/servers.py), started for this section on loopback; the
bench's files are hard-linked into their folders, so nothing is copied or timed but the reads.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from urllib.parse import quote

import paramiko
from decrypted_downloads import encrypt_backups, memory_cell
from harness import REPO, BenchError, Transfer, curl_download
from report import Section
from servers import Bench
from workers import connected_to, watch_workers

sys.path.insert(0, str(REPO))
from tests.servers import WEBDAV_PASSWORD, WEBDAV_USER, DavServer, SshServer  # noqa: E402

LABEL = "1 GiB"
ROUNDS = 2
GOAL_RATIO = 0.8


@dataclass
class Remote:
    kind: str  # the storage id and kind: "sftp" or "webdav"
    port: int
    direct: object  # () -> Transfer: the reference client reading the plain file


def paramiko_get(server: SshServer, name: str, size: int) -> Transfer:
    """paramiko's SFTPClient.getfo of the file into a sink (its prefetching reader, as `get` uses)."""
    key = paramiko.Ed25519Key.from_private_key_file(str(server.home / "client_key"))
    transport = paramiko.Transport(("127.0.0.1", server.port))
    transport.connect(username=server.user, pkey=key)  # the bench's own server: its key is ours
    try:
        sftp = paramiko.SFTPClient.from_transport(transport)
        started = time.monotonic()
        received = sftp.getfo(str(server.root / name), Sink())
        seconds = time.monotonic() - started
    finally:
        transport.close()
    if received != size:
        raise BenchError(f"paramiko got {received} of {size} bytes")
    return Transfer(size, seconds, 0.0, size / seconds)


class Sink:
    """Where paramiko's get writes: nowhere (its `get` into /dev/null refuses, checking the size)."""

    def write(self, data: bytes) -> int:
        return len(data)


def stock(bench: Bench, folder: Path) -> None:
    plain = bench.files[LABEL]
    encrypted = encrypt_backups(bench)[LABEL].encrypted
    for path in (plain, encrypted):
        target = folder / path.name
        if not target.exists():
            os.link(path, target)


def add_storages(bench: Bench, sshd: SshServer, dav: DavServer) -> None:
    oncelink = bench.oncelink
    oncelink.flask(
        "storages", "add-sftp", "sftp", "--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user,
        "--root", str(sshd.root), "--key-file", str(sshd.home / "client_key"),
        "--fingerprint", sshd.fingerprint,
    )  # fmt: skip
    oncelink.flask(
        "storages", "add-webdav", "webdav", "--url", dav.url, "--user", WEBDAV_USER,
        extra_env={"ONCELINK_STORAGE_PASSWORD": WEBDAV_PASSWORD},
    )  # fmt: skip


def through_app(bench: Bench, kind: str, name: str, size: int) -> Transfer:
    return curl_download(bench.oncelink.mint_object_link(kind, name), size)


def speed(transfers: list[Transfer]) -> float:
    return median(t.mib_per_second for t in transfers)


def rows_for(bench: Bench, remote: Remote, size: int) -> tuple[list[list[str]], list[float]]:
    plain, sealed = bench.files[LABEL].name, bench.files[LABEL].name + ".enc"
    direct, proxied, decrypted = [], [], []
    for _ in range(ROUNDS):
        direct.append(remote.direct())
        proxied.append(through_app(bench, remote.kind, plain, size))
        decrypted.append(through_app(bench, remote.kind, sealed, size))
    memory = {}
    for label, name in (("plain", plain), ("decrypted", sealed)):
        url = bench.oncelink.mint_object_link(remote.kind, name)
        with watch_workers(bench.gunicorn_master, connected_to(remote.port)) as workers:
            curl_download(url, size)
        memory[label] = memory_cell(list(workers.values()))
    reference = speed(direct)
    title = {"sftp": "SFTP", "webdav": "WebDAV"}[remote.kind]
    client = "paramiko get" if remote.kind == "sftp" else "curl"
    rows = [[f"{title} {LABEL} direct ({client})", f"{reference:,.0f}", "1.00x", "-"]]
    ratios = []
    for label, transfers in (("plain", proxied), ("decrypted", decrypted)):
        ratios.append(speed(transfers) / reference)
        rows.append(
            [
                f"{title} {LABEL} {label} through Oncelink",
                f"{speed(transfers):,.0f}",
                f"{ratios[-1]:.2f}x",
                memory[label],
            ]
        )
    return rows, ratios


def measure_remote(bench: Bench) -> Section:
    """1 GiB from sshd and wsgidav through Oncelink (plain, decrypted) against paramiko's get and curl."""
    work = bench.oncelink.workspace.root / "remote"
    size = bench.files[LABEL].stat().st_size
    sshd = SshServer(work / "sshd").prepare().start()
    dav = DavServer(work / "dav" / "files").start()
    try:
        stock(bench, sshd.root)
        stock(bench, dav.root)
        add_storages(bench, sshd, dav)
        dav_url = (
            dav.url.replace("://", f"://{WEBDAV_USER}:{quote(WEBDAV_PASSWORD)}@") + bench.files[LABEL].name
        )
        remotes = [
            Remote("sftp", sshd.port, lambda: paramiko_get(sshd, bench.files[LABEL].name, size)),
            Remote("webdav", dav.port, lambda: curl_download(dav_url, size)),
        ]
        results = [rows_for(bench, remote, size) for remote in remotes]
    finally:
        sshd.stop()
        dav.stop()
    worst = min(ratio for _, ratios in results for ratio in ratios)
    return Section(
        title="SFTP and WebDAV storages: Oncelink vs the servers read directly",
        about=(
            f"Debian's sshd and wsgidav (under cheroot) on loopback serve the {LABEL} test file and its "
            "`.enc` copy; the app has them as storages `sftp` and `webdav`. *direct* reads the plain file "
            "with the reference client in the bench process (paramiko's `SFTPClient.getfo` into a sink; "
            "curl with Basic auth); through Oncelink curl fetches a fresh link. MiB/s, median of "
            f"{ROUNDS}. *Worker RSS*: before / peak (growth) of the worker connected to the server, "
            "during one more download."
        ),
        columns=["Download", "MiB/s", "x direct", "Worker RSS, MiB"],
        rows=[row for rows, _ in results for row in rows],
        notes="sshd, wsgidav, the worker and curl share this machine's two cores.",
        verdict=f"goal {'met' if worst >= GOAL_RATIO else 'NOT met'}: the slowest download through Oncelink "
        f"ran at {worst:.2f}x its server read directly (goal: >= {GOAL_RATIO}x).",
    )
