"""Response bodies that know whether they were delivered in full.

The WSGI server closes a body in a `finally`, well or badly; an exception in flight at that
moment (a client gone mid-transfer, a chunk that failed authentication) means the transfer did
not finish. Each body reports once, on close, how many bytes it handed over, whether that was
all of them, and what went wrong if something did.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import BinaryIO

from encryption.format import IntegrityError

# on_close(bytes sent, whole range delivered, failure: None or "integrity")
OnClose = Callable[[int, bool, str | None], None]


class TransferBody:
    def __init__(self, source: BinaryIO, lease_id: str, on_close: OnClose):
        self._source = source
        self._on_close = on_close
        self.lease_id = lease_id
        self.closed = False

    def _finish(self, sent: int, delivered: bool, failure: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        in_flight = sys.exc_info()[1] is not None
        self._source.close()
        self._on_close(sent, delivered and not in_flight and failure is None, failure)


class TrackedFile(TransferBody):
    """A plain file, sent by gunicorn with sendfile or read in blocks.

    `socket.sendfile` leaves the file position at offset + bytes sent (as documented), and reads
    move it too, so the furthest position reached tells how much left.
    """

    mode = "rb"  # socket.sendfile checks for a binary file

    def __init__(self, source: BinaryIO, start: int, stop: int, lease_id: str, on_close: OnClose):
        super().__init__(source, lease_id, on_close)
        self._start = self._position = self._reached = start
        self._stop = stop
        source.seek(start)

    def fileno(self) -> int:
        return self._source.fileno()

    def _moved_to(self, position: int) -> None:
        self._position = position
        self._reached = max(self._reached, position)

    def read(self, size: int = -1) -> bytes:
        remaining = self._stop - self._position
        size = remaining if size < 0 else min(size, remaining)
        data = self._source.read(size) if size > 0 else b""
        self._moved_to(self._position + len(data))
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._moved_to(self._source.seek(offset, whence))
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._finish(self._reached - self._start, self._reached >= self._stop)


class DecryptingBody(TransferBody):
    """Plaintext pieces from a decrypting iterator; no byte leaves before its chunk is verified."""

    def __init__(self, source: BinaryIO, pieces: Iterator[bytes], lease_id: str, on_close: OnClose):
        super().__init__(source, lease_id, on_close)
        self._pieces = pieces
        self._primed: bytes | None = None
        self._sent = 0
        self._exhausted = False
        self._failure: str | None = None

    def prime(self) -> None:
        """Pull the first piece now: the final chunk is checked before any response header leaves."""
        try:
            self._primed = self._next_piece()
        except StopIteration:
            self._primed = None

    def _next_piece(self) -> bytes:
        try:
            return next(self._pieces)
        except StopIteration:
            self._exhausted = True
            raise
        except IntegrityError:
            self._failure = "integrity"
            raise

    def __iter__(self) -> DecryptingBody:
        return self

    def __next__(self) -> bytes:
        if self._primed is not None:
            piece, self._primed = self._primed, None
        else:
            piece = self._next_piece()
        self._sent += len(piece)
        return piece

    def close(self) -> None:
        self._finish(self._sent, self._exhausted, self._failure)
