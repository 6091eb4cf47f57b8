"""The S3 section's downloads: from moto straight into boto3, or through Oncelink, and what each cost.

Three kinds of download of the same object, taking turns: boto3 reading it directly (the
reference), and curl through a fresh link of the app's S3 storage, proxied or decrypted. For each,
what the client saw, the requests moto logged meanwhile, and the CPU time of moto and of the
gunicorn workers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median

from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from decrypted_downloads import encrypt_backups
from harness import MiB, Transfer, curl_download
from moto_probes import Probes, boto3_download, probe
from servers import Bench, MotoS3
from workers import CpuTime, WorkerUsage, connected_to, cpu_time, watch_workers, workers_cpu

BUCKET = "oncelink-bench"
STORAGE_ID = "s3bench"
ROUNDS = 5  # fewer than for local files: through moto a 1 GiB download takes seconds (see the notes)


@dataclass(frozen=True)
class StoredObject:
    """A test file in the bucket twice: as it is, and encrypted by the app's `encrypt`."""

    label: str
    size: int  # of the plaintext, which both kinds of link serve
    plain_key: str
    encrypted_key: str


@dataclass(frozen=True)
class S3Bench:
    """The running bench, the moto server beside it, and a boto3 client of the bench's own."""

    bench: Bench
    moto: MotoS3
    server_pid: int
    client: BaseClient


Fetch = Callable[[], Transfer]  # a download ready to go: its link, if any, already minted


def direct(s3: S3Bench, stored: StoredObject) -> Fetch:
    """One GET stream, as the app reads: multipart would start above the object's size."""
    one_stream = TransferConfig(multipart_threshold=stored.size + 1)
    return lambda: boto3_download(s3.client, BUCKET, stored.plain_key, stored.size, one_stream)


def proxied(s3: S3Bench, stored: StoredObject) -> Fetch:
    url = s3.bench.oncelink.mint_object_link(STORAGE_ID, stored.plain_key)
    return lambda: curl_download(url, stored.size)


def decrypted(s3: S3Bench, stored: StoredObject) -> Fetch:
    url = s3.bench.oncelink.mint_object_link(STORAGE_ID, stored.encrypted_key)
    return lambda: curl_download(url, stored.size)


Download = Callable[[S3Bench, StoredObject], Fetch]
KINDS: list[tuple[str, Download]] = [
    ("boto3 direct", direct),
    ("Oncelink proxied", proxied),
    ("Oncelink decrypted", decrypted),
]


@dataclass
class Downloads:
    """Downloads of one kind: each transfer, and over all of them the S3 requests and CPU time."""

    transfers: list[Transfer] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    workers: CpuTime = field(default_factory=CpuTime)
    moto: CpuTime = field(default_factory=CpuTime)

    @property
    def mib_per_second(self) -> float:
        return median(t.mib_per_second for t in self.transfers)

    @property
    def seconds(self) -> float:
        return median(t.seconds for t in self.transfers)

    @property
    def first_byte_seconds(self) -> float:
        return median(t.first_byte_seconds for t in self.transfers)

    @property
    def streaming_mib_per_second(self) -> float:
        """The rate once bytes flow: the size over the time from the first byte to the last."""
        return median(t.size / MiB / (t.seconds - t.first_byte_seconds) for t in self.transfers)

    def per_download(self, method: str) -> float:
        return self.requests[method] / len(self.transfers)

    def cpu_each(self, cpu: CpuTime) -> float:
        return (cpu.user + cpu.system) / len(self.transfers)


def timed(s3: S3Bench, download: Download, stored: StoredObject, downloads: Downloads) -> None:
    """One download, with the requests moto logged meanwhile and the CPU time it cost both sides."""
    fetch = download(s3, stored)
    offset, moto_before = s3.moto.log_size(), cpu_time(s3.server_pid)
    with workers_cpu(s3.bench.gunicorn_master) as used:
        transfer = fetch()
    downloads.transfers.append(transfer)
    downloads.requests += s3.moto.requests_since(offset)
    downloads.workers.add(used)
    downloads.moto.add(cpu_time(s3.server_pid).since(moto_before))


def rotating_rounds(s3: S3Bench, stored: StoredObject) -> list[Downloads]:
    """ROUNDS downloads of each kind; each round starts with the next kind, so each goes first as often."""
    results = [Downloads() for _ in KINDS]
    turns = [(downloads, download) for downloads, (_, download) in zip(results, KINDS, strict=True)]
    for round_number in range(ROUNDS):
        shift = round_number % len(turns)
        for downloads, download in turns[shift:] + turns[:shift]:
            timed(s3, download, stored, downloads)
    return results


def watch(s3: S3Bench, download: Download, stored: StoredObject) -> list[WorkerUsage]:
    """Every worker during one more download; the one serving it holds a connection to moto."""
    fetch = download(s3, stored)
    with watch_workers(s3.bench.gunicorn_master, connected_to(s3.moto.port)) as workers:
        fetch()
    return list(workers.values())


@dataclass(frozen=True)
class Observed:
    """Everything this section measured for one object."""

    stored: StoredObject
    kinds: list[Downloads]  # in the order of KINDS
    workers: list[list[WorkerUsage]]  # for each kind through the app, in the order of KINDS[1:]
    probes: Probes

    @property
    def reference(self) -> Downloads:
        return self.kinds[0]

    def ratio(self, downloads: Downloads) -> float:
        return downloads.mib_per_second / self.reference.mib_per_second

    def through_app(self) -> list[tuple[str, Downloads]]:
        return [(name, downloads) for (name, _), downloads in zip(KINDS[1:], self.kinds[1:], strict=True)]


def stock_bucket(s3: S3Bench) -> list[StoredObject]:
    """Every test file and its encrypted copy as objects, smallest first; the bucket as the app's storage."""
    stock = []
    for label, files in encrypt_backups(s3.bench).items():
        keys = s3.moto.upload(files.plain), s3.moto.upload(files.encrypted)
        stock.append(StoredObject(label, files.size, *keys))
    s3.bench.oncelink.add_s3_storage(STORAGE_ID, s3.moto)
    return sorted(stock, key=lambda stored: stored.size)


def observe(s3: S3Bench, stored: StoredObject) -> Observed:
    kinds = rotating_rounds(s3, stored)
    workers = [watch(s3, download, stored) for _, download in KINDS[1:]]
    return Observed(stored, kinds, workers, probe(s3.client, BUCKET, stored.plain_key))
