"""A crowd asking for pages: `python page_crowd.py PORT CLIENTS SECONDS < request`, a JSON report on stdout.

The request is a JSON object: a `path` and the `headers` to send it with. Each client asks for it
again and again on a kept-alive connection of its own, one answer after the other, until SECONDS
have passed; the report counts the answers by status.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from collections import Counter


def ask(port: int, request: dict, until: float, statuses: Counter, lock: threading.Lock) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        while time.monotonic() < until:
            connection.request("GET", request["path"], headers=request["headers"])
            response = connection.getresponse()
            response.read()
            with lock:
                statuses[response.status] += 1
    finally:
        connection.close()


def main(port: int, clients: int, seconds: float, request: dict) -> dict:
    until, statuses, lock = time.monotonic() + seconds, Counter(), threading.Lock()
    threads = [
        threading.Thread(target=ask, args=(port, request, until, statuses, lock)) for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"seconds": seconds, "statuses": {str(status): count for status, count in statuses.items()}}


if __name__ == "__main__":
    port, clients, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(main(port, clients, seconds, json.loads(sys.stdin.read()))))
