"""moto's S3 server with a bucket of many objects, for the listing tests and `make bench`.

    python tools/seeded_moto.py PORT BUCKET PREFIX COUNT

Putting objects over HTTP costs moto about 3 ms each (100,000 would take minutes), so they are put
straight into the server's backend before it answers. Object i is PREFIX + "backup-{i:06d}.bin",
i % 997 bytes, last modified i * 7919 % COUNT seconds after 2026-01-01 (sizes and dates repeat and
are out of name order); every 500th is instead a folder, PREFIX + "folder-{i:06d}/inner.bin".
Prints "ready" once the objects are in and the server listens; serves until it is killed.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def object_key(prefix: str, number: int) -> str:
    if number % 500 == 0:
        return f"{prefix}folder-{number:06d}/inner.bin"
    return f"{prefix}backup-{number:06d}.bin"


def seed(bucket: str, prefix: str, count: int) -> None:
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(bucket, "us-east-1")
    for number in range(count):
        stored = backend.put_object(bucket, object_key(prefix, number), b"x" * (number % 997))
        stored.last_modified = EPOCH + timedelta(seconds=number * 7919 % count)


def main(port: int, bucket: str, prefix: str, count: int) -> None:
    seed(bucket, prefix, count)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
