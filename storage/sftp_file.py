"""One file on an SFTP server as a seekable, read-only file, read with pipelined requests.

SFTP reads are requests answered in turn: one at a time, a download would run at one request per
round trip. So reads are pipelined: up to READ_AHEAD bytes of requests are in flight ahead of the
reader, and each answer taken makes room for the next request. Memory stays bounded by that window
(4 MiB) and the SSH channel's own (sftp_connect.py), however slow the client downstream: nothing is
requested that the window has no room for. A seek elsewhere starts a new pipeline at the new
position (the answers still in flight are read and dropped by the next request).

Requests are large (255 KiB, what OpenSSH's sftp-server answers in full), and so are the SSH
packets that carry the answers: under gevent each packet costs a trip through the hub, and 32 KiB
packets held a download to a third of the speed. A server that answers less than asked (a smaller
limit of its own) gets requests of the size it answered from then on.

paramiko's own prefetch is not used: its requests are issued by a thread of their own that keeps
going when the reader stops early, and it has no window that follows the reader. This uses the two
calls its prefetch is built on, `_async_request` and `_read_response`, which is why paramiko is
pinned.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable

import paramiko
from paramiko.sftp import CMD_DATA, CMD_READ, int64

from storage.base import SeekableReader, StorageError

REQUEST_SIZE = 261_120  # OpenSSH's sftp-server answers reads of up to 255 KiB in full
SMALLEST_REQUEST = 32 * 1024  # what every SFTP server answers in full
READ_AHEAD = 4 * 1024 * 1024  # bytes requested ahead of the reader at full speed
BROKEN = (paramiko.SSHException, EOFError, socket.timeout, OSError)


class SFTPReader(SeekableReader):
    """An open SFTP file handle; `release(reusable)` hands its connection back when closed."""

    def __init__(self, remote: paramiko.SFTPFile, size: int, name: str, release: Callable[[bool], None]):
        super().__init__(size)
        self._remote, self._sftp, self._name = remote, remote.sftp, name
        self._release = release
        self._request_size = REQUEST_SIZE
        self._broken = False
        self._restart(0)

    def _restart(self, position: int) -> None:
        """A new pipeline from `position`, starting shallow: a reader that wants only a header
        costs two requests, one that streams reaches the full window within a few answers."""
        self._pending: deque[tuple[int, int]] = deque()  # (request number, length), in file order
        self._requested = self._delivered = position
        self._leftover = b""  # answered bytes not read yet; they end at self._delivered
        self._depth = 2

    def read(self, size: int = -1) -> bytes:
        size = self._wanted(size)
        if size <= 0:
            return b""
        data = self._from_kept(size)
        if len(data) < size:
            streamed = self._stream(self._position + len(data), size - len(data))
            self._keep(streamed, self._position + len(data))
            data += streamed
        self._position += len(data)
        return data

    def _stream(self, position: int, size: int) -> bytes:
        if position != self._delivered - len(self._leftover):
            self._restart(position)
        pieces, wanted = [], size
        while wanted > 0:
            if not self._leftover:
                self._leftover = self._next_piece()
                if not self._leftover:
                    break
            pieces.append(self._leftover[:wanted])
            self._leftover = self._leftover[wanted:]
            wanted -= len(pieces[-1])
        return b"".join(pieces)

    def _next_piece(self) -> bytes:
        """The next answer of the pipeline; b"" at the end of the file."""
        if self._broken:
            raise StorageError(f"The SFTP transfer of {self._name} broke off earlier.")
        try:
            self._fill()
            if not self._pending:
                return b""
            number, length = self._pending.popleft()
            data = self._answer(number)
        except BROKEN as exc:
            self._broken = True
            reason = exc or type(exc).__name__
            raise StorageError(f"The SFTP transfer of {self._name} broke off: {reason}.") from exc
        self._delivered += len(data)
        if len(data) < length:  # a short answer: the requests after it no longer line up
            if data and self._delivered < self._size:  # the server's own limit: ask that much from now on
                self._request_size = max(SMALLEST_REQUEST, len(data))
            self._restart(self._delivered)
        self._depth = min(max(2, READ_AHEAD // self._request_size), self._depth * 2)
        return data

    def _fill(self) -> None:
        handle = self._remote.handle
        while len(self._pending) < self._depth and self._requested < self._size:
            length = min(self._request_size, self._size - self._requested)
            number = self._sftp._async_request(type(None), CMD_READ, handle, int64(self._requested), length)
            self._pending.append((number, length))
            self._requested += length

    def _answer(self, number: int) -> bytes:
        try:
            kind, message = self._sftp._read_response(number)
        except EOFError:  # the server's end of file: the file shrank under the reader
            return b""
        if kind != CMD_DATA:
            raise paramiko.SSHException(f"unexpected answer {kind} to a read")
        return message.get_string()

    def close(self) -> None:
        if self.closed:
            return
        reusable = not self._broken
        if reusable:
            try:
                self._remote.close()  # reads and drops the answers still in flight on the way
            except BROKEN:
                reusable = False
        self._release(reusable)
        super().close()
