"""What moto itself costs, apart from any download through the app: how long its GETs take to start.

moto's standalone server reads an object whole out of its store for every GET, ranged or not,
and then slices the range (moto/s3/models.py `FakeKey.value`, moto/s3/responses.py
`_handle_range_header`); real S3 does neither. These probes put a figure on that, so that the
S3 section can tell moto's share of a download from the app's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import median

from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from harness import BenchError, Transfer
from servers import MotoS3

PROBE_ROUNDS = 3


class Sink:
    """Where boto3 writes a download: counts the bytes, keeps none, notes when the first came."""

    def __init__(self, started: float):
        self.started = started
        self.size = 0
        self.first_byte_seconds = 0.0

    def write(self, data: bytes) -> int:
        if self.size == 0:
            self.first_byte_seconds = time.perf_counter() - self.started
        self.size += len(data)
        return len(data)


def boto3_download(client: BaseClient, bucket: str, key: str, size: int, config: TransferConfig) -> Transfer:
    """boto3's download_fileobj into a Sink, timed from the call as curl times from its start."""
    started = time.perf_counter()
    sink = Sink(started)
    client.download_fileobj(bucket, key, sink, Config=config)
    seconds = time.perf_counter() - started
    if sink.size != size:
        raise BenchError(f"boto3 download of {key}: {sink.size} of {size} bytes")
    return Transfer(sink.size, seconds, sink.first_byte_seconds, sink.size / seconds)


@dataclass(frozen=True)
class DefaultTransfer:
    """boto3's download_fileobj with its default TransferConfig, once, and the GETs it made."""

    transfer: Transfer
    gets: int


def default_transfer(moto: MotoS3, client: BaseClient, key: str, size: int) -> DefaultTransfer:
    """boto3 as shipped: ranged GETs of 8 MiB on 10 threads, moto reading the whole object for each."""
    offset = moto.log_size()
    transfer = boto3_download(client, moto.bucket, key, size, TransferConfig())
    return DefaultTransfer(transfer, moto.requests_since(offset)["GET"])


def first_byte_seconds(client: BaseClient, bucket: str, key: str, byte_range: str) -> float:
    """Median seconds until the first byte of a GET for `byte_range`; the rest is not read."""

    def once() -> float:
        started = time.perf_counter()
        body = client.get_object(Bucket=bucket, Key=key, Range=byte_range)["Body"]
        body.read(1)
        seconds = time.perf_counter() - started
        body.close()
        return seconds

    return median(once() for _ in range(PROBE_ROUNDS))


@dataclass(frozen=True)
class Probes:
    """How long moto takes to start answering a GET of one object, two ways."""

    one_byte: float  # bytes=0-0: the least a GET can ask for
    from_offset: float  # bytes=1-: to the end from past the start, as a reader skipping a header asks


def probe(client: BaseClient, bucket: str, key: str) -> Probes:
    return Probes(
        first_byte_seconds(client, bucket, key, "bytes=0-0"),
        first_byte_seconds(client, bucket, key, "bytes=1-"),
    )
