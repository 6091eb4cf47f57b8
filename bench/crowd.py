"""A crowd of slow clients in one process: `python crowd.py RATE SECONDS < urls`, a JSON report on stdout.

Each client reads its own URL at RATE bytes a second at most, through one selector; curl's
--limit-rate does not pace on loopback. The report says, for each client, its HTTP status and the
body bytes it received in each of two halves of the run after a warm-up, so that "every client
made progress all along" can be checked, and the total.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time
from urllib.parse import urlsplit

TICK = 0.05
RECEIVE_BUFFER = 64 * 1024


class Client:
    def __init__(self, url: str):
        parts = urlsplit(url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock.connect((parts.hostname, parts.port))
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        self.sock.setblocking(False)
        self.head = b""
        self.status = 0
        self.body = 0
        self.open = True

    def read(self, allowance: int) -> None:
        try:
            data = self.sock.recv(allowance)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.open = False
            return
        if self.status:
            self.body += len(data)
            return
        head, separator, rest = (self.head + data).partition(b"\r\n\r\n")
        self.head = head
        if separator:
            self.status = int(head.split()[1])
            self.body += len(rest)


def run(urls: list[str], rate: float, seconds: float) -> dict:
    clients = [Client(url) for url in urls]
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    allowance = max(1, int(rate * TICK))
    started = time.monotonic()
    half = seconds * 3 / 8
    mark_times = [seconds / 4, seconds / 4 + half, seconds]  # after a warm-up, then two halves
    marks: list[list[int]] = []
    while len(marks) < len(mark_times):
        if time.monotonic() - started >= mark_times[len(marks)]:
            marks.append([client.body for client in clients])
            continue
        tick = time.monotonic()
        for key, _ in selector.select(timeout=TICK):
            client = key.data
            client.read(allowance)
            if not client.open:
                selector.unregister(client.sock)
        time.sleep(max(0.0, TICK - (time.monotonic() - tick)))
    for client in clients:
        client.sock.close()
    return {
        "statuses": [client.status for client in clients],
        "halves": [[b - a for a, b in zip(marks[i], marks[i + 1], strict=True)] for i in range(2)],
        "seconds": half,
    }


if __name__ == "__main__":
    rate, seconds = float(sys.argv[1]), float(sys.argv[2])
    print(json.dumps(run(sys.stdin.read().split(), rate, seconds)))
