"""Keeps the leases of this process's running transfers alive.

A lease is short, so a worker that dies frees its links within seconds; while a
transfer runs (often inside sendfile, where no Python code runs for it), one thread
per process renews the leases of every transfer still open.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Protocol

import db as database
from db.links import renew_leases

log = logging.getLogger(__name__)


class LeasedBody(Protocol):
    lease_id: str
    closed: bool


class LeaseKeeper:
    def __init__(self, database_path: str, lease_seconds: float):
        self.database_path = database_path
        self.lease_seconds = lease_seconds
        # Weak: a body that is dropped without being closed stops being renewed.
        self._bodies: weakref.WeakSet[LeasedBody] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread_pid: int | None = None

    def hold(self, body: LeasedBody) -> None:
        with self._lock:
            self._bodies.add(body)
            if self._thread_pid != os.getpid():  # none yet, or inherited across a fork
                self._thread_pid = os.getpid()
                threading.Thread(target=self._run, name="lease-keeper", daemon=True).start()

    def held_lease_ids(self) -> list[str]:
        with self._lock:
            return [body.lease_id for body in list(self._bodies) if not body.closed]

    def renew_now(self) -> None:
        lease_ids = self.held_lease_ids()
        if not lease_ids:
            return
        db = database.connect(self.database_path)
        try:
            renew_leases(db, lease_ids, time.time() + self.lease_seconds)
        finally:
            db.close()

    def _run(self) -> None:
        while True:
            time.sleep(self.lease_seconds / 3)
            try:
                self.renew_now()
            except Exception:
                log.exception("Could not renew transfer leases")
