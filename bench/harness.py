"""What every benchmark shares: the work folder, starting and stopping servers, and curl.

Everything listens on 127.0.0.1 only, and every process started here runs in its own
process group, which is ended when its `with` block exits, however it exits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MiB = 2**20

STARTUP_SECONDS = 30
STOP_SECONDS = 10
DOWNLOAD_SECONDS = 120


class BenchError(Exception):
    """Something the benchmark relies on did not work; the message says what."""


@dataclass(frozen=True)
class Workspace:
    """The benchmark's own folder: backups to serve, the Oncelink data dir, configs and logs."""

    root: Path

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def instance(self) -> Path:
        return self.root / "instance"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @classmethod
    def fresh(cls, root: Path) -> Workspace:
        """Start from an empty folder, so that no link or log of an earlier run counts."""
        shutil.rmtree(root, ignore_errors=True)
        workspace = cls(root)
        for folder in (workspace.backups, workspace.logs):
            folder.mkdir(parents=True)
        return workspace

    def add_file(self, name: str, size: int) -> Path:
        """A backup of `size` bytes: one random MiB repeated, fast to write and not compressible."""
        path = self.backups / name
        block = os.urandom(MiB)
        with open(path, "wb") as f:
            for _ in range(size // MiB):
                f.write(block)
            f.write(block[: size % MiB])
        return path

    def remove_backups(self) -> None:
        """The data files are large; the logs and configs stay for a look after the run."""
        shutil.rmtree(self.backups, ignore_errors=True)


def require(tool: str) -> str:
    """The tool's path; `make bench` installs the Debian packages this needs."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin")
    if path is None:
        raise BenchError(f"{tool} is not installed; `make bench` installs it.")
    return path


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def tcp_table() -> list[list[str]]:
    """The fields of each IPv4 TCP socket in /proc/net/tcp: local and remote address, state, inode..."""
    return [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on 127.0.0.1:port, from /proc/net/tcp."""
    local = f"0100007F:{port:04X}"  # 127.0.0.1 in the kernel's byte order
    return {fields[9] for fields in tcp_table() if fields[1] == local and fields[3] == "0A"}  # 0A: LISTEN


def connected_inodes(port: int) -> set[str]:
    """Socket inodes of connections to 127.0.0.1:port (the client's end), from /proc/net/tcp."""
    remote = f"0100007F:{port:04X}"
    established = "01"
    return {fields[9] for fields in tcp_table() if fields[2] == remote and fields[3] == established}


def holds_socket(pid: int, inodes: set[str]) -> bool:
    sockets = {f"socket:[{inode}]" for inode in inodes}
    try:
        return any(os.readlink(fd) in sockets for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    """Until the process itself listens on the port, not merely someone: ports picked by
    free_port() can be taken by another program before our server binds them."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{process.args[0]} exited with {process.returncode}:\n{log_tail(log)}")
        if holds_socket(process.pid, listening_inodes(port)):
            return
        time.sleep(0.1)
    raise BenchError(f"{process.args[0]} does not listen on port {port} after {STARTUP_SECONDS} s")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the group the process leads, then SIGKILL if it has not gone in time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(STOP_SECONDS)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


@contextmanager
def child_process(args: list[str], log: Path, **popen_args) -> Iterator[subprocess.Popen]:
    """A server in a process group of its own, its output in `log`, stopped on leaving."""
    with open(log, "ab") as output:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True, **popen_args
        )
    try:
        yield process
    finally:
        stop_process_group(process)


def started_script(script: str, args: list[str], stdin: str) -> subprocess.Popen:
    """`python bench/<script> <args>` with `stdin` written to it, running beside the bench; its
    report is the JSON it prints (script_report)."""
    command = [sys.executable, str(REPO / "bench" / script), *args]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    process.stdin.write(stdin)
    process.stdin.close()
    return process


def script_report(process: subprocess.Popen, timeout: float) -> dict:
    """What a script started by started_script printed, once it ended well within `timeout`."""
    output = process.stdout.read()
    if process.wait(timeout=timeout) != 0:
        raise BenchError(f"{Path(process.args[1]).name} failed")
    return json.loads(output)


@dataclass(frozen=True)
class Transfer:
    """One download as curl saw it."""

    size: int
    seconds: float
    first_byte_seconds: float
    bytes_per_second: float

    @property
    def mib_per_second(self) -> float:
        return self.bytes_per_second / MiB


def curl_download(url: str, expected_size: int, start: int = 0) -> Transfer:
    """Fetch `url` to /dev/null with curl and check that every byte arrived; from byte `start`
    on (`-r START-`, as a resume asks) when it is not 0, then as a 206 of the rest."""
    ranged = ["-r", f"{start}-"] if start else []
    command = [
        require("curl"), "-s", "--noproxy", "*", "--max-time", str(DOWNLOAD_SECONDS), "-o", "/dev/null",
        *ranged,
        "-w", "%{http_code} %{size_download} %{time_total} %{time_starttransfer} %{speed_download}", url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_SECONDS + 10)
    status, size, seconds, first_byte, speed = result.stdout.split()
    expected_status = "206" if start else "200"
    if result.returncode != 0 or status != expected_status or int(size) != expected_size - start:
        where = url.split("?")[0]  # not the token
        raise BenchError(
            f"curl {where}: exit {result.returncode}, HTTP {status}, {size} of {expected_size - start} bytes"
        )
    return Transfer(int(size), float(seconds), float(first_byte), float(speed))
