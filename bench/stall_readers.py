"""Downloads read as fast as they come: `python stall_readers.py SECONDS < urls`, a JSON report on stdout.

One thread per URL downloads it again and again (a link of several uses) until SECONDS have passed,
and notes the longest time it went without a byte: the stall that heavy pages may cause in the
worker that serves it. Each URL's thread is in this process of its own, so that the readers wait
for nothing but their sockets.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

RECEIVE = 1024 * 1024


def download(url: str, until: float, report: dict) -> None:
    parts = urlsplit(url)
    request = f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    last = None  # stalls count from the first byte: connecting and the first claim are not one
    while time.monotonic() < until:
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(RECEIVE)
            head, _, data = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                status = head.partition(b"\r\n")[0]
                raise RuntimeError(f"{url}: {status!r}")
            left = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1])
            while (now := time.monotonic()) < until:
                report["bytes"] += len(data)
                report["stall"] = max(report["stall"], now - (last or now))
                last, left = now, left - len(data)
                if not left:
                    break  # the whole body: the next download, on a connection of its own
                data = sock.recv(min(RECEIVE, left))
                if not data:
                    raise RuntimeError(f"{url}: the body ended {left} bytes short")


def main(seconds: float, urls: list[str]) -> dict:
    until = time.monotonic() + seconds
    reports = [{"bytes": 0, "stall": 0.0} for _ in urls]
    threads = [
        threading.Thread(target=download, args=(url, until, report))
        for url, report in zip(urls, reports, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"seconds": seconds, "downloads": reports}


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]), sys.stdin.read().split())))
