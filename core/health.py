"""What /healthz answers: whether the database takes a write, its disk has room, and every storage
answers, each within a short timeout on an OS thread of its own (never on gevent's hub).

Monitors call it often, and anyone can: a process runs the checks at most once per
`cache_seconds` whatever the rate of requests (one request runs them, the others wait for its
answer), and a check still running from an earlier round (a storage that hangs) is waited for
again rather than started twice, so a hung storage holds one thread, not one per request.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.offloading import Started
from core.storages import outage_reason
from db import DatabaseError
from db.health import prove_writable
from db.storages import StorageRecord
from encryption.keys import Keyring
from storage import open_storage
from storage.base import StorageError

log = logging.getLogger(__name__)

MIB = 1024 * 1024

Probe = Callable[[], None]  # returns when the part is healthy, raises Unhealthy when not


@dataclass(frozen=True)
class HealthSettings:
    min_free_bytes: int  # on the data dir's disk (database, keys); below it /healthz says 503
    timeout: float  # for each round of checks, all parts at once
    cache_seconds: float  # how long a round's answer serves

    @classmethod
    def from_config(cls, config: Mapping) -> HealthSettings:
        return cls(
            int(float(config["HEALTH_MIN_FREE_MIB"]) * MIB),
            float(config["HEALTH_TIMEOUT"]),
            float(config["HEALTH_CACHE_SECONDS"]),
        )


class Unhealthy(Exception):
    """A part that failed: `problem` is for anyone who asks, `detail` for the operator alone."""

    def __init__(self, problem: str, detail: str | None = None):
        super().__init__(problem)
        self.problem, self.detail = problem, detail


@dataclass(frozen=True)
class Check:
    part: str  # "database", "disk" or "storage:ID"
    problem: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Health:
    checks: tuple[Check, ...]
    checked_at: float

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[str]:
        return [check.part for check in self.checks if not check.ok]


def mebibytes(count: int) -> str:
    return f"{count / MIB:.1f} MiB"


def check_database(path: str, timeout: float) -> None:
    try:
        prove_writable(path, timeout, time.time())
    except DatabaseError as exc:
        raise Unhealthy("cannot write", str(exc)) from exc


def check_disk(path: str, min_free: int) -> None:
    try:
        stats = os.statvfs(path)
    except OSError as exc:
        raise Unhealthy("cannot be read", exc.strerror) from exc
    free = stats.f_bavail * stats.f_frsize
    if free < min_free:
        raise Unhealthy(f"less than {mebibytes(min_free)} free", f"{mebibytes(free)} free")


def check_storage(record: StorageRecord, keyring: Keyring) -> None:
    try:
        open_storage(record, keyring).check()
    except StorageError as exc:
        raise Unhealthy("did not answer", outage_reason(exc)) from exc


def health_probes(
    database_path: str,
    data_dir: str,
    storages: list[StorageRecord],
    keyring: Keyring,
    settings: HealthSettings,
) -> dict[str, Probe]:
    """Every part to check, by the name /healthz gives it; storages by id, whatever their kind."""
    probes = {
        # Half the round for the write lock: a database held that long says so itself.
        "database": functools.partial(check_database, database_path, settings.timeout / 2),
        "disk": functools.partial(check_disk, data_dir, settings.min_free_bytes),
    }
    for record in storages:
        probes[f"storage:{record.id}"] = functools.partial(check_storage, record, keyring)
    return probes


class HealthMonitor:
    """One process's checks and its latest answer."""

    def __init__(self, settings: HealthSettings):
        self.settings = settings
        self._lock = threading.Lock()  # under gevent, a lock its greenlets wait on in turn
        self._latest: Health | None = None
        self._running: dict[str, Started] = {}

    def health(self, probes: Callable[[], dict[str, Probe]], now: float) -> Health:
        """The latest answer while it is fresh; else a new round, of the parts `probes()` names."""
        with self._lock:
            latest = self._latest
            if latest is None or now - latest.checked_at >= self.settings.cache_seconds:
                latest = self._latest = self._round(probes(), now)
            return latest

    def _round(self, probes: dict[str, Probe], now: float) -> Health:
        self._running = {part: self._start(part, probe) for part, probe in probes.items()}
        deadline = time.monotonic() + self.settings.timeout
        return Health(tuple(self._outcome(part, run, deadline) for part, run in self._running.items()), now)

    def _start(self, part: str, probe: Probe) -> Started:
        running = self._running.get(part)
        return running if running is not None and running.running() else Started(probe)

    def _outcome(self, part: str, run: Started, deadline: float) -> Check:
        try:
            run.result(deadline - time.monotonic())
        except TimeoutError:
            return Check(part, f"no answer within {self.settings.timeout:g} s")
        except Unhealthy as exc:
            return Check(part, exc.problem, exc.detail)
        except Exception as exc:  # a check that broke says so; /healthz still answers
            log.warning("The health check of %s failed: %s", part, outage_reason(exc))
            return Check(part, "check failed", outage_reason(exc))
        return Check(part)
