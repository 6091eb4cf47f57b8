"""Response bodies that send a transfer themselves and know whether the client got it.

Under gunicorn the body writes to the client's socket directly: a plain file with sendfile(2)
in bounded pieces (zero-copy), a decrypted one chunk by chunk. Before every piece it checks
that the transfer still holds its claim; before the piece that reaches the end it makes the
claim final; after the last byte it waits, bounded by the send timeout, until the client has
acknowledged everything the kernel queued (SIOCOUTQ reaches 0). A client that stops
acknowledging for the send timeout is cut off, however big the socket buffers are; one that
reads slowly never is. A transfer stopped on purpose resets the connection, so that nothing
still queued in the kernel reaches the client after the claim is gone.

Elsewhere (the Flask test client, TLS) the body yields blocks and the same checks run between them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import socket
import struct
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from core.leases import HeldClaim, TransferStopped
from encryption.format import IntegrityError
from storage.base import StorageError

log = logging.getLogger(__name__)

PIECE_SIZE = 4 * 1024 * 1024  # at most this much goes out between two claim checks
BLOCK_SIZE = 256 * 1024  # what the fallback path yields at a time
POLL_MS = 500  # how often a transfer waiting on its client looks at its claim and its progress
TCP_CLOSE = 7  # tcpi_state of a connection the client reset


@dataclass(frozen=True)
class Outcome:
    """How a body ended: bytes handed to the client's connection (what the byte budget is charged),
    how many of them the client acknowledged (what it has; the same as `sent` where the body cannot
    see the socket), all of them or not, and why it stopped if it did (a TransferStopped reason, or
    "integrity")."""

    sent: int
    delivered: bool
    failure: str | None = None
    acknowledged: int | None = None

    @property
    def received(self) -> int:
        """The bytes to report as the client's: acknowledged where known, else handed over."""
        return self.sent if self.acknowledged is None else self.acknowledged


class FileRange:
    """[start, stop) of a plain file, sent with sendfile(2) or read in blocks."""

    def __init__(self, source: BinaryIO, start: int, stop: int):
        self._fd = source.fileno()
        self.position, self.stop = start, stop

    @property
    def remaining(self) -> int:
        return self.stop - self.position

    def send_some(self, sock: socket.socket, limit: int) -> int:
        sent = os.sendfile(sock.fileno(), self._fd, self.position, min(limit, self.remaining))
        if sent == 0:
            raise TransferStopped("file shrank")
        self.position += sent
        return sent

    def read_some(self, limit: int) -> bytes:
        data = os.pread(self._fd, min(limit, self.remaining), self.position)
        if not data:
            raise TransferStopped("file shrank")
        self.position += len(data)
        return data


class Stream:
    """`length` bytes from an iterator of pieces: verified plaintext from a decrypting iterator,
    or blocks read from a source that has no file descriptor (an S3 object)."""

    def __init__(self, pieces: Iterator[bytes], length: int):
        self._pieces = pieces
        self._pending = memoryview(b"")
        self.remaining = length

    def prime(self) -> None:
        """Pull the first piece now: for a decrypted file, the final chunk is checked before any
        response header leaves."""
        if self.remaining:
            self._pending = memoryview(self._next())

    def _next(self) -> bytes:
        piece = next(self._pieces, b"")
        if not piece:
            raise TransferStopped("file shrank")
        return piece

    def _take(self, limit: int) -> memoryview:
        if not self._pending:
            self._pending = memoryview(self._next())
        return self._pending[: min(limit, self.remaining)]

    def _advance(self, count: int) -> None:
        self._pending, self.remaining = self._pending[count:], self.remaining - count

    def send_some(self, sock: socket.socket, limit: int) -> int:
        sent = sock.send(self._take(limit))
        self._advance(sent)
        return sent

    def read_some(self, limit: int) -> bytes:
        data = bytes(self._take(limit))
        self._advance(len(data))
        return data


def read_blocks(source: BinaryIO, start: int, stop: int) -> Iterator[bytes]:
    source.seek(start)
    while start < stop:
        block = source.read(min(BLOCK_SIZE, stop - start))
        if not block:
            return
        start += len(block)
        yield block


Content = FileRange | Stream


