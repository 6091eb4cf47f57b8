"""Which worker holds a listing session's connection, a session on the other one, and the folder
scans the workers share through the data dir (core/shared_scans.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from harness import BenchError, holds_socket, tcp_table
from servers import Bench
from sessions import Session
from workers import child_pids


def shared_scans(bench: Bench) -> int:
    """How many folder scans the workers have written to the data dir (core/shared_scans.py)."""
    return len(list((bench.oncelink.workspace.instance / "scans").glob("*.scan")))


def wait_for_shared_scan(bench: Bench, written: int) -> None:
    """Until the worker that scanned a folder never listed has written its scan for the others."""
    deadline = time.monotonic() + 30
    while shared_scans(bench) <= written:
        if time.monotonic() > deadline:
            raise BenchError("No worker wrote the scan of the folder it listed to the data dir.")
        time.sleep(0.02)


@contextmanager
def other_worker_session(bench: Bench, cookies: dict, worker: int) -> Iterator[Session]:
    """A kept-alive session whose connection a worker other than `worker` holds."""
    for _ in range(100):
        with Session(bench.oncelink.url, cookies) as session:
            session.get("/api/storages")  # connects
            if serving_worker(bench, session) != worker:
                yield session
                return
    raise BenchError(f"No worker but {worker} took a connection.")


def serving_worker(bench: Bench, session: Session) -> int:
    """The worker holding the server's end of the session's connection."""
    client = f"0100007F:{session.connection.sock.getsockname()[1]:04X}"  # 127.0.0.1, as /proc writes it
    server = f"0100007F:{bench.oncelink.port:04X}"
    inodes = {fields[9] for fields in tcp_table() if fields[1] == server and fields[2] == client}
    for pid in child_pids(bench.gunicorn_master):
        if holds_socket(pid, inodes):
            return pid
    raise BenchError("No gunicorn worker holds the session's connection.")
