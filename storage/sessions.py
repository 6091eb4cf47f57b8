"""Connections to remote storages, kept between requests and lent to one caller at a time.

Opening an SSH session costs a handshake, a key exchange and an authentication (tens of
milliseconds on a LAN, several round trips across the internet), so a connection is given back
after use and lent again. Each is lent to one caller at a time (paramiko's SFTP client cannot serve
two readers at once), and kept per OS thread: under gunicorn's gevent worker, folder scans run on
gevent's thread pool, and a socket belongs to the event loop of the thread that opened it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

Connection = TypeVar("Connection")

IDLE_SECONDS = 60.0  # an idle connection older than this is closed rather than lent (servers drop them)
KEEP_IDLE = 4  # idle connections kept per storage and thread


def os_thread() -> int:
    """The OS thread's id, also under gevent (whose patched get_ident names the greenlet)."""
    return threading.get_native_id()


class Pool(Generic[Connection]):
    """Idle connections by (storage, OS thread); `alive` tells whether one may be lent again."""

    def __init__(self, close: Callable[[Connection], None], alive: Callable[[Connection], bool]):
        self._close, self._alive = close, alive
        self._idle: dict[tuple[Hashable, int], list[tuple[float, Connection]]] = {}
        self._lock = threading.Lock()

    def _take(self, key: tuple[Hashable, int]) -> Connection | None:
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                since, connection = idle.pop()
            if now - since < IDLE_SECONDS and self._alive(connection):
                return connection
            self._close(connection)

    def _give_back(self, key: tuple[Hashable, int], connection: Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < KEEP_IDLE:
                idle.append((time.monotonic(), connection))
                return
        self._close(connection)

    def borrow(
        self, storage: Hashable, connect: Callable[[], Connection]
    ) -> tuple[Connection, Callable[[bool], None]]:
        """A connection, and the call that returns it when done: `release(True)` keeps it for the
        next caller of this thread, `release(False)` closes it (it broke)."""
        key = (storage, os_thread())
        connection = self._take(key) or connect()

        def release(reusable: bool) -> None:
            if reusable:
                self._give_back(key, connection)
            else:
                self._close(connection)

        return connection, release

    @contextmanager
    def lent(
        self,
        storage: Hashable,
        connect: Callable[[], Connection],
        keeps: tuple[type[BaseException], ...] = (),
    ) -> Iterator[Connection]:
        """A connection for the block. An exception in `keeps` (an answer such as "no such file")
        gives it back; any other closes it."""
        connection, release = self.borrow(storage, connect)
        try:
            yield connection
        except keeps:
            release(True)
            raise
        except BaseException:
            release(False)
            raise
        release(True)