def unacknowledged(sock: socket.socket) -> int:
    """Bytes queued on the socket that the client has not acknowledged yet (Linux SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def was_reset(sock: socket.socket) -> bool:
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_CLOSE
    except OSError:  # not TCP (a Unix socket behind a proxy): the proxy's acknowledgement counts
        return False


class Progress:
    """Watches the client acknowledge bytes; raises when it acknowledged none for `timeout` seconds."""

    def __init__(self, sock: socket.socket, timeout: float):
        self._sock, self._timeout = sock, timeout
        self._handed = 0
        self._acknowledged = -unacknowledged(sock)  # the response headers may still be queued
        self._moved_at = time.monotonic()

    def handed(self, count: int) -> None:
        self._handed += count

    @property
    def acknowledged(self) -> int:
        """Body bytes the client acknowledged, as last measured."""
        return min(max(self._acknowledged, 0), self._handed)

    def measure(self) -> int:
        """The bytes still unacknowledged; notes when the client acknowledged more."""
        queued = unacknowledged(self._sock)
        if self._handed - queued > self._acknowledged:
            self._acknowledged, self._moved_at = self._handed - queued, time.monotonic()
        return queued

    def check(self) -> int:
        """The bytes still unacknowledged, after checking the client has not stalled."""
        moved_at = self._moved_at
        queued = self.measure()
        if self._moved_at == moved_at and time.monotonic() - moved_at >= self._timeout:
            raise TransferStopped("stalled")
        return queued


class TransferBody:
    """The WSGI body of one transfer; reports its Outcome once, when the server closes it."""

    def __init__(
        self,
        source: BinaryIO,
        content: Content,
        held: HeldClaim | None,
        on_close: Callable[[Outcome], None],
        counts: bool = False,
    ):
        self._source, self._content, self._held = source, content, held
        self._on_close = on_close
        self._counts = counts  # reaching the end is a use: the last piece needs a final claim
        self._sock: socket.socket | None = None
        self._progress: Progress | None = None
        self._send_timeout = 0.0
        self._sent = 0
        self._delivered = False
        self._failure: str | None = None
        self.closed = False

    def send_through(self, sock: socket.socket, send_timeout: float) -> None:
        """Send on the server's socket directly (gunicorn's, plain TCP), zero-copy for files."""
        self._sock, self._send_timeout = sock, send_timeout

    def __iter__(self) -> Iterator[bytes]:
        return self._guarded(self._over_socket() if self._sock else self._in_blocks())

    def _guarded(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from chunks
            self._delivered = True
        except TransferStopped as exc:
            self._failure = exc.reason
            self._reset()
            raise
        except IntegrityError:
            self._failure = "integrity"
            self._reset()
            raise
        except (BrokenPipeError, ConnectionResetError) as exc:  # the client went away
            self._failure = "client gone"
            self._last_measure()
            raise TransferStopped("client gone") from exc
        except StorageError as exc:  # a remote storage dropped mid-stream: what was sent stays good
            self._failure = "storage failed"
            log.warning("A transfer stopped because its storage failed: %s", exc)
            raise TransferStopped("storage failed") from exc

    def _before_piece(self) -> None:
        if self._held is None:
            return
        self._held.check()
        if self._counts and not self._held.final and self._content.remaining <= PIECE_SIZE:
            self._held.secure_final()

    def _in_blocks(self) -> Iterator[bytes]:
        while self._content.remaining:
            self._before_piece()
            data = self._content.read_some(BLOCK_SIZE)
            self._sent += len(data)
            yield data

    def _over_socket(self) -> Iterator[bytes]:
        yield b""  # the server sends the status line and headers; the body is ours to send
        sock, timeout = self._sock, self._sock.gettimeout()
        sock.setblocking(False)
        try:
            progress = self._progress = Progress(sock, self._send_timeout)
            while self._content.remaining:
                self._before_piece()
                self._send_piece(sock, progress)
            self._wait_acknowledged(progress)
        finally:
            if sock.fileno() != -1:
                sock.settimeout(timeout)

    def _send_piece(self, sock: socket.socket, progress: Progress) -> None:
        try:
            sent = self._content.send_some(sock, PIECE_SIZE)
        except BlockingIOError:
            sent = 0
        if sent:
            self._sent += sent
            progress.handed(sent)
            return
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        if any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(POLL_MS)):
            raise TransferStopped("client gone")
        progress.check()

    def _wait_acknowledged(self, progress: Progress) -> None:
        """Until the client has every byte: only then has the transfer delivered."""
        pause = 0.001
        while progress.check():
            if was_reset(self._sock):
                raise TransferStopped("client gone")
            if self._held is not None:
                self._held.check()
            time.sleep(pause)
            pause = min(pause * 2, POLL_MS / 1000)

    def _last_measure(self) -> None:
        """How far the client got, read while the socket is still ours: after a reset the kernel
        still knows what was acknowledged, but once closed nobody does."""
        if self._progress is not None and self._sock.fileno() != -1:
            with contextlib.suppress(OSError):
                self._progress.measure()

    def _acknowledged(self) -> int | None:
        """What the client acknowledged; None where the body never saw the socket (nor can know)."""
        if self._sock is None:
            return None
        return self._sent if self._delivered else (self._progress.acknowledged if self._progress else 0)

    def _reset(self) -> None:
        """Drop the connection with a reset: the kernel discards what it still queued for the client."""
        self._last_measure()
        if self._sock is not None and self._sock.fileno() != -1:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._sock.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._held is not None:
            self._held.closed = True
        self._source.close()
        self._on_close(Outcome(self._sent, self._delivered, self._failure, self._acknowledged()))
